//! The device bridge (issue 4) in front of the real host: a device the operator created through
//! the REST API connects over TLS with its SAS token, publishes telemetry, and the message is in
//! the database once the bridge acknowledged it. The whole path: TLS → session → batcher →
//! upstream → ingest component → SQLite.
//!
//! This file also holds the harness the other bridge tests (`bridge_protocol`, `durability`)
//! share:
//! - [`TestBridge`]: the real `gyre-ingest-bridge` binary, started with extra flags if a test
//!   needs them, killed (SIGKILL) and restarted on the same address.
//! - [`Dialer`]: how a device reaches the bridge (address and TLS client configuration); cheap to
//!   clone into tasks, so load tests keep dialing while the bridge is restarted.
//! - [`Device`]: one MQTT connection over TLS speaking through the bridge's own codec.
//! - [`DeviceKey`]: a device id with the key an operator reads from `/credentials`, and the SAS
//!   tokens made from it.
//! - [`stored_message_ids`] and [`assert_all_stored`]: what the database holds, read directly
//!   (inbox and compacted tables), for "no acknowledged message is missing".

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gyre_domain::enrollment::SymmetricKey;
use gyre_domain::mqtt::{generate_token, SrForm};
use gyre_domain::store::telemetry::STORED_BODY;
use gyre_ingest_bridge::codec::{
    ConnAck, Connect, ConnectReturnCode, Credentials, MqttStr, Packet, PacketId, Password, PubAck,
    Publish, PublishQos, QoS, SubAckCode, Subscribe, SubscribeFilter, TopicFilter, TopicName,
};
use gyre_ingest_bridge::connection::{Connection, ConnectionError};
use rusqlite::{Connection as Database, OpenFlags};
use serde_json::json;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use crate::{Client, Gyre};

/// The name devices dial; the dev certificate names it (and 127.0.0.1).
pub const HOST: &str = "localhost";

/// How long a test waits for any single answer from the bridge before failing.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `gyre-ingest-bridge`, killed on drop.
pub struct TestBridge {
    /// `None` between [`TestBridge::kill`] and [`TestBridge::restart`].
    process: Option<BridgeProcess>,
    /// Every flag but `--listen-tls`, so a restart runs the same configuration.
    args: Vec<String>,
    secret: String,
    log: PathBuf,
    ca: PathBuf,
    dialer: Dialer,
    control_url: String,
}

struct BridgeProcess {
    child: Child,
    /// Kept open: a bridge writing to a closed pipe would fail.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl TestBridge {
    /// The bridge with the binary's defaults (and 5 ms batches, to keep tests quick).
    pub fn start(gyre: &Gyre) -> TestBridge {
        TestBridge::start_with(gyre, &[])
    }

    /// The bridge with extra flags (`--max-connections 5`, `--batch-max-age 1s`...); a
    /// `--batch-max-age` replaces the harness's 5 ms. Development certificates are made by
    /// the bridge's `dev-certs` command in the app's temp dir; MQTT over TLS on 127.0.0.1:0.
    /// Its log goes to `bridge.log` in the app dir ([`TestBridge::log`]), or to the test's
    /// stderr with `TEST_LOG=1`.
    pub fn start_with(gyre: &Gyre, extra_args: &[&str]) -> TestBridge {
        let binary = bridge_binary();
        let dir = gyre.host().app().dir().to_path_buf();
        let certs = dir.join("certs");
        let made = Command::new(&binary)
            .arg("dev-certs")
            .arg("--out")
            .arg(&certs)
            .output()
            .expect("run dev-certs");
        assert!(
            made.status.success(),
            "dev-certs: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut args: Vec<String> = Vec::new();
        if !extra_args.contains(&"--batch-max-age") {
            args.extend(["--batch-max-age".to_owned(), "5ms".to_owned()]);
        }
        args.push("--app-url".to_owned());
        args.push(gyre.host().base_url().to_owned());
        args.push("--control-listen".to_owned());
        args.push(gyre.control_addr());
        args.push("--cert".to_owned());
        args.push(certs.join("server.pem").display().to_string());
        args.push("--key".to_owned());
        args.push(certs.join("server-key.pem").display().to_string());
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let secret = gyre.internal_secret().to_owned();
        let log = dir.join("bridge.log");
        let (process, addr) = spawn_bridge(&binary, &args, "127.0.0.1:0", &secret, &log);
        TestBridge {
            process: Some(process),
            args,
            secret,
            log,
            ca: certs.join("ca.pem"),
            dialer: Dialer::new(addr, &certs.join("ca.pem")),
            control_url: format!("http://{}", gyre.control_addr()),
        }
    }

    /// The internal secret the bridge shares with the application.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The control API's base URL (`http://127.0.0.1:{port}`), as the registry calls it.
    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    /// `POST {control_url}{path}` with `body` and the internal secret, as the registry sends
    /// it. Blocking: run it on a thread (`spawn_blocking`) while a device answers.
    pub fn control_post(&self, path: &str, body: &serde_json::Value) -> gyre_tests::HttpResponse {
        control_post(&self.control_url, Some(&self.secret), path, body)
    }

    pub fn addr(&self) -> SocketAddr {
        self.dialer.addr
    }

    /// The development CA devices must trust (PEM).
    pub fn ca_path(&self) -> &std::path::Path {
        &self.ca
    }

    /// A handle to reach this bridge, for tasks; it stays valid across restarts.
    pub fn dialer(&self) -> Dialer {
        self.dialer.clone()
    }

    /// Everything the bridge logged so far (empty with `TEST_LOG=1`, which sends it to stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the bridge abruptly (SIGKILL), as a crash would: no draining, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill(); // it may have exited already; either way it is gone
            let _ = process.child.wait();
        }
    }

    /// Stops the bridge as an operator or a service manager does (SIGTERM) and waits for it to
    /// exit; its exit status. The process is gone afterwards ([`TestBridge::restart`] starts it
    /// again).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut process = self.process.take().expect("the bridge is running");
        let pid = process.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(signalled.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.child.try_wait().expect("wait for the bridge") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the bridge did not exit within 30s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the bridge again with the same flags on the same address (after [`TestBridge::kill`];
    /// kills the running one first otherwise).
    pub fn restart(&mut self) {
        self.kill();
        let (process, addr) = spawn_bridge(
            &bridge_binary(),
            &self.args,
            &self.dialer.addr.to_string(),
            &self.secret,
            &self.log,
        );
        assert_eq!(
            addr, self.dialer.addr,
            "the restarted bridge listens elsewhere"
        );
        self.process = Some(process);
    }

    /// Connects and sends CONNECT as `device_id` with `password`; see [`Dialer::connect`].
    pub async fn connect(&self, device_id: &str, password: &str) -> (Device, ConnectReturnCode) {
        self.dialer.connect(device_id, password).await
    }

    /// Connects `device` with a fresh token and asserts it was accepted.
    pub async fn connect_device(&self, device: &DeviceKey) -> Device {
        let (connection, code) = self.connect(&device.id, &device.token()).await;
        assert_eq!(
            code,
            ConnectReturnCode::Accepted,
            "CONNACK for {}",
            device.id
        );
        connection
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `POST {base}{path}` with a JSON body and, if given, the internal secret header.
pub fn control_post(
    base: &str,
    secret: Option<&str>,
    path: &str,
    body: &serde_json::Value,
) -> gyre_tests::HttpResponse {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-gyre-internal-secret", secret);
    }
    let request = request
        .body(serde_json::to_vec(body).expect("a JSON body"))
        .expect("a valid request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|err| panic!("POST {base}{path}: {err}"));
    gyre_tests::HttpResponse {
        status: response.status().as_u16(),
        headers: Vec::new(),
        body: response
            .body_mut()
            .read_to_string()
            .expect("a text body"),
    }
}

fn bridge_binary() -> PathBuf {
    let binary = gyre_tests::target_dir()
        .join("release")
        .join("gyre-ingest-bridge");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo xtask build`",
        binary.display()
    );
    binary
}

/// Spawns the bridge on `listen` and waits for the line naming its address.
fn spawn_bridge(
    binary: &PathBuf,
    args: &[String],
    listen: &str,
    secret: &str,
    log: &PathBuf,
) -> (BridgeProcess, SocketAddr) {
    let stderr = if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the bridge log");
        Stdio::from(file)
    };
    let mut child = Command::new(binary)
        .env_remove("SPIN_VARIABLE_INTERNAL_SECRET")
        .env("GYRE_INTERNAL_SECRET", secret)
        .args(["--listen-tls", listen])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn gyre-ingest-bridge");
    // The first line names the bound address; reading blocks until it is printed (or the
    // bridge exits, closing the pipe).
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    stdout
        .read_line(&mut line)
        .expect("read the bridge's stdout");
    let Some(addr) = line.trim().strip_prefix("Bridge listening on mqtts://") else {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("gyre-ingest-bridge did not start: {line:?}\n--- log\n{log}");
    };
    let addr = addr.parse().expect("a socket address");
    (
        BridgeProcess {
            child,
            _stdout: stdout,
        },
        addr,
    )
}

/// How a device reaches the bridge: its address and a TLS 1.2-only client configuration (what
/// the Python SDK offers) trusting the dev CA and checking the certificate names `localhost`.
#[derive(Clone)]
pub struct Dialer {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Dialer {
    fn new(addr: SocketAddr, ca: &PathBuf) -> Dialer {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(ca).expect("read ca.pem");
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("a CA certificate");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Dialer {
            addr,
            tls: Arc::new(config),
        }
    }

    /// A TCP connection with the TLS handshake done and nothing sent yet, for raw bytes.
    pub async fn open_tls(&self) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let server_name = rustls_pki_types::ServerName::try_from(HOST).expect("a server name");
        tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(server_name, tcp)
            .await
    }

    /// Connects over TLS and sends CONNECT with `client_id`, `username` and `password` as given;
    /// the CONNACK's code, or why there was none (refused TCP, a failed handshake, a close).
    pub async fn try_connect_as(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<(Device, ConnectReturnCode), String> {
        let tls = self
            .open_tls()
            .await
            .map_err(|err| format!("connecting over TLS: {err}"))?;
        let mut device = Device {
            connection: Connection::new(tls, 1 << 20),
        };
        let connect = Packet::Connect(Connect {
            clean_session: false,
            keep_alive: 60,
            client_id: MqttStr::try_from(client_id).unwrap(),
            will: None,
            credentials: Some(Credentials {
                username: MqttStr::try_from(username).unwrap(),
                password: Some(Password::new(Bytes::from(password.to_owned()))),
            }),
        });
        device
            .send(&connect)
            .await
            .map_err(|err| format!("sending CONNECT: {err}"))?;
        match device.try_recv(ANSWER_TIMEOUT).await {
            Ok(Some(Packet::ConnAck(ConnAck { code, .. }))) => Ok((device, code)),
            other => Err(format!("expected CONNACK, got {other:?}")),
        }
    }

    /// Connects as `device_id` (the hub user name the SDKs send) with `password`; panics when no
    /// CONNACK comes.
    pub async fn connect(&self, device_id: &str, password: &str) -> (Device, ConnectReturnCode) {
        self.try_connect_as(device_id, &hub_username(device_id), password)
            .await
            .unwrap_or_else(|err| panic!("{device_id}: {err}"))
    }

    /// Connects `device` with a fresh token: the connection if CONNACK 0 came, why not otherwise.
    pub async fn try_connect(&self, device: &DeviceKey) -> Result<Device, String> {
        match self
            .try_connect_as(&device.id, &hub_username(&device.id), &device.token())
            .await?
        {
            (connection, ConnectReturnCode::Accepted) => Ok(connection),
            (_, code) => Err(format!("refused with {code:?}")),
        }
    }
}

/// The hub user name as the Node SDK sends it.
pub fn hub_username(device_id: &str) -> String {
    format!("{HOST}/{device_id}/?api-version=2021-04-12")
}

/// A device's MQTT connection over TLS, speaking through the bridge's own codec.
#[derive(Debug)]
pub struct Device {
    connection: Connection<TlsStream<tokio::net::TcpStream>>,
}

impl Device {
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        self.connection.write_packet(packet).await
    }

    /// The next packet; `Ok(None)` when the bridge closed the connection; `Err` on a broken
    /// connection or when nothing came within `timeout` (as text, for the caller's message).
    pub async fn try_recv(&mut self, timeout: Duration) -> Result<Option<Packet>, String> {
        match tokio::time::timeout(timeout, self.connection.read_packet()).await {
            Err(_elapsed) => Err(format!("no packet within {timeout:?}")),
            Ok(Err(err)) => Err(format!("connection broken: {err}")),
            Ok(Ok(packet)) => Ok(packet),
        }
    }

    /// The next packet, `None` once the connection is closed (cleanly or not); panics when
    /// nothing happens within 30 s.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.connection.read_packet())
            .await
            .expect("an answer within 30s")
            .ok()
            .flatten()
    }

    /// Sends a QoS 1 PUBLISH with `packet_id` without waiting.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        packet_id: u16,
        dup: bool,
    ) -> Result<(), ConnectionError> {
        let publish = Packet::Publish(Publish {
            topic: TopicName::try_from(topic).unwrap(),
            qos: PublishQos::AtLeastOnce {
                packet_id: PacketId::new(packet_id).expect("a non-zero packet id"),
                dup,
            },
            retain: false,
            payload: Bytes::copy_from_slice(payload),
        });
        self.send(&publish).await
    }

    /// Publishes a request (DPS, twin) at QoS 1, waits for its PUBACK, and returns the answer
    /// the bridge publishes back at QoS 0: its topic and payload.
    pub async fn request(&mut self, topic: &str, body: &[u8], packet_id: u16) -> (String, Bytes) {
        self.publish(topic, body, packet_id, false)
            .await
            .expect("PUBLISH");
        self.expect_puback(packet_id).await;
        match self.recv().await {
            Some(Packet::Publish(Publish {
                topic,
                payload,
                qos,
                ..
            })) => {
                assert_eq!(qos, PublishQos::AtMostOnce, "answers are sent at QoS 0");
                (topic.as_str().to_owned(), payload)
            }
            other => panic!("expected the answer to {topic}, got {other:?}"),
        }
    }

    /// Subscribes to `filter` at QoS 1 and asserts the bridge granted it.
    pub async fn subscribe(&mut self, filter: &str) {
        let subscribe = Packet::Subscribe(
            Subscribe::new(
                PacketId::new(1).unwrap(),
                vec![SubscribeFilter {
                    filter: TopicFilter::new(MqttStr::try_from(filter).unwrap()).unwrap(),
                    qos: QoS::AtLeastOnce,
                }],
            )
            .unwrap(),
        );
        self.send(&subscribe).await.expect("SUBSCRIBE");
        match self.recv().await {
            Some(Packet::SubAck(suback)) => assert_eq!(
                suback.codes(),
                &[SubAckCode::Granted(QoS::AtLeastOnce)],
                "{filter}"
            ),
            other => panic!("expected SUBACK for {filter}, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish_and_wait_for_puback(&mut self, topic: &str, payload: &[u8]) {
        self.publish(topic, payload, 7, false)
            .await
            .expect("send PUBLISH");
        self.expect_puback(7).await;
    }

    /// The next packet is the PUBACK of `packet_id`.
    pub async fn expect_puback(&mut self, packet_id: u16) {
        match self.recv().await {
            Some(Packet::PubAck(PubAck { packet_id: acked })) => {
                assert_eq!(acked.get(), packet_id, "PUBACK for the wrong packet")
            }
            other => panic!("expected the PUBACK of {packet_id}, got {other:?}"),
        }
    }

    /// The bridge closes the connection without sending anything more (a clean close, a reset
    /// or a TLS error all count; an answer or 30 s of silence do not).
    pub async fn assert_closed(&mut self) {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.connection.read_packet()).await {
            Err(_elapsed) => panic!("the bridge kept the connection open for 30s"),
            Ok(Ok(Some(packet))) => panic!("expected the connection closed, got {packet:?}"),
            Ok(Ok(None) | Err(_)) => {}
        }
    }

    /// Sends DISCONNECT and waits for the bridge to close the connection.
    pub async fn disconnect(mut self) {
        let _ = self.send(&Packet::Disconnect).await;
        let _ = self.try_recv(Duration::from_secs(5)).await;
    }
}

/// A device id with its primary key, as an operator reads them from the REST API.
#[derive(Clone)]
pub struct DeviceKey {
    pub id: String,
    pub key: SymmetricKey,
}

impl DeviceKey {
    /// A SAS token valid for an hour (the SDKs' default), `sr` URL-encoded as Python sends it.
    pub fn token(&self) -> String {
        self.token_until(unix_secs() + 3600)
    }

    /// A SAS token for this device that expires at `expiry` (Unix seconds).
    pub fn token_until(&self, expiry: u64) -> String {
        generate_token(
            &format!("{HOST}/devices/{}", self.id),
            &self.key,
            expiry,
            None,
            SrForm::Encoded,
        )
    }
}

/// An operator creates `id` through the REST API and reads its primary key from `/credentials`.
pub fn create_device(operator: &Client<'_>, id: &str) -> DeviceKey {
    let created = operator.put(&format!("/api/devices/{id}"), json!({"displayName": id}));
    assert!(
        matches!(created.status, 200 | 201),
        "create {id}: {} {}",
        created.status,
        created.body
    );
    device_key(operator, id)
}

/// The device's current primary key, from `/credentials`.
pub fn device_key(operator: &Client<'_>, id: &str) -> DeviceKey {
    let credentials = operator.get(&format!("/api/devices/{id}/credentials"));
    assert_eq!(credentials.status, 200, "{}", credentials.body);
    let key = credentials.json()["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a primary key")
        .to_owned();
    DeviceKey {
        id: id.to_owned(),
        key: SymmetricKey::parse(&key).expect("a valid key"),
    }
}

/// A single-threaded runtime for a test's device side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The telemetry topic of `device_id` with a JSON body and message id `mid`, as the SDKs write
/// it (system property keys percent-encoded).
pub fn telemetry_topic(device_id: &str, mid: &str) -> String {
    format!(
        "devices/{device_id}/messages/events/%24.mid={}&%24.ct=application%2Fjson&%24.ce=utf-8",
        gyre_tests::query_escape(mid)
    )
}

/// A telemetry body carrying its message id, so the store can be checked message by message.
pub fn telemetry_body(mid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"mid": mid, "temperature": 21.5})).unwrap()
}

/// Every stored message's `mid` (from the body [`telemetry_body`] writes) with how many rows
/// carry it, over both tables: the inbox rows are stored as much as the compacted ones.
pub fn stored_message_ids(gyre: &Gyre) -> HashMap<String, usize> {
    gyre.apply_ingested();
    let db = Database::open_with_flags(gyre.database_path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the state database");
    let mut statement = db
        .prepare(&format!(
            "SELECT {STORED_BODY} FROM telemetry_inbox UNION ALL SELECT {STORED_BODY} FROM telemetry"
        ))
        .unwrap();
    let bodies = statement
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(Result::unwrap);
    let mut ids = HashMap::new();
    for body in bodies {
        let mid = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| value["mid"].as_str().map(str::to_owned));
        if let Some(mid) = mid {
            *ids.entry(mid).or_insert(0) += 1;
        }
    }
    ids
}

/// Every message id in `acknowledged` is in the store (at least once).
pub fn assert_all_stored(gyre: &Gyre, acknowledged: &[String]) {
    let stored = stored_message_ids(gyre);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|mid| !stored.contains_key(*mid))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing from the store, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn a_device_created_by_an_operator_sends_telemetry_over_tls_and_it_is_stored() {
    // Arrange: an operator creates the device and reads its credentials.
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let device = create_device(&operator, "thermostat-1");
    let bridge = gyre.start_bridge();

    // Act: the device connects over TLS and publishes one QoS 1 message.
    let payload = br#"{"temp": 21.5}"#;
    runtime().block_on(async {
        let (mut connection, code) = bridge.connect(&device.id, &device.token()).await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        connection
            .publish_and_wait_for_puback(
                "devices/thermostat-1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8",
                payload,
            )
            .await;
    });

    // Assert: acknowledged means durable (in the ingest journal until the compaction request
    // the bridge sends next applies it); applied, the message is in the database.
    gyre.apply_ingested();
    let db = Database::open(gyre.database_path()).expect("open the state database");
    let stored: Vec<(String, Vec<u8>)> = db
        .prepare(&format!(
            "SELECT device_id, {STORED_BODY} FROM telemetry_inbox \
             UNION ALL SELECT device_id, {STORED_BODY} FROM telemetry"
        ))
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, vec![("thermostat-1".to_owned(), payload.to_vec())]);
}
