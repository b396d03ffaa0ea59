//! Isolation: every request gets a fresh component instance, so guest memory (a `static`)
//! never carries over from one request to the next, sequentially or concurrently.

use gyre_tests::TestHost;
use serde_json::json;

use crate::{expect_json, probe_manifest};

#[test]
fn a_guest_static_does_not_survive_between_requests() {
    let host = TestHost::start(&probe_manifest("/...", ""));

    for _ in 0..5 {
        assert_eq!(
            expect_json(&host.get("/?op=static"), 200),
            json!({ "calls": 1 })
        );
    }
}

#[test]
fn concurrent_requests_each_see_a_fresh_instance() {
    let host = TestHost::start(&probe_manifest("/...", ""));

    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..5 {
                    assert_eq!(
                        expect_json(&host.get("/?op=static"), 200),
                        json!({ "calls": 1 })
                    );
                }
            });
        }
    });
}

#[test]
fn the_hello_component_answers_hello() {
    let host = TestHost::start(
        r#"spin_manifest_version = 2

[application]
name = "hello"

[[trigger.http]]
route = "/hello"
component = "hello"

[component.hello]
source = "@hello.wasm"
"#,
    );

    let response = host.get("/hello");

    assert_eq!((response.status, response.body.as_str()), (200, "hello"));
}

#[test]
fn the_benchmark_work_op_writes_to_both_default_stores() {
    let host = TestHost::start(&probe_manifest(
        "/...",
        r#"key_value_stores = ["default"]
sqlite_databases = ["default"]"#,
    ));

    for _ in 0..3 {
        expect_json(&host.get("/?op=work"), 200);
    }

    let rows = expect_json(
        &crate::sql(
            &host,
            "/",
            "default",
            "SELECT COUNT(*) FROM probe_work",
            json!([]),
        ),
        200,
    );
    assert_eq!(rows["rows"], json!([[3]]));
}

#[test]
fn the_benchmark_work_op_succeeds_under_concurrency() {
    let host = TestHost::start(&probe_manifest(
        "/...",
        r#"key_value_stores = ["default"]
sqlite_databases = ["default"]"#,
    ));
    let (n_threads, n_requests_per_thread) = (8, 25);

    std::thread::scope(|scope| {
        for _ in 0..n_threads {
            scope.spawn(|| {
                for _ in 0..n_requests_per_thread {
                    expect_json(&host.get("/?op=work"), 200);
                }
            });
        }
    });

    let rows = expect_json(
        &crate::sql(
            &host,
            "/",
            "default",
            "SELECT COUNT(*) FROM probe_work",
            json!([]),
        ),
        200,
    );
    assert_eq!(rows["rows"], json!([[n_threads * n_requests_per_thread]]));
}
