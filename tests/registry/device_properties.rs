//! Device cloud properties, as an operator keeps a truck's customer and service date: publish a
//! template with cloud properties, register a device, PATCH and PUT its cloud properties and
//! read them back, honour `If-Match`, and refuse wrong types, device properties, unknown names
//! and bad bodies, each in IoT Central's error shape and without changing anything.

use serde_json::{json, Value};

use crate::device_templates::audit_log;
use crate::{expect_error, Client, Gyre};

const TRUCK: &str = "dtmi:contoso:RefrigeratedTruck;1";

/// A refrigerated truck: cloud properties `customerName` (string) and `serviceDate` (date), a
/// read-only `firmwareVersion`, a writable `targetTemperature`, a telemetry, and a `settings`
/// component with a cloud property of its own.
fn publish_truck(builder: &Client<'_>) {
    let body = json!({
        "@type": ["ModelDefinition", "DeviceModel"],
        "displayName": "Refrigerated truck",
        "capabilityModel": {
            "@context": ["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"],
            "@id": TRUCK,
            "@type": "Interface",
            "displayName": "Refrigerated truck",
            "contents": [
                { "@type": ["Property", "Cloud"], "name": "customerName",
                  "displayName": "Customer name", "schema": "string" },
                { "@type": ["Property", "Cloud"], "name": "serviceDate",
                  "displayName": "Last service date", "schema": "date" },
                { "@type": "Property", "name": "firmwareVersion", "schema": "string" },
                { "@type": "Property", "name": "targetTemperature", "schema": "double",
                  "writable": true },
                { "@type": "Telemetry", "name": "temperature", "schema": "double" },
                { "@type": "Component", "name": "settings", "schema": {
                    "@id": "dtmi:contoso:TruckSettings;1",
                    "@type": "Interface",
                    "contents": [
                        { "@type": ["Property", "Cloud"], "name": "maxLoadKg", "schema": "integer" }
                    ]
                } }
            ]
        }
    });
    let response = builder.put(&format!("/api/deviceTemplates/{TRUCK}"), body);
    assert_eq!(response.status, 200, "publish: {}", response.body);
}

fn properties_path(device_id: &str) -> String {
    format!(
        "/api/devices/{}/properties?api-version=2022-07-31",
        gyre_tests::query_escape(device_id)
    )
}

/// A running Gyre with the truck template and device `truck-7` on it.
fn fleet() -> Gyre {
    let gyre = Gyre::start();
    publish_truck(&gyre.token_with_role("builder"));
    let response = gyre.admin().put(
        "/api/devices/truck-7",
        json!({ "displayName": "Truck 7", "template": TRUCK }),
    );
    assert_eq!(response.status, 200, "create device: {}", response.body);
    gyre
}

/// The device's properties and etag as GET shows them.
fn read(client: &Client<'_>, device_id: &str) -> (Value, String) {
    let response = client.get(&properties_path(device_id));
    assert_eq!(response.status, 200, "{}", response.body);
    let etag = response.header("etag").expect("an ETag header").to_owned();
    (response.json(), etag)
}

#[test]
fn an_operator_keeps_a_trucks_customer_and_service_date() {
    let gyre = fleet();
    let operator = gyre.token_with_role("operator");

    // A new device has no properties yet.
    let (empty, first_etag) = read(&operator, "truck-7");
    assert_eq!(empty, json!({}));
    let device = operator.get("/api/devices/truck-7").json();
    assert_eq!(device["etag"], first_etag.as_str(), "the device's etag");

    // PATCH sets the customer; the answer is IoT Central's 202 with desired values.
    let patched = operator.patch(
        &properties_path("truck-7"),
        json!({ "customerName": "Contoso Foods" }),
    );
    assert_eq!(patched.status, 202, "{}", patched.body);
    assert_eq!(
        patched.json(),
        json!({
            "customerName": "Contoso Foods",
            "$metadata": { "customerName": { "desiredValue": "Contoso Foods" } }
        })
    );
    let second_etag = patched.header("etag").unwrap().to_owned();
    assert_ne!(second_etag, first_etag, "a write changes the device's etag");

    // A merge patch adds the service date and the component's load limit, keeping the rest.
    let patched = operator.patch_merge(
        &properties_path("truck-7"),
        json!({ "serviceDate": "2025-03-14", "settings": { "maxLoadKg": 12000 } }),
    );
    assert_eq!(patched.status, 202, "{}", patched.body);
    let (properties, etag) = read(&operator, "truck-7");
    assert_eq!(
        properties,
        json!({
            "customerName": "Contoso Foods",
            "serviceDate": "2025-03-14",
            "settings": { "__t": "c", "maxLoadKg": 12000 }
        })
    );
    assert_eq!(
        operator.get("/api/devices/truck-7").json()["etag"],
        etag.as_str()
    );

    // The device's own fields are untouched.
    let device = operator.get("/api/devices/truck-7").json();
    assert_eq!(device["displayName"], "Truck 7");
    assert_eq!(device["template"], TRUCK);

    // A stale If-Match is refused and changes nothing; the current one is honoured.
    let stale = operator.request(
        "PATCH",
        &properties_path("truck-7"),
        &[
            ("content-type", "application/json"),
            ("if-match", &second_etag),
        ],
        br#"{"customerName": "Stale Co"}"#,
    );
    expect_error(&stale, 412);
    assert_eq!(
        read(&operator, "truck-7").0["customerName"],
        "Contoso Foods"
    );
    let current = operator.request(
        "PATCH",
        &properties_path("truck-7"),
        &[("content-type", "application/json"), ("if-match", &etag)],
        br#"{"customerName": null}"#,
    );
    assert_eq!(current.status, 202, "{}", current.body);
    assert_eq!(
        read(&operator, "truck-7").0.get("customerName"),
        None,
        "null removes"
    );

    // PUT replaces the whole set: what it leaves out is gone.
    let replaced = operator.put(
        &properties_path("truck-7"),
        json!({ "customerName": "Fabrikam Logistics", "serviceDate": "2025-06-01" }),
    );
    assert_eq!(replaced.status, 202, "{}", replaced.body);
    assert_eq!(
        replaced.json(),
        json!({
            "customerName": "Fabrikam Logistics",
            "serviceDate": "2025-06-01",
            "$metadata": {
                "customerName": { "desiredValue": "Fabrikam Logistics" },
                "serviceDate": { "desiredValue": "2025-06-01" }
            }
        })
    );
    assert_eq!(
        read(&operator, "truck-7").0,
        json!({ "customerName": "Fabrikam Logistics", "serviceDate": "2025-06-01" })
    );

    // Every write is audited, by whom, against the device.
    let actor = "apiToken:operator-token".to_owned();
    assert_eq!(
        audit_log(&gyre, "deviceProperties"),
        vec![(actor, "update".to_owned(), "truck-7".to_owned()); 4]
    );
}

#[test]
fn cloud_properties_can_filter_a_device_group() {
    let gyre = fleet();
    let operator = gyre.token_with_role("operator");
    let patched = operator.patch(
        &properties_path("truck-7"),
        json!({ "customerName": "Contoso Foods" }),
    );
    assert_eq!(patched.status, 202, "{}", patched.body);
    let group = operator.put(
        "/api/deviceGroups/contoso-trucks",
        json!({
            "displayName": "Contoso's trucks",
            "filter": "SELECT * FROM devices WHERE customerName = 'Contoso Foods'"
        }),
    );
    assert_eq!(group.status, 200, "{}", group.body);
    let members = operator.get("/api/deviceGroups/contoso-trucks/devices");
    assert_eq!(members.status, 200, "{}", members.body);
    let ids: Vec<String> = members.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|device| device["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["truck-7"]);
}

/// Sends `body` as `method` (PUT or PATCH) and expects a 400 naming `needle`; then checks that
/// nothing changed.
fn refused(client: &Client<'_>, method: &str, body: Value, needle: &str) {
    let before = read(client, "truck-7");
    let response = client.request(
        method,
        &properties_path("truck-7"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(
        expect_error(&response, 400),
        "BadRequest",
        "{method} {body}"
    );
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(needle), "{method} {body}: {message}");
    assert_eq!(
        read(client, "truck-7"),
        before,
        "{method} {body} changed nothing"
    );
}

#[test]
fn wrong_types_device_properties_and_unknown_names_are_refused() {
    let gyre = fleet();
    let operator = gyre.token_with_role("operator");
    let set = operator.patch(
        &properties_path("truck-7"),
        json!({ "customerName": "Contoso Foods", "serviceDate": "2025-03-14" }),
    );
    assert_eq!(set.status, 202, "{}", set.body);

    for method in ["PUT", "PATCH"] {
        // Wrong types, with the JSON path of the value.
        refused(
            &operator,
            method,
            json!({ "customerName": 42 }),
            "$.customerName: expected a string, found 42",
        );
        refused(
            &operator,
            method,
            json!({ "serviceDate": "14/03/2025" }),
            "$.serviceDate: expected a date",
        );
        refused(
            &operator,
            method,
            json!({ "serviceDate": "2025-02-30" }),
            "$.serviceDate",
        );
        refused(
            &operator,
            method,
            json!({ "settings": { "maxLoadKg": 1.5 } }),
            "$.settings.maxLoadKg: expected an integer",
        );
        refused(
            &operator,
            method,
            json!({ "settings": 7 }),
            "'settings' is a component",
        );
        // Device properties: read-only ones never, writable ones not here (yet).
        refused(
            &operator,
            method,
            json!({ "firmwareVersion": "2.0" }),
            "'firmwareVersion' is a read-only device property",
        );
        refused(
            &operator,
            method,
            json!({ "targetTemperature": 4.5 }),
            "'targetTemperature' is a writable device property",
        );
        refused(
            &operator,
            method,
            json!({ "temperature": 4.5 }),
            "'temperature' is a telemetry",
        );
        // Names the template does not declare, odd characters and injection attempts.
        refused(
            &operator,
            method,
            json!({ "nickname": "x" }),
            "declares no property 'nickname'",
        );
        refused(
            &operator,
            method,
            json!({ "x'); DROP TABLE devices; --": 1 }),
            "DROP TABLE devices",
        );
        refused(
            &operator,
            method,
            json!({ "$.customerName": "x" }),
            "'$.customerName'",
        );
        refused(
            &operator,
            method,
            json!({ "$metadata": { "customerName": {} } }),
            "'$metadata'",
        );
        refused(
            &operator,
            method,
            json!({ "customer\u{0}Name": "x" }),
            "declares no property",
        );
        // One bad member refuses the whole body.
        refused(
            &operator,
            method,
            json!({ "customerName": "ok", "serviceDate": true }),
            "$.serviceDate",
        );
    }
    refused(
        &operator,
        "PUT",
        json!(["customerName"]),
        "must be a JSON object",
    );
    refused(
        &operator,
        "PATCH",
        json!("customerName"),
        "must be a JSON object",
    );
    assert_eq!(
        audit_log(&gyre, "deviceProperties").len(),
        1,
        "refusals are not audited"
    );
}

#[test]
fn bad_requests_get_iot_centrals_error_shape_and_change_nothing() {
    let gyre = fleet();
    let admin = gyre.admin();
    let before = read(&admin, "truck-7");
    let path = properties_path("truck-7");

    // Invalid JSON, the wrong content type, an oversize body.
    for method in ["PUT", "PATCH"] {
        let response = admin.request(
            method,
            &path,
            &[("content-type", "application/json")],
            b"{\"customerName\": ",
        );
        expect_error(&response, 400);
        let response = admin.request(
            method,
            &path,
            &[("content-type", "text/plain")],
            br#"{"customerName": "x"}"#,
        );
        expect_error(&response, 415);
        let huge = format!(r#"{{"customerName": "{}"}}"#, "x".repeat(1_100_000));
        let response = admin.request(
            method,
            &path,
            &[("content-type", "application/json")],
            huge.as_bytes(),
        );
        expect_error(&response, 413);
    }
    assert_eq!(read(&admin, "truck-7"), before);

    // An unknown device, and ids that are no device id at all.
    expect_error(&admin.get(&properties_path("no-such-truck")), 404);
    expect_error(
        &admin.patch(
            &properties_path("no-such-truck"),
            json!({ "customerName": "x" }),
        ),
        404,
    );
    expect_error(
        &admin.put(&properties_path("no-such-truck"), json!({})),
        404,
    );
    expect_error(&admin.get(&properties_path(&"x".repeat(129))), 400);
    expect_error(&admin.get("/api/devices/truck%ZZ/properties"), 400);
    expect_error(
        &admin.patch(
            "/api/devices/a%20b/properties",
            json!({ "customerName": "x" }),
        ),
        400,
    );

    // A device without a template has no cloud properties to write.
    assert_eq!(admin.put("/api/devices/gadget", json!({})).status, 200);
    let response = admin.patch(&properties_path("gadget"), json!({ "customerName": "x" }));
    assert_eq!(expect_error(&response, 400), "BadRequest");
    assert!(response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no device template"));
    assert_eq!(read(&admin, "gadget").0, json!({}));

    // No token, and the operations in the route table with their permission.
    expect_error(&gyre.anonymous().get(&path), 401);
    expect_error(
        &gyre
            .anonymous()
            .patch(&path, json!({ "customerName": "x" })),
        401,
    );
    assert_eq!(read(&admin, "truck-7"), before);
    assert!(audit_log(&gyre, "deviceProperties").is_empty());
}
