//! Device ids, as IoT Central and IoT Hub allow them.
//!
//! IoT Central: at most 128 characters of letters, digits and `-`, "and the characters IoT Hub
//! accepts". IoT Hub's device id rule: case-sensitive, up to 128 characters of ASCII 7-bit
//! alphanumerics plus `- . % _ * ? ! ( ) , : = @ $ '`. Gyre takes exactly that set. Newer IoT
//! Hub documents also list `+` and `#`; Gyre refuses them because a device id is spelt inside
//! MQTT topic names (`devices/{id}/messages/events/`), where `+` and `#` are wildcards.
//!
//! Several allowed characters (`%`, `?`, `$`, `'`, ...) mean something in a URL: clients send
//! them percent-encoded in paths, and components decode the path segment before parsing.

use std::fmt;

/// Longest device id IoT Central and IoT Hub accept.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// Punctuation IoT Hub accepts in a device id, besides ASCII letters and digits.
pub const DEVICE_ID_PUNCTUATION: &str = "-.%_*?!(),:=@$'";

/// Identifies a device in URLs, MQTT topics and DPS registrations.
/// Invariant: 1..=128 characters from ASCII letters, digits and [`DEVICE_ID_PUNCTUATION`];
/// enforced only by [`DeviceId::parse`]. Case-sensitive, as in IoT Hub.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a device id is 1 to {MAX_DEVICE_ID_LEN} ASCII letters, digits or any of - . % _ * ? ! ( ) , : = @ $ '"
)]
pub struct InvalidDeviceId;

impl DeviceId {
    pub fn parse(raw: &str) -> Result<DeviceId, InvalidDeviceId> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || DEVICE_ID_PUNCTUATION.contains(c);
        if (1..=MAX_DEVICE_ID_LEN).contains(&raw.len()) && raw.chars().all(valid_char) {
            Ok(DeviceId(raw.to_owned()))
        } else {
            Err(InvalidDeviceId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_iot_hubs_rule() {
        let check = |raw: &str, valid: bool| {
            assert_eq!(DeviceId::parse(raw).is_ok(), valid, "{raw:?}");
        };
        check("thermostat-01", true);
        check("Thermostat-01", true);
        check("a.b%c_d*e?f!g(h)i,j:k=l@m$n'o", true);
        check(&"x".repeat(128), true);
        check(&"x".repeat(129), false);
        check("", false);
        check("a b", false);
        check("a/b", false);
        check("a+b", false);
        check("a#b", false);
        check("a\"b", false);
        check("a;b", false);
        check("a\nb", false);
        check("caf\u{e9}", false);
        check("'; DROP TABLE devices; --", false);
    }
}
