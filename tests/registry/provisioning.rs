//! DPS provisioning over MQTT (issue 4), spoken raw through the real bridge and registry: a
//! device nobody registered provisions through an enrollment group with its derived key,
//! announces its model, and is assigned to the bridge as its hub; without auto-approve it waits
//! for an operator; refusals are precise. (The official SDKs do the same in `sdk.rs`.)

use std::time::Duration;

use gyre_domain::enrollment::{SymmetricKey, SymmetricKeys};
use gyre_domain::mqtt::{generate_token, SrForm};
use gyre_ingest_bridge::codec::ConnectReturnCode;
use serde_json::{json, Value};

use crate::bridge::{
    create_device, runtime, telemetry_body, telemetry_topic, Device, DeviceKey, TestBridge,
};
use crate::device_templates::publish_thermostat;
use crate::{Client, Gyre};

const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";

/// An operator creates an enrollment group; returns its primary key.
fn create_group(operator: &Client<'_>, id: &str, auto_approve: bool) -> SymmetricKey {
    let created = operator.put(
        &format!("/api/enrollmentGroups/{id}"),
        json!({"displayName": id, "type": "iot", "autoApprove": auto_approve}),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let key = created.json()["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("the group's primary key")
        .to_owned();
    SymmetricKey::parse(&key).expect("a valid key")
}

/// The application's ID scope, as an operator reads it from any device's credentials.
fn id_scope(operator: &Client<'_>) -> String {
    let probe = operator.put("/api/devices/scope-probe", json!({"displayName": "probe"}));
    assert!(matches!(probe.status, 200 | 201), "{}", probe.body);
    let credentials = operator.get("/api/devices/scope-probe/credentials").json();
    credentials["idScope"]
        .as_str()
        .expect("an idScope")
        .to_owned()
}

/// A device flashed with its registration id, the ID scope and its key derived from a group's.
struct Flashed {
    registration_id: String,
    id_scope: String,
    key: SymmetricKey,
}

impl Flashed {
    fn new(registration_id: &str, id_scope: &str, group_key: &SymmetricKey) -> Flashed {
        let group = SymmetricKeys {
            primary: group_key.clone(),
            secondary: group_key.clone(),
        };
        Flashed {
            registration_id: registration_id.to_owned(),
            id_scope: id_scope.to_owned(),
            key: group.derive_for_device(registration_id).primary,
        }
    }

    /// The DPS user name and token exactly as the Node SDK sends them (raw `sr`,
    /// `skn=registration`).
    fn dps_credentials(&self) -> (String, String) {
        let username = format!(
            "{}/registrations/{}/api-version=2019-03-31&ClientVersion=gyre-tests",
            self.id_scope, self.registration_id
        );
        let resource = format!("{}/registrations/{}", self.id_scope, self.registration_id);
        let expiry = crate::bridge::unix_secs() + 3600;
        let token = generate_token(
            &resource,
            &self.key,
            expiry,
            Some("registration"),
            SrForm::Raw,
        );
        (username, token)
    }

    fn hub_key(&self) -> DeviceKey {
        DeviceKey {
            id: self.registration_id.clone(),
            key: self.key.clone(),
        }
    }
}

/// Connects to DPS as `device`, subscribed to the responses.
async fn open_dps(bridge: &TestBridge, device: &Flashed) -> Device {
    let (username, token) = device.dps_credentials();
    let (mut connection, code) = bridge
        .dialer()
        .try_connect_as(&device.registration_id, &username, &token)
        .await
        .expect("a CONNACK");
    assert_eq!(code, ConnectReturnCode::Accepted, "DPS CONNACK");
    connection.subscribe("$dps/registrations/res/#").await;
    connection
}

/// Publishes a DPS request at QoS 1; returns the response's status and JSON body after the
/// PUBACK.
async fn dps_request(
    connection: &mut Device,
    topic: &str,
    body: &[u8],
    packet_id: u16,
) -> (u16, Value) {
    let (topic, payload) = connection.request(topic, body, packet_id).await;
    let status = topic
        .strip_prefix("$dps/registrations/res/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not a DPS response topic: {topic}"));
    (
        status,
        serde_json::from_slice(&payload).expect("a JSON response"),
    )
}

/// Registers (announcing `model_id`) and polls once: the final status and body.
async fn provision(bridge: &TestBridge, device: &Flashed, model_id: Option<&str>) -> (u16, Value) {
    let mut connection = open_dps(bridge, device).await;
    let body = json!({"registrationId": device.registration_id, "payload": model_id.map(|id| json!({"modelId": id}))});
    let (status, accepted) = dps_request(
        &mut connection,
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        body.to_string().as_bytes(),
        2,
    )
    .await;
    if status != 202 {
        return (status, accepted);
    }
    assert_eq!(accepted["status"], "assigning");
    let operation = accepted["operationId"].as_str().expect("an operationId");
    let poll = format!(
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={operation}"
    );
    let answer = dps_request(&mut connection, &poll, b" ", 3).await;
    connection.disconnect().await;
    answer
}

#[test]
fn an_unregistered_device_provisions_through_its_group_and_sends_telemetry() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    publish_thermostat(&admin);
    let group_key = create_group(&admin, "SAS-IoT-Devices", true);
    let scope = id_scope(&admin);
    let bridge = gyre.start_bridge();
    let device = Flashed::new("thermostat-42", &scope, &group_key);

    runtime().block_on(async {
        let (status, assigned) = provision(&bridge, &device, Some(THERMOSTAT)).await;
        assert_eq!(status, 200, "{assigned}");
        assert_eq!(assigned["status"], "assigned");
        let state = &assigned["registrationState"];
        assert_eq!(state["assignedHub"], "localhost");
        assert_eq!(state["deviceId"], "thermostat-42");
        assert_eq!(state["substatus"], "initialAssignment");

        // The device now appears to the operator, provisioned with the announced template.
        let created = admin.get("/api/devices/thermostat-42").json();
        assert_eq!(created["provisioned"], true, "{created}");
        assert_eq!(created["enabled"], true);
        assert_eq!(created["template"], THERMOSTAT);

        // And connects to its assigned hub with the same derived key.
        let mut hub = bridge.connect_device(&device.hub_key()).await;
        hub.publish_and_wait_for_puback(
            &telemetry_topic("thermostat-42", "m1"),
            &telemetry_body("m1"),
        )
        .await;
        hub.disconnect().await;

        // Provisioning again is allowed and changes nothing.
        let (status, again) = provision(&bridge, &device, Some(THERMOSTAT)).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            again["registrationState"]["substatus"],
            "reprovisionedToInitialAssignment"
        );
    });
    assert_eq!(crate::bridge::stored_message_ids(&gyre).get("m1"), Some(&1));
    // The bridge ticks every second, and the tick compacts the inbox of a quiet application.
    let db = rusqlite::Connection::open(gyre.database_path()).expect("open the database");
    let inbox = || -> i64 {
        db.query_row("SELECT count(*) FROM telemetry_inbox", [], |row| row.get(0))
            .expect("count the inbox")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while inbox() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(inbox(), 0, "the bridge's tick compacted the inbox");
}

#[test]
fn without_auto_approve_a_device_waits_for_an_operator() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let group_key = create_group(&admin, "gated", false);
    let scope = id_scope(&admin);
    let bridge = gyre.start_bridge();
    let device = Flashed::new("pending-1", &scope, &group_key);

    runtime().block_on(async {
        let (status, assigned) = provision(&bridge, &device, None).await;
        assert_eq!(status, 200, "{assigned}");
        let waiting = admin.get("/api/devices/pending-1").json();
        assert_eq!(
            (waiting["enabled"].clone(), waiting["provisioned"].clone()),
            (json!(false), json!(false)),
            "{waiting}"
        );
        assert!(waiting.get("template").is_none(), "unassigned: {waiting}");

        // The hub refuses it until the operator approves it.
        let refused = bridge.dialer().try_connect(&device.hub_key()).await;
        assert!(
            refused
                .as_ref()
                .err()
                .is_some_and(|err| err.contains("NotAuthorized")),
            "{:?}",
            refused.err()
        );
        let approved = admin.patch("/api/devices/pending-1", json!({"enabled": true}));
        assert_eq!(approved.status, 200, "{}", approved.body);
        // The bridge trusts a registry answer for a few seconds.
        let mut connected = None;
        for _ in 0..40 {
            if let Ok(connection) = bridge.dialer().try_connect(&device.hub_key()).await {
                connected = Some(connection);
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        connected
            .expect("the approved device connects")
            .disconnect()
            .await;
    });
}

#[test]
fn dps_refusals_are_precise() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let group_key = create_group(&admin, "SAS-IoT-Devices", true);
    let scope = id_scope(&admin);
    let bridge = gyre.start_bridge();

    runtime().block_on(async {
        // Another application's ID scope, or a key not derived from any group: CONNACK 5.
        for device in [
            Flashed::new("d1", "0ne00000000", &group_key),
            Flashed::new("d1", &scope, &SymmetricKey::from_random([9; 32])),
        ] {
            let (username, token) = device.dps_credentials();
            let (_, code) = bridge
                .dialer()
                .try_connect_as(&device.registration_id, &username, &token)
                .await
                .expect("a CONNACK");
            assert_eq!(code, ConnectReturnCode::NotAuthorized, "{username}");
        }

        // A blocked device may not provision again: 401 with an error code.
        let device = Flashed::new("d2", &scope, &group_key);
        assert_eq!(provision(&bridge, &device, None).await.0, 200);
        let blocked = admin.patch("/api/devices/d2", json!({"enabled": false}));
        assert_eq!(blocked.status, 200, "{}", blocked.body);
        let (status, refused) = provision(&bridge, &device, None).await;
        assert_eq!(status, 401, "{refused}");
        assert_eq!(refused["errorCode"], 401_002);
        assert!(
            refused["message"].as_str().unwrap().contains("blocked"),
            "{refused}"
        );

        // A malformed register body, a registration id that is not the connection's, and an
        // unknown operation: each answered with an error, the connection stays usable.
        let device = Flashed::new("d3", &scope, &group_key);
        let mut connection = open_dps(&bridge, &device).await;
        let register = "$dps/registrations/PUT/iotdps-register/?$rid=9";
        let (status, body) = dps_request(&mut connection, register, b"{not json", 5).await;
        assert_eq!(
            (status, body["errorCode"].clone()),
            (400, json!(400_004)),
            "{body}"
        );
        let (status, body) = dps_request(
            &mut connection,
            register,
            br#"{"registrationId":"other"}"#,
            6,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let poll = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=10&operationId=nope";
        let (status, body) = dps_request(&mut connection, poll, b" ", 7).await;
        assert_eq!(
            (status, body["errorCode"].clone()),
            (404, json!(404_002)),
            "{body}"
        );

        // DPS connections may not send telemetry: the bridge closes the connection.
        connection
            .publish(&telemetry_topic("d3", "x"), b"{}", 8, false)
            .await
            .expect("PUBLISH");
        connection.assert_closed().await;
    });
    assert!(
        admin.get("/api/devices/d3").status == 404,
        "a refused request created nothing"
    );
}

#[test]
fn re_keying_a_group_disconnects_its_devices_and_no_one_else() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let group_key = create_group(&admin, "SAS-IoT-Devices", true);
    let scope = id_scope(&admin);
    let individual = create_device(&admin, "own-keys");
    let bridge = gyre.start_bridge();
    let flashed = Flashed::new("from-group", &scope, &group_key);

    runtime().block_on(async {
        assert_eq!(provision(&bridge, &flashed, None).await.0, 200);
        let mut derived = bridge.connect_device(&flashed.hub_key()).await;
        let mut own = bridge.connect_device(&individual).await;

        let rotated = admin.patch(
            "/api/enrollmentGroups/SAS-IoT-Devices",
            json!({"attestation": {"symmetricKey": {"primaryKey": null, "secondaryKey": null}}}),
        );
        assert_eq!(rotated.status, 200, "{}", rotated.body);
        // The bridge rechecks on its one-second tick; the old derived key is gone.
        derived.assert_closed().await;
        let refused = bridge.dialer().try_connect(&flashed.hub_key()).await;
        assert!(refused.is_err(), "the old derived key still connects");

        // A device with its own keys is not affected.
        own.publish_and_wait_for_puback(
            &telemetry_topic("own-keys", "still-here"),
            &telemetry_body("still-here"),
        )
        .await;
    });
}
