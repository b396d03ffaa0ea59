//! The device twin over MQTT, raw through the real bridge and registry: a device fetches its
//! twin, reports properties (a component among them) and sees them versioned; the operator sees
//! the reported values through the properties API; a bad patch is refused with an `errorCode`
//! the Node SDK can see, and changes nothing. An operator's writable-property change reaches a
//! subscribed thermostat at once with its `$version`, and one that was offline reads it from
//! its twin when it reconnects.

use serde_json::{json, Value};

use std::time::Duration;

use gyre_ingest_bridge::codec::{Packet, Publish};

use crate::bridge::{create_device, device_key, runtime, Device};
use crate::device_templates::{publish_thermostat, THERMOSTAT};
use crate::{Client, Gyre};

/// Publishes a twin request at QoS 1 and returns the response's topic (after
/// `$iothub/twin/res/`) and body, once the PUBACK came.
async fn twin_request(
    device: &mut Device,
    topic: &str,
    body: &[u8],
    packet_id: u16,
) -> (String, Vec<u8>) {
    let (topic, payload) = device.request(topic, body, packet_id).await;
    let rest = topic
        .strip_prefix("$iothub/twin/res/")
        .unwrap_or_else(|| panic!("not a twin response: {topic}"));
    (rest.to_owned(), payload.to_vec())
}

#[test]
fn a_device_reports_properties_and_reads_its_twin_back() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "thermostat-7");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe("$iothub/twin/res/#").await;

        let (status, body) = twin_request(&mut device, "$iothub/twin/GET/?$rid=1", b" ", 2).await;
        assert_eq!(status, "200/?$rid=1");
        let twin: Value = serde_json::from_slice(&body).expect("a JSON twin");
        assert_eq!(twin, json!({"desired": {"$version": 1}, "reported": {"$version": 1}}));

        let patch = json!({"serialNumber": "SN-1", "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 30.5}});
        let (status, body) = twin_request(
            &mut device,
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            patch.to_string().as_bytes(),
            3,
        )
        .await;
        assert_eq!(status, "204/?$rid=2&$version=2");
        assert!(body.is_empty());

        let (_, body) = twin_request(&mut device, "$iothub/twin/GET/?$rid=3", b" ", 4).await;
        let twin: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(twin["reported"]["serialNumber"], "SN-1");
        assert_eq!(twin["reported"]["thermostat1"]["maxTempSinceLastReboot"], 30.5);
        assert_eq!(twin["reported"]["$version"], 2);

        // Refused patches: an error body with `errorCode`, and the version does not move.
        for (n, bad) in [&b"not json"[..], b"[1, 2]", br#"{"a.b": 1}"#].into_iter().enumerate() {
            let rid = 10 + n;
            let topic = format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}");
            let (status, body) = twin_request(&mut device, &topic, bad, 20 + n as u16).await;
            assert_eq!(status, format!("400/?$rid={rid}"));
            let error: Value = serde_json::from_slice(&body).expect("a JSON error");
            assert_eq!(error["errorCode"], 400_004, "{error}");
        }
        let (_, body) = twin_request(&mut device, "$iothub/twin/GET/?$rid=30", b" ", 30).await;
        let twin: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(twin["reported"]["$version"], 2);
        device.disconnect().await;
    });

    // What the device reported is what the operator reads as its reported properties.
    let properties = operator.get("/api/devices/thermostat-7/properties");
    assert_eq!(properties.status, 200, "{}", properties.body);
    assert_eq!(
        properties.json()["serialNumber"],
        "SN-1",
        "{}",
        properties.body
    );
}

/// An operator's thermostat `id` on the thermostat template (writable `targetTemperature`).
fn thermostat(operator: &Client<'_>, id: &str) {
    let created = operator.put(
        &format!("/api/devices/{id}"),
        json!({"displayName": id, "template": THERMOSTAT}),
    );
    assert_eq!(created.status, 200, "{}", created.body);
}

fn set_target(operator: &Client<'_>, id: &str, target: f64) -> Value {
    let patched = operator.patch(
        &format!("/api/devices/{id}/properties"),
        json!({"targetTemperature": target}),
    );
    assert_eq!(patched.status, 202, "{}", patched.body);
    patched.json()
}

/// The next PUBLISH the device receives (skipping nothing: anything else fails), within 10 s.
async fn next_publish(device: &mut Device) -> (String, Value) {
    match device.try_recv(Duration::from_secs(10)).await {
        Ok(Some(Packet::Publish(Publish { topic, payload, .. }))) => (
            topic.as_str().to_owned(),
            serde_json::from_slice(&payload).expect("a JSON payload"),
        ),
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

#[test]
fn a_subscribed_thermostat_receives_a_new_target_at_once_and_acknowledges_it() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    publish_thermostat(&gyre.admin());
    thermostat(&operator, "thermostat-9");
    let key = device_key(&operator, "thermostat-9");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe("$iothub/twin/res/#").await;
        device
            .subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await;

        let accepted = set_target(&operator, "thermostat-9", 23.0);
        assert_eq!(
            accepted["$metadata"]["targetTemperature"]["desiredVersion"],
            2
        );
        let (topic, body) = next_publish(&mut device).await;
        assert_eq!(topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
        assert_eq!(body, json!({"targetTemperature": 23.0, "$version": 2}));

        set_target(&operator, "thermostat-9", 24.5);
        let (topic, body) = next_publish(&mut device).await;
        assert_eq!(topic, "$iothub/twin/PATCH/properties/desired/?$version=3");
        assert_eq!(body, json!({"targetTemperature": 24.5, "$version": 3}));

        let ack =
            json!({"targetTemperature": {"value": 24.5, "ac": 200, "av": 3, "ad": "completed"}});
        let (status, _) = twin_request(
            &mut device,
            "$iothub/twin/PATCH/properties/reported/?$rid=5",
            ack.to_string().as_bytes(),
            5,
        )
        .await;
        assert_eq!(status, "204/?$rid=5&$version=2");
        device.disconnect().await;
    });

    let properties = operator.get("/api/devices/thermostat-9/properties").json();
    assert_eq!(properties["targetTemperature"], 24.5, "{properties}");
    let metadata = &properties["$metadata"]["targetTemperature"];
    assert_eq!(metadata["desiredValue"], 24.5);
    assert_eq!(metadata["desiredVersion"], 3);
    assert_eq!(metadata["ackVersion"], 3);
    assert_eq!(metadata["ackCode"], 200);
}

#[test]
fn a_thermostat_offline_during_the_change_reads_it_when_it_reconnects() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    publish_thermostat(&gyre.admin());
    thermostat(&operator, "thermostat-10");
    let key = device_key(&operator, "thermostat-10");

    // No bridge runs at all: the change is accepted and kept for the device.
    set_target(&operator, "thermostat-10", 19.0);
    set_target(&operator, "thermostat-10", 20.5);

    let bridge = gyre.start_bridge();
    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe("$iothub/twin/res/#").await;
        device
            .subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await;
        let (status, body) = twin_request(&mut device, "$iothub/twin/GET/?$rid=1", b" ", 2).await;
        assert_eq!(status, "200/?$rid=1");
        let twin: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            twin["desired"],
            json!({"targetTemperature": 20.5, "$version": 3})
        );
        device.disconnect().await;
    });
}
