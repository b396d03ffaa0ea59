//! The `command_history` table: one row per command execution, answered or failed, written
//! after the call returned (never while a transaction waits on a device), and listed newest
//! first per command. The rules and wire shapes are [`crate::command`]'s.
//!
//! A deleted device's history stays (rows are small and the export issue may want them), but a
//! device created again under the same id does not inherit it: [`list`] shows only rows
//! executed since the device's row was created.

use serde_json::Value as Json;

use super::{Sql, StoreError, Value};
use crate::command::{CommandRecord, CommandTarget, Outcome};
use crate::device::DeviceId;
use crate::time::Timestamp;

/// Appends one execution; its `seq` (the history's paging cursor).
pub fn insert<S: Sql>(sql: &mut S, record: &CommandRecord) -> Result<i64, StoreError> {
    const INSERT: &str = "INSERT INTO command_history (id, device_id, component, name, \
         executed_at, connection_timeout, response_timeout, request, response, response_code, \
         outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING seq";
    let json_or_null = |value: &Json| {
        if value.is_null() {
            Value::Null
        } else {
            Value::Text(value.to_string())
        }
    };
    let response = match &record.outcome {
        Outcome::Responded { payload, .. } => json_or_null(payload),
        _ => Value::Null,
    };
    let rows = sql.execute(
        INSERT,
        &[
            Value::Text(record.id.clone()),
            Value::Text(record.device_id.clone()),
            Value::Text(record.target.component.clone().unwrap_or_default()),
            Value::Text(record.target.name.clone()),
            Value::Integer(record.executed_at.unix_millis()),
            Value::Integer(i64::from(record.connection_timeout)),
            Value::Integer(i64::from(record.response_timeout)),
            json_or_null(&record.request),
            response,
            Value::Integer(record.outcome.response_code()),
            Value::Text(record.outcome.as_str().to_owned()),
        ],
    )?;
    rows.scalar()
        .and_then(Value::as_integer)
        .ok_or_else(|| StoreError::UnexpectedResult {
            statement: INSERT,
            detail: format!("no seq returned: {rows:?}"),
        })
}

/// Up to `limit` executions of `target` on `device_id`, newest first, before `before_seq`
/// (`None`: from the newest), each with its `seq`.
pub fn list<S: Sql>(
    sql: &mut S,
    device_id: &DeviceId,
    target: &CommandTarget,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<(i64, CommandRecord)>, StoreError> {
    const LIST: &str = "SELECT h.seq, h.id, h.executed_at, h.connection_timeout, \
         h.response_timeout, h.request, h.response, h.response_code, h.outcome \
         FROM command_history h JOIN devices d ON d.id = h.device_id \
         WHERE h.device_id = ?1 AND h.component = ?2 AND h.name = ?3 AND h.seq < ?4 \
         AND h.executed_at >= d.created_at ORDER BY h.seq DESC LIMIT ?5";
    let rows = sql.execute(
        LIST,
        &[
            Value::Text(device_id.as_str().to_owned()),
            Value::Text(target.component.clone().unwrap_or_default()),
            Value::Text(target.name.clone()),
            Value::Integer(before_seq.unwrap_or(i64::MAX)),
            Value::Integer(i64::from(limit)),
        ],
    )?;
    let unexpected = |detail: String| StoreError::UnexpectedResult {
        statement: LIST,
        detail,
    };
    let json = |value: Value, column: &str| -> Result<Json, StoreError> {
        match value {
            Value::Null => Ok(Json::Null),
            Value::Text(text) => serde_json::from_str(&text)
                .map_err(|err| unexpected(format!("{column} is not JSON: {err}"))),
            other => Err(unexpected(format!("{column} is {other:?}"))),
        }
    };
    rows.rows
        .into_iter()
        .map(|row| {
            let [seq, id, executed_at, connection_timeout, response_timeout, request, response, response_code, outcome]: [Value; 9] =
                row.try_into().map_err(|row| unexpected(format!("{row:?}")))?;
            let (
                Value::Integer(seq),
                Value::Text(id),
                Value::Integer(executed_at),
                Value::Integer(connection_timeout),
                Value::Integer(response_timeout),
                Value::Integer(response_code),
                Value::Text(outcome),
            ) = (seq, id, executed_at, connection_timeout, response_timeout, response_code, outcome)
            else {
                return Err(unexpected("a column has the wrong type".to_owned()));
            };
            let outcome = match outcome.as_str() {
                "responded" => Outcome::Responded {
                    status: response_code,
                    payload: json(response, "response")?,
                },
                "deviceNotOnline" => Outcome::NotConnected,
                "timeout" => Outcome::TimedOut,
                "unavailable" => Outcome::Unavailable,
                "badGateway" => Outcome::BadGateway,
                other => return Err(unexpected(format!("unknown outcome {other:?}"))),
            };
            let timeout = |value: i64| {
                u32::try_from(value).map_err(|_| unexpected(format!("timeout {value}")))
            };
            Ok((
                seq,
                CommandRecord {
                    id,
                    device_id: device_id.as_str().to_owned(),
                    target: target.clone(),
                    executed_at: Timestamp::from_unix_millis(executed_at),
                    connection_timeout: timeout(connection_timeout)?,
                    response_timeout: timeout(response_timeout)?,
                    request: json(request, "request")?,
                    outcome,
                },
            ))
        })
        .collect()
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{migrate, RusqliteSql};

    fn database_with_device(id: &str, created_at: i64) -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(0)).unwrap();
        add_device(&mut sql, id, created_at);
        sql
    }

    fn add_device(sql: &mut RusqliteSql, id: &str, created_at: i64) {
        sql.execute(
            "INSERT INTO devices (id, etag, display_name, enabled, provisioned, simulated, \
             created_at, updated_at) VALUES (?1, '\"e\"', ?1, 1, 0, 0, ?2, ?2)",
            &[Value::Text(id.to_owned()), Value::Integer(created_at)],
        )
        .unwrap();
    }

    fn record(id: &str, target: &CommandTarget, at: i64, outcome: Outcome) -> CommandRecord {
        CommandRecord {
            id: id.to_owned(),
            device_id: "d1".to_owned(),
            target: target.clone(),
            executed_at: Timestamp::from_unix_millis(at),
            connection_timeout: 0,
            response_timeout: 30,
            request: json!("2026-01-01T00:00:00Z"),
            outcome,
        }
    }

    #[test]
    fn a_commands_history_lists_newest_first_in_pages_and_only_that_command() {
        let mut sql = database_with_device("d1", 0);
        let report = CommandTarget {
            component: Some("thermostat1".into()),
            name: "getMaxMinReport".into(),
        };
        let reboot = CommandTarget {
            component: None,
            name: "reboot".into(),
        };
        let first = record(
            "c1",
            &report,
            10,
            Outcome::Responded {
                status: 200,
                payload: json!({"maxTemp": 30.5}),
            },
        );
        let second = record("c2", &report, 20, Outcome::TimedOut);
        let other = record("c3", &reboot, 30, Outcome::NotConnected);
        for record in [&first, &second, &other] {
            insert(&mut sql, record).unwrap();
        }
        let device = DeviceId::parse("d1").unwrap();
        let page = list(&mut sql, &device, &report, None, 1).unwrap();
        assert_eq!(
            page.iter().map(|(_, r)| r.id.as_str()).collect::<Vec<_>>(),
            ["c2"]
        );
        assert_eq!(page[0].1, second);
        let next = list(&mut sql, &device, &report, Some(page[0].0), 10).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1, first, "the answer reads back as stored");
        let reboots = list(&mut sql, &device, &reboot, None, 10).unwrap();
        assert_eq!(reboots.len(), 1);
        assert_eq!(reboots[0].1.outcome, Outcome::NotConnected);
    }

    #[test]
    fn a_device_created_again_does_not_inherit_the_old_history() {
        let mut sql = database_with_device("d1", 0);
        let reboot = CommandTarget {
            component: None,
            name: "reboot".into(),
        };
        insert(&mut sql, &record("old", &reboot, 10, Outcome::TimedOut)).unwrap();
        sql.execute("DELETE FROM devices WHERE id = 'd1'", &[])
            .unwrap();
        add_device(&mut sql, "d1", 100);
        insert(&mut sql, &record("new", &reboot, 200, Outcome::TimedOut)).unwrap();
        let device = DeviceId::parse("d1").unwrap();
        let history = list(&mut sql, &device, &reboot, None, 10).unwrap();
        assert_eq!(
            history
                .iter()
                .map(|(_, r)| r.id.as_str())
                .collect::<Vec<_>>(),
            ["new"]
        );
    }
}
