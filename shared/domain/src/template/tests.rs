//! Template bodies, patches, the JSON shape, the delete rule and list parameters.

use serde_json::{json, Value};

use super::*;

const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";

fn dtmi(raw: &str) -> Dtmi {
    Dtmi::parse(raw).unwrap()
}

fn at(unix_millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(unix_millis)
}

/// The public thermostat model of the IoT Plug and Play samples, written out.
pub(crate) fn thermostat_model() -> Value {
    serde_json::from_str(include_str!("../dtdl/fixtures/thermostat.json"))
        .expect("the thermostat fixture is JSON")
}

fn body() -> Value {
    json!({
        "@type": ["ModelDefinition", "DeviceModel"],
        "displayName": "Thermostat",
        "description": "A thermostat",
        "capabilityModel": thermostat_model(),
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

/// Parses `body` for the thermostat id and compares the problems' `path: message` texts.
fn check(body: Value, expected: &[&str]) {
    let result = TemplateContent::parse(&dtmi(THERMOSTAT), &body);
    let problems: Vec<String> = match result {
        Ok(_) => Vec::new(),
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(problems, expected, "{body}");
}

#[test]
fn a_body_with_a_valid_model_is_accepted_as_sent() {
    let content = TemplateContent::parse(&dtmi(THERMOSTAT), &body()).unwrap();
    assert_eq!(content.display_name(), Some("Thermostat"));
    assert_eq!(content.description(), Some("A thermostat"));
    assert_eq!(content.capability_model(), &thermostat_model());
    assert_eq!(content.model().unwrap().id(), &dtmi(THERMOSTAT));
}

#[test]
fn envelope_problems() {
    check(with(body(), "@id", json!(THERMOSTAT)), &[]);
    check(with(body(), "@id", json!(null)), &[]);
    check(without(body(), "displayName"), &[]);
    check(with(body(), "description", json!(null)), &[]);
    check(with(body(), "etag", json!("ignored")), &[]);
    check(with(body(), "unknown", json!(1)), &[]);
    check(
        with(body(), "@type", json!(["DeviceModel", "ModelDefinition"])),
        &[],
    );
    check(
        with(body(), "@id", json!("dtmi:com:example:Other;1")),
        &["$['@id']: `dtmi:com:example:Other;1` differs from the id in the URL, `dtmi:com:example:Thermostat;1`"],
    );
    check(
        with(body(), "@id", json!(7)),
        &["$['@id']: expected a string, found a number"],
    );
    check(
        without(body(), "@type"),
        &[r#"$['@type']: is required: ["ModelDefinition", "DeviceModel"]"#],
    );
    check(
        with(body(), "@type", json!("DeviceModel")),
        &[r#"$['@type']: expected ["ModelDefinition", "DeviceModel"], found a string"#],
    );
    check(
        with(body(), "@type", json!(["DeviceModel"])),
        &["$['@type']: must include `ModelDefinition`"],
    );
    check(
        with(
            body(),
            "@type",
            json!([
                "ModelDefinition",
                "DeviceModel",
                "EdgeModel",
                3,
                "DeviceModel"
            ]),
        ),
        &[
            r#"$['@type'][2]: `EdgeModel` is not supported; a device template's types are exactly ["ModelDefinition", "DeviceModel"]"#,
            "$['@type'][3]: expected a string, found a number",
            "$['@type'][4]: `DeviceModel` appears twice",
        ],
    );
    check(
        with(body(), "displayName", json!(["x"])),
        &["$.displayName: expected a string, found an array"],
    );
    check(
        with(body(), "description", json!(true)),
        &["$.description: expected a string, found a boolean"],
    );
    check(
        without(body(), "capabilityModel"),
        &["$.capabilityModel: is required"],
    );
    check(
        json!([1]),
        &["$: a device template is a JSON object, found an array"],
    );
}

#[test]
fn every_problem_is_reported_at_once_with_paths_rooted_at_the_body() {
    let mut model = thermostat_model();
    model["contents"][0]["schema"] = json!("doubel");
    model["contents"][1]["name"] = json!("target temperature");
    let invalid = with(
        with(body(), "capabilityModel", model),
        "displayName",
        json!(1),
    );
    let error = TemplateContent::parse(&dtmi(THERMOSTAT), &invalid).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"$.displayName"), "{error}");
    assert!(
        paths.contains(&"$.capabilityModel.contents[0].schema"),
        "{error}"
    );
    assert!(
        paths.contains(&"$.capabilityModel.contents[1].name"),
        "{error}"
    );
    assert!(
        error.to_string().starts_with("invalid device template: "),
        "{error}"
    );

    let error = TemplateContent::parse(
        &dtmi(THERMOSTAT),
        &with(body(), "capabilityModel", json!("nope")),
    )
    .unwrap_err();
    assert!(
        error.problems[0].path.starts_with("$.capabilityModel"),
        "{error}"
    );
}

fn stored(model: Value) -> DeviceTemplate {
    DeviceTemplate::create(
        dtmi(THERMOSTAT),
        TemplateContent::from_stored(Some("Old".into()), None, model),
        "etag-1".into(),
        at(1_000),
    )
}

#[test]
fn a_patch_merges_and_revalidates_only_a_changed_model() {
    // A stored model the current parser rejects still allows renaming the template.
    let current = stored(json!({"not": "dtdl"}));
    let mut merged = DeviceTemplateDto::from(&current).to_json();
    merged["displayName"] = json!("New");
    let content = TemplateContent::parse_update(&current, &merged).unwrap();
    assert_eq!(content.display_name(), Some("New"));
    let updated = current.replaced(content, "etag-2".into(), at(2_000));
    assert_eq!(updated.created_at(), at(1_000));
    assert_eq!(updated.updated_at(), at(2_000));
    assert_eq!(updated.etag(), "etag-2");

    // A changed model is parsed.
    merged["capabilityModel"] = json!({"still": "not dtdl"});
    let error = TemplateContent::parse_update(&current, &merged).unwrap_err();
    assert!(
        error.problems[0].path.starts_with("$.capabilityModel"),
        "{error}"
    );

    // The id cannot change through a patch.
    let current = stored(thermostat_model());
    let mut merged = DeviceTemplateDto::from(&current).to_json();
    merged["@id"] = json!("dtmi:com:example:Other;1");
    assert!(TemplateContent::parse_update(&current, &merged).is_err());
}

#[test]
fn the_response_has_iot_centrals_shape() {
    let template = stored(thermostat_model());
    assert_eq!(
        DeviceTemplateDto::from(&template).to_json(),
        json!({
            "@id": THERMOSTAT,
            "@type": ["ModelDefinition", "DeviceModel"],
            "etag": "etag-1",
            "displayName": "Old",
            "capabilityModel": thermostat_model(),
        })
    );
}

#[test]
fn a_template_in_use_cannot_be_deleted() {
    let id = dtmi(THERMOSTAT);
    assert_eq!(check_deletable(&id, 0), Ok(()));
    assert_eq!(
        check_deletable(&id, 1).unwrap_err().to_string(),
        "device template `dtmi:com:example:Thermostat;1` is used by 1 device; delete them or \
         assign them another template first"
    );
    assert!(check_deletable(&id, 3)
        .unwrap_err()
        .to_string()
        .contains("used by 3 devices"));
}

#[test]
fn template_ids_in_urls_are_dtmis() {
    assert_eq!(parse_template_id(THERMOSTAT), Ok(dtmi(THERMOSTAT)));
    let error = parse_template_id("thermostat'; DROP TABLE devices; --").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("device template id `thermostat'"),
        "{error}"
    );
}

fn check_list(filter: Option<&str>, orderby: Option<&str>, expected: Result<&str, &str>) {
    let actual = TemplateListQuery::parse(filter, orderby)
        .map(|query| format!("{:?} {:?}", query.filters(), query.order()))
        .map_err(|error| error.to_string());
    let expected = expected.map(str::to_owned).map_err(str::to_owned);
    assert_eq!(actual, expected, "{filter:?} {orderby:?}");
}

#[test]
fn list_filters_and_orders() {
    let by_id = "TemplateOrder { field: Id, descending: false }";
    check_list(None, None, Ok(&format!("[] {by_id}")));
    check_list(
        Some("displayName eq 'It''s'"),
        None,
        Ok(&format!(
            r#"[TemplateFilter {{ field: DisplayName, op: Eq, value: Some("It's") }}] {by_id}"#
        )),
    );
    check_list(
        Some("startswith(@id, 'dtmi:com') AND contains(displayName,'x') and id ne null"),
        Some("displayName desc"),
        Ok(
            r#"[TemplateFilter { field: Id, op: StartsWith, value: Some("dtmi:com") }, TemplateFilter { field: DisplayName, op: Contains, value: Some("x") }, TemplateFilter { field: Id, op: Ne, value: None }] TemplateOrder { field: DisplayName, descending: true }"#,
        ),
    );
    check_list(
        Some("displayName eq"),
        None,
        Err("$filter at 14: expected a quoted string such as 'Thermostat'"),
    );
    check_list(
        Some("displayname eq 'x'"),
        None,
        Err("$filter at 0: expected a field: `id` or `displayName`"),
    );
    check_list(
        Some("id eq 'x' or id eq 'y'"),
        None,
        Err("$filter at 10: expected `and` or the end of the filter"),
    );
    check_list(
        Some("id eq 'x"),
        None,
        Err("$filter at 6: unterminated string"),
    );
    check_list(
        Some("id eq 'x'; DROP TABLE device_templates"),
        None,
        Err("$filter at 9: unexpected character `;`"),
    );
    check_list(
        Some("id gt 'x'"),
        None,
        Err("$filter at 3: expected `eq` or `ne`"),
    );
    let eleven = ["id ne 'x'"; 11].join(" and ");
    check_list(Some(&eleven), None, Err("$filter at 140: at most 10 terms"));
    check_list(
        None,
        Some("id asc, displayName"),
        Err("$orderby at 6: Gyre orders device templates by one field only"),
    );
    check_list(
        None,
        Some("id sideways"),
        Err("$orderby at 3: expected `asc`, `desc` or the end"),
    );
    check_list(
        None,
        Some("ID"),
        Err("$orderby at 0: expected a field: `id` or `displayName`"),
    );
}

#[test]
fn cursors_round_trip_and_refuse_foreign_tokens() {
    let by_id = TemplateOrder {
        field: TemplateField::Id,
        descending: false,
    };
    let by_name = TemplateOrder {
        field: TemplateField::DisplayName,
        descending: true,
    };
    let id = dtmi("dtmi:com:example:Thermostat;1.2");
    for (name, order) in [
        (Some("Thermo.stat ☃"), by_name),
        (None, by_name),
        (None, by_id),
    ] {
        let cursor = TemplateCursor::after(&id, name, order);
        assert_eq!(TemplateCursor::decode(&cursor.encode(), order), Ok(cursor));
    }
    assert_eq!(
        TemplateCursor::after(&id, None, by_id).encode(),
        "dtmi:com:example:Thermostat;1.2"
    );
    assert!(TemplateCursor::decode("dtmi:com:example:Thermostat;1", by_name).is_err());
    assert!(TemplateCursor::decode("dn.!!.dtmi:a;1", by_name).is_err());
    assert!(TemplateCursor::decode("x", by_id).is_err());
}
