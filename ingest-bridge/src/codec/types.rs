//! The constrained values packets are made of: strings, topics, packet ids, QoS, passwords.
//! Each is valid by construction, so a parsed packet needs no second look and `encode` cannot
//! write a malformed string.

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;

use super::ProtocolError;

/// Quality of service of a PUBLISH or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(value: u8) -> Result<QoS, ProtocolError> {
        match value {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(ProtocolError::InvalidQos(other)),
        }
    }
}

/// A packet identifier. Invariant: non-zero (MQTT-2.3.1-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    pub fn new(value: u16) -> Option<PacketId> {
        NonZeroU16::new(value).map(PacketId)
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }
}

/// An MQTT UTF-8 string (MQTT 3.1.1 section 1.5.3), sharing the frame's memory.
/// Invariant: well-formed UTF-8, no U+0000, at most 65535 bytes; enforced by the constructors.
///
/// Control characters and non-characters, which the specification only says a receiver MAY
/// refuse, are accepted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MqttStr(Bytes);

impl MqttStr {
    /// Validates `bytes` (for instance a slice of a read buffer) without copying it.
    pub fn from_bytes(bytes: Bytes) -> Result<MqttStr, ProtocolError> {
        if bytes.len() > usize::from(u16::MAX) {
            return Err(ProtocolError::FieldTooLong(bytes.len()));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| ProtocolError::InvalidUtf8)?;
        if text.contains('\0') {
            return Err(ProtocolError::NulInString);
        }
        Ok(MqttStr(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Validated by `from_bytes`, the only constructor; the check again is a few nanoseconds
        // for topic-sized strings and keeps the crate free of `unsafe`.
        std::str::from_utf8(&self.0).expect("MqttStr holds validated UTF-8")
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<&str> for MqttStr {
    type Error = ProtocolError;
    fn try_from(text: &str) -> Result<MqttStr, ProtocolError> {
        MqttStr::from_bytes(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<String> for MqttStr {
    type Error = ProtocolError;
    fn try_from(text: String) -> Result<MqttStr, ProtocolError> {
        MqttStr::from_bytes(Bytes::from(text))
    }
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic name, as in PUBLISH and the will. Invariant: a non-empty [`MqttStr`] without `+` or
/// `#` (MQTT-4.7.3-1, MQTT-3.3.2-2).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicName(MqttStr);

impl TopicName {
    pub fn new(text: MqttStr) -> Result<TopicName, ProtocolError> {
        if text.is_empty() {
            return Err(ProtocolError::EmptyTopic);
        }
        if text
            .as_bytes()
            .iter()
            .any(|&byte| byte == b'+' || byte == b'#')
        {
            return Err(ProtocolError::WildcardInTopicName);
        }
        Ok(TopicName(text))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttStr {
        &self.0
    }
}

impl TryFrom<&str> for TopicName {
    type Error = ProtocolError;
    fn try_from(text: &str) -> Result<TopicName, ProtocolError> {
        TopicName::new(MqttStr::try_from(text)?)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A topic filter, as in SUBSCRIBE and UNSUBSCRIBE. Invariant: a non-empty [`MqttStr`] whose
/// `#` is a whole last level and whose `+` are whole levels (MQTT-4.7.1-2, -3).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter(MqttStr);

impl TopicFilter {
    pub fn new(text: MqttStr) -> Result<TopicFilter, ProtocolError> {
        if text.is_empty() {
            return Err(ProtocolError::EmptyTopic);
        }
        let mut levels = text.as_str().split('/').peekable();
        while let Some(level) = levels.next() {
            let is_last = levels.peek().is_none();
            let well_formed = match level {
                "#" => is_last,
                "+" => true,
                _ => !level.contains(['+', '#']),
            };
            if !well_formed {
                return Err(ProtocolError::InvalidTopicFilter);
            }
        }
        Ok(TopicFilter(text))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttStr {
        &self.0
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = ProtocolError;
    fn try_from(text: &str) -> Result<TopicFilter, ProtocolError> {
        TopicFilter::new(MqttStr::try_from(text)?)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// CONNECT's password: binary data, in practice a SAS token. `Debug` shows only its length, so
/// a logged packet never leaks a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Bytes);

impl Password {
    pub fn new(bytes: Bytes) -> Password {
        Password(bytes)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password(<{} bytes redacted>)", self.0.len())
    }
}
