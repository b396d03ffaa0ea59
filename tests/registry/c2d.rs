//! Cloud-to-device messages (issue 5): an operator sends one through the REST API and a raw
//! MQTT device subscribed to `devices/{id}/messages/devicebound/#` receives it at QoS 1 with
//! IoT Hub's property bag; a device that was offline receives it when it reconnects; a message
//! the device did not acknowledge comes again in its next session; an expired one never comes.
//! Bad input and IoT Hub's limits (64 KiB, 50 waiting messages) are refused.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gyre_domain::mqtt::MessageProperties;
use gyre_ingest_bridge::codec::{Packet, PacketId, PubAck, Publish, PublishQos};
use serde_json::{json, Value};

use crate::bridge::{create_device, runtime, Device, DeviceKey, TestBridge};
use crate::{expect_error, Client, Gyre};

fn devicebound(device_id: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/#")
}

/// A message as the device received it.
struct Received {
    packet_id: PacketId,
    properties: MessageProperties,
    payload: Bytes,
}

/// The next PUBLISH is a C2D message for `device_id` at QoS 1.
async fn next_message(device: &mut Device, device_id: &str) -> Received {
    match device.recv().await {
        Some(Packet::Publish(Publish {
            topic,
            payload,
            qos,
            ..
        })) => {
            let prefix = format!("devices/{device_id}/messages/devicebound/");
            let bag = topic
                .as_str()
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{} is not a C2D topic of {device_id}", topic.as_str()));
            let PublishQos::AtLeastOnce { packet_id, .. } = qos else {
                panic!("C2D is sent at QoS 1, got {qos:?}");
            };
            Received {
                packet_id,
                properties: MessageProperties::parse_bag(bag).expect("a property bag"),
                payload,
            }
        }
        other => panic!("expected a C2D PUBLISH, got {other:?}"),
    }
}

async fn acknowledge(device: &mut Device, received: &Received) {
    device
        .send(&Packet::PubAck(PubAck {
            packet_id: received.packet_id,
        }))
        .await
        .expect("PUBACK");
}

async fn connect_and_listen(bridge: &TestBridge, device: &DeviceKey) -> Device {
    let mut connection = bridge.connect_device(device).await;
    connection.subscribe(&devicebound(&device.id)).await;
    connection
}

fn send(operator: &Client<'_>, device_id: &str, body: Value) -> Value {
    let response = operator.post(&format!("/api/devices/{device_id}/messages"), body);
    assert_eq!(response.status, 202, "{}", response.body);
    response.json()
}

/// The state the REST API shows for message `id` (`None` once it is gone).
fn state_of(operator: &Client<'_>, device_id: &str, id: &str) -> Option<String> {
    let listed = operator.get(&format!("/api/devices/{device_id}/messages"));
    assert_eq!(listed.status, 200, "{}", listed.body);
    listed.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["id"] == id)
        .map(|message| message["state"].as_str().unwrap().to_owned())
}

/// Waits (a few seconds at most) until message `id` shows as `state`.
fn wait_for_state(operator: &Client<'_>, device_id: &str, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = state_of(operator, device_id, id);
        if now.as_deref() == Some(state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "message {id} is {now:?}, not {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_subscribed_device_receives_the_message_with_its_property_bag() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "sensor-1");
    let bridge = gyre.start_bridge();
    let rt = runtime();
    let mut connection = rt.block_on(connect_and_listen(&bridge, &device));

    let sent = send(
        &operator,
        "sensor-1",
        json!({"payload": {"setpoint": 21.5}, "properties": {"my prop": "a b&c"}, "ttl": "PT10M"}),
    );
    assert_eq!(sent["state"], "queued");
    assert_eq!(sent["payload"], json!({"setpoint": 21.5}));
    assert_eq!(sent["properties"], json!({"my prop": "a b&c"}));
    assert!(
        sent["expiresAt"].is_string() && sent["enqueuedAt"].is_string(),
        "{sent}"
    );
    let id = sent["id"].as_str().unwrap().to_owned();

    rt.block_on(async {
        let received = next_message(&mut connection, "sensor-1").await;
        let system = &received.properties.system;
        assert_eq!(system.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            system.to.as_deref(),
            Some("/devices/sensor-1/messages/deviceBound")
        );
        assert_eq!(system.content_type.as_deref(), Some("application/json"));
        assert_eq!(system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(
            received.properties.application_property("my prop"),
            Some("a b&c")
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&received.payload).unwrap(),
            json!({"setpoint": 21.5})
        );
        acknowledge(&mut connection, &received).await;
    });
    wait_for_state(&operator, "sensor-1", &id, "delivered");
}

#[test]
fn a_device_that_was_offline_receives_the_message_when_it_reconnects() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "sensor-1");
    let bridge = gyre.start_bridge();

    let sent = send(
        &operator,
        "sensor-1",
        json!({"payload": "open the valve", "contentType": "text/plain"}),
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(
        state_of(&operator, "sensor-1", &id).as_deref(),
        Some("queued")
    );

    runtime().block_on(async {
        let mut connection = connect_and_listen(&bridge, &device).await;
        let received = next_message(&mut connection, "sensor-1").await;
        assert_eq!(
            received.properties.system.message_id.as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            received.properties.system.content_type.as_deref(),
            Some("text/plain")
        );
        assert_eq!(
            &received.payload[..],
            b"open the valve",
            "text goes as text"
        );
        acknowledge(&mut connection, &received).await;
    });
    wait_for_state(&operator, "sensor-1", &id, "delivered");
}

#[test]
fn a_message_the_device_did_not_acknowledge_comes_again_in_its_next_session() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "sensor-1");
    let bridge = gyre.start_bridge();
    let id = send(&operator, "sensor-1", json!({"payload": 1}))["id"]
        .as_str()
        .unwrap()
        .to_owned();

    runtime().block_on(async {
        // First session: the message arrives, the device drops the connection without PUBACK.
        let mut connection = connect_and_listen(&bridge, &device).await;
        let received = next_message(&mut connection, "sensor-1").await;
        assert_eq!(
            received.properties.system.message_id.as_deref(),
            Some(id.as_str())
        );
        drop(connection);
    });
    assert_eq!(
        state_of(&operator, "sensor-1", &id).as_deref(),
        Some("queued")
    );

    runtime().block_on(async {
        let mut connection = connect_and_listen(&bridge, &device).await;
        let again = next_message(&mut connection, "sensor-1").await;
        assert_eq!(
            again.properties.system.message_id.as_deref(),
            Some(id.as_str())
        );
        acknowledge(&mut connection, &again).await;
    });
    wait_for_state(&operator, "sensor-1", &id, "delivered");
}

#[test]
fn an_expired_message_is_never_delivered() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "sensor-1");
    let bridge = gyre.start_bridge();
    let stale = send(
        &operator,
        "sensor-1",
        json!({"payload": "stale", "ttl": "PT1S"}),
    );
    let stale = stale["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1500));
    let fresh = send(&operator, "sensor-1", json!({"payload": "fresh"}));
    let fresh = fresh["id"].as_str().unwrap().to_owned();

    runtime().block_on(async {
        let mut connection = connect_and_listen(&bridge, &device).await;
        let received = next_message(&mut connection, "sensor-1").await;
        assert_eq!(
            received.properties.system.message_id.as_deref(),
            Some(fresh.as_str()),
            "the stale message is skipped"
        );
        acknowledge(&mut connection, &received).await;
        let nothing = connection.try_recv(Duration::from_millis(500)).await;
        assert!(nothing.is_err(), "nothing more comes: {nothing:?}");
    });
    // Expired, or already pruned by the tick.
    let state = state_of(&operator, "sensor-1", &stale);
    assert!(
        matches!(state.as_deref(), None | Some("expired")),
        "{state:?}"
    );
}

#[test]
fn bad_messages_and_a_full_queue_are_refused() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    create_device(&operator, "sensor-1");
    let path = "/api/devices/sensor-1/messages";

    expect_error(
        &operator.post("/api/devices/nobody/messages", json!({"payload": 1})),
        404,
    );
    expect_error(&operator.get("/api/devices/nobody/messages"), 404);
    for (body, named) in [
        (json!({}), "payload"),
        (json!({"payload": 1, "ttl": "P3D"}), "ttl"),
        (json!({"payload": 1, "ttl": 60}), "request body"),
        (json!({"payload": 1, "properties": {"n": 1}}), "`n`"),
        (
            json!({"payload": 1, "properties": {"$.mid": "mine"}}),
            "system",
        ),
        (json!({"payload": 1, "extra": true}), "extra"),
    ] {
        let response = operator.post(path, body.clone());
        expect_error(&response, 400);
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(named), "{body}: {message}");
    }
    let too_big = json!({"payload": "x".repeat(64 * 1024 + 1), "contentType": "text/plain"});
    expect_error(&operator.post(path, too_big), 413);
    expect_error(
        &operator.request("POST", path, &[("content-type", "text/plain")], b"hi"),
        415,
    );
    let listed = operator.get(path).json();
    assert_eq!(listed, json!({"value": []}), "nothing was queued");

    // IoT Hub's queue depth: 50 messages may wait, the 51st is refused.
    for n in 0..50 {
        send(&operator, "sensor-1", json!({"payload": n}));
    }
    assert_eq!(
        expect_error(&operator.post(path, json!({"payload": 50})), 409),
        "Conflict"
    );
    let page = operator.get(&format!("{path}?$top=20")).json();
    assert_eq!(page["value"].as_array().unwrap().len(), 20);
    assert_eq!(page["value"][0]["payload"], 49, "newest first");
    assert!(page["nextLink"].is_string());
}
