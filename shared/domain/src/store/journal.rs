//! The ingest journal: a database of its own (label [`LABEL`]) where each batch the bridge
//! sends is kept, prepared ([`Prepared::encode`]), from the moment it is durable until it has
//! been applied to the default database.
//!
//! Why a second database: SQLite has one writer per database. In the default database a
//! batch's commit waits behind every other writer, above all behind compaction steps that
//! hold the write lock for tens of milliseconds, and the devices' PUBACKs wait with it. The
//! journal's only writers are batches (one append each) and the apply (one delete per run of
//! batches), so a batch is durable, and acknowledged, within about one sync; the apply then
//! writes many batches in one transaction of the default database ([`apply`]), and compaction
//! runs beside the appends instead of in front of them.
//!
//! A batch id is applied once: [`apply`] claims it in `ingest_batches` in the same transaction
//! as its rows, and only then forgets it here, so a crash between the two replays the batch
//! and the claim makes the replay write nothing. An id also appends once ([`append`]).
//!
//! `seq` grows and is never used twice, so two applies at once (the bridge's compaction
//! request and its tick) each forget only entries they read, or that the other read and
//! applied.

use super::migrations::{migrate_with, Migration, META_TABLE};
use super::telemetry::{apply_prepared, Applied, Prepared};
use super::{Migrated, Sql, StoreError, Value};
use crate::time::Timestamp;

/// The journal's label in `spin.toml`'s `sqlite_databases` (and the runtime configuration).
pub const LABEL: &str = "journal";

/// The journal database's own schema, versioned like the default database's.
const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "meta",
        statements: &[META_TABLE],
    },
    Migration {
        name: "journal",
        // AUTOINCREMENT: a `seq` is never used twice, even once the journal was empty, so an
        // apply that forgets `seq <= last` after another apply emptied the journal cannot
        // forget a batch appended since.
        statements: &[
            "CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             batch_id TEXT NOT NULL UNIQUE, entry BLOB NOT NULL)",
        ],
    },
];

/// Brings the journal database's schema up to date.
pub fn migrate<S: Sql>(journal: &mut S, now: Timestamp) -> Result<Migrated, StoreError> {
    migrate_with(journal, MIGRATIONS, now)
}

/// Appends `prepared` (one statement, so one commit); `false` when its batch id is in the
/// journal already.
pub fn append<S: Sql>(journal: &mut S, prepared: &Prepared) -> Result<bool, StoreError> {
    let rows = journal.execute_owned(
        "INSERT INTO journal (batch_id, entry) VALUES (?1, ?2) \
         ON CONFLICT (batch_id) DO NOTHING RETURNING seq",
        vec![
            Value::Text(prepared.batch_id.clone()),
            Value::Blob(prepared.encode()),
        ],
    )?;
    Ok(!rows.rows.is_empty())
}

/// Batches waiting to be applied. A count of the rows: the journal is kept short (the
/// ingest component bounds it to tens of batches).
pub fn len<S: Sql>(journal: &mut S) -> Result<u64, StoreError> {
    const COUNT: &str = "SELECT count(*) FROM journal";
    let rows = journal.execute(COUNT, &[])?;
    match rows.scalar() {
        Some(Value::Integer(n)) => Ok(*n as u64),
        _ => Err(StoreError::UnexpectedResult {
            statement: COUNT,
            detail: format!("{rows:?}"),
        }),
    }
}

/// What one [`apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Journal entries read and forgotten (applied now, or before).
    pub entries: u32,
    /// What they wrote to the default database.
    pub applied: Applied,
}

/// Applies the oldest journal entries, at most `max_batches` and, past the first, at most
/// `max_bytes` of them (an apply holds them and their rows in memory at once), to `sql` (the
/// default database) in one transaction, then forgets them. Entries another apply wrote first
/// are forgotten without writing anything (their claims exist).
pub fn apply<J: Sql, S: Sql>(
    journal: &mut J,
    sql: &mut S,
    max_batches: u32,
    max_bytes: u64,
    now: Timestamp,
) -> Result<Drained, StoreError> {
    // Sizes first (SQLite reads a blob's length from its record header, not its pages).
    const SIZES: &str = "SELECT seq, length(entry) FROM journal ORDER BY seq LIMIT ?1";
    let sizes = journal.execute(SIZES, &[Value::Integer(i64::from(max_batches))])?;
    let mut through = None;
    let mut bytes = 0u64;
    for row in &sizes.rows {
        let (Some(seq), Some(size)) = (row[0].as_integer(), row[1].as_integer()) else {
            return Err(StoreError::UnexpectedResult {
                statement: SIZES,
                detail: format!("{row:?}"),
            });
        };
        bytes = bytes.saturating_add(size.max(0) as u64);
        if through.is_some() && bytes > max_bytes {
            break;
        }
        through = Some(seq);
    }
    let Some(through) = through else {
        return Ok(Drained::default());
    };
    const ENTRIES: &str = "SELECT entry FROM journal WHERE seq <= ?1 ORDER BY seq";
    let rows = journal.execute(ENTRIES, &[Value::Integer(through)])?;
    let mut batches = Vec::with_capacity(rows.rows.len());
    for row in rows.rows {
        let Some(Value::Blob(entry)) = row.into_iter().next() else {
            return Err(StoreError::UnexpectedResult {
                statement: ENTRIES,
                detail: "a row without a blob entry".to_owned(),
            });
        };
        batches.push(Prepared::decode(&entry)?);
    }
    // Empty when another apply forgot them between the two reads.
    if batches.is_empty() {
        return Ok(Drained::default());
    }
    let entries = batches.len() as u32;
    let applied = apply_prepared(sql, batches, now)?;
    // Every entry up to `through` was read here or forgotten by another apply, and no later
    // append takes a `seq` that low (see the module docs).
    journal.execute(
        "DELETE FROM journal WHERE seq <= ?1",
        &[Value::Integer(through)],
    )?;
    Ok(Drained { entries, applied })
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::ingest::{DeviceMessage, IngestBatch};
    use crate::store::telemetry::{inbox_len, prepare};
    use crate::store::RusqliteSql;

    fn batch(id: &str, device: &str, at: i64, body: &str) -> IngestBatch {
        IngestBatch {
            batch_id: id.into(),
            messages: vec![DeviceMessage {
                device_id: device.into(),
                enqueued_at: at,
                module_id: None,
                system_properties: Default::default(),
                application_properties: vec![],
                body: body.as_bytes().to_vec(),
            }],
            events: vec![],
        }
    }

    fn databases() -> (RusqliteSql, RusqliteSql) {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        crate::store::migrate(&mut sql, Timestamp::from_unix_millis(0)).unwrap();
        let mut journal = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut journal, Timestamp::from_unix_millis(0)).unwrap();
        (sql, journal)
    }

    #[test]
    fn a_journaled_batch_is_applied_once_and_then_forgotten() {
        let (mut sql, mut journal) = databases();
        let now = Timestamp::from_unix_millis(5);
        let first = prepare(&mut sql, &batch("b-1", "d-1", 1, r#"{"t": 1}"#)).unwrap();
        assert!(append(&mut journal, &first).unwrap());
        assert!(!append(&mut journal, &first).unwrap(), "an id appends once");
        let second = prepare(&mut sql, &batch("b-2", "d-1", 2, r#"{"t": 2}"#)).unwrap();
        assert!(append(&mut journal, &second).unwrap());
        assert_eq!(len(&mut journal).unwrap(), 2);

        let drained = apply(&mut journal, &mut sql, 48, 1 << 20, now).unwrap();
        assert_eq!(drained.entries, 2);
        assert_eq!(drained.applied.batches, 2);
        assert_eq!(drained.applied.messages, 2);
        assert_eq!(len(&mut journal).unwrap(), 0);
        assert_eq!(inbox_len(&mut sql).unwrap(), 2);

        // A crash between the apply's commit and the journal's delete replays the batch: the
        // claim makes the replay write nothing.
        assert!(append(&mut journal, &first).unwrap());
        let seq = journal.execute("SELECT seq FROM journal", &[]).unwrap();
        assert_eq!(
            seq.scalar(),
            Some(&Value::Integer(4)),
            "a seq is not used again once the journal was empty"
        );
        let replayed = apply(&mut journal, &mut sql, 48, 1 << 20, now).unwrap();
        assert_eq!(replayed.entries, 1);
        assert_eq!(replayed.applied, Applied::default());
        assert_eq!(inbox_len(&mut sql).unwrap(), 2);
        assert_eq!(len(&mut journal).unwrap(), 0);
    }

    #[test]
    fn an_apply_takes_at_most_its_batches_oldest_first() {
        let (mut sql, mut journal) = databases();
        for i in 0..5 {
            let prepared = prepare(&mut sql, &batch(&format!("b-{i}"), "d", i, "{}")).unwrap();
            append(&mut journal, &prepared).unwrap();
        }
        let now = Timestamp::from_unix_millis(9);
        let drained = apply(&mut journal, &mut sql, 3, 1 << 20, now).unwrap();
        assert_eq!(drained.entries, 3);
        assert_eq!(len(&mut journal).unwrap(), 2);
        let rest = apply(&mut journal, &mut sql, 3, 1 << 20, now).unwrap();
        assert_eq!(rest.entries, 2);
        assert_eq!(
            apply(&mut journal, &mut sql, 3, 1 << 20, now).unwrap(),
            Drained::default()
        );
    }

    #[test]
    fn an_apply_takes_entries_up_to_its_bytes_but_always_one() {
        let (mut sql, mut journal) = databases();
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(40_000));
        for i in 0..3 {
            let prepared = prepare(&mut sql, &batch(&format!("b-{i}"), "d", i, &big)).unwrap();
            append(&mut journal, &prepared).unwrap();
        }
        let now = Timestamp::from_unix_millis(9);
        let one = apply(&mut journal, &mut sql, 48, 1_000, now).unwrap();
        assert_eq!(one.entries, 1, "one entry even past the bytes");
        let two = apply(&mut journal, &mut sql, 48, 250_000, now).unwrap();
        assert_eq!(two.entries, 2);
        assert_eq!(len(&mut journal).unwrap(), 0);
        assert_eq!(inbox_len(&mut sql).unwrap(), 3);
    }
}
