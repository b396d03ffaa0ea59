//! Durability end to end (issue 4): devices publish QoS 1 telemetry continuously while the host
//! or the bridge is killed with SIGKILL and restarted; afterwards every message a device saw
//! PUBACKed is in the database.
//!
//! The devices behave like the SDKs: a message is done only once PUBACKed; a connection that
//! breaks (or stays silent too long) is opened again, and every message not yet acknowledged is
//! sent again with DUP set. Delivery is at least once: a message whose batch committed but
//! whose PUBACK was lost comes back as a second row, which is allowed; a missing one is not.
//! Every message carries a unique id (`$.mid` and the body's `mid`), so the check counts
//! distinct ids.
//!
//! What happens inside (ingest-bridge `upstream.rs`, `batcher.rs`): with the host gone, a batch
//! in flight fails to send and is retried with backoff for up to 30 s under the same batch id,
//! which the ingest component applies at most once; PUBACKs wait meanwhile. New connections are
//! refused with CONNACK 3 while the registry cannot answer. With the bridge gone, what it held
//! in memory is lost, unacknowledged, and the devices send it again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gyre_ingest_bridge::codec::{ConnectReturnCode, Packet, PubAck};

use crate::bridge::{
    create_device, stored_message_ids, telemetry_body, telemetry_topic, DeviceKey, Dialer,
    TestBridge,
};
use crate::{Client, Gyre};

/// Devices publishing at once.
const DEVICES: usize = 8;
/// QoS 1 messages each device keeps in flight (the SDKs pipeline too).
const WINDOW: usize = 8;
/// Crashes per test, at different moments of the load.
const CRASHES: usize = 3;
/// How long a device waits for a PUBACK before it gives up on the connection; above the
/// bridge's 30 s retry budget, so a slow recovery is waited out rather than resent.
const PUBACK_PATIENCE: Duration = Duration::from_secs(40);

/// What the publishing devices share with the test.
#[derive(Default)]
struct Load {
    /// Message ids the devices saw PUBACKed.
    acknowledged: Mutex<Vec<String>>,
    acknowledged_count: AtomicUsize,
    /// Distinct messages sent (first sends only).
    sent: AtomicUsize,
    /// Messages sent again after a broken connection.
    resent: AtomicUsize,
    /// Connections opened after the first, per device.
    reconnects: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    fn acknowledged(&self) -> usize {
        self.acknowledged_count.load(Ordering::SeqCst)
    }

    /// Messages sent and not yet acknowledged, now.
    fn in_flight(&self) -> usize {
        let acknowledged = self.acknowledged();
        self.sent.load(Ordering::SeqCst) - acknowledged
    }

    /// Blocks until devices reconnected `total` times in all, or panics after `timeout`.
    fn wait_for_reconnects(&self, total: usize, timeout: Duration, when: &str) {
        let deadline = Instant::now() + timeout;
        while self.reconnects.load(Ordering::SeqCst) < total {
            assert!(
                Instant::now() < deadline,
                "{when}: only {} of {total} reconnects after {timeout:?}",
                self.reconnects.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Blocks until `more` further messages were acknowledged, or panics after `timeout`.
    fn wait_for_acknowledgements(&self, more: usize, timeout: Duration, when: &str) {
        let target = self.acknowledged() + more;
        let deadline = Instant::now() + timeout;
        while self.acknowledged() < target {
            assert!(
                Instant::now() < deadline,
                "{when}: only {} of {target} messages acknowledged after {timeout:?}",
                self.acknowledged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One device publishing until told to stop, then until every message it sent is acknowledged.
async fn publish_continuously(dialer: Dialer, device: DeviceKey, load: Arc<Load>) {
    let mut next = 0u64;
    // Sent on a broken connection and not acknowledged: sent again first after reconnecting.
    let mut to_resend: VecDeque<String> = VecDeque::new();
    let mut first_connection = true;
    loop {
        if load.stop.load(Ordering::SeqCst) && to_resend.is_empty() {
            return;
        }
        let mut connection = match dialer.try_connect(&device).await {
            Ok(connection) => connection,
            // The bridge is down, or refuses with CONNACK 3 while the registry is: retry soon.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !std::mem::take(&mut first_connection) {
            load.reconnects.fetch_add(1, Ordering::SeqCst);
        }
        // (packet id, message id) awaiting their PUBACK on this connection, oldest first.
        let mut in_flight: VecDeque<(u16, String)> = VecDeque::new();
        let mut packet_id = 0u16;
        let broken = 'connection: loop {
            while in_flight.len() < WINDOW {
                let (mid, dup) = match to_resend.pop_front() {
                    Some(mid) => (mid, true),
                    None if !load.stop.load(Ordering::SeqCst) => {
                        next += 1;
                        load.sent.fetch_add(1, Ordering::SeqCst);
                        (format!("{}-{next}", device.id), false)
                    }
                    None => break,
                };
                packet_id = packet_id.checked_add(1).unwrap_or(1);
                if dup {
                    load.resent.fetch_add(1, Ordering::SeqCst);
                }
                let sent = connection
                    .publish(
                        &telemetry_topic(&device.id, &mid),
                        &telemetry_body(&mid),
                        packet_id,
                        dup,
                    )
                    .await;
                in_flight.push_back((packet_id, mid));
                if sent.is_err() {
                    break 'connection true;
                }
            }
            if in_flight.is_empty() {
                break 'connection false; // stopping, and everything is acknowledged
            }
            match connection.try_recv(PUBACK_PATIENCE).await {
                Ok(Some(Packet::PubAck(PubAck { packet_id: acked }))) => {
                    let (expected, mid) = in_flight.pop_front().expect("a message in flight");
                    assert_eq!(acked.get(), expected, "PUBACKs come in publish order");
                    load.acknowledged.lock().unwrap().push(mid);
                    load.acknowledged_count.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Some(other)) => panic!("{}: unexpected {other:?}", device.id),
                // Closed, broken or silent: reconnect and send again what was not acknowledged.
                Ok(None) | Err(_) => break 'connection true,
            }
        };
        if broken {
            for (_, mid) in in_flight.into_iter().rev() {
                to_resend.push_front(mid);
            }
        } else {
            connection.disconnect().await;
            return;
        }
    }
}

/// Starts the devices on a runtime of their own; they run until [`Load::stop`] is set.
fn start_load(
    runtime: &tokio::runtime::Runtime,
    dialer: &Dialer,
    devices: &[DeviceKey],
    load: &Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    devices
        .iter()
        .map(|device| {
            runtime.spawn(publish_continuously(
                dialer.clone(),
                device.clone(),
                Arc::clone(load),
            ))
        })
        .collect()
}

/// Stops the devices, waits until each has every message acknowledged, and checks the store:
/// every acknowledged message id at least once.
fn stop_and_check(
    gyre: &Gyre,
    bridge: &TestBridge,
    runtime: &tokio::runtime::Runtime,
    publishers: Vec<tokio::task::JoinHandle<()>>,
    load: &Load,
) {
    load.stop.store(true, Ordering::SeqCst);
    runtime.block_on(async {
        for publisher in publishers {
            tokio::time::timeout(Duration::from_secs(60), publisher)
                .await
                .expect("the devices finish within a minute")
                .expect("a device task");
        }
    });
    let acknowledged = load.acknowledged.lock().unwrap().clone();
    assert_eq!(
        acknowledged.len(),
        load.sent.load(Ordering::SeqCst),
        "every message sent was acknowledged in the end, once"
    );
    let stored = stored_message_ids(gyre);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|mid| !stored.contains_key(*mid))
        .collect();
    let duplicated = stored.values().filter(|&&rows| rows > 1).count();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing after the crash (e.g. {:?}); {} resent, \
         {} reconnects, {duplicated} stored twice or more",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)],
        load.resent.load(Ordering::SeqCst),
        load.reconnects.load(Ordering::SeqCst),
    );
    eprintln!(
        "{} acknowledged, {} distinct stored, {duplicated} stored twice or more, {} resent, \
         {} reconnects, {} ingest retries logged by the bridge",
        acknowledged.len(),
        stored.len(),
        load.resent.load(Ordering::SeqCst),
        load.reconnects.load(Ordering::SeqCst),
        bridge
            .log()
            .matches("ingest attempt failed; retrying")
            .count(),
    );
    // Nothing is stored that no device sent.
    for mid in stored.keys() {
        let (device, n) = mid.rsplit_once('-').expect("a message id names its device");
        assert!(
            device.starts_with("load-") && n.parse::<u64>().is_ok(),
            "an unexpected message {mid} is stored"
        );
    }
}

/// The operator registers the publishing devices.
fn fleet(operator: &Client<'_>) -> Vec<DeviceKey> {
    (1..=DEVICES)
        .map(|n| create_device(operator, &format!("load-{n}")))
        .collect()
}

fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn killing_the_host_mid_load_loses_no_acknowledged_message() {
    let mut gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let devices = fleet(&operator);
    let latecomer = create_device(&operator, "latecomer");
    drop(operator);
    let bridge = gyre.start_bridge();
    let runtime = load_runtime();
    let load = Arc::new(Load::default());
    let publishers = start_load(&runtime, &bridge.dialer(), &devices, &load);

    for crash in 1..=CRASHES {
        load.wait_for_acknowledgements(
            300,
            Duration::from_secs(60),
            &format!("before crash {crash}"),
        );
        gyre.host_mut().crash();
        assert!(
            load.in_flight() > 0,
            "crash {crash} came mid-load, with messages in flight"
        );
        // A moment without the host: batches in flight fail and go into their retry backoff.
        std::thread::sleep(Duration::from_millis(300));
        if crash == 1 {
            // A device the bridge has not seen cannot be checked: "server unavailable", which
            // the SDKs retry, not "not authorized", which they do not.
            let (_, code) = runtime.block_on(bridge.connect(&latecomer.id, &latecomer.token()));
            assert_eq!(code, ConnectReturnCode::ServerUnavailable);
        }
        gyre.host_mut().restart();
    }
    load.wait_for_acknowledgements(300, Duration::from_secs(60), "after the last restart");
    runtime.block_on(async { bridge.connect_device(&latecomer).await.disconnect().await });

    stop_and_check(&gyre, &bridge, &runtime, publishers, &load);
}

#[test]
fn killing_the_bridge_mid_load_loses_no_acknowledged_message() {
    let gyre = Gyre::start();
    let devices = fleet(&gyre.token_with_role("operator"));
    let mut bridge = gyre.start_bridge();
    let runtime = load_runtime();
    let load = Arc::new(Load::default());
    let publishers = start_load(&runtime, &bridge.dialer(), &devices, &load);

    for crash in 1..=CRASHES {
        load.wait_for_acknowledgements(
            300,
            Duration::from_secs(60),
            &format!("before crash {crash}"),
        );
        bridge.kill();
        assert!(
            load.in_flight() > 0,
            "crash {crash} came mid-load, with messages in flight"
        );
        std::thread::sleep(Duration::from_millis(300));
        bridge.restart();
        // Every device is back on this bridge before the next crash (a fast load would
        // otherwise reach the next crash with some devices still backing off).
        load.wait_for_reconnects(
            DEVICES * crash,
            Duration::from_secs(60),
            &format!("after restart {crash}"),
        );
    }
    load.wait_for_acknowledgements(300, Duration::from_secs(60), "after the last restart");
    assert!(
        load.reconnects.load(Ordering::SeqCst) >= DEVICES * CRASHES,
        "every device reconnected to each restarted bridge"
    );

    stop_and_check(&gyre, &bridge, &runtime, publishers, &load);
}

/// A graceful stop (SIGTERM) under load: the bridge stops accepting, closes every session with
/// its `disconnected` event, lets in-flight batches commit, and exits 0; devices resend what was
/// not acknowledged to the restarted bridge, and nothing acknowledged is lost.
#[test]
fn stopping_the_bridge_under_load_drains_it_and_loses_no_acknowledged_message() {
    let gyre = Gyre::start();
    let devices = fleet(&gyre.token_with_role("operator"));
    let mut bridge = gyre.start_bridge();
    let runtime = load_runtime();
    let load = Arc::new(Load::default());
    let publishers = start_load(&runtime, &bridge.dialer(), &devices, &load);

    load.wait_for_acknowledgements(300, Duration::from_secs(60), "before the stop");
    let status = bridge.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(bridge.log().contains("shutting down"), "{}", bridge.log());
    gyre.apply_ingested();
    let db = rusqlite::Connection::open(gyre.database_path()).expect("open the database");
    let disconnected: usize = db
        .query_row(
            "SELECT count(DISTINCT device_id) FROM connectivity WHERE kind = 'disconnected'",
            [],
            |row| row.get(0),
        )
        .expect("count disconnected events");
    assert_eq!(
        disconnected, DEVICES,
        "every session said goodbye before the bridge exited"
    );

    bridge.restart();
    load.wait_for_reconnects(DEVICES, Duration::from_secs(60), "after the restart");
    load.wait_for_acknowledgements(300, Duration::from_secs(60), "after the restart");
    stop_and_check(&gyre, &bridge, &runtime, publishers, &load);
}
