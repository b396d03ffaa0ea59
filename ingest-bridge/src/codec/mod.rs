//! MQTT 3.1.1 (protocol level 4) packets as values: [`check`], [`parse`] and [`encode`]. No IO.
//!
//! Owns the wire format of every packet the bridge exchanges with a device: CONNECT, CONNACK,
//! PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP and DISCONNECT.
//! Does not own any policy: whether a client id, a topic or a QoS is acceptable to Gyre is the
//! session's and the router's call. The codec only says whether the bytes are MQTT 3.1.1.
//!
//! Reading is two steps, as in mini-redis's `Frame::check` / `Frame::parse`:
//! 1. [`check`] looks at the buffered bytes without allocating. [`FrameError::Incomplete`] means
//!    "read more"; [`FrameError::Invalid`] and [`FrameError::TooLarge`] mean "close this
//!    connection". A declared length over the maximum is refused as soon as the length field is
//!    read, before the connection buffers (or allocates for) the body.
//! 2. [`parse`] takes exactly one frame as `Bytes` split off the read buffer and validates every
//!    field against the 3.1.1 specification. Payloads, topics and strings are slices of that
//!    frame, so a PUBLISH costs no copy of its body.
//!
//! QoS 2 is outside what the bridge serves (IoT Hub supports QoS 0 and 1 only), but a PUBLISH at
//! QoS 2 is still well-formed MQTT: it parses to [`PublishQos::ExactlyOnce`] and the session
//! decides what to do with it. PUBREC, PUBREL and PUBCOMP are refused as
//! [`ProtocolError::UnsupportedPacketType`].
//!
//! Why hand-written rather than a crate (checked in November 2026 with `cargo info` and each
//! crate's published source):
//! - `rumqttc` 0.25 (maintained) has a v4 codec with a max-size `check`, but it is the internals
//!   of a client: it drags in tokio, flume and rustls, copies every topic and string into a
//!   `String`, and its parser checks neither the reserved fixed-header flags (SUBSCRIBE's
//!   `0b0010`) nor the subscription options' reserved bits, NUL in strings, wildcards in PUBLISH
//!   topics or topic-filter syntax.
//! - `mqttbytes` 0.6 is the same code frozen in 2021, superseded by `rumqttc`'s copy.
//! - `mqttrs` 0.4 decodes from a slice with no maximum size; last released in 2021.
//! - `mqtt-protocol` 0.12 decodes from `std::io::Read` into `Vec<u8>` payloads (a copy per
//!   packet, no check before allocating).
//! - `mqtt-codec` 0.3 is actix's 2019 codec, unmaintained.
//!
//! MQTT 3.1.1 is small and frozen, so the code below is cheap to own and to test exhaustively.

mod connect;
mod publish;
mod subscribe;
mod types;
mod wire;

pub use connect::{ConnAck, Connect, ConnectReturnCode, Credentials, Will};
pub use publish::{PubAck, Publish, PublishQos};
pub use subscribe::{SubAck, SubAckCode, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe};
pub use types::{MqttStr, PacketId, Password, QoS, TopicFilter, TopicName};

use bytes::{BufMut, Bytes, BytesMut};
use wire::Reader;

/// The largest value the remaining-length field can carry (four bytes of seven bits).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// One MQTT 3.1.1 control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect,
}

/// Why [`check`] cannot hand out a frame yet, or ever.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a whole frame yet: read more bytes and call [`check`] again. Not an error of the peer.
    #[error("incomplete frame")]
    Incomplete,
    /// The fixed header is not MQTT 3.1.1: close this connection.
    #[error("invalid frame")]
    Invalid(#[source] ProtocolError),
    /// The frame declares more bytes (fixed header included) than the bridge accepts: close this
    /// connection. Detected from the length field alone, before the body is buffered.
    #[error("frame of {declared} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge { declared: usize, max: usize },
}

/// A violation of the MQTT 3.1.1 specification (the `MQTT-x.y.z-n` rule is named where one
/// exists). Every one closes the connection; those for which the specification asks for a
/// CONNACK first say so through [`ProtocolError::connack_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown packet type {0}")]
    UnknownPacketType(u8),
    /// PUBREC, PUBREL, PUBCOMP: the QoS 2 flow, which the bridge does not serve.
    #[error("unsupported packet type {0} (QoS 2 flow)")]
    UnsupportedPacketType(u8),
    /// Reserved fixed-header flag bits with the wrong value (MQTT-2.2.2-1, -2; MQTT-3.3.1-2).
    #[error("invalid fixed-header flags {flags:#06b} for packet type {packet_type}")]
    InvalidFlags { packet_type: u8, flags: u8 },
    /// A fifth remaining-length byte would be needed.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The frame given to [`parse`] is not exactly one frame long.
    #[error("remaining length declares {declared} bytes but the frame holds {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    /// A field runs past the end of the packet.
    #[error("packet ends inside a field")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// MQTT-1.5.3-1.
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    /// MQTT-1.5.3-2.
    #[error("string contains U+0000")]
    NulInString,
    #[error("string or binary field of {0} bytes exceeds 65535 bytes")]
    FieldTooLong(usize),
    /// Neither "MQTT" nor "MQIsdp" (MQTT-3.1.2-1): close without a CONNACK.
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// Any protocol level but 4 (MQTT-3.1.2-2): CONNACK 1, then close.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// Reserved bit set, will QoS or retain without the will flag, or a password without a user
    /// name (MQTT-3.1.2-3, -11, -13, -15, -22).
    #[error("invalid CONNECT flags {0:#010b}")]
    InvalidConnectFlags(u8),
    /// A zero-length client id with clean session 0 (MQTT-3.1.3-8): CONNACK 2, then close.
    #[error("empty client id without clean session")]
    EmptyClientId,
    #[error("invalid QoS {0}")]
    InvalidQos(u8),
    #[error("packet id 0")]
    ZeroPacketId,
    /// MQTT-4.7.3-1.
    #[error("empty topic")]
    EmptyTopic,
    /// MQTT-3.3.2-2.
    #[error("wildcard in topic name")]
    WildcardInTopicName,
    /// MQTT-4.7.1-2, -3.
    #[error("invalid topic filter")]
    InvalidTopicFilter,
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter, SUBACK without a return code
    /// (MQTT-3.8.3-3, MQTT-3.10.3-2).
    #[error("empty payload list")]
    EmptyList,
    /// CONNACK's reserved bits, or session present with a refusal (MQTT-3.2.2-4).
    #[error("invalid CONNACK flags {0:#010b}")]
    InvalidConnAckFlags(u8),
    #[error("invalid return code {0:#04x}")]
    InvalidReturnCode(u8),
}

impl ProtocolError {
    /// The CONNACK return code the server must send before closing, when the specification asks
    /// for one; `None` means close without answering.
    pub fn connack_code(&self) -> Option<ConnectReturnCode> {
        match self {
            ProtocolError::UnsupportedProtocolLevel(_) => {
                Some(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            ProtocolError::EmptyClientId => Some(ConnectReturnCode::IdentifierRejected),
            _ => None,
        }
    }
}

/// Why [`encode`] wrote nothing: the packet cannot be expressed in MQTT 3.1.1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("remaining length {0} exceeds the MQTT maximum of 268435455")]
    TooLarge(usize),
    /// A will payload or a password longer than a two-byte length prefix allows.
    #[error("binary field of {0} bytes exceeds 65535 bytes")]
    FieldTooLong(usize),
}

/// Whether `buf` starts with a whole frame that may be parsed; its total length (fixed header
/// included) if so. Allocates nothing and reads at most the first five bytes plus the length.
///
/// `max_packet_size` bounds the total length. It is compared with the declared length as soon as
/// the length field is complete, so an oversized frame is refused before its body arrives.
pub fn check(buf: &[u8], max_packet_size: usize) -> Result<usize, FrameError> {
    let Some(&first) = buf.first() else {
        return Err(FrameError::Incomplete);
    };
    PacketType::from_first_byte(first).map_err(FrameError::Invalid)?;
    let (remaining_length, n_length_bytes) = match remaining_length(&buf[1..]) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return Err(FrameError::Incomplete),
        Err(err) => return Err(FrameError::Invalid(err)),
    };
    let frame_length = 1 + n_length_bytes + remaining_length;
    if frame_length > max_packet_size {
        return Err(FrameError::TooLarge {
            declared: frame_length,
            max: max_packet_size,
        });
    }
    if buf.len() < frame_length {
        return Err(FrameError::Incomplete);
    }
    Ok(frame_length)
}

/// Parses exactly one frame (as delimited by [`check`]) and validates every field.
pub fn parse(frame: Bytes) -> Result<Packet, ProtocolError> {
    let Some(&first) = frame.first() else {
        return Err(ProtocolError::Truncated);
    };
    let packet_type = PacketType::from_first_byte(first)?;
    let (declared, n_length_bytes) =
        remaining_length(&frame[1..])?.ok_or(ProtocolError::Truncated)?;
    let header_length = 1 + n_length_bytes;
    let actual = frame.len() - header_length;
    if declared != actual {
        return Err(ProtocolError::LengthMismatch { declared, actual });
    }
    let flags = first & 0x0F;
    let mut reader = Reader::new(frame.slice(header_length..));
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(Connect::read(&mut reader)?),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::read(&mut reader)?),
        PacketType::Publish => Packet::Publish(Publish::read(flags, &mut reader)?),
        PacketType::PubAck => Packet::PubAck(PubAck::read(&mut reader)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::read(&mut reader)?),
        PacketType::SubAck => Packet::SubAck(SubAck::read(&mut reader)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::read(&mut reader)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::read(&mut reader)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect,
    };
    reader.finish()?;
    Ok(packet)
}

/// Appends `packet`'s frame to `dst`. On error nothing is written.
pub fn encode(packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let (first, remaining_length) = match packet {
        Packet::Connect(connect) => (0x10, connect.remaining_length()?),
        Packet::ConnAck(_) => (0x20, 2),
        Packet::Publish(publish) => (0x30 | publish.flags(), publish.remaining_length()),
        Packet::PubAck(_) => (0x40, 2),
        Packet::Subscribe(subscribe) => (0x82, subscribe.remaining_length()),
        Packet::SubAck(suback) => (0x90, suback.remaining_length()),
        Packet::Unsubscribe(unsubscribe) => (0xA2, unsubscribe.remaining_length()),
        Packet::UnsubAck(_) => (0xB0, 2),
        Packet::PingReq => (0xC0, 0),
        Packet::PingResp => (0xD0, 0),
        Packet::Disconnect => (0xE0, 0),
    };
    if remaining_length > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge(remaining_length));
    }
    dst.reserve(1 + 4 + remaining_length);
    dst.put_u8(first);
    put_remaining_length(remaining_length, dst);
    let start = dst.len();
    match packet {
        Packet::Connect(connect) => connect.write(dst),
        Packet::ConnAck(connack) => connack.write(dst),
        Packet::Publish(publish) => publish.write(dst),
        Packet::PubAck(puback) => dst.put_u16(puback.packet_id.get()),
        Packet::Subscribe(subscribe) => subscribe.write(dst),
        Packet::SubAck(suback) => suback.write(dst),
        Packet::Unsubscribe(unsubscribe) => unsubscribe.write(dst),
        Packet::UnsubAck(unsuback) => dst.put_u16(unsuback.packet_id.get()),
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => {}
    }
    debug_assert_eq!(dst.len() - start, remaining_length);
    Ok(())
}

/// The packet types this codec parses, decoded from a valid first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PacketType {
    Connect,
    ConnAck,
    Publish,
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
}

impl PacketType {
    /// Validates the packet type and its fixed-header flags (MQTT-2.2.2-1, -2; for PUBLISH,
    /// QoS 3 and DUP at QoS 0 are refused here, MQTT-3.3.1-2, -4).
    fn from_first_byte(first: u8) -> Result<PacketType, ProtocolError> {
        let packet_type = first >> 4;
        let flags = first & 0x0F;
        let (decoded, required_flags) = match packet_type {
            1 => (PacketType::Connect, 0),
            2 => (PacketType::ConnAck, 0),
            3 => {
                let qos = (flags >> 1) & 0b11;
                if qos == 3 {
                    return Err(ProtocolError::InvalidQos(qos));
                }
                let dup = flags & 0b1000 != 0;
                if dup && qos == 0 {
                    return Err(ProtocolError::InvalidFlags { packet_type, flags });
                }
                return Ok(PacketType::Publish);
            }
            4 => (PacketType::PubAck, 0),
            5..=7 => return Err(ProtocolError::UnsupportedPacketType(packet_type)),
            8 => (PacketType::Subscribe, 0b0010),
            9 => (PacketType::SubAck, 0),
            10 => (PacketType::Unsubscribe, 0b0010),
            11 => (PacketType::UnsubAck, 0),
            12 => (PacketType::PingReq, 0),
            13 => (PacketType::PingResp, 0),
            14 => (PacketType::Disconnect, 0),
            _ => return Err(ProtocolError::UnknownPacketType(packet_type)),
        };
        if flags != required_flags {
            return Err(ProtocolError::InvalidFlags { packet_type, flags });
        }
        Ok(decoded)
    }
}

/// Decodes the remaining-length field at the start of `buf`: `Ok(None)` if it is not complete
/// yet, otherwise its value and how many bytes it took. MQTT 3.1.1 allows up to four bytes and
/// does not require the shortest encoding, so `0x80 0x00` is a valid zero.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut value = 0usize;
    for (idx, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * idx);
        if byte & 0x80 == 0 {
            return Ok(Some((value, idx + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(ProtocolError::MalformedRemainingLength)
    } else {
        Ok(None)
    }
}

fn put_remaining_length(mut value: usize, dst: &mut BytesMut) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}
