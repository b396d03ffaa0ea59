//! The `api_tokens` table: insert, get, list, delete token records, and authenticate a request
//! against them.
//!
//! A row is a [`TokenRecord`]: the id, the 32-byte verifier (never the token), the expiry and
//! creation time in Unix milliseconds, and the role assignments as IoT Central's JSON,
//! `[{"role": "<guid>", "organization": "<id>"}]` (`organization` absent when application-wide).
//! Deleting a row is revoking the token: the next request presenting it finds no record.
//!
//! The schema itself is a migration in `migrations`; the token rules are in `auth`.

use serde::{Deserialize, Serialize};

use super::{Rows, Sql, StoreError, Value};
use crate::auth::{
    parse_authorization, verify, ApiTokenId, AuthError, OrganizationId, RoleAssignment, RoleId,
    TokenRecord, TokenVerifier,
};
use crate::time::Timestamp;

// Tokens are never overwritten: a new secret under an old id would silently revoke the old
// one, so an existing id is `Inserted::AlreadyExists`.
pub use super::Inserted;

/// Stores a freshly issued record unless its id is taken.
pub fn insert<S: Sql>(sql: &mut S, record: &TokenRecord) -> Result<Inserted, StoreError> {
    const INSERT: &str = "INSERT INTO api_tokens (id, verifier, expiry, roles, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING RETURNING id";
    let rows = sql.execute(
        INSERT,
        &[
            Value::Text(record.id().as_str().to_owned()),
            Value::Blob(record.verifier().as_bytes().to_vec()),
            Value::Integer(record.expiry().unix_millis()),
            Value::Text(roles_to_json(record.roles())),
            Value::Integer(record.created_at().unix_millis()),
        ],
    )?;
    Ok(Inserted::from_returning(&rows))
}

/// The record stored under `id`, if any.
pub fn get<S: Sql>(sql: &mut S, id: &ApiTokenId) -> Result<Option<TokenRecord>, StoreError> {
    const GET: &str = "SELECT id, verifier, expiry, roles, created_at FROM api_tokens \
         WHERE id = ?1";
    let rows = sql.execute(GET, &[Value::Text(id.as_str().to_owned())])?;
    let mut records = records_from_rows(GET, rows)?;
    Ok(records.pop())
}

/// Up to `limit` records in id order, starting after `after` (keyset paging: pass the last id
/// of the previous page).
pub fn list<S: Sql>(
    sql: &mut S,
    after: Option<&ApiTokenId>,
    limit: u32,
) -> Result<Vec<TokenRecord>, StoreError> {
    const FIRST_PAGE: &str = "SELECT id, verifier, expiry, roles, created_at FROM api_tokens \
         ORDER BY id LIMIT ?1";
    const NEXT_PAGE: &str = "SELECT id, verifier, expiry, roles, created_at FROM api_tokens \
         WHERE id > ?1 ORDER BY id LIMIT ?2";
    let limit = Value::Integer(i64::from(limit));
    match after {
        None => {
            let rows = sql.execute(FIRST_PAGE, &[limit])?;
            records_from_rows(FIRST_PAGE, rows)
        }
        Some(after) => {
            let rows = sql.execute(NEXT_PAGE, &[Value::Text(after.as_str().to_owned()), limit])?;
            records_from_rows(NEXT_PAGE, rows)
        }
    }
}

/// Revokes the token `id` at once. `false` when there was no such token.
pub fn delete<S: Sql>(sql: &mut S, id: &ApiTokenId) -> Result<bool, StoreError> {
    const DELETE: &str = "DELETE FROM api_tokens WHERE id = ?1 RETURNING id";
    let rows = sql.execute(DELETE, &[Value::Text(id.as_str().to_owned())])?;
    Ok(!rows.rows.is_empty())
}

/// The whole authentication step: parse the `Authorization` header, find the record, verify.
/// The outer error is a storage failure (500); the inner one is the caller's (401).
pub fn authenticate<S: Sql>(
    sql: &mut S,
    authorization: Option<&str>,
    now: Timestamp,
) -> Result<Result<TokenRecord, AuthError>, StoreError> {
    let presented = match parse_authorization(authorization) {
        Ok(presented) => presented,
        Err(error) => return Ok(Err(error)),
    };
    let Some(record) = get(sql, presented.token_id())? else {
        return Ok(Err(AuthError::UnknownToken {
            token_id: presented.token_id().clone(),
        }));
    };
    Ok(verify(&presented, &record, now).map(|()| record))
}

/// One element of the `roles` column: IoT Central's `RoleAssignment` shape.
#[derive(Serialize, Deserialize)]
struct StoredRole {
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    organization: Option<String>,
}

fn roles_to_json(roles: &[RoleAssignment]) -> String {
    let stored: Vec<StoredRole> = roles
        .iter()
        .map(|assignment| StoredRole {
            role: assignment.role.as_str().to_owned(),
            organization: assignment
                .organization
                .as_ref()
                .map(|organization| organization.as_str().to_owned()),
        })
        .collect();
    // Serializing strings into a JSON array cannot fail.
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_owned())
}

fn records_from_rows(statement: &'static str, rows: Rows) -> Result<Vec<TokenRecord>, StoreError> {
    rows.rows
        .into_iter()
        .map(|row| {
            record_from_row(row)
                .map_err(|detail| StoreError::UnexpectedResult { statement, detail })
        })
        .collect()
}

/// Maps `id, verifier, expiry, roles, created_at`; a row this code did not write is an error
/// naming what is wrong, never a panic.
fn record_from_row(row: Vec<Value>) -> Result<TokenRecord, String> {
    let [id, verifier, expiry, roles, created_at]: [Value; 5] = row
        .try_into()
        .map_err(|row: Vec<Value>| format!("expected 5 columns, got {}", row.len()))?;
    let id = match &id {
        Value::Text(text) => ApiTokenId::parse(text).map_err(|error| format!("id: {error}"))?,
        other => return Err(format!("id: not text: {other:?}")),
    };
    let verifier = match verifier {
        Value::Blob(bytes) => <[u8; 32]>::try_from(bytes)
            .map(TokenVerifier::from_bytes)
            .map_err(|bytes| format!("verifier of token `{id}`: {} bytes, not 32", bytes.len()))?,
        _ => return Err(format!("verifier of token `{id}`: not a blob")),
    };
    let millis = |value: &Value, column: &str| {
        value
            .as_integer()
            .map(Timestamp::from_unix_millis)
            .ok_or_else(|| format!("{column} of token `{id}`: not an integer"))
    };
    let expiry = millis(&expiry, "expiry")?;
    let created_at = millis(&created_at, "created_at")?;
    let roles = roles
        .as_text()
        .ok_or_else(|| format!("roles of token `{id}`: not text"))
        .and_then(|json| {
            roles_from_json(json).map_err(|error| format!("roles of token `{id}`: {error}"))
        })?;
    Ok(TokenRecord::from_stored(
        id, verifier, expiry, roles, created_at,
    ))
}

fn roles_from_json(json: &str) -> Result<Vec<RoleAssignment>, String> {
    let stored: Vec<StoredRole> = serde_json::from_str(json).map_err(|error| error.to_string())?;
    stored
        .into_iter()
        .map(|stored| {
            let role = RoleId::parse(&stored.role).map_err(|error| error.to_string())?;
            let organization = stored
                .organization
                .as_deref()
                .map(OrganizationId::parse)
                .transpose()
                .map_err(|error| error.to_string())?;
            Ok(RoleAssignment { role, organization })
        })
        .collect()
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::auth::{issue, ApplicationId, IssuedToken, ADMINISTRATOR, OPERATOR};
    use crate::store::{migrate, RusqliteSql};

    const NOW: i64 = 1_764_161_225_120; // 2025-11-26T12:47:05.120Z
    const EXPIRY: i64 = NOW + 86_400_000;

    fn at(unix_millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(unix_millis)
    }

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, at(NOW)).unwrap();
        sql
    }

    fn token_id(raw: &str) -> ApiTokenId {
        ApiTokenId::parse(raw).unwrap()
    }

    fn issue_token(id: &str, roles: Vec<RoleAssignment>, random: u8) -> IssuedToken {
        issue(
            token_id(id),
            &ApplicationId::parse("app").unwrap(),
            at(EXPIRY),
            roles,
            at(NOW),
            [random; 32],
        )
        .unwrap()
    }

    #[test]
    fn records_round_trip() {
        let mut sql = migrated();
        let issued = issue_token(
            "admin",
            vec![
                RoleAssignment::app_wide(&ADMINISTRATOR),
                RoleAssignment::app_wide(&OPERATOR),
            ],
            1,
        );
        assert_eq!(insert(&mut sql, &issued.record).unwrap(), Inserted::Created);
        assert_eq!(
            get(&mut sql, &token_id("admin")).unwrap(),
            Some(issued.record)
        );
        assert_eq!(get(&mut sql, &token_id("nobody")).unwrap(), None);
    }

    #[test]
    fn the_table_holds_the_verifier_and_iot_centrals_role_json_only() {
        let mut sql = migrated();
        let issued = issue_token("t1", vec![RoleAssignment::app_wide(&OPERATOR)], 9);
        insert(&mut sql, &issued.record).unwrap();
        let rows = sql
            .execute(
                "SELECT id, verifier, expiry, roles, created_at FROM api_tokens",
                &[],
            )
            .unwrap();
        assert_eq!(
            rows.rows,
            [vec![
                Value::Text("t1".into()),
                Value::Blob(issued.record.verifier().as_bytes().to_vec()),
                Value::Integer(EXPIRY),
                Value::Text(r#"[{"role":"ae2c9854-393b-4f97-8c42-479d70ce626e"}]"#.into()),
                Value::Integer(NOW),
            ]]
        );
        let secret_sig = issued.header_value.split("sig=").nth(1).unwrap();
        assert!(!format!("{rows:?}").contains(secret_sig.split('&').next().unwrap()));
    }

    #[test]
    fn an_existing_id_is_never_overwritten() {
        let mut sql = migrated();
        let first = issue_token("t1", vec![RoleAssignment::app_wide(&OPERATOR)], 1);
        let second = issue_token("t1", vec![RoleAssignment::app_wide(&ADMINISTRATOR)], 2);
        assert_eq!(insert(&mut sql, &first.record).unwrap(), Inserted::Created);
        assert_eq!(
            insert(&mut sql, &second.record).unwrap(),
            Inserted::AlreadyExists
        );
        assert_eq!(get(&mut sql, &token_id("t1")).unwrap(), Some(first.record));
    }

    #[test]
    fn lists_in_id_order_by_pages() {
        let mut sql = migrated();
        for (idx, id) in ["c", "a", "B", "b"].into_iter().enumerate() {
            let issued = issue_token(id, vec![RoleAssignment::app_wide(&OPERATOR)], idx as u8);
            insert(&mut sql, &issued.record).unwrap();
        }
        let ids = |records: Vec<TokenRecord>| -> Vec<String> {
            records
                .iter()
                .map(|record| record.id().to_string())
                .collect()
        };
        assert_eq!(ids(list(&mut sql, None, 10).unwrap()), ["B", "a", "b", "c"]);
        assert_eq!(ids(list(&mut sql, None, 2).unwrap()), ["B", "a"]);
        assert_eq!(
            ids(list(&mut sql, Some(&token_id("a")), 2).unwrap()),
            ["b", "c"]
        );
        assert_eq!(
            ids(list(&mut sql, Some(&token_id("c")), 2).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(ids(list(&mut sql, None, 0).unwrap()), Vec::<String>::new());
    }

    #[test]
    fn delete_revokes_at_once() {
        let mut sql = migrated();
        let issued = issue_token("t1", vec![RoleAssignment::app_wide(&OPERATOR)], 3);
        insert(&mut sql, &issued.record).unwrap();
        let header = Some(issued.header_value.as_str());

        assert_eq!(
            authenticate(&mut sql, header, at(NOW)).unwrap(),
            Ok(issued.record)
        );
        assert!(delete(&mut sql, &token_id("t1")).unwrap());
        assert_eq!(
            authenticate(&mut sql, header, at(NOW)).unwrap(),
            Err(AuthError::UnknownToken {
                token_id: token_id("t1")
            })
        );
        assert!(!delete(&mut sql, &token_id("t1")).unwrap());
    }

    #[test]
    fn authenticate_reports_every_reason() {
        let mut sql = migrated();
        let issued = issue_token("t1", vec![RoleAssignment::app_wide(&OPERATOR)], 4);
        insert(&mut sql, &issued.record).unwrap();
        let forged = issue_token("t1", vec![RoleAssignment::app_wide(&ADMINISTRATOR)], 5);
        let check = |sql: &mut RusqliteSql, header: Option<&str>, now: i64, reason: &str| {
            let error = authenticate(sql, header, at(now)).unwrap().unwrap_err();
            assert_eq!(error.reason(), reason, "{header:?}");
        };
        check(&mut sql, None, NOW, "missing");
        check(&mut sql, Some("Bearer x"), NOW, "malformed");
        check(&mut sql, Some(&forged.header_value), NOW, "bad-signature");
        check(&mut sql, Some(&issued.header_value), EXPIRY, "expired");
        let other_expiry = issued
            .header_value
            .replace(&EXPIRY.to_string(), &(EXPIRY + 1).to_string());
        check(&mut sql, Some(&other_expiry), NOW, "expiry-mismatch");
        let unknown = issued.header_value.replace("skn=t1", "skn=t2");
        check(&mut sql, Some(&unknown), NOW, "unknown");
    }

    #[test]
    fn rows_this_code_did_not_write_are_errors_not_panics() {
        let check = |verifier: Value, roles: &str, expected: &str| {
            let mut sql = migrated();
            // Bypass the CHECK on the verifier's length to simulate a corrupt row.
            sql.execute("PRAGMA ignore_check_constraints = ON", &[])
                .unwrap();
            sql.execute(
                "INSERT INTO api_tokens (id, verifier, expiry, roles, created_at) \
                 VALUES ('t1', ?1, 0, ?2, 0)",
                &[verifier, Value::Text(roles.to_owned())],
            )
            .unwrap();
            let error = get(&mut sql, &token_id("t1")).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        };
        let good_verifier = || Value::Blob(vec![0; 32]);
        check(Value::Blob(vec![0; 31]), "[]", "31 bytes, not 32");
        check(Value::Text("x".into()), "[]", "not a blob");
        check(good_verifier(), "{", "roles of token `t1`");
        check(
            good_verifier(),
            r#"[{"role":"admin"}]"#,
            "role id must be a GUID",
        );
        check(
            good_verifier(),
            r#"[{"role":"ca310b8d-2f4a-44e0-a36e-957c202cd8d4","organization":"-x"}]"#,
            "organization id",
        );
    }
}
