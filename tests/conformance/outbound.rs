//! Outbound HTTP (`wasi:http/outgoing-handler`): only to `allowed_outbound_hosts`, which may be
//! templated with variables; everything else fails with `HttpRequestDenied` and never leaves the
//! host.

use gyre_tests::{App, TestHost, Upstream};
use serde_json::json;

use crate::{expect_error, expect_json, fetch, probe_manifest};

#[test]
fn a_request_to_an_allowed_host_reaches_it_and_returns_its_answer() {
    let upstream = Upstream::start("upstream says hi");
    let host = TestHost::start(&probe_manifest(
        "/...",
        &format!(r#"allowed_outbound_hosts = ["{}"]"#, upstream.base_url()),
    ));

    let fetched = expect_json(
        &fetch(
            &host,
            "/",
            &format!("{}/some/path?q=1", upstream.base_url()),
        ),
        200,
    );

    assert_eq!(
        fetched,
        json!({ "status": 200, "body": "upstream says hi" })
    );
    assert_eq!(
        upstream.received(),
        vec!["GET /some/path?q=1 HTTP/1.1".to_owned()]
    );
}

#[test]
fn a_request_to_a_host_not_in_the_list_is_denied_and_never_sent() {
    let allowed = Upstream::start("allowed");
    let forbidden = Upstream::start("forbidden");
    let host = TestHost::start(&probe_manifest(
        "/...",
        &format!(r#"allowed_outbound_hosts = ["{}"]"#, allowed.base_url()),
    ));

    expect_error(
        &fetch(&host, "/", &format!("{}/", forbidden.base_url())),
        "HttpRequestDenied",
    );

    assert!(
        forbidden.received().is_empty(),
        "the denied request reached the server: {:?}",
        forbidden.received()
    );
}

#[test]
fn a_component_without_allowed_outbound_hosts_cannot_send_anything() {
    let upstream = Upstream::start("unreachable");
    let host = TestHost::start(&probe_manifest("/...", ""));

    expect_error(
        &fetch(&host, "/", &format!("{}/", upstream.base_url())),
        "HttpRequestDenied",
    );

    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
}

#[test]
fn an_allowed_host_may_be_templated_with_a_variable() {
    let upstream = Upstream::start("templated");
    // The variable exists both at application and component level, so the template resolves
    // whichever scope the host looks in (Spin's docs show application variables).
    let app = App::new(
        r#"spin_manifest_version = 2

[application]
name = "templated-outbound"

[variables]
upstream_port = { required = true }

[[trigger.http]]
route = "/..."
component = "probe"

[component.probe]
source = "@probe.wasm"
allowed_outbound_hosts = ["http://127.0.0.1:{{ upstream_port }}"]

[component.probe.variables]
upstream_port = "{{ upstream_port }}"
"#,
    );
    let other = Upstream::start("other port");
    let host = app
        .host()
        .env("SPIN_VARIABLE_UPSTREAM_PORT", &upstream.port().to_string())
        .start();

    let fetched = expect_json(
        &fetch(&host, "/", &format!("{}/", upstream.base_url())),
        200,
    );
    assert_eq!(fetched["body"], "templated");
    expect_error(
        &fetch(&host, "/", &format!("{}/", other.base_url())),
        "HttpRequestDenied",
    );
}

#[test]
fn the_scheme_is_part_of_the_permission() {
    let upstream = Upstream::start("plain http");
    let host = TestHost::start(&probe_manifest(
        "/...",
        &format!(
            r#"allowed_outbound_hosts = ["https://127.0.0.1:{}"]"#,
            upstream.port()
        ),
    ));

    expect_error(
        &fetch(&host, "/", &format!("{}/", upstream.base_url())),
        "HttpRequestDenied",
    );
}
