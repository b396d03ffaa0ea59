//! `fermyon:spin/key-value@2.0.0`: the operations, label permissions, the default store's file
//! under the state directory (in WAL mode), and persistence across a restart.

use gyre_tests::{App, TestHost};
use serde_json::json;

use crate::{expect_error, expect_json, kv, probe_manifest};

#[test]
fn a_value_set_in_one_request_is_read_back_in_later_requests() {
    let host = TestHost::start(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));

    expect_json(&kv(&host, "/", "default", "set", "greeting", "hello"), 200);
    expect_json(&kv(&host, "/", "default", "set", "other", "x"), 200);

    assert_eq!(
        expect_json(&kv(&host, "/", "default", "get", "greeting", ""), 200),
        json!({ "value": "hello" })
    );
    assert_eq!(
        expect_json(&kv(&host, "/", "default", "exists", "greeting", ""), 200),
        json!({ "exists": true })
    );
    assert_eq!(
        expect_json(&kv(&host, "/", "default", "keys", "", ""), 200),
        json!({ "keys": ["greeting", "other"] })
    );
}

#[test]
fn a_deleted_key_is_gone_and_a_missing_key_reads_as_none() {
    let host = TestHost::start(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));

    expect_json(&kv(&host, "/", "default", "set", "doomed", "soon"), 200);
    expect_json(&kv(&host, "/", "default", "delete", "doomed", ""), 200);

    assert_eq!(
        expect_json(&kv(&host, "/", "default", "get", "doomed", ""), 200),
        json!({ "value": null })
    );
    assert_eq!(
        expect_json(&kv(&host, "/", "default", "exists", "doomed", ""), 200),
        json!({ "exists": false })
    );
    assert_eq!(
        expect_json(&kv(&host, "/", "default", "get", "never-set", ""), 200),
        json!({ "value": null })
    );
    // Deleting a key that does not exist is not an error in Spin.
    expect_json(&kv(&host, "/", "default", "delete", "never-set", ""), 200);
}

#[test]
fn setting_a_key_again_overwrites_its_value() {
    let host = TestHost::start(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));

    expect_json(&kv(&host, "/", "default", "set", "k", "first"), 200);
    expect_json(&kv(&host, "/", "default", "set", "k", "second"), 200);

    assert_eq!(
        expect_json(&kv(&host, "/", "default", "get", "k", ""), 200),
        json!({ "value": "second" })
    );
}

#[test]
fn opening_a_label_the_component_does_not_declare_is_access_denied() {
    let host = TestHost::start(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));

    expect_error(
        &kv(&host, "/", "undeclared", "get", "k", ""),
        "access-denied",
    );
}

#[test]
fn a_component_without_key_value_stores_is_denied_even_the_default_store() {
    let host = TestHost::start(&probe_manifest("/...", ""));

    expect_error(&kv(&host, "/", "default", "get", "k", ""), "access-denied");
}

#[test]
fn components_sharing_a_label_share_the_store() {
    let host = TestHost::start(
        r#"spin_manifest_version = 2

[application]
name = "sharing"

[[trigger.http]]
route = "/writer/..."
component = "writer"

[[trigger.http]]
route = "/reader/..."
component = "reader"

[component.writer]
source = "@probe.wasm"
key_value_stores = ["default"]

[component.reader]
source = "@probe.wasm"
key_value_stores = ["default"]
"#,
    );

    expect_json(
        &kv(&host, "/writer", "default", "set", "shared", "yes"),
        200,
    );

    assert_eq!(
        expect_json(&kv(&host, "/reader", "default", "get", "shared", ""), 200),
        json!({ "value": "yes" })
    );
}

#[test]
fn concurrent_writers_from_many_instances_all_succeed() {
    let host = TestHost::start(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));
    let (n_threads, n_requests_per_thread) = (16, 25);

    std::thread::scope(|scope| {
        for thread_idx in 0..n_threads {
            let host = &host;
            scope.spawn(move || {
                for request_idx in 0..n_requests_per_thread {
                    let key = format!("t{thread_idx}-r{request_idx}");
                    expect_json(&kv(host, "/", "default", "set", &key, "v"), 200);
                }
            });
        }
    });

    let keys = expect_json(&kv(&host, "/", "default", "keys", "", ""), 200);
    assert_eq!(
        keys["keys"].as_array().map(Vec::len),
        Some(n_threads * n_requests_per_thread)
    );
}

#[test]
fn the_default_store_is_a_wal_mode_sqlite_file_in_the_state_dir() {
    let host = TestHost::start(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));

    expect_json(&kv(&host, "/", "default", "set", "k", "v"), 200);

    let file = host.app().state_dir().join("sqlite_key_value.db");
    assert!(file.is_file(), "{} should exist", file.display());
    // WAL is a persistent property of the database file, so another connection sees it.
    let connection = rusqlite::Connection::open(&file).expect("open the key-value file");
    let journal_mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("read journal_mode");
    assert_eq!(journal_mode.to_lowercase(), "wal");
}

#[test]
fn values_survive_a_host_restart_with_the_same_state_dir() {
    let app = App::new(&probe_manifest("/...", r#"key_value_stores = ["default"]"#));
    let first = app.host().start();
    expect_json(
        &kv(&first, "/", "default", "set", "durable", "still here"),
        200,
    );
    // An abrupt stop: a committed write must not depend on a graceful shutdown.
    first.kill();

    let second = app.host().start();

    assert_eq!(
        expect_json(&kv(&second, "/", "default", "get", "durable", ""), 200),
        json!({ "value": "still here" })
    );
}
