//! `fermyon:spin/variables@2.0.0`: component variables rendered from templates over application
//! variables, `SPIN_VARIABLE_*` overriding defaults, required variables, and Spin's errors.

use gyre_tests::App;
use serde_json::json;

use crate::{expect_error, expect_json, var};

const VARIABLES_MANIFEST: &str = r#"spin_manifest_version = 2

[application]
name = "variables"

[variables]
name = { default = "world" }
punctuation = { default = "!" }

[[trigger.http]]
route = "/..."
component = "probe"

[component.probe]
source = "@probe.wasm"

[component.probe.variables]
greeting = "hello {{ name }}{{ punctuation }}"
literal = "no templates here"
"#;

#[test]
fn a_component_variable_renders_its_template_with_application_defaults() {
    let host = App::new(VARIABLES_MANIFEST).host().start();

    assert_eq!(
        expect_json(&var(&host, "/", "greeting"), 200),
        json!({ "value": "hello world!" })
    );
    assert_eq!(
        expect_json(&var(&host, "/", "literal"), 200),
        json!({ "value": "no templates here" })
    );
}

#[test]
fn a_spin_variable_environment_variable_overrides_the_default() {
    let host = App::new(VARIABLES_MANIFEST)
        .host()
        .env("SPIN_VARIABLE_NAME", "gyre")
        .start();

    assert_eq!(
        expect_json(&var(&host, "/", "greeting"), 200),
        json!({ "value": "hello gyre!" })
    );
}

#[test]
fn getting_an_undeclared_component_variable_is_undefined() {
    let host = App::new(VARIABLES_MANIFEST).host().start();

    expect_error(&var(&host, "/", "nonexistent"), "undefined");
}

#[test]
fn application_variables_are_visible_only_through_component_variables() {
    let host = App::new(VARIABLES_MANIFEST).host().start();

    expect_error(&var(&host, "/", "name"), "undefined");
}

#[test]
fn a_name_that_is_not_a_valid_variable_name_is_invalid_name() {
    let host = App::new(VARIABLES_MANIFEST).host().start();

    expect_error(&var(&host, "/", "Not-Valid"), "invalid-name");
}

#[test]
fn a_missing_required_variable_stops_the_start_and_is_named() {
    let app = App::new(
        r#"spin_manifest_version = 2

[application]
name = "required"

[variables]
api_token = { required = true }

[[trigger.http]]
route = "/..."
component = "probe"

[component.probe]
source = "@probe.wasm"

[component.probe.variables]
token = "{{ api_token }}"
"#,
    );

    let failed = app.host().start_expecting_failure();

    assert!(!failed.status.success(), "{failed:?}");
    assert!(
        failed.stderr.contains("api_token"),
        "stderr should name the variable: {}",
        failed.stderr
    );
}

#[test]
fn a_required_variable_provided_by_the_environment_is_used() {
    let app = App::new(
        r#"spin_manifest_version = 2

[application]
name = "required"

[variables]
api_token = { required = true }

[[trigger.http]]
route = "/..."
component = "probe"

[component.probe]
source = "@probe.wasm"

[component.probe.variables]
token = "{{ api_token }}"
"#,
    );

    let host = app.host().env("SPIN_VARIABLE_API_TOKEN", "s3cret").start();

    assert_eq!(
        expect_json(&var(&host, "/", "token"), 200),
        json!({ "value": "s3cret" })
    );
}
