//! The whole bridge on 127.0.0.1:0 against a fake registry endpoint (HTTP) and a fake upstream
//! (the batcher's `Upstream` seam), both stand-ins for the Spin application at this layer. The
//! device side is a raw MQTT client built from the bridge's own codec and `Connection`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use gyre_domain::bridge::DeviceConnection;
use gyre_domain::enrollment::SymmetricKey;
use gyre_domain::ingest::{ConnectivityKind, IngestBatch, IngestResult};
use gyre_domain::mqtt::{generate_token, SrForm};
use gyre_ingest_bridge::batcher::{self, BatcherConfig, FlushPolicy};
use gyre_ingest_bridge::codec::{
    encode, ConnAck, Connect, ConnectReturnCode, Credentials, MqttStr, Packet, PacketId, Password,
    PubAck, Publish, PublishQos, QoS, SubAckCode, Subscribe, SubscribeFilter, TopicFilter,
    TopicName,
};
use gyre_ingest_bridge::connection::Connection;
use gyre_ingest_bridge::registry::{Registry, RegistryConfig};
use gyre_ingest_bridge::session::SessionLimits;
use gyre_ingest_bridge::upstream::{IngestFailed, Upstream, SECRET_HEADER};
use gyre_ingest_bridge::BridgeConfig;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "test-secret";
const HOST: &str = "localhost";
const MAX_PACKET: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Fakes.

type Reply = oneshot::Sender<Result<IngestResult, IngestFailed>>;

/// Batches holding messages are handed to the test, which answers them; event-only batches are
/// committed at once and their events reported.
struct FakeUpstream {
    message_batches: mpsc::UnboundedSender<(IngestBatch, Reply)>,
    events: mpsc::UnboundedSender<(String, ConnectivityKind)>,
}

impl Upstream for FakeUpstream {
    async fn send(&self, batch: &IngestBatch) -> Result<IngestResult, IngestFailed> {
        for event in &batch.events {
            let _ = self.events.send((event.device_id.clone(), event.kind));
        }
        if batch.messages.is_empty() {
            return committed(batch);
        }
        let (reply, answer) = oneshot::channel();
        let _ = self.message_batches.send((batch.clone(), reply));
        answer.await.unwrap_or(Err(IngestFailed::ShuttingDown))
    }
}

fn committed(batch: &IngestBatch) -> Result<IngestResult, IngestFailed> {
    Ok(IngestResult {
        batch_id: batch.batch_id.clone(),
        n_messages: batch.messages.len() as u32,
        n_events: batch.events.len() as u32,
        duplicate: false,
        compaction_due: false,
    })
}

/// The registry's connection endpoint over the devices in `devices`; 404 for others, 401
/// without the secret.
async fn fake_registry(devices: Arc<Mutex<HashMap<String, DeviceConnection>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let devices = Arc::clone(&devices);
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let devices = Arc::clone(&devices);
                async move {
                    let path = request.uri().path().to_owned();
                    let device_id = path
                        .strip_prefix("/internal/registry/devices/")
                        .and_then(|rest| rest.strip_suffix("/connection"));
                    let authorized = request
                        .headers()
                        .get(SECRET_HEADER)
                        .is_some_and(|value| value == SECRET);
                    let found = device_id.and_then(|id| devices.lock().unwrap().get(id).cloned());
                    let (status, body) = match (authorized, found) {
                        (false, _) => (401, b"{}".to_vec()),
                        (true, Some(device)) => (200, serde_json::to_vec(&device).unwrap()),
                        (true, None) => (404, b"{}".to_vec()),
                    };
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    base_url
}

// ---------------------------------------------------------------------------------------------
// The bridge under test.

struct TestBridge {
    addr: SocketAddr,
    key: SymmetricKey,
    devices: Arc<Mutex<HashMap<String, DeviceConnection>>>,
    message_batches: mpsc::UnboundedReceiver<(IngestBatch, Reply)>,
    events: mpsc::UnboundedReceiver<(String, ConnectivityKind)>,
    stop: Option<oneshot::Sender<()>>,
}

async fn spawn_bridge() -> TestBridge {
    let key = SymmetricKey::from_random([7; 32]);
    let devices = Arc::new(Mutex::new(HashMap::new()));
    let registry_url = fake_registry(Arc::clone(&devices)).await;
    let registry = Registry::new(RegistryConfig {
        base_url: registry_url,
        secret: SECRET.to_owned(),
        ttl: Duration::from_secs(2),
        timeout: Duration::from_secs(3600),
        max_entries: 1000,
    })
    .unwrap();
    let (batches_tx, message_batches) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let upstream = Arc::new(FakeUpstream {
        message_batches: batches_tx,
        events: events_tx,
    });
    let (handle, inbox) = batcher::channel(64);
    let batcher_config = BatcherConfig {
        policy: FlushPolicy {
            max_messages: 1,
            max_age: Duration::from_millis(1),
            eager: true,
        },
        max_in_flight: 8,
        shutdown_deadline: Duration::from_secs(1),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(batcher::run(
        inbox,
        upstream,
        batcher_config,
        std::future::pending(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = BridgeConfig {
        batcher: handle,
        registry: Arc::new(registry),
        sessions: Default::default(),
        max_connections: 100,
        max_packet_size: MAX_PACKET,
        limits: SessionLimits {
            connect_timeout: Duration::from_secs(3600),
            max_inflight: 16,
        },
        hub_host_name: HOST.to_owned(),
    };
    tokio::spawn(gyre_ingest_bridge::run(listener, config, stopped));
    TestBridge {
        addr,
        key,
        devices,
        message_batches,
        events,
        stop: Some(stop),
    }
}

impl TestBridge {
    fn register(&self, device_id: &str, may_connect: bool) {
        let device = DeviceConnection {
            device_id: device_id.to_owned(),
            may_connect,
            keys: vec![self.key.as_str().to_owned()],
            template: None,
        };
        self.devices
            .lock()
            .unwrap()
            .insert(device_id.to_owned(), device);
    }

    fn token(&self, device_id: &str) -> String {
        token_with(&self.key, device_id, unix_secs() + 3600)
    }

    async fn connect(&self, device_id: &str) -> Client {
        let (client, code) =
            Client::connect(self.addr, device_id, &self.token(device_id), 60).await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        client
    }

    async fn next_event(&mut self) -> (String, ConnectivityKind) {
        self.events.recv().await.unwrap()
    }
}

fn token_with(key: &SymmetricKey, device_id: &str, expiry_secs: u64) -> String {
    generate_token(
        &format!("{HOST}/devices/{device_id}"),
        key,
        expiry_secs,
        None,
        SrForm::Encoded,
    )
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// A raw MQTT client.

struct Client {
    connection: Connection<TcpStream>,
}

impl Client {
    async fn connect_as(
        addr: SocketAddr,
        client_id: &str,
        username: &str,
        password: &str,
        keep_alive: u16,
    ) -> (Client, ConnectReturnCode) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut client = Client {
            connection: Connection::new(stream, 1 << 20),
        };
        let connect = Packet::Connect(Connect {
            clean_session: false,
            keep_alive,
            client_id: MqttStr::try_from(client_id).unwrap(),
            will: None,
            credentials: Some(Credentials {
                username: MqttStr::try_from(username).unwrap(),
                password: Some(Password::new(Bytes::from(password.to_owned()))),
            }),
        });
        client.send(&connect).await;
        match client.recv().await {
            Some(Packet::ConnAck(ConnAck { code, .. })) => (client, code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn connect(
        addr: SocketAddr,
        device_id: &str,
        password: &str,
        keep_alive: u16,
    ) -> (Client, ConnectReturnCode) {
        let username = format!("{HOST}/{device_id}/?api-version=2021-04-12");
        Client::connect_as(addr, device_id, &username, password, keep_alive).await
    }

    async fn send(&mut self, packet: &Packet) {
        self.connection.write_packet(packet).await.unwrap();
    }

    /// The next packet; `None` once the bridge closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        self.connection.read_packet().await.ok().flatten()
    }

    async fn publish(&mut self, topic: &str, payload: &[u8], packet_id: u16) {
        let publish = Packet::Publish(Publish {
            topic: TopicName::try_from(topic).unwrap(),
            qos: PublishQos::AtLeastOnce {
                packet_id: PacketId::new(packet_id).unwrap(),
                dup: false,
            },
            retain: false,
            payload: Bytes::copy_from_slice(payload),
        });
        self.send(&publish).await;
    }

    async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
        assert_eq!(self.recv().await, Some(Packet::PingResp));
    }

    async fn assert_closed(&mut self) {
        assert_eq!(
            self.recv().await,
            None,
            "the bridge should have closed this connection"
        );
    }
}

fn puback(packet_id: u16) -> Packet {
    Packet::PubAck(PubAck {
        packet_id: PacketId::new(packet_id).unwrap(),
    })
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn a_device_with_a_good_token_is_acknowledged_only_after_the_commit() {
    let mut bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let mut device = bridge.connect("dev1").await;
    assert_eq!(
        bridge.next_event().await,
        ("dev1".to_owned(), ConnectivityKind::Connected)
    );

    device
        .publish(
            "devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp",
            b"{\"temp\":21.5}",
            7,
        )
        .await;
    let (batch, reply) = bridge.message_batches.recv().await.unwrap();
    // The batch is not committed yet: the next packet the device sees answers its PINGREQ.
    device.ping().await;
    reply.send(committed(&batch)).unwrap();
    assert_eq!(device.recv().await, Some(puback(7)));

    let message = &batch.messages[0];
    assert_eq!(message.device_id, "dev1");
    assert_eq!(message.module_id, None);
    assert_eq!(message.system_properties["$.ct"], "application/json");
    assert_eq!(message.system_properties["$.ce"], "utf-8");
    assert_eq!(
        message.application_properties,
        vec![("alert".to_owned(), "high temp".to_owned())]
    );
    assert_eq!(message.body, br#"{"temp":21.5}"#);
    let now_ms = (unix_secs() * 1000) as i64;
    assert!((now_ms - 60_000..=now_ms + 1000).contains(&message.enqueued_at));

    device.send(&Packet::Disconnect).await;
    device.assert_closed().await;
    assert_eq!(
        bridge.next_event().await,
        ("dev1".to_owned(), ConnectivityKind::Disconnected)
    );
}

#[tokio::test]
async fn a_failed_commit_closes_the_connection_without_puback() {
    let mut bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let mut device = bridge.connect("dev1").await;
    device
        .publish("devices/dev1/messages/events/", b"x", 1)
        .await;
    let (_batch, reply) = bridge.message_batches.recv().await.unwrap();
    reply
        .send(Err(IngestFailed::Rejected {
            status: 400,
            message: "no".into(),
        }))
        .unwrap();
    device.assert_closed().await;
}

#[tokio::test]
async fn refusals_are_connack_5() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    bridge.register("blocked", false);
    let other_key = SymmetricKey::from_random([9; 32]);
    let cases = [
        (
            "bad signature",
            "dev1",
            token_with(&other_key, "dev1", unix_secs() + 3600),
        ),
        (
            "expired",
            "dev1",
            token_with(&bridge.key, "dev1", unix_secs() - 10),
        ),
        ("not a token", "dev1", "hello".to_owned()),
        ("token for another device", "dev1", bridge.token("blocked")),
        ("unknown device", "ghost", bridge.token("ghost")),
        ("blocked device", "blocked", bridge.token("blocked")),
    ];
    for (case, device_id, password) in cases {
        let (mut client, code) = Client::connect(bridge.addr, device_id, &password, 60).await;
        assert_eq!(code, ConnectReturnCode::NotAuthorized, "{case}");
        client.assert_closed().await;
    }
    // DPS is not served yet: refused the same way.
    let dps_token = generate_token(
        "0ne0000ABCD/registrations/dev1",
        &bridge.key,
        unix_secs() + 3600,
        Some("registration"),
        SrForm::Raw,
    );
    let (mut client, code) = Client::connect_as(
        bridge.addr,
        "dev1",
        "0ne0000ABCD/registrations/dev1/api-version=2019-03-31",
        &dps_token,
        60,
    )
    .await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    client.assert_closed().await;
    // The bridge still serves a good device.
    bridge.connect("dev1").await.ping().await;
}

#[tokio::test]
async fn publishing_as_another_device_closes_the_connection() {
    let mut bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    bridge.register("dev2", true);
    let mut device = bridge.connect("dev1").await;
    device
        .publish("devices/dev2/messages/events/", b"{}", 1)
        .await;
    device.assert_closed().await;
    assert!(bridge.message_batches.try_recv().is_err());
}

#[tokio::test]
async fn a_malformed_packet_closes_only_its_connection() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    bridge.register("dev2", true);
    let mut healthy = bridge.connect("dev1").await;

    // Before CONNECT: a reserved packet type.
    let mut stream = TcpStream::connect(bridge.addr).await.unwrap();
    stream.write_all(&[0x00, 0x00]).await.unwrap();
    assert_raw_closed(stream).await;
    // A CONNECT at protocol level 5 (MQTT 5): CONNACK 1, then close.
    let mut stream = TcpStream::connect(bridge.addr).await.unwrap();
    stream
        .write_all(&[
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x01,
            b'a',
        ])
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x01]);
    assert_raw_closed(stream).await;
    // After CONNECT: a PUBLISH whose topic length runs past the packet.
    let mut stream = raw_connected(&bridge, "dev2").await;
    stream.write_all(&[0x30, 0x02, 0xFF, 0xFF]).await.unwrap();
    assert_raw_closed(stream).await;
    // After CONNECT: a packet only a server sends.
    let mut other = bridge.connect("dev2").await;
    other
        .send(&Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::Accepted,
        }))
        .await;
    other.assert_closed().await;

    healthy.ping().await;
}

#[tokio::test]
async fn an_oversize_packet_is_refused_before_its_body_arrives() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let mut stream = raw_connected(&bridge, "dev1").await;
    // The fixed header of a PUBLISH declaring twice the maximum; no body follows.
    let declared = MAX_PACKET * 2;
    let header = [
        0x32,
        (declared & 0x7F) as u8 | 0x80,
        ((declared >> 7) & 0x7F) as u8,
    ];
    stream.write_all(&header).await.unwrap();
    assert_raw_closed(stream).await;
}

/// A TCP stream on which `device_id` has connected (CONNACK 0 read), for writing raw bytes.
async fn raw_connected(bridge: &TestBridge, device_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(bridge.addr).await.unwrap();
    let connect = Packet::Connect(Connect {
        clean_session: false,
        keep_alive: 60,
        client_id: MqttStr::try_from(device_id).unwrap(),
        will: None,
        credentials: Some(Credentials {
            username: MqttStr::try_from(format!("{HOST}/{device_id}/?api-version=2021-04-12"))
                .unwrap(),
            password: Some(Password::new(Bytes::from(bridge.token(device_id)))),
        }),
    });
    let mut frame = BytesMut::new();
    encode(&connect, &mut frame).unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    stream
}

/// The bridge closed `stream`: a read sees end of stream (or a reset), never data.
async fn assert_raw_closed(mut stream: TcpStream) {
    let mut buf = [0u8; 16];
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection closed, got {:?}", &buf[..n]),
    }
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_the_session_over() {
    let mut bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let mut older = bridge.connect("dev1").await;
    let mut newer = bridge.connect("dev1").await;
    older.assert_closed().await;
    newer.ping().await;
    // The device stayed connected throughout: no `disconnected` between the two `connected`.
    let connected = ("dev1".to_owned(), ConnectivityKind::Connected);
    assert_eq!(bridge.next_event().await, connected);
    assert_eq!(bridge.next_event().await, connected);
    newer.send(&Packet::Disconnect).await;
    newer.assert_closed().await;
    assert_eq!(
        bridge.next_event().await,
        ("dev1".to_owned(), ConnectivityKind::Disconnected)
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocked_device_is_refused_once_the_cached_answer_expires() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    bridge.connect("dev1").await.ping().await;
    bridge.register("dev1", false);
    // Within the cache's TTL the registry's earlier answer still holds.
    bridge.connect("dev1").await.ping().await;
    tokio::time::advance(Duration::from_secs(3)).await; // the registry cache keeps answers 2 s
    let (mut device, code) = Client::connect(bridge.addr, "dev1", &bridge.token("dev1"), 60).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    device.assert_closed().await;
}

#[tokio::test]
async fn shutdown_closes_every_session_with_a_disconnected_event() {
    let mut bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let mut device = bridge.connect("dev1").await;
    assert_eq!(bridge.next_event().await.1, ConnectivityKind::Connected);
    let _ = bridge.stop.take().unwrap().send(());
    device.assert_closed().await;
    assert_eq!(bridge.next_event().await.1, ConnectivityKind::Disconnected);
    assert!(
        TcpStream::connect(bridge.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn subscriptions_are_granted_only_for_the_device_itself_and_twin_publishes_are_ignored() {
    let mut bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let mut device = bridge.connect("dev1").await;
    let filters = [
        ("$iothub/twin/res/#", QoS::AtLeastOnce),
        ("$iothub/methods/POST/#", QoS::AtMostOnce),
        ("devices/dev1/messages/devicebound/#", QoS::ExactlyOnce),
        ("devices/dev2/messages/devicebound/#", QoS::AtLeastOnce),
        ("$dps/registrations/res/#", QoS::AtLeastOnce),
    ]
    .into_iter()
    .map(|(filter, qos)| SubscribeFilter {
        filter: TopicFilter::try_from(filter).unwrap(),
        qos,
    })
    .collect();
    device
        .send(&Packet::Subscribe(
            Subscribe::new(PacketId::new(3).unwrap(), filters).unwrap(),
        ))
        .await;
    let Some(Packet::SubAck(suback)) = device.recv().await else {
        panic!("expected SUBACK")
    };
    assert_eq!(suback.packet_id().get(), 3);
    assert_eq!(
        suback.codes(),
        [
            SubAckCode::Granted(QoS::AtLeastOnce),
            SubAckCode::Granted(QoS::AtMostOnce),
            SubAckCode::Granted(QoS::AtLeastOnce),
            SubAckCode::Failure,
            SubAckCode::Failure,
        ]
    );
    device.publish("$iothub/twin/GET/?$rid=1", b" ", 9).await;
    assert_eq!(device.recv().await, Some(puback(9)));
    assert!(bridge.message_batches.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_is_dropped_after_one_and_a_half_keep_alives() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let (mut device, code) = Client::connect(bridge.addr, "dev1", &bridge.token("dev1"), 10).await;
    assert_eq!(code, ConnectReturnCode::Accepted);
    let connected_at = tokio::time::Instant::now();
    device.assert_closed().await;
    let silent_for = connected_at.elapsed();
    assert!(
        (Duration::from_secs(15)..Duration::from_secs(16)).contains(&silent_for),
        "{silent_for:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_device_that_keeps_talking_stays_and_is_dropped_once_it_falls_silent() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let (mut device, code) = Client::connect(bridge.addr, "dev1", &bridge.token("dev1"), 10).await;
    assert_eq!(code, ConnectReturnCode::Accepted);
    // A ping every 9 s for a minute: each comes before 15 s of silence.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_secs(9)).await;
        device.ping().await;
    }
    let last_packet_at = tokio::time::Instant::now();
    device.assert_closed().await;
    let silent_for = last_packet_at.elapsed();
    assert!(
        (Duration::from_secs(15)..Duration::from_secs(16)).contains(&silent_for),
        "{silent_for:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_closes_when_its_token_expires() {
    let bridge = spawn_bridge().await;
    bridge.register("dev1", true);
    let token = token_with(&bridge.key, "dev1", unix_secs() + 120);
    let (mut device, code) = Client::connect(bridge.addr, "dev1", &token, 0).await;
    assert_eq!(code, ConnectReturnCode::Accepted);
    let connected_at = tokio::time::Instant::now();
    device.assert_closed().await;
    let open_for = connected_at.elapsed();
    assert!(
        (Duration::from_secs(110)..=Duration::from_secs(120)).contains(&open_for),
        "{open_for:?}"
    );
}
