//! The property bag at the end of telemetry and C2D topics: `k=v&k=v`, every key and value
//! percent-encoded (`$` travels as `%24`), split into IoT Hub's system properties (`$.`-keys) and
//! the application's own.
//!
//! What the SDKs send: Python `$.on $.mid $.cid $.uid $.ct $.ce $.ifid $.exp`, then custom
//! properties sorted by key; Node `$.mid $.cid $.uid $.to $.ct $.ce $.ifid $.exp`, then user
//! properties in insertion order, with `dt-subject` rewritten to `$.sub` (the component). Python
//! users set `$.sub` themselves. Neither SDK sets `iothub-creation-time-utc`; when an application
//! does, it travels as an ordinary property.
//!
//! Decisions where the reference is silent:
//! - Parsing does not depend on order. Application properties keep the order sent, duplicates
//!   included (Node allows them); a system property given twice is refused.
//! - `iothub-*` keys stay application properties, as on the wire (and as IoT Central exports them
//!   under `messageProperties`); [`MessageProperties::creation_time_utc`] reads the device time.
//! - An empty segment is skipped; a segment without `=` is a key with an empty value; an empty
//!   key is refused. Values are kept as text: `$.exp` and the creation time are not parsed.
//!
//! Not owned here: what a body means, and whether `$.ct`/`$.ce` make it JSON (ingest).

use crate::percent;

/// IoT Hub's system properties, decoded. Unset ones are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemProperties {
    /// `$.mid`
    pub message_id: Option<String>,
    /// `$.cid`
    pub correlation_id: Option<String>,
    /// `$.uid`
    pub user_id: Option<String>,
    /// `$.to` (C2D: `/devices/{id}/messages/deviceBound`)
    pub to: Option<String>,
    /// `$.ct`, e.g. `application/json`
    pub content_type: Option<String>,
    /// `$.ce`, e.g. `utf-8`
    pub content_encoding: Option<String>,
    /// `$.sub`: the IoT Plug and Play component the message belongs to.
    pub component: Option<String>,
    /// `$.ifid`
    pub interface_id: Option<String>,
    /// `$.exp`, as sent (Python sends ISO 8601).
    pub expiry: Option<String>,
    /// `$.on`: a module's output name.
    pub output_name: Option<String>,
    /// Any other `$.`-key, full key included, in the order sent.
    pub other: Vec<(String, String)>,
}

/// A decoded property bag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub system: SystemProperties,
    /// Every key not starting with `$.`, in the order sent. A key here that starts with `$.`
    /// would come back as a system property after [`MessageProperties::format_bag`].
    pub application: Vec<(String, String)>,
}

/// Why a property bag cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyError {
    #[error("property '{segment}' has bad percent-encoding")]
    BadPercentEncoding { segment: String },
    #[error("property '{segment}' has an empty name")]
    EmptyName { segment: String },
    #[error("system property '{name}' appears twice")]
    DuplicateSystemProperty { name: String },
}

/// The device-set creation time IoT Hub documents (an application property on the wire).
const CREATION_TIME_UTC: &str = "iothub-creation-time-utc";

impl MessageProperties {
    /// Reads the bag: everything after `.../messages/events/` or `.../messages/devicebound/`.
    pub fn parse_bag(bag: &str) -> Result<MessageProperties, PropertyError> {
        let mut properties = MessageProperties::default();
        for segment in bag.split('&').filter(|segment| !segment.is_empty()) {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            let bad = || PropertyError::BadPercentEncoding {
                segment: short(segment),
            };
            let key = percent::decode(key).ok_or_else(bad)?;
            let value = percent::decode(value).ok_or_else(bad)?;
            if key.is_empty() {
                return Err(PropertyError::EmptyName {
                    segment: short(segment),
                });
            }
            if key.starts_with("$.") {
                properties.system.set(key, value)?;
            } else {
                properties.application.push((key, value));
            }
        }
        Ok(properties)
    }

    /// Writes the bag as IoT Hub does: system properties first (Node's order, then `$.sub`,
    /// `$.on` and any other), then application properties in order, each key and value
    /// percent-encoded. Empty properties give an empty string.
    pub fn format_bag(&self) -> String {
        let mut pairs: Vec<(&str, &str)> = self.system.known().into_iter().collect();
        pairs.extend(
            self.system
                .other
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        pairs.extend(
            self.application
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        pairs
            .iter()
            .map(|(key, value)| format!("{}={}", percent::encode(key), percent::encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The first application property called `name`.
    pub fn application_property(&self, name: &str) -> Option<&str> {
        self.application
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `iothub-creation-time-utc`, the device's own timestamp, as sent.
    pub fn creation_time_utc(&self) -> Option<&str> {
        self.application_property(CREATION_TIME_UTC)
    }
}

impl SystemProperties {
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        Some(match key {
            "$.mid" => &mut self.message_id,
            "$.cid" => &mut self.correlation_id,
            "$.uid" => &mut self.user_id,
            "$.to" => &mut self.to,
            "$.ct" => &mut self.content_type,
            "$.ce" => &mut self.content_encoding,
            "$.sub" => &mut self.component,
            "$.ifid" => &mut self.interface_id,
            "$.exp" => &mut self.expiry,
            "$.on" => &mut self.output_name,
            _ => return None,
        })
    }

    fn set(&mut self, key: String, value: String) -> Result<(), PropertyError> {
        let duplicate = match self.slot(&key) {
            Some(slot) => slot.replace(value).is_some(),
            None => {
                let duplicate = self.other.iter().any(|(k, _)| *k == key);
                self.other.push((key.clone(), value));
                duplicate
            }
        };
        if duplicate {
            return Err(PropertyError::DuplicateSystemProperty { name: short(&key) });
        }
        Ok(())
    }

    /// The known properties that are set, in the order [`MessageProperties::format_bag`] writes.
    fn known(&self) -> Vec<(&'static str, &str)> {
        [
            ("$.mid", &self.message_id),
            ("$.cid", &self.correlation_id),
            ("$.uid", &self.user_id),
            ("$.to", &self.to),
            ("$.ct", &self.content_type),
            ("$.ce", &self.content_encoding),
            ("$.ifid", &self.interface_id),
            ("$.exp", &self.expiry),
            ("$.sub", &self.component),
            ("$.on", &self.output_name),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|value| (key, value)))
        .collect()
    }
}

/// Error fields echo client input: keep them short enough for a log line.
fn short(raw: &str) -> String {
    raw.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bag: &str, expected: Result<MessageProperties, PropertyError>) {
        assert_eq!(MessageProperties::parse_bag(bag), expected, "{bag}");
    }

    fn app(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn some(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    #[test]
    fn reads_the_bags_the_sdks_send() {
        // Python, observed: custom properties sorted by key.
        check(
            "%24.mid=mid-1&%24.cid=corr-1&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00&a%2Fb=x%26y%3Dz&alert=high%20temp",
            Ok(MessageProperties {
                system: SystemProperties {
                    message_id: some("mid-1"),
                    correlation_id: some("corr-1"),
                    content_type: some("application/json"),
                    content_encoding: some("utf-8"),
                    expiry: some("2030-01-01T00:00:00+00:00"),
                    ..SystemProperties::default()
                },
                application: app(&[("a/b", "x&y=z"), ("alert", "high temp")]),
            }),
        );
        // Node, observed: insertion order, `dt-subject` rewritten to `$.sub` at the end.
        check(
            "%24.mid=mid-1&%24.cid=corr-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y%3Dz&%24.sub=thermostat1",
            Ok(MessageProperties {
                system: SystemProperties {
                    message_id: some("mid-1"),
                    correlation_id: some("corr-1"),
                    content_type: some("application/json"),
                    content_encoding: some("utf-8"),
                    component: some("thermostat1"),
                    ..SystemProperties::default()
                },
                application: app(&[("alert", "high temp"), ("a/b", "x&y=z")]),
            }),
        );
        // Every known key, including Python's `$.on`, `$.uid`, `$.ifid` and Node's `$.to`.
        check(
            "%24.on=out1&%24.uid=u&%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound&%24.ifid=urn%3Ax",
            Ok(MessageProperties {
                system: SystemProperties {
                    output_name: some("out1"),
                    user_id: some("u"),
                    to: some("/devices/d/messages/deviceBound"),
                    interface_id: some("urn:x"),
                    ..SystemProperties::default()
                },
                application: vec![],
            }),
        );
    }

    #[test]
    fn edge_cases_of_the_bag() {
        check("", Ok(MessageProperties::default()));
        check("&&", Ok(MessageProperties::default()));
        check(
            "flag&a=&b=1=2&c=a+b",
            Ok(MessageProperties {
                application: app(&[("flag", ""), ("a", ""), ("b", "1=2"), ("c", "a+b")]),
                ..MessageProperties::default()
            }),
        );
        // Unencoded `$` works too; unknown `$.` keys are kept as system properties.
        check(
            "$.ct=text%2Fplain&%24.future=1&%24x=2",
            Ok(MessageProperties {
                system: SystemProperties {
                    content_type: some("text/plain"),
                    other: app(&[("$.future", "1")]),
                    ..SystemProperties::default()
                },
                application: app(&[("$x", "2")]),
            }),
        );
        // Application duplicates are kept in order.
        check(
            "k=1&k=2",
            Ok(MessageProperties {
                application: app(&[("k", "1"), ("k", "2")]),
                ..MessageProperties::default()
            }),
        );
        check(
            "%24.mid=1&%24.mid=2",
            Err(PropertyError::DuplicateSystemProperty {
                name: "$.mid".into(),
            }),
        );
        check(
            "%24.x=1&$.x=2",
            Err(PropertyError::DuplicateSystemProperty { name: "$.x".into() }),
        );
        check(
            "=v",
            Err(PropertyError::EmptyName {
                segment: "=v".into(),
            }),
        );
        check(
            "a=%zz",
            Err(PropertyError::BadPercentEncoding {
                segment: "a=%zz".into(),
            }),
        );
        check(
            "a=%FF",
            Err(PropertyError::BadPercentEncoding {
                segment: "a=%FF".into(),
            }),
        );
    }

    #[test]
    fn exposes_the_device_creation_time() {
        let properties =
            MessageProperties::parse_bag("iothub-creation-time-utc=2024-01-01T00%3A00%3A00Z&x=1")
                .unwrap();
        assert_eq!(properties.creation_time_utc(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(properties.application_property("x"), Some("1"));
        assert_eq!(properties.application_property("y"), None);
        assert_eq!(MessageProperties::default().creation_time_utc(), None);
    }

    #[test]
    fn formats_bags_as_iot_hub_does() {
        let check = |properties: MessageProperties, expected: &str| {
            assert_eq!(properties.format_bag(), expected);
            assert_eq!(MessageProperties::parse_bag(expected), Ok(properties));
        };
        check(MessageProperties::default(), "");
        // A C2D bag in IoT Hub's style.
        check(
            MessageProperties {
                system: SystemProperties {
                    message_id: some("m1"),
                    to: some("/devices/dev1/messages/deviceBound"),
                    content_type: some("application/json"),
                    content_encoding: some("utf-8"),
                    ..SystemProperties::default()
                },
                application: app(&[("my prop", "a b&c")]),
            },
            "%24.mid=m1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&%24.ct=application%2Fjson&%24.ce=utf-8&my%20prop=a%20b%26c",
        );
        check(
            MessageProperties {
                system: SystemProperties {
                    component: some("thermostat1"),
                    output_name: some("o"),
                    other: app(&[("$.z", "1")]),
                    ..SystemProperties::default()
                },
                application: app(&[("b", "2"), ("a", "1")]),
            },
            "%24.sub=thermostat1&%24.on=o&%24.z=1&b=2&a=1",
        );
    }
}
