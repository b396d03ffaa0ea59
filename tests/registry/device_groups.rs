//! Device groups, as an operator uses them: groups over `$template`, `$displayName` and
//! `$simulated` whose members follow the devices as they change, paging through members,
//! patches, and bad filters and injection attempts that must change nothing.

use serde_json::{json, Value};

use crate::device_templates::{audit_log, publish_thermostat, THERMOSTAT};
use crate::{expect_error, Client, Gyre};

const SIMULATED_THERMOSTATS: &str =
    "SELECT * FROM devices WHERE $template = \"dtmi:com:example:Thermostat;1\" AND $simulated = true";

fn add_device(
    client: &Client<'_>,
    id: &str,
    display_name: &str,
    template: Option<&str>,
    simulated: bool,
) {
    let mut body = json!({ "displayName": display_name, "simulated": simulated, "enabled": true });
    if let Some(template) = template {
        body["template"] = json!(template);
    }
    let response = client.put(&format!("/api/devices/{id}"), body);
    assert_eq!(
        response.status, 200,
        "create device {id}: {}",
        response.body
    );
}

fn create_group(client: &Client<'_>, id: &str, display_name: &str, filter: &str) -> Value {
    let response = client.put(
        &format!("/api/deviceGroups/{id}"),
        json!({ "displayName": display_name, "filter": filter }),
    );
    assert_eq!(response.status, 200, "create group {id}: {}", response.body);
    response.json()
}

/// The member ids of a group, following `nextLink`; and how many pages that took.
fn members(client: &Client<'_>, group_id: &str, top: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut n_pages = 0;
    let mut next = Some(format!("/api/deviceGroups/{group_id}/devices?$top={top}"));
    while let Some(path) = next {
        let response = client.get(&path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        let body = response.json();
        n_pages += 1;
        for device in body["value"].as_array().expect("value") {
            ids.push(device["id"].as_str().expect("id").to_owned());
        }
        next = body["nextLink"]
            .as_str()
            .map(|link| link[link.find("/api/").expect("/api path")..].to_owned());
    }
    (ids, n_pages)
}

fn member_ids(client: &Client<'_>, group_id: &str) -> Vec<String> {
    members(client, group_id, 100).0
}

#[test]
fn an_operator_groups_simulated_thermostats_and_membership_follows_the_devices() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.admin());
    let operator = gyre.token_with_role("operator");
    add_device(&operator, "th-2", "Lobby", Some(THERMOSTAT), true);
    add_device(&operator, "th-1", "Kitchen", Some(THERMOSTAT), true);
    add_device(&operator, "th-3", "Attic", Some(THERMOSTAT), false);
    add_device(&operator, "orphan", "Kitchen", None, true);

    let group = create_group(
        &operator,
        "simulated-thermostats",
        "Simulated thermostats",
        SIMULATED_THERMOSTATS,
    );
    assert_eq!(group["id"], "simulated-thermostats");
    assert_eq!(group["displayName"], "Simulated thermostats");
    assert_eq!(group["filter"], SIMULATED_THERMOSTATS);
    assert!(group["etag"].is_string());
    let kitchen = create_group(
        &operator,
        "kitchen",
        "Kitchen",
        "SELECT * FROM devices WHERE $displayName = 'Kitchen'",
    );

    assert_eq!(
        member_ids(&operator, "simulated-thermostats"),
        ["th-1", "th-2"]
    );
    assert_eq!(member_ids(&operator, "kitchen"), ["orphan", "th-1"]);

    // Members come in IoT Central's device shape.
    let page = operator.get("/api/deviceGroups/kitchen/devices").json();
    let th1 = &page["value"][1];
    assert_eq!(th1["id"], "th-1");
    assert_eq!(th1["displayName"], "Kitchen");
    assert_eq!(th1["template"], THERMOSTAT);
    assert_eq!(th1["simulated"], true);
    assert_eq!(th1["enabled"], true);
    assert_eq!(th1["provisioned"], false);
    assert!(th1["etag"].is_string());
    assert!(page["value"][0].get("template").is_none(), "{page}");

    // Membership is evaluated at each request, so it follows every device change.
    let patched = operator.patch(
        "/api/devices/th-3",
        json!({ "simulated": true, "displayName": "Kitchen" }),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        member_ids(&operator, "simulated-thermostats"),
        ["th-1", "th-2", "th-3"]
    );
    assert_eq!(member_ids(&operator, "kitchen"), ["orphan", "th-1", "th-3"]);
    let patched = operator.patch("/api/devices/th-2", json!({ "simulated": false }));
    assert_eq!(patched.status, 200, "{}", patched.body);
    add_device(&operator, "th-0", "Hall", Some(THERMOSTAT), true);
    assert_eq!(
        member_ids(&operator, "simulated-thermostats"),
        ["th-0", "th-1", "th-3"]
    );
    assert_eq!(operator.delete("/api/devices/th-1").status, 204);
    assert_eq!(
        member_ids(&operator, "simulated-thermostats"),
        ["th-0", "th-3"]
    );
    assert_eq!(member_ids(&operator, "kitchen"), ["orphan", "th-3"]);

    // Groups are listed in id order.
    let listed = operator.get("/api/deviceGroups").json();
    let ids: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["kitchen", "simulated-thermostats"]);
    assert_eq!(listed["value"][0], kitchen);
}

#[test]
fn an_operator_pages_through_a_large_group() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    for idx in 0..7 {
        add_device(
            &operator,
            &format!("sim-{idx}"),
            &format!("Sim {idx}"),
            None,
            true,
        );
    }
    add_device(&operator, "real-1", "Real", None, false);
    create_group(
        &operator,
        "all-simulated",
        "All simulated",
        "SELECT * FROM devices WHERE $simulated = true",
    );

    let (ids, n_pages) = members(&operator, "all-simulated", 3);
    assert_eq!(
        ids,
        ["sim-0", "sim-1", "sim-2", "sim-3", "sim-4", "sim-5", "sim-6"]
    );
    assert_eq!(n_pages, 3);
    let (ids, n_pages) = members(&operator, "all-simulated", 7);
    assert_eq!((ids.len(), n_pages), (7, 1));

    for idx in 0..4 {
        let id = format!("g-{idx}");
        create_group(&operator, &id, &id, "SELECT * FROM devices");
    }
    let first = operator.get("/api/deviceGroups?$top=3").json();
    assert_eq!(first["value"].as_array().map(Vec::len), Some(3));
    let link = first["nextLink"].as_str().expect("a next page");
    let second = operator.get(&link[link.find("/api/").unwrap()..]).json();
    let ids: Vec<&str> = second["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    // `all-simulated`, g-0 and g-1 were on the first page.
    assert_eq!(ids, ["g-2", "g-3"]);
    assert!(second.get("nextLink").is_none(), "{second}");
}

#[test]
fn an_operator_updates_and_deletes_a_group() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    add_device(&operator, "d1", "One", None, true);
    add_device(&operator, "d2", "Two", None, false);
    let created = create_group(
        &operator,
        "g1",
        "Group",
        "SELECT * FROM devices WHERE $simulated = true",
    );
    let path = "/api/deviceGroups/g1";

    let patched = operator.patch_merge(
        path,
        json!({ "description": "the simulated ones", "filter": "SELECT * FROM devices WHERE $simulated = false", "organizations": [] }),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let patched = patched.json();
    assert_eq!(patched["description"], "the simulated ones");
    assert_eq!(patched["displayName"], "Group");
    assert_ne!(patched["etag"], created["etag"]);
    assert_eq!(member_ids(&operator, "g1"), ["d2"]);

    // A patch is checked as a whole: the display name cannot go, the filter must parse.
    expect_error(&operator.patch(path, json!({ "displayName": null })), 400);
    let bad = operator.patch(
        path,
        json!({ "filter": "SELECT * FROM devices WHERE $simulated =" }),
    );
    expect_error(&bad, 400);
    assert!(bad.body.contains("$.filter: at "), "{}", bad.body);
    expect_error(
        &operator.patch(path, json!({ "organizations": ["a1", "b2"] })),
        400,
    );
    expect_error(&operator.patch(path, json!({ "id": "g2" })), 400);
    assert_eq!(operator.get(path).json(), patched);

    let stale = created["etag"].as_str().unwrap();
    expect_error(
        &operator.request("DELETE", path, &[("if-match", stale)], b""),
        412,
    );
    let current = patched["etag"].as_str().unwrap();
    assert_eq!(
        operator
            .request("DELETE", path, &[("if-match", current)], b"")
            .status,
        204
    );
    expect_error(&operator.get(path), 404);
    expect_error(&operator.get("/api/deviceGroups/g1/devices"), 404);
    expect_error(&operator.delete(path), 404);
    // The devices are untouched.
    assert_eq!(operator.get("/api/devices/d1").status, 200);
}

#[test]
fn a_bad_filter_says_where_and_why_and_creates_nothing() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let response = operator.put(
        "/api/deviceGroups/g1",
        json!({ "displayName": "Broken", "filter": "SELECT * FROM devices WHERE $simulated = " }),
    );
    assert_eq!(expect_error(&response, 400), "BadRequest");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("$.filter: at 41: expected a value"),
        "{message}"
    );

    let response = operator.put(
        "/api/deviceGroups/g1",
        json!({ "filter": 7, "organizations": ["x", "y"] }),
    );
    expect_error(&response, 400);
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["$.displayName", "$.filter", "$.organizations"] {
        assert!(
            message.contains(&format!("{path}: ")),
            "no `{path}` in: {message}"
        );
    }
    expect_error(&operator.get("/api/deviceGroups/g1"), 404);
    assert_eq!(
        operator.get("/api/deviceGroups").json(),
        json!({ "value": [] })
    );
}

#[test]
fn injection_attempts_in_filters_and_ids_change_nothing() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    add_device(&operator, "d1", "One", None, true);
    add_device(&operator, "d2", "O'Brien \"quoted\"", None, false);

    for filter in [
        "SELECT * FROM devices WHERE $id = 'x' OR 1=1; DROP TABLE devices; --",
        "SELECT * FROM devices WHERE $id = 'x' -- comment",
        "SELECT * FROM devices; DELETE FROM devices",
        "SELECT * FROM devices WHERE \"$id\" = 1",
        "SELECT * FROM device_groups",
    ] {
        let response = operator.put(
            "/api/deviceGroups/evil",
            json!({ "displayName": "Evil", "filter": filter }),
        );
        expect_error(&response, 400);
    }
    // Quotes inside literals are values, never SQL.
    create_group(
        &operator,
        "quotes",
        "Quotes",
        "SELECT * FROM devices WHERE $displayName = 'x'' OR ''1''=''1'",
    );
    assert_eq!(member_ids(&operator, "quotes"), Vec::<String>::new());
    create_group(
        &operator,
        "obrien",
        "O'Brien",
        "SELECT * FROM devices WHERE $displayName = \"O'Brien \"\"quoted\"\"\"",
    );
    assert_eq!(member_ids(&operator, "obrien"), ["d2"]);
    create_group(
        &operator,
        "property",
        "Property",
        "SELECT * FROM devices WHERE drop_table = 'x'",
    );
    assert_eq!(member_ids(&operator, "property"), Vec::<String>::new());

    for id in ["bad'id", "a%20b", "g;DROP", &"x".repeat(256)] {
        let response = operator.put(
            &format!("/api/deviceGroups/{id}"),
            json!({ "displayName": "X", "filter": "SELECT * FROM devices" }),
        );
        expect_error(&response, 400);
        expect_error(&operator.get(&format!("/api/deviceGroups/{id}")), 400);
    }
    expect_error(&operator.get("/api/deviceGroups?$skiptoken=bad'token"), 400);
    // A member cursor is only a bound: odd text pages from there, safely.
    let page = operator.get("/api/deviceGroups/quotes/devices?$skiptoken=%27%20OR%201%3D1%20--");
    assert_eq!(page.status, 200, "{}", page.body);

    let not_json = operator.request(
        "PUT",
        "/api/deviceGroups/g9",
        &[("content-type", "application/json")],
        b"{\"displayName\":",
    );
    expect_error(&not_json, 400);
    let wrong_type = operator.request(
        "PATCH",
        "/api/deviceGroups/quotes",
        &[("content-type", "text/xml")],
        b"<x/>",
    );
    expect_error(&wrong_type, 415);
    let huge = json!({ "displayName": "Huge", "filter": "SELECT * FROM devices", "description": "x".repeat(1_100_000) });
    expect_error(&operator.put("/api/deviceGroups/huge", huge), 413);

    // Both devices and every valid group are intact.
    let all = create_group(&operator, "all", "All", "SELECT * FROM devices");
    assert_eq!(all["filter"], "SELECT * FROM devices");
    assert_eq!(member_ids(&operator, "all"), ["d1", "d2"]);
    let ids: Vec<String> = operator.get("/api/deviceGroups").json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["all", "obrien", "property", "quotes"]);
    expect_error(&gyre.anonymous().get("/api/deviceGroups"), 401);
}

#[test]
fn every_group_change_is_audited_and_refused_ones_are_not() {
    let gyre = Gyre::start();
    let operator = gyre.create_token("group-operator", "operator", None);
    let operator = gyre.with_token(&operator);
    create_group(&operator, "g1", "Group", "SELECT * FROM devices");
    let path = "/api/deviceGroups/g1";
    assert_eq!(
        operator.patch(path, json!({ "description": "d" })).status,
        200
    );
    expect_error(&operator.patch(path, json!({ "filter": "SELECT" })), 400);
    create_group(&operator, "g1", "Replaced", "SELECT * FROM devices");
    assert_eq!(operator.delete(path).status, 204);
    expect_error(&operator.delete(path), 404);

    let actor = "apiToken:group-operator".to_owned();
    let expected: Vec<(String, String, String)> = ["create", "update", "update", "delete"]
        .iter()
        .map(|action| (actor.clone(), action.to_string(), "g1".to_owned()))
        .collect();
    assert_eq!(audit_log(&gyre, "deviceGroup"), expected);
}
