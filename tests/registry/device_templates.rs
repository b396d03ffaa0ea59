//! Device templates, as a builder publishes them and operators use them: the public thermostat
//! model, invalid models (every problem listed), renames, paging and filters, the "in use"
//! rule, and bad input that must change nothing.

use serde_json::{json, Value};

use crate::{expect_error, Client, Gyre};

pub(crate) const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";

/// The public IoT Plug and Play thermostat model (`dtmi:com:example:Thermostat;1`), written out.
pub(crate) fn thermostat_model() -> Value {
    serde_json::from_str(include_str!(
        "../../shared/domain/src/dtdl/fixtures/thermostat.json"
    ))
    .expect("the thermostat fixture is JSON")
}

/// A `PUT /deviceTemplates` body around `model`.
pub(crate) fn template_body(display_name: &str, model: Value) -> Value {
    json!({
        "@type": ["ModelDefinition", "DeviceModel"],
        "displayName": display_name,
        "description": "Published by the e2e tests",
        "capabilityModel": model,
    })
}

/// Publishes the thermostat template as `client`.
pub(crate) fn publish_thermostat(client: &Client<'_>) -> Value {
    let response = client.put(
        &template_path(THERMOSTAT),
        template_body("Thermostat", thermostat_model()),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

pub(crate) fn template_path(id: &str) -> String {
    format!("/api/deviceTemplates/{id}")
}

/// A minimal valid Interface with the given id.
fn small_model(id: &str) -> Value {
    json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": id,
        "@type": "Interface",
        "contents": [{ "@type": "Telemetry", "name": "t", "schema": "double" }],
    })
}

/// Every id of a collection, following `nextLink` to the end.
fn all_ids(client: &Client<'_>, first: &str, id_field: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut n_pages = 0;
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        let response = client.get(&path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        let body = response.json();
        n_pages += 1;
        for item in body["value"].as_array().expect("value") {
            ids.push(item[id_field].as_str().expect("id").to_owned());
        }
        next = body["nextLink"].as_str().map(|link| {
            let start = link.find("/api/").expect("nextLink holds the /api path");
            link[start..].to_owned()
        });
    }
    (ids, n_pages)
}

#[test]
fn a_builder_publishes_the_thermostat_and_operators_read_it() {
    let gyre = Gyre::start();
    let builder = gyre.token_with_role("builder");
    let operator = gyre.token_with_role("operator");

    let published = publish_thermostat(&builder);
    assert_eq!(published["@id"], THERMOSTAT);
    assert_eq!(
        published["@type"],
        json!(["ModelDefinition", "DeviceModel"])
    );
    assert_eq!(published["displayName"], "Thermostat");
    assert_eq!(published["description"], "Published by the e2e tests");
    assert_eq!(published["capabilityModel"], thermostat_model());
    assert!(published["etag"]
        .as_str()
        .is_some_and(|etag| !etag.is_empty()));

    let read = operator.get(&template_path(THERMOSTAT));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), published);
    // Clients that percent-encode the DTMI's ':' and ';' reach the same template.
    let encoded = operator.get("/api/deviceTemplates/dtmi%3Acom%3Aexample%3AThermostat%3B1");
    assert_eq!(encoded.status, 200, "{}", encoded.body);
    assert_eq!(encoded.json(), published);

    let listed = operator.get("/api/deviceTemplates?api-version=2022-07-31");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json(), json!({ "value": [published] }));

    // Operators read templates but do not manage them.
    let refused = operator.put(
        &template_path("dtmi:com:example:Other;1"),
        template_body("Other", small_model("dtmi:com:example:Other;1")),
    );
    expect_error(&refused, 403);
    expect_error(&operator.delete(&template_path(THERMOSTAT)), 403);
    assert_eq!(operator.get(&template_path(THERMOSTAT)).json(), published);
}

#[test]
fn an_invalid_model_is_refused_with_every_problem_listed() {
    let gyre = Gyre::start();
    let builder = gyre.token_with_role("builder");
    let mut model = thermostat_model();
    model["contents"][0]["schema"] = json!("doubel");
    model["contents"][1]["name"] = json!("target temperature");
    model["contents"][3]["request"]["schema"] = json!({ "@type": "Enum" });
    let mut body = template_body("Broken", model);
    body["@type"] = json!(["DeviceModel"]);
    body["@id"] = json!("dtmi:com:example:Elsewhere;1");

    let response = builder.put(&template_path(THERMOSTAT), body);
    assert_eq!(expect_error(&response, 400), "BadRequest");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        "$['@id']",
        "$['@type']",
        "$.capabilityModel.contents[0].schema",
        "$.capabilityModel.contents[1].name",
        "$.capabilityModel.contents[3].request.schema",
    ] {
        assert!(
            message.contains(&format!("{path}: ")),
            "no `{path}` in: {message}"
        );
    }
    // Nothing was stored.
    expect_error(&builder.get(&template_path(THERMOSTAT)), 404);
}

#[test]
fn a_builder_renames_a_template_and_patches_are_checked() {
    let gyre = Gyre::start();
    let builder = gyre.token_with_role("builder");
    let published = publish_thermostat(&builder);
    let path = template_path(THERMOSTAT);

    let renamed = builder.patch_merge(
        &path,
        json!({ "displayName": "Lobby thermostat", "description": null }),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let renamed = renamed.json();
    assert_eq!(renamed["displayName"], "Lobby thermostat");
    assert!(renamed.get("description").is_none(), "{renamed}");
    assert_eq!(renamed["capabilityModel"], thermostat_model());
    assert_ne!(renamed["etag"], published["etag"]);

    // A changed model is validated again; a bad one changes nothing.
    let bad = builder.patch(&path, json!({ "capabilityModel": { "contents": "none" } }));
    let message = expect_error(&bad, 400);
    assert_eq!(message, "BadRequest");
    assert!(bad.body.contains("$.capabilityModel"), "{}", bad.body);
    // The id cannot change, and the types must stay.
    expect_error(
        &builder.patch(&path, json!({ "@id": "dtmi:com:example:Other;1" })),
        400,
    );
    expect_error(&builder.patch(&path, json!({ "@type": null })), 400);
    assert_eq!(builder.get(&path).json(), renamed);

    // If-Match: a stale etag is refused, the current one accepted.
    let stale = published["etag"].as_str().unwrap();
    let refused = builder.request(
        "PATCH",
        &path,
        &[
            ("content-type", "application/merge-patch+json"),
            ("if-match", stale),
        ],
        br#"{"displayName": "Too late"}"#,
    );
    expect_error(&refused, 412);
    let current = renamed["etag"].as_str().unwrap();
    let accepted = builder.request(
        "PATCH",
        &path,
        &[("content-type", "application/json"), ("if-match", current)],
        br#"{"displayName": "In time"}"#,
    );
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.json()["displayName"], "In time");

    // PUT over an existing template replaces it (same If-Match rule).
    let replaced = builder.put(&path, template_body("Replaced", thermostat_model()));
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["displayName"], "Replaced");
}

#[test]
fn a_template_that_devices_use_cannot_be_deleted() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    publish_thermostat(&admin);
    let path = template_path(THERMOSTAT);
    for id in ["lobby-1", "lobby-2"] {
        let device = admin.put(
            &format!("/api/devices/{id}"),
            json!({ "displayName": id, "template": THERMOSTAT, "simulated": true, "enabled": true }),
        );
        assert_eq!(device.status, 200, "{}", device.body);
    }

    let refused = admin.delete(&path);
    assert_eq!(expect_error(&refused, 409), "Conflict");
    assert!(
        refused.body.contains("used by 2 devices"),
        "{}",
        refused.body
    );
    assert_eq!(admin.get(&path).status, 200);

    assert_eq!(admin.delete("/api/devices/lobby-1").status, 204);
    let refused = admin.delete(&path);
    expect_error(&refused, 409);
    assert!(
        refused.body.contains("used by 1 device;"),
        "{}",
        refused.body
    );

    assert_eq!(admin.delete("/api/devices/lobby-2").status, 204);
    assert_eq!(admin.delete(&path).status, 204);
    expect_error(&admin.get(&path), 404);
    expect_error(&admin.delete(&path), 404);
}

#[test]
fn templates_are_listed_by_pages_with_filters_and_order() {
    let gyre = Gyre::start();
    let builder = gyre.token_with_role("builder");
    let names = [
        ("a", "Gamma"),
        ("b", "Alpha"),
        ("c", "Beta"),
        ("d", "Alpha"),
        ("e", "It's"),
    ];
    for (suffix, name) in names {
        let id = format!("dtmi:com:example:T{suffix};1");
        let response = builder.put(&template_path(&id), template_body(name, small_model(&id)));
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let ids = |client: &Client<'_>, query: &str| {
        let (ids, n_pages) = all_ids(client, &format!("/api/deviceTemplates?{query}"), "@id");
        let short: Vec<String> = ids
            .iter()
            .map(|id| {
                id.trim_start_matches("dtmi:com:example:T")
                    .trim_end_matches(";1")
                    .to_owned()
            })
            .collect();
        (short.join(","), n_pages)
    };
    assert_eq!(ids(&builder, "$top=2"), ("a,b,c,d,e".into(), 3));
    assert_eq!(
        ids(&builder, "$top=2&$orderby=displayName"),
        ("b,d,c,a,e".into(), 3)
    );
    assert_eq!(
        ids(&builder, "$top=2&$orderby=displayName%20desc"),
        ("e,a,c,d,b".into(), 3)
    );
    assert_eq!(
        ids(&builder, "$filter=displayName%20eq%20'Alpha'"),
        ("b,d".into(), 1)
    );
    assert_eq!(
        ids(&builder, "$filter=displayName%20eq%20'It''s'"),
        ("e".into(), 1)
    );
    assert_eq!(
        ids(
            &builder,
            "$filter=startswith(displayName,'Al')%20and%20id%20ne%20'dtmi:com:example:Tb;1'"
        ),
        ("d".into(), 1)
    );
    assert_eq!(
        ids(&builder, "$filter=contains(displayName,'zzz')"),
        ("".into(), 1)
    );
}

#[test]
fn bad_list_parameters_and_ids_are_refused_and_change_nothing() {
    let gyre = Gyre::start();
    let builder = gyre.token_with_role("builder");
    publish_thermostat(&builder);

    for query in [
        "$filter=displayName%20eq",
        "$filter=displayName%20eq%20'x'%20or%201%20eq%201",
        "$filter=id%20eq%20'x';%20DROP%20TABLE%20device_templates",
        "$orderby=temperature",
        "$top=0",
        "$top=abc",
        "$skiptoken=not-a-dtmi",
        "$orderby=displayName&$skiptoken=dtmi:com:example:Thermostat;1",
    ] {
        let response = builder.get(&format!("/api/deviceTemplates?{query}"));
        expect_error(&response, 400);
    }
    let response = builder.get("/api/deviceTemplates?$filter=displayName%20eq");
    assert!(response.body.contains("$filter at 14"), "{}", response.body);

    for id in [
        "thermostat",
        "dtmi:x;1'%20OR%20'1'='1",
        "dtmi:com:example:Thermostat;01",
        "dtmi:a:b",
    ] {
        let response = builder.put(
            &template_path(id),
            template_body("Bad", small_model("dtmi:a:b;1")),
        );
        expect_error(&response, 400);
        expect_error(&builder.get(&template_path(id)), 400);
    }

    let path = template_path(THERMOSTAT);
    let not_json = builder.request(
        "PUT",
        &path,
        &[("content-type", "application/json")],
        b"{not json",
    );
    expect_error(&not_json, 400);
    let wrong_type = builder.request("PUT", &path, &[("content-type", "text/plain")], b"{}");
    expect_error(&wrong_type, 415);
    let huge = format!(
        r#"{{"@type": ["ModelDefinition", "DeviceModel"], "displayName": "{}", "capabilityModel": {{}}}}"#,
        "x".repeat(1_100_000)
    );
    let oversize = builder.request(
        "PUT",
        &path,
        &[("content-type", "application/json")],
        huge.as_bytes(),
    );
    expect_error(&oversize, 413);
    expect_error(&builder.put(&path, json!([1, 2])), 400);
    expect_error(
        &builder.put(
            &path,
            json!({ "@type": "DeviceModel", "capabilityModel": 1 }),
        ),
        400,
    );

    // The thermostat is exactly as published.
    let listed = builder.get("/api/deviceTemplates").json();
    assert_eq!(listed["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["value"][0]["displayName"], "Thermostat");

    expect_error(&gyre.anonymous().get(&path), 401);
}

/// `(actor, action, resource id)` of every audit record about `resource_type`, in order, read
/// straight from the state database.
pub(crate) fn audit_log(gyre: &Gyre, resource_type: &str) -> Vec<(String, String, String)> {
    let db = gyre.host().app().state_dir().join("sqlite_db.db");
    let connection =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the state database");
    let mut statement = connection
        .prepare(
            "SELECT actor, action, resource_id FROM audit_log WHERE resource_type = ?1 \
             ORDER BY seq",
        )
        .unwrap();
    statement
        .query_map([resource_type], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn every_template_change_is_audited_and_refused_ones_are_not() {
    let gyre = Gyre::start();
    let builder = gyre.create_token("template-builder", "builder", None);
    let builder = gyre.with_token(&builder);
    publish_thermostat(&builder);
    publish_thermostat(&builder);
    let path = template_path(THERMOSTAT);
    assert_eq!(
        builder
            .patch(&path, json!({ "displayName": "Renamed" }))
            .status,
        200
    );
    expect_error(&builder.patch(&path, json!({ "capabilityModel": 1 })), 400);
    assert_eq!(builder.delete(&path).status, 204);
    expect_error(&builder.delete(&path), 404);

    let actor = "apiToken:template-builder".to_owned();
    let expected: Vec<(String, String, String)> = ["create", "update", "update", "delete"]
        .iter()
        .map(|action| (actor.clone(), action.to_string(), THERMOSTAT.to_owned()))
        .collect();
    assert_eq!(audit_log(&gyre, "deviceTemplate"), expected);
}
