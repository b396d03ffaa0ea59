//! The `device_events` table: what happened to a device besides telemetry (property changes
//! and command executions), appended in the same transaction as the change, and read back in
//! order by the export issue.
//!
//! Kinds follow IoT Central's data export message types where one exists
//! ([`kind::REPORTED_PROPERTY_CHANGE`], ...). Rows are numbered by `seq` (AUTOINCREMENT): an
//! exporter that remembers the last `seq` it saw pages with [`list`] without missing or
//! repeating one. This module never updates or deletes a row; retention is the export issue's.

use serde_json::Value as Json;

use super::{Sql, StoreError, Value};
use crate::time::Timestamp;

/// The `kind` column: IoT Central's export `messageType` names, and ours for commands.
pub mod kind {
    pub const REPORTED_PROPERTY_CHANGE: &str = "devicePropertyReportedChange";
    pub const DESIRED_PROPERTY_CHANGE: &str = "devicePropertyDesiredChange";
    pub const CLOUD_PROPERTY_CHANGE: &str = "cloudPropertyChange";
    pub const COMMAND_EXECUTION: &str = "commandExecution";
}

/// One event as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceEvent {
    /// Strictly increasing, never reused; pass the last one seen to [`list`].
    pub seq: i64,
    pub at: Timestamp,
    pub device_id: String,
    pub kind: String,
    /// A JSON object; its shape depends on `kind`.
    pub body: Json,
}

/// Appends an event and returns its `seq`. `body` is what an exporter needs, e.g.
/// `{"component": null, "properties": [{"name": .., "value": ..}]}`.
pub fn record<S: Sql>(
    sql: &mut S,
    at: Timestamp,
    device_id: &str,
    kind: &str,
    body: &Json,
) -> Result<i64, StoreError> {
    const APPEND: &str = "INSERT INTO device_events (at, device_id, kind, body) \
         VALUES (?1, ?2, ?3, ?4) RETURNING seq";
    let rows = sql.execute(
        APPEND,
        &[
            Value::Integer(at.unix_millis()),
            Value::Text(device_id.to_owned()),
            Value::Text(kind.to_owned()),
            Value::Text(body.to_string()),
        ],
    )?;
    rows.scalar()
        .and_then(Value::as_integer)
        .ok_or_else(|| StoreError::UnexpectedResult {
            statement: APPEND,
            detail: format!("no seq returned: {rows:?}"),
        })
}

/// Up to `limit` events in `seq` order after `after_seq` (0: from the beginning).
pub fn list<S: Sql>(sql: &mut S, after_seq: i64, limit: u32) -> Result<Vec<DeviceEvent>, StoreError> {
    const LIST: &str = "SELECT seq, at, device_id, kind, body FROM device_events \
         WHERE seq > ?1 ORDER BY seq LIMIT ?2";
    let rows = sql.execute(
        LIST,
        &[Value::Integer(after_seq), Value::Integer(i64::from(limit))],
    )?;
    rows.rows
        .into_iter()
        .map(|row| {
            let unexpected = |detail: String| StoreError::UnexpectedResult {
                statement: LIST,
                detail,
            };
            match <[Value; 5]>::try_from(row) {
                Ok([Value::Integer(seq), Value::Integer(at), Value::Text(device_id), Value::Text(kind), Value::Text(body)]) => {
                    let body = serde_json::from_str(&body)
                        .map_err(|err| unexpected(format!("event {seq}: body is not JSON: {err}")))?;
                    Ok(DeviceEvent {
                        seq,
                        at: Timestamp::from_unix_millis(at),
                        device_id,
                        kind,
                        body,
                    })
                }
                Ok(other) => Err(unexpected(format!("unexpected row {other:?}"))),
                Err(row) => Err(unexpected(format!("expected 5 columns, got {}", row.len()))),
            }
        })
        .collect()
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{migrate, RusqliteSql};

    #[test]
    fn events_read_back_in_order_after_a_cursor() {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(0)).unwrap();
        let first = record(&mut sql, Timestamp::from_unix_millis(5), "t1", kind::CLOUD_PROPERTY_CHANGE, &json!({"a": 1})).unwrap();
        let second = record(&mut sql, Timestamp::from_unix_millis(6), "t1", kind::COMMAND_EXECUTION, &json!({"b": 2})).unwrap();
        assert!(second > first);
        let all = list(&mut sql, 0, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].body, json!({"b": 2}));
        assert_eq!(all[1].kind, kind::COMMAND_EXECUTION);
        let after = list(&mut sql, first, 10).unwrap();
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![second]);
    }
}
