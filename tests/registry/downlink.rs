//! The bridge's downlink (issue 5), driven through its control API as the registry drives it:
//! a desired-property push reaches a device listening for it, a direct method goes to the device
//! and its answer comes back to the caller, and the control API refuses callers without the
//! internal secret. The devices are raw MQTT clients speaking as the SDKs do (Python's QoS 1
//! where it differs from Node's QoS 0).

use std::time::{Duration, Instant};

use bytes::Bytes;
use gyre_ingest_bridge::codec::{Packet, Publish, PublishQos, TopicName};
use serde_json::{json, Value};

use crate::bridge::{control_post, create_device, runtime, Device, TestBridge};
use crate::Gyre;

const DESIRED: &str = "$iothub/twin/PATCH/properties/desired/#";
const METHODS: &str = "$iothub/methods/POST/#";

/// A control call made on the blocking pool, so the test's device can answer meanwhile.
fn call_in_background(
    bridge: &TestBridge,
    path: String,
    body: Value,
) -> tokio::task::JoinHandle<gyre_tests::HttpResponse> {
    let url = bridge.control_url().to_owned();
    let secret = bridge.secret().to_owned();
    tokio::task::spawn_blocking(move || control_post(&url, Some(&secret), &path, &body))
}

fn method(name: &str, payload: Value, connection_timeout: u32, response_timeout: u32) -> Value {
    json!({
        "methodName": name,
        "payload": payload,
        "connectionTimeout": connection_timeout,
        "responseTimeout": response_timeout,
    })
}

/// The next PUBLISH the device receives: topic, payload and QoS.
async fn next_publish(device: &mut Device) -> (String, Bytes, PublishQos) {
    match device.recv().await {
        Some(Packet::Publish(Publish {
            topic,
            payload,
            qos,
            ..
        })) => (topic.as_str().to_owned(), payload, qos),
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

/// The rid of `$iothub/methods/POST/{name}/?$rid={rid}`, checking the name and the slash
/// before `?` (Python takes the name from `split('/')[3]`).
fn method_rid(topic: &str, name: &str) -> String {
    let prefix = format!("$iothub/methods/POST/{name}/?$rid=");
    topic
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{topic} is not a call of {name}"))
        .to_owned()
}

/// Answers a method call as Python does: QoS 1, then waits for the PUBACK.
async fn answer_qos1(device: &mut Device, status: i32, rid: &str, body: &[u8], packet_id: u16) {
    let topic = format!("$iothub/methods/res/{status}/?$rid={rid}");
    device
        .publish(&topic, body, packet_id, false)
        .await
        .expect("PUBLISH the answer");
    device.expect_puback(packet_id).await;
}

/// Answers a method call as Node does: QoS 0.
async fn answer_qos0(device: &mut Device, status: i32, rid: &str, body: &[u8]) {
    let publish = Packet::Publish(Publish {
        topic: TopicName::try_from(format!("$iothub/methods/res/{status}/?$rid={rid}").as_str())
            .unwrap(),
        qos: PublishQos::AtMostOnce,
        retain: false,
        payload: Bytes::copy_from_slice(body),
    });
    device.send(&publish).await.expect("PUBLISH the answer");
}

#[test]
fn a_desired_push_reaches_a_device_listening_for_it_and_not_one_that_is_not() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let listening = create_device(&operator, "listening-1");
    let deaf = create_device(&operator, "deaf-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut listening_device = bridge.connect_device(&listening).await;
        listening_device.subscribe(DESIRED).await;
        let mut deaf_device = bridge.connect_device(&deaf).await;
        deaf_device.subscribe("$iothub/twin/res/#").await;

        let patch = json!({"targetTemperature": 22, "$version": 3});
        let pushed = call_in_background(
            &bridge,
            "/control/devices/listening-1/twin/desired".into(),
            json!({"version": 3, "patch": patch}),
        )
        .await
        .unwrap();
        assert_eq!(pushed.status, 200, "{}", pushed.body);
        assert_eq!(pushed.json(), json!({"delivered": true}));
        let (topic, payload, qos) = next_publish(&mut listening_device).await;
        assert_eq!(topic, "$iothub/twin/PATCH/properties/desired/?$version=3");
        assert_eq!(qos, PublishQos::AtMostOnce);
        assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap(), patch);

        let not_pushed = call_in_background(
            &bridge,
            "/control/devices/deaf-1/twin/desired".into(),
            json!({"version": 2, "patch": {"$version": 2}}),
        )
        .await
        .unwrap();
        assert_eq!(not_pushed.json(), json!({"delivered": false}));
        let nothing = deaf_device.try_recv(Duration::from_millis(300)).await;
        assert!(nothing.is_err(), "the deaf device got {nothing:?}");

        let offline = call_in_background(
            &bridge,
            "/control/devices/nobody/twin/desired".into(),
            json!({"version": 1, "patch": {"$version": 1}}),
        )
        .await
        .unwrap();
        assert_eq!(offline.json(), json!({"delivered": false}));
    });
}

#[test]
fn a_direct_method_round_trips_with_the_devices_status_and_payload() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "pump-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(METHODS).await;

        // Python: QoS 1 answer, PUBACKed.
        let call = call_in_background(
            &bridge,
            "/control/devices/pump-1/methods".into(),
            method("reboot", json!({"delay": 5}), 0, 10),
        );
        let (topic, payload, qos) = next_publish(&mut device).await;
        assert_eq!(qos, PublishQos::AtMostOnce);
        let rid = method_rid(&topic, "reboot");
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            json!({"delay": 5})
        );
        answer_qos1(&mut device, 200, &rid, br#"{"rebooting":true}"#, 11).await;
        let answered = call.await.unwrap();
        assert_eq!(answered.status, 200, "{}", answered.body);
        assert_eq!(
            answered.json(),
            json!({"status": 200, "payload": {"rebooting": true}})
        );

        // Node: QoS 0 answer; a component command's name and a non-JSON body kept as text.
        let call = call_in_background(
            &bridge,
            "/control/devices/pump-1/methods".into(),
            method("valve*close", Value::Null, 0, 10),
        );
        let (topic, payload, _) = next_publish(&mut device).await;
        let second_rid = method_rid(&topic, "valve*close");
        assert_ne!(second_rid, rid, "every call has its own rid");
        assert_eq!(&payload[..], b"null");
        answer_qos0(&mut device, 409, &second_rid, b"already closed").await;
        let answered = call.await.unwrap();
        assert_eq!(
            answered.json(),
            json!({"status": 409, "payload": "already closed"})
        );
    });
}

#[test]
fn a_device_that_does_not_answer_in_time_gives_a_timeout() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "silent-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(METHODS).await;
        let started = Instant::now();
        let call = call_in_background(
            &bridge,
            "/control/devices/silent-1/methods".into(),
            method("slow", json!({}), 0, 1),
        );
        let (topic, _, _) = next_publish(&mut device).await;
        let rid = method_rid(&topic, "slow");
        let answered = call.await.unwrap();
        assert_eq!(answered.status, 504, "{}", answered.body);
        assert_eq!(answered.json()["code"], "timeout");
        assert!(started.elapsed() >= Duration::from_millis(900));

        // The late answer finds no call; the session keeps working.
        answer_qos1(&mut device, 200, &rid, b"{}", 3).await;
        let call = call_in_background(
            &bridge,
            "/control/devices/silent-1/methods".into(),
            method("fast", json!(1), 0, 10),
        );
        let (topic, _, _) = next_publish(&mut device).await;
        answer_qos0(&mut device, 200, &method_rid(&topic, "fast"), b"2").await;
        assert_eq!(
            call.await.unwrap().json(),
            json!({"status": 200, "payload": 2})
        );
    });
}

#[test]
fn a_method_for_a_device_not_connected_fails_after_the_connection_timeout() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "away-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        // Never connected: 404 at once with a zero connection timeout...
        let answered = call_in_background(
            &bridge,
            "/control/devices/away-1/methods".into(),
            method("ping", json!({}), 0, 5),
        )
        .await
        .unwrap();
        assert_eq!(answered.status, 404, "{}", answered.body);
        assert_eq!(answered.json()["code"], "deviceNotConnected");

        // ...and after it otherwise.
        let started = Instant::now();
        let answered = call_in_background(
            &bridge,
            "/control/devices/away-1/methods".into(),
            method("ping", json!({}), 1, 5),
        )
        .await
        .unwrap();
        assert_eq!(answered.json()["code"], "deviceNotConnected");
        assert!(started.elapsed() >= Duration::from_millis(900));

        // Connected but not listening for methods is not connected for a method.
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(DESIRED).await;
        let answered = call_in_background(
            &bridge,
            "/control/devices/away-1/methods".into(),
            method("ping", json!({}), 0, 5),
        )
        .await
        .unwrap();
        assert_eq!(answered.json()["code"], "deviceNotConnected");
    });
}

#[test]
fn a_device_that_connects_within_the_connection_timeout_gets_the_call() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "late-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let call = call_in_background(
            &bridge,
            "/control/devices/late-1/methods".into(),
            method("hello", json!("there"), 20, 10),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(METHODS).await;
        let (topic, payload, _) = next_publish(&mut device).await;
        assert_eq!(&payload[..], br#""there""#);
        answer_qos1(&mut device, 200, &method_rid(&topic, "hello"), b"", 5).await;
        let answered = call.await.unwrap();
        assert_eq!(answered.json(), json!({"status": 200, "payload": null}));
    });
}

#[test]
fn a_call_fails_when_the_device_disconnects_before_answering() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "quitter-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(METHODS).await;
        let started = Instant::now();
        let call = call_in_background(
            &bridge,
            "/control/devices/quitter-1/methods".into(),
            method("bye", json!({}), 0, 30),
        );
        let _ = next_publish(&mut device).await;
        device.disconnect().await;
        let answered = call.await.unwrap();
        assert_eq!(answered.status, 404, "{}", answered.body);
        assert_eq!(answered.json()["code"], "deviceNotConnected");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "failed at once, not at the timeout"
        );
    });
}

#[test]
fn an_answer_with_an_unknown_rid_is_ignored_and_the_session_keeps_working() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "confused-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(METHODS).await;
        answer_qos1(&mut device, 200, "ffffffff", b"{}", 9).await;
        answer_qos0(&mut device, 200, "not-ours", b"{}").await;

        let call = call_in_background(
            &bridge,
            "/control/devices/confused-1/methods".into(),
            method("status", json!({}), 0, 10),
        );
        let (topic, _, _) = next_publish(&mut device).await;
        answer_qos1(
            &mut device,
            201,
            &method_rid(&topic, "status"),
            br#"{"ok":1}"#,
            10,
        )
        .await;
        assert_eq!(
            call.await.unwrap().json(),
            json!({"status": 201, "payload": {"ok": 1}})
        );
        // Telemetry still flows and is acknowledged.
        device
            .publish_and_wait_for_puback("devices/confused-1/messages/events/", b"{}")
            .await;
    });
}

#[test]
fn the_control_api_refuses_callers_without_the_internal_secret_and_bad_requests() {
    let gyre = Gyre::start();
    let bridge = gyre.start_bridge();
    let url = bridge.control_url();
    let body = method("ping", json!({}), 0, 1);

    let anonymous = control_post(url, None, "/control/devices/d1/methods", &body);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(anonymous.json()["code"], "unauthorized");
    let wrong = control_post(
        url,
        Some("not-the-secret"),
        "/control/devices/d1/methods",
        &body,
    );
    assert_eq!(wrong.status, 401);

    let secret = bridge.secret();
    let bad_json = control_post(
        url,
        Some(secret),
        "/control/devices/d1/methods",
        &json!({"methodName": "ping"}),
    );
    assert_eq!(bad_json.status, 400, "{}", bad_json.body);
    assert_eq!(bad_json.json()["code"], "badRequest");
    let bad_name = control_post(
        url,
        Some(secret),
        "/control/devices/d1/methods",
        &method("a/b", json!({}), 0, 1),
    );
    assert_eq!(bad_name.status, 400, "{}", bad_name.body);
    let unknown = control_post(url, Some(secret), "/control/devices/d1/unknown", &body);
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let huge = control_post(
        url,
        Some(secret),
        "/control/devices/d1/twin/desired",
        &json!({"version": 1, "patch": {"big": "x".repeat(300 * 1024)}}),
    );
    assert_eq!(huge.status, 413, "{}", huge.body);
}

/// The state of message `id` in the device's queue as the operator lists it.
fn message_state(operator: &crate::Client<'_>, device_id: &str, id: &str) -> String {
    let listed = operator.get(&format!("/api/devices/{device_id}/messages"));
    assert_eq!(listed.status, 200, "{}", listed.body);
    listed.json()["value"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("message {id} is not listed: {}", listed.body))["state"]
        .as_str()
        .expect("a state")
        .to_owned()
}

/// Waits until message `id` is in `state` (completion is reported after the PUBACK).
async fn wait_for_state(operator: &crate::Client<'_>, device_id: &str, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = message_state(operator, device_id, id);
        if now == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "message {id} stayed {now}, not {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_cloud_to_device_message_reaches_a_subscribed_device_and_its_puback_completes_it() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "display-1");
    let bridge = gyre.start_bridge();
    let c2d = "devices/display-1/messages/devicebound/#";

    runtime().block_on(async {
        // Queued while the device is away: delivered once it subscribes.
        let early = operator.post(
            "/api/devices/display-1/messages",
            json!({"payload": {"text": "early"}, "properties": {"my prop": "a b&c"}}),
        );
        assert_eq!(early.status, 202, "{}", early.body);
        let early_id = early.json()["id"].as_str().unwrap().to_owned();

        let mut device = bridge.connect_device(&key).await;
        device.subscribe(c2d).await;
        let (topic, payload, qos) = next_publish(&mut device).await;
        let PublishQos::AtLeastOnce { packet_id, .. } = qos else {
            panic!("C2D is sent at QoS 1, got {qos:?}")
        };
        let bag = topic
            .strip_prefix("devices/display-1/messages/devicebound/")
            .unwrap_or_else(|| panic!("not a C2D topic: {topic}"));
        assert!(
            bag.starts_with(&format!(
                "%24.mid={early_id}&%24.to=%2Fdevices%2Fdisplay-1%2Fmessages%2FdeviceBound"
            )),
            "{bag}"
        );
        assert!(bag.contains("%24.ct=application%2Fjson"), "{bag}");
        assert!(bag.ends_with("my%20prop=a%20b%26c"), "{bag}");
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            json!({"text": "early"})
        );
        assert_eq!(message_state(&operator, "display-1", &early_id), "queued");
        device
            .send(&Packet::PubAck(gyre_ingest_bridge::codec::PubAck {
                packet_id,
            }))
            .await
            .unwrap();
        wait_for_state(&operator, "display-1", &early_id, "delivered").await;

        // Sent while the device listens: delivered at once.
        let live = operator.post("/api/devices/display-1/messages", json!({"payload": "now"}));
        assert_eq!(live.status, 202, "{}", live.body);
        let live_id = live.json()["id"].as_str().unwrap().to_owned();
        let (topic, payload, _) = next_publish(&mut device).await;
        assert!(topic.contains(&format!("%24.mid={live_id}")), "{topic}");
        assert_eq!(&payload[..], br#""now""#);

        // Not acknowledged in this session: delivered again in the next one (at least once).
        device.disconnect().await;
        let mut device = bridge.connect_device(&key).await;
        device.subscribe(c2d).await;
        let (topic, _, qos) = next_publish(&mut device).await;
        assert!(topic.contains(&format!("%24.mid={live_id}")), "{topic}");
        let PublishQos::AtLeastOnce { packet_id, .. } = qos else {
            panic!("{qos:?}")
        };
        device
            .send(&Packet::PubAck(gyre_ingest_bridge::codec::PubAck {
                packet_id,
            }))
            .await
            .unwrap();
        wait_for_state(&operator, "display-1", &live_id, "delivered").await;
        let nothing = device.try_recv(Duration::from_millis(300)).await;
        assert!(
            nothing.is_err(),
            "a completed message came again: {nothing:?}"
        );
    });
}

#[test]
fn concurrent_calls_to_one_device_and_to_several_each_get_their_own_answer() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let keys = [
        create_device(&operator, "multi-1"),
        create_device(&operator, "multi-2"),
    ];
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut devices = Vec::new();
        for key in &keys {
            let mut device = bridge.connect_device(key).await;
            device.subscribe(METHODS).await;
            devices.push(device);
        }
        // Three calls to each device at once.
        let mut calls = Vec::new();
        for key in &keys {
            for n in 0..3 {
                let call = call_in_background(
                    &bridge,
                    format!("/control/devices/{}/methods", key.id),
                    method("echo", json!({"device": key.id, "n": n}), 0, 20),
                );
                calls.push((key.id.clone(), n, call));
            }
        }
        // Each device answers its calls in reverse order, echoing the request.
        for device in &mut devices {
            let mut received = Vec::new();
            for _ in 0..3 {
                let (topic, payload, _) = next_publish(device).await;
                received.push((method_rid(&topic, "echo"), payload));
            }
            for (rid, payload) in received.into_iter().rev() {
                answer_qos0(device, 200, &rid, &payload).await;
            }
        }
        for (device_id, n, call) in calls {
            let answered = call.await.unwrap();
            assert_eq!(
                answered.json(),
                json!({"status": 200, "payload": {"device": device_id, "n": n}}),
                "call {n} to {device_id}"
            );
        }
    });
}

#[test]
fn a_device_may_listen_for_its_own_messages_only() {
    use gyre_ingest_bridge::codec::{
        MqttStr, PacketId, QoS, SubAckCode, Subscribe, SubscribeFilter, TopicFilter,
    };
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let key = create_device(&operator, "nosy-1");
    create_device(&operator, "other-1");
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        let mut device = bridge.connect_device(&key).await;
        let filter = |text: &str| SubscribeFilter {
            filter: TopicFilter::new(MqttStr::try_from(text).unwrap()).unwrap(),
            qos: QoS::AtLeastOnce,
        };
        let subscribe = Subscribe::new(
            PacketId::new(4).unwrap(),
            vec![
                filter("devices/other-1/messages/devicebound/#"),
                filter("devices/nosy-1/messages/devicebound/#"),
                filter(METHODS),
                filter(DESIRED),
            ],
        )
        .unwrap();
        device.send(&Packet::Subscribe(subscribe)).await.unwrap();
        match device.recv().await {
            Some(Packet::SubAck(suback)) => assert_eq!(
                suback.codes(),
                &[
                    SubAckCode::Failure,
                    SubAckCode::Granted(QoS::AtLeastOnce),
                    SubAckCode::Granted(QoS::AtLeastOnce),
                    SubAckCode::Granted(QoS::AtLeastOnce),
                ]
            ),
            other => panic!("expected a SUBACK, got {other:?}"),
        }
        // Another device's message does not reach it.
        let sent = operator.post("/api/devices/other-1/messages", json!({"payload": 1}));
        assert_eq!(sent.status, 202, "{}", sent.body);
        let nothing = device.try_recv(Duration::from_millis(300)).await;
        assert!(nothing.is_err(), "got {nothing:?}");
    });
}
