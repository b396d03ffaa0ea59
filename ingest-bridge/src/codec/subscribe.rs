//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 sections 3.8 to 3.11).
//!
//! The list packets are never empty (MQTT-3.8.3-3, MQTT-3.10.3-2), so their fields are private
//! and their constructors refuse an empty list.

use bytes::{BufMut, BytesMut};

use super::types::{PacketId, QoS, TopicFilter};
use super::wire::{field_len, put_string, Reader};
use super::ProtocolError;

/// One entry of a SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: TopicFilter,
    pub qos: QoS,
}

/// A SUBSCRIBE. Invariant: at least one filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    packet_id: PacketId,
    filters: Vec<SubscribeFilter>,
}

/// One return code of a SUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubAckCode {
    Granted(QoS),
    Failure,
}

/// A SUBACK. Invariant: at least one return code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    packet_id: PacketId,
    codes: Vec<SubAckCode>,
}

/// An UNSUBSCRIBE. Invariant: at least one filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    packet_id: PacketId,
    filters: Vec<TopicFilter>,
}

/// An UNSUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
}

const SUBACK_FAILURE: u8 = 0x80;

impl Subscribe {
    pub fn new(
        packet_id: PacketId,
        filters: Vec<SubscribeFilter>,
    ) -> Result<Subscribe, ProtocolError> {
        if filters.is_empty() {
            return Err(ProtocolError::EmptyList);
        }
        Ok(Subscribe { packet_id, filters })
    }

    pub fn packet_id(&self) -> PacketId {
        self.packet_id
    }

    pub fn filters(&self) -> &[SubscribeFilter] {
        &self.filters
    }

    pub(super) fn read(reader: &mut Reader) -> Result<Subscribe, ProtocolError> {
        let packet_id = reader.packet_id()?;
        let mut filters = Vec::new();
        while !reader.is_empty() {
            let filter = TopicFilter::new(reader.string()?)?;
            // The upper six bits are reserved (MQTT-3.8.3-4), so any of them set is an invalid
            // QoS byte, as is 3.
            let qos = QoS::from_u8(reader.u8()?)?;
            filters.push(SubscribeFilter { filter, qos });
        }
        Subscribe::new(packet_id, filters)
    }

    pub(super) fn remaining_length(&self) -> usize {
        let filters_len: usize = self
            .filters
            .iter()
            .map(|entry| field_len(entry.filter.as_mqtt_str().as_bytes()) + 1)
            .sum();
        2 + filters_len
    }

    pub(super) fn write(&self, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        for entry in &self.filters {
            put_string(entry.filter.as_mqtt_str(), dst);
            dst.put_u8(entry.qos as u8);
        }
    }
}

impl SubAck {
    pub fn new(packet_id: PacketId, codes: Vec<SubAckCode>) -> Result<SubAck, ProtocolError> {
        if codes.is_empty() {
            return Err(ProtocolError::EmptyList);
        }
        Ok(SubAck { packet_id, codes })
    }

    pub fn packet_id(&self) -> PacketId {
        self.packet_id
    }

    pub fn codes(&self) -> &[SubAckCode] {
        &self.codes
    }

    pub(super) fn read(reader: &mut Reader) -> Result<SubAck, ProtocolError> {
        let packet_id = reader.packet_id()?;
        let mut codes = Vec::new();
        while !reader.is_empty() {
            let code = match reader.u8()? {
                SUBACK_FAILURE => SubAckCode::Failure,
                value @ 0..=2 => SubAckCode::Granted(QoS::from_u8(value)?),
                other => return Err(ProtocolError::InvalidReturnCode(other)),
            };
            codes.push(code);
        }
        SubAck::new(packet_id, codes)
    }

    pub(super) fn remaining_length(&self) -> usize {
        2 + self.codes.len()
    }

    pub(super) fn write(&self, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        for code in &self.codes {
            dst.put_u8(match code {
                SubAckCode::Granted(qos) => *qos as u8,
                SubAckCode::Failure => SUBACK_FAILURE,
            });
        }
    }
}

impl Unsubscribe {
    pub fn new(
        packet_id: PacketId,
        filters: Vec<TopicFilter>,
    ) -> Result<Unsubscribe, ProtocolError> {
        if filters.is_empty() {
            return Err(ProtocolError::EmptyList);
        }
        Ok(Unsubscribe { packet_id, filters })
    }

    pub fn packet_id(&self) -> PacketId {
        self.packet_id
    }

    pub fn filters(&self) -> &[TopicFilter] {
        &self.filters
    }

    pub(super) fn read(reader: &mut Reader) -> Result<Unsubscribe, ProtocolError> {
        let packet_id = reader.packet_id()?;
        let mut filters = Vec::new();
        while !reader.is_empty() {
            filters.push(TopicFilter::new(reader.string()?)?);
        }
        Unsubscribe::new(packet_id, filters)
    }

    pub(super) fn remaining_length(&self) -> usize {
        let filters_len: usize = self
            .filters
            .iter()
            .map(|filter| field_len(filter.as_mqtt_str().as_bytes()))
            .sum();
        2 + filters_len
    }

    pub(super) fn write(&self, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        for filter in &self.filters {
            put_string(filter.as_mqtt_str(), dst);
        }
    }
}

impl UnsubAck {
    pub(super) fn read(reader: &mut Reader) -> Result<UnsubAck, ProtocolError> {
        Ok(UnsubAck {
            packet_id: reader.packet_id()?,
        })
    }
}
