//! Who a CONNECT packet says it is: the client id plus the username, as [`Endpoint`].
//!
//! Hub: username `{hostname}/{clientId}/?{query}`, client id `{deviceId}` or
//! `{deviceId}/{moduleId}`. DPS: username `{idScope}/registrations/{registrationId}/{query}`
//! (no `?`), client id `{registrationId}`. The hostname and ids are never encoded; the query is
//! split on `&`, then on the first `=`, and each part percent-decoded (Python encodes every key
//! and value, Node sends `model-id` raw with `:` and `;`; the order differs).
//!
//! Decisions where the reference is silent:
//! - A username `{x}/{clientId}/?...` is a hub username, `{x}/registrations/{clientId}[/...]`
//!   a DPS one. Matching the client id first stays unambiguous for device ids holding `?` and
//!   for a device called `registrations`.
//! - The client id in the username must equal the MQTT client id, as IoT Hub requires.
//! - `api-version` is optional (kept when present); `model-id` must be a valid [`Dtmi`]; unknown
//!   parameters are kept in `other`; a known parameter given twice is refused.
//! - A registration id follows [`DeviceId`]'s rule: in IoT Central it becomes the device id.
//!
//! Not owned here: whether the host is this bridge's (configuration) and the password
//! (`sas.rs`).

use std::fmt;

use super::decode_query;
use crate::device::{DeviceId, MAX_DEVICE_ID_LEN};
use crate::dtdl::{Dtmi, DtmiError};
use crate::enrollment::IdScope;

/// Longest host name accepted in a username (DNS's limit).
pub const MAX_HOST_NAME_LEN: usize = 253;

/// The host name a device dialled, as it wrote it into its username and SAS `sr`.
/// Invariant: 1..=[`MAX_HOST_NAME_LEN`] characters from ASCII letters, digits and `- . _ : [ ]`
/// (so IP literals fit); enforced only by [`HostName::parse`]. Compared ignoring ASCII case, as
/// DNS names are.
#[derive(Clone, Debug, Eq)]
pub struct HostName(String);

impl HostName {
    pub fn parse(raw: &str) -> Result<HostName, IdentityError> {
        let valid_char = |b: u8| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b);
        if (1..=MAX_HOST_NAME_LEN).contains(&raw.len()) && raw.bytes().all(valid_char) {
            Ok(HostName(raw.to_owned()))
        } else {
            Err(IdentityError::InvalidHostName {
                host: truncated(raw),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for HostName {
    fn eq(&self, other: &HostName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies a module of a device: the `{moduleId}` of the client id `{deviceId}/{moduleId}`.
/// Invariant: IoT Hub's module id rule, the same characters and length as [`DeviceId`];
/// enforced only by [`ModuleId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(String);

impl ModuleId {
    pub fn parse(raw: &str) -> Result<ModuleId, IdentityError> {
        match DeviceId::parse(raw) {
            Ok(_) => Ok(ModuleId(raw.to_owned())),
            Err(_) => Err(IdentityError::InvalidModuleId {
                module_id: truncated(raw),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which service a connection talks to. Sessions are keyed by this and the client id: DPS and
/// the hub may share a host, a port and a client id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Hub,
    Dps,
}

/// The identity a CONNECT claims, before its password is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Hub {
        host: HostName,
        device_id: DeviceId,
        /// Set when the client id is `{deviceId}/{moduleId}`.
        module_id: Option<ModuleId>,
        /// `model-id`: the IoT Plug and Play model the device announces.
        model_id: Option<Dtmi>,
        /// `api-version`, e.g. `2019-10-01` (Python), `2021-04-12` (Node).
        api_version: Option<String>,
        /// `DeviceClientType`, the SDK's user agent.
        client_type: Option<String>,
        /// Any other query parameter, decoded, in the order sent.
        other: Vec<(String, String)>,
    },
    Dps {
        id_scope: IdScope,
        registration_id: DeviceId,
        /// `api-version`, e.g. `2019-03-31`.
        api_version: Option<String>,
        /// `ClientVersion`, the SDK's user agent.
        client_version: Option<String>,
        /// Any other query parameter, decoded, in the order sent.
        other: Vec<(String, String)>,
    },
}

/// Why a CONNECT's client id and username are not an identity Gyre serves. Answer CONNACK 5
/// (or 2, identifier rejected, for the client id rules).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("username is neither '{{host}}/{{clientId}}/?{{query}}' nor '{{idScope}}/registrations/{{registrationId}}/{{query}}'")]
    UnrecognisedUsername,
    #[error("host name '{host}' is not 1 to {MAX_HOST_NAME_LEN} letters, digits or - . _ : [ ]")]
    InvalidHostName { host: String },
    #[error("'{device_id}' is not a valid device id")]
    InvalidDeviceId { device_id: String },
    #[error("'{module_id}' is not a valid module id")]
    InvalidModuleId { module_id: String },
    #[error("'{registration_id}' is not a valid registration id")]
    InvalidRegistrationId { registration_id: String },
    #[error("'{id_scope}' is not an id scope")]
    InvalidIdScope { id_scope: String },
    #[error("username names client '{in_username}' but the client id is '{client_id}'")]
    ClientIdMismatch {
        client_id: String,
        in_username: String,
    },
    #[error("query parameter '{segment}' has bad percent-encoding")]
    BadPercentEncoding { segment: String },
    #[error("query parameter '{name}' appears twice")]
    DuplicateParameter { name: &'static str },
    #[error("model-id '{model_id}' is not a DTMI: {source}")]
    InvalidModelId { model_id: String, source: DtmiError },
}

impl Endpoint {
    /// Reads the identity from a CONNECT's client id and username.
    pub fn parse(client_id: &str, username: &str) -> Result<Endpoint, IdentityError> {
        let (first, rest) = username
            .split_once('/')
            .ok_or(IdentityError::UnrecognisedUsername)?;
        // Matching the client id first keeps ids that hold '?' (device ids may) unambiguous.
        if let Some(query) = rest
            .strip_prefix(client_id)
            .and_then(|rest| rest.strip_prefix("/?"))
        {
            return parse_hub(first, client_id, query);
        }
        if let Some(after) = rest.strip_prefix("registrations/") {
            let (registration_id, query) = after.split_once('/').unwrap_or((after, ""));
            return parse_dps(first, client_id, registration_id, query);
        }
        match rest.split_once("/?") {
            Some((in_username, _)) => Err(IdentityError::ClientIdMismatch {
                client_id: truncated(client_id),
                in_username: truncated(in_username),
            }),
            None => Err(IdentityError::UnrecognisedUsername),
        }
    }

    pub fn kind(&self) -> EndpointKind {
        match self {
            Endpoint::Hub { .. } => EndpointKind::Hub,
            Endpoint::Dps { .. } => EndpointKind::Dps,
        }
    }

    /// The MQTT client id this identity connects with.
    pub fn client_id(&self) -> String {
        match self {
            Endpoint::Hub {
                device_id,
                module_id: Some(module_id),
                ..
            } => format!("{device_id}/{module_id}"),
            Endpoint::Hub { device_id, .. } => device_id.to_string(),
            Endpoint::Dps {
                registration_id, ..
            } => registration_id.to_string(),
        }
    }

    /// The resource a SAS token for this identity must name, decoded:
    /// `{host}/devices/{deviceId}[/modules/{moduleId}]` or `{idScope}/registrations/{regId}`.
    pub fn sas_resource(&self) -> String {
        match self {
            Endpoint::Hub {
                host,
                device_id,
                module_id: Some(module_id),
                ..
            } => format!("{host}/devices/{device_id}/modules/{module_id}"),
            Endpoint::Hub {
                host, device_id, ..
            } => format!("{host}/devices/{device_id}"),
            Endpoint::Dps {
                id_scope,
                registration_id,
                ..
            } => format!("{id_scope}/registrations/{registration_id}"),
        }
    }
}

fn parse_hub(host: &str, client_id: &str, query: &str) -> Result<Endpoint, IdentityError> {
    let host = HostName::parse(host)?;
    // Device ids never hold '/', so the first '/' separates a module id.
    let (device_id, module_id) = match client_id.split_once('/') {
        Some((device_id, module_id)) => (device_id, Some(ModuleId::parse(module_id)?)),
        None => (client_id, None),
    };
    let device_id = DeviceId::parse(device_id).map_err(|_| IdentityError::InvalidDeviceId {
        device_id: truncated(device_id),
    })?;
    let mut params = Params::decode(query)?;
    let model_id = params
        .take("model-id")?
        .map(|raw| {
            Dtmi::parse(&raw).map_err(|source| IdentityError::InvalidModelId {
                model_id: truncated(&raw),
                source,
            })
        })
        .transpose()?;
    Ok(Endpoint::Hub {
        host,
        device_id,
        module_id,
        model_id,
        api_version: params.take("api-version")?,
        client_type: params.take("DeviceClientType")?,
        other: params.rest,
    })
}

fn parse_dps(
    id_scope: &str,
    client_id: &str,
    registration_id: &str,
    query: &str,
) -> Result<Endpoint, IdentityError> {
    let id_scope = IdScope::parse(id_scope).map_err(|_| IdentityError::InvalidIdScope {
        id_scope: truncated(id_scope),
    })?;
    if registration_id != client_id {
        return Err(IdentityError::ClientIdMismatch {
            client_id: truncated(client_id),
            in_username: truncated(registration_id),
        });
    }
    let registration_id =
        DeviceId::parse(registration_id).map_err(|_| IdentityError::InvalidRegistrationId {
            registration_id: truncated(registration_id),
        })?;
    let mut params = Params::decode(query)?;
    Ok(Endpoint::Dps {
        id_scope,
        registration_id,
        api_version: params.take("api-version")?,
        client_version: params.take("ClientVersion")?,
        other: params.rest,
    })
}

/// Error fields echo client input: keep them short enough for a log line.
fn truncated(raw: &str) -> String {
    raw.chars().take(MAX_DEVICE_ID_LEN + 1).collect()
}

/// Decoded query parameters, from which known ones are taken out by name.
struct Params {
    rest: Vec<(String, String)>,
}

impl Params {
    fn decode(query: &str) -> Result<Params, IdentityError> {
        let rest = decode_query(query).map_err(|segment| IdentityError::BadPercentEncoding {
            segment: truncated(segment),
        })?;
        Ok(Params { rest })
    }

    /// Removes `name` and returns its value; refuses it twice.
    fn take(&mut self, name: &'static str) -> Result<Option<String>, IdentityError> {
        let mut found = None;
        let mut rest = Vec::with_capacity(self.rest.len());
        for (key, value) in self.rest.drain(..) {
            if key == name {
                if found.is_some() {
                    return Err(IdentityError::DuplicateParameter { name });
                }
                found = Some(value);
            } else {
                rest.push((key, value));
            }
        }
        self.rest = rest;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(client_id: &str, username: &str, expected: Result<Endpoint, IdentityError>) {
        assert_eq!(Endpoint::parse(client_id, username), expected, "{username}");
    }

    fn hub(device_id: &str, module_id: Option<&str>) -> Endpoint {
        Endpoint::Hub {
            host: HostName::parse("localhost").unwrap(),
            device_id: DeviceId::parse(device_id).unwrap(),
            module_id: module_id.map(|m| ModuleId::parse(m).unwrap()),
            model_id: None,
            api_version: None,
            client_type: None,
            other: vec![],
        }
    }

    fn with(
        mut endpoint: Endpoint,
        model: Option<&str>,
        version: &str,
        agent: &str,
        rest: &[(&str, &str)],
    ) -> Endpoint {
        let rest: Vec<(String, String)> = rest
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match &mut endpoint {
            Endpoint::Hub {
                model_id,
                api_version,
                client_type,
                other,
                ..
            } => {
                *model_id = model.map(|m| Dtmi::parse(m).unwrap());
                *api_version = Some(version.to_owned());
                *client_type = Some(agent.to_owned());
                *other = rest;
            }
            Endpoint::Dps {
                api_version,
                client_version,
                other,
                ..
            } => {
                *api_version = Some(version.to_owned());
                *client_version = Some(agent.to_owned());
                *other = rest;
            }
        }
        endpoint
    }

    fn dps(registration_id: &str) -> Endpoint {
        Endpoint::Dps {
            id_scope: IdScope::parse("0ne0000ABCD").unwrap(),
            registration_id: DeviceId::parse(registration_id).unwrap(),
            api_version: None,
            client_version: None,
            other: vec![],
        }
    }

    const PY_AGENT: &str =
        "azure-iot-device-iothub-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC @0;x86_64)";
    const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";

    #[test]
    fn hub_usernames_as_the_sdks_send_them() {
        // Python, observed.
        check(
            "dev1",
            "localhost/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29",
            Ok(with(hub("dev1", None), None, "2019-10-01", PY_AGENT, &[])),
        );
        // Python with a model id: everything encoded, model-id last.
        check(
            "dev1",
            "localhost/dev1/?api-version=2020-09-30&DeviceClientType=py&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1",
            Ok(with(hub("dev1", None), Some(THERMOSTAT), "2020-09-30", "py", &[])),
        );
        // Node, observed: raw model-id with ':' and ';', another order.
        check(
            "dev-node",
            "localhost/dev-node/?api-version=2021-04-12&model-id=dtmi:com:example:Thermostat;1&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)",
            Ok(with(
                hub("dev-node", None),
                Some(THERMOSTAT),
                "2021-04-12",
                "azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)",
                &[],
            )),
        );
        // A module client id.
        check(
            "dev1/mod-a",
            "localhost/dev1/mod-a/?api-version=2019-10-01&DeviceClientType=py",
            Ok(with(
                hub("dev1", Some("mod-a")),
                None,
                "2019-10-01",
                "py",
                &[],
            )),
        );
        // Unknown parameters kept, empty segments skipped, `+` is not a space.
        check(
            "dev1",
            "localhost/dev1/?x%20y=a+b&&api-version=1&DeviceClientType=c&flag&",
            Ok(with(
                hub("dev1", None),
                None,
                "1",
                "c",
                &[("x y", "a+b"), ("flag", "")],
            )),
        );
        // No query at all is accepted.
        check("dev1", "localhost/dev1/?", Ok(hub("dev1", None)));
        // Device ids may hold '?', and may be called "registrations".
        check("?x", "localhost/?x/?", Ok(hub("?x", None)));
        check("a?b", "localhost/a?b/?", Ok(hub("a?b", None)));
        check(
            "registrations",
            "localhost/registrations/?",
            Ok(hub("registrations", None)),
        );
    }

    #[test]
    fn dps_usernames_as_the_sdks_send_them() {
        check(
            "reg-py-1",
            "0ne0000ABCD/registrations/reg-py-1/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%28...%29",
            Ok(with(
                dps("reg-py-1"),
                None,
                "2019-03-31",
                "azure-iot-device-provisioning-py/2.14.0(...)",
                &[],
            )),
        );
        check(
            "reg-node-1",
            "0ne0000ABCD/registrations/reg-node-1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
            Ok(with(
                dps("reg-node-1"),
                None,
                "2019-03-31",
                "azure-iot-provisioning-device/1.9.1",
                &[],
            )),
        );
        check("r1", "0ne0000ABCD/registrations/r1", Ok(dps("r1")));
        check("r1", "0ne0000ABCD/registrations/r1/", Ok(dps("r1")));
    }

    #[test]
    fn refuses_identities_gyre_does_not_serve() {
        let mismatch = |client_id: &str, in_username: &str| IdentityError::ClientIdMismatch {
            client_id: client_id.to_owned(),
            in_username: in_username.to_owned(),
        };
        check("", "", Err(IdentityError::UnrecognisedUsername));
        check(
            "dev1",
            "localhost",
            Err(IdentityError::UnrecognisedUsername),
        );
        check(
            "dev1",
            "localhost/dev1",
            Err(IdentityError::UnrecognisedUsername),
        );
        check(
            "dev1",
            "localhost/dev1/",
            Err(IdentityError::UnrecognisedUsername),
        );
        check(
            "dev1",
            "localhost/dev2/?api-version=1",
            Err(mismatch("dev1", "dev2")),
        );
        check(
            "dev1",
            "localhost/dev1/mod/?api-version=1",
            Err(mismatch("dev1", "dev1/mod")),
        );
        check(
            "reg-1",
            "0ne0000ABCD/registrations/reg-2/api-version=1",
            Err(mismatch("reg-1", "reg-2")),
        );
        check(
            "dev 1",
            "localhost/dev 1/?",
            Err(IdentityError::InvalidDeviceId {
                device_id: "dev 1".into(),
            }),
        );
        check(
            "dev1/m#",
            "localhost/dev1/m#/?",
            Err(IdentityError::InvalidModuleId {
                module_id: "m#".into(),
            }),
        );
        check(
            "dev1",
            "local host/dev1/?",
            Err(IdentityError::InvalidHostName {
                host: "local host".into(),
            }),
        );
        check(
            "dev1",
            "/dev1/?",
            Err(IdentityError::InvalidHostName { host: "".into() }),
        );
        check(
            "r1",
            "0ne0000abcd/registrations/r1/",
            Err(IdentityError::InvalidIdScope {
                id_scope: "0ne0000abcd".into(),
            }),
        );
        check(
            "r 1",
            "0ne0000ABCD/registrations/r 1/",
            Err(IdentityError::InvalidRegistrationId {
                registration_id: "r 1".into(),
            }),
        );
        check(
            "dev1",
            "localhost/dev1/?api-version=%zz",
            Err(IdentityError::BadPercentEncoding {
                segment: "api-version=%zz".into(),
            }),
        );
        check(
            "dev1",
            "localhost/dev1/?api-version=1&api-version=2",
            Err(IdentityError::DuplicateParameter {
                name: "api-version",
            }),
        );
        check(
            "dev1",
            "localhost/dev1/?model-id=dtmi:com:x",
            Err(IdentityError::InvalidModelId {
                model_id: "dtmi:com:x".into(),
                source: DtmiError::MissingVersion,
            }),
        );
    }

    #[test]
    fn derives_kind_client_id_and_sas_resource() {
        let check = |client_id: &str, username: &str, kind, resource: &str| {
            let endpoint = Endpoint::parse(client_id, username).unwrap();
            assert_eq!(endpoint.kind(), kind, "{username}");
            assert_eq!(endpoint.client_id(), client_id, "{username}");
            assert_eq!(endpoint.sas_resource(), resource, "{username}");
        };
        check(
            "dev1",
            "Example.COM/dev1/?",
            EndpointKind::Hub,
            "Example.COM/devices/dev1",
        );
        check(
            "dev1/m1",
            "h/dev1/m1/?",
            EndpointKind::Hub,
            "h/devices/dev1/modules/m1",
        );
        check(
            "r1",
            "0ne0000ABCD/registrations/r1/",
            EndpointKind::Dps,
            "0ne0000ABCD/registrations/r1",
        );
    }

    #[test]
    fn host_names_compare_ignoring_case() {
        assert_eq!(
            HostName::parse("Gyre.Example").unwrap(),
            HostName::parse("gyre.example").unwrap()
        );
        for host in ["127.0.0.1", "[::1]", "my_host-1.local"] {
            assert!(HostName::parse(host).is_ok(), "{host}");
        }
        for host in ["", "a/b", "a b", "a?b", &"h".repeat(254)] {
            assert!(HostName::parse(host).is_err(), "{host}");
        }
    }
}
