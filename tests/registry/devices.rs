//! Devices, as an operator registers and runs them: create against a published template, page
//! and filter the fleet, block and rename, rotate a device's keys, and bad input that must
//! change nothing.

use serde_json::{json, Value};

use crate::device_templates::{publish_thermostat, THERMOSTAT};
use crate::{expect_error, Client, Gyre};

fn device_path(id: &str) -> String {
    format!("/api/devices/{}", gyre_tests::query_escape(id))
}

/// Every id of a device listing, following `nextLink` to the end; also the number of pages.
fn all_ids(client: &Client<'_>, first: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut n_pages = 0;
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        let response = client.get(&path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        let body = response.json();
        n_pages += 1;
        for item in body["value"].as_array().expect("value") {
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
        next = body["nextLink"].as_str().map(|link| {
            let start = link.find("/api/").expect("nextLink has the API path");
            link[start..].to_owned()
        });
        assert!(n_pages < 100, "paging does not end");
    }
    (ids, n_pages)
}

fn create(client: &Client<'_>, id: &str, body: Value) -> Value {
    let response = client.put(&device_path(id), body);
    assert_eq!(response.status, 200, "create {id}: {}", response.body);
    response.json()
}

#[test]
fn an_operator_registers_pages_renames_blocks_and_deletes_devices() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let operator = gyre.token_with_role("operator");

    // Arrange: five thermostats and one unassigned device.
    let created = create(
        &operator,
        "thermostat-01",
        json!({"displayName": "Kitchen", "template": THERMOSTAT, "simulated": true,
               "enabled": true, "organizations": ["seattle"]}),
    );
    assert_eq!(created["id"], "thermostat-01");
    assert_eq!(created["provisioned"], false);
    assert_eq!(created["organizations"], json!(["seattle"]));
    assert!(created["etag"].is_string());
    for (id, name) in [
        ("thermostat-02", "Attic"),
        ("thermostat-03", "Bedroom"),
        ("thermostat-04", "Cellar"),
        ("thermostat-05", "Den"),
    ] {
        create(
            &operator,
            id,
            json!({"displayName": name, "template": THERMOSTAT}),
        );
    }
    let unassigned = create(&operator, "gadget", json!({}));
    assert_eq!(unassigned["displayName"], "gadget");
    assert_eq!(unassigned.get("template"), None);

    // Get one back as created.
    let fetched = operator.get(&device_path("thermostat-01"));
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), created);

    // Page through the fleet two at a time, in id order.
    let (ids, n_pages) = all_ids(&operator, "/api/devices?api-version=2022-07-31&$top=2");
    assert_eq!(
        ids,
        [
            "gadget",
            "thermostat-01",
            "thermostat-02",
            "thermostat-03",
            "thermostat-04",
            "thermostat-05"
        ]
    );
    assert_eq!(n_pages, 3);

    // Filter and order as IoT Central's basic OData.
    let filter = gyre_tests::query_escape(&format!(
        "template eq '{THERMOSTAT}' and simulated eq false"
    ));
    let (ids, _) = all_ids(
        &operator,
        &format!("/api/devices?$filter={filter}&$orderby=displayName%20desc&$top=2"),
    );
    assert_eq!(
        ids,
        [
            "thermostat-05",
            "thermostat-04",
            "thermostat-03",
            "thermostat-02"
        ]
    );
    let (ids, _) = all_ids(&operator, "/api/devices?$filter=template%20eq%20null");
    assert_eq!(ids, ["gadget"]);

    // Rename with a merge patch, then block: provisioned is untouched.
    let renamed = operator.patch_merge(
        &device_path("thermostat-01"),
        json!({"displayName": "Kitchen (north)"}),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let renamed = renamed.json();
    assert_eq!(renamed["displayName"], "Kitchen (north)");
    assert_eq!(renamed["simulated"], true);
    assert_ne!(renamed["etag"], created["etag"]);
    let blocked = operator.patch(&device_path("thermostat-01"), json!({"enabled": false}));
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    assert_eq!(blocked.json()["enabled"], false);
    let (ids, _) = all_ids(&operator, "/api/devices?$filter=enabled%20eq%20false");
    assert_eq!(ids, ["thermostat-01"]);

    // A stale etag is refused; the current one is honoured.
    let stale = created["etag"].as_str().unwrap();
    let refused = operator.request(
        "PATCH",
        &device_path("thermostat-01"),
        &[("content-type", "application/json"), ("if-match", stale)],
        br#"{"enabled": true}"#,
    );
    expect_error(&refused, 412);
    let current = blocked.json()["etag"].as_str().unwrap().to_owned();
    let deleted = operator.request(
        "DELETE",
        &device_path("thermostat-01"),
        &[("if-match", &current)],
        b"",
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    expect_error(&operator.get(&device_path("thermostat-01")), 404);
    expect_error(&operator.delete(&device_path("thermostat-01")), 404);

    // Assigning an unassigned device to a template (IoT Central's "migrate").
    let migrated = operator.patch_merge(&device_path("gadget"), json!({"template": THERMOSTAT}));
    assert_eq!(migrated.status, 200, "{}", migrated.body);
    assert_eq!(migrated.json()["template"], THERMOSTAT);
}

#[test]
fn device_ids_may_use_the_punctuation_iot_hub_accepts() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let id = "a.b%c_d*e?f!g(h)i,j:k=l@m$n'o-p";
    let created = create(&operator, id, json!({}));
    assert_eq!(created["id"], id);
    let fetched = operator.get(&device_path(id));
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.json()["id"], id);
    let (ids, _) = all_ids(
        &operator,
        &format!(
            "/api/devices?$filter={}",
            gyre_tests::query_escape(&format!("id eq '{}'", id.replace('\'', "''")))
        ),
    );
    assert_eq!(ids, [id]);
    let long = "x".repeat(128);
    create(&operator, &long, json!({}));
    expect_error(
        &operator.put(&device_path(&"x".repeat(129)), json!({})),
        400,
    );
}

#[test]
fn credentials_show_the_id_scope_and_rotated_keys_revoke_the_old_ones() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    create(&admin, "sensor-1", json!({}));

    // Every new device has an individual symmetric-key enrollment.
    let credentials = admin.get("/api/devices/sensor-1/credentials");
    assert_eq!(credentials.status, 200, "{}", credentials.body);
    let credentials = credentials.json();
    let id_scope = credentials["idScope"].as_str().unwrap().to_owned();
    assert!(
        id_scope.starts_with("0ne") && id_scope.len() == 11,
        "{id_scope}"
    );
    let old_primary = credentials["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let attestation = admin.get("/api/devices/sensor-1/attestation").json();
    assert_eq!(
        attestation,
        json!({"type": "symmetricKey", "symmetricKey": credentials["symmetricKey"]})
    );

    // Rotate the primary key: the old one is gone, the secondary is kept.
    let new_primary = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let rotated = admin.patch_merge(
        "/api/devices/sensor-1/attestation",
        json!({"symmetricKey": {"primaryKey": new_primary}}),
    );
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let after = admin.get("/api/devices/sensor-1/credentials").json();
    assert_eq!(after["idScope"], id_scope.as_str());
    assert_eq!(after["symmetricKey"]["primaryKey"], new_primary);
    assert_eq!(
        after["symmetricKey"]["secondaryKey"],
        credentials["symmetricKey"]["secondaryKey"]
    );
    assert_ne!(after["symmetricKey"]["primaryKey"], old_primary.as_str());

    // A PUT with no keys regenerates both.
    let replaced = admin.put(
        "/api/devices/sensor-1/attestation",
        json!({"type": "symmetricKey"}),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let replaced = replaced.json();
    assert_ne!(replaced["symmetricKey"]["primaryKey"], new_primary);
    assert_ne!(
        replaced["symmetricKey"]["secondaryKey"],
        credentials["symmetricKey"]["secondaryKey"]
    );

    // Unsupported attestations change nothing.
    for body in [
        json!({"type": "x509", "x509": {"clientCertificates": {}}}),
        json!({"type": "tpm", "tpm": {"endorsementKey": "abc"}}),
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": "too-short"}}),
    ] {
        expect_error(&admin.put("/api/devices/sensor-1/attestation", body), 400);
    }
    assert_eq!(
        admin.get("/api/devices/sensor-1/attestation").json(),
        replaced
    );

    // Without an individual enrollment, the keys derive from the enrollment group.
    let deleted = admin.delete("/api/devices/sensor-1/attestation");
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    expect_error(&admin.get("/api/devices/sensor-1/attestation"), 404);
    assert_eq!(
        admin.get("/api/devices/sensor-1/credentials").json(),
        json!({"idScope": id_scope})
    );
    let group_key = "dGhpcyBpcyBhIGdyb3VwIGtleSBmb3IgdGVzdGluZyE=";
    let group = admin.put(
        "/api/enrollmentGroups/sas-devices",
        json!({"displayName": "SAS devices", "type": "iot",
               "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": group_key}}}),
    );
    assert_eq!(group.status, 200, "{}", group.body);
    let derived = admin.get("/api/devices/sensor-1/credentials").json();
    // base64(HMAC-SHA256(base64decode(groupKey), "sensor-1")), computed with Python's hmac.
    assert_eq!(
        derived["symmetricKey"]["primaryKey"],
        "3Ru40DtS9vgpveufuxUy7FoSgO+HzEAA4lK3JfViJ9g="
    );

    expect_error(&admin.get("/api/devices/nobody/credentials"), 404);
}

#[test]
fn bad_input_gets_iot_centrals_error_shape_and_changes_nothing() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let operator = gyre.token_with_role("operator");
    let original = create(
        &operator,
        "d1",
        json!({"displayName": "One", "template": THERMOSTAT}),
    );

    let put_raw = |path: &str, content_type: &str, body: &[u8]| {
        operator.request("PUT", path, &[("content-type", content_type)], body)
    };
    // Invalid JSON, wrong types, unknown fields, unknown or malformed templates.
    expect_error(
        &put_raw("/api/devices/d2", "application/json", b"{\"displayName\": "),
        400,
    );
    expect_error(
        &operator.put("/api/devices/d2", json!({"enabled": "yes"})),
        400,
    );
    expect_error(
        &operator.put("/api/devices/d2", json!({"displayName": 7})),
        400,
    );
    expect_error(
        &operator.put("/api/devices/d2", json!({"displayname": "typo"})),
        400,
    );
    expect_error(
        &operator.put(
            "/api/devices/d2",
            json!({"template": "dtmi:com:example:Unknown;1"}),
        ),
        400,
    );
    expect_error(
        &operator.put("/api/devices/d2", json!({"template": "thermostat"})),
        400,
    );
    expect_error(
        &operator.put("/api/devices/d2", json!({"organizations": ["a1", "b2"]})),
        400,
    );
    expect_error(&operator.put("/api/devices/d2", json!({"id": "d3"})), 400);
    expect_error(&put_raw("/api/devices/d2", "text/plain", b"{}"), 415);
    let oversize = format!("{{\"displayName\": \"{}\"}}", "x".repeat(1 << 20));
    expect_error(
        &put_raw("/api/devices/d2", "application/json", oversize.as_bytes()),
        413,
    );
    // Ids that are not device ids, including injection attempts.
    for id in [
        "'%3B%20DROP%20TABLE%20devices%3B%20--",
        "a%20b",
        "a%2Fb",
        "%FF",
        "a+b",
        "a%23b",
    ] {
        expect_error(&operator.put(&format!("/api/devices/{id}"), json!({})), 400);
    }
    // A PUT on an existing id does not overwrite it.
    expect_error(
        &operator.put("/api/devices/d1", json!({"displayName": "Other"})),
        409,
    );
    // Bad patches.
    expect_error(
        &operator.patch(
            "/api/devices/d1",
            json!({"template": "dtmi:com:example:Unknown;1"}),
        ),
        400,
    );
    expect_error(
        &operator.patch("/api/devices/d1", json!({"simulated": 1})),
        400,
    );
    expect_error(
        &operator.patch("/api/devices/d1", json!(["not", "an", "object"])),
        400,
    );
    expect_error(&operator.patch("/api/devices/nobody", json!({})), 404);
    // Filters, orderings and cursors outside the supported subset, and injection attempts.
    for query in [
        "$filter=id%20eq%20'd1'%20or%201%20eq%201",
        "$filter=id%20eq%20'd1';%20DROP%20TABLE%20devices",
        "$filter=colour%20eq%20'red'",
        "$filter=enabled%20eq%20'yes'",
        "$filter=id%20eq%20'unterminated",
        "$orderby=template",
        "$orderby=id%20sideways",
        "$skiptoken=a%20b",
        "$top=0",
        "$top=abc",
    ] {
        let code = expect_error(&operator.get(&format!("/api/devices?{query}")), 400);
        assert_eq!(code, "BadRequest", "{query}");
    }
    let (ids, _) = all_ids(
        &operator,
        "/api/devices?$filter=id%20eq%20'''%20or%20''1''%3D''1'",
    );
    assert!(ids.is_empty());

    // Nothing changed.
    let (ids, _) = all_ids(&operator, "/api/devices");
    assert_eq!(ids, ["d1"]);
    assert_eq!(operator.get("/api/devices/d1").json(), original);
}
