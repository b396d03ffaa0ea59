//! The `audit_log` table: append one record per create, update and delete, and read them back
//! in order for the export issue to publish.
//!
//! A record says who ([`AuditRecord::actor`], e.g. `apiToken:<id>`), what
//! ([`AuditAction`] on `resource_type`/`resource_id`), when (`at`, Unix milliseconds in the row)
//! and, optionally, a short free-text `detail`. Rows are numbered by `seq`, SQLite's
//! `AUTOINCREMENT` key, so numbers only grow and are never reused: a reader that remembers the
//! last `seq` it saw pages with [`list`] without missing or repeating a record.
//!
//! Callers append inside the same transaction as the change they record, so a change and its
//! audit row commit or roll back together. This module never updates or deletes a row (the log
//! is append-only; retention is the export issue's decision), and it does not decide what is
//! worth auditing or how actors are named: that is the component's `Ctx::audit`.

use serde::{Deserialize, Serialize};

use super::{Rows, Sql, StoreError, Value};
use crate::time::Timestamp;

/// The `resource_type`s that decide whether a device may connect, as the registry writes them:
/// the device itself, its individual keys, and the enrollment groups its keys may derive from.
pub mod resource {
    pub const DEVICE: &str = "device";
    pub const DEVICE_ATTESTATION: &str = "deviceAttestation";
    pub const ENROLLMENT_GROUP: &str = "enrollmentGroup";
}

/// What happened to the resource. Stored and serialised in lower case (`create`, `update`,
/// `delete`); never rename a variant's string, rows in the field hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
        }
    }

    /// The action stored as `raw`; `None` for anything else.
    pub fn parse(raw: &str) -> Option<AuditAction> {
        Some(match raw {
            "create" => AuditAction::Create,
            "update" => AuditAction::Update,
            "delete" => AuditAction::Delete,
            _ => return None,
        })
    }
}

/// Who changed what, when. Fields are public: the record has no invariant beyond its types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// Who acted, e.g. `apiToken:operator-token`.
    pub actor: String,
    pub action: AuditAction,
    /// The kind of resource, in the API's words: `device`, `deviceTemplate`, `apiToken`...
    pub resource_type: String,
    pub resource_id: String,
    /// Anything else worth keeping (e.g. which fields changed); never a secret.
    pub detail: Option<String>,
}

/// A record as read back, with its position in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Strictly increasing, never reused; pass the last one seen to [`list`] as `after_seq`.
    pub seq: i64,
    pub record: AuditRecord,
}

/// Appends `record` and returns its `seq`.
pub fn append<S: Sql>(sql: &mut S, record: &AuditRecord) -> Result<i64, StoreError> {
    const APPEND: &str = "INSERT INTO audit_log \
         (at, actor, action, resource_type, resource_id, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq";
    let rows = sql.execute(
        APPEND,
        &[
            Value::Integer(record.at.unix_millis()),
            Value::Text(record.actor.clone()),
            Value::Text(record.action.as_str().to_owned()),
            Value::Text(record.resource_type.clone()),
            Value::Text(record.resource_id.clone()),
            record
                .detail
                .as_ref()
                .map_or(Value::Null, |detail| Value::Text(detail.clone())),
        ],
    )?;
    rows.scalar()
        .and_then(Value::as_integer)
        .ok_or_else(|| StoreError::UnexpectedResult {
            statement: APPEND,
            detail: format!("no seq returned: {rows:?}"),
        })
}

/// Up to `limit` entries in `seq` order, starting after `after_seq` (from the beginning when
/// `None`).
pub fn list<S: Sql>(
    sql: &mut S,
    after_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    const LIST: &str = "SELECT seq, at, actor, action, resource_type, resource_id, detail \
         FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2";
    // `seq` starts at 1, so "after 0" is the whole log.
    let rows = sql.execute(
        LIST,
        &[
            Value::Integer(after_seq.unwrap_or(0)),
            Value::Integer(i64::from(limit)),
        ],
    )?;
    entries_from_rows(LIST, rows)
}

fn entries_from_rows(statement: &'static str, rows: Rows) -> Result<Vec<AuditEntry>, StoreError> {
    rows.rows
        .into_iter()
        .map(|row| {
            entry_from_row(row).map_err(|detail| StoreError::UnexpectedResult { statement, detail })
        })
        .collect()
}

/// Maps `seq, at, actor, action, resource_type, resource_id, detail`; a row this code did not
/// write is an error naming what is wrong, never a panic.
fn entry_from_row(row: Vec<Value>) -> Result<AuditEntry, String> {
    let [seq, at, actor, action, resource_type, resource_id, detail]: [Value; 7] =
        row.try_into()
            .map_err(|row: Vec<Value>| format!("expected 7 columns, got {}", row.len()))?;
    let seq = seq.as_integer().ok_or("seq: not an integer")?;
    let text = |value: Value, column: &str| match value {
        Value::Text(text) => Ok(text),
        other => Err(format!(
            "{column} of audit record {seq}: not text: {other:?}"
        )),
    };
    let at = at
        .as_integer()
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| format!("at of audit record {seq}: not an integer"))?;
    let action = text(action, "action")?;
    let action = AuditAction::parse(&action)
        .ok_or_else(|| format!("action of audit record {seq}: unknown `{action}`"))?;
    let detail = match detail {
        Value::Null => None,
        other => Some(text(other, "detail")?),
    };
    Ok(AuditEntry {
        seq,
        record: AuditRecord {
            at,
            actor: text(actor, "actor")?,
            action,
            resource_type: text(resource_type, "resource_type")?,
            resource_id: text(resource_id, "resource_id")?,
            detail,
        },
    })
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};

    const NOW: i64 = 1_764_161_225_120; // 2025-11-26T12:47:05.120Z

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(NOW)).unwrap();
        sql
    }

    fn record(offset: i64, action: AuditAction, resource_id: &str) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_unix_millis(NOW + offset),
            actor: "apiToken:admin".to_owned(),
            action,
            resource_type: "device".to_owned(),
            resource_id: resource_id.to_owned(),
            detail: None,
        }
    }

    fn seqs(entries: &[AuditEntry]) -> Vec<i64> {
        entries.iter().map(|entry| entry.seq).collect()
    }

    #[test]
    fn records_round_trip_in_order() {
        let mut sql = migrated();
        let mut with_detail = record(2, AuditAction::Update, "d1");
        with_detail.detail = Some("displayName, enabled".to_owned());
        let records = [
            record(0, AuditAction::Create, "d1"),
            with_detail,
            record(3, AuditAction::Delete, "d1"),
        ];
        for (record, expected_seq) in records.iter().zip(1..) {
            assert_eq!(append(&mut sql, record).unwrap(), expected_seq);
        }
        let entries = list(&mut sql, None, 10).unwrap();
        assert_eq!(seqs(&entries), [1, 2, 3]);
        let read: Vec<AuditRecord> = entries.into_iter().map(|entry| entry.record).collect();
        assert_eq!(read, records);
    }

    #[test]
    fn pages_by_seq() {
        let mut sql = migrated();
        for idx in 0..5 {
            append(
                &mut sql,
                &record(idx, AuditAction::Create, &format!("d{idx}")),
            )
            .unwrap();
        }
        let check = |sql: &mut RusqliteSql, after: Option<i64>, limit: u32, expected: &[i64]| {
            assert_eq!(
                seqs(&list(sql, after, limit).unwrap()),
                expected,
                "{after:?}"
            );
        };
        check(&mut sql, None, 2, &[1, 2]);
        check(&mut sql, Some(2), 2, &[3, 4]);
        check(&mut sql, Some(4), 2, &[5]);
        check(&mut sql, Some(5), 2, &[]);
        check(&mut sql, Some(-7), 1, &[1]);
        check(&mut sql, None, 0, &[]);
    }

    #[test]
    fn seq_is_never_reused_after_a_rollback() {
        let mut sql = migrated();
        append(&mut sql, &record(0, AuditAction::Create, "d1")).unwrap();
        let rolled_back: Result<(), StoreError> = sql.transaction(|tx| {
            append(tx, &record(1, AuditAction::Delete, "d1"))?;
            Err(StoreError::database("the change failed"))
        });
        assert!(rolled_back.is_err());
        // The rolled-back record is gone with the change it described.
        assert_eq!(seqs(&list(&mut sql, None, 10).unwrap()), [1]);
        append(&mut sql, &record(2, AuditAction::Update, "d1")).unwrap();
        let entries = list(&mut sql, None, 10).unwrap();
        assert_eq!(entries.last().unwrap().record.action, AuditAction::Update);
    }

    #[test]
    fn actions_are_lower_case_on_the_wire_and_in_the_table() {
        for (action, name) in [
            (AuditAction::Create, "create"),
            (AuditAction::Update, "update"),
            (AuditAction::Delete, "delete"),
        ] {
            assert_eq!(action.as_str(), name);
            assert_eq!(AuditAction::parse(name), Some(action));
            assert_eq!(serde_json::to_value(action).unwrap(), name);
        }
        assert_eq!(AuditAction::parse("Create"), None);
        let mut sql = migrated();
        append(&mut sql, &record(0, AuditAction::Delete, "d1")).unwrap();
        let rows = sql
            .execute("SELECT action, at FROM audit_log", &[])
            .unwrap();
        assert_eq!(
            rows.rows,
            [vec![Value::Text("delete".into()), Value::Integer(NOW)]]
        );
    }

    #[test]
    fn rows_this_code_did_not_write_are_errors_not_panics() {
        let check = |action: &str, detail: Value, expected: &str| {
            let mut sql = migrated();
            sql.execute(
                "INSERT INTO audit_log (at, actor, action, resource_type, resource_id, detail) \
                 VALUES (0, 'a', ?1, 'device', 'd1', ?2)",
                &[Value::Text(action.to_owned()), detail],
            )
            .unwrap();
            let error = list(&mut sql, None, 10).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        };
        check("created", Value::Null, "unknown `created`");
        check(
            "create",
            // TEXT affinity would turn an integer into text; a blob stays a blob.
            Value::Blob(vec![1]),
            "detail of audit record 1: not text",
        );
    }
}

/// Devices whose right to connect may have changed after `after_seq` (`None`: the bridge
/// starts now and needs only the cursor), for the bridge to recheck its live sessions; see
/// [`crate::bridge::ConnectionChanges`].
pub fn connection_changes<S: Sql>(
    sql: &mut S,
    after_seq: Option<i64>,
    limit: u32,
) -> Result<crate::bridge::ConnectionChanges, StoreError> {
    const LAST: &str = "SELECT coalesce(max(seq), 0) FROM audit_log";
    let rows = sql.execute(LAST, &[])?;
    let cursor =
        rows.scalar()
            .and_then(Value::as_integer)
            .ok_or_else(|| StoreError::UnexpectedResult {
                statement: LAST,
                detail: format!("{rows:?}"),
            })?;
    let mut changes = crate::bridge::ConnectionChanges {
        cursor,
        device_ids: Vec::new(),
        all_devices: false,
    };
    let Some(after_seq) = after_seq else {
        return Ok(changes);
    };
    // Up to `cursor` only: a row appended after the first read belongs to the next poll.
    const CHANGED: &str = "SELECT DISTINCT resource_type, resource_id FROM audit_log \
         WHERE seq > ?1 AND seq <= ?2 AND resource_type IN (?3, ?4, ?5) LIMIT ?6";
    let rows = sql.execute(
        CHANGED,
        &[
            Value::Integer(after_seq),
            Value::Integer(cursor),
            Value::Text(resource::DEVICE.to_owned()),
            Value::Text(resource::DEVICE_ATTESTATION.to_owned()),
            Value::Text(resource::ENROLLMENT_GROUP.to_owned()),
            Value::Integer(i64::from(limit) + 1),
        ],
    )?;
    for row in &rows.rows {
        match (row[0].as_text(), row[1].as_text()) {
            (Some(resource::ENROLLMENT_GROUP), _) => changes.all_devices = true,
            (Some(_), Some(device_id)) => changes.device_ids.push(device_id.to_owned()),
            _ => {
                return Err(StoreError::UnexpectedResult {
                    statement: CHANGED,
                    detail: format!("{row:?}"),
                })
            }
        }
    }
    changes.device_ids.sort();
    changes.device_ids.dedup();
    // Too many to list: recheck every device instead.
    if changes.all_devices || changes.device_ids.len() > limit as usize {
        changes.all_devices = true;
        changes.device_ids.clear();
    }
    Ok(changes)
}

#[cfg(all(test, feature = "rusqlite"))]
mod connection_changes_tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};

    fn record(resource_type: &str, resource_id: &str) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_unix_millis(0),
            actor: "test".into(),
            action: AuditAction::Update,
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            detail: None,
        }
    }

    #[test]
    fn connection_changes_name_devices_once_and_everything_after_a_group_change() {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(0)).unwrap();
        append(&mut sql, &record(resource::DEVICE, "before")).unwrap();
        let start = connection_changes(&mut sql, None, 10).unwrap();
        assert_eq!((start.device_ids.len(), start.all_devices), (0, false));

        for (kind, id) in [
            (resource::DEVICE, "d2"),
            ("apiToken", "t1"),
            (resource::DEVICE_ATTESTATION, "d1"),
            (resource::DEVICE, "d2"),
        ] {
            append(&mut sql, &record(kind, id)).unwrap();
        }
        let changes = connection_changes(&mut sql, Some(start.cursor), 10).unwrap();
        assert_eq!(changes.device_ids, vec!["d1".to_owned(), "d2".to_owned()]);
        assert!(!changes.all_devices);
        assert_eq!(changes.cursor, start.cursor + 4);
        let quiet = connection_changes(&mut sql, Some(changes.cursor), 10).unwrap();
        assert_eq!((quiet.device_ids.len(), quiet.cursor), (0, changes.cursor));

        append(&mut sql, &record(resource::ENROLLMENT_GROUP, "g")).unwrap();
        let group = connection_changes(&mut sql, Some(changes.cursor), 10).unwrap();
        assert!(group.all_devices && group.device_ids.is_empty());

        for n in 0..3 {
            append(&mut sql, &record(resource::DEVICE, &format!("x{n}"))).unwrap();
        }
        let many = connection_changes(&mut sql, Some(group.cursor), 2).unwrap();
        assert!(many.all_devices, "more than the limit: recheck everything");
    }
}
