//! Group ids, bodies, patches and the JSON shape.

use serde_json::{json, Value};

use super::*;

fn group_id(raw: &str) -> DeviceGroupId {
    DeviceGroupId::parse(raw).unwrap()
}

fn body() -> Value {
    json!({
        "displayName": "Simulated thermostats",
        "filter": "SELECT * FROM devices WHERE $template = \"dtmi:com:example:Thermostat;1\" AND $simulated = true",
    })
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

fn check(body: Value, expected: &[&str]) {
    let problems: Vec<String> = match GroupContent::parse(&group_id("g1"), &body) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(problems, expected, "{body}");
}

#[test]
fn group_ids_follow_iot_central() {
    let check = |raw: &str, valid: bool| {
        assert_eq!(DeviceGroupId::parse(raw).is_ok(), valid, "{raw:?}");
    };
    check("g1", true);
    check("My_group-2", true);
    check(&"a".repeat(255), true);
    check(&"a".repeat(256), false);
    check("", false);
    check("a b", false);
    check("a/b", false);
    check("x'; DROP TABLE device_groups; --", false);
    check("ünïcode", false);
    assert_eq!(
        DeviceGroupId::parse("a.b").unwrap_err().to_string(),
        "device group id must be 1 to 255 letters, digits, '_' or '-', found `a.b`"
    );
}

#[test]
fn bodies() {
    check(body(), &[]);
    check(with(body(), "id", json!("g1")), &[]);
    check(with(body(), "etag", json!("whatever")), &[]);
    check(with(body(), "description", json!("all of them")), &[]);
    check(with(body(), "organizations", json!([])), &[]);
    check(with(body(), "organizations", json!(["seattle"])), &[]);
    check(with(body(), "filter", json!("SELECT * FROM devices")), &[]);
    check(
        with(body(), "id", json!("g2")),
        &["$.id: `g2` differs from the id in the URL, `g1`"],
    );
    check(
        without(body(), "displayName"),
        &["$.displayName: is required"],
    );
    check(
        with(body(), "displayName", json!("  ")),
        &["$.displayName: must not be empty"],
    );
    check(
        with(body(), "displayName", json!(3)),
        &["$.displayName: expected a string, found a number"],
    );
    check(
        with(body(), "displayName", json!("x".repeat(256))),
        &["$.displayName: at most 255 characters"],
    );
    check(
        without(body(), "filter"),
        &["$.filter: is required: a query such as `SELECT * FROM devices WHERE $simulated = false`"],
    );
    check(
        with(body(), "filter", json!({"where": 1})),
        &["$.filter: expected a string, found an object"],
    );
    check(
        with(body(), "organizations", json!(["a1", "b2"])),
        &["$.organizations: at most one organization is supported, found 2"],
    );
    check(
        with(body(), "organizations", json!("seattle")),
        &["$.organizations: expected an array of organization ids, found a string"],
    );
    check(
        with(body(), "organizations", json!(["Seattle"])),
        &["$.organizations[0]: organization id must be 2 to 48 lower-case letters, digits or '-', not starting or ending with '-'"],
    );
    check(
        json!("SELECT * FROM devices"),
        &["$: a device group is a JSON object, found a string"],
    );
    // Every problem at once.
    let invalid = json!({"displayName": 1, "filter": 2, "description": [], "id": "g9"});
    let error = GroupContent::parse(&group_id("g1"), &invalid).unwrap_err();
    assert_eq!(error.problems.len(), 4, "{error}");
}

#[test]
fn a_bad_filter_says_where_and_why() {
    let error = GroupContent::parse(
        &group_id("g1"),
        &with(
            body(),
            "filter",
            json!("SELECT * FROM devices WHERE $simulated = "),
        ),
    )
    .unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].path, "$.filter");
    assert!(
        error.problems[0]
            .message
            .starts_with("at 41: expected a value"),
        "{error}"
    );

    let injection = "SELECT * FROM devices WHERE $id = 'x'; DROP TABLE devices; --";
    let error = GroupContent::parse(&group_id("g1"), &with(body(), "filter", json!(injection)))
        .unwrap_err();
    assert!(error.problems[0].message.starts_with("at "), "{error}");
}

fn group() -> DeviceGroup {
    let content = GroupContent::parse(
        &group_id("g1"),
        &with(
            with(body(), "organizations", json!(["seattle"])),
            "description",
            json!("d"),
        ),
    )
    .unwrap();
    DeviceGroup::create(
        group_id("g1"),
        content,
        "e1".into(),
        Timestamp::from_unix_millis(5),
    )
}

#[test]
fn the_response_has_iot_centrals_shape() {
    assert_eq!(
        DeviceGroupDto::from(&group()).to_json(),
        json!({
            "id": "g1",
            "etag": "e1",
            "displayName": "Simulated thermostats",
            "filter": body()["filter"],
            "description": "d",
            "organizations": ["seattle"],
        })
    );
}

#[test]
fn patches_merge_and_are_checked_whole() {
    let current = group();
    let mut merged = DeviceGroupDto::from(&current).to_json();
    merged["description"] = Value::Null;
    merged["organizations"] = Value::Null;
    merged["filter"] = json!("SELECT * FROM devices WHERE $displayName = 'x'");
    let content = GroupContent::parse_update(&current, &merged).unwrap();
    assert_eq!(content.description(), None);
    assert_eq!(content.organization(), None);
    assert_eq!(
        content.filter_text(),
        "SELECT * FROM devices WHERE $displayName = 'x'"
    );

    merged["displayName"] = Value::Null;
    merged["filter"] = json!("SELECT * FROM devices WHERE");
    let error = GroupContent::parse_update(&current, &merged).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["$.displayName", "$.filter"]);
}
