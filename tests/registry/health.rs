//! Health and bootstrap: the first start gives the operator exactly one administrator token.

use crate::{expect_error, Gyre};

#[test]
fn health_answers_without_a_token() {
    let gyre = Gyre::start();
    let response = gyre.anonymous().get("/api/health?api-version=2022-07-31");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["status"], "ok");
}

#[test]
fn the_bootstrap_token_is_an_administrator_and_bootstrap_happens_only_once() {
    let gyre = Gyre::start();
    assert_eq!(gyre.admin().get("/api/roles").status, 200);
    let again = gyre.host().request_with_headers(
        "POST",
        "/internal/registry/bootstrap",
        &[("x-gyre-internal-secret", gyre.internal_secret())],
        b"",
    );
    expect_error(&again, 409);
}

#[test]
fn internal_endpoints_refuse_api_tokens_and_wrong_secrets() {
    let gyre = Gyre::start();
    let with_token = gyre.admin().request("POST", "/internal/registry/bootstrap", &[], b"");
    expect_error(&with_token, 401);
    let wrong = gyre.host().request_with_headers(
        "POST",
        "/internal/registry/bootstrap",
        &[("x-gyre-internal-secret", "not-the-secret")],
        b"",
    );
    expect_error(&wrong, 401);
}

#[test]
fn the_bridge_learns_whether_a_device_may_connect_and_with_which_keys() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let created = admin.put("/api/devices/thermostat-1", serde_json::json!({"displayName": "T1"}));
    assert_eq!(created.status, 200, "{}", created.body);
    let credentials = admin.get("/api/devices/thermostat-1/credentials").json();
    let path = "/internal/registry/devices/thermostat-1/connection";
    let secret = [("x-gyre-internal-secret", gyre.internal_secret())];

    let connection = gyre.host().request_with_headers("GET", path, &secret, b"");
    assert_eq!(connection.status, 200, "{}", connection.body);
    let connection = connection.json();
    assert_eq!(connection["mayConnect"], true);
    assert_eq!(connection["keys"][0], credentials["symmetricKey"]["primaryKey"]);
    assert_eq!(connection["keys"][1], credentials["symmetricKey"]["secondaryKey"]);

    // Blocked: the bridge must refuse it.
    let blocked = admin.patch("/api/devices/thermostat-1", serde_json::json!({"enabled": false}));
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    let connection = gyre.host().request_with_headers("GET", path, &secret, b"").json();
    assert_eq!(connection["mayConnect"], false);

    // Only the internal secret opens it; unknown devices are 404.
    expect_error(&gyre.admin().get(path), 401);
    let unknown = gyre.host().request_with_headers("GET", "/internal/registry/devices/nope/connection", &secret, b"");
    expect_error(&unknown, 404);
}
