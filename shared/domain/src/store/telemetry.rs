//! Telemetry storage: ingest batches prepared outside any transaction ([`prepare`]) and written,
//! one or many, in one transaction ([`apply_prepared`]; [`apply_batch`] for one), the inbox
//! compacted into the per-device table ([`compact`]), and the reads ([`series`],
//! [`last_values`], [`connectivity`]).
//!
//! Layout (see the `telemetry` migration): messages are appended to `telemetry_inbox` (rowid
//! key only, so ingest maintains no secondary index), and [`compact`] later moves them, oldest
//! first and at most `max_rows` per call, into `telemetry`, a WITHOUT ROWID table keyed by
//! (device, enqueued time, seq). A row is in exactly one of the two tables at any time (the move
//! is one transaction), and [`series`] reads both, so reads are right before compaction.
//!
//! What a batch writes, all in one `BEGIN IMMEDIATE` transaction:
//! - `ingest_batches`: the batch id; a batch id seen before writes nothing (the bridge retries
//!   batches whose answer it lost, and a journal entry is replayed after a crash).
//! - `telemetry_inbox`: one row per message, the body exactly as sent. A body is read as JSON
//!   unless `$.ct` names a non-JSON type or `$.ce` a non-UTF-8 encoding; a JSON object's
//!   top-level fields become `fields`, and those the device's template does not declare as
//!   telemetry of the message's component (`$.sub`) are listed in `unmodeled` (a device without
//!   a template, or unknown, has every field unmodeled). Fields are kept either way. The
//!   message's properties are kept as its compact property bag ([`properties_json`] reads it).
//! - `last_values`: per (device, component, field), the value of the newest message by
//!   enqueued time, kept as one row per (device, component) whose `fields` object holds
//!   `[value, enqueued_at]` per name (one row per device a batch, not one per field). A
//!   batch's own newest wins inside it; against the stored row, a newer batch overrides and an
//!   older one (a late retry) only adds names not seen yet, so it never overwrites a newer
//!   value.
//!
//! Only SQLite's own work runs inside the transaction: decoding, the device lookup and building
//! every statement happen before `BEGIN`, because SQLite has one writer at a time and the
//! time a batch holds the write lock bounds the ingest rate.
//! - `connectivity`: one row per connect or disconnect event.
//! - `devices.provisioned = 1` for registered devices that sent a message or connected.
//!   Unknown device ids keep their rows but create no device. The device's etag is left
//!   alone: `provisioned` is not something a client can write or make conditional.
//!
//! Not owned here: the wire contract (`crate::ingest`), when compaction runs (the caller).

use std::collections::{BTreeMap, BTreeSet};

use super::{Rows, Sql, StoreError, Value};
use crate::dtdl::DeviceModel;
use crate::ingest::{ConnectivityKind, DeviceMessage, IngestBatch, IngestResult};
use crate::time::Timestamp;

/// Longest batch id and device id accepted (IoT Hub device ids are at most 128 characters).
pub const MAX_ID_LEN: usize = 128;

/// Rows per multi-row INSERT: fewer statements (and host calls in Spin) per batch, well under
/// SQLite's 32,766 parameters.
const INSERT_CHUNK: usize = 256;

/// Why [`apply_batch`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch breaks the contract (bad base64, empty or overlong ids); nothing was written.
    #[error("{message}")]
    Invalid { message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One stored message, as [`series`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryRow {
    pub seq: i64,
    pub device_id: String,
    pub module_id: Option<String>,
    /// `$.sub`; `None` for the root Interface.
    pub component: Option<String>,
    pub enqueued_at: i64,
    /// `iothub-creation-time-utc` (or `$.ctime`) when the device set it, Unix milliseconds.
    pub device_time: Option<i64>,
    /// `{"system": {..}, "application": [[name, value], ..]}`; `None` when the message had none.
    pub properties: Option<serde_json::Value>,
    pub body: Vec<u8>,
    /// The top-level fields of a JSON object body.
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// Fields the device's template does not model.
    pub unmodeled: Vec<String>,
}

/// A last known value.
#[derive(Clone, Debug, PartialEq)]
pub struct LastValue {
    /// `""` for the root Interface.
    pub component: String,
    pub name: String,
    pub value: serde_json::Value,
    pub enqueued_at: i64,
}

/// A decoded message, ready to store. Borrows its body so that a JSON body's fields are slices
/// of it, not copies: this runs for every message the bridge sends.
struct Incoming<'a> {
    message: &'a DeviceMessage,
    component: Option<&'a str>,
    device_time: Option<i64>,
    properties: Option<String>,
    /// Whether the body was tried as JSON (see [`looks_like_json`]).
    json: bool,
    body: &'a [u8],
    fields: Option<Fields<'a>>,
}

/// The top-level fields of a JSON object body, as slices of it.
enum Fields<'a> {
    /// Names without escapes (the common case): the body itself is the `fields` text. In the
    /// body's order, and a name sent twice is listed twice (JSON lets the last one count): a
    /// map would sort and deduplicate every message's names when nearly none needs it.
    Borrowed {
        text: &'a str,
        values: Vec<(&'a str, &'a serde_json::value::RawValue)>,
    },
    /// A name with an escape sequence cannot be borrowed; parsed the slow way.
    Parsed(serde_json::Map<String, serde_json::Value>),
}

/// Deserialises a JSON object into its members in order, borrowed from the input.
struct Members<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

impl<'a> Fields<'a> {
    /// `body`'s fields if it is a JSON object; `None` for anything else.
    fn parse(body: &'a [u8]) -> Option<Fields<'a>> {
        // UTF-8 checked once for the whole body: parsed from a `str`, serde_json checks no
        // name or raw value again.
        let borrowed = std::str::from_utf8(body).ok().and_then(|text| {
            let members = serde_json::from_str::<Members<'a>>(text).ok()?;
            Some((text, members.0))
        });
        match borrowed {
            Some((text, values)) => Some(Fields::Borrowed { text, values }),
            None => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(fields)) => Some(Fields::Parsed(fields)),
                _ => None,
            },
        }
    }

    /// The names, in order, possibly repeated (see [`Fields::Borrowed`]).
    fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Fields::Borrowed { values, .. } => Box::new(values.iter().map(|(name, _)| *name)),
            Fields::Parsed(fields) => Box::new(fields.keys().map(String::as_str)),
        }
    }

    /// Each field's name and JSON text, in order; of a repeated name, the last one counts.
    fn entries(&self) -> Box<dyn Iterator<Item = (&str, std::borrow::Cow<'_, str>)> + '_> {
        match self {
            Fields::Borrowed { values, .. } => Box::new(
                values
                    .iter()
                    .map(|(name, value)| (*name, value.get().into())),
            ),
            Fields::Parsed(fields) => Box::new(
                fields
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.to_string().into())),
            ),
        }
    }

    /// Whether both list the same names in the same order (`false` when unsure).
    fn same_names(&self, other: &Fields<'_>) -> bool {
        match (self, other) {
            (Fields::Borrowed { values: a, .. }, Fields::Borrowed { values: b, .. }) => {
                a.len() == b.len() && a.iter().zip(b).all(|((x, _), (y, _))| x == y)
            }
            _ => false,
        }
    }

    /// The `fields` column: the object's JSON text.
    fn to_text(&self) -> String {
        match self {
            Fields::Borrowed { text, .. } => (*text).to_owned(),
            Fields::Parsed(fields) => serde_json::to_string(fields).unwrap_or_default(),
        }
    }
}

/// A stored message's body as sent, in SQL over a row of `telemetry` or `telemetry_inbox`: a
/// body that is exactly its `fields` text is stored once, as an empty `body` beside `fields`
/// (an empty payload has no `fields`, so the two cannot be confused).
pub const STORED_BODY: &str =
    "CASE WHEN length(body) = 0 AND fields IS NOT NULL THEN CAST(fields AS BLOB) ELSE body END";

/// The `properties` column of a message: its property bag, as compact as it stays lossless
/// (every row stores one, and a row's bytes are what compaction pays for). `name=value` pairs
/// joined by `&`: the system properties by name, then the application properties in the order
/// sent. Only `%`, `&`, `=`, `{` and control characters are percent-encoded, and the `$` of an
/// application property named `$.…` (so a raw name starting with `$.` is a system property;
/// the ingest contract's system properties are the `$.` names of the topic's bag).
/// The SDKs' usual `$.ct=application/json&$.ce=utf-8` takes 33 bytes as a bag, against 70 as
/// JSON, and 1 as the mark below.
/// Rows written before hold the JSON form, `{"system": {..}, "application": [..]}`, which a
/// bag never starts with (`{` is encoded); [`properties_json`] reads both.
///
/// A bag that starts with the SDKs' usual pair ([`USUAL_BAG`]) starts with [`USUAL_MARK`]
/// instead: 1 byte instead of 33, on nearly every row. A bag never holds a raw control
/// character, so the mark cannot be mistaken for a bag's first character.
fn properties_column(
    system: &BTreeMap<String, String>,
    application: &[(String, String)],
) -> String {
    fn push(out: &mut String, text: &str) {
        crate::percent::encode_into(out, text, |c| {
            !matches!(c, '%' | '&' | '=' | '{') && !c.is_control()
        });
    }
    let mut out = String::with_capacity(64);
    let pairs = system
        .iter()
        .map(|(name, value)| (name, value, false))
        .chain(
            application
                .iter()
                .map(|(name, value)| (name, value, name.starts_with("$."))),
        );
    for (name, value, escape_dollar) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        if escape_dollar {
            out.push_str("%24");
            push(&mut out, &name[1..]);
        } else {
            push(&mut out, name);
        }
        out.push('=');
        push(&mut out, value);
    }
    match out.strip_prefix(USUAL_BAG) {
        Some(rest) if rest.is_empty() || rest.starts_with('&') => format!("{USUAL_MARK}{rest}"),
        _ => out,
    }
}

/// The property bag the SDKs send with JSON telemetry (content type and encoding), as
/// [`properties_column`] spells it, and the mark that stands for it at the start of a column.
const USUAL_BAG: &str = "$.ce=utf-8&$.ct=application/json";
const USUAL_MARK: char = '\u{1}';

/// A `properties` column as `{"system": {name: value, ..}, "application": [[name, value], ..]}`:
/// the property bag of [`properties_column`], or the JSON that rows written before it hold.
/// `None` for a column that is neither.
pub fn properties_json(column: &str) -> Option<serde_json::Value> {
    if column.starts_with('{') {
        return serde_json::from_str(column).ok();
    }
    let expanded;
    let column = match column.strip_prefix(USUAL_MARK) {
        Some(rest) => {
            expanded = format!("{USUAL_BAG}{rest}");
            expanded.as_str()
        }
        None => column,
    };
    let mut system = serde_json::Map::new();
    let mut application = Vec::new();
    for pair in column.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=')?;
        let value = serde_json::Value::String(crate::percent::decode(value)?);
        if name.starts_with("$.") {
            system.insert(crate::percent::decode(name)?, value);
        } else {
            let name = serde_json::Value::String(crate::percent::decode(name)?);
            application.push(serde_json::Value::Array(vec![name, value]));
        }
    }
    Some(serde_json::json!({"system": system, "application": application}))
}

/// Writes `batch` in one transaction (see the module docs). `now` is recorded with the batch id.
/// [`prepare`] then [`apply_prepared`]: what the ingest component does across its journal, for
/// one batch.
pub fn apply_batch<S: Sql>(
    sql: &mut S,
    batch: &IngestBatch,
    now: Timestamp,
) -> Result<IngestResult, IngestError> {
    let prepared = prepare(sql, batch)?;
    let (n_messages, n_events) = (prepared.n_messages, prepared.n_events);
    let applied = apply_prepared(sql, vec![prepared], now)?;
    let duplicate = applied.batches == 0;
    Ok(IngestResult {
        batch_id: batch.batch_id.clone(),
        n_messages: if duplicate { 0 } else { n_messages },
        n_events: if duplicate { 0 } else { n_events },
        duplicate,
        compaction_due: false,
    })
}

/// Columns of a `telemetry_inbox` row in a [`Prepared`] batch, a `last_values` row and a
/// `connectivity` row, in the order of the statements of [`apply_prepared`].
const INBOX_COLUMNS: usize = 9;
const LAST_VALUE_COLUMNS: usize = 5;
const CONNECTIVITY_COLUMNS: usize = 3;

/// A batch decoded, checked against its devices and turned into the rows it writes, ready for
/// [`apply_prepared`]. Everything that is not SQLite's own work is done here, outside any
/// transaction: SQLite has one writer at a time, and the time the writes hold the write lock
/// bounds the ingest rate. [`Prepared::encode`] gives it a compact binary form that
/// [`Prepared::decode`] reads back without parsing any JSON, so the ingest component can keep
/// it in its journal and apply it later.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub batch_id: String,
    pub n_messages: u32,
    pub n_events: u32,
    /// `telemetry_inbox` rows, [`INBOX_COLUMNS`] values each.
    inbox: Vec<Value>,
    /// `last_values` rows, one per device and component: device, component, fields, at, names.
    last_values: Vec<Value>,
    /// `connectivity` rows: device, kind, at.
    events: Vec<Value>,
    /// Registered devices to mark provisioned.
    provisioned: Vec<String>,
}

/// Decodes and checks `batch` and builds its rows (see [`Prepared`]). Reads the batch's devices
/// and their templates; writes nothing.
pub fn prepare<S: Sql>(sql: &mut S, batch: &IngestBatch) -> Result<Prepared, IngestError> {
    let incoming = decode(batch)?;
    // Read outside any transaction: what a device's template models only decides which fields
    // are listed as unmodeled, and marking a device provisioned is idempotent.
    let known = known_devices(sql, batch)?;
    Ok(Prepared {
        batch_id: batch.batch_id.clone(),
        n_messages: u32::try_from(incoming.len()).unwrap_or(u32::MAX),
        n_events: u32::try_from(batch.events.len()).unwrap_or(u32::MAX),
        inbox: inbox_rows(&incoming, &known),
        last_values: last_value_rows(&incoming),
        events: connectivity_rows(batch),
        provisioned: provisioned_ids(batch, &known),
    })
}

/// The binary form's version byte; [`Prepared::decode`] refuses any other.
const PREPARED_VERSION: u8 = 1;

impl Prepared {
    /// The binary form: a version byte, the batch id, the counts, then each table's values
    /// (a count, then per value a type tag and its bytes, little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .inbox
                .iter()
                .map(|value| match value {
                    Value::Text(text) => text.len() + 5,
                    Value::Blob(blob) => blob.len() + 5,
                    _ => 9,
                })
                .sum::<usize>(),
        );
        out.push(PREPARED_VERSION);
        put_bytes(&mut out, self.batch_id.as_bytes());
        out.extend_from_slice(&self.n_messages.to_le_bytes());
        out.extend_from_slice(&self.n_events.to_le_bytes());
        for values in [&self.inbox, &self.last_values, &self.events] {
            put_values(&mut out, values);
        }
        out.extend_from_slice(&(self.provisioned.len() as u32).to_le_bytes());
        for id in &self.provisioned {
            put_bytes(&mut out, id.as_bytes());
        }
        out
    }

    /// Reads [`Prepared::encode`]'s form back; an error names what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Prepared, StoreError> {
        let mut reader = Reader { bytes, at: 0 };
        let prepared = reader
            .prepared()
            .ok_or_else(|| StoreError::UnexpectedResult {
                statement: "decode a prepared batch",
                detail: format!(
                    "malformed at byte {} of {} (version {:?})",
                    reader.at,
                    bytes.len(),
                    bytes.first()
                ),
            })?;
        let whole_rows = prepared.inbox.len() % INBOX_COLUMNS == 0
            && prepared.last_values.len() % LAST_VALUE_COLUMNS == 0
            && prepared.events.len() % CONNECTIVITY_COLUMNS == 0;
        if !whole_rows || reader.at != bytes.len() {
            return Err(StoreError::UnexpectedResult {
                statement: "decode a prepared batch",
                detail: "partial rows or trailing bytes".to_owned(),
            });
        }
        Ok(prepared)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_values(out: &mut Vec<u8>, values: &[Value]) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for value in values {
        match value {
            Value::Null => out.push(0),
            Value::Integer(integer) => {
                out.push(1);
                out.extend_from_slice(&integer.to_le_bytes());
            }
            Value::Real(real) => {
                out.push(2);
                out.extend_from_slice(&real.to_le_bytes());
            }
            Value::Text(text) => {
                out.push(3);
                put_bytes(out, text.as_bytes());
            }
            Value::Blob(blob) => {
                out.push(4);
                put_bytes(out, blob);
            }
        }
    }
}

/// Reads [`Prepared::encode`]'s form; `None` at the first thing out of place.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }

    fn values(&mut self) -> Option<Vec<Value>> {
        let n = self.u32()? as usize;
        // Every value takes at least a byte: a count beyond what is left is corrupt, and must
        // not size an allocation.
        let mut values = Vec::with_capacity(n.min(self.bytes.len() - self.at));
        for _ in 0..n {
            values.push(match self.take(1)?[0] {
                0 => Value::Null,
                1 => Value::Integer(i64::from_le_bytes(self.u64()?)),
                2 => Value::Real(f64::from_le_bytes(self.u64()?)),
                3 => Value::Text(self.text()?),
                4 => Value::Blob(self.bytes()?.to_vec()),
                _ => return None,
            });
        }
        Some(values)
    }

    fn prepared(&mut self) -> Option<Prepared> {
        if self.take(1)? != [PREPARED_VERSION] {
            return None;
        }
        let batch_id = self.text()?;
        let n_messages = self.u32()?;
        let n_events = self.u32()?;
        let inbox = self.values()?;
        let last_values = self.values()?;
        let events = self.values()?;
        let n = self.u32()? as usize;
        let mut provisioned = Vec::with_capacity(n.min(self.bytes.len() - self.at));
        for _ in 0..n {
            provisioned.push(self.text()?);
        }
        Some(Prepared {
            batch_id,
            n_messages,
            n_events,
            inbox,
            last_values,
            events,
            provisioned,
        })
    }
}

/// What [`apply_prepared`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Batches written; the others' ids had been applied before and wrote nothing.
    pub batches: u32,
    pub messages: u64,
    pub events: u64,
}

/// Writes `batches` in one `BEGIN IMMEDIATE` transaction, in order, each exactly once: a batch
/// whose id was applied before (its claim in `ingest_batches` exists) writes nothing. One
/// transaction for many batches: SQLite pays its commit once, the rows of all of them go in
/// statements of [`INSERT_CHUNK`] rows, and each device's last known values are written once
/// (a batch whose values have the same names as an earlier one's replaces them before they are
/// written, as its upsert would; one with other names is upserted after it).
pub fn apply_prepared<S: Sql>(
    sql: &mut S,
    batches: Vec<Prepared>,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    if batches.is_empty() {
        return Ok(Applied::default());
    }
    sql.transaction(|tx| {
        let mut claims = Vec::with_capacity(batches.len() * 4);
        for batch in &batches {
            claims.extend([
                Value::Text(batch.batch_id.clone()),
                Value::Integer(now.unix_millis()),
                Value::Integer(i64::from(batch.n_messages)),
                Value::Integer(i64::from(batch.n_events)),
            ]);
        }
        let mut claimed = BTreeSet::new();
        for (statement, params) in multi_row(
            claims,
            4,
            "INSERT INTO ingest_batches (batch_id, at, n_messages, n_events) VALUES ",
            "(?, ?, ?, ?)",
            " ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
        ) {
            for row in tx.execute_owned(&statement, params)?.rows {
                if let Some(Value::Text(id)) = row.into_iter().next() {
                    claimed.insert(id);
                }
            }
        }
        let mut applied = Applied::default();
        let (mut inbox, mut events, mut provisioned) = (Vec::new(), Vec::new(), BTreeSet::new());
        let mut last_values = MergedLastValues::default();
        for batch in batches {
            // A batch id appears once in `claimed`: a repeat within `batches` is a duplicate.
            if !claimed.remove(&batch.batch_id) {
                continue;
            }
            applied.batches += 1;
            applied.messages += u64::from(batch.n_messages);
            applied.events += u64::from(batch.n_events);
            inbox.extend(batch.inbox);
            events.extend(batch.events);
            provisioned.extend(batch.provisioned);
            last_values.add(batch.last_values);
        }
        let writes = multi_row(
            inbox,
            INBOX_COLUMNS,
            "INSERT INTO telemetry_inbox (device_id, module_id, component, enqueued_at, \
             device_time, properties, body, fields, unmodeled) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "",
        )
        .into_iter()
        .chain(multi_row(
            last_values.rows,
            LAST_VALUE_COLUMNS,
            "INSERT INTO last_values (device_id, component, fields, at, names) VALUES ",
            "(?, ?, ?, ?, ?)",
            LAST_VALUES_CONFLICT,
        ))
        .chain(multi_row(
            events,
            CONNECTIVITY_COLUMNS,
            "INSERT INTO connectivity (device_id, kind, at) VALUES ",
            "(?, ?, ?)",
            "",
        ));
        for (statement, params) in writes {
            tx.execute_owned(&statement, params)?;
        }
        if !provisioned.is_empty() {
            // All the devices in one statement, their ids as one JSON array parameter.
            let ids = serde_json::to_string(&provisioned).unwrap_or_default();
            tx.execute_owned(
                "UPDATE devices SET provisioned = 1 WHERE provisioned = 0 \
                 AND id IN (SELECT value FROM json_each(?1))",
                vec![Value::Text(ids)],
            )?;
        }
        Ok(applied)
    })
}

/// The `last_values` rows of several batches, in order, with each (device, component)'s row
/// replaced by a later batch's row of the same names (see [`apply_prepared`]).
#[derive(Default)]
struct MergedLastValues {
    rows: Vec<Value>,
    /// (device, component) → the first column of its latest row in `rows`.
    latest: std::collections::HashMap<(String, String), usize>,
}

impl MergedLastValues {
    fn add(&mut self, rows: Vec<Value>) {
        let mut rows = rows.into_iter();
        while let Some(device) = rows.next() {
            let row: Vec<Value> = std::iter::once(device)
                .chain(rows.by_ref().take(LAST_VALUE_COLUMNS - 1))
                .collect();
            let key = match (&row[0], &row[1]) {
                (Value::Text(device), Value::Text(component)) => {
                    (device.clone(), component.clone())
                }
                _ => (String::new(), String::new()),
            };
            if let Some(&at) = self.latest.get(&key) {
                let kept = &self.rows[at..at + LAST_VALUE_COLUMNS];
                // Same names (not NULL): the newer row's upsert would replace every value of
                // the older one, and the older one's would change none of the newer one's.
                if kept[4].as_text().is_some() && kept[4].as_text() == row[4].as_text() {
                    if row[3].as_integer() >= kept[3].as_integer() {
                        self.rows.splice(at..at + LAST_VALUE_COLUMNS, row);
                    }
                    continue;
                }
            }
            self.latest.insert(key, self.rows.len());
            self.rows.extend(row);
        }
    }
}

/// Moves up to `max_rows` of the oldest inbox rows into `telemetry`, in one transaction.
/// Returns how many moved (0: the inbox is empty).
pub fn compact<S: Sql>(sql: &mut S, max_rows: u32) -> Result<u64, StoreError> {
    if max_rows == 0 {
        return Ok(0);
    }
    sql.transaction(|tx| compact_in(tx, max_rows))
}

/// [`compact`]'s work, inside the caller's transaction.
pub(crate) fn compact_in<S: Sql>(tx: &mut S, max_rows: u32) -> Result<u64, StoreError> {
    if max_rows == 0 {
        return Ok(0);
    }
    const BOUNDS: &str = "SELECT count(*), max(seq) FROM \
         (SELECT seq FROM telemetry_inbox ORDER BY seq LIMIT ?1)";
    let rows = tx.execute(BOUNDS, &[Value::Integer(i64::from(max_rows))])?;
    let row = rows.rows.first().ok_or_else(|| unexpected(BOUNDS, &rows))?;
    let (Some(count), Some(last)) = (row[0].as_integer(), row[1].as_integer()) else {
        return Ok(0);
    };
    // In the inbox's order, not sorted by the target key: each row still lands at its
    // device's end of the b-tree, leaving the same pages and writing the same WAL frames as
    // a sorted insert, without SQLite sorting the step first (16% of a step's time at 100
    // devices, measured natively; equal at 10,000).
    tx.execute(
        "INSERT INTO telemetry (device_id, enqueued_at, seq, module_id, component, \
         device_time, properties, body, fields, unmodeled) \
         SELECT device_id, enqueued_at, seq, module_id, component, device_time, properties, \
         body, fields, unmodeled FROM telemetry_inbox WHERE seq <= ?1",
        &[Value::Integer(last)],
    )?;
    tx.execute(
        "DELETE FROM telemetry_inbox WHERE seq <= ?1",
        &[Value::Integer(last)],
    )?;
    Ok(count as u64)
}

/// The rows the next compaction step moves, given the inbox's `backlog` and the usual `step`.
/// A backlog of four steps or more means compaction is falling behind, most often because many
/// devices share each step: a device with a row or two in a step costs about a page write per
/// row. Steps then grow to half the backlog, up to four usual steps, so each device has more
/// rows in a step while a step still holds the write lock for well under a second.
pub fn catch_up_step(backlog: u64, step: u32) -> u32 {
    let step = step.max(1);
    if backlog < 4 * u64::from(step) {
        return step;
    }
    u32::try_from(backlog / 2)
        .unwrap_or(u32::MAX)
        .min(step.saturating_mul(4))
}

/// Forgets up to `max_rows` batch ids recorded before `before`, oldest first; returns how many.
/// A batch id only has to outlive the bridge's retries of that batch (seconds), so the caller
/// keeps them for much longer (an hour) and prunes on its tick.
pub fn prune_batches<S: Sql>(
    sql: &mut S,
    before: Timestamp,
    max_rows: u32,
) -> Result<u64, StoreError> {
    const PRUNE: &str = "DELETE FROM ingest_batches WHERE batch_id IN \
         (SELECT batch_id FROM ingest_batches WHERE at < ?1 ORDER BY at LIMIT ?2) \
         RETURNING batch_id";
    let rows = sql.execute(
        PRUNE,
        &[
            Value::Integer(before.unix_millis()),
            Value::Integer(i64::from(max_rows)),
        ],
    )?;
    Ok(rows.rows.len() as u64)
}

/// Whether a batch with this id has been applied (and not yet forgotten by [`prune_batches`]).
pub fn batch_applied<S: Sql>(sql: &mut S, batch_id: &str) -> Result<bool, StoreError> {
    let rows = sql.execute(
        "SELECT 1 FROM ingest_batches WHERE batch_id = ?1",
        &[Value::Text(batch_id.to_owned())],
    )?;
    Ok(!rows.rows.is_empty())
}

/// Rows waiting in the inbox, in O(log n): the inbox's `seq`s are contiguous (rows are appended
/// with increasing `seq` and removed from the low end only), so this is `max - min + 1`. Each
/// bound is its own subquery: SQLite reads a lone `min()` or `max()` of the key from one end of
/// the b-tree, but scans the whole table for an expression holding both.
pub fn inbox_len<S: Sql>(sql: &mut S) -> Result<u64, StoreError> {
    const SPAN: &str = "SELECT (SELECT max(seq) FROM telemetry_inbox) \
         - (SELECT min(seq) FROM telemetry_inbox) + 1";
    let rows = sql.execute(SPAN, &[])?;
    match rows.scalar() {
        Some(Value::Integer(n)) => Ok(*n as u64),
        Some(Value::Null) => Ok(0),
        _ => Err(unexpected(SPAN, &rows)),
    }
}

/// Up to `limit` messages of `device_id` enqueued in `[from, to)`, oldest first, from the
/// compacted table and the inbox together. The inbox part is a scan of the inbox, which
/// compaction keeps small.
pub fn series<S: Sql>(
    sql: &mut S,
    device_id: &str,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<TelemetryRow>, StoreError> {
    let columns = format!(
        "seq, device_id, module_id, component, enqueued_at, device_time, properties, \
         {STORED_BODY}, fields, unmodeled"
    );
    let compacted = format!(
        "SELECT {columns} FROM telemetry WHERE device_id = ?1 AND enqueued_at >= ?2 \
         AND enqueued_at < ?3 ORDER BY enqueued_at, seq LIMIT ?4"
    );
    let inbox = format!(
        "SELECT {columns} FROM telemetry_inbox WHERE device_id = ?1 AND enqueued_at >= ?2 \
         AND enqueued_at < ?3 ORDER BY enqueued_at, seq LIMIT ?4"
    );
    let params = [
        Value::Text(device_id.to_owned()),
        Value::Integer(from),
        Value::Integer(to),
        Value::Integer(i64::from(limit)),
    ];
    // Both reads in one transaction: a compaction between them could otherwise move a row
    // from the inbox into the range already read.
    let (a, b) = sql.transaction(|tx| {
        let a = tx.execute(&compacted, &params)?;
        let b = tx.execute(&inbox, &params)?;
        Ok::<_, StoreError>((a, b))
    })?;
    let mut out = Vec::with_capacity(a.rows.len() + b.rows.len());
    for row in a.rows.into_iter().chain(b.rows) {
        out.push(row_from(row)?);
    }
    out.sort_by_key(|row| (row.enqueued_at, row.seq));
    out.truncate(limit as usize);
    Ok(out)
}

/// The last known values of `device_id`, by component and name.
pub fn last_values<S: Sql>(sql: &mut S, device_id: &str) -> Result<Vec<LastValue>, StoreError> {
    const GET: &str = "SELECT l.component, j.key, j.value -> 0, j.value ->> 1 \
         FROM last_values l, json_each(l.fields) j WHERE l.device_id = ?1 \
         ORDER BY l.component, j.key";
    let rows = sql.execute(GET, &[Value::Text(device_id.to_owned())])?;
    let mut out = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        match (&row[0], &row[1], &row[2], &row[3]) {
            (Value::Text(component), Value::Text(name), Value::Text(value), Value::Integer(at)) => {
                out.push(LastValue {
                    component: component.clone(),
                    name: name.clone(),
                    value: serde_json::from_str(value).map_err(|err| {
                        StoreError::UnexpectedResult {
                            statement: GET,
                            detail: format!("value is not JSON: {err}"),
                        }
                    })?,
                    enqueued_at: *at,
                })
            }
            _ => return Err(unexpected(GET, &rows)),
        }
    }
    Ok(out)
}

/// A device's connectivity history, oldest first: `(kind, at)`.
pub fn connectivity<S: Sql>(
    sql: &mut S,
    device_id: &str,
) -> Result<Vec<(ConnectivityKind, i64)>, StoreError> {
    const GET: &str = "SELECT kind, at FROM connectivity WHERE device_id = ?1 ORDER BY at, seq";
    let rows = sql.execute(GET, &[Value::Text(device_id.to_owned())])?;
    rows.rows
        .iter()
        .map(|row| match (&row[0], &row[1]) {
            (Value::Text(kind), Value::Integer(at)) if kind == "connected" => {
                Ok((ConnectivityKind::Connected, *at))
            }
            (Value::Text(kind), Value::Integer(at)) if kind == "disconnected" => {
                Ok((ConnectivityKind::Disconnected, *at))
            }
            _ => Err(unexpected(GET, &rows)),
        })
        .collect()
}

// ---- decoding (pure) ----

/// Every message's body, base64-decoded, in batch order.
fn decode(batch: &IngestBatch) -> Result<Vec<Incoming<'_>>, IngestError> {
    check_id("batchId", &batch.batch_id)?;
    for event in &batch.events {
        check_id("events[].deviceId", &event.device_id)?;
    }
    let mut incoming: Vec<Incoming<'_>> = Vec::with_capacity(batch.messages.len());
    for message in &batch.messages {
        check_id("messages[].deviceId", &message.device_id)?;
        let body = message.body.as_slice();
        // Messages in a row nearly always carry the same properties: what they decide (the
        // property column, the device time, the component, whether to parse JSON) is then
        // taken from the message before instead of worked out again.
        let same_properties = incoming.last().filter(|before| {
            before.message.system_properties == message.system_properties
                && before.message.application_properties == message.application_properties
        });
        let (component, device_time, properties, json) = match same_properties {
            Some(before) => (
                before.component,
                before.device_time,
                before.properties.clone(),
                before.json,
            ),
            None => properties_of(message),
        };
        incoming.push(Incoming {
            message,
            component,
            device_time,
            properties,
            json,
            body,
            fields: if json { Fields::parse(body) } else { None },
        });
    }
    Ok(incoming)
}

/// What a message's properties decide: its component, its device time, its `properties`
/// column, and whether its body is tried as JSON.
fn properties_of(message: &DeviceMessage) -> (Option<&str>, Option<i64>, Option<String>, bool) {
    let system = &message.system_properties;
    let device_time = system
        .get("$.ctime")
        .map(String::as_str)
        .or_else(|| {
            message
                .application_properties
                .iter()
                .find(|(name, _)| name == "iothub-creation-time-utc")
                .map(|(_, value)| value.as_str())
        })
        .and_then(parse_rfc3339_millis);
    let properties = if system.is_empty() && message.application_properties.is_empty() {
        None
    } else {
        Some(properties_column(system, &message.application_properties))
    };
    let component = system
        .get("$.sub")
        .map(String::as_str)
        .filter(|sub| !sub.is_empty());
    (component, device_time, properties, looks_like_json(system))
}

fn check_id(what: &str, id: &str) -> Result<(), IngestError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(IngestError::Invalid {
            message: format!("{what} must be 1 to {MAX_ID_LEN} bytes long"),
        });
    }
    Ok(())
}

/// Whether to try the body as JSON: yes unless the content type names something else or the
/// encoding is not UTF-8 (the SDKs send neither by default).
fn looks_like_json(system: &BTreeMap<String, String>) -> bool {
    let content_type_ok = system
        .get("$.ct")
        .map(|ct| {
            ct.as_bytes()
                .windows(4)
                .any(|word| word.eq_ignore_ascii_case(b"json"))
        })
        .unwrap_or(true);
    let encoding_ok = system
        .get("$.ce")
        .map(|ce| ce.eq_ignore_ascii_case("utf-8") || ce.eq_ignore_ascii_case("utf8"))
        .unwrap_or(true);
    content_type_ok && encoding_ok
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to Unix milliseconds; `None` if it is not that.
fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

// ---- writing ----

/// The registered devices of a batch: whether each is provisioned, and its template's model.
struct Known {
    /// Device id → (provisioned, template id).
    devices: BTreeMap<String, (bool, Option<String>)>,
    /// Template id → its model, when it parses. Parsed once per template, for this batch only.
    models: BTreeMap<String, DeviceModel>,
}

impl Known {
    fn model(&self, device_id: &str) -> Option<&DeviceModel> {
        let (_, template) = self.devices.get(device_id)?;
        self.models.get(template.as_ref()?)
    }
}

/// `ids` without the repeats of a run: a batch holds each device's messages in runs, and a set
/// built from every message would sort hundreds of ids for a few distinct ones.
fn run_heads<'a>(ids: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    let mut last = None;
    ids.filter(move |id| last.replace(*id) != Some(*id))
}

fn known_devices<S: Sql>(sql: &mut S, batch: &IngestBatch) -> Result<Known, StoreError> {
    const TEMPLATE: &str = "SELECT capability_model FROM device_templates WHERE id = ?1";
    let ids: BTreeSet<&str> = run_heads(
        batch
            .messages
            .iter()
            .map(|m| m.device_id.as_str())
            .chain(batch.events.iter().map(|e| e.device_id.as_str())),
    )
    .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut known = Known {
        devices: BTreeMap::new(),
        models: BTreeMap::new(),
    };
    // One statement for every device of the batch, their ids as one JSON array parameter:
    // one host call, and one parameter to pass instead of one per device.
    const DEVICES: &str = "SELECT d.id, d.provisioned, d.template FROM json_each(?1) j \
         CROSS JOIN devices d ON d.id = j.value";
    let rows = sql.execute(
        DEVICES,
        &[Value::Text(serde_json::to_string(&ids).map_err(|err| {
            StoreError::UnexpectedResult {
                statement: DEVICES,
                detail: err.to_string(),
            }
        })?)],
    )?;
    for row in rows.rows {
        let Some(id) = row[0].as_text().map(str::to_owned) else {
            continue;
        };
        let provisioned = row[1].as_integer().unwrap_or(0) != 0;
        let template = row[2].as_text().map(str::to_owned);
        known.devices.insert(id, (provisioned, template));
    }
    let templates: BTreeSet<String> = known
        .devices
        .values()
        .filter_map(|(_, template)| template.clone())
        .collect();
    for template in templates {
        let rows = sql.execute(TEMPLATE, &[Value::Text(template.clone())])?;
        let model = rows
            .scalar()
            .and_then(Value::as_text)
            .and_then(|text| serde_json::from_str(text).ok())
            .and_then(|json| DeviceModel::parse(&json).ok());
        if let Some(model) = model {
            known.models.insert(template, model);
        }
    }
    Ok(known)
}

/// A statement and its parameters, built before the transaction that runs it.
type Write = (String, Vec<Value>);

/// Multi-row statements over `values`, rows of `columns` values each, [`INSERT_CHUNK`] rows a
/// statement: `head`, then one `row` placeholder group per row, then `tail`.
fn multi_row(values: Vec<Value>, columns: usize, head: &str, row: &str, tail: &str) -> Vec<Write> {
    let per_statement = INSERT_CHUNK * columns.max(1);
    let mut writes = Vec::with_capacity(values.len() / per_statement + 1);
    let mut values = values.into_iter();
    loop {
        let params: Vec<Value> = values.by_ref().take(per_statement).collect();
        if params.is_empty() {
            return writes;
        }
        let rows = params.len() / columns.max(1);
        let mut statement = String::with_capacity(head.len() + rows * (row.len() + 2) + tail.len());
        statement.push_str(head);
        for i in 0..rows {
            if i > 0 {
                statement.push_str(", ");
            }
            statement.push_str(row);
        }
        statement.push_str(tail);
        writes.push((statement, params));
    }
}

/// The batch's `telemetry_inbox` rows, [`INBOX_COLUMNS`] values each.
fn inbox_rows(incoming: &[Incoming<'_>], known: &Known) -> Vec<Value> {
    let mut values = Vec::with_capacity(incoming.len() * INBOX_COLUMNS);
    for (message, unmodeled) in incoming.iter().zip(unmodeled_columns(incoming, known)) {
        values.extend([
            Value::Text(message.message.device_id.clone()),
            opt_text(message.message.module_id.as_deref()),
            opt_text(message.component),
            Value::Integer(message.message.enqueued_at),
            message.device_time.map_or(Value::Null, Value::Integer),
            opt_text(message.properties.as_deref()),
            // A body that is its own `fields` text is stored once (see the schema).
            match &message.fields {
                Some(Fields::Borrowed { .. }) => Value::Blob(Vec::new()),
                _ => Value::Blob(message.body.to_vec()),
            },
            match &message.fields {
                Some(fields) => Value::Text(fields.to_text()),
                None => Value::Null,
            },
            unmodeled.map_or(Value::Null, Value::Text),
        ]);
    }
    values
}

/// Each message's `unmodeled` column: a JSON array of its field names that its device's template
/// does not declare as telemetry, sorted and each once; `None` when there are none.
fn unmodeled_columns(incoming: &[Incoming<'_>], known: &Known) -> Vec<Option<String>> {
    let mut columns = Vec::with_capacity(incoming.len());
    // Messages come in runs per device, nearly always with the same names: a message with the
    // previous one's device, component and names gets the same answer, and one of the same
    // device the same model.
    let mut previous: Option<(&Incoming<'_>, Option<&DeviceModel>, Option<String>)> = None;
    for message in incoming {
        let Some(fields) = &message.fields else {
            columns.push(None);
            continue;
        };
        let device = message.message.device_id.as_str();
        let same_device = previous
            .as_ref()
            .filter(|(before, _, _)| before.message.device_id == device);
        if let Some((before, _, answer)) = same_device {
            if before.component == message.component
                && before.fields.as_ref().is_some_and(|f| f.same_names(fields))
            {
                columns.push(answer.clone());
                continue;
            }
        }
        let model = match same_device {
            Some((_, model, _)) => *model,
            None => known.model(device),
        };
        let mut names: Vec<&str> = fields
            .names()
            .filter(|name| {
                model
                    .and_then(|m| m.telemetry(message.component, name))
                    .is_none()
            })
            .collect();
        let column = if names.is_empty() {
            None
        } else {
            names.sort_unstable();
            names.dedup();
            let mut text = String::from("[");
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                push_json_string(&mut text, name);
            }
            text.push(']');
            Some(text)
        };
        columns.push(column.clone());
        previous = Some((message, model, column));
    }
    columns
}

/// One device and component's newest value of each field in a batch.
#[derive(Default)]
struct Newest<'a> {
    /// Name → its slot, so the names come out sorted.
    index: BTreeMap<&'a str, usize>,
    /// Each name's newest value and its time.
    slots: Vec<(std::borrow::Cow<'a, str>, i64)>,
    /// The names of the group's previous message and their slots, in that message's order.
    last: Option<(&'a Fields<'a>, Vec<usize>)>,
}

impl<'a> Newest<'a> {
    /// Takes `fields`' values sent at `at` where they are newer (later in the batch wins a tie).
    fn update(&mut self, fields: &'a Fields<'a>, at: i64) {
        // A device nearly always sends the same names: the previous message's slots then serve
        // again, in order, instead of a lookup by name per field.
        let same = self
            .last
            .as_ref()
            .is_some_and(|(before, _)| before.same_names(fields));
        if !same {
            let slots = fields
                .names()
                .map(|name| {
                    let next = self.slots.len();
                    let slot = *self.index.entry(name).or_insert(next);
                    if slot == next {
                        self.slots.push((std::borrow::Cow::Borrowed(""), i64::MIN));
                    }
                    slot
                })
                .collect();
            self.last = Some((fields, slots));
        }
        let Some((_, positions)) = &self.last else {
            return;
        };
        for ((_, value), &slot) in fields.entries().zip(positions) {
            let newest = &mut self.slots[slot];
            if newest.1 <= at {
                *newest = (value, at);
            }
        }
    }
}

/// The batch's `last_values` rows, [`LAST_VALUE_COLUMNS`] values each: one per device and
/// component that sent fields.
fn last_value_rows(incoming: &[Incoming<'_>]) -> Vec<Value> {
    // Per device and component, the newest value of each field. This runs for every field of
    // every message: a group per device and component keyed by the name alone is cheaper than
    // one map keyed by all three strings.
    let mut newest: BTreeMap<(&str, &str), Newest<'_>> = BTreeMap::new();
    // A device's messages arrive in runs (it sends its window of messages at once), so the
    // previous message's group is kept aside and looked up only when the group changes.
    let mut current: Option<((&str, &str), Newest<'_>)> = None;
    for message in incoming {
        let Some(fields) = &message.fields else {
            continue;
        };
        let key = (
            message.message.device_id.as_str(),
            message.component.unwrap_or(""),
        );
        let group = match &mut current {
            Some((current_key, group)) if *current_key == key => group,
            _ => {
                if let Some((done_key, done)) = current.take() {
                    newest.insert(done_key, done);
                }
                let group = newest.remove(&key).unwrap_or_default();
                &mut current.insert((key, group)).1
            }
        };
        group.update(fields, message.message.enqueued_at);
    }
    if let Some((key, group)) = current {
        newest.insert(key, group);
    }
    let newest: Vec<_> = newest
        .into_iter()
        .filter(|(_, group)| !group.index.is_empty())
        .collect();
    let mut values = Vec::with_capacity(newest.len() * LAST_VALUE_COLUMNS);
    for ((device, component), group) in newest {
        // `{"<name>": [<value>, <at>], ...}`, the newest of those times, and the names as a
        // JSON array (both sorted by name, so a set of names has one spelling).
        let mut object = String::with_capacity(group.index.len() * 32);
        let mut names = String::with_capacity(group.index.len() * 16);
        object.push('{');
        names.push('[');
        for (i, (name, &slot)) in group.index.iter().enumerate() {
            let (value, at) = &group.slots[slot];
            if i > 0 {
                object.push(',');
                names.push(',');
            }
            push_json_string(&mut object, name);
            push_json_string(&mut names, name);
            object.push_str(":[");
            object.push_str(value);
            object.push(',');
            object.push_str(&at.to_string());
            object.push(']');
        }
        object.push('}');
        names.push(']');
        let at = group
            .slots
            .iter()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or_default();
        values.extend([
            Value::Text(device.to_owned()),
            Value::Text(component.to_owned()),
            Value::Text(object),
            Value::Integer(at),
            Value::Text(names),
        ]);
    }
    values
}

/// How a batch's last known values meet the stored ones. A newer batch's fields override; an
/// older one (a late retry) only adds names not seen yet, so it never overwrites a newer value.
///
/// `names` (migration `last_values_names`) is the set of names `fields` holds, spelled as
/// [`last_value_rows`] spells it, or NULL when unknown. A device nearly always sends the
/// same fields, so a newer batch with the same names replaces the whole object as it is, and
/// SQLite merges JSON (`json_patch`, about half of the statement's time at 100 devices) only
/// when the names differ. The merged object then holds the batch's names exactly when it has
/// as many as the batch (a merge only adds names: no value is ever JSON `null`), and `names`
/// is the batch's or NULL.
const LAST_VALUES_CONFLICT: &str = " ON CONFLICT (device_id, component) DO UPDATE SET \
     fields = CASE \
     WHEN excluded.at >= last_values.at AND excluded.names = last_values.names \
     THEN excluded.fields \
     WHEN excluded.at >= last_values.at THEN json_patch(last_values.fields, excluded.fields) \
     ELSE json_patch(excluded.fields, last_values.fields) END, \
     names = CASE \
     WHEN excluded.names = last_values.names THEN last_values.names \
     WHEN (SELECT count(*) FROM json_each(json_patch(last_values.fields, excluded.fields))) \
     = (SELECT count(*) FROM json_each(excluded.fields)) THEN excluded.names \
     ELSE NULL END, \
     at = max(last_values.at, excluded.at)";

/// Appends `text` as a JSON string: quoted as is when nothing in it needs an escape (field
/// names nearly always), through serde_json otherwise.
fn push_json_string(out: &mut String, text: &str) {
    if text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

/// The batch's `connectivity` rows, [`CONNECTIVITY_COLUMNS`] values each.
fn connectivity_rows(batch: &IngestBatch) -> Vec<Value> {
    let mut values = Vec::with_capacity(batch.events.len() * CONNECTIVITY_COLUMNS);
    for event in &batch.events {
        values.extend([
            Value::Text(event.device_id.clone()),
            Value::Text(
                match event.kind {
                    ConnectivityKind::Connected => "connected",
                    ConnectivityKind::Disconnected => "disconnected",
                }
                .to_owned(),
            ),
            Value::Integer(event.at),
        ]);
    }
    values
}

/// The batch's registered devices that sent a message or connected and were not provisioned
/// when [`known_devices`] looked.
fn provisioned_ids(batch: &IngestBatch, known: &Known) -> Vec<String> {
    let active: BTreeSet<&str> = run_heads(batch.messages.iter().map(|m| m.device_id.as_str()))
        .chain(
            batch
                .events
                .iter()
                .filter(|e| e.kind == ConnectivityKind::Connected)
                .map(|e| e.device_id.as_str()),
        )
        .filter(|id| matches!(known.devices.get(*id), Some((false, _))))
        .collect();
    active.into_iter().map(str::to_owned).collect()
}

// ---- reading ----

fn row_from(row: Vec<Value>) -> Result<TelemetryRow, StoreError> {
    const WHAT: &str = "telemetry row";
    let bad = |detail: &str| StoreError::UnexpectedResult {
        statement: WHAT,
        detail: detail.to_owned(),
    };
    let mut it = row.into_iter();
    let mut next = || it.next().ok_or_else(|| bad("too few columns"));
    let seq = next()?.as_integer().ok_or_else(|| bad("seq"))?;
    let device_id = text(next()?).ok_or_else(|| bad("device_id"))?;
    let module_id = text(next()?);
    let component = text(next()?);
    let enqueued_at = next()?.as_integer().ok_or_else(|| bad("enqueued_at"))?;
    let device_time = next()?.as_integer();
    let properties = text(next()?).and_then(|t| properties_json(&t));
    let body = match next()? {
        Value::Blob(body) => body,
        Value::Text(body) => body.into_bytes(),
        _ => return Err(bad("body")),
    };
    let fields = text(next()?).and_then(|t| serde_json::from_str(&t).ok());
    let unmodeled = text(next()?)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Ok(TelemetryRow {
        seq,
        device_id,
        module_id,
        component,
        enqueued_at,
        device_time,
        properties,
        body,
        fields,
        unmodeled,
    })
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::Text(text) => Some(text),
        _ => None,
    }
}

fn opt_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |v| Value::Text(v.to_owned()))
}

fn unexpected(statement: &'static str, rows: &Rows) -> StoreError {
    StoreError::UnexpectedResult {
        statement,
        detail: format!("{rows:?}"),
    }
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::ingest::ConnectivityEvent;
    use crate::store::{migrate, RusqliteSql};
    use serde_json::json;

    const T0: i64 = 1_764_161_225_120;

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(T0)).unwrap();
        sql
    }

    /// A thermostat template (root telemetry `temp`; component `sensor` with `humidity`),
    /// device `d1` on it (not yet provisioned), and `d2` without a template.
    fn with_devices() -> RusqliteSql {
        let mut sql = migrated();
        let model = json!({
            "@id": "dtmi:com:example:Thermostat;1",
            "@type": "Interface",
            "@context": "dtmi:dtdl:context;2",
            "contents": [
                {"@type": "Telemetry", "name": "temp", "schema": "double"},
                {"@type": "Component", "name": "sensor", "schema": {
                    "@id": "dtmi:com:example:Sensor;1",
                    "@type": "Interface",
                    "contents": [{"@type": "Telemetry", "name": "humidity", "schema": "double"}]
                }}
            ]
        });
        DeviceModel::parse(&model).expect("the test model parses");
        sql.execute(
            "INSERT INTO device_templates (id, etag, types, capability_model, created_at, \
             updated_at) VALUES ('dtmi:com:example:Thermostat;1', 'e', '[]', ?1, 0, 0)",
            &[Value::Text(model.to_string())],
        )
        .unwrap();
        for (id, template) in [("d1", Some("dtmi:com:example:Thermostat;1")), ("d2", None)] {
            sql.execute(
                "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
                 simulated, created_at, updated_at) VALUES (?1, 'e', ?1, ?2, 1, 0, 0, 0, 0)",
                &[Value::Text(id.into()), opt_text(template)],
            )
            .unwrap();
        }
        sql
    }

    /// Owned name-value pairs, collected into a map or a vector.
    fn owned<T: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> T {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(device: &str, at: i64, body: &[u8], system: &[(&str, &str)]) -> DeviceMessage {
        DeviceMessage {
            device_id: device.into(),
            module_id: None,
            enqueued_at: at,
            system_properties: owned(system),
            application_properties: vec![],
            body: body.to_vec(),
        }
    }

    fn batch(id: &str, messages: Vec<DeviceMessage>) -> IngestBatch {
        IngestBatch {
            batch_id: id.into(),
            messages,
            events: vec![],
        }
    }

    /// Every table a batch writes, as text, to compare two databases.
    fn dump(sql: &mut RusqliteSql) -> Vec<String> {
        [
            "SELECT device_id, module_id, component, enqueued_at, device_time, properties, \
             hex(body), fields, unmodeled FROM telemetry_inbox ORDER BY seq",
            "SELECT device_id, component, fields, at, names FROM last_values \
             ORDER BY device_id, component",
            "SELECT device_id, kind, at FROM connectivity ORDER BY rowid",
            "SELECT id, provisioned FROM devices ORDER BY id",
            "SELECT batch_id, n_messages, n_events FROM ingest_batches ORDER BY batch_id",
        ]
        .iter()
        .map(|query| format!("{:?}", sql.execute(query, &[]).unwrap().rows))
        .collect()
    }

    /// Batches of one device whose field names change, values that arrive late, a component, a
    /// raw body, connectivity events and an unknown device.
    fn varied_batches() -> Vec<IngestBatch> {
        let mut first = batch(
            "v-1",
            vec![
                message("d1", T0 + 10, br#"{"temp": 1}"#, &[]),
                message("d1", T0 + 11, br#"{"humidity": 2}"#, &[("$.sub", "sensor")]),
                message(
                    "d2",
                    T0 + 12,
                    &[0xff, 0x00],
                    &[("$.ct", "application/octet-stream")],
                ),
            ],
        );
        first.events = vec![ConnectivityEvent {
            device_id: "d1".into(),
            kind: ConnectivityKind::Connected,
            at: T0 + 9,
        }];
        let second = batch(
            "v-2",
            vec![
                message("d1", T0 + 20, br#"{"temp": 3}"#, &[]),
                message("d9", T0 + 21, br#"{"x": 1}"#, &[]),
            ],
        );
        let third = batch(
            "v-3",
            vec![
                message("d1", T0 + 5, br#"{"temp": 0, "fan": true}"#, &[]),
                message("d1", T0 + 30, br#"{"temp": 4}"#, &[]),
            ],
        );
        let fourth = batch("v-4", vec![message("d1", T0 + 1, br#"{"temp": -1}"#, &[])]);
        vec![first, second, third, fourth]
    }

    #[test]
    fn a_prepared_batch_reads_back_from_its_binary_form() {
        let mut sql = with_devices();
        for batch in varied_batches() {
            let prepared = prepare(&mut sql, &batch).unwrap();
            assert_eq!(Prepared::decode(&prepared.encode()).unwrap(), prepared);
        }
    }

    #[test]
    fn a_damaged_binary_form_is_an_error_not_a_panic() {
        let mut sql = with_devices();
        let encoded = prepare(&mut sql, &varied_batches()[0]).unwrap().encode();
        for cut in 0..encoded.len() {
            assert!(Prepared::decode(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(Prepared::decode(&longer).is_err());
        let mut other_version = encoded.clone();
        other_version[0] = 99;
        assert!(Prepared::decode(&other_version).is_err());
        let mut huge_count = encoded;
        let at = 1 + 4 + "v-1".len() + 8;
        huge_count[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Prepared::decode(&huge_count).is_err());
    }

    #[test]
    fn batches_applied_together_store_what_they_store_one_by_one() {
        let mut one_by_one = with_devices();
        for batch in varied_batches() {
            apply_batch(&mut one_by_one, &batch, Timestamp::from_unix_millis(T0)).unwrap();
        }
        let mut together = with_devices();
        let prepared = varied_batches()
            .iter()
            .map(|batch| prepare(&mut together, batch).unwrap())
            .collect();
        let applied =
            apply_prepared(&mut together, prepared, Timestamp::from_unix_millis(T0)).unwrap();
        assert_eq!(
            applied,
            Applied {
                batches: 4,
                messages: 8,
                events: 1
            }
        );
        assert_eq!(dump(&mut together), dump(&mut one_by_one));
    }

    #[test]
    fn a_batch_repeated_in_one_apply_is_written_once() {
        let mut sql = with_devices();
        let batches = varied_batches();
        let prepared = vec![
            prepare(&mut sql, &batches[0]).unwrap(),
            prepare(&mut sql, &batches[0]).unwrap(),
        ];
        let applied = apply_prepared(&mut sql, prepared, Timestamp::from_unix_millis(T0)).unwrap();
        assert_eq!(applied.batches, 1);
        assert_eq!(count(&mut sql, "telemetry_inbox"), 3);
    }

    fn count(sql: &mut RusqliteSql, table: &str) -> i64 {
        sql.execute(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .scalar()
            .and_then(Value::as_integer)
            .unwrap()
    }

    fn provisioned(sql: &mut RusqliteSql, id: &str) -> i64 {
        sql.execute(
            "SELECT provisioned FROM devices WHERE id = ?1",
            &[Value::Text(id.into())],
        )
        .unwrap()
        .scalar()
        .and_then(Value::as_integer)
        .unwrap()
    }

    #[test]
    fn a_replayed_batch_id_is_applied_once() {
        let mut sql = with_devices();
        let mut b = batch("b-1", vec![message("d1", T0, br#"{"temp":21.5}"#, &[])]);
        b.events.push(ConnectivityEvent {
            device_id: "d1".into(),
            kind: ConnectivityKind::Connected,
            at: T0 - 5,
        });
        let first = apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        assert_eq!(
            first,
            IngestResult {
                batch_id: "b-1".into(),
                n_messages: 1,
                n_events: 1,
                duplicate: false,
                compaction_due: false,
            }
        );
        let again = apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0 + 1)).unwrap();
        assert_eq!(
            again,
            IngestResult {
                batch_id: "b-1".into(),
                n_messages: 0,
                n_events: 0,
                duplicate: true,
                compaction_due: false,
            }
        );
        assert_eq!(count(&mut sql, "telemetry_inbox"), 1);
        assert_eq!(count(&mut sql, "connectivity"), 1);
        assert_eq!(
            connectivity(&mut sql, "d1").unwrap(),
            vec![(ConnectivityKind::Connected, T0 - 5)]
        );
    }

    /// The batch's devices are looked up with their ids in one JSON array: ids holding quotes,
    /// backslashes or other characters JSON escapes are found all the same.
    #[test]
    fn devices_whose_ids_json_escapes_are_found_and_marked_provisioned() {
        let mut sql = with_devices();
        let ids = ["quote\"d", "back\\slash", "it's:#1", "caf\u{e9}"];
        for id in ids {
            sql.execute(
                "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
                 simulated, created_at, updated_at) \
                 VALUES (?1, 'e', ?1, 'dtmi:com:example:Thermostat;1', 1, 0, 0, 0, 0)",
                &[Value::Text(id.into())],
            )
            .unwrap();
        }
        let messages = ids
            .iter()
            .map(|id| message(id, T0, br#"{"temp":21.5,"extra":1}"#, &[]))
            .collect();
        apply_batch(
            &mut sql,
            &batch("b-ids", messages),
            Timestamp::from_unix_millis(T0),
        )
        .unwrap();
        for id in ids {
            assert_eq!(provisioned(&mut sql, id), 1, "{id}");
            // Found with its template: only the field the template lacks is unmodeled.
            let rows = series(&mut sql, id, T0, T0 + 1, 10).unwrap();
            assert_eq!(rows[0].unmodeled, vec!["extra".to_owned()], "{id}");
        }
    }

    #[test]
    fn old_batch_ids_are_pruned_in_bounded_steps_oldest_first() {
        let mut sql = with_devices();
        for (i, at) in [T0, T0 + 10, T0 + 20, T0 + 30].into_iter().enumerate() {
            let b = batch(&format!("b-{i}"), vec![message("d1", at, b"{}", &[])]);
            apply_batch(&mut sql, &b, Timestamp::from_unix_millis(at)).unwrap();
        }
        let before = Timestamp::from_unix_millis(T0 + 25);
        assert_eq!(prune_batches(&mut sql, before, 2).unwrap(), 2);
        assert_eq!(prune_batches(&mut sql, before, 2).unwrap(), 1);
        assert_eq!(prune_batches(&mut sql, before, 2).unwrap(), 0);
        assert_eq!(
            count(&mut sql, "ingest_batches"),
            1,
            "the newest batch id stays"
        );
        assert_eq!(
            count(&mut sql, "telemetry_inbox"),
            4,
            "pruning ids never touches data"
        );
    }

    #[test]
    fn fields_with_escaped_names_spacing_and_nesting_read_back_as_sent() {
        let mut sql = with_devices();
        let b = batch(
            "b-esc",
            vec![
                message(
                    "d1",
                    T0,
                    br#" { "te\u006dp" : 21.50 , "nested": {"a": [1, 2]} } "#,
                    &[],
                ),
                message("d1", T0 + 1, br#"{"fan": "on", "fan": "off"}"#, &[]),
                message("d1", T0 + 2, br#"[1, 2]"#, &[]),
            ],
        );
        apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        let rows = series(&mut sql, "d1", T0, T0 + 10, 100).unwrap();
        let fields = rows[0].fields.as_ref().unwrap();
        assert_eq!(fields["temp"], json!(21.5));
        assert_eq!(fields["nested"], json!({"a": [1, 2]}));
        // A repeated name: the last one counts, as in the last known values.
        assert_eq!(rows[1].fields.as_ref().unwrap()["fan"], json!("off"));
        assert_eq!(rows[2].fields, None, "an array is not an object of fields");
        let last: BTreeMap<String, serde_json::Value> = last_values(&mut sql, "d1")
            .unwrap()
            .into_iter()
            .map(|value| (value.name, value.value))
            .collect();
        assert_eq!(last["temp"], json!(21.5));
        assert_eq!(last["nested"], json!({"a": [1, 2]}));
        assert_eq!(last["fan"], json!("off"));
    }

    #[test]
    fn json_and_raw_bodies_components_and_unmodeled_fields() {
        let mut sql = with_devices();
        let raw = [0xffu8, 0x00, 0x42];
        let mut with_props = message(
            "d1",
            T0 + 2,
            br#"{"humidity":40,"extra":true}"#,
            &[("$.sub", "sensor"), ("$.ct", "application/json")],
        );
        with_props.application_properties = vec![
            (
                "iothub-creation-time-utc".into(),
                "2025-11-26T12:47:05.100Z".into(),
            ),
            ("alert".into(), "1".into()),
        ];
        let b = batch(
            "b-1",
            vec![
                message("d1", T0, br#"{"temp":21.5,"fan":"on"}"#, &[]),
                message("d1", T0 + 1, &raw, &[("$.ct", "application/octet-stream")]),
                with_props,
                message("d1", T0 + 3, b"not json at all", &[]),
                message("d2", T0, br#"{"temp":1}"#, &[]),
                message("ghost", T0, br#"{"temp":2}"#, &[]),
            ],
        );
        apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        let rows = series(&mut sql, "d1", T0, T0 + 10, 100).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].fields.as_ref().unwrap()["temp"], json!(21.5));
        assert_eq!(rows[0].unmodeled, vec!["fan".to_string()]);
        assert_eq!(rows[1].body, raw.to_vec());
        assert_eq!(rows[1].fields, None);
        assert_eq!(rows[2].component.as_deref(), Some("sensor"));
        assert_eq!(rows[2].unmodeled, vec!["extra".to_string()]);
        assert_eq!(rows[2].device_time, Some(T0 - 20));
        assert_eq!(
            rows[2].properties.as_ref().unwrap()["application"][1],
            json!(["alert", "1"])
        );
        assert_eq!(rows[3].body, b"not json at all".to_vec());
        assert_eq!(rows[3].fields, None);
        // No template: every field is unmodeled. Unknown devices keep their rows.
        assert_eq!(
            series(&mut sql, "d2", 0, i64::MAX, 10).unwrap()[0].unmodeled,
            vec!["temp".to_string()]
        );
        assert_eq!(series(&mut sql, "ghost", 0, i64::MAX, 10).unwrap().len(), 1);
        assert_eq!(provisioned(&mut sql, "d1"), 1);
        assert_eq!(provisioned(&mut sql, "d2"), 1);
        assert_eq!(
            count(&mut sql, "devices"),
            2,
            "unknown ids create no device"
        );
    }

    #[test]
    fn each_message_in_a_run_of_one_device_lists_its_own_unmodeled_fields() {
        let mut sql = with_devices();
        let sensor = [("$.sub", "sensor")];
        let b = batch(
            "b-run",
            vec![
                message("d1", T0, br#"{"temp":1,"zeta":2,"fan":3}"#, &[]),
                message("d1", T0 + 1, br#"{"temp":1,"zeta":2,"fan":3}"#, &[]),
                // The same names, under a component that models none of them but humidity.
                message("d1", T0 + 2, br#"{"temp":1,"zeta":2,"fan":3}"#, &sensor),
                message("d1", T0 + 3, br#"{"humidity":1,"zeta":2,"fan":3}"#, &sensor),
                message("d1", T0 + 4, br#"{"temp":1}"#, &[]),
                // A name sent twice is listed once; its last value is the one kept.
                message("d1", T0 + 5, br#"{"fan":"a","temp":2,"fan":"b"}"#, &[]),
                message("d2", T0 + 6, br#"{"temp":1}"#, &[]),
                message("d1", T0 + 7, br#"{"temp":1}"#, &[]),
            ],
        );
        apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        let unmodeled = |rows: Vec<TelemetryRow>| -> Vec<Vec<String>> {
            rows.into_iter().map(|row| row.unmodeled).collect()
        };
        let names = |list: &[&str]| -> Vec<String> { list.iter().map(|n| n.to_string()).collect() };
        assert_eq!(
            unmodeled(series(&mut sql, "d1", T0, T0 + 10, 100).unwrap()),
            vec![
                names(&["fan", "zeta"]),
                names(&["fan", "zeta"]),
                names(&["fan", "temp", "zeta"]),
                names(&["fan", "zeta"]),
                names(&[]),
                names(&["fan"]),
                names(&[]),
            ]
        );
        assert_eq!(
            unmodeled(series(&mut sql, "d2", T0, T0 + 10, 100).unwrap()),
            vec![names(&["temp"])]
        );
        let fan = last_values(&mut sql, "d1")
            .unwrap()
            .into_iter()
            .find(|value| value.component.is_empty() && value.name == "fan")
            .unwrap();
        assert_eq!(fan.value, json!("b"));
    }

    #[test]
    fn last_values_move_only_forward_in_enqueued_time() {
        let mut sql = with_devices();
        let b = batch(
            "b-1",
            vec![
                message("d1", T0 + 10, br#"{"temp":20}"#, &[]),
                message("d1", T0 + 5, br#"{"temp":19,"fan":"on"}"#, &[]),
                message("d1", T0 + 1, br#"{"humidity":30}"#, &[("$.sub", "sensor")]),
            ],
        );
        apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        // A late retry of older data, then newer data.
        apply_batch(
            &mut sql,
            &batch("b-2", vec![message("d1", T0 + 7, br#"{"temp":18}"#, &[])]),
            Timestamp::from_unix_millis(T0),
        )
        .unwrap();
        apply_batch(
            &mut sql,
            &batch(
                "b-3",
                vec![message("d1", T0 + 20, br#"{"fan":"off"}"#, &[])],
            ),
            Timestamp::from_unix_millis(T0),
        )
        .unwrap();
        let values: Vec<_> = last_values(&mut sql, "d1")
            .unwrap()
            .into_iter()
            .map(|v| (v.component, v.name, v.value, v.enqueued_at))
            .collect();
        assert_eq!(
            values,
            vec![
                ("".into(), "fan".into(), json!("off"), T0 + 20),
                ("".into(), "temp".into(), json!(20), T0 + 10),
                ("sensor".into(), "humidity".into(), json!(30), T0 + 1),
            ]
        );
    }

    /// The properties column is the bag, small and lossless: whatever the names and values,
    /// it reads back as the JSON form rows held before, which still reads too.
    #[test]
    fn message_properties_are_stored_as_a_compact_bag_and_read_back_exactly() {
        let system: BTreeMap<String, String> = owned(&[
            ("$.ct", "application/json"),
            ("$.ce", "utf-8"),
            ("$.mid", "a&b=c%d{e}"),
            ("$.sub", "th\u{e9}rmostat\n1"),
        ]);
        let application: Vec<(String, String)> = owned(&[
            ("alert", "high temp"),
            ("a/b", "x&y=z"),
            ("$.looks-system", "but is not"),
            ("{json}", "{\"k\": [1, 2]}"),
            ("alert", ""),
            ("", "empty name"),
            ("tab\there", "%41"),
        ]);
        let expected = json!({"system": system, "application": application});
        let column = properties_column(&system, &application);
        assert!(!column.starts_with('{'), "{column}");
        assert_eq!(properties_json(&column), Some(expected.clone()), "{column}");
        // Rows written before the bag hold the JSON itself.
        assert_eq!(properties_json(&expected.to_string()), Some(expected));
        // What the SDKs send by default.
        let usual: BTreeMap<String, String> =
            owned(&[("$.ct", "application/json"), ("$.ce", "utf-8")]);
        let column = properties_column(&usual, &[]);
        assert_eq!(column, "\u{1}", "the usual pair takes one byte");
        assert_eq!(
            properties_json(&column),
            Some(json!({"system": usual, "application": []}))
        );
        // With more properties after it, and beside other system properties.
        let mut more = usual.clone();
        more.insert("$.sub".into(), "thermostat1".into());
        let application: Vec<(String, String)> = owned(&[("alert", "1")]);
        let column = properties_column(&more, &application);
        assert_eq!(column, "\u{1}&$.sub=thermostat1&alert=1");
        assert_eq!(
            properties_json(&column),
            Some(json!({"system": more, "application": application}))
        );
        let mut before: BTreeMap<String, String> = usual.clone();
        before.insert("$.cdid".into(), "d1".into());
        let column = properties_column(&before, &[]);
        assert_eq!(column, "$.cdid=d1&$.ce=utf-8&$.ct=application/json");
        assert_eq!(
            properties_json(&column),
            Some(json!({"system": before, "application": []}))
        );
        let other: BTreeMap<String, String> =
            owned(&[("$.ct", "application/json2"), ("$.ce", "utf-8")]);
        let column = properties_column(&other, &[]);
        assert_eq!(column, "$.ce=utf-8&$.ct=application/json2");
        assert_eq!(
            properties_json(&column),
            Some(json!({"system": other, "application": []}))
        );
        assert_eq!(
            properties_json("only=app"),
            Some(json!({"system": {}, "application": [["only", "app"]]}))
        );
        assert_eq!(properties_json("broken"), None);
        assert_eq!(properties_json("bad=%zz"), None);
    }

    #[test]
    fn a_body_is_read_as_json_unless_its_content_type_or_encoding_says_otherwise() {
        let json = |pairs: &[(&str, &str)]| looks_like_json(&owned(pairs));
        assert!(json(&[]));
        assert!(json(&[("$.ct", "application/json"), ("$.ce", "utf-8")]));
        assert!(json(&[("$.ct", "Application/JSON; charset=UTF-8")]));
        assert!(json(&[
            ("$.ct", "application/vnd.gyre+json"),
            ("$.ce", "UTF8")
        ]));
        assert!(!json(&[("$.ct", "application/octet-stream")]));
        assert!(!json(&[("$.ct", "text/plain"), ("$.ce", "utf-8")]));
        assert!(!json(&[("$.ct", "application/json"), ("$.ce", "utf-16")]));
        assert!(!json(&[("$.ct", "jso")]));
    }

    /// Devices' messages come in runs, and runs of one device can come back later in the batch:
    /// each field still ends with its newest value, the later message winning a tie.
    #[test]
    fn a_batch_interleaving_devices_keeps_each_fields_newest_value() {
        let mut sql = with_devices();
        let b = batch(
            "b-1",
            vec![
                message("d1", T0 + 10, br#"{"temp":1}"#, &[]),
                message("d1", T0 + 4, br#"{"temp":0,"fan":"on"}"#, &[]),
                message("d2", T0 + 1, br#"{"temp":5}"#, &[]),
                message("d1", T0 + 5, br#"{"temp":2}"#, &[]),
                message("d1", T0 + 3, br#"{"humidity":7}"#, &[("$.sub", "sensor")]),
                message("d1", T0 + 10, br#"{"temp":3}"#, &[]),
                message("d2", T0 + 2, br#"{"temp":6}"#, &[]),
                message("d1", T0 + 2, br#"{"humidity":8}"#, &[("$.sub", "sensor")]),
            ],
        );
        apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        let values = |sql: &mut RusqliteSql, device: &str| -> Vec<_> {
            last_values(sql, device)
                .unwrap()
                .into_iter()
                .map(|v| (v.component, v.name, v.value, v.enqueued_at))
                .collect()
        };
        assert_eq!(
            values(&mut sql, "d1"),
            vec![
                ("".into(), "fan".into(), json!("on"), T0 + 4),
                ("".into(), "temp".into(), json!(3), T0 + 10),
                ("sensor".into(), "humidity".into(), json!(7), T0 + 3),
            ]
        );
        assert_eq!(
            values(&mut sql, "d2"),
            vec![("".into(), "temp".into(), json!(6), T0 + 2)]
        );
    }

    #[test]
    fn names_are_written_as_json_strings_escaped_only_when_they_must_be() {
        for name in ["temp", "tab\there", "quote\"d", "back\\slash", "caf\u{e9}"] {
            let mut out = String::new();
            push_json_string(&mut out, name);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), name, "{out}");
        }
    }

    #[test]
    fn a_late_batch_adds_fields_never_seen_but_overwrites_none() {
        let mut sql = with_devices();
        let apply = |sql: &mut RusqliteSql, id: &str, at: i64, body: &[u8]| {
            let b = batch(id, vec![message("d1", at, body, &[])]);
            apply_batch(sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
        };
        apply(&mut sql, "b-1", T0 + 10, br#"{"temp":20.50,"mode":"eco"}"#);
        apply(&mut sql, "b-2", T0 + 5, br#"{"temp":19,"battery":80}"#);
        apply(&mut sql, "b-3", T0 + 30, br#"{"mode":null}"#);
        let values: Vec<_> = last_values(&mut sql, "d1")
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.value, v.enqueued_at))
            .collect();
        assert_eq!(
            values,
            vec![
                ("battery".into(), json!(80), T0 + 5),
                ("mode".into(), json!(null), T0 + 30),
                ("temp".into(), json!(20.5), T0 + 10),
            ]
        );
    }

    #[test]
    fn a_device_that_changes_its_fields_keeps_every_newest_value() {
        let mut sql = with_devices();
        let mut n = 0;
        let mut apply = |sql: &mut RusqliteSql, at: i64, body: &[u8]| {
            n += 1;
            let b = batch(&format!("b-{n}"), vec![message("d1", at, body, &[])]);
            apply_batch(sql, &b, Timestamp::from_unix_millis(T0)).unwrap();
            let names = sql
                .execute("SELECT names FROM last_values WHERE device_id = 'd1'", &[])
                .unwrap()
                .scalar()
                .cloned();
            let values: Vec<_> = last_values(sql, "d1")
                .unwrap()
                .into_iter()
                .map(|v| (v.name, v.value, v.enqueued_at - T0))
                .collect();
            (
                names.and_then(|names| names.as_text().map(str::to_owned)),
                values,
            )
        };
        let row = |name: &str, value: serde_json::Value, at: i64| (name.to_owned(), value, at);
        // The same names replace the object whole.
        apply(&mut sql, T0 + 1, br#"{"temp":1,"fan":"on"}"#);
        let (names, values) = apply(&mut sql, T0 + 2, br#"{"fan":"off","temp":2}"#);
        assert_eq!(names.as_deref(), Some(r#"["fan","temp"]"#));
        assert_eq!(
            values,
            vec![row("fan", json!("off"), 2), row("temp", json!(2), 2)]
        );
        // Fewer names merge, and the names are then unknown.
        let (names, values) = apply(&mut sql, T0 + 3, br#"{"temp":3}"#);
        assert_eq!(names, None);
        assert_eq!(
            values,
            vec![row("fan", json!("off"), 2), row("temp", json!(3), 3)]
        );
        // More names merge too, and as the merge holds just the batch's names, they are known.
        let (names, values) = apply(&mut sql, T0 + 4, br#"{"temp":4,"fan":"on","mode":"eco"}"#);
        assert_eq!(names.as_deref(), Some(r#"["fan","mode","temp"]"#));
        assert_eq!(
            values,
            vec![
                row("fan", json!("on"), 4),
                row("mode", json!("eco"), 4),
                row("temp", json!(4), 4)
            ]
        );
        // Other names of as many: merged, unknown.
        let (names, values) = apply(&mut sql, T0 + 5, br#"{"a\"b":5,"temp":5,"fan":"off"}"#);
        assert_eq!(names, None);
        assert_eq!(values.len(), 4);
        // A late batch with the same names changes nothing.
        apply(
            &mut sql,
            T0 + 6,
            br#"{"a\"b":6,"temp":6,"fan":"on","mode":"x"}"#,
        );
        let (names, values) = apply(
            &mut sql,
            T0 + 1,
            br#"{"a\"b":0,"temp":0,"fan":"x","mode":"y"}"#,
        );
        assert_eq!(names.as_deref(), Some(r#"["a\"b","fan","mode","temp"]"#));
        assert_eq!(
            values,
            vec![
                row("a\"b", json!(6), 6),
                row("fan", json!("on"), 6),
                row("mode", json!("x"), 6),
                row("temp", json!(6), 6)
            ]
        );
    }

    #[test]
    fn a_json_object_body_is_stored_once_and_every_body_reads_back_byte_for_byte() {
        let mut sql = with_devices();
        let bodies: [&[u8]; 5] = [
            br#" {"temp": 21.50 , "fan":"on"} "#,
            br#"{"te\u006dp": 1}"#,
            b"",
            br#"[1, 2]"#,
            b"\xde\xad",
        ];
        let messages = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| message("d1", T0 + i as i64, body, &[]))
            .collect();
        apply_batch(
            &mut sql,
            &batch("b-once", messages),
            Timestamp::from_unix_millis(T0),
        )
        .unwrap();
        let read_back = |sql: &mut _| -> Vec<Vec<u8>> {
            series(sql, "d1", 0, i64::MAX, 100)
                .unwrap()
                .into_iter()
                .map(|row| row.body)
                .collect()
        };
        let expected: Vec<Vec<u8>> = bodies.iter().map(|body| body.to_vec()).collect();
        assert_eq!(read_back(&mut sql), expected);
        // Only the body whose text is its `fields` gave up its own copy; the one with an
        // escaped name has re-serialised `fields` and keeps its bytes.
        let stored_lengths = sql
            .execute("SELECT length(body) FROM telemetry_inbox ORDER BY seq", &[])
            .unwrap();
        let lengths: Vec<i64> = stored_lengths
            .rows
            .iter()
            .map(|row| row[0].as_integer().unwrap())
            .collect();
        assert_eq!(lengths, vec![0, bodies[1].len() as i64, 0, 6, 2]);
        compact(&mut sql, 100).unwrap();
        assert_eq!(read_back(&mut sql), expected, "after compaction");
    }

    #[test]
    fn compaction_moves_bounded_steps_without_loss_or_duplication() {
        let mut sql = with_devices();
        for b in 0..5 {
            let messages = (0..7)
                .map(|i| {
                    let device = if i % 2 == 0 { "d1" } else { "d2" };
                    message(
                        device,
                        T0 + b * 100 + i,
                        format!("{{\"temp\":{i}}}").as_bytes(),
                        &[],
                    )
                })
                .collect();
            apply_batch(
                &mut sql,
                &batch(&format!("b-{b}"), messages),
                Timestamp::from_unix_millis(T0),
            )
            .unwrap();
        }
        let before = series(&mut sql, "d1", 0, i64::MAX, 1000).unwrap();
        assert_eq!(before.len(), 20);
        assert_eq!(compact(&mut sql, 0).unwrap(), 0);
        assert_eq!(compact(&mut sql, 10).unwrap(), 10);
        assert_eq!(inbox_len(&mut sql).unwrap(), 25);
        // Reads span both tables while compaction is under way.
        assert_eq!(series(&mut sql, "d1", 0, i64::MAX, 1000).unwrap(), before);
        let limited = series(&mut sql, "d1", T0 + 100, T0 + 300, 5).unwrap();
        assert_eq!(
            limited,
            before
                .iter()
                .filter(|r| r.enqueued_at >= T0 + 100)
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_eq!(compact(&mut sql, 10).unwrap(), 10);
        assert_eq!(compact(&mut sql, 100).unwrap(), 15);
        assert_eq!(compact(&mut sql, 100).unwrap(), 0);
        assert_eq!(count(&mut sql, "telemetry"), 35);
        assert_eq!(series(&mut sql, "d1", 0, i64::MAX, 1000).unwrap(), before);
        // New rows after an empty inbox never reuse a compacted seq.
        apply_batch(
            &mut sql,
            &batch("b-late", vec![message("d1", T0, b"{}", &[])]),
            Timestamp::from_unix_millis(T0),
        )
        .unwrap();
        assert_eq!(compact(&mut sql, 100).unwrap(), 1);
        assert_eq!(series(&mut sql, "d1", 0, i64::MAX, 1000).unwrap().len(), 21);
    }

    #[test]
    fn compaction_steps_grow_only_when_a_backlog_of_four_steps_waits() {
        assert_eq!(catch_up_step(0, 100), 100);
        assert_eq!(catch_up_step(399, 100), 100);
        assert_eq!(catch_up_step(400, 100), 200);
        assert_eq!(catch_up_step(700, 100), 350);
        assert_eq!(catch_up_step(800, 100), 400);
        assert_eq!(catch_up_step(u64::MAX, 100), 400);
        assert_eq!(catch_up_step(3, 0), 1, "a step moves at least a row");
        assert_eq!(catch_up_step(10, 0), 4);
    }

    #[test]
    fn a_bad_batch_writes_nothing() {
        let mut sql = with_devices();
        let mut bad = message("d1", T0, b"{}", &[]);
        bad.device_id = String::new();
        let b = batch("b-1", vec![message("d1", T0, b"{}", &[]), bad]);
        assert!(matches!(
            apply_batch(&mut sql, &b, Timestamp::from_unix_millis(T0)),
            Err(IngestError::Invalid { .. })
        ));
        assert!(matches!(
            apply_batch(
                &mut sql,
                &batch("", vec![]),
                Timestamp::from_unix_millis(T0)
            ),
            Err(IngestError::Invalid { .. })
        ));
        assert_eq!(count(&mut sql, "telemetry_inbox"), 0);
        assert_eq!(count(&mut sql, "ingest_batches"), 0);
        assert_eq!(provisioned(&mut sql, "d1"), 0);
    }

    #[test]
    fn parses_device_times() {
        assert_eq!(parse_rfc3339_millis("2025-11-26T12:47:05.120Z"), Some(T0));
        assert_eq!(
            parse_rfc3339_millis("2025-11-26T13:47:05.12+01:00"),
            Some(T0)
        );
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
        assert_eq!(parse_rfc3339_millis("2025-13-26T12:47:05Z"), None);
    }
}
