//! The device twin over MQTT (groundwork of issue 5), raw through the real bridge and registry:
//! a device fetches its twin, reports properties (a component among them) and sees them
//! versioned; the operator sees the reported values through the properties API; a bad patch is
//! refused with an `errorCode` the Node SDK can see, and changes nothing.

use serde_json::{json, Value};

use crate::bridge::{create_device, runtime, Device};
use crate::Gyre;

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
