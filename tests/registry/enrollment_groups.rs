//! Enrollment groups, as an administrator sets up device connection: create a symmetric-key
//! group (keys generated or given), page, rename, toggle auto-approve, rotate keys, delete, and
//! bad input that must change nothing.

use serde_json::json;

use crate::{expect_error, Gyre};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn an_administrator_sets_up_rotates_and_removes_enrollment_groups() {
    let gyre = Gyre::start();
    let admin = gyre.admin();

    // A group with generated keys and the defaults.
    let created = admin.put(
        "/api/enrollmentGroups/SAS-IoT-Devices?api-version=2022-07-31",
        json!({"displayName": "SAS IoT devices", "type": "iot"}),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let created = created.json();
    assert_eq!(created["id"], "SAS-IoT-Devices");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["autoApprove"], true);
    assert_eq!(created["attestation"]["type"], "symmetricKey");
    let primary = created["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let secondary = created["attestation"]["symmetricKey"]["secondaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(primary, secondary);
    assert_eq!(
        admin.get("/api/enrollmentGroups/SAS-IoT-Devices").json(),
        created
    );

    // More groups, paged two at a time.
    for id in ["line-a", "line-b"] {
        let response = admin.put(
            &format!("/api/enrollmentGroups/{id}"),
            json!({"displayName": id, "type": "iot", "enabled": false,
                   "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}}),
        );
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let first = admin.get("/api/enrollmentGroups?$top=2").json();
    let ids: Vec<&str> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["SAS-IoT-Devices", "line-a"]);
    let next = first["nextLink"].as_str().expect("a next page");
    let second = admin.get(&next[next.find("/api/").unwrap()..]).json();
    assert_eq!(second["value"][0]["id"], "line-b");
    assert_eq!(second.get("nextLink"), None);

    // Rename and turn auto-approve off; the keys stay.
    let patched = admin.patch_merge(
        "/api/enrollmentGroups/SAS-IoT-Devices",
        json!({"displayName": "Factory floor", "autoApprove": false}),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let patched = patched.json();
    assert_eq!(patched["displayName"], "Factory floor");
    assert_eq!(patched["autoApprove"], false);
    assert_eq!(patched["attestation"], created["attestation"]);
    assert_ne!(patched["etag"], created["etag"]);

    // Rotate: a key set to null is regenerated, a key given replaces the old one.
    let rotated = admin.patch(
        "/api/enrollmentGroups/SAS-IoT-Devices",
        json!({"attestation": {"symmetricKey": {"primaryKey": null, "secondaryKey": KEY}}}),
    );
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let rotated = rotated.json();
    let keys = &rotated["attestation"]["symmetricKey"];
    assert_ne!(keys["primaryKey"], primary.as_str());
    assert_eq!(keys["secondaryKey"], KEY);

    // If-Match with a stale etag is refused; delete with the current one.
    let stale = created["etag"].as_str().unwrap();
    let refused = admin.request(
        "DELETE",
        "/api/enrollmentGroups/SAS-IoT-Devices",
        &[("if-match", stale)],
        b"",
    );
    expect_error(&refused, 412);
    let deleted = admin.request(
        "DELETE",
        "/api/enrollmentGroups/SAS-IoT-Devices",
        &[("if-match", rotated["etag"].as_str().unwrap())],
        b"",
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    expect_error(&admin.get("/api/enrollmentGroups/SAS-IoT-Devices"), 404);
    expect_error(&admin.delete("/api/enrollmentGroups/SAS-IoT-Devices"), 404);
}

#[test]
fn bad_enrollment_groups_get_iot_centrals_error_shape_and_change_nothing() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let original = admin
        .put(
            "/api/enrollmentGroups/g1",
            json!({"displayName": "G1", "type": "iot"}),
        )
        .json();

    let path = "/api/enrollmentGroups/g2";
    for body in [
        json!({"type": "iot"}),
        json!({"displayName": "x"}),
        json!({"displayName": "x", "type": "iotEdge"}),
        json!({"displayName": "x", "type": "iot", "attestation": {"type": "x509", "x509": {}}}),
        json!({"displayName": "x", "type": "iot", "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "short"}}}),
        json!({"displayName": 1, "type": "iot"}),
        json!({"displayName": "x", "type": "iot", "enabled": "true"}),
        json!({"displayName": "x", "type": "iot", "colour": "red"}),
    ] {
        expect_error(&admin.put(path, body.clone()), 400);
    }
    expect_error(
        &admin.request(
            "PUT",
            path,
            &[("content-type", "application/json")],
            b"{not json",
        ),
        400,
    );
    for id in [
        "under_score",
        "'%3B%20DROP%20TABLE%20enrollment_groups%3B--",
        "a%20b",
    ] {
        expect_error(
            &admin.put(
                &format!("/api/enrollmentGroups/{id}"),
                json!({"displayName": "x", "type": "iot"}),
            ),
            400,
        );
    }
    expect_error(
        &admin.put(
            "/api/enrollmentGroups/g1",
            json!({"displayName": "again", "type": "iot"}),
        ),
        409,
    );
    expect_error(
        &admin.patch("/api/enrollmentGroups/g1", json!({"type": "iotEdge"})),
        400,
    );
    expect_error(
        &admin.patch("/api/enrollmentGroups/g1", json!({"displayName": null})),
        400,
    );
    expect_error(
        &admin.patch(
            "/api/enrollmentGroups/g1",
            json!({"attestation": {"type": "x509"}}),
        ),
        400,
    );
    expect_error(&admin.get("/api/enrollmentGroups?$skiptoken=a_b"), 400);

    let listed = admin.get("/api/enrollmentGroups").json();
    assert_eq!(listed, json!({"value": [original]}));

    // Operators may not manage device connectivity at the application level.
    let operator = gyre.token_with_role("operator");
    let code = expect_error(
        &operator.put(path, json!({"displayName": "x", "type": "iot"})),
        403,
    );
    assert_eq!(code, "Forbidden");
}
