//! Service chaining: `http://<component>.spin.internal` requests are dispatched in process, need
//! their own `allowed_outbound_hosts` entry, and are the only way to reach a private component.

use gyre_tests::TestHost;

use crate::{expect_error, expect_json, fetch};

const CHAINING_MANIFEST: &str = r#"spin_manifest_version = 2

[application]
name = "chaining"

[[trigger.http]]
route = "/front/..."
component = "front"

[[trigger.http]]
route = "/narrow/..."
component = "narrow"

[[trigger.http]]
route = "/isolated/..."
component = "isolated"

[[trigger.http]]
route = "/public/..."
component = "public"

[[trigger.http]]
route = { private = true }
component = "hidden"

[component.front]
source = "@probe.wasm"
allowed_outbound_hosts = ["http://*.spin.internal"]

[component.narrow]
source = "@probe.wasm"
allowed_outbound_hosts = ["http://hidden.spin.internal"]

[component.isolated]
source = "@probe.wasm"

[component.public]
source = "@probe.wasm"

[component.hidden]
source = "@probe.wasm"
"#;

#[test]
fn a_private_component_is_not_reachable_from_outside() {
    let host = TestHost::start(CHAINING_MANIFEST);

    for path in ["/", "/hidden", "/hidden/x", "/anything"] {
        assert_eq!(host.get(path).status, 404, "{path}");
    }
}

#[test]
fn a_component_reaches_a_private_component_through_spin_internal() {
    let host = TestHost::start(CHAINING_MANIFEST);

    let fetched = expect_json(
        &fetch(
            &host,
            "/front",
            "http://hidden.spin.internal/inner/path?op=echo",
        ),
        200,
    );

    assert_eq!(fetched["status"], 200, "{fetched}");
    let echo: serde_json::Value =
        serde_json::from_str(fetched["body"].as_str().unwrap_or_default()).unwrap_or_else(
            |error| panic!("the callee should answer the probe's echo JSON ({error}): {fetched}"),
        );
    assert_eq!(echo["path"], "/inner/path", "{echo}");
}

#[test]
fn a_component_reaches_a_public_component_through_spin_internal() {
    let host = TestHost::start(CHAINING_MANIFEST);

    let fetched = expect_json(
        &fetch(
            &host,
            "/front",
            "http://public.spin.internal/public/x?op=static",
        ),
        200,
    );

    assert_eq!(fetched["status"], 200, "{fetched}");
    assert_eq!(fetched["body"], r#"{"calls":1}"#, "{fetched}");
}

#[test]
fn chaining_to_a_component_not_in_the_allowed_hosts_is_denied() {
    let host = TestHost::start(CHAINING_MANIFEST);

    expect_json(
        &fetch(&host, "/narrow", "http://hidden.spin.internal/"),
        200,
    );
    expect_error(
        &fetch(&host, "/narrow", "http://public.spin.internal/public/x"),
        "HttpRequestDenied",
    );
}

#[test]
fn chaining_without_any_allowed_hosts_is_denied() {
    let host = TestHost::start(CHAINING_MANIFEST);

    expect_error(
        &fetch(&host, "/isolated", "http://hidden.spin.internal/"),
        "HttpRequestDenied",
    );
}

#[test]
fn chaining_to_an_unknown_component_fails_without_reaching_the_network() {
    let host = TestHost::start(CHAINING_MANIFEST);

    let response = fetch(&host, "/front", "http://nobody.spin.internal/");

    // Spin answers a request for an unknown component with an error or a 404, never a 200.
    match response.status {
        200 => assert_ne!(response.json()["status"], 200, "{response:?}"),
        422 => {}
        other => panic!("expected the probe to report a failed fetch, got {other}: {response:?}"),
    }
}
