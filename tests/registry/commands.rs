//! Device commands through the REST API (issue 5): an operator runs the thermostat's
//! `getMaxMinReport` and a raw MQTT device answers it through the real bridge; a component's
//! command travels as `component*name`; a device that is offline or silent gives IoT Central's
//! error shape after the timeout; every execution is in the command history, newest first, and
//! in the export and audit records. Bad requests are refused before any device is called.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gyre_ingest_bridge::codec::{Packet, Publish};
use gyre_tests::HttpResponse;
use serde_json::{json, Value};

use crate::bridge::{create_device, runtime, Device, DeviceKey};
use crate::device_templates::{
    audit_log, publish_thermostat, template_body, template_path, thermostat_model, THERMOSTAT,
};
use crate::{expect_error, Client, Gyre};

const METHODS: &str = "$iothub/methods/POST/#";
const CONTROLLER: &str = "dtmi:com:example:Controller;1";

/// A device of template `template`, created by the operator; its key for connecting.
fn device_of(operator: &Client<'_>, id: &str, template: &str) -> DeviceKey {
    let created = operator.put(
        &format!("/api/devices/{id}"),
        json!({"displayName": id, "template": template}),
    );
    assert!(
        matches!(created.status, 200 | 201),
        "create {id}: {}",
        created.body
    );
    crate::bridge::device_key(operator, id)
}

/// A controller with a root `reboot` command (no request) and the thermostat as component
/// `thermostat1`.
fn publish_controller(builder: &Client<'_>) {
    let mut thermostat = thermostat_model();
    thermostat.as_object_mut().unwrap().remove("@context");
    let model = json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": CONTROLLER,
        "@type": "Interface",
        "displayName": "Controller",
        "contents": [
            {"@type": "Command", "name": "reboot"},
            {"@type": "Component", "name": "thermostat1", "schema": thermostat}
        ]
    });
    let response = builder.put(
        &template_path(CONTROLLER),
        template_body("Controller", model),
    );
    assert_eq!(response.status, 200, "{}", response.body);
}

/// The next PUBLISH the device receives: topic and payload.
async fn next_publish(device: &mut Device) -> (String, Bytes) {
    match device.recv().await {
        Some(Packet::Publish(Publish { topic, payload, .. })) => {
            (topic.as_str().to_owned(), payload)
        }
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

/// The `$rid` of a call of `name` (`$iothub/methods/POST/{name}/?$rid={rid}`).
fn method_rid(topic: &str, name: &str) -> String {
    topic
        .strip_prefix(&format!("$iothub/methods/POST/{name}/?$rid="))
        .unwrap_or_else(|| panic!("{topic} is not a call of {name}"))
        .to_owned()
}

/// Runs `POST path` on another thread while `device_side` plays the device on `rt` (the
/// runtime its connection was made on); the response.
fn run_while<F>(
    rt: &tokio::runtime::Runtime,
    operator: &Client<'_>,
    path: &str,
    body: Value,
    device_side: F,
) -> HttpResponse
where
    F: std::future::Future<Output = ()>,
{
    std::thread::scope(|scope| {
        let call = scope.spawn(|| operator.post(path, body));
        rt.block_on(device_side);
        call.join().expect("the REST call")
    })
}

/// Every `commandExecution` event body, read straight from the state database.
fn command_events(gyre: &Gyre) -> Vec<Value> {
    let db = rusqlite::Connection::open_with_flags(
        gyre.database_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the state database");
    let mut statement = db
        .prepare("SELECT body FROM device_events WHERE kind = 'commandExecution' ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|body| serde_json::from_str(&body.unwrap()).unwrap())
        .collect()
}

const REPORT: &str = "/api/devices/thermo-1/commands/getMaxMinReport";

#[test]
fn commands_the_template_lacks_and_bad_requests_are_refused_before_any_device_is_called() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    publish_thermostat(&admin);
    let operator = gyre.token_with_role("operator");
    device_of(&operator, "thermo-1", THERMOSTAT);
    create_device(&operator, "no-template");
    let since = json!({"request": "2026-11-26T00:00:00Z"});

    // What does not exist: 404.
    for path in [
        "/api/devices/nobody/commands/getMaxMinReport",
        "/api/devices/no-template/commands/getMaxMinReport",
        "/api/devices/thermo-1/commands/selfDestruct",
        "/api/devices/thermo-1/components/thermostat1/commands/getMaxMinReport",
    ] {
        let code = expect_error(&operator.post(path, since.clone()), 404);
        assert_eq!(code, "NotFound", "{path}");
    }
    // What is wrong with the body: 400, naming it.
    let cases = [
        (json!({"request": "last tuesday"}), "$.request"),
        (json!({}), "takes a request"),
        (json!({"request": 5}), "$.request"),
        (
            json!({"request": "2026-11-26T00:00:00Z", "responseTimeout": 4}),
            "responseTimeout",
        ),
        (
            json!({"request": "2026-11-26T00:00:00Z", "responseTimeout": 31}),
            "responseTimeout",
        ),
        (
            json!({"request": "2026-11-26T00:00:00Z", "connectionTimeout": -1}),
            "connectionTimeout",
        ),
        (
            json!({"request": "2026-11-26T00:00:00Z", "connectionTimeout": 31}),
            "connectionTimeout",
        ),
        (
            json!({"request": "2026-11-26T00:00:00Z", "responseTimeout": 7.5}),
            "request body",
        ),
        (
            json!({"request": "2026-11-26T00:00:00Z", "payload": 1}),
            "payload",
        ),
    ];
    for (body, named) in cases {
        let response = operator.post(REPORT, body.clone());
        expect_error(&response, 400);
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(named), "{body}: {message}");
    }
    let not_json = operator.request(
        "POST",
        REPORT,
        &[("content-type", "application/json")],
        b"{",
    );
    expect_error(&not_json, 400);
    let text = operator.request("POST", REPORT, &[("content-type", "text/plain")], b"hi");
    expect_error(&text, 415);
    // Over IoT Hub's 128 KB direct-method payload limit.
    let oversize = json!({"request": "x".repeat(130 * 1024)});
    expect_error(&operator.post(REPORT, oversize), 413);

    // Nothing ran, so nothing was recorded.
    let history = operator.get(REPORT);
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.json(), json!({"value": []}));
    assert!(command_events(&gyre).is_empty());
    expect_error(
        &operator.get("/api/devices/nobody/commands/getMaxMinReport"),
        404,
    );
}

#[test]
fn an_operator_runs_get_max_min_report_and_the_device_answers_with_its_report() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.admin());
    let operator = gyre.token_with_role("operator");
    let device = device_of(&operator, "thermo-1", THERMOSTAT);
    let bridge = gyre.start_bridge();
    let report = json!({
        "maxTemp": 24.5, "minTemp": 18.0, "avgTemp": 21.2,
        "startTime": "2026-11-26T00:00:00Z", "endTime": "2026-11-26T06:00:00Z"
    });

    let rt = runtime();
    let mut connection = rt.block_on(async {
        let mut connection = bridge.connect_device(&device).await;
        connection.subscribe(METHODS).await;
        connection
    });
    let body = json!({"request": "2026-11-26T00:00:00Z", "responseTimeout": 10});
    let response = run_while(&rt, &operator, REPORT, body, async {
        let (topic, payload) = next_publish(&mut connection).await;
        let rid = method_rid(&topic, "getMaxMinReport");
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            json!("2026-11-26T00:00:00Z"),
            "the device receives the request payload as JSON"
        );
        let answer = serde_json::to_vec(&report).unwrap();
        connection
            .publish(
                &format!("$iothub/methods/res/200/?$rid={rid}"),
                &answer,
                3,
                false,
            )
            .await
            .expect("answer");
        connection.expect_puback(3).await;
    });

    assert_eq!(response.status, 201, "{}", response.body);
    let ran = response.json();
    assert_eq!(ran["response"], report);
    assert_eq!(ran["responseCode"], 200);
    assert_eq!(ran["request"], "2026-11-26T00:00:00Z");
    assert_eq!(
        (
            ran["connectionTimeout"].clone(),
            ran["responseTimeout"].clone()
        ),
        (json!(0), json!(10))
    );
    let id = ran["id"].as_str().expect("an id").to_owned();

    // The history, the export record and the audit trail all have it.
    let history = operator.get(REPORT);
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.json(), json!({"value": [ran]}));
    let events = command_events(&gyre);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["name"], "getMaxMinReport");
    assert_eq!(events[0]["response"], report);
    let audited = audit_log(&gyre, "deviceCommand");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].1, "create");
    assert_eq!(audited[0].2, "thermo-1");
}

#[test]
fn a_components_command_reaches_the_device_as_component_star_name() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    publish_controller(&admin);
    let device = device_of(&admin, "controller-1", CONTROLLER);
    let bridge = gyre.start_bridge();
    let path = "/api/devices/controller-1/components/thermostat1/commands/getMaxMinReport";

    let rt = runtime();
    let mut connection = rt.block_on(async {
        let mut connection = bridge.connect_device(&device).await;
        connection.subscribe(METHODS).await;
        connection
    });
    let body = json!({"request": "2026-11-26T00:00:00Z"});
    let response = run_while(&rt, &admin, path, body, async {
        let (topic, _) = next_publish(&mut connection).await;
        let rid = method_rid(&topic, "thermostat1*getMaxMinReport");
        // A device error is still an answer: the device's status is the responseCode.
        connection
            .publish(
                &format!("$iothub/methods/res/500/?$rid={rid}"),
                br#"{"error":"sensor offline"}"#,
                4,
                false,
            )
            .await
            .expect("answer");
        connection.expect_puback(4).await;
    });
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["responseCode"], 500);
    assert_eq!(
        response.json()["response"],
        json!({"error": "sensor offline"})
    );

    // The root `reboot` takes no request and goes by its bare name.
    let response = run_while(
        &rt,
        &admin,
        "/api/devices/controller-1/commands/reboot",
        json!({}),
        async {
            let (topic, payload) = next_publish(&mut connection).await;
            let rid = method_rid(&topic, "reboot");
            assert!(payload.is_empty() || &payload[..] == b"null", "{payload:?}");
            connection
                .publish(
                    &format!("$iothub/methods/res/200/?$rid={rid}"),
                    b"",
                    5,
                    false,
                )
                .await
                .expect("answer");
            connection.expect_puback(5).await;
        },
    );
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["responseCode"], 200);
    assert!(
        response.json().get("response").is_none(),
        "{}",
        response.body
    );

    // Each command has its own history.
    let component_history = admin.get(path).json();
    assert_eq!(component_history["value"].as_array().unwrap().len(), 1);
    assert_eq!(component_history["value"][0]["responseCode"], 500);
    let root_history = admin
        .get("/api/devices/controller-1/commands/reboot")
        .json();
    assert_eq!(root_history["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        admin
            .get("/api/devices/controller-1/commands/getMaxMinReport")
            .json(),
        json!({"value": []})
    );
}

#[test]
fn a_command_to_an_offline_device_fails_after_the_connection_timeout() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.admin());
    let operator = gyre.token_with_role("operator");
    device_of(&operator, "thermo-1", THERMOSTAT);
    let _bridge = gyre.start_bridge();

    let started = Instant::now();
    let response = operator.post(
        REPORT,
        json!({"request": "2026-11-26T00:00:00Z", "connectionTimeout": 2}),
    );
    let waited = started.elapsed();
    assert_eq!(expect_error(&response, 404), "DeviceNotOnline");
    assert!(
        waited >= Duration::from_millis(1900),
        "answered after {waited:?}, before the connection timeout"
    );
    let history = operator.get(REPORT).json();
    assert_eq!(history["value"][0]["responseCode"], 404);
    assert_eq!(history["value"][0]["connectionTimeout"], 2);
    assert!(history["value"][0].get("response").is_none());
    assert_eq!(command_events(&gyre)[0]["outcome"], "deviceNotOnline");
}

#[test]
fn a_device_that_does_not_answer_gives_a_gateway_timeout() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.admin());
    let operator = gyre.token_with_role("operator");
    let device = device_of(&operator, "thermo-1", THERMOSTAT);
    let bridge = gyre.start_bridge();

    let rt = runtime();
    let mut connection = rt.block_on(async {
        let mut connection = bridge.connect_device(&device).await;
        connection.subscribe(METHODS).await;
        connection
    });
    let started = Instant::now();
    let body = json!({"request": "2026-11-26T00:00:00Z", "responseTimeout": 5});
    let response = run_while(&rt, &operator, REPORT, body, async {
        // The device gets the call and stays silent.
        let (topic, _) = next_publish(&mut connection).await;
        method_rid(&topic, "getMaxMinReport");
    });
    assert_eq!(expect_error(&response, 504), "GatewayTimeout");
    assert!(
        started.elapsed() >= Duration::from_millis(4900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(operator.get(REPORT).json()["value"][0]["responseCode"], 504);
}

#[test]
fn without_a_reachable_bridge_a_command_is_unavailable_and_recorded() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.admin());
    let operator = gyre.token_with_role("operator");
    device_of(&operator, "thermo-1", THERMOSTAT);

    let response = operator.post(REPORT, json!({"request": "2026-11-26T00:00:00Z"}));
    assert_eq!(expect_error(&response, 503), "ServiceUnavailable");
    assert_eq!(operator.get(REPORT).json()["value"][0]["responseCode"], 503);
}

#[test]
fn the_history_lists_executions_newest_first_in_pages() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.admin());
    let operator = gyre.token_with_role("operator");
    device_of(&operator, "thermo-1", THERMOSTAT);
    let _bridge = gyre.start_bridge();
    let days = [
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
    ];
    for day in days {
        // Offline with no connection timeout: fails at once, and is recorded.
        expect_error(&operator.post(REPORT, json!({"request": day})), 404);
    }

    let first = operator.get(&format!("{REPORT}?$top=2"));
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    let requests: Vec<&Value> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["request"])
        .collect();
    assert_eq!(requests, [&json!(days[2]), &json!(days[1])]);
    let next = first["nextLink"].as_str().expect("a next page");
    let path = &next[next.find("/api/").expect("an /api URL")..];
    let second = operator.get(path).json();
    assert_eq!(second["value"].as_array().unwrap().len(), 1);
    assert_eq!(second["value"][0]["request"], days[0]);
    assert!(second.get("nextLink").is_none());
    expect_error(&operator.get(&format!("{REPORT}?$skiptoken=abc")), 400);
}
