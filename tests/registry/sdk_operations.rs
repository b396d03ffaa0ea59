//! The official device SDKs end to end (issue 5): an operator works a thermostat through IoT
//! Central's REST API — reads what it reports, sets its target temperature, calls its
//! `getMaxMinReport` command, sends it a message — and the device, written with Microsoft's
//! Python or Node SDK as the IoT Plug and Play thermostat sample is, sees each through its SDK
//! (`serveThermostat` in tests/sdk/device.py and device.js). Then the device goes offline,
//! and catches up when it is back.
//!
//! Each story runs for both SDKs at once (see `sdk.rs` for how the scripts are driven).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bridge::HOST;
use crate::device_templates::{publish_thermostat, THERMOSTAT};
use crate::sdk::{command, device_primary_key, for_each_sdk, SdkDevice};
use crate::{Client, Gyre};

/// How long a change may take to travel REST → bridge → device → REST.
const PROPAGATION: Duration = Duration::from_secs(20);

#[test]
fn an_operator_sets_a_thermostat_calls_its_command_and_messages_it_with_each_sdk() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let operator = gyre.token_with_role("operator");
    let bridge = gyre.start_bridge();

    for_each_sdk(|sdk| {
        let device_id = format!("{}-operated", sdk.name());
        let created = operator.put(
            &format!("/api/devices/{device_id}"),
            json!({"displayName": device_id, "template": THERMOSTAT}),
        );
        assert_eq!(created.status, 200, "{}", created.body);
        let key = device_primary_key(&operator, &device_id);
        let properties = format!("/api/devices/{device_id}/properties");
        let connection = json!({
            "hostName": HOST, "deviceId": device_id, "key": key, "modelId": THERMOSTAT,
        });

        let mut device = SdkDevice::start(sdk, &bridge);
        device.connect(connection.clone());
        ok(&mut device, json!({"op": "serveThermostat"}));

        // The device reports a read-only property; the operator sees it.
        ok(
            &mut device,
            json!({"op": "reportProperties", "patch": {"maxTempSinceLastReboot": 26.5}}),
        );
        let shown = operator.get(&properties);
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert_eq!(shown.json()["maxTempSinceLastReboot"], 26.5, "{}", shown.body);

        // The operator sets the target temperature; the device receives it at once and
        // acknowledges it; the operator sees the acknowledgement.
        let set = operator.patch(&properties, json!({"targetTemperature": 25.0}));
        assert_eq!(set.status, 202, "{}", set.body);
        assert_eq!(
            set.json()["$metadata"]["targetTemperature"]["desiredValue"],
            25.0,
            "{}",
            set.body
        );
        let desired = eventually(&mut device, "the desired targetTemperature", |events| {
            events["desired"]
                .as_array()?
                .iter()
                .find(|patch| patch["targetTemperature"] == 25.0)
                .cloned()
        });
        assert!(desired["$version"].as_u64().is_some(), "{desired}");
        let acknowledged = wait_for(&operator, &properties, |view| {
            view["$metadata"]["targetTemperature"]["ackCode"] == 200
                && view["$metadata"]["targetTemperature"]["ackVersion"]
                    == view["$metadata"]["targetTemperature"]["desiredVersion"]
        });
        assert_eq!(acknowledged["targetTemperature"], 25.0, "{acknowledged}");

        // The operator runs the command; the device answers through its SDK.
        let commands = format!("/api/devices/{device_id}/commands/getMaxMinReport");
        let ran = operator.post(&commands, json!({"request": "2026-11-25T00:00:00Z"}));
        assert_eq!(ran.status, 201, "{}", ran.body);
        let ran = ran.json();
        assert_eq!(ran["responseCode"], 200, "{ran}");
        assert_eq!(ran["response"]["maxTemp"], 25.5, "{ran}");
        assert_eq!(ran["response"]["startTime"], "2026-11-25T00:00:00Z", "{ran}");
        let call = eventually(&mut device, "the getMaxMinReport call", |events| {
            events["methods"].as_array()?.first().cloned()
        });
        assert_eq!(call["payload"], "2026-11-25T00:00:00Z", "{call}");
        let history = operator.get(&commands);
        assert_eq!(history.status, 200, "{}", history.body);
        assert_eq!(history.json()["value"][0]["id"], ran["id"], "{}", history.body);

        // Offline: the device goes away; the operator changes the target temperature, a
        // command fails at once, a message waits.
        device.request(json!({"op": "disconnect"}));
        let set = operator.patch(&properties, json!({"targetTemperature": 30.0}));
        assert_eq!(set.status, 202, "{}", set.body);
        let failed = operator.post(
            &commands,
            json!({"request": "2026-11-25T00:00:00Z", "connectionTimeout": 0}),
        );
        assert!(
            failed.status >= 400 && failed.json()["error"]["code"].is_string(),
            "a command to an offline device fails with IoT Central's error body: {} {}",
            failed.status,
            failed.body
        );
        let sent = operator.post(
            &format!("/api/devices/{device_id}/messages"),
            json!({"payload": {"greeting": sdk.name()}, "properties": {"kind": "hello"}}),
        );
        assert_eq!(sent.status, 202, "{}", sent.body);

        // Back online: the twin shows the new target temperature, the message arrives.
        let mut device = SdkDevice::start(sdk, &bridge);
        device.connect(connection);
        let twin = ok(&mut device, json!({"op": "getTwin"}));
        assert_eq!(twin["twin"]["desired"]["targetTemperature"], 30.0, "{twin}");
        ok(&mut device, json!({"op": "serveThermostat"}));
        let message = eventually(&mut device, "the cloud-to-device message", |events| {
            events["messages"].as_array()?.first().cloned()
        });
        let body: Value = serde_json::from_str(message["body"].as_str().expect("a text body"))
            .expect("the payload as sent, in JSON");
        assert_eq!(body, json!({"greeting": sdk.name()}), "{message}");
        assert_eq!(message["properties"]["kind"], "hello", "{message}");
        device.disconnect();
    });
}

/// Sends `request` and returns its answer, which must be a success.
fn ok(device: &mut SdkDevice, request: Value) -> Value {
    let op = request["op"].as_str().expect("an op").to_owned();
    let answer = device.request(command(&op, request));
    device.expect_ok(&answer);
    answer
}

/// Asks the device for what its handlers saw until `found` finds something there.
fn eventually(
    device: &mut SdkDevice,
    what: &str,
    found: impl Fn(&Value) -> Option<Value>,
) -> Value {
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let events = ok(device, json!({"op": "events"}));
        if let Some(value) = found(&events) {
            return value;
        }
        if Instant::now() > deadline {
            device.fail(&format!("{what} did not arrive within {PROPAGATION:?}: {events}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads `path` until `done` holds for its body; returns that body.
fn wait_for(client: &Client<'_>, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let response = client.get(path);
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never became what was expected: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
