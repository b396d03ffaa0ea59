//! The command line: `--listen`, `--state-dir` and its default, `--runtime-config-file` stores at
//! their configured paths, `--sqlite` statements and files applied before serving, and a graceful
//! stop on SIGTERM.

use gyre_tests::{free_local_port, App};
use serde_json::json;

use crate::{expect_json, kv, probe_manifest, sql};

fn stores_manifest() -> String {
    probe_manifest(
        "/...",
        "key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]",
    )
}

#[test]
fn listen_binds_the_given_address() {
    let port = free_local_port();

    let host = App::new(&probe_manifest("/...", ""))
        .host()
        .listen(&format!("127.0.0.1:{port}"))
        .start();

    assert_eq!(host.base_url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn the_default_stores_are_created_in_the_given_state_dir() {
    let app = App::new(&stores_manifest());
    let state_dir = app.dir().join("elsewhere").join("state");
    let host = app.host().state_dir(&state_dir).start();

    expect_json(&kv(&host, "/", "default", "set", "k", "v"), 200);
    expect_json(
        &sql(&host, "/", "default", "CREATE TABLE t (x)", json!([])),
        200,
    );

    assert!(
        state_dir.join("sqlite_key_value.db").is_file(),
        "KV file missing in {}",
        state_dir.display()
    );
    assert!(
        state_dir.join("sqlite_db.db").is_file(),
        "SQLite file missing in {}",
        state_dir.display()
    );
    assert!(
        !app.state_dir().exists(),
        "nothing should be written to the default state dir"
    );
}

#[test]
fn without_state_dir_the_stores_live_in_dot_spin_next_to_the_manifest() {
    let app = App::new(&stores_manifest());
    let host = app.host().default_state_dir().start();

    expect_json(&kv(&host, "/", "default", "set", "k", "v"), 200);
    expect_json(
        &sql(&host, "/", "default", "CREATE TABLE t (x)", json!([])),
        200,
    );

    assert!(app
        .dir()
        .join(".spin")
        .join("sqlite_key_value.db")
        .is_file());
    assert!(app.dir().join(".spin").join("sqlite_db.db").is_file());
}

#[test]
fn runtime_config_stores_are_opened_at_their_configured_paths() {
    let app = App::new(&probe_manifest(
        "/...",
        "key_value_stores = [\"default\", \"cache\"]\nsqlite_databases = [\"default\", \"analytics\"]",
    ));
    let cache_path = app.dir().join("stores").join("cache.db");
    let analytics_path = app.dir().join("stores").join("analytics.db");
    std::fs::create_dir_all(app.dir().join("stores")).expect("create the stores dir");
    let runtime_config = app.write_file(
        "runtime-config.toml",
        &format!(
            "[key_value_store.cache]\ntype = \"spin\"\npath = \"{}\"\n\n[sqlite_database.analytics]\ntype = \"spin\"\npath = \"{}\"\n",
            cache_path.display(),
            analytics_path.display()
        ),
    );
    let host = app
        .host()
        .arg("--runtime-config-file")
        .arg(&runtime_config)
        .start();

    expect_json(&kv(&host, "/", "cache", "set", "only-in-cache", "1"), 200);
    expect_json(
        &sql(
            &host,
            "/",
            "analytics",
            "CREATE TABLE events (name TEXT)",
            json!([]),
        ),
        200,
    );

    assert!(
        cache_path.is_file(),
        "{} should exist",
        cache_path.display()
    );
    assert!(
        analytics_path.is_file(),
        "{} should exist",
        analytics_path.display()
    );
    // Labels are separate stores: the default ones do not see the configured ones' data.
    assert_eq!(
        expect_json(&kv(&host, "/", "default", "get", "only-in-cache", ""), 200),
        json!({ "value": null })
    );
    let tables = expect_json(
        &sql(
            &host,
            "/",
            "default",
            "SELECT name FROM sqlite_master WHERE name = 'events'",
            json!([]),
        ),
        200,
    );
    assert_eq!(tables["rows"], json!([]));
}

#[test]
fn sqlite_statements_run_against_the_default_database_before_serving() {
    let app = App::new(&stores_manifest());
    let host = app
        .host()
        .arg("--sqlite")
        .arg("CREATE TABLE seeded (v TEXT)")
        .arg("--sqlite")
        .arg("INSERT INTO seeded VALUES ('from the command line')")
        .start();

    let rows = expect_json(
        &sql(&host, "/", "default", "SELECT v FROM seeded", json!([])),
        200,
    );

    assert_eq!(rows["rows"], json!([["from the command line"]]));
}

#[test]
fn sqlite_at_file_runs_the_file_before_serving() {
    let app = App::new(&stores_manifest());
    let migration = app.write_file(
        "migration.sql",
        "CREATE TABLE IF NOT EXISTS seeded (v TEXT);\nINSERT INTO seeded VALUES ('one');\nINSERT INTO seeded VALUES ('two');\n",
    );
    let host = app
        .host()
        .arg("--sqlite")
        .arg(format!("@{}", migration.display()))
        .start();

    let rows = expect_json(
        &sql(
            &host,
            "/",
            "default",
            "SELECT v FROM seeded ORDER BY v",
            json!([]),
        ),
        200,
    );

    assert_eq!(rows["rows"], json!([["one"], ["two"]]));
}

#[test]
fn sigterm_stops_the_host_gracefully_with_exit_code_zero() {
    let host = App::new(&probe_manifest("/...", "")).host().start();
    assert_eq!(host.get("/").status, 200);

    let status = host.terminate();

    assert_eq!(status.code(), Some(0), "{status:?}");
}
