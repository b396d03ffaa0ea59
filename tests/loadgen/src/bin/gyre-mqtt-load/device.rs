//! One simulated device: its identity (id, SAS token), its connection (TCP or TLS), and what it
//! does once connected (publish QoS 1 telemetry with a window of outstanding PUBACKs, or stay
//! idle with PINGREQs, answering direct methods and counting desired-property pushes if it
//! subscribed to them).
//!
//! Devices authenticate as the official SDKs do (reference §2): client id = device id, user name
//! `{host}/{deviceId}/?api-version=2021-04-12`, password a SAS token for `{host}/devices/{id}`
//! signed with the device key derived from the enrollment group key. A broker that ignores
//! credentials (an anonymous mosquitto) gets the same packets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use gyre_domain::enrollment::{SymmetricKey, SymmetricKeys};
use gyre_domain::mqtt::{generate_token, SrForm};
use gyre_ingest_bridge::codec::{
    ConnAck, Connect, ConnectReturnCode, Credentials, MqttStr, Packet, PacketId, Password, PubAck,
    Publish, PublishQos, QoS, Subscribe, SubscribeFilter, TopicFilter, TopicName,
};
use gyre_ingest_bridge::connection::Connection;
use gyre_loadgen::histogram::Histogram;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_rustls::rustls;

/// The api-version the Python and Node SDKs send in the user name.
const API_VERSION: &str = "2021-04-12";
/// The property bag the SDKs append for a JSON message (`$.ct`, `$.ce`), percent-encoded.
const JSON_PROPERTY_BAG: &str = "%24.ct=application%2Fjson&%24.ce=utf-8";
/// The largest packet the device accepts from the server (it only receives acks).
const MAX_INCOMING_PACKET: usize = 64 * 1024;
/// What a responding device subscribes to (reference §4 and §6), at QoS 0 as the Node SDK does.
const DOWNLINK_FILTERS: [&str; 2] = [
    "$iothub/methods/POST/#",
    "$iothub/twin/PATCH/properties/desired/#",
];
const METHOD_TOPIC_PREFIX: &str = "$iothub/methods/POST/";
const DESIRED_TOPIC_PREFIX: &str = "$iothub/twin/PATCH/properties/desired/";
/// Connect, TLS handshake and CONNACK must fit in this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Any byte stream a device can speak MQTT over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where and how devices connect.
pub struct Target {
    pub addr: std::net::SocketAddr,
    /// `Some`: TLS, verifying the server certificate against this name.
    pub tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    /// The host name in user names and SAS resources (what the device would dial).
    pub host_name: String,
    pub keep_alive_secs: u16,
}

impl Target {
    /// A TLS connector trusting only the certificates in the PEM file `ca`.
    pub fn tls_connector(ca: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("a PEM certificate in {}", ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a CA certificate in {}", ca.display()))?;
        }
        if roots.is_empty() {
            bail!("no certificate in {}", ca.display());
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// A device's identity and credentials.
pub struct Identity {
    pub device_id: String,
    pub username: String,
    pub password: String,
}

impl Identity {
    /// `device_id` with a SAS token valid for an hour, signed with the key derived from the
    /// group's primary key, as a device provisioned through that group would hold it.
    pub fn derived(device_id: String, group_key: &SymmetricKey, host_name: &str) -> Identity {
        let group_keys = SymmetricKeys {
            primary: group_key.clone(),
            secondary: group_key.clone(),
        };
        let device_key = group_keys.derive_for_device(&device_id).primary;
        Identity::new(device_id, &device_key, host_name)
    }

    /// `device_id` with a SAS token valid for an hour, signed with `device_key`.
    pub fn new(device_id: String, device_key: &SymmetricKey, host_name: &str) -> Identity {
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
            + 3600;
        let password = generate_token(
            &format!("{host_name}/devices/{device_id}"),
            device_key,
            expiry,
            None,
            SrForm::Encoded,
        );
        Identity {
            username: format!("{host_name}/{device_id}/?api-version={API_VERSION}"),
            device_id,
            password,
        }
    }
}

/// A connected device.
pub struct Device {
    pub device_id: String,
    connection: Connection<Box<dyn Stream>>,
}

impl Device {
    /// TCP (and TLS) connect, CONNECT, and a CONNACK that accepts, within `CONNECT_TIMEOUT`.
    pub async fn connect(target: &Target, identity: Identity) -> anyhow::Result<Device> {
        timeout(CONNECT_TIMEOUT, Device::connect_unbounded(target, identity))
            .await
            .with_context(|| format!("no CONNACK within {CONNECT_TIMEOUT:?}"))?
    }

    async fn connect_unbounded(target: &Target, identity: Identity) -> anyhow::Result<Device> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &target.tls {
            Some((connector, server_name)) => Box::new(
                connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            ),
            None => Box::new(tcp),
        };
        let mut connection = Connection::new(stream, MAX_INCOMING_PACKET);
        let connect = Packet::Connect(Connect {
            clean_session: true,
            keep_alive: target.keep_alive_secs,
            client_id: MqttStr::try_from(identity.device_id.as_str())?,
            will: None,
            credentials: Some(Credentials {
                username: MqttStr::try_from(identity.username)?,
                password: Some(Password::new(Bytes::from(identity.password))),
            }),
        });
        connection
            .write_packet(&connect)
            .await
            .context("sending CONNECT")?;
        match connection.read_packet().await.context("reading CONNACK")? {
            Some(Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Accepted,
                ..
            })) => Ok(Device {
                device_id: identity.device_id,
                connection,
            }),
            Some(Packet::ConnAck(ConnAck { code, .. })) => bail!("CONNACK refused: {code:?}"),
            Some(other) => bail!("expected CONNACK, got {other:?}"),
            None => bail!("closed before CONNACK"),
        }
    }

    /// Subscribes to direct methods and desired-property pushes and waits for the SUBACK.
    pub async fn subscribe_downlink(&mut self) -> anyhow::Result<()> {
        let filters = DOWNLINK_FILTERS
            .iter()
            .map(|filter| {
                Ok(SubscribeFilter {
                    filter: TopicFilter::try_from(*filter)?,
                    qos: QoS::AtMostOnce,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let packet_id = PacketId::new(1).expect("not 0");
        let subscribe = Subscribe::new(packet_id, filters)?;
        self.connection
            .write_packet(&Packet::Subscribe(subscribe))
            .await?;
        match timeout(CONNECT_TIMEOUT, self.connection.read_packet()).await {
            Ok(Ok(Some(Packet::SubAck(_)))) => Ok(()),
            Ok(Ok(other)) => bail!("expected SUBACK, got {other:?}"),
            Ok(Err(err)) => Err(err.into()),
            Err(_) => bail!("no SUBACK within {CONNECT_TIMEOUT:?}"),
        }
    }

    /// A PUBLISH from the server while waiting: a direct method is answered at once with status
    /// 200 (its payload echoed back), a desired-property push is counted.
    async fn serve_downlink(&mut self, publish: Publish, stats: &Stats) -> anyhow::Result<()> {
        let topic = publish.topic.as_str();
        if let Some(rest) = topic.strip_prefix(METHOD_TOPIC_PREFIX) {
            let rid = rest
                .split_once("?$rid=")
                .map(|(_, rid)| rid)
                .with_context(|| format!("a method call without $rid: {topic}"))?;
            let payload = if publish.payload.is_empty() {
                Bytes::from_static(b"null")
            } else {
                publish.payload
            };
            let response = Packet::Publish(Publish {
                topic: TopicName::try_from(
                    format!("$iothub/methods/res/200/?$rid={rid}").as_str(),
                )?,
                qos: PublishQos::AtMostOnce,
                retain: false,
                payload,
            });
            self.connection.write_packet(&response).await?;
            stats.methods_answered.fetch_add(1, Ordering::Relaxed);
        } else if topic.starts_with(DESIRED_TOPIC_PREFIX) {
            stats.desired_received.fetch_add(1, Ordering::Relaxed);
        } else {
            bail!("unexpected PUBLISH on {topic}");
        }
        Ok(())
    }

    /// Stays connected, sending a PINGREQ every half keep-alive, until `phase` is no longer
    /// `seen`; returns the new phase. Downlink PUBLISHes are served (see `serve_downlink`).
    pub async fn wait(
        &mut self,
        phase: &mut watch::Receiver<Phase>,
        seen: Phase,
        keep_alive: Duration,
        stats: &Stats,
    ) -> anyhow::Result<Phase> {
        let ping_every = keep_alive / 2;
        let mut next_ping = Instant::now() + ping_every;
        loop {
            let current = *phase.borrow_and_update();
            if current != seen {
                return Ok(current);
            }
            tokio::select! {
                changed = phase.changed() => {
                    if changed.is_err() {
                        return Ok(Phase::Close);
                    }
                }
                packet = self.connection.read_packet() => match packet? {
                    Some(Packet::PingResp) => {}
                    Some(Packet::Publish(publish)) => self.serve_downlink(publish, stats).await?,
                    Some(other) => bail!("unexpected {other:?} while idle"),
                    None => bail!("closed by the server while idle"),
                },
                () = sleep_until(next_ping) => {
                    self.connection.write_packet(&Packet::PingReq).await?;
                    next_ping += ping_every;
                }
            }
        }
    }

    /// Publishes QoS 1 telemetry with at most `window` PUBACKs outstanding until `end`, then
    /// waits up to `drain` for the last PUBACKs. Latencies of PUBACKs that arrive inside
    /// [`measure_from`, `end`) are recorded.
    pub async fn publish(
        &mut self,
        plan: &PublishPlan,
        stats: &Stats,
        body: &mut BodyMaker,
    ) -> anyhow::Result<()> {
        let topic = TopicName::try_from(
            format!(
                "devices/{}/messages/events/{JSON_PROPERTY_BAG}",
                self.device_id
            )
            .as_str(),
        )?;
        let mut outstanding: VecDeque<(PacketId, Instant)> = VecDeque::with_capacity(plan.window);
        let mut next_id: u16 = 0;
        let drain_until = plan.end + plan.drain;
        let mut tally = Tally::default();
        let result = loop {
            // Refill the window and send the new PUBLISHes in one write: the load generator
            // shares the machine's cores with the server it measures, so it spends as little
            // of them per message as it can (one syscall per refill, not per message).
            let mut queued = 0u64;
            while outstanding.len() < plan.window && Instant::now() < plan.end {
                next_id = next_id.checked_add(1).unwrap_or(1);
                let packet_id = PacketId::new(next_id).expect("never 0");
                let publish = Packet::Publish(Publish {
                    topic: topic.clone(),
                    qos: PublishQos::AtLeastOnce {
                        packet_id,
                        dup: false,
                    },
                    retain: false,
                    payload: body.next(),
                });
                self.connection.queue(&publish)?;
                queued += 1;
                outstanding.push_back((packet_id, Instant::now()));
            }
            if queued > 0 {
                self.connection.flush_queued().await?;
                stats.published.fetch_add(queued, Ordering::Relaxed);
            }
            if outstanding.is_empty() {
                break Ok(());
            }
            let packet = match timeout_at(drain_until, self.connection.read_packet()).await {
                Ok(packet) => packet?,
                Err(_elapsed) => break Err(anyhow::anyhow!("PUBACKs missing after the drain")),
            };
            // Every PUBACK that came in the same read before refilling the window: the server
            // acknowledges a batch's messages together.
            let acked_at = Instant::now();
            let measured = acked_at >= plan.measure_from && acked_at < plan.end;
            let mut next = packet;
            let failed = loop {
                match next {
                    Some(Packet::PubAck(PubAck { packet_id })) => {
                        let Some(idx) = outstanding.iter().position(|(id, _)| *id == packet_id)
                        else {
                            break Some(anyhow::anyhow!(
                                "PUBACK for unknown packet id {packet_id:?}"
                            ));
                        };
                        let (_, sent_at) = outstanding.remove(idx).expect("a found index");
                        tally.record(acked_at.duration_since(sent_at), measured, stats);
                    }
                    Some(Packet::PingResp) => {}
                    Some(other) => break Some(anyhow::anyhow!("unexpected {other:?}")),
                    None => break Some(anyhow::anyhow!("closed by the server")),
                }
                match self.connection.buffered_packet() {
                    Ok(Some(packet)) => next = Some(packet),
                    Ok(None) => break None,
                    Err(err) => break Some(err.into()),
                }
            };
            if let Some(err) = failed {
                break Err(err);
            }
        };
        tally.flush(stats);
        if result.is_err() {
            stats
                .unacked
                .fetch_add(outstanding.len() as u64, Ordering::Relaxed);
        }
        result
    }

    /// DISCONNECT, then close the stream.
    pub async fn disconnect(mut self) {
        let _ = self.connection.write_packet(&Packet::Disconnect).await;
        self.connection.shutdown().await;
    }
}

/// What every device is told to do, through a `watch` channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connected; waiting for the others (keep-alive only).
    Waiting,
    Publish(PublishPlan),
    /// Disconnect and end.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishPlan {
    pub window: usize,
    /// Start of the measured window (the warm-up ends).
    pub measure_from: Instant,
    /// End of the measured window; no PUBLISH is sent after it.
    pub end: Instant,
    /// How long outstanding PUBACKs are awaited after `end`.
    pub drain: Duration,
}

/// Counters shared by every device of a run.
#[derive(Default)]
pub struct Stats {
    pub published: AtomicU64,
    /// PUBACKs received inside the measured window.
    pub acked: AtomicU64,
    /// PUBACKs received at any time (warm-up and drain included): what the store must hold.
    pub acked_total: AtomicU64,
    /// Messages still unacknowledged on a connection that failed.
    pub unacked: AtomicU64,
    /// Publish → PUBACK, nanoseconds, inside the measured window. One histogram for all
    /// devices: 10,000 of them at 64 KiB each would be 640 MB.
    pub latencies: Mutex<Histogram>,
    /// Direct-method calls answered (`respond`).
    pub methods_answered: AtomicU64,
    /// Desired-property pushes received (`respond`).
    pub desired_received: AtomicU64,
}

/// One device's PUBACKs not yet added to the shared [`Stats`]: added in bulk, so devices on
/// different threads do not contend for the counters' cache lines and the histogram's lock on
/// every message.
#[derive(Default)]
struct Tally {
    acked_total: u64,
    acked: u64,
    /// Latencies (nanoseconds) of PUBACKs inside the measured window.
    latencies: Vec<u64>,
}

impl Tally {
    /// PUBACKs tallied before they are added to [`Stats`]: a few milliseconds of one device's
    /// traffic, so the shared totals lag little behind (the drain polls them).
    const FLUSH_EVERY: u64 = 256;

    fn record(&mut self, latency: Duration, measured: bool, stats: &Stats) {
        self.acked_total += 1;
        if measured {
            self.acked += 1;
            self.latencies
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
        if self.acked_total >= Self::FLUSH_EVERY {
            self.flush(stats);
        }
    }

    fn flush(&mut self, stats: &Stats) {
        stats
            .acked_total
            .fetch_add(std::mem::take(&mut self.acked_total), Ordering::Relaxed);
        stats
            .acked
            .fetch_add(std::mem::take(&mut self.acked), Ordering::Relaxed);
        if !self.latencies.is_empty() {
            let mut histogram = stats.latencies.lock().expect("latency lock poisoned");
            for latency in self.latencies.drain(..) {
                histogram.record(latency);
            }
        }
    }
}

/// ~100-byte JSON telemetry bodies (six fields, as a real sensor's) that differ from message
/// to message.
pub struct BodyMaker {
    seq: u64,
}

impl BodyMaker {
    pub fn new(device_idx: usize) -> BodyMaker {
        BodyMaker {
            seq: device_idx as u64 * 1_000_003,
        }
    }

    pub fn next(&mut self) -> Bytes {
        self.seq += 1;
        let seq = self.seq;
        let temperature = 15.0 + (seq % 1000) as f64 / 100.0;
        let humidity = 30.0 + (seq % 400) as f64 / 10.0;
        Bytes::from(format!(
            "{{\"temperature\":{temperature:.2},\"humidity\":{humidity:.1},\"pressure\":1013.25,\
             \"battery\":87,\"status\":\"nominal\",\"seq\":{seq}}}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_about_a_hundred_bytes() {
        let mut maker = BodyMaker::new(9_999);
        for _ in 0..3 {
            let body = maker.next();
            assert!((95..=110).contains(&body.len()), "{} bytes", body.len());
            let text = std::str::from_utf8(&body).unwrap();
            // Valid JSON, so the server stores its fields (not a raw payload).
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(value.as_object().unwrap().len(), 6, "{text}");
            assert!(
                text.starts_with("{\"temperature\":") && text.ends_with('}'),
                "{text}"
            );
        }
    }

    #[test]
    fn identities_are_the_sdks_user_name_and_a_sas_token_for_the_device() {
        let group_key =
            SymmetricKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let identity = Identity::derived("bench-00042".to_owned(), &group_key, "localhost");
        assert_eq!(identity.device_id, "bench-00042");
        assert_eq!(
            identity.username,
            "localhost/bench-00042/?api-version=2021-04-12"
        );
        assert!(
            identity
                .password
                .starts_with("SharedAccessSignature sr=localhost%2Fdevices%2Fbench-00042&sig="),
            "{}",
            identity.password
        );
    }
}
