//! `fermyon:spin/sqlite@2.0.0`: statements with parameters and typed results, label permissions,
//! WAL whose commits the host syncs (see `host/src/sqlite.rs`), many concurrent writers without SQLITE_BUSY or lost updates, and
//! persistence across a restart.

use std::sync::atomic::{AtomicUsize, Ordering};

use gyre_tests::{App, TestHost};
use serde_json::json;

use crate::{expect_error, expect_json, probe_manifest, sql};

const N_THREADS: usize = 16;
const N_REQUESTS_PER_THREAD: usize = 25;

fn sqlite_manifest() -> String {
    probe_manifest("/...", r#"sqlite_databases = ["default"]"#)
}

#[test]
fn a_table_created_in_one_request_is_queried_in_the_next_with_typed_values() {
    let host = TestHost::start(&sqlite_manifest());

    expect_json(
        &sql(
            &host,
            "/",
            "default",
            "CREATE TABLE things (i INTEGER, r REAL, t TEXT, b BLOB, n TEXT)",
            json!([]),
        ),
        200,
    );
    expect_json(
        &sql(
            &host,
            "/",
            "default",
            "INSERT INTO things VALUES (?, ?, ?, ?, ?)",
            json!([42, 1.5, "text", { "blob": [0, 1, 255] }, null]),
        ),
        200,
    );

    let result = expect_json(
        &sql(
            &host,
            "/",
            "default",
            "SELECT i, r, t, b, n FROM things",
            json!([]),
        ),
        200,
    );
    assert_eq!(result["columns"], json!(["i", "r", "t", "b", "n"]));
    assert_eq!(
        result["rows"],
        json!([[42, 1.5, "text", { "blob": [0, 1, 255] }, null]])
    );
}

#[test]
fn parameters_bind_in_order_and_filter_rows() {
    let host = TestHost::start(&sqlite_manifest());
    expect_json(
        &sql(
            &host,
            "/",
            "default",
            "CREATE TABLE people (name TEXT, age INTEGER)",
            json!([]),
        ),
        200,
    );
    for (name, age) in [("ada", 36), ("alan", 41), ("grace", 85)] {
        expect_json(
            &sql(
                &host,
                "/",
                "default",
                "INSERT INTO people VALUES (?, ?)",
                json!([name, age]),
            ),
            200,
        );
    }

    let result = expect_json(
        &sql(
            &host,
            "/",
            "default",
            "SELECT name FROM people WHERE age > ? AND age < ? ORDER BY name",
            json!([40, 100]),
        ),
        200,
    );

    assert_eq!(result["rows"], json!([["alan"], ["grace"]]));
}

#[test]
fn an_invalid_statement_is_reported_as_an_io_error() {
    let host = TestHost::start(&sqlite_manifest());

    expect_error(
        &sql(&host, "/", "default", "SELEKT nonsense", json!([])),
        "io",
    );
}

#[test]
fn opening_a_database_the_component_does_not_declare_is_access_denied() {
    let host = TestHost::start(&sqlite_manifest());

    expect_error(
        &sql(&host, "/", "undeclared", "SELECT 1", json!([])),
        "access-denied",
    );
}

#[test]
fn a_component_without_sqlite_databases_is_denied_even_the_default_database() {
    let host = TestHost::start(&probe_manifest("/...", ""));

    expect_error(
        &sql(&host, "/", "default", "SELECT 1", json!([])),
        "access-denied",
    );
}

#[test]
fn the_default_database_is_a_file_in_the_state_dir_in_wal_mode() {
    let host = TestHost::start(&sqlite_manifest());

    let journal_mode = expect_json(
        &sql(&host, "/", "default", "PRAGMA journal_mode", json!([])),
        200,
    );
    // `synchronous` is NORMAL on a guest's connection: the host syncs the WAL after each
    // commit, outside the write lock (`a_guest_commit_releases_the_write_lock_then_syncs_...`).
    assert_eq!(journal_mode["rows"], json!([["wal"]]));
    let file = host.app().state_dir().join("sqlite_db.db");
    assert!(file.is_file(), "{} should exist", file.display());
}

#[test]
fn concurrent_transactional_inserts_all_succeed_and_none_is_lost() {
    let host = TestHost::start(&sqlite_manifest());
    expect_json(&sql(&host, "/", "default", "SELECT 1", json!([])), 200); // creates the file
    let n_failures = AtomicUsize::new(0);

    std::thread::scope(|scope| {
        for thread_idx in 0..N_THREADS {
            let (host, n_failures) = (&host, &n_failures);
            scope.spawn(move || {
                for request_idx in 0..N_REQUESTS_PER_THREAD {
                    let response =
                        host.get(&format!("/?op=insert&value=t{thread_idx}-r{request_idx}"));
                    if response.status != 200 {
                        n_failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("insert t{thread_idx}-r{request_idx} failed: {response:?}");
                    }
                }
            });
        }
    });

    assert_eq!(
        n_failures.load(Ordering::SeqCst),
        0,
        "every request should succeed (no SQLITE_BUSY)"
    );
    let count = expect_json(
        &sql(
            &host,
            "/",
            "default",
            "SELECT COUNT(*), COUNT(DISTINCT value) FROM probe_rows",
            json!([]),
        ),
        200,
    );
    let expected = (N_THREADS * N_REQUESTS_PER_THREAD) as u64;
    assert_eq!(count["rows"], json!([[expected, expected]]));
}

#[test]
fn a_counter_incremented_concurrently_in_transactions_counts_exactly() {
    let host = TestHost::start(&sqlite_manifest());
    let n_failures = AtomicUsize::new(0);

    std::thread::scope(|scope| {
        for _ in 0..N_THREADS {
            let (host, n_failures) = (&host, &n_failures);
            scope.spawn(move || {
                for _ in 0..N_REQUESTS_PER_THREAD {
                    let response = host.get("/?op=counter");
                    if response.status != 200 {
                        n_failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("counter increment failed: {response:?}");
                    }
                }
            });
        }
    });

    assert_eq!(
        n_failures.load(Ordering::SeqCst),
        0,
        "every increment should succeed (no SQLITE_BUSY)"
    );
    let counter = expect_json(
        &sql(
            &host,
            "/",
            "default",
            "SELECT n FROM probe_counter",
            json!([]),
        ),
        200,
    );
    assert_eq!(
        counter["rows"],
        json!([[N_THREADS * N_REQUESTS_PER_THREAD]])
    );
}

#[test]
fn rows_survive_a_host_restart_with_the_same_state_dir() {
    let app = App::new(&sqlite_manifest());
    let first = app.host().start();
    expect_json(
        &sql(
            &first,
            "/",
            "default",
            "CREATE TABLE durable (v TEXT)",
            json!([]),
        ),
        200,
    );
    expect_json(
        &sql(
            &first,
            "/",
            "default",
            "INSERT INTO durable VALUES ('kept')",
            json!([]),
        ),
        200,
    );
    // An abrupt stop: committed rows must not depend on a graceful shutdown.
    first.kill();

    let second = app.host().start();

    let result = expect_json(
        &sql(&second, "/", "default", "SELECT v FROM durable", json!([])),
        200,
    );
    assert_eq!(result["rows"], json!([["kept"]]));
}
