//! Store tests against real SQLite (rusqlite): the migration runner's guarantees and the
//! `Sql` contract both backends must honour. File-backed databases live in the system temp
//! directory and are removed when the test ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::migrations::{migrate_with, read_schema_version, Migration, MIGRATIONS};
use super::{
    migrate, Migrated, Rows, RusqliteSql, SchemaVersion, Sql, StoreError, Value,
    LATEST_SCHEMA_VERSION,
};
use crate::time::Timestamp;

const CREATED: i64 = 1_764_161_225_120; // 2025-11-26T12:47:05.120Z
const LATER: i64 = CREATED + 60_000;

fn at(unix_millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(unix_millis)
}

fn memory() -> RusqliteSql {
    RusqliteSql::open_in_memory().unwrap()
}

fn meta(sql: &mut RusqliteSql, key: &str) -> Option<String> {
    let rows = sql
        .execute(
            "SELECT value FROM gyre_meta WHERE key = ?1",
            &[Value::Text(key.to_owned())],
        )
        .unwrap();
    rows.scalar().and_then(Value::as_text).map(str::to_owned)
}

fn table_exists(sql: &mut RusqliteSql, name: &str) -> bool {
    let rows = sql
        .execute(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            &[Value::Text(name.to_owned())],
        )
        .unwrap();
    rows.scalar() == Some(&Value::Integer(1))
}

/// A database file shared by several connections, deleted on drop.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new(test_name: &str) -> TempDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file_name = format!("gyre-domain-{test_name}-{}-{n}.db", std::process::id());
        let temp_db = TempDb {
            path: std::env::temp_dir().join(file_name),
        };
        temp_db.remove_files();
        temp_db
    }

    fn connect(&self) -> RusqliteSql {
        RusqliteSql::open(&self.path).unwrap()
    }

    fn remove_files(&self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            // Absent files are the normal case.
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove_files();
    }
}

#[test]
fn migrating_an_empty_database_applies_every_migration_and_records_the_creation_time() {
    let mut sql = memory();

    let migrated = migrate(&mut sql, at(CREATED)).unwrap();

    assert_eq!(
        migrated,
        Migrated {
            schema_version: LATEST_SCHEMA_VERSION,
            n_applied: MIGRATIONS.len() as u32
        }
    );
    assert_eq!(
        read_schema_version(&mut sql).unwrap(),
        LATEST_SCHEMA_VERSION
    );
    assert_eq!(
        meta(&mut sql, "schema.created_at").as_deref(),
        Some("2025-11-26T12:47:05.120Z")
    );
    assert_eq!(
        meta(&mut sql, "migration.1.applied_at").as_deref(),
        Some("2025-11-26T12:47:05.120Z")
    );
}

#[test]
fn migrating_again_applies_nothing_and_keeps_the_creation_time() {
    let mut sql = memory();
    migrate(&mut sql, at(CREATED)).unwrap();

    let migrated = migrate(&mut sql, at(LATER)).unwrap();

    assert_eq!(
        migrated,
        Migrated {
            schema_version: LATEST_SCHEMA_VERSION,
            n_applied: 0
        }
    );
    assert_eq!(
        meta(&mut sql, "schema.created_at").as_deref(),
        Some("2025-11-26T12:47:05.120Z")
    );
}

#[test]
fn later_migrations_apply_on_top_of_an_existing_schema() {
    const SECOND: Migration = Migration {
        name: "widgets",
        statements: &["CREATE TABLE widgets (id TEXT PRIMARY KEY)"],
    };
    let mut sql = memory();
    migrate_with(&mut sql, &MIGRATIONS[..1], at(CREATED)).unwrap();

    let migrated = migrate_with(&mut sql, &[MIGRATIONS[0], SECOND], at(LATER)).unwrap();

    assert_eq!(
        migrated,
        Migrated {
            schema_version: SchemaVersion(2),
            n_applied: 1
        }
    );
    assert!(table_exists(&mut sql, "widgets"));
    assert_eq!(
        meta(&mut sql, "schema.created_at").as_deref(),
        Some("2025-11-26T12:47:05.120Z")
    );
    assert_eq!(
        meta(&mut sql, "migration.2.applied_at").as_deref(),
        Some("2025-11-26T12:48:05.120Z")
    );
}

/// Wraps a connection and, right after its first `PRAGMA user_version` read, lets a rival
/// connection migrate the same database: the wrapped caller then acts on a stale version.
struct LosesTheRace {
    sql: RusqliteSql,
    rival: Option<RusqliteSql>,
    rival_migrated: Option<Migrated>,
}

impl Sql for LosesTheRace {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<Rows, StoreError> {
        let rows = self.sql.execute(statement, params)?;
        if statement == "PRAGMA user_version" {
            if let Some(mut rival) = self.rival.take() {
                self.rival_migrated = Some(migrate(&mut rival, at(LATER)).unwrap());
            }
        }
        Ok(rows)
    }
}

#[test]
fn a_migrator_that_read_a_stale_version_rechecks_under_the_lock_and_applies_nothing() {
    let temp_db = TempDb::new("stale");
    let mut racing = LosesTheRace {
        sql: temp_db.connect(),
        rival: Some(temp_db.connect()),
        rival_migrated: None,
    };

    let migrated = migrate(&mut racing, at(CREATED)).unwrap();

    assert_eq!(
        migrated,
        Migrated {
            schema_version: LATEST_SCHEMA_VERSION,
            n_applied: 0
        }
    );
    assert_eq!(
        racing.rival_migrated.unwrap().n_applied,
        MIGRATIONS.len() as u32
    );
    // The rival created the schema, so its time is the one on record.
    assert_eq!(
        meta(&mut racing.sql, "schema.created_at").as_deref(),
        Some("2025-11-26T12:48:05.120Z")
    );
}

#[test]
fn concurrent_migrators_apply_each_migration_exactly_once() {
    let temp_db = TempDb::new("concurrent");
    let n_threads = 4;

    let results: Vec<Migrated> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_threads)
            .map(|_| {
                let mut sql = temp_db.connect();
                // The test relies on writers waiting for the lock rather than failing at once.
                sql.connection()
                    .busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                scope.spawn(move || migrate(&mut sql, at(CREATED)).unwrap())
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });

    let n_applied: u32 = results.iter().map(|migrated| migrated.n_applied).sum();
    assert_eq!(n_applied, MIGRATIONS.len() as u32);
    assert!(results
        .iter()
        .all(|migrated| migrated.schema_version == LATEST_SCHEMA_VERSION));
    assert_eq!(
        read_schema_version(&mut temp_db.connect()).unwrap(),
        LATEST_SCHEMA_VERSION
    );
}

#[test]
fn a_failing_migration_rolls_back_whole_and_leaves_the_version_unchanged() {
    const BROKEN: Migration = Migration {
        name: "broken",
        statements: &[
            "CREATE TABLE half_done (id INTEGER)",
            "CREATE TABLE oops (id INTEGER",
        ],
    };
    let mut sql = memory();
    migrate_with(&mut sql, &MIGRATIONS[..1], at(CREATED)).unwrap();

    let error = migrate_with(&mut sql, &[MIGRATIONS[0], BROKEN], at(LATER)).unwrap_err();

    assert!(
        matches!(
            error,
            StoreError::Migration {
                version: 2,
                name: "broken",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(read_schema_version(&mut sql).unwrap(), SchemaVersion(1));
    assert!(!table_exists(&mut sql, "half_done"));
    assert_eq!(meta(&mut sql, "migration.2.applied_at"), None);
    // The connection is usable afterwards: no transaction was left open.
    assert_eq!(
        migrate_with(&mut sql, &MIGRATIONS[..1], at(LATER))
            .unwrap()
            .n_applied,
        0
    );
}

#[test]
fn a_database_from_a_newer_build_is_refused_untouched() {
    let mut sql = memory();
    let newer = LATEST_SCHEMA_VERSION.0 + 1;
    sql.execute(&format!("PRAGMA user_version = {newer}"), &[])
        .unwrap();

    let error = migrate(&mut sql, at(CREATED)).unwrap_err();

    assert!(
        matches!(error, StoreError::SchemaTooNew { found, .. } if found == newer),
        "{error:?}"
    );
    assert!(!table_exists(&mut sql, "gyre_meta"));
}

#[test]
fn migrations_have_unique_names_and_at_least_one_statement() {
    let mut names: Vec<&str> = MIGRATIONS.iter().map(|migration| migration.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), MIGRATIONS.len(), "duplicate migration names");
    assert!(MIGRATIONS
        .iter()
        .all(|migration| !migration.statements.is_empty()));
}

#[test]
fn values_round_trip_through_parameters_and_columns() {
    let mut sql = memory();
    for value in [
        Value::Null,
        Value::Integer(i64::MIN),
        Value::Real(-0.5),
        Value::Text("héllo".to_owned()),
        Value::Blob(vec![0, 255, 7]),
    ] {
        let rows = sql
            .execute("SELECT ?1 AS echoed", std::slice::from_ref(&value))
            .unwrap();
        assert_eq!(
            rows,
            Rows {
                columns: vec!["echoed".to_owned()],
                rows: vec![vec![value]]
            }
        );
    }
}

#[test]
fn a_transaction_commits_on_success_and_rolls_back_on_error() {
    let mut sql = memory();
    sql.execute("CREATE TABLE items (id INTEGER)", &[]).unwrap();
    let count = |sql: &mut RusqliteSql| sql.execute("SELECT count(*) FROM items", &[]).unwrap();

    sql.transaction(|tx| tx.execute("INSERT INTO items VALUES (1)", &[]).map(drop))
        .unwrap();
    let error = sql
        .transaction(|tx| {
            tx.execute("INSERT INTO items VALUES (2)", &[])?;
            Err::<(), _>(StoreError::database("caller gave up"))
        })
        .unwrap_err();

    assert_eq!(error.to_string(), "database error: caller gave up");
    assert_eq!(count(&mut sql).scalar(), Some(&Value::Integer(1)));
}

#[test]
fn one_call_runs_one_statement_as_spin_does() {
    let mut sql = memory();

    let result = sql.execute("CREATE TABLE a (x); CREATE TABLE b (x)", &[]);

    assert!(
        matches!(result, Err(StoreError::Database { .. })),
        "{result:?}"
    );
    assert!(!table_exists(&mut sql, "a"));
}

#[test]
fn last_values_kept_per_field_are_carried_into_one_row_per_component() {
    let mut sql = memory();
    let before = MIGRATIONS
        .iter()
        .position(|m| m.name == "last_values_per_component")
        .unwrap();
    migrate_with(&mut sql, &MIGRATIONS[..before], at(CREATED)).unwrap();
    sql.execute(
        "INSERT INTO last_values (device_id, component, name, value, enqueued_at) VALUES \
         ('d1', '', 'temp', '21.5', 10), ('d1', '', 'mode', '\"eco\"', 30), \
         ('d1', 'th1', 'temp', '{\"a\":[1,2]}', 20)",
        &[],
    )
    .unwrap();
    migrate_with(&mut sql, MIGRATIONS, at(LATER)).unwrap();
    let rows = sql
        .execute(
            "SELECT l.device_id, l.component, l.at, j.key, j.value -> 0, j.value ->> 1 \
             FROM last_values l, json_each(l.fields) j ORDER BY 1, 2, 4",
            &[],
        )
        .unwrap();
    let text = |v: &str| Value::Text(v.to_owned());
    assert_eq!(
        rows.rows,
        vec![
            vec![
                text("d1"),
                text(""),
                Value::Integer(30),
                text("mode"),
                text("\"eco\""),
                Value::Integer(30)
            ],
            vec![
                text("d1"),
                text(""),
                Value::Integer(30),
                text("temp"),
                text("21.5"),
                Value::Integer(10)
            ],
            vec![
                text("d1"),
                text("th1"),
                Value::Integer(20),
                text("temp"),
                text("{\"a\":[1,2]}"),
                Value::Integer(20)
            ],
        ]
    );
}
