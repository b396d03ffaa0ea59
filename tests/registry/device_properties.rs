//! Device properties through the REST API, as an operator keeps a truck's customer and service
//! date (cloud properties) and sets its target temperature (a writable property the device
//! acknowledges): publish a template, register a device, PATCH and PUT its properties (and one
//! component's) and read them back with the device's acknowledgement, honour `If-Match`, and
//! refuse wrong types, read-only properties, unknown names and components, and bad bodies,
//! each in IoT Central's error shape and without changing anything.

use serde_json::{json, Value};

use crate::bridge::{device_key, runtime};
use crate::device_templates::audit_log;
use crate::{expect_error, Client, Gyre};

const TRUCK: &str = "dtmi:contoso:RefrigeratedTruck;1";

/// A refrigerated truck: cloud properties `customerName` (string) and `serviceDate` (date), a
/// read-only `firmwareVersion`, writable `targetTemperature` and `displayMessage`, a telemetry,
/// and a `settings` component with a cloud property, a writable and a read-only property of
/// its own.
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
                { "@type": "Property", "name": "displayMessage", "schema": "string",
                  "writable": true },
                { "@type": "Telemetry", "name": "temperature", "schema": "double" },
                { "@type": "Component", "name": "settings", "schema": {
                    "@id": "dtmi:contoso:TruckSettings;1",
                    "@type": "Interface",
                    "contents": [
                        { "@type": ["Property", "Cloud"], "name": "maxLoadKg", "schema": "integer" },
                        { "@type": "Property", "name": "defrostMinutes", "schema": "integer",
                          "writable": true },
                        { "@type": "Property", "name": "compressorHours", "schema": "integer" }
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
        // Device properties: read-only ones never; writable ones only with their schema's type.
        refused(
            &operator,
            method,
            json!({ "firmwareVersion": "2.0" }),
            "'firmwareVersion' is a read-only device property",
        );
        refused(
            &operator,
            method,
            json!({ "settings": { "compressorHours": 7 } }),
            "$.settings.compressorHours: 'compressorHours' is a read-only device property",
        );
        refused(
            &operator,
            method,
            json!({ "targetTemperature": "cold" }),
            "$.targetTemperature: expected a double, found 'cold'",
        );
        refused(
            &operator,
            method,
            json!({ "settings": { "defrostMinutes": 2.5 } }),
            "$.settings.defrostMinutes: expected an integer",
        );
        // The desired document keeps IoT Hub's 32 KB limit, whatever the body's.
        refused(
            &operator,
            method,
            json!({ "displayMessage": "x".repeat(40 * 1024) }),
            "over the 32768-byte limit",
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

fn component_path(device_id: &str, component: &str) -> String {
    format!("/api/devices/{device_id}/components/{component}/properties?api-version=2022-07-31")
}

/// `(kind, body)` of every device event of `device_id`, in order, read straight from the state
/// database.
pub(crate) fn device_events(gyre: &Gyre, device_id: &str) -> Vec<(String, Value)> {
    let db = gyre.host().app().state_dir().join("sqlite_db.db");
    let connection =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the state database");
    let mut statement = connection
        .prepare("SELECT kind, body FROM device_events WHERE device_id = ?1 ORDER BY seq")
        .unwrap();
    statement
        .query_map([device_id], |row| {
            let body: String = row.get(1)?;
            Ok((row.get(0)?, serde_json::from_str(&body).unwrap()))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn an_operator_sets_the_target_temperature_and_sees_the_trucks_acknowledgement() {
    let gyre = fleet();
    let operator = gyre.token_with_role("operator");

    // PATCH a writable property with a cloud property: 202 with IoT Central's desired echo.
    let patched = operator.patch(
        &properties_path("truck-7"),
        json!({ "targetTemperature": 4.5, "customerName": "Contoso Foods" }),
    );
    assert_eq!(patched.status, 202, "{}", patched.body);
    assert_eq!(
        patched.json(),
        json!({
            "customerName": "Contoso Foods",
            "targetTemperature": 4.5,
            "$metadata": {
                "customerName": { "desiredValue": "Contoso Foods" },
                "targetTemperature": { "desiredValue": 4.5, "desiredVersion": 2 }
            }
        })
    );

    // Until the device answers, GET shows the desired value only, in `$metadata`.
    let (properties, etag) = read(&operator, "truck-7");
    assert_eq!(etag, patched.header("etag").unwrap());
    assert_eq!(properties.get("targetTemperature"), None, "{properties}");
    let pending = &properties["$metadata"]["targetTemperature"];
    assert_eq!(pending["desiredValue"], 4.5, "{properties}");
    assert_eq!(pending["desiredVersion"], 2);
    assert!(pending["lastUpdateTime"].is_string(), "{properties}");
    assert_eq!(pending.get("ackCode"), None);

    // The truck fetches its twin and acknowledges as IoT Plug and Play says: ac, av, ad.
    let key = device_key(&operator, "truck-7");
    let bridge = gyre.start_bridge();
    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe("$iothub/twin/res/#").await;
        let (_, body) = device.request("$iothub/twin/GET/?$rid=1", b" ", 2).await;
        let twin: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            twin["desired"],
            json!({ "targetTemperature": 4.5, "$version": 2 })
        );
        let ack = json!({
            "targetTemperature": { "value": 4.5, "ac": 200, "av": 2, "ad": "completed" },
            "firmwareVersion": "1.4.2"
        });
        let (topic, _) = device
            .request(
                "$iothub/twin/PATCH/properties/reported/?$rid=2",
                ack.to_string().as_bytes(),
                3,
            )
            .await;
        assert!(topic.starts_with("$iothub/twin/res/204/"), "{topic}");
        device.disconnect().await;
    });

    let (properties, _) = read(&operator, "truck-7");
    assert_eq!(properties["targetTemperature"], 4.5, "{properties}");
    assert_eq!(properties["firmwareVersion"], "1.4.2");
    assert_eq!(properties["customerName"], "Contoso Foods");
    let acknowledged = &properties["$metadata"]["targetTemperature"];
    assert_eq!(acknowledged["desiredValue"], 4.5);
    assert_eq!(acknowledged["desiredVersion"], 2);
    assert_eq!(acknowledged["ackVersion"], 2);
    assert_eq!(acknowledged["ackCode"], 200);
    assert_eq!(acknowledged["ackDescription"], "completed");
    assert!(acknowledged["lastUpdateTime"].is_string());

    // PUT sets the writable property again (version 3), replaces the cloud set, and leaves
    // what the device acknowledged visible until it answers anew.
    let replaced = operator.put(
        &properties_path("truck-7"),
        json!({ "targetTemperature": 3.0, "serviceDate": "2025-06-01" }),
    );
    assert_eq!(replaced.status, 202, "{}", replaced.body);
    assert_eq!(
        replaced.json()["$metadata"]["targetTemperature"],
        json!({ "desiredValue": 3.0, "desiredVersion": 3 })
    );
    let (properties, _) = read(&operator, "truck-7");
    assert_eq!(
        properties.get("customerName"),
        None,
        "PUT replaced the cloud set"
    );
    assert_eq!(properties["serviceDate"], "2025-06-01");
    assert_eq!(properties["targetTemperature"], 4.5);
    assert_eq!(
        properties["$metadata"]["targetTemperature"]["desiredValue"],
        3.0
    );
    assert_eq!(
        properties["$metadata"]["targetTemperature"]["ackVersion"],
        2
    );

    // Each change is recorded for export, and each REST write audited.
    let events = device_events(&gyre, "truck-7");
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "cloudPropertyChange",
            "devicePropertyDesiredChange",
            "devicePropertyReportedChange",
            "cloudPropertyChange",
            "devicePropertyDesiredChange",
        ]
    );
    assert_eq!(
        events[1].1,
        json!({ "component": null, "properties": [{ "name": "targetTemperature", "value": 4.5 }] })
    );
    let reported = events[2].1["properties"].as_array().unwrap();
    assert!(
        reported.contains(&json!({
            "name": "targetTemperature",
            "value": { "value": 4.5, "ac": 200, "av": 2, "ad": "completed" }
        })),
        "{reported:?}"
    );
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert_eq!(audit_log(&gyre, "deviceProperties").len(), 2);
}

#[test]
fn a_components_properties_have_their_own_endpoint() {
    let gyre = fleet();
    let operator = gyre.token_with_role("operator");
    let settings = component_path("truck-7", "settings");

    // Empty at first; a PATCH sets a cloud and a writable property of the component.
    let empty = operator.get(&settings);
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.json(), json!({}));
    let patched = operator.patch(
        &settings,
        json!({ "maxLoadKg": 12000, "defrostMinutes": 20 }),
    );
    assert_eq!(patched.status, 202, "{}", patched.body);
    assert_eq!(
        patched.json(),
        json!({
            "maxLoadKg": 12000,
            "defrostMinutes": 20,
            "$metadata": {
                "maxLoadKg": { "desiredValue": 12000 },
                "defrostMinutes": { "desiredValue": 20, "desiredVersion": 2 }
            }
        })
    );
    let whole = read(&operator, "truck-7").0;
    assert_eq!(whole["settings"]["__t"], "c", "{whole}");
    assert_eq!(whole["settings"]["maxLoadKg"], 12000);
    assert_eq!(
        whole["settings"]["$metadata"]["defrostMinutes"]["desiredValue"],
        20
    );
    let component = operator.get(&settings).json();
    assert_eq!(component["maxLoadKg"], 12000);
    assert_eq!(
        component["$metadata"]["defrostMinutes"]["desiredVersion"],
        2
    );
    assert_eq!(component.get("__t"), None);

    // The device sees the component marked in its desired properties.
    let key = device_key(&operator, "truck-7");
    let bridge = gyre.start_bridge();
    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe("$iothub/twin/res/#").await;
        let (_, body) = device.request("$iothub/twin/GET/?$rid=1", b" ", 2).await;
        let twin: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            twin["desired"],
            json!({ "settings": { "__t": "c", "defrostMinutes": 20 }, "$version": 2 })
        );
        device.disconnect().await;
    });

    // PUT replaces the component's cloud properties and nobody else's.
    let customer = operator.patch(&properties_path("truck-7"), json!({ "customerName": "C" }));
    assert_eq!(customer.status, 202, "{}", customer.body);
    let replaced = operator.put(&settings, json!({ "defrostMinutes": 25 }));
    assert_eq!(replaced.status, 202, "{}", replaced.body);
    let whole = read(&operator, "truck-7").0;
    assert_eq!(whole["customerName"], "C");
    assert_eq!(whole["settings"].get("maxLoadKg"), None, "{whole}");
    assert_eq!(
        whole["settings"]["$metadata"]["defrostMinutes"]["desiredValue"],
        25
    );

    // Refusals name the path inside the component, and change nothing.
    let before = read(&operator, "truck-7");
    for (body, needle) in [
        (
            json!({ "defrostMinutes": "long" }),
            "$.defrostMinutes: expected an integer",
        ),
        (
            json!({ "compressorHours": 1 }),
            "$.compressorHours: 'compressorHours' is a read-only",
        ),
        (
            json!({ "customerName": "x" }),
            "component 'settings' declares no property 'customerName'",
        ),
        (json!([1]), "must be a JSON object"),
    ] {
        for method in ["PUT", "PATCH"] {
            let response = operator.request(
                method,
                &settings,
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
        }
    }
    assert_eq!(read(&operator, "truck-7"), before);

    // A component the template lacks, or a device without a template: 404.
    expect_error(&operator.get(&component_path("truck-7", "engine")), 404);
    expect_error(
        &operator.patch(&component_path("truck-7", "engine"), json!({ "x": 1 })),
        404,
    );
    assert_eq!(operator.put("/api/devices/gadget", json!({})).status, 200);
    expect_error(&operator.get(&component_path("gadget", "settings")), 404);
    expect_error(
        &operator.get(&component_path("no-such-truck", "settings")),
        404,
    );
    expect_error(&gyre.anonymous().get(&settings), 401);
}
