//! Hourly rollups of numeric telemetry (`telemetry_rollups`, migration 10), so that aggregates
//! over long ranges read one row per device, hour, component and field instead of every
//! message. `telemetry_query` uses them for AVG/SUM/MIN/MAX/COUNT queries and reads the rest
//! (the partial hours at the edges of a range, hours not rolled up yet) from the raw rows.
//!
//! **The rule that keeps answers exact.** For each device, `telemetry_rollup_state` holds
//! `[from_hour, through)`: over those hours, the device's rollup rows summarise exactly its rows
//! in `telemetry` (compacted rows; the inbox is never rolled up, and queries always read the
//! inbox raw). Three things could break that equality, and each is handled:
//! - *Rows still on their way.* An hour is rolled up only once it ended [`SETTLE_MS`] ago and
//!   no inbox row is older than its end, so its rows are all compacted.
//! - *Late rows* (enqueued in an hour already rolled up, arriving afterwards): every row passes
//!   through the inbox, and the tick looks at each inbox row once ([`inspect_inbox`], a cursor
//!   on `seq`) before it compacts them; a late row moves its device's `through` back to the
//!   row's hour, so queries read that device raw from there and [`roll_up`] redoes the hours.
//!   The tick compacts only rows it has inspected, and the ingest path's compaction steps
//!   (when the inbox passes a step between two ticks) inspect their rows in the same
//!   transaction ([`inspect_and_compact`]). Should rows ever leave the inbox uninspected, the
//!   next inspection notices the gap in `seq` and sends every device back to its `from_hour`
//!   (rollups are redone, queries read raw rows meanwhile).
//! - *Retention* deletes a device's rollup rows of hours that lost rows and raises its
//!   `from_hour` past them (`telemetry_query::prune_older_than`).
//!
//! Non-numeric values are counted (`n`, as `COUNT` counts messages carrying a field) but not
//! summed; booleans are numbers 1/0, as `json_extract` reads them in the raw path.

use super::{telemetry, Sql, StoreError, Value};
use crate::time::Timestamp;

/// One hour in Unix milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// How long after its end an hour waits before it is rolled up: the bridge stamps messages on
/// arrival and retries a batch for 30 s, so rows older than this are late and rare.
pub const SETTLE_MS: i64 = 5 * 60_000;

/// The last inbox `seq` inspected for late rows, in `gyre_meta`.
const INBOX_CURSOR: &str = "telemetry.rollup_inbox_seq";
/// The last device [`roll_up`] visited, in `gyre_meta`.
const DEVICE_CURSOR: &str = "telemetry.rollup_device_cursor";
/// The target hour of the last sweep that found nothing to do, in `gyre_meta`.
const CAUGHT_UP_TARGET: &str = "telemetry.rollup_caught_up_target";

pub fn floor_hour(millis: i64) -> i64 {
    millis.div_euclid(HOUR_MS) * HOUR_MS
}

pub fn ceil_hour(millis: i64) -> i64 {
    let floor = floor_hour(millis);
    if floor == millis {
        floor
    } else {
        floor.saturating_add(HOUR_MS)
    }
}

/// What one inspection found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspected {
    /// Inbox rows looked at.
    pub rows: u64,
    /// Devices sent back to redo hours because of a late row.
    pub late_devices: u64,
    /// Rows left the inbox uninspected, so every device's rollups are being redone.
    pub redo_all: bool,
    /// How many of the oldest inbox rows are inspected: what the tick may compact.
    pub compactable: u64,
}

/// Looks at up to `max_rows` inbox rows not inspected yet; a row enqueued before its device's
/// `through` moves `through` back to the row's hour. One short transaction.
pub fn inspect_inbox<S: Sql>(sql: &mut S, max_rows: u32) -> Result<Inspected, StoreError> {
    sql.transaction(|tx| inspect_step(tx, max_rows))
}

/// Looks at up to `inspect_rows` inbox rows as [`inspect_inbox`] does, then compacts the
/// oldest inspected rows, at most `max_compact` ([`telemetry::compact`]), in one transaction:
/// only inspected rows leave the inbox, and the write lock is taken, and the WAL synced, once
/// for both. Returns what the inspection found and how many rows moved.
pub fn inspect_and_compact<S: Sql>(
    sql: &mut S,
    inspect_rows: u32,
    max_compact: u32,
) -> Result<(Inspected, u64), StoreError> {
    sql.transaction(|tx| {
        let inspected = inspect_step(tx, inspect_rows)?;
        let step = u32::try_from(inspected.compactable)
            .unwrap_or(u32::MAX)
            .min(max_compact);
        let compacted = telemetry::compact_in(tx, step)?;
        Ok((inspected, compacted))
    })
}

fn inspect_step<S: Sql>(sql: &mut S, max_rows: u32) -> Result<Inspected, StoreError> {
    let mut inspected = Inspected::default();
    // One subquery per bound, so each is read from an end of the b-tree (see
    // `telemetry::inbox_len`), not by scanning the inbox.
    let bounds = sql.execute(
        "SELECT (SELECT min(seq) FROM telemetry_inbox), (SELECT max(seq) FROM telemetry_inbox), \
         (SELECT seq FROM sqlite_sequence WHERE name = 'telemetry_inbox')",
        &[],
    )?;
    let row = bounds.rows.first().cloned().unwrap_or_default();
    let min_seq = row.first().and_then(Value::as_integer);
    let max_seq = row.get(1).and_then(Value::as_integer);
    let assigned = row.get(2).and_then(Value::as_integer).unwrap_or(0);
    let stored = meta_integer(sql, INBOX_CURSOR)?;
    // Every seq up to `assigned` was handed out; those not in the inbox were compacted (or
    // pruned by retention). Rows between the cursor and the inbox's oldest left unseen.
    let first_uninspected = stored.map_or(i64::MIN, |cursor| cursor + 1);
    let oldest_present = min_seq.unwrap_or(assigned + 1);
    let mut cursor = match stored {
        None => oldest_present - 1,
        Some(cursor) if first_uninspected < oldest_present && cursor < assigned => {
            sql.execute("UPDATE telemetry_rollup_state SET through = from_hour", &[])?;
            inspected.redo_all = true;
            oldest_present - 1
        }
        Some(cursor) => cursor,
    };
    if let Some(max_seq) = max_seq {
        let until = max_seq.min(cursor.saturating_add(i64::from(max_rows)));
        if until > cursor {
            let late = sql.execute(
                "SELECT i.device_id, min(i.enqueued_at) FROM telemetry_inbox i \
                 JOIN telemetry_rollup_state s ON s.device_id = i.device_id \
                 WHERE i.seq > ?1 AND i.seq <= ?2 \
                 AND i.enqueued_at < (SELECT max(through) FROM telemetry_rollup_state) \
                 AND i.enqueued_at < s.through GROUP BY i.device_id",
                &[Value::Integer(cursor), Value::Integer(until)],
            )?;
            for row in &late.rows {
                let (Some(device), Some(at)) = (row[0].as_text(), row[1].as_integer()) else {
                    continue;
                };
                sql.execute(
                    "UPDATE telemetry_rollup_state SET through = max(from_hour, min(through, ?2)) \
                     WHERE device_id = ?1",
                    &[
                        Value::Text(device.to_owned()),
                        Value::Integer(floor_hour(at)),
                    ],
                )?;
                inspected.late_devices += 1;
            }
            inspected.rows = (until - cursor) as u64;
            cursor = until;
        }
    }
    if let Some(min_seq) = min_seq {
        inspected.compactable = u64::try_from(cursor - min_seq + 1).unwrap_or(0);
    }
    set_meta(sql, INBOX_CURSOR, &cursor.to_string())?;
    Ok(inspected)
}

/// What one rollup step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rolled {
    /// Raw rows read.
    pub rows: u64,
    /// Device-hours rolled up (including empty ones skipped over).
    pub hours: u64,
    pub devices_visited: u64,
    /// Every device is rolled up to the latest hour that may be (nothing left to do).
    pub caught_up: bool,
}

/// Rolls up closed hours: at most about `max_rows` raw rows (at least one hour of one device),
/// visiting at most `max_devices` devices, in one transaction. Devices are taken in turn from a
/// cursor in `gyre_meta`, wrapping around, as retention does.
pub fn roll_up<S: Sql>(
    sql: &mut S,
    now: Timestamp,
    max_rows: u32,
    max_devices: u32,
) -> Result<Rolled, StoreError> {
    // Read before taking the write lock (it scans the inbox): a row that arrives meanwhile
    // with an older time is a late row, which the next inspection catches.
    let inbox_oldest = sql
        .execute("SELECT min(enqueued_at) FROM telemetry_inbox", &[])?
        .scalar()
        .and_then(Value::as_integer);
    let mut target = floor_hour(now.unix_millis().saturating_sub(SETTLE_MS));
    if let Some(oldest) = inbox_oldest {
        target = target.min(floor_hour(oldest));
    }
    // Most ticks have nothing to do: the last sweep reached this target and no device was
    // sent back since. Checked without the write lock. (A device that sent nothing before is
    // read raw until the next hour's sweep rolls it up.)
    if meta_integer(sql, CAUGHT_UP_TARGET)? == Some(target) {
        let behind = sql.execute(
            "SELECT 1 FROM telemetry_rollup_state WHERE through < ?1 LIMIT 1",
            &[Value::Integer(target)],
        )?;
        if behind.rows.is_empty() {
            return Ok(Rolled {
                caught_up: true,
                ..Rolled::default()
            });
        }
    }
    sql.transaction(|tx| roll_up_step(tx, target, max_rows, max_devices))
}

fn roll_up_step<S: Sql>(
    sql: &mut S,
    target: i64,
    max_rows: u32,
    max_devices: u32,
) -> Result<Rolled, StoreError> {
    let mut rolled = Rolled::default();
    let start = meta_text(sql, DEVICE_CURSOR)?.unwrap_or_default();
    let mut cursor = start.clone();
    let mut wrapped = false;
    let mut budget = i64::from(max_rows);
    let mut swept = false;
    while budget > 0 && rolled.devices_visited < u64::from(max_devices) {
        let next = sql.execute(
            "SELECT t.device_id, t.enqueued_at, s.from_hour, s.through FROM telemetry t \
             LEFT JOIN telemetry_rollup_state s ON s.device_id = t.device_id \
             WHERE t.device_id > ?1 ORDER BY t.device_id, t.enqueued_at LIMIT 1",
            &[Value::Text(cursor.clone())],
        )?;
        let Some(row) = next.rows.first() else {
            cursor.clear();
            if wrapped || start.is_empty() {
                swept = true;
                break;
            }
            wrapped = true;
            continue;
        };
        let device = row[0].as_text().unwrap_or_default().to_owned();
        if wrapped && device > start {
            swept = true;
            break;
        }
        rolled.devices_visited += 1;
        let oldest = floor_hour(row[1].as_integer().unwrap_or(0));
        let from_hour = row[2].as_integer().unwrap_or(oldest);
        let through = row[3].as_integer().unwrap_or(oldest);
        if through < target {
            let used = roll_device(
                sql,
                &device,
                from_hour,
                through,
                target,
                budget,
                &mut rolled,
            )?;
            budget -= used;
            if budget <= 0 {
                // The device may have hours left: start there next time.
                break;
            }
        }
        cursor = device;
    }
    set_meta(sql, DEVICE_CURSOR, &cursor)?;
    rolled.caught_up = swept && rolled.hours == 0;
    if rolled.caught_up {
        set_meta(sql, CAUGHT_UP_TARGET, &target.to_string())?;
    }
    Ok(rolled)
}

/// Rolls up the device's hours from `through` towards `target`, reading about `budget` rows
/// (at least one hour); returns the rows read.
fn roll_device<S: Sql>(
    sql: &mut S,
    device: &str,
    from_hour: i64,
    through: i64,
    target: i64,
    budget: i64,
    rolled: &mut Rolled,
) -> Result<i64, StoreError> {
    let id = Value::Text(device.to_owned());
    let over = sql.execute(
        "SELECT enqueued_at FROM telemetry WHERE device_id = ?1 AND enqueued_at >= ?2 \
         AND enqueued_at < ?3 ORDER BY enqueued_at LIMIT 1 OFFSET ?4",
        &[
            id.clone(),
            Value::Integer(through),
            Value::Integer(target),
            Value::Integer(budget),
        ],
    )?;
    let end = match over.scalar().and_then(Value::as_integer) {
        Some(at) => floor_hour(at).max(through + HOUR_MS).min(target),
        None => target,
    };
    sql.execute(
        "DELETE FROM telemetry_rollups WHERE device_id = ?1 AND hour >= ?2 AND hour < ?3",
        &[id.clone(), Value::Integer(through), Value::Integer(end)],
    )?;
    const NUMBER: &str = "CASE WHEN typeof(j.value) IN ('integer', 'real') THEN j.value END";
    sql.execute(
        &format!(
            "INSERT INTO telemetry_rollups (device_id, hour, component, field, n, n_num, sum, \
             lo, hi) \
             SELECT ?1, t.enqueued_at / {HOUR_MS} * {HOUR_MS}, COALESCE(t.component, ''), j.key, \
             count(j.value), count({NUMBER}), sum({NUMBER}), min({NUMBER}), max({NUMBER}) \
             FROM telemetry t, json_each(t.fields) j \
             WHERE t.device_id = ?1 AND t.enqueued_at >= ?2 AND t.enqueued_at < ?3 \
             GROUP BY 2, 3, 4"
        ),
        &[id.clone(), Value::Integer(through), Value::Integer(end)],
    )?;
    let read = sql
        .execute(
            "SELECT count(*) FROM telemetry WHERE device_id = ?1 AND enqueued_at >= ?2 \
             AND enqueued_at < ?3",
            &[id.clone(), Value::Integer(through), Value::Integer(end)],
        )?
        .scalar()
        .and_then(Value::as_integer)
        .unwrap_or(0);
    sql.execute(
        "INSERT INTO telemetry_rollup_state (device_id, from_hour, through) VALUES (?1, ?2, ?3) \
         ON CONFLICT (device_id) DO UPDATE SET through = excluded.through",
        &[id, Value::Integer(from_hour), Value::Integer(end)],
    )?;
    rolled.rows += read as u64;
    rolled.hours += ((end - through) / HOUR_MS) as u64;
    Ok(read.max(1))
}

/// Retention removed the device's rows enqueued before `bound`: its hours from `bound`'s hour
/// down are no longer summarised by their rollups, so those go and `from_hour` moves up.
pub(crate) fn forget_before<S: Sql>(
    sql: &mut S,
    device: &str,
    bound: i64,
) -> Result<(), StoreError> {
    let id = Value::Text(device.to_owned());
    sql.execute(
        "DELETE FROM telemetry_rollups WHERE device_id = ?1 AND hour < ?2",
        &[id.clone(), Value::Integer(bound)],
    )?;
    let from = ceil_hour(bound);
    sql.execute(
        "UPDATE telemetry_rollup_state SET from_hour = max(from_hour, ?2), \
         through = max(through, ?2) WHERE device_id = ?1",
        &[id, Value::Integer(from)],
    )?;
    Ok(())
}

fn meta_text<S: Sql>(sql: &mut S, key: &str) -> Result<Option<String>, StoreError> {
    let rows = sql.execute(
        "SELECT value FROM gyre_meta WHERE key = ?1",
        &[Value::Text(key.to_owned())],
    )?;
    Ok(rows.scalar().and_then(Value::as_text).map(str::to_owned))
}

fn meta_integer<S: Sql>(sql: &mut S, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(meta_text(sql, key)?.and_then(|text| text.parse().ok()))
}

fn set_meta<S: Sql>(sql: &mut S, key: &str, value: &str) -> Result<(), StoreError> {
    sql.execute(
        "INSERT INTO gyre_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[Value::Text(key.to_owned()), Value::Text(value.to_owned())],
    )?;
    Ok(())
}
