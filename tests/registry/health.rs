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
