//! The device bridge (issue 4) in front of the real host: a device the operator created through
//! the REST API connects over TLS with its SAS token, publishes telemetry, and the message is in
//! the database once the bridge acknowledged it. The whole path: TLS → session → batcher →
//! upstream → ingest component → SQLite.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gyre_domain::enrollment::SymmetricKey;
use gyre_domain::mqtt::{generate_token, SrForm};
use gyre_ingest_bridge::codec::{
    ConnAck, Connect, ConnectReturnCode, Credentials, MqttStr, Packet, PacketId, Password, PubAck,
    Publish, PublishQos, TopicName,
};
use gyre_ingest_bridge::connection::Connection;
use rusqlite::Connection as Database;
use serde_json::json;
use tokio_rustls::rustls;

use crate::Gyre;

/// The name devices dial; the dev certificate names it (and 127.0.0.1).
const HOST: &str = "localhost";

/// A running `gyre-ingest-bridge`, killed on drop.
pub struct TestBridge {
    child: Child,
    /// Kept open: a bridge writing to a closed pipe would fail.
    _stdout: BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
    ca: PathBuf,
}

impl TestBridge {
    pub fn start(gyre: &Gyre) -> TestBridge {
        let binary = gyre_tests::target_dir()
            .join("release")
            .join("gyre-ingest-bridge");
        assert!(
            binary.is_file(),
            "{} is missing: run `cargo xtask build`",
            binary.display()
        );
        let certs = gyre.host().app().dir().join("certs");
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
        let stderr = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(&binary)
            .env_remove("SPIN_VARIABLE_INTERNAL_SECRET")
            .env("GYRE_INTERNAL_SECRET", gyre.internal_secret())
            .args([
                "--listen-tls",
                "127.0.0.1:0",
                "--batch-max-age",
                "5ms",
                "--app-url",
            ])
            .arg(gyre.host().base_url())
            .arg("--cert")
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server-key.pem"))
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
            panic!("gyre-ingest-bridge did not start: {line:?} (TEST_LOG=1 shows its log)");
        };
        let addr = addr.parse().expect("a socket address");
        TestBridge {
            child,
            _stdout: stdout,
            addr,
            ca: certs.join("ca.pem"),
        }
    }

    /// Connects as `device_id` over TLS 1.2 only (what the Python SDK offers), trusting the dev
    /// CA and checking the certificate names `localhost`, and sends CONNECT with `password`.
    pub async fn connect(&self, device_id: &str, password: &str) -> (Device, ConnectReturnCode) {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(&self.ca).expect("read ca.pem");
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
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the bridge");
        let server_name = rustls_pki_types::ServerName::try_from(HOST).expect("a server name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .expect("TLS handshake with the bridge");
        let mut device = Device {
            connection: Connection::new(tls, 1 << 20),
        };
        let connect = Packet::Connect(Connect {
            clean_session: false,
            keep_alive: 60,
            client_id: MqttStr::try_from(device_id).unwrap(),
            will: None,
            credentials: Some(Credentials {
                username: MqttStr::try_from(format!("{HOST}/{device_id}/?api-version=2021-04-12"))
                    .unwrap(),
                password: Some(Password::new(Bytes::from(password.to_owned()))),
            }),
        });
        device
            .connection
            .write_packet(&connect)
            .await
            .expect("send CONNECT");
        match device.recv().await {
            Some(Packet::ConnAck(ConnAck { code, .. })) => (device, code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device's MQTT connection over TLS, speaking through the bridge's own codec.
pub struct Device {
    connection: Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
}

impl Device {
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(Duration::from_secs(30), self.connection.read_packet())
            .await
            .expect("an answer within 30s")
            .ok()
            .flatten()
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish_and_wait_for_puback(&mut self, topic: &str, payload: &[u8]) {
        let publish = Packet::Publish(Publish {
            topic: TopicName::try_from(topic).unwrap(),
            qos: PublishQos::AtLeastOnce {
                packet_id: PacketId::new(7).unwrap(),
                dup: false,
            },
            retain: false,
            payload: Bytes::copy_from_slice(payload),
        });
        self.connection
            .write_packet(&publish)
            .await
            .expect("send PUBLISH");
        match self.recv().await {
            Some(Packet::PubAck(PubAck { packet_id })) => {
                assert_eq!(packet_id, PacketId::new(7).unwrap())
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

#[test]
fn a_device_created_by_an_operator_sends_telemetry_over_tls_and_it_is_stored() {
    // Arrange: an operator creates the device and reads its credentials.
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let created = operator.put(
        "/api/devices/thermostat-1",
        json!({"displayName": "Thermostat 1"}),
    );
    assert!(matches!(created.status, 200 | 201), "{}", created.body);
    let credentials = operator.get("/api/devices/thermostat-1/credentials");
    assert_eq!(credentials.status, 200, "{}", credentials.body);
    let key = credentials.json()["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a primary key")
        .to_owned();
    let key = SymmetricKey::parse(&key).expect("a valid key");
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = generate_token(
        &format!("{HOST}/devices/thermostat-1"),
        &key,
        expiry,
        None,
        SrForm::Encoded,
    );
    let bridge = gyre.start_bridge();

    // Act: the device connects over TLS and publishes one QoS 1 message.
    let payload = br#"{"temp": 21.5}"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut device, code) = bridge.connect("thermostat-1", &token).await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        device
            .publish_and_wait_for_puback(
                "devices/thermostat-1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8",
                payload,
            )
            .await;
    });

    // Assert: acknowledged means committed, so the message is in the database now.
    let db = Database::open(gyre.database_path()).expect("open the state database");
    let stored: Vec<(String, Vec<u8>)> = db
        .prepare(
            "SELECT device_id, body FROM telemetry_inbox UNION ALL SELECT device_id, body FROM telemetry",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, vec![("thermostat-1".to_owned(), payload.to_vec())]);
}
