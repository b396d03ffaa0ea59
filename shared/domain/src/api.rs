//! JSON wire types of Gyre's REST API, shaped like IoT Central's data-plane API.
//!
//! Every `#[derive(Serialize)]` here is a compatibility promise to API clients, so wire types
//! live only in this module and stay separate from core domain types (which convert into them
//! explicitly). Status codes and HTTP plumbing belong to the components, not here.

use serde::{Deserialize, Serialize};

use crate::store::SchemaVersion;
use crate::time::Timestamp;

/// The body of every error response: `{"error": {"code", "message", "requestId", "time"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetails,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// IoT Central's error code, e.g. `NotFound`; also sent as the `x-ms-error-code` header.
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub time: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: &str, request_id: &RequestId, time: Timestamp) -> ErrorBody {
        ErrorBody {
            error: ErrorDetails {
                code: code.to_owned(),
                message: message.to_owned(),
                request_id: request_id.as_str().to_owned(),
                // IoT Central's OpenAPI document declares this field as RFC 1123.
                time: time.to_rfc1123(),
            },
        }
    }
}

/// `GET /api/health`: `{"status": "ok", "schemaVersion": N}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: HealthStatus,
    pub schema_version: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

impl Health {
    pub fn ok(schema_version: SchemaVersion) -> Health {
        Health {
            status: HealthStatus::Ok,
            schema_version: schema_version.0,
        }
    }
}

/// Identifies one API request in error bodies and logs.
/// Invariant: 1..=128 chars from `[A-Za-z0-9._:-]`, so it is safe in a header and a log line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts a caller's `x-request-id` if it keeps the invariant.
    pub fn parse(raw: &str) -> Option<RequestId> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        let valid = (1..=128).contains(&raw.len()) && raw.chars().all(valid_char);
        valid.then(|| RequestId(raw.to_owned()))
    }

    /// A fresh id from 16 random bytes, formatted as a version 4 UUID like IoT Central's.
    pub fn from_random(mut bytes: [u8; 16]) -> RequestId {
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // Version 4: random.
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // Variant 1: RFC 4122.
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        RequestId(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ErrorBody, Health, RequestId};
    use crate::store::SchemaVersion;
    use crate::time::Timestamp;

    #[test]
    fn error_body_has_iot_centrals_shape() {
        let request_id = RequestId::parse("req-1").unwrap();
        let body = ErrorBody::new(
            "NotFound",
            "no route",
            &request_id,
            Timestamp::from_unix_millis(1_764_161_225_120),
        );

        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({ "error": {
                "code": "NotFound",
                "message": "no route",
                "requestId": "req-1",
                "time": "Wed, 26 Nov 2025 12:47:05 GMT",
            }})
        );
    }

    #[test]
    fn health_is_camel_case() {
        assert_eq!(
            serde_json::to_value(Health::ok(SchemaVersion(3))).unwrap(),
            json!({ "status": "ok", "schemaVersion": 3 })
        );
    }

    #[test]
    fn request_ids_from_callers_are_accepted_only_when_safe() {
        let check = |raw: &str, accepted: bool| {
            assert_eq!(RequestId::parse(raw).is_some(), accepted, "{raw:?}");
        };
        check("3f2c9a1e-0b7d-4c55-9a1e-2f6d8b0c4e71", true);
        check("trace:abc_1.2", true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(129), false);
        check("", false);
        check("has space", false);
        check("new\nline", false);
        check("quote\"", false);
    }

    #[test]
    fn random_request_ids_are_version_4_uuids() {
        assert_eq!(
            RequestId::from_random([0xff; 16]).as_str(),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_eq!(
            RequestId::from_random([0; 16]).as_str(),
            "00000000-0000-4000-8000-000000000000"
        );
    }
}
