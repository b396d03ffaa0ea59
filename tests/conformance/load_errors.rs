//! Load errors: a manifest the host cannot run is refused before serving, with exit code 1 and
//! every problem listed at once, each naming its component (or the manifest field) to fix.

use gyre_tests::{App, FailedStart};

#[track_caller]
fn assert_refused(failed: &FailedStart) {
    assert_eq!(
        failed.status.code(),
        Some(1),
        "exit code should be 1: {failed:?}"
    );
    assert!(
        !failed.stderr.trim().is_empty(),
        "stderr should explain the problem: {failed:?}"
    );
}

#[track_caller]
fn assert_mentions(failed: &FailedStart, needles: &[&str]) {
    for needle in needles {
        assert!(
            failed.stderr.contains(needle),
            "stderr should mention {needle:?}:\n{}",
            failed.stderr
        );
    }
}

fn one_component(component_toml: &str) -> String {
    format!(
        r#"spin_manifest_version = 2

[application]
name = "broken"

[[trigger.http]]
route = "/..."
component = "culprit"

[component.culprit]
{component_toml}
"#
    )
}

#[test]
fn a_missing_wasm_file_is_reported_with_its_component() {
    let failed = App::new(&one_component(r#"source = "does/not/exist.wasm""#))
        .host()
        .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["culprit", "does/not/exist.wasm"]);
}

#[test]
fn a_component_importing_an_interface_the_host_lacks_is_refused() {
    let failed = App::new(&one_component(r#"source = "@unsupported.wasm""#))
        .host()
        .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["culprit", "mqtt"]);
}

#[test]
fn a_manifest_with_a_toml_syntax_error_is_refused() {
    let failed = App::new("spin_manifest_version = 2\n[application\nname = \"oops\"\n")
        .host()
        .start_expecting_failure();

    assert_refused(&failed);
}

#[test]
fn a_version_1_manifest_is_refused_naming_the_field() {
    let failed = App::new(
        r#"spin_manifest_version = "1"
name = "old"
trigger = { type = "http", base = "/" }

[[component]]
id = "old"
source = "@probe.wasm"
[component.trigger]
route = "/..."
"#,
    )
    .host()
    .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["spin_manifest_version"]);
}

#[test]
fn an_integer_version_1_manifest_is_refused_naming_the_field() {
    let failed = App::new("spin_manifest_version = 1\nname = \"old\"\n")
        .host()
        .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["spin_manifest_version"]);
}

#[test]
fn a_key_value_label_that_is_neither_default_nor_configured_is_refused() {
    let failed = App::new(&one_component(
        r#"source = "@probe.wasm"
key_value_stores = ["default", "mystery-store"]"#,
    ))
    .host()
    .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["culprit", "mystery-store"]);
}

#[test]
fn a_sqlite_label_that_is_neither_default_nor_configured_is_refused() {
    let failed = App::new(&one_component(
        r#"source = "@probe.wasm"
sqlite_databases = ["mystery-db"]"#,
    ))
    .host()
    .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["culprit", "mystery-db"]);
}

#[test]
fn two_components_on_the_same_route_are_refused() {
    let failed = App::new(
        r#"spin_manifest_version = 2

[application]
name = "conflict"

[[trigger.http]]
route = "/same/..."
component = "first"

[[trigger.http]]
route = "/same/..."
component = "second"

[component.first]
source = "@probe.wasm"

[component.second]
source = "@probe.wasm"
"#,
    )
    .host()
    .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["/same/...", "first", "second"]);
}

#[test]
fn every_problem_is_reported_in_one_start() {
    let failed = App::new(
        r#"spin_manifest_version = 2

[application]
name = "many-problems"

[[trigger.http]]
route = "/a/..."
component = "missing-file"

[[trigger.http]]
route = "/b/..."
component = "bad-import"

[[trigger.http]]
route = "/c/..."
component = "unknown-store"

[[trigger.http]]
route = "/d/..."
component = "unknown-database"

[[trigger.http]]
route = "/e/..."
component = "healthy"

[component.missing-file]
source = "nowhere/missing.wasm"

[component.bad-import]
source = "@unsupported.wasm"

[component.unknown-store]
source = "@probe.wasm"
key_value_stores = ["ghost-store"]

[component.unknown-database]
source = "@probe.wasm"
sqlite_databases = ["ghost-db"]

[component.healthy]
source = "@probe.wasm"
key_value_stores = ["default"]
sqlite_databases = ["default"]
"#,
    )
    .host()
    .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(
        &failed,
        &[
            "missing-file",
            "bad-import",
            "unknown-store",
            "ghost-store",
            "unknown-database",
            "ghost-db",
        ],
    );
}

#[test]
fn a_route_conflict_is_reported_together_with_the_other_problems() {
    let failed = App::new(
        r#"spin_manifest_version = 2

[application]
name = "conflict-and-more"

[[trigger.http]]
route = "/same/..."
component = "first"

[[trigger.http]]
route = "/same/..."
component = "second"

[[trigger.http]]
route = "/other/..."
component = "missing-file"

[component.first]
source = "@probe.wasm"

[component.second]
source = "@probe.wasm"
key_value_stores = ["ghost-store"]

[component.missing-file]
source = "nowhere/missing.wasm"
"#,
    )
    .host()
    .start_expecting_failure();

    assert_refused(&failed);
    assert_mentions(&failed, &["/same/...", "ghost-store", "missing-file"]);
}
