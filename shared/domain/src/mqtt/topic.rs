//! Topics as typed values: what a device publishes ([`DeviceTopic`]), what the cloud publishes
//! ([`CloudTopic`]), what the SDKs subscribe to ([`SubscriptionFilter`]), and the rule that a
//! connection acts only as its own identity.
//!
//! Shapes (`{bag}` is a [`MessageProperties`] bag; `$iothub/...` topics carry no device id, so
//! the bridge routes them by connection):
//! - device → cloud: `devices/{id}[/modules/{m}]/messages/events/{bag}`,
//!   `$iothub/twin/GET/?$rid=`, `$iothub/twin/PATCH/properties/reported/?$rid=[&$version=]`,
//!   `$iothub/methods/res/{status}/?$rid=`, `$dps/registrations/PUT/iotdps-register/?$rid=`,
//!   `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`.
//! - cloud → device, written exactly as the SDKs parse them (`$rid` first, the `/` before `?`
//!   kept): `$iothub/twin/res/{status}/?$rid=[&$version=]`,
//!   `$iothub/twin/PATCH/properties/desired/?$version=`, `$iothub/methods/POST/{name}/?$rid=`,
//!   `devices/{id}/messages/devicebound/{bag}`, `$dps/registrations/res/{status}/?$rid=[&retry-after=]`.
//! - filters: `$iothub/twin/res/#`, `$iothub/twin/PATCH/properties/desired/#`,
//!   `$iothub/methods/POST/#`, `devices/{id}/messages/devicebound/#`, `$dps/registrations/res/#`.
//!
//! Decisions where the reference is silent:
//! - Parsing device topics is lenient where it costs nothing: the `/` before `?` and the
//!   telemetry topic's trailing `/` may be missing, unknown query parameters are ignored, and a
//!   bag may hold raw `/`. Wildcards (`+`, `#`) in a published topic are refused (MQTT forbids them).
//! - `$rid` and `operationId` are opaque: percent-decoded, 1..=[`MAX_OPAQUE_ID_LEN`] characters
//!   without control characters, percent-encoded when echoed (UUIDs and digits stay as sent).
//! - A method response status is any `i32` (the device's own code); cloud statuses are `u16`.
//! - Method names: 1..=128 printable ASCII characters without `/ ? # +` (component commands
//!   travel as `component*command`).
//! - Identity checks compare device and module ids exactly (IoT Hub ids are case-sensitive). A
//!   module has no C2D subscription; a DPS connection may use only DPS topics, a hub connection
//!   only hub topics.
//!
//! Not owned here: QoS, packet ids and which subscriptions a session holds (the bridge), and
//! bodies (twin documents, DPS JSON).

use std::fmt;

use super::decode_query;
use super::identity::{Endpoint, EndpointKind, ModuleId};
use super::properties::{MessageProperties, PropertyError};
use crate::device::DeviceId;
use crate::percent;

/// Longest `$rid`, `operationId` and method name Gyre accepts (Gyre's cap: UUIDs are 36).
pub const MAX_OPAQUE_ID_LEN: usize = 128;

/// A request id (`$rid`) the device chose and the answer echoes.
/// Invariant: 1..=[`MAX_OPAQUE_ID_LEN`] characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

/// A DPS operation id (`operationId`), chosen by the bridge, echoed by the device.
/// Invariant: as [`RequestId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationId(String);

/// A direct method's name as it appears in `$iothub/methods/POST/{name}/`.
/// Invariant: 1..=[`MAX_OPAQUE_ID_LEN`] printable ASCII characters other than `/ ? # +`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MethodName(String);

fn is_opaque_id(raw: &str) -> bool {
    (1..=MAX_OPAQUE_ID_LEN).contains(&raw.chars().count()) && !raw.chars().any(char::is_control)
}

impl RequestId {
    pub fn parse(raw: &str) -> Result<RequestId, TopicError> {
        if is_opaque_id(raw) {
            Ok(RequestId(raw.to_owned()))
        } else {
            Err(invalid("$rid", raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl OperationId {
    pub fn parse(raw: &str) -> Result<OperationId, TopicError> {
        if is_opaque_id(raw) {
            Ok(OperationId(raw.to_owned()))
        } else {
            Err(invalid("operationId", raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl MethodName {
    pub fn parse(raw: &str) -> Result<MethodName, TopicError> {
        let valid_char = |b: u8| b.is_ascii_graphic() && !b"/?#+".contains(&b);
        if (1..=MAX_OPAQUE_ID_LEN).contains(&raw.len()) && raw.bytes().all(valid_char) {
            Ok(MethodName(raw.to_owned()))
        } else {
            Err(TopicError::InvalidMethodName { name: short(raw) })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a device publishes.
// Telemetry is both the largest and by far the most frequent variant: boxing it would add an
// allocation per message to save stack space on the rare twin and DPS topics.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceTopic {
    /// `devices/{id}[/modules/{m}]/messages/events/{bag}`
    Telemetry {
        device_id: DeviceId,
        module_id: Option<ModuleId>,
        properties: MessageProperties,
    },
    /// `$iothub/twin/GET/?$rid=`
    TwinGet { rid: RequestId },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=[&$version=]`
    TwinPatchReported {
        rid: RequestId,
        version: Option<u64>,
    },
    /// `$iothub/methods/res/{status}/?$rid=`
    MethodResponse { status: i32, rid: RequestId },
    /// `$dps/registrations/PUT/iotdps-register/?$rid=`
    DpsRegister { rid: RequestId },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`
    DpsOperationStatus {
        rid: RequestId,
        operation_id: OperationId,
    },
}

/// What the cloud publishes to a device.
// As for `DeviceTopic`: C2D is the large variant, and these values are short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudTopic {
    /// `$iothub/twin/res/{status}/?$rid=[&$version=]`
    TwinResponse {
        status: u16,
        rid: RequestId,
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version=`
    DesiredPatch { version: u64 },
    /// `$iothub/methods/POST/{name}/?$rid=`
    MethodRequest { name: MethodName, rid: RequestId },
    /// `devices/{id}/messages/devicebound/{bag}`
    C2d {
        device_id: DeviceId,
        properties: MessageProperties,
    },
    /// `$dps/registrations/res/{status}/?$rid=[&retry-after=]`
    DpsResponse {
        status: u16,
        rid: RequestId,
        retry_after_secs: Option<u32>,
    },
}

/// A topic filter the SDKs subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionFilter {
    /// `$iothub/twin/res/#`
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`
    DesiredPatches,
    /// `$iothub/methods/POST/#`
    MethodRequests,
    /// `devices/{id}/messages/devicebound/#`
    C2d { device_id: DeviceId },
    /// `$dps/registrations/res/#`
    DpsResponses,
}

/// Why a topic or filter is not one of the dialect's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("topic '{topic}' is not one a device may publish to")]
    UnknownTopic { topic: String },
    #[error("topic '{topic}' is not a topic the cloud publishes")]
    UnknownCloudTopic { topic: String },
    #[error("filter '{filter}' is not one Gyre serves")]
    UnsupportedFilter { filter: String },
    #[error("published topic '{topic}' holds a wildcard")]
    Wildcard { topic: String },
    #[error("'{device_id}' in the topic is not a valid device id")]
    InvalidDeviceId { device_id: String },
    #[error("'{module_id}' in the topic is not a valid module id")]
    InvalidModuleId { module_id: String },
    #[error("'{status}' is not a status code")]
    InvalidStatus { status: String },
    #[error("'{name}' is not a method name")]
    InvalidMethodName { name: String },
    #[error("topic lacks '{name}'")]
    MissingParameter { name: &'static str },
    #[error("topic has '{name}' twice")]
    DuplicateParameter { name: &'static str },
    #[error("topic parameter '{name}' has invalid value '{value}'")]
    InvalidParameter { name: &'static str, value: String },
    #[error("topic parameter '{segment}' has bad percent-encoding")]
    BadPercentEncoding { segment: String },
    #[error("bad property bag: {0}")]
    Properties(#[from] PropertyError),
}

/// Why a connection may not use a topic it parsed fine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    #[error("client '{client_id}' may not act as '{topic_identity}'")]
    NotThisDevice {
        client_id: String,
        topic_identity: String,
    },
    #[error("a {kind:?} connection may not use {what}")]
    WrongEndpoint {
        kind: EndpointKind,
        what: &'static str,
    },
}

// Device → cloud paths.
const TWIN_GET: &str = "$iothub/twin/GET";
const TWIN_PATCH_REPORTED: &str = "$iothub/twin/PATCH/properties/reported";
const METHOD_RESPONSE: &str = "$iothub/methods/res/";
const DPS_REGISTER: &str = "$dps/registrations/PUT/iotdps-register";
const DPS_OPERATION_STATUS: &str = "$dps/registrations/GET/iotdps-get-operationstatus";
// Cloud → device paths.
const TWIN_RESPONSE: &str = "$iothub/twin/res/";
const DESIRED_PATCH: &str = "$iothub/twin/PATCH/properties/desired";
const METHOD_REQUEST: &str = "$iothub/methods/POST/";
const DPS_RESPONSE: &str = "$dps/registrations/res/";

/// Parses the topic of a PUBLISH from a device.
pub fn parse_publish_topic(topic: &str) -> Result<DeviceTopic, TopicError> {
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard {
            topic: short(topic),
        });
    }
    let unknown = || TopicError::UnknownTopic {
        topic: short(topic),
    };
    if let Some(rest) = topic.strip_prefix("devices/") {
        return parse_telemetry(rest).unwrap_or_else(|| Err(unknown()));
    }
    if let Some(query) = query_after(topic, TWIN_GET) {
        let mut params = Params::decode(query)?;
        return Ok(DeviceTopic::TwinGet { rid: params.rid()? });
    }
    if let Some(query) = query_after(topic, TWIN_PATCH_REPORTED) {
        let mut params = Params::decode(query)?;
        return Ok(DeviceTopic::TwinPatchReported {
            rid: params.rid()?,
            version: params.number("$version")?,
        });
    }
    if let Some((status, query)) = status_and_query(topic, METHOD_RESPONSE) {
        let status = status.parse().map_err(|_| TopicError::InvalidStatus {
            status: short(status),
        })?;
        let mut params = Params::decode(query)?;
        return Ok(DeviceTopic::MethodResponse {
            status,
            rid: params.rid()?,
        });
    }
    if let Some(query) = query_after(topic, DPS_REGISTER) {
        let mut params = Params::decode(query)?;
        return Ok(DeviceTopic::DpsRegister { rid: params.rid()? });
    }
    if let Some(query) = query_after(topic, DPS_OPERATION_STATUS) {
        let mut params = Params::decode(query)?;
        let rid = params.rid()?;
        let operation_id = params
            .take("operationId")?
            .ok_or(TopicError::MissingParameter {
                name: "operationId",
            })?;
        return Ok(DeviceTopic::DpsOperationStatus {
            rid,
            operation_id: OperationId::parse(&operation_id)?,
        });
    }
    Err(unknown())
}

/// `rest` is what follows `devices/`. `None` when it is not a telemetry topic at all.
fn parse_telemetry(rest: &str) -> Option<Result<DeviceTopic, TopicError>> {
    let (identity, bag) = match rest.split_once("/messages/events") {
        Some((identity, "")) => (identity, ""),
        Some((identity, after)) => (identity, after.strip_prefix('/')?),
        None => return None,
    };
    let (device_id, module_id) = match identity.split_once("/modules/") {
        Some((device_id, module_id)) => (device_id, Some(module_id)),
        None => (identity, None),
    };
    let parsed = (|| {
        let device_id = parse_device_id(device_id)?;
        let module_id = module_id
            .map(|raw| {
                ModuleId::parse(raw).map_err(|_| TopicError::InvalidModuleId {
                    module_id: short(raw),
                })
            })
            .transpose()?;
        Ok(DeviceTopic::Telemetry {
            device_id,
            module_id,
            properties: MessageProperties::parse_bag(bag)?,
        })
    })();
    Some(parsed)
}

impl fmt::Display for DeviceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceTopic::Telemetry {
                device_id,
                module_id,
                properties,
            } => {
                write!(f, "devices/{device_id}/")?;
                if let Some(module_id) = module_id {
                    write!(f, "modules/{module_id}/")?;
                }
                write!(f, "messages/events/{}", properties.format_bag())
            }
            DeviceTopic::TwinGet { rid } => write!(f, "{TWIN_GET}/?$rid={}", enc(rid.as_str())),
            DeviceTopic::TwinPatchReported { rid, version } => {
                write!(f, "{TWIN_PATCH_REPORTED}/?$rid={}", enc(rid.as_str()))?;
                match version {
                    Some(version) => write!(f, "&$version={version}"),
                    None => Ok(()),
                }
            }
            DeviceTopic::MethodResponse { status, rid } => {
                write!(f, "{METHOD_RESPONSE}{status}/?$rid={}", enc(rid.as_str()))
            }
            DeviceTopic::DpsRegister { rid } => {
                write!(f, "{DPS_REGISTER}/?$rid={}", enc(rid.as_str()))
            }
            DeviceTopic::DpsOperationStatus { rid, operation_id } => write!(
                f,
                "{DPS_OPERATION_STATUS}/?$rid={}&operationId={}",
                enc(rid.as_str()),
                enc(operation_id.as_str())
            ),
        }
    }
}

impl CloudTopic {
    /// Parses a topic the cloud published: what a device-side client (the load generator)
    /// receives. The bridge writes these with `to_string()`.
    pub fn parse(topic: &str) -> Result<CloudTopic, TopicError> {
        let unknown = || TopicError::UnknownCloudTopic {
            topic: short(topic),
        };
        if let Some(rest) = topic.strip_prefix("devices/") {
            let (device_id, bag) = rest
                .split_once("/messages/devicebound/")
                .ok_or_else(unknown)?;
            return Ok(CloudTopic::C2d {
                device_id: parse_device_id(device_id)?,
                properties: MessageProperties::parse_bag(bag)?,
            });
        }
        if let Some((status, query)) = status_and_query(topic, TWIN_RESPONSE) {
            let mut params = Params::decode(query)?;
            return Ok(CloudTopic::TwinResponse {
                status: parse_status(status)?,
                rid: params.rid()?,
                version: params.number("$version")?,
            });
        }
        if let Some(query) = query_after(topic, DESIRED_PATCH) {
            let mut params = Params::decode(query)?;
            return Ok(CloudTopic::DesiredPatch {
                version: params
                    .number("$version")?
                    .ok_or(TopicError::MissingParameter { name: "$version" })?,
            });
        }
        if let Some((name, query)) = status_and_query(topic, METHOD_REQUEST) {
            let mut params = Params::decode(query)?;
            return Ok(CloudTopic::MethodRequest {
                name: MethodName::parse(name)?,
                rid: params.rid()?,
            });
        }
        if let Some((status, query)) = status_and_query(topic, DPS_RESPONSE) {
            let mut params = Params::decode(query)?;
            return Ok(CloudTopic::DpsResponse {
                status: parse_status(status)?,
                rid: params.rid()?,
                retry_after_secs: params.number("retry-after")?,
            });
        }
        Err(unknown())
    }
}

impl fmt::Display for CloudTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudTopic::TwinResponse {
                status,
                rid,
                version,
            } => {
                write!(f, "{TWIN_RESPONSE}{status}/?$rid={}", enc(rid.as_str()))?;
                match version {
                    Some(version) => write!(f, "&$version={version}"),
                    None => Ok(()),
                }
            }
            CloudTopic::DesiredPatch { version } => {
                write!(f, "{DESIRED_PATCH}/?$version={version}")
            }
            CloudTopic::MethodRequest { name, rid } => {
                write!(
                    f,
                    "{METHOD_REQUEST}{}/?$rid={}",
                    name.as_str(),
                    enc(rid.as_str())
                )
            }
            CloudTopic::C2d {
                device_id,
                properties,
            } => write!(
                f,
                "devices/{device_id}/messages/devicebound/{}",
                properties.format_bag()
            ),
            CloudTopic::DpsResponse {
                status,
                rid,
                retry_after_secs,
            } => {
                write!(f, "{DPS_RESPONSE}{status}/?$rid={}", enc(rid.as_str()))?;
                match retry_after_secs {
                    Some(secs) => write!(f, "&retry-after={secs}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl SubscriptionFilter {
    /// Parses a SUBSCRIBE topic filter.
    pub fn parse(filter: &str) -> Result<SubscriptionFilter, TopicError> {
        let unsupported = || TopicError::UnsupportedFilter {
            filter: short(filter),
        };
        Ok(match filter {
            "$iothub/twin/res/#" => SubscriptionFilter::TwinResponses,
            "$iothub/twin/PATCH/properties/desired/#" => SubscriptionFilter::DesiredPatches,
            "$iothub/methods/POST/#" => SubscriptionFilter::MethodRequests,
            "$dps/registrations/res/#" => SubscriptionFilter::DpsResponses,
            _ => {
                let device_id = filter
                    .strip_prefix("devices/")
                    .and_then(|rest| rest.strip_suffix("/messages/devicebound/#"))
                    .ok_or_else(unsupported)?;
                if device_id.contains(['+', '#']) {
                    return Err(unsupported());
                }
                SubscriptionFilter::C2d {
                    device_id: parse_device_id(device_id)?,
                }
            }
        })
    }

    /// Whether a message on `topic` goes to a subscriber of this filter.
    pub fn matches(&self, topic: &CloudTopic) -> bool {
        match (self, topic) {
            (SubscriptionFilter::TwinResponses, CloudTopic::TwinResponse { .. })
            | (SubscriptionFilter::DesiredPatches, CloudTopic::DesiredPatch { .. })
            | (SubscriptionFilter::MethodRequests, CloudTopic::MethodRequest { .. })
            | (SubscriptionFilter::DpsResponses, CloudTopic::DpsResponse { .. }) => true,
            (
                SubscriptionFilter::C2d { device_id },
                CloudTopic::C2d {
                    device_id: target, ..
                },
            ) => device_id == target,
            _ => false,
        }
    }
}

impl fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionFilter::TwinResponses => f.write_str("$iothub/twin/res/#"),
            SubscriptionFilter::DesiredPatches => {
                f.write_str("$iothub/twin/PATCH/properties/desired/#")
            }
            SubscriptionFilter::MethodRequests => f.write_str("$iothub/methods/POST/#"),
            SubscriptionFilter::C2d { device_id } => {
                write!(f, "devices/{device_id}/messages/devicebound/#")
            }
            SubscriptionFilter::DpsResponses => f.write_str("$dps/registrations/res/#"),
        }
    }
}

/// A device publishes only as itself, and only to its endpoint's topics.
pub fn authorize_publish(endpoint: &Endpoint, topic: &DeviceTopic) -> Result<(), AccessError> {
    let dps_topic = matches!(
        topic,
        DeviceTopic::DpsRegister { .. } | DeviceTopic::DpsOperationStatus { .. }
    );
    match endpoint {
        Endpoint::Dps { .. } if dps_topic => Ok(()),
        Endpoint::Dps { .. } => Err(AccessError::WrongEndpoint {
            kind: EndpointKind::Dps,
            what: "IoT Hub topics",
        }),
        Endpoint::Hub { .. } if dps_topic => Err(AccessError::WrongEndpoint {
            kind: EndpointKind::Hub,
            what: "DPS topics",
        }),
        Endpoint::Hub {
            device_id,
            module_id,
            ..
        } => match topic {
            DeviceTopic::Telemetry {
                device_id: topic_device,
                module_id: topic_module,
                ..
            } if (topic_device, topic_module) != (device_id, module_id) => {
                Err(AccessError::NotThisDevice {
                    client_id: endpoint.client_id(),
                    topic_identity: match topic_module {
                        Some(module) => format!("{topic_device}/{module}"),
                        None => topic_device.to_string(),
                    },
                })
            }
            _ => Ok(()),
        },
    }
}

/// A device subscribes only to its own C2D messages, and only to its endpoint's topics.
pub fn authorize_subscription(
    endpoint: &Endpoint,
    filter: &SubscriptionFilter,
) -> Result<(), AccessError> {
    match (endpoint, filter) {
        (Endpoint::Dps { .. }, SubscriptionFilter::DpsResponses) => Ok(()),
        (Endpoint::Dps { .. }, _) => Err(AccessError::WrongEndpoint {
            kind: EndpointKind::Dps,
            what: "IoT Hub topics",
        }),
        (Endpoint::Hub { .. }, SubscriptionFilter::DpsResponses) => {
            Err(AccessError::WrongEndpoint {
                kind: EndpointKind::Hub,
                what: "DPS topics",
            })
        }
        (
            Endpoint::Hub {
                device_id,
                module_id,
                ..
            },
            SubscriptionFilter::C2d { device_id: target },
        ) if module_id.is_some() || device_id != target => Err(AccessError::NotThisDevice {
            client_id: endpoint.client_id(),
            topic_identity: target.to_string(),
        }),
        (Endpoint::Hub { .. }, _) => Ok(()),
    }
}

/// What follows `path` when the topic is `path`, `path/`, `path?q` or `path/?q`.
fn query_after<'a>(topic: &'a str, path: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix(path)?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('?')
    }
}

/// For `{prefix}{segment}[/][?query]`: the segment and the query.
fn status_and_query<'a>(topic: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(prefix)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (segment, after) = rest.split_at(end);
    Some((segment, query_after(after, "")?))
}

fn parse_status(raw: &str) -> Result<u16, TopicError> {
    let invalid = || TopicError::InvalidStatus { status: short(raw) };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    raw.parse().map_err(|_| invalid())
}

fn parse_device_id(raw: &str) -> Result<DeviceId, TopicError> {
    DeviceId::parse(raw).map_err(|_| TopicError::InvalidDeviceId {
        device_id: short(raw),
    })
}

fn enc(raw: &str) -> String {
    percent::encode(raw)
}

fn invalid(name: &'static str, value: &str) -> TopicError {
    TopicError::InvalidParameter {
        name,
        value: short(value),
    }
}

/// Error fields echo client input: keep them short enough for a log line.
fn short(raw: &str) -> String {
    raw.chars().take(300).collect()
}

/// Decoded query parameters, from which known ones are taken out by name; the rest is ignored.
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn decode(query: &str) -> Result<Params, TopicError> {
        let pairs = decode_query(query).map_err(|segment| TopicError::BadPercentEncoding {
            segment: short(segment),
        })?;
        Ok(Params { pairs })
    }

    fn take(&mut self, name: &'static str) -> Result<Option<String>, TopicError> {
        let mut found = None;
        for (_, value) in self.pairs.iter_mut().filter(|(key, _)| key == name) {
            if found.is_some() {
                return Err(TopicError::DuplicateParameter { name });
            }
            found = Some(std::mem::take(value));
        }
        Ok(found)
    }

    fn rid(&mut self) -> Result<RequestId, TopicError> {
        let rid = self
            .take("$rid")?
            .ok_or(TopicError::MissingParameter { name: "$rid" })?;
        RequestId::parse(&rid)
    }

    fn number<T: std::str::FromStr>(
        &mut self,
        name: &'static str,
    ) -> Result<Option<T>, TopicError> {
        self.take(name)?
            .map(|raw| {
                let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
                digits
                    .then(|| raw.parse().ok())
                    .flatten()
                    .ok_or_else(|| invalid(name, &raw))
            })
            .transpose()
    }
}
