//! The `c2d_messages` table: each device's cloud-to-device queue. The REST API enqueues
//! ([`enqueue`], with IoT Hub's depth limit), the bridge reads what is waiting ([`pending`])
//! and marks what the device acknowledged ([`mark_delivered`]), the tick drops expired rows in
//! bounded steps ([`prune_expired`]). The rules are [`crate::command::c2d`]'s.
//!
//! A deleted device's rows are not deleted with it; they expire within two days. A device
//! created again under the same id sees none of them: reads only show rows enqueued since the
//! device's row was created.

use serde_json::Value as Json;

use super::{Sql, StoreError, Value};
use crate::command::c2d::{NewMessage, StoredMessage, MAX_QUEUED};
use crate::device::DeviceId;
use crate::time::Timestamp;

/// What [`enqueue`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Enqueued {
    Queued(Box<StoredMessage>),
    NoDevice,
    /// [`MAX_QUEUED`] messages already wait for the device.
    QueueFull,
}

const COLUMNS: &str = "m.seq, m.id, m.device_id, m.payload, m.body, m.content_type, \
     m.content_encoding, m.properties, m.enqueued_at, m.expires_at, m.delivered_at";

/// The device's row must exist and predate the message (see the module doc).
const OF_THIS_DEVICE: &str = "FROM c2d_messages m JOIN devices d ON d.id = m.device_id \
     WHERE m.device_id = ?1 AND m.enqueued_at >= d.created_at";

/// Queues a message for `device_id`; reads then writes, so call it inside a transaction.
pub fn enqueue<S: Sql>(
    sql: &mut S,
    device_id: &DeviceId,
    id: &str,
    message: &NewMessage,
    now: Timestamp,
) -> Result<Enqueued, StoreError> {
    let device = Value::Text(device_id.as_str().to_owned());
    let exists = sql.execute(
        "SELECT 1 FROM devices WHERE id = ?1",
        std::slice::from_ref(&device),
    )?;
    if exists.rows.is_empty() {
        return Ok(Enqueued::NoDevice);
    }
    let count = format!(
        "SELECT count(*) {OF_THIS_DEVICE} AND m.delivered_at IS NULL AND m.expires_at > ?2"
    );
    let waiting = sql
        .execute(&count, &[device.clone(), Value::Integer(now.unix_millis())])?
        .scalar()
        .and_then(Value::as_integer)
        .unwrap_or(0);
    if waiting >= i64::from(MAX_QUEUED) {
        return Ok(Enqueued::QueueFull);
    }
    const INSERT: &str = "INSERT INTO c2d_messages (id, device_id, enqueued_at, expires_at, \
         payload, body, content_type, content_encoding, properties) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING seq";
    let expires_at = now.unix_millis().saturating_add(message.ttl_millis);
    let properties = Json::Array(
        message
            .properties
            .iter()
            .map(|(name, value)| serde_json::json!([name, value]))
            .collect(),
    );
    let rows = sql.execute(
        INSERT,
        &[
            Value::Text(id.to_owned()),
            device,
            Value::Integer(now.unix_millis()),
            Value::Integer(expires_at),
            Value::Text(message.payload.to_string()),
            Value::Text(message.body.clone()),
            Value::Text(message.content_type.clone()),
            Value::Text(message.content_encoding.clone()),
            Value::Text(properties.to_string()),
        ],
    )?;
    let seq =
        rows.scalar()
            .and_then(Value::as_integer)
            .ok_or_else(|| StoreError::UnexpectedResult {
                statement: INSERT,
                detail: format!("no seq returned: {rows:?}"),
            })?;
    Ok(Enqueued::Queued(Box::new(StoredMessage {
        seq,
        id: id.to_owned(),
        device_id: device_id.as_str().to_owned(),
        payload: message.payload.clone(),
        body: message.body.clone(),
        content_type: message.content_type.clone(),
        content_encoding: message.content_encoding.clone(),
        properties: message.properties.clone(),
        enqueued_at: now,
        expires_at: Timestamp::from_unix_millis(expires_at),
        delivered_at: None,
    })))
}

/// What waits for the device: unexpired, unacknowledged, oldest first, at most `limit`.
pub fn pending<S: Sql>(
    sql: &mut S,
    device_id: &DeviceId,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<StoredMessage>, StoreError> {
    let statement = format!(
        "SELECT {COLUMNS} {OF_THIS_DEVICE} AND m.delivered_at IS NULL AND m.expires_at > ?2 \
         ORDER BY m.seq LIMIT ?3"
    );
    let rows = sql.execute(
        &statement,
        &[
            Value::Text(device_id.as_str().to_owned()),
            Value::Integer(now.unix_millis()),
            Value::Integer(i64::from(limit)),
        ],
    )?;
    messages(rows.rows)
}

/// Every message of the device not yet pruned, newest first, before `before_seq`.
pub fn list<S: Sql>(
    sql: &mut S,
    device_id: &DeviceId,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<StoredMessage>, StoreError> {
    let statement =
        format!("SELECT {COLUMNS} {OF_THIS_DEVICE} AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3");
    let rows = sql.execute(
        &statement,
        &[
            Value::Text(device_id.as_str().to_owned()),
            Value::Integer(before_seq.unwrap_or(i64::MAX)),
            Value::Integer(i64::from(limit)),
        ],
    )?;
    messages(rows.rows)
}

/// Records that the device acknowledged message `id`; `false` when the device has no such
/// message. Idempotent: a second acknowledgement keeps the first time.
pub fn mark_delivered<S: Sql>(
    sql: &mut S,
    device_id: &DeviceId,
    id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    const MARK: &str = "UPDATE c2d_messages SET delivered_at = coalesce(delivered_at, ?3) \
         WHERE device_id = ?1 AND id = ?2 RETURNING seq";
    let rows = sql.execute(
        MARK,
        &[
            Value::Text(device_id.as_str().to_owned()),
            Value::Text(id.to_owned()),
            Value::Integer(now.unix_millis()),
        ],
    )?;
    Ok(!rows.rows.is_empty())
}

/// Deletes up to `limit` rows whose time to live has passed (delivered or not); how many.
pub fn prune_expired<S: Sql>(sql: &mut S, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
    const PRUNE: &str = "DELETE FROM c2d_messages WHERE seq IN (SELECT seq FROM c2d_messages \
         WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2) RETURNING seq";
    let rows = sql.execute(
        PRUNE,
        &[
            Value::Integer(now.unix_millis()),
            Value::Integer(i64::from(limit)),
        ],
    )?;
    Ok(rows.rows.len() as u64)
}

fn messages(rows: Vec<Vec<Value>>) -> Result<Vec<StoredMessage>, StoreError> {
    let unexpected = |detail: String| StoreError::UnexpectedResult {
        statement: "SELECT ... FROM c2d_messages",
        detail,
    };
    rows.into_iter()
        .map(|row| {
            let [seq, id, device_id, payload, body, content_type, content_encoding, properties, enqueued_at, expires_at, delivered_at]: [Value; 11] =
                row.try_into().map_err(|row| unexpected(format!("{row:?}")))?;
            let (
                Value::Integer(seq),
                Value::Text(id),
                Value::Text(device_id),
                Value::Text(payload),
                Value::Text(body),
                Value::Text(content_type),
                Value::Text(content_encoding),
                Value::Text(properties),
                Value::Integer(enqueued_at),
                Value::Integer(expires_at),
            ) = (
                seq,
                id,
                device_id,
                payload,
                body,
                content_type,
                content_encoding,
                properties,
                enqueued_at,
                expires_at,
            )
            else {
                return Err(unexpected("a column has the wrong type".to_owned()));
            };
            let delivered_at = match delivered_at {
                Value::Null => None,
                Value::Integer(at) => Some(Timestamp::from_unix_millis(at)),
                other => return Err(unexpected(format!("delivered_at is {other:?}"))),
            };
            let payload = serde_json::from_str(&payload)
                .map_err(|err| unexpected(format!("payload is not JSON: {err}")))?;
            let properties: Vec<(String, String)> = serde_json::from_str(&properties)
                .map_err(|err| unexpected(format!("properties: {err}")))?;
            Ok(StoredMessage {
                seq,
                id,
                device_id,
                payload,
                body,
                content_type,
                content_encoding,
                properties,
                enqueued_at: Timestamp::from_unix_millis(enqueued_at),
                expires_at: Timestamp::from_unix_millis(expires_at),
                delivered_at,
            })
        })
        .collect()
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::command::c2d::{prepare, MessageState, SendBody};
    use crate::store::{migrate, RusqliteSql};

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    fn database() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, at(0)).unwrap();
        add_device(&mut sql, "d1", 0);
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

    fn message(ttl: &str) -> NewMessage {
        let body: SendBody = serde_json::from_value(
            json!({"payload": {"n": 1}, "properties": {"a": "b c"}, "ttl": ttl}),
        )
        .unwrap();
        prepare(body).unwrap()
    }

    fn d1() -> DeviceId {
        DeviceId::parse("d1").unwrap()
    }

    fn queued(enqueued: Enqueued) -> StoredMessage {
        match enqueued {
            Enqueued::Queued(message) => *message,
            other => panic!("expected the message queued, got {other:?}"),
        }
    }

    #[test]
    fn messages_wait_oldest_first_until_the_device_acknowledges_them() {
        let mut sql = database();
        let first = queued(enqueue(&mut sql, &d1(), "m1", &message("PT1H"), at(10)).unwrap());
        assert_eq!(first.expires_at, at(10 + 3_600_000));
        queued(enqueue(&mut sql, &d1(), "m2", &message("PT1H"), at(20)).unwrap());
        let waiting = pending(&mut sql, &d1(), at(30), 50).unwrap();
        assert_eq!(
            waiting.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m1", "m2"]
        );
        assert_eq!(waiting[0], first, "reads back as stored");
        assert_eq!(
            waiting[0].properties,
            vec![("a".to_owned(), "b c".to_owned())]
        );

        assert!(mark_delivered(&mut sql, &d1(), "m1", at(40)).unwrap());
        assert!(
            mark_delivered(&mut sql, &d1(), "m1", at(50)).unwrap(),
            "idempotent"
        );
        assert!(!mark_delivered(&mut sql, &d1(), "nope", at(50)).unwrap());
        let other = DeviceId::parse("d2").unwrap();
        assert!(
            !mark_delivered(&mut sql, &other, "m2", at(50)).unwrap(),
            "another device's message"
        );

        let waiting = pending(&mut sql, &d1(), at(60), 50).unwrap();
        assert_eq!(
            waiting.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m2"]
        );
        let all = list(&mut sql, &d1(), None, 10).unwrap();
        assert_eq!(
            all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m2", "m1"],
            "newest first"
        );
        assert_eq!(
            all[1].delivered_at,
            Some(at(40)),
            "the first acknowledgement's time"
        );
        assert_eq!(all[1].state(at(60)), MessageState::Delivered);
        let older = list(&mut sql, &d1(), Some(all[0].seq), 10).unwrap();
        assert_eq!(older.len(), 1);
    }

    #[test]
    fn expired_messages_are_not_delivered_and_the_tick_prunes_them_in_steps() {
        let mut sql = database();
        for (id, ttl) in [
            ("short1", "PT1S"),
            ("short2", "PT1S"),
            ("short3", "PT1S"),
            ("long", "PT1H"),
        ] {
            queued(enqueue(&mut sql, &d1(), id, &message(ttl), at(0)).unwrap());
        }
        let waiting = pending(&mut sql, &d1(), at(1000), 50).unwrap();
        assert_eq!(
            waiting.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["long"]
        );
        assert_eq!(prune_expired(&mut sql, at(1000), 2).unwrap(), 2);
        assert_eq!(prune_expired(&mut sql, at(1000), 2).unwrap(), 1);
        assert_eq!(prune_expired(&mut sql, at(1000), 2).unwrap(), 0);
        assert_eq!(list(&mut sql, &d1(), None, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_device_holds_at_most_50_waiting_messages() {
        let mut sql = database();
        for n in 0..MAX_QUEUED {
            queued(enqueue(&mut sql, &d1(), &format!("m{n}"), &message("PT1H"), at(0)).unwrap());
        }
        assert_eq!(
            enqueue(&mut sql, &d1(), "one-more", &message("PT1H"), at(1)).unwrap(),
            Enqueued::QueueFull
        );
        // A delivered message frees its place; so does an expired one.
        assert!(mark_delivered(&mut sql, &d1(), "m0", at(2)).unwrap());
        queued(enqueue(&mut sql, &d1(), "after-delivery", &message("PT1S"), at(3)).unwrap());
        assert_eq!(
            enqueue(&mut sql, &d1(), "full-again", &message("PT1H"), at(4)).unwrap(),
            Enqueued::QueueFull
        );
        queued(enqueue(&mut sql, &d1(), "after-expiry", &message("PT1H"), at(1003)).unwrap());
        assert_eq!(pending(&mut sql, &d1(), at(1004), 50).unwrap().len(), 50);
    }

    #[test]
    fn unknown_and_recreated_devices_see_no_old_messages() {
        let mut sql = database();
        let nobody = DeviceId::parse("nobody").unwrap();
        assert_eq!(
            enqueue(&mut sql, &nobody, "m", &message("PT1H"), at(0)).unwrap(),
            Enqueued::NoDevice
        );
        queued(enqueue(&mut sql, &d1(), "old", &message("PT1H"), at(10)).unwrap());
        sql.execute("DELETE FROM devices WHERE id = 'd1'", &[])
            .unwrap();
        add_device(&mut sql, "d1", 100);
        assert!(pending(&mut sql, &d1(), at(200), 50).unwrap().is_empty());
        assert!(list(&mut sql, &d1(), None, 50).unwrap().is_empty());
    }
}
