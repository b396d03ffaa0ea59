//! Enrollment groups ("device connection groups" in IoT Central's UI) with symmetric-key
//! attestation: the entity, its id, and its JSON wire shapes.
//!
//! Decisions where IoT Central is silent or Gyre differs:
//! - Only `type: "iot"` with `symmetricKey` attestation is supported; `iotEdge` and `x509` are
//!   refused with "not supported yet" rather than stored half-working.
//! - `attestation` may be left out on create, and either key may be left out or set to `null`
//!   by a merge patch: a missing key is generated (32 random bytes). Setting a key is rotating
//!   it; devices holding keys derived from the old one stop provisioning.
//! - `autoApprove` (Gyre's field; a per-group toggle in IoT Central's UI only) says whether a
//!   device that provisions through this group without being registered first is enabled at
//!   once (`true`, the default) or waits for an operator's approval.
//! - `displayName` is 1 to 255 characters. Unknown fields are refused, so a misspelt field is an
//!   error rather than silently ignored; the read-only `id` and `etag` are accepted (so a GET
//!   body can be sent back) and `id` must then match the path.
//!
//! This file owns no storage (see `store::enrollment_groups`) and no randomness.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::keys::{InvalidKey, SymmetricKey, SymmetricKeys};

/// IoT Central's rule for enrollment group ids: `^[a-zA-Z0-9-]*$`, at most 255 characters;
/// Gyre also refuses the empty id. Enforced only by [`EnrollmentGroupId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnrollmentGroupId(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an enrollment group id is 1 to 255 letters, digits or '-'")]
pub struct InvalidEnrollmentGroupId;

impl EnrollmentGroupId {
    pub fn parse(raw: &str) -> Result<EnrollmentGroupId, InvalidEnrollmentGroupId> {
        let valid = (1..=255).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        if valid {
            Ok(EnrollmentGroupId(raw.to_owned()))
        } else {
            Err(InvalidEnrollmentGroupId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnrollmentGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest `displayName` of an enrollment group.
pub const MAX_GROUP_DISPLAY_NAME: usize = 255;

/// A symmetric-key enrollment group of type `iot`. Fields carry no invariant beyond their
/// types, so they are public.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentGroup {
    pub id: EnrollmentGroupId,
    /// Opaque; changes on every write.
    pub etag: String,
    pub display_name: String,
    pub enabled: bool,
    pub keys: SymmetricKeys,
    pub auto_approve: bool,
}

/// The only group type Gyre supports so far, stored and sent as `iot`.
pub const GROUP_TYPE_IOT: &str = "iot";

/// Why a body does not describe a valid enrollment group. Messages name the JSON field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnrollmentGroup {
    #[error("`{field}` is required")]
    Missing { field: &'static str },
    #[error("`id` is `{body_id}` in the body but `{path_id}` in the path")]
    IdMismatch { body_id: String, path_id: String },
    #[error("`displayName` must be 1 to {MAX_GROUP_DISPLAY_NAME} characters")]
    BadDisplayName,
    #[error("`type` `{found}` is not supported yet; only `iot` is")]
    UnsupportedType { found: String },
    #[error("`type` cannot be changed from `iot` to `{found}`")]
    TypeChange { found: String },
    #[error("attestation type `{found}` is not supported yet; only `symmetricKey` is")]
    UnsupportedAttestation { found: String },
    #[error("`attestation.symmetricKey.{field}`: {source}")]
    BadKey {
        field: &'static str,
        source: InvalidKey,
    },
}

/// The JSON of an enrollment group, in and out: IoT Central's `EnrollmentGroup` plus
/// `autoApprove`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentGroupBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub group_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<GroupAttestationBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
}

/// IoT Central's `GroupAttestation`: `{"type": "symmetricKey", "symmetricKey": {...}}`.
/// `x509` is accepted by the parser only to be refused with a clear message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupAttestationBody {
    #[serde(rename = "type")]
    pub attestation_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<serde_json::Value>,
}

/// `{"primaryKey", "secondaryKey"}`, shared with a device's individual attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SymmetricKeyBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

impl SymmetricKeyBody {
    pub fn from_keys(keys: &SymmetricKeys) -> SymmetricKeyBody {
        SymmetricKeyBody {
            primary_key: Some(keys.primary.as_str().to_owned()),
            secondary_key: Some(keys.secondary.as_str().to_owned()),
        }
    }

    /// The keys given, with a fresh key (from `random`) for each one left out.
    pub fn to_keys(&self, random: [u8; 64]) -> Result<SymmetricKeys, InvalidKey> {
        self.to_keys_named(random).map_err(|(_, error)| error)
    }

    /// Like [`SymmetricKeyBody::to_keys`], saying which field was wrong.
    pub fn to_keys_named(
        &self,
        random: [u8; 64],
    ) -> Result<SymmetricKeys, (&'static str, InvalidKey)> {
        let fresh = SymmetricKeys::from_random(random);
        let parse = |raw: &Option<String>, field: &'static str, fresh: SymmetricKey| match raw {
            Some(raw) => SymmetricKey::parse(raw).map_err(|error| (field, error)),
            None => Ok(fresh),
        };
        Ok(SymmetricKeys {
            primary: parse(&self.primary_key, "primaryKey", fresh.primary)?,
            secondary: parse(&self.secondary_key, "secondaryKey", fresh.secondary)?,
        })
    }
}

/// Why an attestation body (a device's or a group's) gives no keys. Messages name the fields
/// inside the attestation; callers add their own path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAttestation {
    #[error("attestation type `{found}` is not supported yet; only `symmetricKey` is")]
    Unsupported { found: String },
    #[error("`symmetricKey.{field}`: {source}")]
    BadKey {
        field: &'static str,
        source: InvalidKey,
    },
}

/// The keys an attestation of `attestation_type` sets: only `symmetricKey` is supported; the
/// whole key body, or either key, left out is made from `random`.
pub fn attested_keys(
    attestation_type: &str,
    body: Option<&SymmetricKeyBody>,
    random: [u8; 64],
) -> Result<SymmetricKeys, InvalidAttestation> {
    if attestation_type != "symmetricKey" {
        return Err(InvalidAttestation::Unsupported {
            found: attestation_type.to_owned(),
        });
    }
    match body {
        None => Ok(SymmetricKeys::from_random(random)),
        Some(body) => body
            .to_keys_named(random)
            .map_err(|(field, source)| InvalidAttestation::BadKey { field, source }),
    }
}

impl EnrollmentGroupBody {
    /// This body as a JSON document, the target a merge patch applies to.
    pub fn to_document(&self) -> serde_json::Value {
        // Serializing strings, booleans and arrays of strings cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A (patched) JSON document read back as a body; the error says which field is wrong.
    pub fn from_document(document: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(document)
    }

    /// The wire form of `group` (what GET returns; also the document a merge patch applies to).
    pub fn from_group(group: &EnrollmentGroup) -> EnrollmentGroupBody {
        EnrollmentGroupBody {
            id: Some(group.id.as_str().to_owned()),
            etag: Some(group.etag.clone()),
            display_name: Some(group.display_name.clone()),
            enabled: Some(group.enabled),
            group_type: Some(GROUP_TYPE_IOT.to_owned()),
            attestation: Some(GroupAttestationBody {
                attestation_type: "symmetricKey".to_owned(),
                symmetric_key: Some(SymmetricKeyBody::from_keys(&group.keys)),
                x509: None,
            }),
            auto_approve: Some(group.auto_approve),
        }
    }

    /// The group this body describes, stored under `id` with `etag`. Keys left out are made
    /// from `random`. Used for PUT, and for PATCH on the merged document.
    pub fn to_group(
        &self,
        id: &EnrollmentGroupId,
        etag: String,
        random: [u8; 64],
    ) -> Result<EnrollmentGroup, InvalidEnrollmentGroup> {
        if let Some(body_id) = &self.id {
            if body_id != id.as_str() {
                return Err(InvalidEnrollmentGroup::IdMismatch {
                    body_id: body_id.clone(),
                    path_id: id.as_str().to_owned(),
                });
            }
        }
        let display_name = self
            .display_name
            .clone()
            .ok_or(InvalidEnrollmentGroup::Missing {
                field: "displayName",
            })?;
        let n_chars = display_name.chars().count();
        if n_chars == 0 || n_chars > MAX_GROUP_DISPLAY_NAME {
            return Err(InvalidEnrollmentGroup::BadDisplayName);
        }
        match self.group_type.as_deref() {
            None => return Err(InvalidEnrollmentGroup::Missing { field: "type" }),
            Some(GROUP_TYPE_IOT) => {}
            Some(other) => {
                return Err(InvalidEnrollmentGroup::UnsupportedType {
                    found: other.to_owned(),
                })
            }
        }
        let keys = match &self.attestation {
            None => SymmetricKeys::from_random(random),
            Some(attestation) => attestation.to_keys(random)?,
        };
        Ok(EnrollmentGroup {
            id: id.clone(),
            etag,
            display_name,
            enabled: self.enabled.unwrap_or(true),
            keys,
            auto_approve: self.auto_approve.unwrap_or(true),
        })
    }

    /// [`EnrollmentGroupBody::to_group`] for an update of `current`: the type cannot change.
    pub fn to_updated_group(
        &self,
        current: &EnrollmentGroup,
        etag: String,
        random: [u8; 64],
    ) -> Result<EnrollmentGroup, InvalidEnrollmentGroup> {
        if let Some(found) = self.group_type.as_deref() {
            if found != GROUP_TYPE_IOT {
                return Err(InvalidEnrollmentGroup::TypeChange {
                    found: found.to_owned(),
                });
            }
        }
        self.to_group(&current.id, etag, random)
    }
}

impl GroupAttestationBody {
    fn to_keys(&self, random: [u8; 64]) -> Result<SymmetricKeys, InvalidEnrollmentGroup> {
        attested_keys(&self.attestation_type, self.symmetric_key.as_ref(), random).map_err(
            |error| match error {
                InvalidAttestation::Unsupported { found } => {
                    InvalidEnrollmentGroup::UnsupportedAttestation { found }
                }
                InvalidAttestation::BadKey { field, source } => {
                    InvalidEnrollmentGroup::BadKey { field, source }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn id(raw: &str) -> EnrollmentGroupId {
        EnrollmentGroupId::parse(raw).unwrap()
    }

    fn parse(body: serde_json::Value) -> Result<EnrollmentGroup, String> {
        let body: EnrollmentGroupBody =
            serde_json::from_value(body).map_err(|error| error.to_string())?;
        body.to_group(&id("g1"), "\"e1\"".into(), [9; 64])
            .map_err(|error| error.to_string())
    }

    #[test]
    fn ids_follow_iot_centrals_rule() {
        let check = |raw: &str, valid: bool| {
            assert_eq!(EnrollmentGroupId::parse(raw).is_ok(), valid, "{raw:?}");
        };
        check("SAS-IoT-Devices", true);
        check(&"a".repeat(255), true);
        check(&"a".repeat(256), false);
        check("", false);
        check("a_b", false);
        check("a b", false);
        check("a'; DROP TABLE devices; --", false);
    }

    #[test]
    fn a_minimal_body_gets_defaults_and_fresh_keys() {
        let group = parse(json!({"displayName": "Thermostats", "type": "iot"})).unwrap();
        assert_eq!(group.display_name, "Thermostats");
        assert!(group.enabled);
        assert!(group.auto_approve);
        assert_eq!(group.keys, SymmetricKeys::from_random([9; 64]));
    }

    #[test]
    fn given_keys_are_kept_and_the_wire_form_round_trips() {
        let body = json!({
            "displayName": "Thermostats", "type": "iot", "enabled": false, "autoApprove": false,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": K1}},
        });
        let group = parse(body).unwrap();
        assert_eq!(group.keys.primary.as_str(), K1);
        assert_eq!(
            group.keys.secondary,
            SymmetricKeys::from_random([9; 64]).secondary
        );
        let wire = serde_json::to_value(EnrollmentGroupBody::from_group(&group)).unwrap();
        assert_eq!(
            wire,
            json!({
                "id": "g1", "etag": "\"e1\"", "displayName": "Thermostats", "enabled": false,
                "type": "iot", "autoApprove": false,
                "attestation": {"type": "symmetricKey", "symmetricKey": {
                    "primaryKey": K1, "secondaryKey": group.keys.secondary.as_str()}},
            })
        );
        assert_eq!(parse(wire).unwrap(), group);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let check = |body: serde_json::Value, expected: &str| {
            let error = parse(body.clone()).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        };
        check(json!({"type": "iot"}), "`displayName` is required");
        check(json!({"displayName": "x"}), "`type` is required");
        check(json!({"displayName": "", "type": "iot"}), "1 to 255");
        check(
            json!({"displayName": "x", "type": "iotEdge"}),
            "not supported yet",
        );
        check(
            json!({"displayName": "x", "type": "iot", "id": "g2"}),
            "`g2` in the body",
        );
        check(
            json!({"displayName": 5, "type": "iot"}),
            "invalid type: integer",
        );
        check(
            json!({"displayName": "x", "type": "iot", "colour": 1}),
            "unknown field `colour`",
        );
        check(
            json!({"displayName": "x", "type": "iot", "attestation": {"type": "x509", "x509": {}}}),
            "attestation type `x509` is not supported yet",
        );
        check(
            json!({"displayName": "x", "type": "iot", "attestation": {"type": "symmetricKey",
                "symmetricKey": {"secondaryKey": "short"}}}),
            "`attestation.symmetricKey.secondaryKey`: a key must",
        );
    }

    #[test]
    fn an_update_cannot_change_the_type() {
        let current = parse(json!({"displayName": "x", "type": "iot"})).unwrap();
        let body: EnrollmentGroupBody =
            serde_json::from_value(json!({"displayName": "x", "type": "iotEdge"})).unwrap();
        assert_eq!(
            body.to_updated_group(&current, "e2".into(), [0; 64]),
            Err(InvalidEnrollmentGroup::TypeChange {
                found: "iotEdge".into()
            })
        );
    }
}
