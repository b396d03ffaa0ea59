//! The registry's side of the contract with the device bridge (besides ingest, see
//! [`crate::ingest`]): what the bridge asks before it accepts a device's connection.
//!
//! `GET /internal/registry/devices/{deviceId}/connection` (internal secret) answers a
//! [`DeviceConnection`]; the bridge verifies the device's SAS token against its keys
//! ([`crate::mqtt`]) and refuses a device that may not connect. Not owned here: the token rules
//! themselves, or how the bridge caches the answer.

use serde::{Deserialize, Serialize};

use crate::device::{Device, DeviceStatus};
use crate::provisioning::Candidate;

/// What the bridge needs to admit or refuse a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceConnection {
    pub device_id: String,
    /// Whether the device may connect now: provisioned (or registered through the API), not
    /// blocked, not waiting for approval.
    pub may_connect: bool,
    /// The keys a SAS token may be signed with; empty without keys.
    pub keys: Vec<String>,
    /// The template the device was assigned, for validating what it sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl DeviceConnection {
    /// The answer for `device`, which may sign its tokens with any key of `candidates` (its own
    /// keys, or those derived from each enabled enrollment group it could provision through;
    /// see [`crate::provisioning::candidates`]).
    pub fn new(device: &Device, candidates: &[Candidate]) -> DeviceConnection {
        let may_connect = matches!(
            device.status(),
            DeviceStatus::Registered | DeviceStatus::Provisioned
        );
        DeviceConnection {
            device_id: device.id.as_str().to_owned(),
            may_connect,
            keys: candidates
                .iter()
                .flat_map(|candidate| candidate.keys.iter().cloned())
                .collect(),
            template: device
                .template
                .as_ref()
                .map(|template| template.as_str().to_owned()),
        }
    }
}

/// `GET /internal/registry/connection-changes?after={cursor}`: what changed in the registry that
/// may end a connected device's right to stay connected (blocked, deleted, new keys, a group
/// disabled or re-keyed). The bridge polls it on its tick and rechecks the devices named
/// (every connected device when `all_devices`), closing the sessions that may no longer
/// connect; IoT Hub does the same when a device is disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionChanges {
    /// Pass it as `after` next time.
    pub cursor: i64,
    pub device_ids: Vec<String>,
    pub all_devices: bool,
}

/// `PATCH /internal/registry/devices/{id}/twin/reported` (body: the device's patch, a JSON
/// object) answers the reported document's new version; `GET .../twin` answers
/// [`crate::twin::Twin::to_get_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportedPatched {
    pub version: u64,
}

// ---------------------------------------------------------------------------------------------
// The bridge's control API: the Spin application calling the bridge (issue 5).
//
// The bridge serves plain HTTP/1.1 on `--control-listen` (default `127.0.0.1:3001`), every
// request carrying the internal secret in `x-gyre-internal-secret` (401 otherwise). The
// registry finds it through the Spin variable `bridge_control_url`. Errors answer
// [`ControlError`] as JSON.
//
// - `POST /control/devices/{deviceId}/twin/desired`, body [`DesiredPush`]: publish the desired
//   patch to the device's hub session on `$iothub/twin/PATCH/properties/desired/?$version=N`
//   (QoS 0) if it subscribed to it; answers [`Delivery`]. A device that was not reached
//   catches up when it next fetches its twin.
// - `POST /control/devices/{deviceId}/methods`, body [`MethodInvocation`]: wait up to
//   `connectionTimeout` seconds for the device to be connected and subscribed to
//   `$iothub/methods/POST/#`, publish `$iothub/methods/POST/{methodName}/?$rid={rid}`, wait up
//   to `responseTimeout` seconds for `$iothub/methods/res/{status}/?$rid={rid}`; answers 200
//   [`MethodResult`], or 404 [`ControlError`] `deviceNotConnected`, or 504 `timeout`.
// - `POST /control/devices/{deviceId}/messages` (empty body): cloud-to-device messages are
//   waiting for the device; a connected, subscribed session fetches and delivers them (see
//   [`C2dPending`]). Answers [`Delivery`] (`delivered`: a session will fetch them now).
// ---------------------------------------------------------------------------------------------

/// The header carrying the internal secret, on `/internal/*` and on the control API.
pub const INTERNAL_SECRET_HEADER: &str = "x-gyre-internal-secret";

/// `POST /control/devices/{id}/twin/desired`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredPush {
    /// The desired document's version after this patch (the topic's `$version`).
    pub version: u64,
    /// The body the device receives: the patch as merged, with `"$version": version`.
    pub patch: serde_json::Value,
}

/// Whether the bridge handed the push to a connected session that listens for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivery {
    pub delivered: bool,
}

/// `POST /control/devices/{id}/methods`: one direct-method call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodInvocation {
    /// As on the wire: `name`, or `component*name` for a component's command.
    pub method_name: String,
    /// The request payload (JSON `null` when the command takes none).
    pub payload: serde_json::Value,
    /// Seconds to wait for the device to connect and subscribe (0: it must be connected now).
    pub connection_timeout: u32,
    /// Seconds to wait for the device's answer once the call is published.
    pub response_timeout: u32,
}

/// The device's answer to a method call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodResult {
    /// The `{status}` of `$iothub/methods/res/{status}/`.
    pub status: i64,
    /// The response body parsed as JSON; a body that is not JSON is kept as a JSON string,
    /// an empty body is `null`.
    pub payload: serde_json::Value,
}

/// An error from the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlError {
    /// `deviceNotConnected`, `timeout`, `badRequest`, `unauthorized`, `unavailable`.
    pub code: String,
    pub message: String,
}

/// Cloud-to-device messages waiting for a device, oldest first, as
/// `GET /internal/registry/devices/{id}/messages` answers them to the bridge (unexpired and
/// not yet acknowledged, at most 50). The bridge publishes each at QoS 1 on
/// `devices/{id}/messages/devicebound/{bag}` and, when the device PUBACKs it,
/// `POST /internal/registry/devices/{id}/messages/{messageId}/complete` (204; idempotent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct C2dPending {
    pub messages: Vec<C2dMessage>,
}

/// One cloud-to-device message as the bridge delivers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct C2dMessage {
    /// `$.mid` in the property bag.
    pub message_id: String,
    /// The payload bytes, as UTF-8 text (a JSON payload is its serialisation).
    pub body: String,
    /// `$.ct`, when known (e.g. `application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `$.ce`, when known (e.g. `utf-8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Application properties, in the order given.
    #[serde(default)]
    pub properties: Vec<(String, String)>,
    /// Expiry, Unix milliseconds; the bridge does not deliver an expired message.
    pub expires_at: i64,
}

impl MethodResult {
    /// The device's answer on `$iothub/methods/res/{status}/`: the SDKs send JSON, but a body
    /// is the device's to choose, so one that is not JSON is kept as text rather than refused.
    pub fn from_device(status: i32, body: &[u8]) -> MethodResult {
        let payload = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
            })
        };
        MethodResult {
            status: i64::from(status),
            payload,
        }
    }
}

impl C2dMessage {
    /// The topic the message is published on to `device_id`, with IoT Hub's property bag:
    /// `$.mid`, `$.to` (`/devices/{id}/messages/deviceBound`), `$.ct`, `$.ce`, then the
    /// application properties in order.
    pub fn topic(&self, device_id: &crate::device::DeviceId) -> crate::mqtt::CloudTopic {
        let mut properties = crate::mqtt::MessageProperties::default();
        properties.system.message_id = Some(self.message_id.clone());
        properties.system.to = Some(format!("/devices/{device_id}/messages/deviceBound"));
        properties.system.content_type = self.content_type.clone();
        properties.system.content_encoding = self.content_encoding.clone();
        properties.application = self.properties.clone();
        crate::mqtt::CloudTopic::C2d {
            device_id: device_id.clone(),
            properties,
        }
    }

    /// Whether the message may still be delivered at `now_millis` (Unix milliseconds).
    pub fn is_live(&self, now_millis: i64) -> bool {
        self.expires_at > now_millis
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;
    use crate::device::DeviceId;
    use serde_json::json;

    #[test]
    fn a_method_answer_is_json_or_text_or_null() {
        assert_eq!(
            MethodResult::from_device(200, br#"{"ok":true}"#),
            MethodResult {
                status: 200,
                payload: json!({"ok": true})
            }
        );
        assert_eq!(
            MethodResult::from_device(500, b"not json").payload,
            json!("not json")
        );
        assert_eq!(MethodResult::from_device(-1, b"").payload, json!(null));
        assert_eq!(MethodResult::from_device(-1, b"").status, -1);
    }

    #[test]
    fn a_c2d_message_travels_with_iot_hubs_property_bag() {
        let message = C2dMessage {
            message_id: "m-1".to_owned(),
            body: "{}".to_owned(),
            content_type: Some("application/json".to_owned()),
            content_encoding: Some("utf-8".to_owned()),
            properties: vec![("my prop".to_owned(), "a b&c".to_owned())],
            expires_at: 10,
        };
        let topic = message
            .topic(&DeviceId::parse("dev-1").unwrap())
            .to_string();
        assert_eq!(
            topic,
            "devices/dev-1/messages/devicebound/%24.mid=m-1&%24.to=%2Fdevices%2Fdev-1%2Fmessages%2FdeviceBound&%24.ct=application%2Fjson&%24.ce=utf-8&my%20prop=a%20b%26c"
        );
        // What a device reads back is what was sent.
        let crate::mqtt::CloudTopic::C2d { properties, .. } =
            crate::mqtt::CloudTopic::parse(&topic).unwrap()
        else {
            panic!("not a C2D topic")
        };
        assert_eq!(properties.system.message_id.as_deref(), Some("m-1"));
        assert_eq!(properties.application_property("my prop"), Some("a b&c"));
        assert!(message.is_live(9));
        assert!(!message.is_live(10));
    }
}
