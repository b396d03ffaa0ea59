//! The JSON of `/devices/{id}`, `/devices/{id}/credentials` and `/devices/{id}/attestation`,
//! converted explicitly to and from [`Device`].
//!
//! Decisions where IoT Central is silent:
//! - `displayName` defaults to the device id, as IoT Central's UI does; 1 to 148 characters.
//! - `template` may be left out or `null`: the device is unassigned. When given it must be a
//!   DTMI; that it names an existing template is the caller's check (it needs the store).
//! - `organizations` holds at most one id (IoT Central: "only one organization is supported
//!   today"); there is no organizations API yet, so any well-formed id is accepted.
//! - Read-only `id`, `etag` and `provisioned` may be sent back (so a GET body can be PUT or
//!   merged); `id` must then match the path, and the other two are ignored. Unknown fields are
//!   refused, so a misspelt field is an error rather than silently ignored.
//! - A device created without an attestation gets an individual symmetric-key enrollment with
//!   two fresh keys (32 random bytes each), as IoT Central shows every new device's SAS keys.
//! - Attestation: only `symmetricKey`; `tpm` and `x509` are refused as not supported yet. Keys
//!   left out of a PUT, or set to `null` by a PATCH, are generated; setting a key replaces
//!   (revokes) the old one.

use serde::{Deserialize, Serialize};

use crate::auth::OrganizationId;
use crate::dtdl::Dtmi;
pub use crate::enrollment::InvalidAttestation;
use crate::enrollment::{attested_keys, IdScope, SymmetricKeyBody, SymmetricKeys};

use super::{Device, DeviceId, MAX_DEVICE_DISPLAY_NAME};

/// IoT Central's `Device` JSON, in (PUT, and PATCH on the merged document) and out (GET).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizations: Option<Vec<String>>,
}

/// Why a body does not describe a valid device. Messages name the JSON field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDevice {
    #[error("`id` is `{body_id}` in the body but `{path_id}` in the path")]
    IdMismatch { body_id: String, path_id: String },
    #[error("`displayName` must be 1 to {MAX_DEVICE_DISPLAY_NAME} characters")]
    BadDisplayName,
    #[error("`template` is not a DTMI: {reason}")]
    BadTemplate { reason: String },
    #[error("`organizations` holds at most one organization id")]
    TooManyOrganizations,
    #[error("`organizations[0]`: {reason}")]
    BadOrganization { reason: String },
}

impl DeviceBody {
    /// This body as a JSON document, the target a merge patch applies to.
    pub fn to_document(&self) -> serde_json::Value {
        // Serializing strings, booleans and arrays of strings cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A (patched) JSON document read back as a body; the error says which field is wrong.
    pub fn from_document(document: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(document)
    }

    /// The wire form of `device`.
    pub fn from_device(device: &Device) -> DeviceBody {
        DeviceBody {
            id: Some(device.id.as_str().to_owned()),
            etag: Some(device.etag.clone()),
            display_name: Some(device.display_name.clone()),
            template: device
                .template
                .as_ref()
                .map(|template| template.as_str().to_owned()),
            enabled: Some(device.enabled),
            provisioned: Some(device.provisioned),
            simulated: Some(device.simulated),
            organizations: device
                .organization
                .as_ref()
                .map(|organization| vec![organization.as_str().to_owned()]),
        }
    }

    /// A new device registered through the API (so approved, not provisioned), with fresh
    /// individual keys from `random`.
    pub fn to_new_device(
        &self,
        id: &DeviceId,
        etag: String,
        random: [u8; 64],
    ) -> Result<Device, InvalidDevice> {
        let fields = self.fields(id)?;
        Ok(Device {
            id: id.clone(),
            etag,
            display_name: fields.display_name,
            template: fields.template,
            enabled: fields.enabled.unwrap_or(true),
            provisioned: false,
            simulated: fields.simulated.unwrap_or(false),
            approved: true,
            organization: fields.organization,
            keys: Some(SymmetricKeys::from_random(random)),
        })
    }

    /// `current` changed as this (merged) body says; `provisioned` and keys are kept, and
    /// enabling approves ([`Device::set_enabled`]).
    pub fn to_updated_device(
        &self,
        current: &Device,
        etag: String,
    ) -> Result<Device, InvalidDevice> {
        let fields = self.fields(&current.id)?;
        let mut device = current.clone();
        device.etag = etag;
        device.display_name = fields.display_name;
        device.template = fields.template;
        device.simulated = fields.simulated.unwrap_or(current.simulated);
        device.organization = fields.organization;
        device.set_enabled(fields.enabled.unwrap_or(current.enabled));
        Ok(device)
    }

    fn fields(&self, id: &DeviceId) -> Result<Fields, InvalidDevice> {
        if let Some(body_id) = &self.id {
            if body_id != id.as_str() {
                return Err(InvalidDevice::IdMismatch {
                    body_id: body_id.clone(),
                    path_id: id.as_str().to_owned(),
                });
            }
        }
        let display_name = self
            .display_name
            .clone()
            .unwrap_or_else(|| id.as_str().to_owned());
        let n_chars = display_name.chars().count();
        if n_chars == 0 || n_chars > MAX_DEVICE_DISPLAY_NAME {
            return Err(InvalidDevice::BadDisplayName);
        }
        let template = self
            .template
            .as_deref()
            .map(Dtmi::parse)
            .transpose()
            .map_err(|error| InvalidDevice::BadTemplate {
                reason: error.to_string(),
            })?;
        let organization = match self.organizations.as_deref() {
            None | Some([]) => None,
            Some([organization]) => Some(OrganizationId::parse(organization).map_err(|error| {
                InvalidDevice::BadOrganization {
                    reason: error.to_string(),
                }
            })?),
            Some(_) => return Err(InvalidDevice::TooManyOrganizations),
        };
        Ok(Fields {
            display_name,
            template,
            enabled: self.enabled,
            simulated: self.simulated,
            organization,
        })
    }
}

struct Fields {
    display_name: String,
    template: Option<Dtmi>,
    enabled: Option<bool>,
    simulated: Option<bool>,
    organization: Option<OrganizationId>,
}

/// `GET /devices/{id}/credentials`: IoT Central's `DeviceCredentials`, symmetric keys only.
/// `symmetricKey` is left out when the device has no keys (no individual enrollment and no
/// enrollment group to derive them from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCredentials {
    pub id_scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyBody>,
}

impl DeviceCredentials {
    pub fn new(id_scope: &IdScope, keys: Option<&SymmetricKeys>) -> DeviceCredentials {
        DeviceCredentials {
            id_scope: id_scope.as_str().to_owned(),
            symmetric_key: keys.map(SymmetricKeyBody::from_keys),
        }
    }
}

/// IoT Central's `Attestation` (discriminator `type`). `tpm` and `x509` are parsed only so
/// they can be refused with a clear message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestationBody {
    #[serde(rename = "type")]
    pub attestation_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<serde_json::Value>,
}

impl AttestationBody {
    /// This body as a JSON document, the target a merge patch applies to.
    pub fn to_document(&self) -> serde_json::Value {
        // Serializing strings, booleans and arrays of strings cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A (patched) JSON document read back as a body; the error says which field is wrong.
    pub fn from_document(document: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(document)
    }

    pub fn from_keys(keys: &SymmetricKeys) -> AttestationBody {
        AttestationBody {
            attestation_type: "symmetricKey".to_owned(),
            symmetric_key: Some(SymmetricKeyBody::from_keys(keys)),
            tpm: None,
            x509: None,
        }
    }

    /// The keys this body sets; each one left out is made from `random`.
    pub fn to_keys(&self, random: [u8; 64]) -> Result<SymmetricKeys, InvalidAttestation> {
        attested_keys(&self.attestation_type, self.symmetric_key.as_ref(), random)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::device::DeviceStatus;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn id() -> DeviceId {
        DeviceId::parse("d1").unwrap()
    }

    fn create(body: serde_json::Value) -> Result<Device, String> {
        let body: DeviceBody = serde_json::from_value(body).map_err(|error| error.to_string())?;
        body.to_new_device(&id(), "\"e1\"".into(), [3; 64])
            .map_err(|error| error.to_string())
    }

    #[test]
    fn iot_centrals_create_example_round_trips() {
        let device = create(json!({
            "displayName": "CheckoutThermostatccc",
            "template": "dtmi:contoso:testDeviceTemplate;1",
            "simulated": true, "enabled": true, "organizations": ["seattle"],
        }))
        .unwrap();
        assert_eq!(device.status(), DeviceStatus::Registered);
        assert_eq!(device.keys, Some(SymmetricKeys::from_random([3; 64])));
        assert_eq!(
            serde_json::to_value(DeviceBody::from_device(&device)).unwrap(),
            json!({
                "id": "d1", "etag": "\"e1\"", "displayName": "CheckoutThermostatccc",
                "template": "dtmi:contoso:testDeviceTemplate;1", "enabled": true,
                "provisioned": false, "simulated": true, "organizations": ["seattle"],
            })
        );
    }

    #[test]
    fn an_empty_body_makes_an_unassigned_enabled_device_named_after_its_id() {
        let device = create(json!({})).unwrap();
        assert_eq!(device.display_name, "d1");
        assert!(device.is_unassigned());
        assert!(device.enabled && !device.simulated && !device.provisioned);
        assert_eq!(
            serde_json::to_value(DeviceBody::from_device(&device)).unwrap(),
            json!({"id": "d1", "etag": "\"e1\"", "displayName": "d1", "enabled": true,
                   "provisioned": false, "simulated": false})
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let check = |body: serde_json::Value, expected: &str| {
            let error = create(body.clone()).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        };
        check(json!({"id": "d2"}), "`d2` in the body but `d1` in the path");
        check(json!({"displayName": ""}), "1 to 148");
        check(json!({"displayName": "x".repeat(149)}), "1 to 148");
        check(
            json!({"template": "thermostat"}),
            "`template` is not a DTMI",
        );
        check(json!({"organizations": ["a1", "b2"]}), "at most one");
        check(json!({"organizations": ["Seattle"]}), "`organizations[0]`");
        check(json!({"enabled": "yes"}), "invalid type: string");
        check(json!({"displayname": "x"}), "unknown field `displayname`");
        check(json!({"organizations": "seattle"}), "invalid type: string");
    }

    #[test]
    fn read_only_fields_sent_back_are_ignored() {
        let device = create(json!({"id": "d1", "etag": "x", "provisioned": true})).unwrap();
        assert!(!device.provisioned);
        assert_eq!(device.etag, "\"e1\"");
    }

    #[test]
    fn updates_keep_provisioning_and_keys_and_enabling_approves() {
        let mut current = create(json!({"template": "dtmi:a:b;1"})).unwrap();
        current.provisioned = true;
        current.approved = false;
        current.enabled = false;
        let mut merged = DeviceBody::from_device(&current);
        merged.enabled = Some(true);
        merged.template = None;
        merged.provisioned = Some(false);
        let updated = merged.to_updated_device(&current, "\"e2\"".into()).unwrap();
        assert!(updated.provisioned && updated.enabled && updated.approved);
        assert!(updated.is_unassigned());
        assert_eq!(updated.keys, current.keys);
        assert_eq!(updated.etag, "\"e2\"");
    }

    #[test]
    fn credentials_and_attestations_have_iot_centrals_shape() {
        let keys = SymmetricKeys::from_random([5; 64]);
        let scope = IdScope::parse("0ne0004CB9A").unwrap();
        assert_eq!(
            serde_json::to_value(DeviceCredentials::new(&scope, Some(&keys))).unwrap(),
            json!({"idScope": "0ne0004CB9A", "symmetricKey": {
                "primaryKey": keys.primary.as_str(), "secondaryKey": keys.secondary.as_str()}})
        );
        assert_eq!(
            serde_json::to_value(DeviceCredentials::new(&scope, None)).unwrap(),
            json!({"idScope": "0ne0004CB9A"})
        );
        assert_eq!(
            serde_json::to_value(AttestationBody::from_keys(&keys)).unwrap(),
            json!({"type": "symmetricKey", "symmetricKey": {
                "primaryKey": keys.primary.as_str(), "secondaryKey": keys.secondary.as_str()}})
        );
    }

    #[test]
    fn attestation_bodies_set_keys_or_are_refused() {
        let check = |body: serde_json::Value, expected: Result<(Option<&str>, bool), &str>| {
            let parsed: Result<SymmetricKeys, String> =
                serde_json::from_value::<AttestationBody>(body.clone())
                    .map_err(|error| error.to_string())
                    .and_then(|body| body.to_keys([8; 64]).map_err(|error| error.to_string()));
            match (parsed, expected) {
                (Ok(keys), Ok((primary, secondary_generated))) => {
                    let fresh = SymmetricKeys::from_random([8; 64]);
                    assert_eq!(
                        keys.primary.as_str(),
                        primary.unwrap_or(fresh.primary.as_str()),
                        "{body}"
                    );
                    assert_eq!(
                        keys.secondary == fresh.secondary,
                        secondary_generated,
                        "{body}"
                    );
                }
                (Err(error), Err(expected)) => assert!(error.contains(expected), "{error}"),
                (parsed, expected) => panic!("{body}: {parsed:?}, expected {expected:?}"),
            }
        };
        check(json!({"type": "symmetricKey"}), Ok((None, true)));
        check(
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": K1}}),
            Ok((Some(K1), true)),
        );
        check(
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": K1, "secondaryKey": K1}}),
            Ok((Some(K1), false)),
        );
        check(
            json!({"type": "tpm", "tpm": {"endorsementKey": "x"}}),
            Err("`tpm` is not supported yet"),
        );
        check(
            json!({"type": "x509", "x509": {}}),
            Err("`x509` is not supported yet"),
        );
        check(
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": "abc"}}),
            Err("`symmetricKey.primaryKey`: a key must"),
        );
        check(json!({"symmetricKey": {}}), Err("missing field `type`"));
    }
}
