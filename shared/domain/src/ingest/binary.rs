//! The binary form of an [`IngestBatch`], which the bridge sends (`Content-Type:`
//! [`BINARY_CONTENT_TYPE`]): the same batch as the JSON form, without JSON's escaping and
//! base64's expansion of bodies. Parsing it is a walk over length-prefixed fields, so the batch
//! spends less of its time in the ingest component before its transaction.
//!
//! Layout, integers little-endian, `len` an unsigned LEB128 varint, `str` a `len` and that
//! many bytes of UTF-8, `bytes` a `len` and that many bytes:
//!
//! ```text
//! batch   = "GIB1" batch_id:str len(messages) message* len(events) event*
//! message = device_id:str module_id:(0x00 | 0x01 str) enqueued_at:i64
//!           len(system) (name:str value:str)* len(application) (name:str value:str)*
//!           body:bytes
//! event   = device_id:str kind:(0x00 connected | 0x01 disconnected) at:i64
//! ```
//!
//! Decoding never trusts a count: nothing is allocated ahead for more items than the bytes
//! left could hold, and any malformed input is an error, never a panic.

use std::collections::BTreeMap;

use super::{ConnectivityEvent, ConnectivityKind, DeviceMessage, IngestBatch};

/// The media type of the binary form.
pub const BINARY_CONTENT_TYPE: &str = "application/vnd.gyre.ingest-batch";

const MAGIC: &[u8; 4] = b"GIB1";

/// Why bytes are not a binary batch: what was expected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a binary ingest batch: {what} at byte {at}")]
pub struct DecodeError {
    pub what: &'static str,
    pub at: usize,
}

/// The batch's binary form.
pub fn encode(batch: &IngestBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len_hint(batch));
    out.extend_from_slice(MAGIC);
    put_str(&mut out, &batch.batch_id);
    put_len(&mut out, batch.messages.len());
    for message in &batch.messages {
        put_str(&mut out, &message.device_id);
        match &message.module_id {
            None => out.push(0),
            Some(module_id) => {
                out.push(1);
                put_str(&mut out, module_id);
            }
        }
        out.extend_from_slice(&message.enqueued_at.to_le_bytes());
        put_len(&mut out, message.system_properties.len());
        for (name, value) in &message.system_properties {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        put_len(&mut out, message.application_properties.len());
        for (name, value) in &message.application_properties {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        put_bytes(&mut out, &message.body);
    }
    put_len(&mut out, batch.events.len());
    for event in &batch.events {
        put_str(&mut out, &event.device_id);
        out.push(match event.kind {
            ConnectivityKind::Connected => 0,
            ConnectivityKind::Disconnected => 1,
        });
        out.extend_from_slice(&event.at.to_le_bytes());
    }
    out
}

/// Bytes a message adds to a batch's binary form, give or take a few for varints.
pub fn message_len(message: &DeviceMessage) -> usize {
    let properties: usize = message
        .system_properties
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum::<usize>()
        + message
            .application_properties
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum::<usize>();
    message.device_id.len()
        + message.module_id.as_ref().map_or(0, String::len)
        + message.body.len()
        + properties
        + 24
}

fn encoded_len_hint(batch: &IngestBatch) -> usize {
    MAGIC.len()
        + batch.batch_id.len()
        + 16
        + batch.messages.iter().map(message_len).sum::<usize>()
        + batch
            .events
            .iter()
            .map(|e| e.device_id.len() + 16)
            .sum::<usize>()
}

/// Parses a batch's binary form; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<IngestBatch, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len(), "the magic bytes GIB1")? != MAGIC {
        return Err(DecodeError {
            what: "the magic bytes GIB1",
            at: 0,
        });
    }
    let batch_id = r.str("the batch id")?;
    // Every message takes at least 14 bytes, every event 10: a count cannot reserve more.
    let n_messages = r.count(14, "the message count")?;
    let mut messages = Vec::with_capacity(n_messages);
    for _ in 0..n_messages {
        let device_id = r.str("a message's device id")?;
        let module_id = match r.byte("a module id flag")? {
            0 => None,
            1 => Some(r.str("a module id")?),
            _ => return Err(r.error_before(1, "a module id flag (0 or 1)")),
        };
        let enqueued_at = r.i64("an enqueued time")?;
        let n_system = r.count(2, "a system property count")?;
        let mut system_properties = BTreeMap::new();
        for _ in 0..n_system {
            let name = r.str("a system property name")?;
            let value = r.str("a system property value")?;
            system_properties.insert(name, value);
        }
        let n_application = r.count(2, "an application property count")?;
        let mut application_properties = Vec::with_capacity(n_application);
        for _ in 0..n_application {
            let name = r.str("an application property name")?;
            let value = r.str("an application property value")?;
            application_properties.push((name, value));
        }
        let body = r.bytes("a message body")?.to_vec();
        messages.push(DeviceMessage {
            device_id,
            module_id,
            enqueued_at,
            system_properties,
            application_properties,
            body,
        });
    }
    let n_events = r.count(10, "the event count")?;
    let mut events = Vec::with_capacity(n_events);
    for _ in 0..n_events {
        let device_id = r.str("an event's device id")?;
        let kind = match r.byte("an event kind")? {
            0 => ConnectivityKind::Connected,
            1 => ConnectivityKind::Disconnected,
            _ => return Err(r.error_before(1, "an event kind (0 or 1)")),
        };
        let at = r.i64("an event time")?;
        events.push(ConnectivityEvent {
            device_id,
            kind,
            at,
        });
    }
    if r.at != bytes.len() {
        return Err(r.error_before(0, "the end of the batch"));
    }
    Ok(IngestBatch {
        batch_id,
        messages,
        events,
    })
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error_before(&self, back: usize, what: &'static str) -> DecodeError {
        DecodeError {
            what,
            at: self.at - back,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error_before(0, what));
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let raw = self.take(8, what)?;
        Ok(i64::from_le_bytes(raw.try_into().expect("8 bytes")))
    }

    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let start = self.at;
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| DecodeError { what, at: start });
            }
        }
        Err(DecodeError { what, at: start })
    }

    /// A count of items that take at least `min_item_len` bytes each.
    fn count(&mut self, min_item_len: usize, what: &'static str) -> Result<usize, DecodeError> {
        let start = self.at;
        let n = self.len(what)?;
        if n > self.remaining() / min_item_len {
            return Err(DecodeError { what, at: start });
        }
        Ok(n)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.len(what)?;
        self.take(n, what)
    }

    fn str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let start = self.at;
        let raw = self.bytes(what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError { what, at: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IngestBatch {
        IngestBatch {
            batch_id: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9".into(),
            messages: vec![
                DeviceMessage {
                    device_id: "thermostat-1".into(),
                    module_id: None,
                    enqueued_at: 1_764_161_225_120,
                    system_properties: BTreeMap::from([
                        ("$.ce".into(), "utf-8".into()),
                        ("$.ct".into(), "application/json".into()),
                    ]),
                    application_properties: vec![
                        ("alert".into(), "true".into()),
                        ("alert".into(), "é=&".into()),
                    ],
                    body: br#"{"temperature":21.5}"#.to_vec(),
                },
                DeviceMessage {
                    device_id: "gateway".into(),
                    module_id: Some("camera".into()),
                    enqueued_at: -1,
                    system_properties: BTreeMap::new(),
                    application_properties: vec![],
                    body: vec![0, 0xff, 0x80, b'\n'],
                },
                DeviceMessage {
                    device_id: "x".repeat(300),
                    module_id: Some(String::new()),
                    enqueued_at: i64::MAX,
                    system_properties: BTreeMap::new(),
                    application_properties: vec![],
                    body: vec![7; 70_000],
                },
            ],
            events: vec![
                ConnectivityEvent {
                    device_id: "thermostat-1".into(),
                    kind: ConnectivityKind::Connected,
                    at: 1,
                },
                ConnectivityEvent {
                    device_id: "gateway".into(),
                    kind: ConnectivityKind::Disconnected,
                    at: i64::MIN,
                },
            ],
        }
    }

    #[test]
    fn a_batch_round_trips_through_its_binary_form() {
        let batch = sample();
        let bytes = encode(&batch);
        assert_eq!(decode(&bytes).unwrap(), batch);
        let empty = IngestBatch {
            batch_id: String::new(),
            messages: vec![],
            events: vec![],
        };
        assert_eq!(encode(&empty), b"GIB1\0\0\0");
        assert_eq!(decode(b"GIB1\0\0\0").unwrap(), empty);
    }

    #[test]
    fn message_len_is_close_to_what_a_message_adds() {
        let batch = sample();
        let base = encode(&IngestBatch {
            messages: vec![],
            ..batch.clone()
        })
        .len();
        for message in &batch.messages {
            let one = encode(&IngestBatch {
                messages: vec![message.clone()],
                ..batch.clone()
            })
            .len();
            let added = one - base;
            let estimate = message_len(message);
            assert!(
                added <= estimate && estimate <= added + 32,
                "{added} bytes added, {estimate} estimated"
            );
        }
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_an_error() {
        let bytes = encode(&sample());
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "truncated at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer).unwrap_err(),
            DecodeError {
                what: "the end of the batch",
                at: bytes.len()
            }
        );
    }

    #[test]
    fn malformed_fields_are_errors_that_say_where() {
        let bad = |bytes: &[u8]| decode(bytes).unwrap_err();
        assert_eq!(bad(b"GIB2\0\0\0").what, "the magic bytes GIB1");
        // A string that is not UTF-8.
        assert_eq!(
            bad(b"GIB1\x02\xff\xfe\0\0"),
            DecodeError {
                what: "the batch id",
                at: 4
            }
        );
        // A varint longer than 64 bits.
        assert_eq!(
            bad(b"GIB1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").what,
            "the batch id"
        );
        // Counts the bytes left cannot hold allocate nothing.
        assert_eq!(bad(b"GIB1\0\xff\xff\xff\xff\x0f").what, "the message count");
        assert_eq!(bad(b"GIB1\0\0\xff\xff\xff\xff\x0f").what, "the event count");
        // An unknown module flag and event kind.
        let mut message = b"GIB1\0\x01\x01d\x02".to_vec();
        message.extend_from_slice(&[0; 16]);
        assert_eq!(bad(&message).what, "a module id flag (0 or 1)");
        let mut event = b"GIB1\0\0\x01\x01d\x07".to_vec();
        event.extend_from_slice(&[0; 8]);
        assert_eq!(
            bad(&event),
            DecodeError {
                what: "an event kind (0 or 1)",
                at: 9
            }
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: flip, drop and duplicate bytes of a valid batch.
        let bytes = encode(&sample());
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let mut mutated = bytes[..bytes.len().min(400)].to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % mutated.len();
                match next() % 3 {
                    0 => mutated[at] = next() as u8,
                    1 => {
                        mutated.remove(at);
                    }
                    _ => mutated.insert(at, next() as u8),
                }
            }
            let _ = decode(&mutated);
        }
    }
}
