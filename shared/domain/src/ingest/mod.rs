//! The ingest contract between the bridge and the `ingest` component: the body of
//! `POST /internal/ingest` (a batch of device messages and connectivity events) and its answer.
//! A batch comes as JSON (the shape below, for tools and tests) or in its binary form
//! ([`binary`], which the bridge sends).
//!
//! The bridge acknowledges a device's message (PUBACK) only after the batch holding it was
//! answered 200, which the component sends only after the batch's transaction committed. A batch
//! carries an id chosen by the bridge; applying the same id twice applies it once, so the bridge
//! may retry a batch whose answer it never saw. Not owned here: how the component stores a batch
//! (`store::telemetry`), or how the bridge forms one (its batcher).

pub mod binary;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Header carrying the batch id as well (for logs and proxies).
pub const BATCH_ID_HEADER: &str = "x-gyre-batch-id";

/// `POST /internal/ingest` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestBatch {
    /// Chosen by the bridge, unique per batch (a UUID); the idempotency key.
    pub batch_id: String,
    #[serde(default)]
    pub messages: Vec<DeviceMessage>,
    #[serde(default)]
    pub events: Vec<ConnectivityEvent>,
}

/// One telemetry message as a device published it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceMessage {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// When the bridge received it, Unix milliseconds (IoT Hub's enqueued time).
    pub enqueued_at: i64,
    /// System properties from the topic's property bag, by name (`$.ct`, `$.ce`, `$.sub`,
    /// `$.mid`, ...), percent-decoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system_properties: BTreeMap<String, String>,
    /// Application properties in the order sent; names may repeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_properties: Vec<(String, String)>,
    /// The payload as published: it need not be JSON or UTF-8. In JSON, a base64 string
    /// (standard alphabet, padded).
    #[serde(with = "base64_body")]
    pub body: Vec<u8>,
}

mod base64_body {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map_err(|err| D::Error::custom(format!("a message body is not base64: {err}")))
    }
}

/// A device connected or disconnected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectivityEvent {
    pub device_id: String,
    pub kind: ConnectivityKind,
    /// Unix milliseconds.
    pub at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectivityKind {
    Connected,
    Disconnected,
}

/// The 200 answer: the batch is durably committed (or was, under the same id, before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestResult {
    pub batch_id: String,
    /// Messages accepted by this call; 0 for a batch id seen before.
    pub n_messages: u32,
    pub n_events: u32,
    /// The batch id had been accepted already (it waits in the ingest journal, or was
    /// applied); nothing was written.
    pub duplicate: bool,
    /// The bridge should send `POST /internal/compact` (beside its next batches, so no batch
    /// waits for it): the batch waits in the ingest journal to be applied, and compaction runs
    /// in the same request. Absent: false.
    #[serde(default)]
    pub compaction_due: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_has_the_documented_json_shape() {
        let batch = IngestBatch {
            batch_id: "b-1".into(),
            messages: vec![DeviceMessage {
                device_id: "d1".into(),
                module_id: None,
                enqueued_at: 1_764_161_225_120,
                system_properties: BTreeMap::from([("$.ct".into(), "application/json".into())]),
                application_properties: vec![("alert".into(), "true".into())],
                body: br#"{"t":21}"#.to_vec(),
            }],
            events: vec![ConnectivityEvent { device_id: "d1".into(), kind: ConnectivityKind::Connected, at: 1 }],
        };
        let value = serde_json::to_value(&batch).unwrap();
        assert_eq!(
            value,
            json!({
                "batchId": "b-1",
                "messages": [{
                    "deviceId": "d1",
                    "enqueuedAt": 1_764_161_225_120_i64,
                    "systemProperties": {"$.ct": "application/json"},
                    "applicationProperties": [["alert", "true"]],
                    "body": "eyJ0IjoyMX0="
                }],
                "events": [{"deviceId": "d1", "kind": "connected", "at": 1}]
            })
        );
        assert_eq!(serde_json::from_value::<IngestBatch>(value).unwrap(), batch);
        assert!(serde_json::from_value::<IngestBatch>(json!({"batchId": "x", "extra": 1})).is_err());
        let not_base64 = json!({"batchId": "x", "messages": [{
            "deviceId": "d1", "enqueuedAt": 1, "body": "not base64!"
        }]});
        let err = serde_json::from_value::<IngestBatch>(not_base64).unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }
}
