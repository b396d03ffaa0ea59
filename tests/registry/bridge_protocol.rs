//! The device bridge against misbehaving, unauthorised and numerous devices, end to end: the
//! real `gyre-ingest-bridge` over TLS in front of the real host and its SQLite store.
//!
//! Every refusal is checked three ways: the bad connection is refused cleanly (CONNACK 5 for
//! credentials, a closed connection for a protocol violation, never an answer to the bad
//! packet); a well-behaved device connected all along (the [`Witness`]) still publishes and gets
//! its PUBACK right after; and every message the witness saw acknowledged is in the store at the
//! end. The library tests (`ingest-bridge/tests/bridge.rs`) cover the same rules against a fake
//! registry and upstream; here the registry, its cache and the store are the real ones.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gyre_domain::mqtt::MAX_PACKET_BYTES;
use gyre_ingest_bridge::codec::{
    encode, ConnectReturnCode, Packet, PacketId, PubAck, Publish, PublishQos, TopicName,
};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::client::TlsStream;

use crate::bridge::{
    assert_all_stored, create_device, device_key, hub_username, runtime, stored_message_ids,
    telemetry_body, telemetry_topic, unix_secs, Device, DeviceKey, Dialer, TestBridge,
};
use crate::ingest::count;
use crate::Gyre;

/// A well-behaved device, connected before the misbehaving ones and kept connected: after each
/// refusal it publishes and must get its PUBACK, proving the bridge still serves others.
struct Witness {
    device: DeviceKey,
    connection: Device,
    acknowledged: Vec<String>,
}

impl Witness {
    async fn connect(bridge: &TestBridge, device: DeviceKey) -> Witness {
        let connection = bridge.connect_device(&device).await;
        Witness {
            device,
            connection,
            acknowledged: Vec::new(),
        }
    }

    /// Publishes one message and waits for its PUBACK.
    async fn is_still_served(&mut self) {
        let n = self.acknowledged.len() + 1;
        let mid = format!("{}-{n}", self.device.id);
        self.connection
            .publish(
                &telemetry_topic(&self.device.id, &mid),
                &telemetry_body(&mid),
                u16::try_from(n).unwrap(),
                false,
            )
            .await
            .expect("the witness sends a PUBLISH");
        self.connection.expect_puback(n as u16).await;
        self.acknowledged.push(mid);
    }
}

/// A TLS connection on which `device` is connected (CONNACK 0 read), for writing raw bytes.
async fn raw_connected(dialer: &Dialer, device: &DeviceKey) -> TlsStream<tokio::net::TcpStream> {
    let mut stream = dialer.open_tls().await.expect("connect over TLS");
    let connect = Packet::Connect(gyre_ingest_bridge::codec::Connect {
        clean_session: false,
        keep_alive: 60,
        client_id: device.id.as_str().try_into().unwrap(),
        will: None,
        credentials: Some(gyre_ingest_bridge::codec::Credentials {
            username: hub_username(&device.id).try_into().unwrap(),
            password: Some(gyre_ingest_bridge::codec::Password::new(Bytes::from(
                device.token(),
            ))),
        }),
    });
    let mut frame = BytesMut::new();
    encode(&connect, &mut frame).unwrap();
    write_raw(&mut stream, &frame).await;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.expect("a CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK 0");
    stream
}

async fn write_raw(stream: &mut TlsStream<tokio::net::TcpStream>, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write raw bytes");
    stream.flush().await.expect("flush raw bytes");
}

/// The bridge closed `stream` without answering: a read sees end of stream or an error (a reset,
/// a TLS alert), never data, and within 30 s.
async fn assert_raw_closed(stream: &mut TlsStream<tokio::net::TcpStream>, what: &str) {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
        Err(_elapsed) => panic!("{what}: the bridge kept the connection open for 30s"),
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{what}: expected the connection closed, got {:?}",
            &buf[..n]
        ),
    }
}

/// An MQTT remaining length as its variable-length bytes.
fn remaining_length(mut value: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        bytes.push(byte);
        if value == 0 {
            return bytes;
        }
    }
}

#[test]
fn malformed_and_forbidden_packets_close_only_their_own_connection() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let witness = create_device(&operator, "witness");
    let rogue = create_device(&operator, "rogue");
    let bridge = gyre.start_bridge();
    let dialer = bridge.dialer();
    let mut refused_mids = Vec::new();

    let acknowledged = runtime().block_on(async {
        let mut witness = Witness::connect(&bridge, witness).await;
        witness.is_still_served().await;

        // Before CONNECT, raw bytes on a fresh TLS connection.
        let malformed: [(&str, &[u8]); 4] = [
            ("a reserved packet type as the first byte", &[0x00, 0x00]),
            ("garbage instead of a packet", b"GET / HTTP/1.1\r\n\r\n"),
            // Five length bytes, all with the continuation bit: no valid remaining length.
            (
                "a remaining length longer than four bytes",
                &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            ),
            // A complete frame whose content stops inside the protocol name.
            (
                "a truncated CONNECT",
                &[0x10, 0x05, 0x00, 0x04, b'M', b'Q', b'T'],
            ),
        ];
        for (what, bytes) in malformed {
            let mut stream = dialer.open_tls().await.expect("connect over TLS");
            write_raw(&mut stream, bytes).await;
            assert_raw_closed(&mut stream, what).await;
            witness.is_still_served().await;
        }
        // Half a CONNECT, then the device goes away: the bridge must not wait for the rest.
        let mut stream = dialer.open_tls().await.expect("connect over TLS");
        write_raw(&mut stream, &[0x10, 0x20, 0x00, 0x04, b'M']).await;
        stream.shutdown().await.expect("close the write side");
        assert_raw_closed(&mut stream, "half a CONNECT then end of stream").await;
        witness.is_still_served().await;

        // After CONNECT: a remaining length that cannot be, and an oversize PUBLISH whose body
        // never comes (the bridge must refuse on the fixed header alone, before allocating).
        let mut stream = raw_connected(&dialer, &rogue).await;
        write_raw(&mut stream, &[0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
        assert_raw_closed(&mut stream, "a bad remaining length after CONNECT").await;
        witness.is_still_served().await;
        let mut stream = raw_connected(&dialer, &rogue).await;
        let mut header = vec![0x32];
        header.extend(remaining_length(MAX_PACKET_BYTES)); // one byte over with the header
        write_raw(&mut stream, &header).await;
        assert_raw_closed(&mut stream, "an oversize PUBLISH").await;
        witness.is_still_served().await;

        // Well-formed packets the device may not send: each closes the connection unanswered
        // and stores nothing.
        let wrong_topic = "rogue-wrong-topic".to_owned();
        let mut connection = bridge.connect_device(&rogue).await;
        connection
            .publish(
                "devices/rogue/messages/elsewhere",
                &telemetry_body(&wrong_topic),
                1,
                false,
            )
            .await
            .unwrap();
        connection.assert_closed().await;
        refused_mids.push(wrong_topic);
        witness.is_still_served().await;

        let impersonation = "rogue-as-witness".to_owned();
        let mut connection = bridge.connect_device(&rogue).await;
        connection
            .publish(
                &telemetry_topic("witness", &impersonation),
                &telemetry_body(&impersonation),
                1,
                false,
            )
            .await
            .unwrap();
        connection.assert_closed().await;
        refused_mids.push(impersonation);
        witness.is_still_served().await;

        // QoS 2: IoT Hub closes the connection rather than answer PUBREC.
        let exactly_once = "rogue-qos-2".to_owned();
        let mut connection = bridge.connect_device(&rogue).await;
        connection
            .send(&Packet::Publish(Publish {
                topic: TopicName::try_from(telemetry_topic("rogue", &exactly_once).as_str())
                    .unwrap(),
                qos: PublishQos::ExactlyOnce {
                    packet_id: PacketId::new(1).unwrap(),
                    dup: false,
                },
                retain: false,
                payload: Bytes::from(telemetry_body(&exactly_once)),
            }))
            .await
            .unwrap();
        connection.assert_closed().await;
        refused_mids.push(exactly_once);
        witness.is_still_served().await;

        witness.acknowledged
    });

    assert_all_stored(&gyre, &acknowledged);
    let stored = stored_message_ids(&gyre);
    for mid in &refused_mids {
        assert!(
            !stored.contains_key(mid),
            "the refused message {mid} was stored"
        );
    }
}

#[test]
fn bad_credentials_are_refused_with_connack_5() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let witness = create_device(&operator, "witness");
    let device = create_device(&operator, "sensor");
    let other = create_device(&operator, "other");
    let bridge = gyre.start_bridge();
    let dialer = bridge.dialer();

    let acknowledged = runtime().block_on(async {
        let mut witness = Witness::connect(&bridge, witness).await;
        let signed_with_another_key = DeviceKey {
            id: device.id.clone(),
            key: other.key.clone(),
        };
        let cases = [
            (
                "a signature made with another device's key",
                "sensor",
                hub_username("sensor"),
                signed_with_another_key.token(),
            ),
            (
                "a token that expired a minute ago",
                "sensor",
                hub_username("sensor"),
                device.token_until(unix_secs() - 60),
            ),
            (
                "another device's valid token",
                "sensor",
                hub_username("sensor"),
                other.token(),
            ),
            (
                "another device's user name and token under this client id",
                "sensor",
                hub_username("other"),
                other.token(),
            ),
            (
                "a device nobody created",
                "stranger",
                hub_username("stranger"),
                DeviceKey {
                    id: "stranger".to_owned(),
                    key: device.key.clone(),
                }
                .token(),
            ),
            (
                "a password that is not a SAS token",
                "sensor",
                hub_username("sensor"),
                "hunter2".to_owned(),
            ),
        ];
        for (what, client_id, username, password) in cases {
            let (mut connection, code) = dialer
                .try_connect_as(client_id, &username, &password)
                .await
                .unwrap_or_else(|err| panic!("{what}: {err}"));
            assert_eq!(code, ConnectReturnCode::NotAuthorized, "{what}");
            connection.assert_closed().await;
            witness.is_still_served().await;
        }
        // The device itself, with its own fresh token, is welcome.
        let mut connection = bridge.connect_device(&device).await;
        connection
            .publish_and_wait_for_puback(
                &telemetry_topic("sensor", "sensor-1"),
                &telemetry_body("sensor-1"),
            )
            .await;
        let mut acknowledged = witness.acknowledged;
        acknowledged.push("sensor-1".to_owned());
        acknowledged
    });

    assert_all_stored(&gyre, &acknowledged);
}

/// Connects `device` again and again until the bridge refuses it with CONNACK 5: the registry's
/// answers are cached for about 5 s, so a change takes effect within seconds, not at once.
async fn refused_within_seconds(dialer: &Dialer, device: &DeviceKey, token: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (mut connection, code) = dialer.connect(&device.id, token).await;
        match code {
            ConnectReturnCode::NotAuthorized => {
                connection.assert_closed().await;
                return;
            }
            ConnectReturnCode::Accepted => connection.disconnect().await,
            other => panic!("{what}: unexpected CONNACK {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} still connects 20s later",
            device.id
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn blocked_deleted_and_rekeyed_devices_are_refused_within_seconds() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let witness = create_device(&operator, "witness");
    let blocked = create_device(&operator, "blocked");
    let deleted = create_device(&operator, "deleted");
    let rekeyed = create_device(&operator, "rekeyed");
    let bridge = gyre.start_bridge();
    let dialer = bridge.dialer();
    let runtime = runtime();

    // Each device connects and publishes first, so the bridge's cache holds "may connect".
    let mut witness = runtime.block_on(async {
        let mut witness = Witness::connect(&bridge, witness).await;
        witness.is_still_served().await;
        for device in [&blocked, &deleted, &rekeyed] {
            let mut connection = bridge.connect_device(device).await;
            let mid = format!("{}-before", device.id);
            connection
                .publish_and_wait_for_puback(
                    &telemetry_topic(&device.id, &mid),
                    &telemetry_body(&mid),
                )
                .await;
            witness.acknowledged.push(mid);
            connection.disconnect().await;
        }
        witness
    });
    let old_tokens: Vec<String> = [&blocked, &deleted, &rekeyed]
        .iter()
        .map(|device| device.token())
        .collect();

    // The operator blocks one, deletes one and regenerates the keys of the third.
    let patched = operator.patch("/api/devices/blocked", json!({"enabled": false}));
    assert_eq!(patched.status, 200, "{}", patched.body);
    let removed = operator.delete("/api/devices/deleted");
    assert_eq!(removed.status, 204, "{}", removed.body);
    let replaced = operator.put(
        "/api/devices/rekeyed/attestation",
        json!({"type": "symmetricKey"}),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let rekeyed_now = device_key(&operator, "rekeyed");
    assert_ne!(rekeyed_now.key, rekeyed.key, "the keys were regenerated");

    let acknowledged = runtime.block_on(async {
        tokio::join!(
            refused_within_seconds(&dialer, &blocked, &old_tokens[0], "blocked"),
            refused_within_seconds(&dialer, &deleted, &old_tokens[1], "deleted"),
            refused_within_seconds(&dialer, &rekeyed, &old_tokens[2], "old key"),
        );
        witness.is_still_served().await;
        // The rekeyed device connects with its new key.
        let mut connection = bridge.connect_device(&rekeyed_now).await;
        connection
            .publish_and_wait_for_puback(
                &telemetry_topic("rekeyed", "rekeyed-after"),
                &telemetry_body("rekeyed-after"),
            )
            .await;
        witness.acknowledged.push("rekeyed-after".to_owned());
        witness.acknowledged
    });

    assert_all_stored(&gyre, &acknowledged);
}

#[test]
fn full_size_messages_are_acknowledged_and_stored_even_when_they_share_a_batch() {
    // IoT Hub's limit is 256 KB per message; the SDKs send up to that. A batch window long
    // enough that a device's back-to-back messages share a batch, as they do under load.
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "camera");
    let bridge = TestBridge::start_with(&gyre, &["--batch-max-age", "300ms"]);

    let mids: Vec<String> = (1..=4).map(|n| format!("camera-{n}")).collect();
    runtime().block_on(async {
        let mut connection = bridge.connect_device(&device).await;
        for (n, mid) in mids.iter().enumerate() {
            let body = full_size_body(mid);
            assert_eq!(body.len(), 256 * 1024);
            connection
                .publish(&telemetry_topic("camera", mid), &body, n as u16 + 1, false)
                .await
                .expect("send a full-size PUBLISH");
        }
        for n in 1..=mids.len() {
            match connection.recv().await {
                Some(Packet::PubAck(PubAck { packet_id })) => assert_eq!(packet_id.get(), n as u16),
                other => panic!(
                    "expected the PUBACK of message {n}, got {other:?}\n--- bridge log\n{}",
                    bridge.log()
                ),
            }
        }
    });

    assert_all_stored(&gyre, &mids);
}

/// A JSON body of exactly 256 KiB carrying `mid`.
fn full_size_body(mid: &str) -> Vec<u8> {
    let empty = serde_json::to_vec(&json!({"mid": mid, "pad": ""})).unwrap();
    let pad = "x".repeat(256 * 1024 - empty.len());
    serde_json::to_vec(&json!({"mid": mid, "pad": pad})).unwrap()
}

#[test]
fn a_connection_beyond_the_cap_waits_in_the_backlog_until_a_slot_frees() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let devices: Vec<DeviceKey> = (1..=6)
        .map(|n| create_device(&operator, &format!("capped-{n}")))
        .collect();
    let bridge = TestBridge::start_with(&gyre, &["--max-connections", "5"]);
    let dialer = bridge.dialer();

    let acknowledged = runtime().block_on(async {
        let mut connected = Vec::new();
        for device in &devices[..5] {
            connected.push(bridge.connect_device(device).await);
        }
        let sixth = devices[5].clone();
        let mut waiting = tokio::spawn({
            let dialer = dialer.clone();
            async move { dialer.try_connect(&sixth).await }
        });
        // A negative observation needs some time: a second without a CONNACK.
        let early = tokio::time::timeout(Duration::from_secs(1), &mut waiting).await;
        assert!(
            early.is_err(),
            "the 6th connection was served past the cap: {early:?}"
        );

        connected.remove(0).disconnect().await;
        let mut sixth = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("the 6th connection is served once a slot frees")
            .expect("the connecting task")
            .expect("CONNACK 0 for the 6th device");
        sixth
            .publish_and_wait_for_puback(
                &telemetry_topic("capped-6", "capped-6-1"),
                &telemetry_body("capped-6-1"),
            )
            .await;
        vec!["capped-6-1".to_owned()]
    });

    assert_all_stored(&gyre, &acknowledged);
}

#[test]
fn a_thousand_devices_connect_at_once_and_every_acknowledged_message_is_stored() {
    const DEVICES: usize = 1000;
    const MESSAGES_EACH: usize = 3;
    const CONNECTING_AT_ONCE: usize = 64;
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    // The operator registers the fleet through the REST API, a few requests at a time.
    let ids: Vec<String> = (0..DEVICES).map(|n| format!("fleet-{n:04}")).collect();
    let devices: Vec<DeviceKey> = std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .chunks(DEVICES / 4)
            .map(|chunk| {
                let operator = &operator;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|id| create_device(operator, id))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a registering thread"))
            .collect()
    });
    let bridge = gyre.start_bridge();
    let dialer = bridge.dialer();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acknowledged: Vec<String> = runtime.block_on(async {
        // Every device connects (at most 64 handshakes at a time), and all stay connected.
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
        let mut connecting = tokio::task::JoinSet::new();
        for device in devices {
            let (dialer, slots) = (dialer.clone(), slots.clone());
            connecting.spawn(async move {
                let _slot = slots.acquire().await.expect("the semaphore stays open");
                let connection = dialer
                    .try_connect(&device)
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", device.id));
                (device, connection)
            });
        }
        let mut connected = Vec::with_capacity(DEVICES);
        while let Some(joined) = connecting.join_next().await {
            connected.push(joined.expect("a device connected"));
        }
        assert_eq!(connected.len(), DEVICES);

        // Then each publishes its messages back to back and collects its PUBACKs.
        let mut publishing = tokio::task::JoinSet::new();
        for (device, mut connection) in connected {
            publishing.spawn(async move {
                let mids: Vec<String> = (1..=MESSAGES_EACH)
                    .map(|n| format!("{}-{n}", device.id))
                    .collect();
                for (n, mid) in mids.iter().enumerate() {
                    connection
                        .publish(
                            &telemetry_topic(&device.id, mid),
                            &telemetry_body(mid),
                            n as u16 + 1,
                            false,
                        )
                        .await
                        .unwrap_or_else(|err| panic!("{mid}: {err}"));
                }
                for n in 1..=MESSAGES_EACH {
                    connection.expect_puback(n as u16).await;
                }
                connection.disconnect().await;
                mids
            });
        }
        let mut acknowledged = Vec::with_capacity(DEVICES * MESSAGES_EACH);
        while let Some(joined) = publishing.join_next().await {
            acknowledged.extend(joined.expect("a device published"));
        }
        acknowledged
    });

    assert_eq!(acknowledged.len(), DEVICES * MESSAGES_EACH);
    assert_all_stored(&gyre, &acknowledged);
    let distinct: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(distinct.len(), DEVICES * MESSAGES_EACH);
    // Each connection and its end are in the connectivity history. Events carry no
    // acknowledgement, so the last ones may still be on their way: poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = connectivity_counts(&gyre);
        if counts == (DEVICES, DEVICES) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "(connected, disconnected) events: {counts:?}, expected {DEVICES} each"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = bridge.log();
    let problems: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    assert!(
        problems.is_empty(),
        "the bridge logged problems:\n{}",
        problems.join("\n")
    );
}

/// How many `connected` and `disconnected` events the store holds.
fn connectivity_counts(gyre: &Gyre) -> (usize, usize) {
    let db = rusqlite::Connection::open_with_flags(
        gyre.database_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the state database");
    let count = |kind: &str| -> usize {
        db.query_row(
            "SELECT count(*) FROM connectivity WHERE kind = ?1",
            [kind],
            |row| row.get(0),
        )
        .expect("count connectivity events")
    };
    (count("connected"), count("disconnected"))
}

/// IoT Hub closes the connection of a device that gets disabled, and IoT Central stops taking
/// a blocked device's data: the bridge rechecks connected devices the registry changed on its
/// one-second tick.
#[test]
fn a_connected_device_is_disconnected_within_seconds_of_being_blocked() {
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "blocked-while-connected");
    let bridge = gyre.start_bridge();
    let runtime = runtime();
    let mut connection = runtime.block_on(bridge.connect_device(&device));

    let patched = operator.patch(
        "/api/devices/blocked-while-connected",
        json!({"enabled": false}),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);

    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in 1u16.. {
            let mid = format!("after-block-{n}");
            let topic = telemetry_topic(&device.id, &mid);
            if connection
                .publish(&topic, &telemetry_body(&mid), n, false)
                .await
                .is_err()
            {
                return;
            }
            match connection.try_recv(Duration::from_secs(5)).await {
                Ok(Some(Packet::PubAck(_))) => {}
                Ok(None) | Err(_) => return, // closed: what IoT Hub does
                Ok(Some(other)) => panic!("unexpected {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "the blocked device still publishes 20s later ({n} messages acknowledged)"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

#[test]
fn a_backlog_of_a_compaction_step_is_compacted_under_load_without_waiting_for_the_tick() {
    const MESSAGES: usize = 16_800;
    const WAVE: usize = 60;
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "busy-1");
    // The tick (which compacts a step a second on its own) fires once at start, then not
    // within the test: only the bridge's compactor can move these rows.
    let bridge = TestBridge::start_with(&gyre, &["--tick-interval", "10m"]);
    let acknowledged: Vec<String> = runtime().block_on(async {
        let mut connection = bridge.connect_device(&device).await;
        let mut acknowledged = Vec::with_capacity(MESSAGES);
        for wave in 0..MESSAGES / WAVE {
            let mids: Vec<String> = (0..WAVE).map(|n| format!("busy-{wave}-{n}")).collect();
            for (n, mid) in mids.iter().enumerate() {
                connection
                    .publish(
                        &telemetry_topic("busy-1", mid),
                        &telemetry_body(mid),
                        n as u16 + 1,
                        false,
                    )
                    .await
                    .expect("PUBLISH");
            }
            for n in 0..WAVE {
                connection.expect_puback(n as u16 + 1).await;
            }
            acknowledged.extend(mids);
        }
        acknowledged
    });
    let db = rusqlite::Connection::open(gyre.database_path()).expect("open the state database");
    let deadline = Instant::now() + Duration::from_secs(20);
    // The bridge's compaction requests apply the journal and move whole steps, until every
    // acknowledged message is applied.
    while (count(&db, "telemetry") < 16_384
        || count(&db, "telemetry") + count(&db, "telemetry_inbox") < MESSAGES as i64)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    // One query, so the two counts agree even while the tick (every second) moves the rest
    // of the inbox, as it does for a quiet application.
    let (compacted, waiting): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM telemetry), (SELECT count(*) FROM telemetry_inbox)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("count both tables");
    assert!(
        compacted >= 16_384,
        "a whole step was compacted under load ({compacted} rows compacted, {waiting} waiting)"
    );
    assert_eq!(
        compacted + waiting,
        MESSAGES as i64,
        "every message is compacted or waits in the inbox"
    );
    assert_all_stored(&gyre, &acknowledged);
    assert!(stored_message_ids(&gyre)
        .values()
        .all(|copies| *copies == 1));
}
