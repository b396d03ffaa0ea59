//! Application settings kept in `gyre_meta`: the application id (the `sr` of API tokens) and
//! the DPS ID scope. Each is made once, from random bytes the caller drew, the first time it is
//! asked for, and never changes afterwards (tokens and devices depend on it).
//!
//! Keys: `app.id` and `app.id_scope`. Get-or-create is `INSERT ... ON CONFLICT DO NOTHING` then
//! a read, so two instances racing both end with the first writer's value. Call it inside the
//! request's transaction when the result is written elsewhere too.

use super::{Sql, StoreError, Value};
use crate::auth::ApplicationId;
use crate::enrollment::IdScope;

const APPLICATION_ID_KEY: &str = "app.id";
const ID_SCOPE_KEY: &str = "app.id_scope";

/// The application id, made on first use from `random` as a lower-case GUID (IoT Central's
/// application ids are GUIDs).
pub fn application_id<S: Sql>(sql: &mut S, random: [u8; 16]) -> Result<ApplicationId, StoreError> {
    let fresh = crate::api::RequestId::from_random(random);
    let stored = get_or_insert(sql, APPLICATION_ID_KEY, fresh.as_str())?;
    ApplicationId::parse(&stored).map_err(|error| StoreError::UnexpectedResult {
        statement: "SELECT value FROM gyre_meta (app.id)",
        detail: format!("`{stored}`: {error}"),
    })
}

/// The DPS ID scope, made on first use from `random` (`0ne` + 8 hex digits).
pub fn id_scope<S: Sql>(sql: &mut S, random: [u8; 4]) -> Result<IdScope, StoreError> {
    let fresh = IdScope::from_random(random);
    let stored = get_or_insert(sql, ID_SCOPE_KEY, fresh.as_str())?;
    IdScope::parse(&stored).map_err(|error| StoreError::UnexpectedResult {
        statement: "SELECT value FROM gyre_meta (app.id_scope)",
        detail: format!("`{stored}`: {error}"),
    })
}

fn get_or_insert<S: Sql>(sql: &mut S, key: &str, fresh: &str) -> Result<String, StoreError> {
    const INSERT: &str =
        "INSERT INTO gyre_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING";
    const GET: &str = "SELECT value FROM gyre_meta WHERE key = ?1";
    sql.execute(
        INSERT,
        &[Value::Text(key.to_owned()), Value::Text(fresh.to_owned())],
    )?;
    let rows = sql.execute(GET, &[Value::Text(key.to_owned())])?;
    rows.scalar()
        .and_then(Value::as_text)
        .map(str::to_owned)
        .ok_or_else(|| StoreError::UnexpectedResult {
            statement: GET,
            detail: format!("no text value for `{key}`: {rows:?}"),
        })
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};
    use crate::time::Timestamp;

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(0)).unwrap();
        sql
    }

    #[test]
    fn settings_are_made_once_and_kept() {
        let mut sql = migrated();
        let scope = id_scope(&mut sql, [0x00, 0x04, 0xcb, 0x9a]).unwrap();
        assert_eq!(scope.as_str(), "0ne0004CB9A");
        assert_eq!(id_scope(&mut sql, [1, 2, 3, 4]).unwrap(), scope);

        let app = application_id(&mut sql, [0xab; 16]).unwrap();
        assert_eq!(app.as_str(), "abababab-abab-4bab-abab-abababababab");
        assert_eq!(application_id(&mut sql, [0; 16]).unwrap(), app);
    }

    #[test]
    fn a_corrupt_setting_is_an_error() {
        let mut sql = migrated();
        sql.execute(
            "INSERT INTO gyre_meta (key, value) VALUES ('app.id_scope', 'nope')",
            &[],
        )
        .unwrap();
        let error = id_scope(&mut sql, [0; 4]).unwrap_err();
        assert!(error.to_string().contains("`nope`"), "{error}");
    }
}
