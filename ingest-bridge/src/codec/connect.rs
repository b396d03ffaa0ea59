//! CONNECT and CONNACK (MQTT 3.1.1 sections 3.1 and 3.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::types::{MqttStr, Password, QoS, TopicName};
use super::wire::{field_len, put_binary, put_string, Reader};
use super::{EncodeError, ProtocolError};

const PROTOCOL_NAME: &[u8] = b"MQTT";
const PROTOCOL_LEVEL: u8 = 4;
/// MQTT 3.1's protocol name. A 3.1 client gets CONNACK 1 rather than a silent close.
const PROTOCOL_NAME_V31: &[u8] = b"MQIsdp";

const CLEAN_SESSION: u8 = 0b0000_0010;
const WILL: u8 = 0b0000_0100;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0b0010_0000;
const PASSWORD: u8 = 0b0100_0000;
const USERNAME: u8 = 0b1000_0000;
const RESERVED: u8 = 0b0000_0001;

/// A CONNECT at protocol level 4. The protocol name and level are implied: anything else is
/// refused by [`super::parse`] and always written as "MQTT" level 4 by [`super::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub clean_session: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// May be empty only with `clean_session` (MQTT-3.1.3-8); the server decides whether to
    /// accept an empty one at all.
    pub client_id: MqttStr,
    pub will: Option<Will>,
    pub credentials: Option<Credentials>,
}

/// The will message of a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    pub topic: TopicName,
    /// At most 65535 bytes to be encodable.
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// User name and optional password. A password without a user name is not MQTT 3.1.1
/// (MQTT-3.1.2-22), so the type cannot express it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: MqttStr,
    /// At most 65535 bytes to be encodable.
    pub password: Option<Password>,
}

/// CONNACK's return code (MQTT 3.1.1 table 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUsernameOrPassword = 4,
    NotAuthorized = 5,
}

/// A CONNACK. Build a refusal with `session_present: false` (MQTT-3.2.2-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ConnectReturnCode,
}

impl Connect {
    pub(super) fn read(reader: &mut Reader) -> Result<Connect, ProtocolError> {
        // Name and level first: for any other protocol (MQTT 5 included) the rest of the packet
        // has another layout, and the answer is CONNACK 1 whatever it holds.
        let protocol_name = reader.binary()?;
        if protocol_name != PROTOCOL_NAME && protocol_name != PROTOCOL_NAME_V31 {
            return Err(ProtocolError::InvalidProtocolName);
        }
        let level = reader.u8()?;
        if protocol_name != PROTOCOL_NAME || level != PROTOCOL_LEVEL {
            return Err(ProtocolError::UnsupportedProtocolLevel(level));
        }

        let flags = reader.u8()?;
        let has_will = flags & WILL != 0;
        let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & WILL_RETAIN != 0;
        let has_username = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        if flags & RESERVED != 0
            || (!has_will && (will_qos != 0 || will_retain))
            || (has_password && !has_username)
        {
            return Err(ProtocolError::InvalidConnectFlags(flags));
        }
        let will_qos = QoS::from_u8(will_qos)?;
        let clean_session = flags & CLEAN_SESSION != 0;
        let keep_alive = reader.u16()?;

        let client_id = reader.string()?;
        if client_id.is_empty() && !clean_session {
            return Err(ProtocolError::EmptyClientId);
        }
        let will = if has_will {
            let topic = TopicName::new(reader.string()?)?;
            let payload = reader.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
            })
        } else {
            None
        };
        let credentials = if has_username {
            let username = reader.string()?;
            let password = if has_password {
                Some(Password::new(reader.binary()?))
            } else {
                None
            };
            Some(Credentials { username, password })
        } else {
            None
        };
        Ok(Connect {
            clean_session,
            keep_alive,
            client_id,
            will,
            credentials,
        })
    }

    /// Checks the binary fields' length limits on the way, so `write` cannot overflow a prefix.
    pub(super) fn remaining_length(&self) -> Result<usize, EncodeError> {
        let mut len = field_len(PROTOCOL_NAME) + 1 + 1 + 2 + field_len(self.client_id.as_bytes());
        if let Some(will) = &self.will {
            check_binary(&will.payload)?;
            len += field_len(will.topic.as_mqtt_str().as_bytes()) + field_len(&will.payload);
        }
        if let Some(credentials) = &self.credentials {
            len += field_len(credentials.username.as_bytes());
            if let Some(password) = &credentials.password {
                check_binary(password.as_bytes())?;
                len += field_len(password.as_bytes());
            }
        }
        Ok(len)
    }

    pub(super) fn write(&self, dst: &mut BytesMut) {
        let mut flags = 0;
        if self.clean_session {
            flags |= CLEAN_SESSION;
        }
        if let Some(will) = &self.will {
            flags |= WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if let Some(credentials) = &self.credentials {
            flags |= USERNAME;
            if credentials.password.is_some() {
                flags |= PASSWORD;
            }
        }
        put_binary(PROTOCOL_NAME, dst);
        dst.put_u8(PROTOCOL_LEVEL);
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        put_string(&self.client_id, dst);
        if let Some(will) = &self.will {
            put_string(will.topic.as_mqtt_str(), dst);
            put_binary(&will.payload, dst);
        }
        if let Some(credentials) = &self.credentials {
            put_string(&credentials.username, dst);
            if let Some(password) = &credentials.password {
                put_binary(password.as_bytes(), dst);
            }
        }
    }
}

fn check_binary(bytes: &[u8]) -> Result<(), EncodeError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong(bytes.len()));
    }
    Ok(())
}

impl ConnectReturnCode {
    fn from_u8(value: u8) -> Result<ConnectReturnCode, ProtocolError> {
        match value {
            0 => Ok(ConnectReturnCode::Accepted),
            1 => Ok(ConnectReturnCode::UnacceptableProtocolVersion),
            2 => Ok(ConnectReturnCode::IdentifierRejected),
            3 => Ok(ConnectReturnCode::ServerUnavailable),
            4 => Ok(ConnectReturnCode::BadUsernameOrPassword),
            5 => Ok(ConnectReturnCode::NotAuthorized),
            other => Err(ProtocolError::InvalidReturnCode(other)),
        }
    }
}

impl ConnAck {
    pub(super) fn read(reader: &mut Reader) -> Result<ConnAck, ProtocolError> {
        let flags = reader.u8()?;
        let code = ConnectReturnCode::from_u8(reader.u8()?)?;
        let session_present = flags & 1 != 0;
        if flags & !1 != 0 || (session_present && code != ConnectReturnCode::Accepted) {
            return Err(ProtocolError::InvalidConnAckFlags(flags));
        }
        Ok(ConnAck {
            session_present,
            code,
        })
    }

    pub(super) fn write(&self, dst: &mut BytesMut) {
        dst.put_u8(u8::from(self.session_present));
        dst.put_u8(self.code as u8);
    }
}
