//! The `enrollment_groups` table: insert, get, update, delete and list symmetric-key
//! enrollment groups, and the group whose keys a device without individual keys derives from.
//!
//! Booleans are stored as 0/1, times as Unix milliseconds, `type` as `iot` (the only type
//! Gyre supports; a row with another type is reported as unexpected, never guessed at).

use super::{Rows, Sql, StoreError, Value};
use crate::enrollment::{
    EnrollmentGroup, EnrollmentGroupId, SymmetricKey, SymmetricKeys, GROUP_TYPE_IOT,
};
use crate::time::Timestamp;

pub use super::Inserted;

/// Stores a new group unless its id is taken.
pub fn insert<S: Sql>(
    sql: &mut S,
    group: &EnrollmentGroup,
    now: Timestamp,
) -> Result<Inserted, StoreError> {
    const INSERT: &str = "INSERT INTO enrollment_groups (id, etag, display_name, enabled, \
         type, primary_key, secondary_key, auto_approve, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) ON CONFLICT (id) DO NOTHING RETURNING id";
    let mut params = group_params(group);
    params.push(Value::Integer(now.unix_millis()));
    let rows = sql.execute(INSERT, &params)?;
    Ok(Inserted::from_returning(&rows))
}

/// The group stored under `id`, if any.
pub fn get<S: Sql>(
    sql: &mut S,
    id: &EnrollmentGroupId,
) -> Result<Option<EnrollmentGroup>, StoreError> {
    const GET: &str = "SELECT id, etag, display_name, enabled, type, primary_key, \
         secondary_key, auto_approve FROM enrollment_groups WHERE id = ?1";
    let rows = sql.execute(GET, &[Value::Text(id.as_str().to_owned())])?;
    Ok(groups_from_rows(GET, rows)?.pop())
}

/// Replaces the group `group.id` (etag included). `false` when there is no such group.
pub fn update<S: Sql>(
    sql: &mut S,
    group: &EnrollmentGroup,
    now: Timestamp,
) -> Result<bool, StoreError> {
    const UPDATE: &str = "UPDATE enrollment_groups SET etag = ?2, display_name = ?3, \
         enabled = ?4, type = ?5, primary_key = ?6, secondary_key = ?7, auto_approve = ?8, \
         updated_at = ?9 WHERE id = ?1 RETURNING id";
    let mut params = group_params(group);
    params.push(Value::Integer(now.unix_millis()));
    let rows = sql.execute(UPDATE, &params)?;
    Ok(!rows.rows.is_empty())
}

/// Deletes the group `id`. `false` when there was no such group.
pub fn delete<S: Sql>(sql: &mut S, id: &EnrollmentGroupId) -> Result<bool, StoreError> {
    const DELETE: &str = "DELETE FROM enrollment_groups WHERE id = ?1 RETURNING id";
    let rows = sql.execute(DELETE, &[Value::Text(id.as_str().to_owned())])?;
    Ok(!rows.rows.is_empty())
}

/// Up to `limit` groups in id order, starting after `after` (keyset paging).
pub fn list<S: Sql>(
    sql: &mut S,
    after: Option<&EnrollmentGroupId>,
    limit: u32,
) -> Result<Vec<EnrollmentGroup>, StoreError> {
    const LIST: &str = "SELECT id, etag, display_name, enabled, type, primary_key, \
         secondary_key, auto_approve FROM enrollment_groups WHERE id > ?1 ORDER BY id LIMIT ?2";
    // Every id is non-empty, so "after the empty string" is the first page.
    let after = after.map_or("", EnrollmentGroupId::as_str);
    let rows = sql.execute(
        LIST,
        &[
            Value::Text(after.to_owned()),
            Value::Integer(i64::from(limit)),
        ],
    )?;
    groups_from_rows(LIST, rows)
}

/// Every enabled group, in id order: the enrollments an unknown registration id may use.
pub fn enabled<S: Sql>(sql: &mut S) -> Result<Vec<EnrollmentGroup>, StoreError> {
    const ENABLED: &str = "SELECT id, etag, display_name, enabled, type, primary_key, \
         secondary_key, auto_approve FROM enrollment_groups WHERE enabled = 1 ORDER BY id";
    let rows = sql.execute(ENABLED, &[])?;
    groups_from_rows(ENABLED, rows)
}

/// The group a device without individual keys provisions through, for its credentials: the
/// first enabled group in id order (IoT Central's default group plays this part there).
pub fn default_group<S: Sql>(sql: &mut S) -> Result<Option<EnrollmentGroup>, StoreError> {
    const DEFAULT: &str = "SELECT id, etag, display_name, enabled, type, primary_key, \
         secondary_key, auto_approve FROM enrollment_groups WHERE enabled = 1 ORDER BY id LIMIT 1";
    let rows = sql.execute(DEFAULT, &[])?;
    Ok(groups_from_rows(DEFAULT, rows)?.pop())
}

fn group_params(group: &EnrollmentGroup) -> Vec<Value> {
    vec![
        Value::Text(group.id.as_str().to_owned()),
        Value::Text(group.etag.clone()),
        Value::Text(group.display_name.clone()),
        Value::Integer(i64::from(group.enabled)),
        Value::Text(GROUP_TYPE_IOT.to_owned()),
        Value::Text(group.keys.primary.as_str().to_owned()),
        Value::Text(group.keys.secondary.as_str().to_owned()),
        Value::Integer(i64::from(group.auto_approve)),
    ]
}

fn groups_from_rows(
    statement: &'static str,
    rows: Rows,
) -> Result<Vec<EnrollmentGroup>, StoreError> {
    rows.rows
        .into_iter()
        .map(|row| {
            group_from_row(row).map_err(|detail| StoreError::UnexpectedResult { statement, detail })
        })
        .collect()
}

/// Maps `id, etag, display_name, enabled, type, primary_key, secondary_key, auto_approve`.
fn group_from_row(row: Vec<Value>) -> Result<EnrollmentGroup, String> {
    let [id, etag, display_name, enabled, group_type, primary_key, secondary_key, auto_approve]: [Value; 8] =
        row.try_into()
            .map_err(|row: Vec<Value>| format!("expected 8 columns, got {}", row.len()))?;
    let id = match &id {
        Value::Text(text) => {
            EnrollmentGroupId::parse(text).map_err(|error| format!("id `{text}`: {error}"))?
        }
        other => return Err(format!("id: not text: {other:?}")),
    };
    let text = |value: Value, column: &str| match value {
        Value::Text(text) => Ok(text),
        other => Err(format!(
            "{column} of enrollment group `{id}`: not text: {other:?}"
        )),
    };
    let flag = |value: Value, column: &str| match value.as_integer() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(format!(
            "{column} of enrollment group `{id}`: not 0 or 1: {value:?}"
        )),
    };
    let key = |value: Value, column: &str| {
        SymmetricKey::parse(&text(value, column)?)
            .map_err(|error| format!("{column} of enrollment group `{id}`: {error}"))
    };
    let group_type = text(group_type, "type")?;
    if group_type != GROUP_TYPE_IOT {
        return Err(format!(
            "type of enrollment group `{id}`: unsupported `{group_type}`"
        ));
    }
    Ok(EnrollmentGroup {
        etag: text(etag, "etag")?,
        display_name: text(display_name, "display_name")?,
        enabled: flag(enabled, "enabled")?,
        keys: SymmetricKeys {
            primary: key(primary_key, "primary_key")?,
            secondary: key(secondary_key, "secondary_key")?,
        },
        auto_approve: flag(auto_approve, "auto_approve")?,
        id,
    })
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};

    const NOW: i64 = 1_764_161_225_120;

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(NOW)
    }

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, now()).unwrap();
        sql
    }

    fn group(id: &str, enabled: bool) -> EnrollmentGroup {
        EnrollmentGroup {
            id: EnrollmentGroupId::parse(id).unwrap(),
            etag: format!("\"{id}\""),
            display_name: format!("Group {id}"),
            enabled,
            keys: SymmetricKeys::from_random([id.len() as u8; 64]),
            auto_approve: !enabled,
        }
    }

    fn ids(groups: &[EnrollmentGroup]) -> Vec<&str> {
        groups.iter().map(|group| group.id.as_str()).collect()
    }

    #[test]
    fn groups_round_trip_update_and_delete() {
        let mut sql = migrated();
        let mut g1 = group("g1", true);
        assert_eq!(insert(&mut sql, &g1, now()).unwrap(), Inserted::Created);
        assert_eq!(
            insert(&mut sql, &group("g1", false), now()).unwrap(),
            Inserted::AlreadyExists
        );
        assert_eq!(get(&mut sql, &g1.id).unwrap(), Some(g1.clone()));
        g1.keys = SymmetricKeys::from_random([42; 64]);
        g1.etag = "\"e2\"".into();
        g1.auto_approve = true;
        assert!(update(&mut sql, &g1, now()).unwrap());
        assert_eq!(get(&mut sql, &g1.id).unwrap(), Some(g1.clone()));
        assert!(delete(&mut sql, &g1.id).unwrap());
        assert!(!delete(&mut sql, &g1.id).unwrap());
        assert!(!update(&mut sql, &g1, now()).unwrap());
        assert_eq!(get(&mut sql, &g1.id).unwrap(), None);
    }

    #[test]
    fn lists_by_pages_and_finds_the_default_group() {
        let mut sql = migrated();
        assert_eq!(default_group(&mut sql).unwrap(), None);
        for (id, enabled) in [("c", true), ("a", false), ("b", true)] {
            insert(&mut sql, &group(id, enabled), now()).unwrap();
        }
        assert_eq!(ids(&list(&mut sql, None, 2).unwrap()), ["a", "b"]);
        let after = EnrollmentGroupId::parse("b").unwrap();
        assert_eq!(ids(&list(&mut sql, Some(&after), 2).unwrap()), ["c"]);
        assert_eq!(
            default_group(&mut sql).unwrap().map(|group| group.id),
            Some(after)
        );
    }

    #[test]
    fn rows_this_code_did_not_write_are_errors_not_panics() {
        let check = |set: &str, expected: &str| {
            let mut sql = migrated();
            insert(&mut sql, &group("g1", true), now()).unwrap();
            sql.execute(&format!("UPDATE enrollment_groups SET {set}"), &[])
                .unwrap();
            let error = list(&mut sql, None, 10).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        };
        check("type = 'iotEdge'", "unsupported `iotEdge`");
        check(
            "enabled = 7",
            "enabled of enrollment group `g1`: not 0 or 1",
        );
        check("primary_key = 'x'", "primary_key of enrollment group `g1`");
    }
}
