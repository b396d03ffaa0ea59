//! Cloud-to-device messages: `POST /devices/{id}/messages` (our addition, in IoT Central's
//! conventions; IoT Central itself has no REST route for C2D) and IoT Hub's queue rules.
//!
//! Decisions:
//! - `ttl` is an ISO 8601 duration (`PT10M`, `P1D`, `PT0.5S`), like IoT Central's other
//!   durations (`sasTtl`); years and months are refused (their length varies). Default one
//!   hour and at most two days, as IoT Hub.
//! - The body the device receives is the payload's JSON text (`$.ct=application/json`,
//!   `$.ce=utf-8`), except that a JSON string sent with another `contentType` goes as the
//!   string itself, so text payloads need no quoting.
//! - At most [`MAX_PAYLOAD_BYTES`] (64 KiB, IoT Hub's C2D limit) of body and properties
//!   together: 413 beyond.
//! - At most [`MAX_QUEUED`] undelivered, unexpired messages per device (IoT Hub's queue depth):
//!   409 beyond (IoT Hub answers 403, which here would read as a permission problem).
//! - Property names may not be empty or start with `$` (system properties are ours to set).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::bridge::C2dMessage;
use crate::time::Timestamp;

pub const MAX_QUEUED: u32 = 50;
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_TTL_MILLIS: i64 = 60 * 60 * 1000;
pub const MAX_TTL_MILLIS: i64 = 2 * 24 * 60 * 60 * 1000;

/// `POST /devices/{id}/messages`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendBody {
    /// Required: `null` is a valid JSON payload (`Some(Null)`), a missing one is not.
    #[serde(default, deserialize_with = "present")]
    pub payload: Option<Json>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub properties: Option<serde_json::Map<String, Json>>,
    #[serde(default)]
    pub ttl: Option<String>,
}

/// Any JSON value, `null` included, as `Some`: only an absent field is `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(deserializer).map(Some)
}

/// A message accepted for the queue, before it has an id and a row.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub payload: Json,
    pub body: String,
    pub content_type: String,
    pub content_encoding: String,
    pub properties: Vec<(String, String)>,
    pub ttl_millis: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("`payload` is required")]
    MissingPayload,
    #[error("`ttl` must be an ISO 8601 duration from PT0.001S to P2D (e.g. PT1H), not `{0}`")]
    BadTtl(String),
    #[error("property `{0}`: {1}")]
    BadProperty(String, &'static str),
    #[error("`contentType` must be a non-empty media type of at most 256 characters")]
    BadContentType,
    #[error("the message is larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
}

/// Checks a send request and makes the message the device will receive.
pub fn prepare(body: SendBody) -> Result<NewMessage, SendError> {
    let payload = body.payload.ok_or(SendError::MissingPayload)?;
    let ttl_millis = match &body.ttl {
        None => DEFAULT_TTL_MILLIS,
        Some(text) => parse_ttl(text).ok_or_else(|| SendError::BadTtl(text.clone()))?,
    };
    if let Some(content_type) = &body.content_type {
        let valid = !content_type.trim().is_empty()
            && content_type.len() <= 256
            && !content_type.chars().any(char::is_control);
        if !valid {
            return Err(SendError::BadContentType);
        }
    }
    let mut properties = Vec::new();
    for (name, value) in body.properties.unwrap_or_default() {
        if name.is_empty() {
            return Err(SendError::BadProperty(name, "a name may not be empty"));
        }
        if name.starts_with('$') {
            return Err(SendError::BadProperty(
                name,
                "names starting with `$` are system properties",
            ));
        }
        let Json::String(value) = value else {
            return Err(SendError::BadProperty(name, "the value must be a string"));
        };
        properties.push((name, value));
    }
    let is_json = |content_type: &str| {
        let media = content_type.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("application/json") || media.ends_with("+json")
    };
    let (body_text, content_type) = match (&payload, body.content_type) {
        (Json::String(text), Some(content_type)) if !is_json(&content_type) => {
            (text.clone(), content_type)
        }
        (_, content_type) => (
            payload.to_string(),
            content_type.unwrap_or_else(|| "application/json".to_owned()),
        ),
    };
    let size = body_text.len()
        + properties
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>();
    if size > MAX_PAYLOAD_BYTES {
        return Err(SendError::TooLarge);
    }
    Ok(NewMessage {
        payload,
        body: body_text,
        content_type,
        content_encoding: "utf-8".to_owned(),
        properties,
        ttl_millis,
    })
}

/// An ISO 8601 duration in milliseconds, within `(0, MAX_TTL_MILLIS]`; weeks, days, hours,
/// minutes and seconds (a fraction only on the last component).
pub fn parse_ttl(text: &str) -> Option<i64> {
    let body = text.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return None,
        None => (body, None),
    };
    let mut total = 0f64;
    let mut n_components = 0;
    let mut fraction_seen = false;
    for (part, units) in [
        (date, &[('W', 604_800_000f64), ('D', 86_400_000f64)][..]),
        (
            time.unwrap_or(""),
            &[('H', 3_600_000f64), ('M', 60_000f64), ('S', 1_000f64)][..],
        ),
    ] {
        let mut rest = part;
        let mut next_unit = 0;
        while !rest.is_empty() {
            if fraction_seen {
                return None;
            }
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let number = &rest[..number_len];
            if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
                return None;
            }
            fraction_seen = number.contains('.');
            let value: f64 = number.parse().ok()?;
            let designator = rest[number_len..].chars().next()?;
            let position = units[next_unit..]
                .iter()
                .position(|(d, _)| *d == designator)?;
            total += value * units[next_unit + position].1;
            next_unit += position + 1;
            n_components += 1;
            rest = &rest[number_len + 1..];
        }
    }
    if n_components == 0 || !total.is_finite() {
        return None;
    }
    let millis = total.round() as i64;
    (1..=MAX_TTL_MILLIS).contains(&millis).then_some(millis)
}

/// Where a queued message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MessageState {
    /// Waiting for the device.
    Queued,
    /// The device acknowledged it (PUBACK): IoT Hub's "completed".
    Delivered,
    /// Its time to live passed before the device acknowledged it.
    Expired,
}

/// One message as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    /// Keyset cursor for listing; never reused.
    pub seq: i64,
    pub id: String,
    pub device_id: String,
    pub payload: Json,
    pub body: String,
    pub content_type: String,
    pub content_encoding: String,
    pub properties: Vec<(String, String)>,
    pub enqueued_at: Timestamp,
    pub expires_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

impl StoredMessage {
    pub fn state(&self, now: Timestamp) -> MessageState {
        if self.delivered_at.is_some() {
            MessageState::Delivered
        } else if self.expires_at <= now {
            MessageState::Expired
        } else {
            MessageState::Queued
        }
    }

    /// The REST shape.
    pub fn to_wire(&self, now: Timestamp) -> DeviceMessage {
        DeviceMessage {
            id: self.id.clone(),
            payload: self.payload.clone(),
            content_type: self.content_type.clone(),
            properties: self
                .properties
                .iter()
                .map(|(name, value)| (name.clone(), Json::String(value.clone())))
                .collect(),
            enqueued_at: self.enqueued_at.to_rfc3339(),
            expires_at: self.expires_at.to_rfc3339(),
            state: self.state(now),
            delivered_at: self.delivered_at.map(Timestamp::to_rfc3339),
        }
    }

    /// What the bridge publishes.
    pub fn to_bridge(&self) -> C2dMessage {
        C2dMessage {
            message_id: self.id.clone(),
            body: self.body.clone(),
            content_type: Some(self.content_type.clone()),
            content_encoding: Some(self.content_encoding.clone()),
            properties: self.properties.clone(),
            expires_at: self.expires_at.unix_millis(),
        }
    }
}

/// A message as `POST` and `GET /devices/{id}/messages` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMessage {
    pub id: String,
    pub payload: Json,
    pub content_type: String,
    pub properties: serde_json::Map<String, Json>,
    pub enqueued_at: String,
    pub expires_at: String,
    pub state: MessageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Json) -> SendBody {
        serde_json::from_value(value).expect("a send body")
    }

    #[test]
    fn a_json_payload_is_sent_as_its_text_with_a_default_ttl_of_an_hour() {
        let message =
            prepare(body(json!({"payload": {"a": 1}, "properties": {"k": "v"}}))).unwrap();
        assert_eq!(message.body, r#"{"a":1}"#);
        assert_eq!(message.content_type, "application/json");
        assert_eq!(message.content_encoding, "utf-8");
        assert_eq!(message.properties, vec![("k".to_owned(), "v".to_owned())]);
        assert_eq!(message.ttl_millis, DEFAULT_TTL_MILLIS);
    }

    #[test]
    fn a_text_payload_with_a_text_content_type_is_sent_as_is() {
        let message = prepare(body(
            json!({"payload": "reboot now", "contentType": "text/plain"}),
        ))
        .unwrap();
        assert_eq!(message.body, "reboot now");
        assert_eq!(message.content_type, "text/plain");
        let quoted = prepare(body(json!({"payload": "x"}))).unwrap();
        assert_eq!(quoted.body, "\"x\"");
        let null = prepare(body(json!({"payload": null}))).unwrap();
        assert_eq!(null.body, "null");
    }

    #[test]
    fn ttls_are_iso_8601_durations_up_to_two_days() {
        assert_eq!(parse_ttl("PT1H"), Some(3_600_000));
        assert_eq!(parse_ttl("PT0.5S"), Some(500));
        assert_eq!(parse_ttl("P1DT1M"), Some(86_460_000));
        assert_eq!(parse_ttl("P2D"), Some(MAX_TTL_MILLIS));
        assert_eq!(parse_ttl("P1W"), None, "a week is longer than two days");
        for bad in [
            "", "P", "PT", "1H", "PT1", "P1M", "P1Y", "PT-1S", "PT0S", "PT1.5M2S", "PT.5S", "P1DT",
            "PT1S1M", "P2DT1S",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
        assert_eq!(
            prepare(body(json!({"payload": 1, "ttl": "P3D"}))),
            Err(SendError::BadTtl("P3D".into()))
        );
    }

    #[test]
    fn bad_input_is_refused_with_what_is_wrong() {
        assert_eq!(prepare(body(json!({}))), Err(SendError::MissingPayload));
        assert!(matches!(
            prepare(body(json!({"payload": 1, "properties": {"$.mid": "x"}}))),
            Err(SendError::BadProperty(name, _)) if name == "$.mid"
        ));
        assert!(matches!(
            prepare(body(json!({"payload": 1, "properties": {"n": 1}}))),
            Err(SendError::BadProperty(name, _)) if name == "n"
        ));
        assert!(matches!(
            prepare(body(json!({"payload": 1, "properties": {"": "v"}}))),
            Err(SendError::BadProperty(..))
        ));
        assert_eq!(
            prepare(body(json!({"payload": 1, "contentType": ""}))),
            Err(SendError::BadContentType)
        );
        assert!(serde_json::from_value::<SendBody>(json!({"payload": 1, "extra": 2})).is_err());
    }

    #[test]
    fn payload_and_properties_together_are_limited_to_64_kib() {
        let at_limit = "x".repeat(MAX_PAYLOAD_BYTES);
        assert!(prepare(body(
            json!({"payload": at_limit, "contentType": "text/plain"})
        ))
        .is_ok());
        let over = "x".repeat(MAX_PAYLOAD_BYTES - 3);
        assert_eq!(
            prepare(body(
                json!({"payload": over, "contentType": "text/plain", "properties": {"ab": "cd"}})
            )),
            Err(SendError::TooLarge)
        );
    }

    #[test]
    fn a_message_is_queued_until_delivered_or_expired() {
        let mut message = StoredMessage {
            seq: 1,
            id: "m1".into(),
            device_id: "d1".into(),
            payload: json!(1),
            body: "1".into(),
            content_type: "application/json".into(),
            content_encoding: "utf-8".into(),
            properties: vec![("k".into(), "v".into())],
            enqueued_at: Timestamp::from_unix_millis(0),
            expires_at: Timestamp::from_unix_millis(1000),
            delivered_at: None,
        };
        assert_eq!(
            message.state(Timestamp::from_unix_millis(999)),
            MessageState::Queued
        );
        assert_eq!(
            message.state(Timestamp::from_unix_millis(1000)),
            MessageState::Expired
        );
        let bridge = message.to_bridge();
        assert_eq!(bridge.message_id, "m1");
        assert_eq!(bridge.expires_at, 1000);
        assert_eq!(bridge.content_type.as_deref(), Some("application/json"));
        message.delivered_at = Some(Timestamp::from_unix_millis(500));
        assert_eq!(
            message.state(Timestamp::from_unix_millis(2000)),
            MessageState::Delivered
        );
        let wire =
            serde_json::to_value(message.to_wire(Timestamp::from_unix_millis(2000))).unwrap();
        assert_eq!(wire["state"], "delivered");
        assert_eq!(wire["properties"], json!({"k": "v"}));
        assert_eq!(wire["expiresAt"], "1970-01-01T00:00:01.000Z");
    }
}
