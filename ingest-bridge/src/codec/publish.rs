//! PUBLISH and PUBACK (MQTT 3.1.1 sections 3.3 and 3.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::types::{PacketId, QoS, TopicName};
use super::wire::{field_len, put_string, Reader};
use super::ProtocolError;

/// A PUBLISH. The payload is a slice of the frame it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: TopicName,
    pub qos: PublishQos,
    pub retain: bool,
    pub payload: Bytes,
}

/// The QoS of a PUBLISH with what only QoS 1 and 2 carry: a packet id and the DUP flag
/// (MQTT-3.3.1-2: DUP is 0 at QoS 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishQos {
    AtMostOnce,
    AtLeastOnce {
        packet_id: PacketId,
        dup: bool,
    },
    /// Well-formed MQTT, but outside what the bridge serves: the session decides (IoT Hub does
    /// not serve QoS 2 either).
    ExactlyOnce {
        packet_id: PacketId,
        dup: bool,
    },
}

impl PublishQos {
    pub fn qos(&self) -> QoS {
        match self {
            PublishQos::AtMostOnce => QoS::AtMostOnce,
            PublishQos::AtLeastOnce { .. } => QoS::AtLeastOnce,
            PublishQos::ExactlyOnce { .. } => QoS::ExactlyOnce,
        }
    }

    pub fn packet_id(&self) -> Option<PacketId> {
        match *self {
            PublishQos::AtMostOnce => None,
            PublishQos::AtLeastOnce { packet_id, .. }
            | PublishQos::ExactlyOnce { packet_id, .. } => Some(packet_id),
        }
    }

    pub fn dup(&self) -> bool {
        match *self {
            PublishQos::AtMostOnce => false,
            PublishQos::AtLeastOnce { dup, .. } | PublishQos::ExactlyOnce { dup, .. } => dup,
        }
    }
}

/// A PUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PubAck {
    pub packet_id: PacketId,
}

impl Publish {
    /// `flags` were validated with the fixed header (no QoS 3, no DUP at QoS 0).
    pub(super) fn read(flags: u8, reader: &mut Reader) -> Result<Publish, ProtocolError> {
        let dup = flags & 0b1000 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0b11)?;
        let retain = flags & 0b0001 != 0;
        let topic = TopicName::new(reader.string()?)?;
        let qos = match qos {
            QoS::AtMostOnce => PublishQos::AtMostOnce,
            QoS::AtLeastOnce => PublishQos::AtLeastOnce {
                packet_id: reader.packet_id()?,
                dup,
            },
            QoS::ExactlyOnce => PublishQos::ExactlyOnce {
                packet_id: reader.packet_id()?,
                dup,
            },
        };
        let payload = reader.rest();
        Ok(Publish {
            topic,
            qos,
            retain,
            payload,
        })
    }

    pub(super) fn flags(&self) -> u8 {
        let mut flags = (self.qos.qos() as u8) << 1;
        if self.qos.dup() {
            flags |= 0b1000;
        }
        if self.retain {
            flags |= 0b0001;
        }
        flags
    }

    pub(super) fn remaining_length(&self) -> usize {
        let packet_id_len = if self.qos.packet_id().is_some() { 2 } else { 0 };
        field_len(self.topic.as_mqtt_str().as_bytes()) + packet_id_len + self.payload.len()
    }

    pub(super) fn write(&self, dst: &mut BytesMut) {
        put_string(self.topic.as_mqtt_str(), dst);
        if let Some(packet_id) = self.qos.packet_id() {
            dst.put_u16(packet_id.get());
        }
        dst.put_slice(&self.payload);
    }
}

impl PubAck {
    pub(super) fn read(reader: &mut Reader) -> Result<PubAck, ProtocolError> {
        Ok(PubAck {
            packet_id: reader.packet_id()?,
        })
    }
}
