//! Black-box conformance tests: gyre-host must behave as Spin documents for everything Gyre's
//! components rely on. Each module covers one capability and starts its own hosts on port 0 with
//! purpose-built manifests around the probe component (`tests/components/probe`), whose `op`
//! query parameter chooses what it exercises.
//!
//! Prerequisites (the harness panics with this hint when they are missing): `cargo xtask build`,
//! i.e. the release gyre-host and the wasm32-wasip2 test components.

mod chaining;
mod deadline;
mod flags;
mod instances;
mod key_value;
mod load_errors;
mod metrics;
mod outbound;
mod routing;
mod sqlite;
mod variables;

use gyre_tests::{query_escape, HttpResponse, TestHost};
use serde_json::Value as Json;

/// A one-component manifest: the probe as component `probe` on `route`, with `component_toml`
/// appended to its `[component.probe]` table (e.g. `key_value_stores = ["default"]`).
pub fn probe_manifest(route: &str, component_toml: &str) -> String {
    format!(
        r#"spin_manifest_version = 2

[application]
name = "conformance"

[[trigger.http]]
route = "{route}"
component = "probe"

[component.probe]
source = "@probe.wasm"
{component_toml}
"#
    )
}

/// Asserts the status and returns the probe's JSON answer; shows the whole response otherwise.
#[track_caller]
pub fn expect_json(response: &HttpResponse, status: u16) -> Json {
    assert_eq!(response.status, status, "unexpected response: {response:?}");
    response.json()
}

/// Asserts that the probe reported the guest-visible error `variant` (a 422 from the probe).
#[track_caller]
pub fn expect_error(response: &HttpResponse, variant: &str) {
    let body = expect_json(response, 422);
    assert_eq!(body["error"], variant, "unexpected error: {body}");
}

/// `op=kv` on the probe mounted at `path`: `action` is get, set, delete, exists or keys.
pub fn kv(
    host: &TestHost,
    path: &str,
    label: &str,
    action: &str,
    key: &str,
    value: &str,
) -> HttpResponse {
    host.post(
        &format!(
            "{path}?op=kv&label={}&action={action}&key={}",
            query_escape(label),
            query_escape(key)
        ),
        value,
    )
}

/// `op=sql`: runs `statement` with `params` (a JSON array) on the database `label`.
pub fn sql(
    host: &TestHost,
    path: &str,
    label: &str,
    statement: &str,
    params: Json,
) -> HttpResponse {
    let body = serde_json::json!({ "sql": statement, "params": params });
    host.post(
        &format!("{path}?op=sql&label={}", query_escape(label)),
        body.to_string(),
    )
}

/// `op=var`: the component variable `name`.
pub fn var(host: &TestHost, path: &str, name: &str) -> HttpResponse {
    host.get(&format!("{path}?op=var&name={}", query_escape(name)))
}

/// `op=fetch`: the probe GETs `url` with outbound HTTP.
pub fn fetch(host: &TestHost, path: &str, url: &str) -> HttpResponse {
    host.get(&format!("{path}?op=fetch&url={}", query_escape(url)))
}
