//! The field encodings shared by every packet: a cursor that splits fields off a frame without
//! copying, and the matching writers.

use bytes::{BufMut, Bytes, BytesMut};

use super::types::{MqttStr, PacketId};
use super::ProtocolError;

/// A cursor over one packet's variable header and payload. Every read checks the length first,
/// so a short packet is [`ProtocolError::Truncated`], never a panic.
pub(super) struct Reader {
    rest: Bytes,
}

impl Reader {
    pub(super) fn new(body: Bytes) -> Reader {
        Reader { rest: body }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, ProtocolError> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(super) fn packet_id(&mut self) -> Result<PacketId, ProtocolError> {
        PacketId::new(self.u16()?).ok_or(ProtocolError::ZeroPacketId)
    }

    /// Binary data: a two-byte length, then that many bytes.
    pub(super) fn binary(&mut self) -> Result<Bytes, ProtocolError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub(super) fn string(&mut self) -> Result<MqttStr, ProtocolError> {
        MqttStr::from_bytes(self.binary()?)
    }

    /// Everything left, e.g. a PUBLISH payload.
    pub(super) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.rest)
    }

    pub(super) fn finish(self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes(self.rest.len()))
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        if self.rest.len() < n {
            return Err(ProtocolError::Truncated);
        }
        Ok(self.rest.split_to(n))
    }
}

/// Writes a two-byte length and the bytes. The caller has checked `bytes.len() <= 65535`
/// (an [`MqttStr`] is by construction; binary fields in `Connect::remaining_length`).
pub(super) fn put_binary(bytes: &[u8], dst: &mut BytesMut) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    dst.put_u16(bytes.len() as u16);
    dst.put_slice(bytes);
}

pub(super) fn put_string(text: &MqttStr, dst: &mut BytesMut) {
    put_binary(text.as_bytes(), dst);
}

/// The encoded size of a string or binary field.
pub(super) fn field_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}
