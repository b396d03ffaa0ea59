//! Routing: exact routes, trailing `/...` wildcards, `:name` segments, the most specific match,
//! 404 for everything else, and the `spin-*` request headers a component receives.

use std::time::Duration;

use gyre_tests::TestHost;

use crate::expect_json;

/// The probe under several ids, one per kind of route.
const ROUTES_MANIFEST: &str = r#"spin_manifest_version = 2

[application]
name = "routing"

[[trigger.http]]
route = "/exact"
component = "exact"

[[trigger.http]]
route = "/echo/..."
component = "echo"

[[trigger.http]]
route = "/users/:id"
component = "user"

[[trigger.http]]
route = "/shops/:shop/items/..."
component = "shop-items"

[component.exact]
source = "@probe.wasm"

[component.echo]
source = "@probe.wasm"

[component.user]
source = "@probe.wasm"

[component.shop-items]
source = "@probe.wasm"
"#;

#[test]
fn an_exact_route_matches_only_its_own_path() {
    let host = TestHost::start(ROUTES_MANIFEST);

    assert_eq!(host.get("/exact").status, 200);
    assert_eq!(host.get("/exact/more").status, 404);
    assert_eq!(host.get("/exactly").status, 404);
    assert_eq!(host.get("/").status, 404);
    assert_eq!(host.get("/nothing/here").status, 404);
}

#[test]
fn a_wildcard_route_matches_its_prefix_and_everything_below_it() {
    let host = TestHost::start(ROUTES_MANIFEST);

    for path in ["/echo", "/echo/", "/echo/a", "/echo/a/b/c"] {
        let echo = expect_json(&host.get(path), 200);
        assert_eq!(
            echo["headers"]["spin-matched-route"], "/echo/...",
            "{path}: {echo}"
        );
    }
    assert_eq!(host.get("/echoes").status, 404);
}

#[test]
fn a_named_segment_is_passed_as_a_path_match_header() {
    let host = TestHost::start(ROUTES_MANIFEST);

    let echo = expect_json(&host.get("/users/42"), 200);
    assert_eq!(echo["headers"]["spin-path-match-id"], "42", "{echo}");
    assert_eq!(
        echo["headers"]["spin-matched-route"], "/users/:id",
        "{echo}"
    );

    assert_eq!(host.get("/users").status, 404);
    assert_eq!(host.get("/users/42/more").status, 404);
}

#[test]
fn named_segments_combine_with_a_trailing_wildcard() {
    let host = TestHost::start(ROUTES_MANIFEST);

    let echo = expect_json(&host.get("/shops/acme/items/7/details"), 200);
    let headers = &echo["headers"];
    assert_eq!(headers["spin-path-match-shop"], "acme", "{echo}");
    assert_eq!(headers["spin-path-info"], "/7/details", "{echo}");
    assert_eq!(
        headers["spin-matched-route"], "/shops/:shop/items/...",
        "{echo}"
    );
}

#[test]
fn the_most_specific_route_wins() {
    let host = TestHost::start(
        r#"spin_manifest_version = 2

[application]
name = "specificity"

[[trigger.http]]
route = "/..."
component = "everything"

[[trigger.http]]
route = "/api/..."
component = "api"

[[trigger.http]]
route = "/api/exact"
component = "api-exact"

[component.everything]
source = "@probe.wasm"

[component.api]
source = "@probe.wasm"

[component.api-exact]
source = "@probe.wasm"
"#,
    );

    let matched =
        |path: &str| expect_json(&host.get(path), 200)["headers"]["spin-matched-route"].clone();
    assert_eq!(matched("/api/exact"), "/api/exact");
    assert_eq!(matched("/api/exact/below"), "/api/...");
    assert_eq!(matched("/api/other"), "/api/...");
    assert_eq!(matched("/api"), "/api/...");
    assert_eq!(matched("/apis"), "/...");
    assert_eq!(matched("/"), "/...");
}

#[test]
fn a_component_receives_the_spin_request_headers() {
    let host = TestHost::start(ROUTES_MANIFEST);

    let echo = expect_json(&host.get("/echo/a/b?x=1"), 200);
    let headers = &echo["headers"];
    assert_eq!(
        headers["spin-full-url"],
        host.url("/echo/a/b?x=1").as_str(),
        "{echo}"
    );
    assert_eq!(headers["spin-path-info"], "/a/b", "{echo}");
    assert_eq!(headers["spin-matched-route"], "/echo/...", "{echo}");
    assert_eq!(headers["spin-component-route"], "/echo", "{echo}");
    assert_eq!(headers["spin-raw-component-route"], "/echo/...", "{echo}");
    assert_eq!(headers["spin-base-path"], "/", "{echo}");
    let client_addr = headers["spin-client-addr"].as_str().unwrap_or_default();
    assert!(
        client_addr.starts_with("127.0.0.1:"),
        "spin-client-addr should be the peer address: {echo}"
    );
}

#[test]
fn the_request_method_path_and_body_reach_the_component() {
    let host = TestHost::start(ROUTES_MANIFEST);

    let echo = expect_json(
        &host.request("PUT", "/echo/thing?x=1", b"twelve bytes"),
        200,
    );
    assert_eq!(echo["method"], "PUT", "{echo}");
    assert_eq!(echo["path"], "/echo/thing", "{echo}");
    assert_eq!(echo["query"], "x=1", "{echo}");
    assert_eq!(echo["body_len"], 12, "{echo}");
}

#[test]
fn the_available_routes_are_listed_on_stdout() {
    let host = TestHost::start(ROUTES_MANIFEST);

    let base = host.base_url();
    for expected in [
        format!("exact: {base}/exact"),
        format!("echo: {base}/echo (wildcard)"),
        format!("user: {base}/users/:id"),
    ] {
        host.wait_for_stdout(Duration::from_secs(5), |line| line.trim() == expected);
    }
}
