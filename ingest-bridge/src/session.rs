//! One device's session, from CONNECT to close: authentication, keep-alive, QoS 0/1
//! acknowledgements, subscriptions, session takeover and token expiry.
//!
//! The state machine, in the order a connection meets it:
//! 1. The first packet must be a CONNECT, within `connect_timeout`. The username says which
//!    endpoint: the hub (the SAS token is verified ([`SasToken::authenticate`]) against the keys
//!    the registry returns for the device) or DPS (verified against each enrollment the
//!    registration id may use; the one that matched is what the registration goes through).
//!    Every refusal (no or bad credentials, unknown or blocked device, bad signature, expired
//!    token) is CONNACK 5 then close; a registry that cannot answer is CONNACK 3 (server
//!    unavailable), which the SDKs retry.
//! 2. Accepted: the session registers under (endpoint kind, client id), closing an older session
//!    with the same key (takeover), answers CONNACK 0 and, for the hub, sends a `connected`
//!    event (a DPS connection is not the device being online).
//! 3. Then, until one of them ends it: packets from the device; the keep-alive deadline (1.5 times
//!    the client's value after the last packet); the token's expiry; a takeover; shutdown.
//!
//! Acknowledgements: a QoS 1 telemetry PUBLISH goes to the batcher and its PUBACK waits for the
//! batch's commit. PUBACKs leave in the order the PUBLISHes came (MQTT-4.6.0-2), so only the
//! oldest pending acknowledgement is awaited. A failed one closes the connection: the device
//! resends what it did not see acknowledged once it reconnects. At most `max_inflight`
//! acknowledgements wait; beyond that the session stops reading (backpressure).
//!
//! Responses to the device (DPS answers) go out only on topics it subscribed to (reference
//! §8.11), at QoS 0.
//!
//! Downlink (`downlink`): on its first subscription to a downlink topic a hub session makes its
//! channel and puts the sender, with its subscription bits, in the live-session map, after the
//! SUBACK is written (nothing reaches a device before its SUBACK). The loop publishes what comes
//! on it: desired patches and method calls at QoS 0, C2D messages at QoS 1 with the session's
//! own packet ids; the device's PUBACKs settle those, and its `$iothub/methods/res/` publishes
//! answer the waiting call. Registry calls for C2D run in spawned tasks.
//!
//! Not owned here: bytes (`connection`), topic meaning (`router`), batching (`batcher`), the
//! provisioning conversation (`dps`).
//! Sessions keep no state across connections (CONNACK's session present is always 0; the SDKs
//! subscribe again after every connect).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gyre_domain::bridge::MethodResult;
use gyre_domain::enrollment::SymmetricKey;
use gyre_domain::ingest::{ConnectivityEvent, ConnectivityKind};
use gyre_domain::mqtt::{
    authorize_subscription, keep_alive_timeout_millis, CloudTopic, Endpoint, EndpointKind,
    RequestId, SasToken, SubscriptionFilter,
};
use gyre_domain::time::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::batcher::{AckReceiver, BatcherHandle};
use crate::codec::{
    ConnAck, Connect, ConnectReturnCode, MqttStr, Packet, PacketId, PubAck, Publish, PublishQos,
    QoS, SubAck, SubAckCode, Subscribe, TopicName, UnsubAck,
};
use crate::connection::{Connection, ConnectionError};
use crate::downlink::{self, Downlink, PendingMethods, SessionDownlink};
use crate::dps::{DpsIdentity, Provisioning, Reply};
use crate::registry::Registry;
use crate::router::{self, RouteError, Routed};
use crate::twin;

/// Per-session limits. No `Default`: the binary's config spells these out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// QoS 1 messages awaiting their commit per session before the session stops reading.
    pub max_inflight: usize,
}

/// What every session shares. One per server, behind an `Arc`.
#[derive(Debug)]
pub struct Shared {
    pub batcher: BatcherHandle,
    pub registry: Arc<Registry>,
    pub sessions: Arc<Sessions>,
    pub limits: SessionLimits,
    /// The host name devices are told to connect to after provisioning (DPS `assignedHub`).
    pub hub_host_name: String,
}

/// A session's key: the hub and DPS may share a client id (reference §8.7).
type SessionKey = (EndpointKind, String);

/// Why a session is told to close by someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    /// A newer connection with the same key.
    TakenOver,
    /// The device may no longer connect: blocked, deleted, or its key revoked.
    Revoked,
}

/// A live session as the map holds it.
#[derive(Debug)]
struct Live {
    serial: u64,
    close: oneshot::Sender<CloseReason>,
    /// A hub session: a hash of the key its token was verified with, to recheck it later.
    key_hash: Option<u64>,
    /// The session's downlink channel, once it subscribed to a downlink topic.
    downlink: Option<mpsc::Sender<Downlink>>,
    /// Which downlink topics it subscribed to (`downlink::mask`).
    subscribed: u8,
}

/// The live sessions by (endpoint kind, client id): the hub and DPS may share a client id, so
/// the kind is part of the key (reference §8.7). One per bridge, shared by its listeners (a
/// device moving from TCP to TLS takes its session over) and by the revocation check.
#[derive(Debug, Default)]
pub struct Sessions {
    /// A std `Mutex`: nothing awaits while it is held.
    live: Mutex<HashMap<SessionKey, Live>>,
    next_serial: AtomicU64,
    /// Woken when a session's downlink subscriptions change: method calls wait on it for their
    /// device to connect and subscribe.
    subscriptions_changed: Notify,
    /// Direct-method calls waiting for their answer.
    pub methods: PendingMethods,
}

impl Sessions {
    /// Takes `key` for a new session, closing the session that held it.
    fn register(self: &Arc<Self>, key: SessionKey, key_hash: Option<u64>) -> Registration {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = oneshot::channel();
        let previous = self.live.lock().expect("sessions lock poisoned").insert(
            key.clone(),
            Live {
                serial,
                close,
                key_hash,
                downlink: None,
                subscribed: 0,
            },
        );
        if let Some(previous) = previous {
            let _ = previous.close.send(CloseReason::TakenOver);
        }
        Registration {
            sessions: Arc::clone(self),
            key,
            serial,
            closed,
        }
    }

    /// The devices with a hub session now.
    pub fn hub_devices(&self) -> Vec<String> {
        let live = self.live.lock().expect("sessions lock poisoned");
        live.keys()
            .filter(|(kind, _)| *kind == EndpointKind::Hub)
            .map(|(_, client_id)| client_id.clone())
            .collect()
    }

    /// Whether `device_id` has a hub session, and the hash of the key it was admitted with.
    pub fn hub_key_hash(&self, device_id: &str) -> Option<u64> {
        let live = self.live.lock().expect("sessions lock poisoned");
        live.get(&(EndpointKind::Hub, device_id.to_owned()))
            .and_then(|session| session.key_hash)
    }

    /// Closes the hub session of `device_id`, if any: it may no longer connect.
    pub fn revoke(&self, device_id: &str) -> bool {
        let removed = self
            .live
            .lock()
            .expect("sessions lock poisoned")
            .remove(&(EndpointKind::Hub, device_id.to_owned()));
        match removed {
            Some(session) => session.close.send(CloseReason::Revoked).is_ok(),
            None => false,
        }
    }

    /// The downlink of `device_id`'s hub session if it subscribed to every topic in `need`
    /// (`downlink::DESIRED`...), with the session's serial.
    pub fn downlink(&self, device_id: &str, need: u8) -> Option<(u64, mpsc::Sender<Downlink>)> {
        let live = self.live.lock().expect("sessions lock poisoned");
        let session = live.get(&(EndpointKind::Hub, device_id.to_owned()))?;
        if session.subscribed & need != need {
            return None;
        }
        Some((session.serial, session.downlink.clone()?))
    }

    /// [`Sessions::downlink`], waiting until `deadline` for the device to connect and subscribe.
    pub async fn wait_for_downlink(
        &self,
        device_id: &str,
        need: u8,
        deadline: Instant,
    ) -> Option<(u64, mpsc::Sender<Downlink>)> {
        loop {
            // Registered before the check, so a change between the check and the wait wakes it.
            let changed = self.subscriptions_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = self.downlink(device_id, need) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Session `serial` of `key` subscribed to the downlink topics `subscribed` (bits).
    fn set_downlink(
        &self,
        key: &SessionKey,
        serial: u64,
        downlink: &mpsc::Sender<Downlink>,
        subscribed: u8,
    ) {
        let mut live = self.live.lock().expect("sessions lock poisoned");
        if let Some(session) = live.get_mut(key).filter(|session| session.serial == serial) {
            session.subscribed = subscribed;
            if session.downlink.is_none() {
                session.downlink = Some(downlink.clone());
            }
        }
        drop(live);
        self.subscriptions_changed.notify_waiters();
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.live.lock().expect("sessions lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's hold on its key; dropping it frees the key unless a newer session took it.
struct Registration {
    sessions: Arc<Sessions>,
    key: SessionKey,
    serial: u64,
    closed: oneshot::Receiver<CloseReason>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.sessions.live.lock().expect("sessions lock poisoned");
        if live
            .get(&self.key)
            .is_some_and(|session| session.serial == self.serial)
        {
            live.remove(&self.key);
        }
        drop(live);
        self.sessions.methods.session_ended(self.serial);
    }
}

/// Why a session ended. Logged once by the server; none of them affects other connections.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("the device disconnected")]
    Disconnected,
    #[error("the device closed the connection")]
    Closed,
    #[error("connection refused with CONNACK {0:?}")]
    Refused(ConnectReturnCode),
    #[error("no CONNECT within the connect timeout")]
    ConnectTimeout,
    #[error("keep-alive expired")]
    KeepAliveExpired,
    #[error("the SAS token expired")]
    TokenExpired,
    #[error("a newer connection took the session over")]
    TakenOver,
    #[error("the device may no longer connect (blocked, deleted or its key revoked)")]
    Revoked,
    #[error("the bridge is shutting down")]
    Shutdown,
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("publish refused")]
    Route(#[from] RouteError),
    #[error("a message was not committed: {0}")]
    NotCommitted(String),
    #[error("the batcher has stopped")]
    BatcherClosed,
}

impl SessionEnd {
    /// Ends that are the device's or the operator's doing, not a fault.
    pub fn is_normal(&self) -> bool {
        matches!(
            self,
            SessionEnd::Disconnected
                | SessionEnd::Closed
                | SessionEnd::TakenOver
                | SessionEnd::Revoked
                | SessionEnd::Shutdown
        )
    }
}

/// The authenticated identity of an accepted CONNECT.
struct Admitted {
    endpoint: Endpoint,
    /// The device id, or the registration id of a DPS connection.
    device_id: String,
    keep_alive: u16,
    token_expiry: Timestamp,
    /// Set for a DPS connection.
    dps: Option<DpsIdentity>,
    /// A hub connection: a hash of the key that verified the token (`key_hash`).
    key_hash: Option<u64>,
}

/// Runs one connection to its end and says why it ended.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut connection: Connection<S>,
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<()>,
) -> SessionEnd {
    // Boxed, like every rare path that awaits the registry: a future is as large as its largest
    // state, and the session future lives as long as the connection (memory per idle
    // connection is a target), so the CONNECT and its checks must not stay in it.
    let admitted = match Box::pin(connect(&mut connection, shared)).await {
        Ok(admitted) => admitted,
        Err(end) => return end,
    };
    tracing::Span::current().record("device_id", admitted.device_id.as_str());
    let mut registration = shared.sessions.register(
        (admitted.endpoint.kind(), admitted.endpoint.client_id()),
        admitted.key_hash,
    );
    let accepted = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::Accepted,
    });
    if let Err(err) = connection.write_packet(&accepted).await {
        return err.into();
    }
    let is_hub = admitted.dps.is_none();
    if is_hub
        && Box::pin(
            shared
                .batcher
                .event(event(&admitted.device_id, ConnectivityKind::Connected)),
        )
        .await
        .is_err()
    {
        return SessionEnd::BatcherClosed;
    }
    tracing::info!(client_id = %admitted.endpoint.client_id(), "device connected");

    let end = serve(
        &mut connection,
        shared,
        &admitted,
        &mut registration,
        shutdown,
    )
    .await;
    // After a takeover the device is still connected, through the newer session: a
    // `disconnected` event now would land after that session's `connected`.
    if is_hub && !matches!(end, SessionEnd::TakenOver) {
        let _ = Box::pin(
            shared
                .batcher
                .event(event(&admitted.device_id, ConnectivityKind::Disconnected)),
        )
        .await;
    }
    connection.shutdown().await;
    end
}

/// Reads the CONNECT (within the connect timeout) and authenticates it; a refusal is answered
/// with its CONNACK here.
async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    shared: &Shared,
) -> Result<Admitted, SessionEnd> {
    let connect =
        match tokio::time::timeout(shared.limits.connect_timeout, connection.read_packet()).await {
            Err(_elapsed) => return Err(SessionEnd::ConnectTimeout),
            Ok(Err(ConnectionError::Protocol(err))) => {
                // An unsupported protocol level or an empty client id gets its CONNACK first.
                if let Some(code) = err.connack_code() {
                    refuse_with(connection, code).await;
                }
                return Err(ConnectionError::Protocol(err).into());
            }
            Ok(Err(err)) => return Err(err.into()),
            Ok(Ok(None)) => return Err(SessionEnd::Closed),
            Ok(Ok(Some(Packet::Connect(connect)))) => connect,
            // MQTT-3.1.0-1: the first packet must be CONNECT.
            Ok(Ok(Some(_))) => return Err(SessionEnd::Protocol("first packet is not CONNECT")),
        };
    match admit(&connect, &shared.registry).await {
        Ok(admitted) => Ok(admitted),
        Err(code) => {
            refuse_with(connection, code).await;
            Err(SessionEnd::Refused(code))
        }
    }
}

/// Answers CONNACK `code` and closes the write side.
async fn refuse_with<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    code: ConnectReturnCode,
) {
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        code,
    });
    let _ = connection.write_packet(&connack).await;
    connection.shutdown().await;
}

/// Authenticates a CONNECT; the refusal's return code otherwise.
async fn admit(connect: &Connect, registry: &Registry) -> Result<Admitted, ConnectReturnCode> {
    let refuse = |reason: &dyn std::fmt::Display| {
        tracing::info!(client_id = %connect.client_id, cause = %reason, "connection refused");
        ConnectReturnCode::NotAuthorized
    };
    let Some(credentials) = &connect.credentials else {
        return Err(refuse(&"no user name"));
    };
    let Some(password) = &credentials.password else {
        return Err(refuse(&"no password"));
    };
    let endpoint = Endpoint::parse(connect.client_id.as_str(), credentials.username.as_str())
        .map_err(|err| refuse(&err))?;
    let password =
        std::str::from_utf8(password.as_bytes()).map_err(|_| refuse(&"password is not UTF-8"))?;
    let (device_id, dps, candidates) = match &endpoint {
        Endpoint::Hub { device_id, .. } => {
            let device = match registry.connection(device_id.as_str()).await {
                Ok(Some(device)) => device,
                Ok(None) => return Err(refuse(&"unknown device")),
                Err(err) => return Err(unavailable(&err)),
            };
            if !device.may_connect {
                return Err(refuse(&"device may not connect (blocked or not approved)"));
            }
            (device.device_id, None, vec![(None, device.keys)])
        }
        Endpoint::Dps {
            id_scope,
            registration_id,
            ..
        } => {
            let found = match registry
                .registration_candidates(id_scope.as_str(), registration_id.as_str())
                .await
            {
                Ok(Some(found)) => found,
                Ok(None) => return Err(refuse(&"not this application's ID scope")),
                Err(err) => return Err(unavailable(&err)),
            };
            let candidates = found
                .candidates
                .into_iter()
                .map(|candidate| (Some(candidate.enrollment), candidate.keys))
                .collect();
            (
                registration_id.as_str().to_owned(),
                Some(id_scope.as_str().to_owned()),
                candidates,
            )
        }
    };
    // The first enrollment whose keys verify the token; the last error says why none did.
    let mut refusal: Option<String> = None;
    // Key by key, so the session knows which one it stands on (see `revocation`).
    let each_key = candidates
        .into_iter()
        .flat_map(|(enrollment, keys)| keys.into_iter().map(move |key| (enrollment.clone(), key)));
    for (enrollment, key) in each_key {
        let Ok(parsed) = SymmetricKey::parse(&key) else {
            continue;
        };
        match SasToken::authenticate(password, &endpoint, &[&parsed], now()) {
            Ok(token) => {
                let dps = match (dps, enrollment) {
                    (Some(id_scope), Some(enrollment)) => Some(DpsIdentity {
                        id_scope,
                        registration_id: device_id.clone(),
                        enrollment,
                    }),
                    _ => None,
                };
                return Ok(Admitted {
                    endpoint,
                    device_id,
                    keep_alive: connect.keep_alive,
                    token_expiry: token.expiry(),
                    key_hash: dps.is_none().then(|| key_hash(&key)),
                    dps,
                });
            }
            Err(err) => refusal = Some(err.to_string()),
        }
    }
    Err(refuse(&refusal.unwrap_or_else(|| {
        "no enrollment or keys for this id".to_owned()
    })))
}

/// A stable fingerprint of a key, so sessions need not hold the key itself. Not a security
/// boundary: it only tells whether the key a session was admitted with is still accepted.
pub fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// A registry that cannot answer: CONNACK 3 (server unavailable), which the SDKs retry.
fn unavailable(err: &crate::registry::RegistryError) -> ConnectReturnCode {
    tracing::warn!(cause = %err, "registry unavailable; refusing with CONNACK 3");
    ConnectReturnCode::ServerUnavailable
}

/// The accepted session's loop; returns why it ended.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    shared: &Shared,
    admitted: &Admitted,
    registration: &mut Registration,
    shutdown: &mut watch::Receiver<()>,
) -> SessionEnd {
    let keep_alive = keep_alive_timeout_millis(admitted.keep_alive).map(Duration::from_millis);
    // When the last packet came. The keep-alive timer moves only when it fires, to that time
    // plus the timeout: moving it at every packet costs a timer-wheel update per message.
    let mut last_packet = Instant::now();
    let keep_alive_timer = tokio::time::sleep(keep_alive.unwrap_or(Duration::MAX));
    tokio::pin!(keep_alive_timer);
    let token_timer = tokio::time::sleep(Duration::from_millis(
        u64::try_from(admitted.token_expiry.unix_millis() - now().unix_millis()).unwrap_or(0),
    ));
    tokio::pin!(token_timer);
    // QoS 1 PUBLISHes awaiting their commit, oldest first.
    let mut pending: VecDeque<(PacketId, AckReceiver)> = VecDeque::new();
    let max_inflight = shared.limits.max_inflight.max(1);
    // Filters granted on this connection: replies go only where the device listens.
    let mut subscribed: Vec<SubscriptionFilter> = Vec::new();
    let mut provisioning = Provisioning::default();
    // Made on the first downlink subscription (boxed: one pointer in an idle session).
    let mut downlink: Option<Box<SessionDownlink>> = None;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return SessionEnd::Shutdown,
            reason = &mut registration.closed => return match reason {
                Ok(CloseReason::Revoked) => SessionEnd::Revoked,
                Ok(CloseReason::TakenOver) | Err(_) => SessionEnd::TakenOver,
            },
            () = &mut token_timer => return SessionEnd::TokenExpired,
            () = &mut keep_alive_timer, if keep_alive.is_some() => {
                let deadline = last_packet + keep_alive.unwrap_or_default();
                if deadline <= Instant::now() {
                    return SessionEnd::KeepAliveExpired;
                }
                keep_alive_timer.as_mut().reset(deadline);
            }
            Some(message) = next_downlink(&mut downlink) => {
                let state = downlink.as_mut().expect("a message came, so the downlink exists");
                for packet in on_downlink(message, state, &subscribed, admitted, shared) {
                    if let Err(err) = connection.queue(&packet) {
                        return err.into();
                    }
                }
                if let Err(err) = connection.flush_queued().await {
                    return err.into();
                }
            }
            outcome = oldest(&mut pending) => {
                let (packet_id, _) = pending.pop_front().expect("oldest resolved, so pending is not empty");
                match outcome {
                    Ok(Ok(())) => {
                        // This PUBACK and every later one already settled (a batch settles many
                        // at once) leave in one write.
                        let mut settled = Some(packet_id);
                        while let Some(packet_id) = settled.take() {
                            if let Err(err) = connection.queue(&Packet::PubAck(PubAck { packet_id })) {
                                return err.into();
                            }
                            if let Some((_, receiver)) = pending.front_mut() {
                                if let Ok(Ok(())) = receiver.try_recv() {
                                    settled = pending.pop_front().map(|(next, _)| next);
                                }
                            }
                        }
                        if let Err(err) = connection.flush_queued().await {
                            return err.into();
                        }
                    }
                    Ok(Err(failed)) => return SessionEnd::NotCommitted(failed.to_string()),
                    Err(_dropped) => return SessionEnd::NotCommitted("acknowledgement dropped".to_owned()),
                }
            }
            packet = connection.read_packet(), if pending.len() < max_inflight => {
                let packet = match packet {
                    Ok(Some(packet)) => packet,
                    Ok(None) => return SessionEnd::Closed,
                    Err(err) => return err.into(),
                };
                last_packet = Instant::now();
                let mut resubscribed = false;
                let reply = match packet {
                    Packet::Publish(publish) => {
                        // Boxed: one small allocation per message keeps the idle session small.
                        match Box::pin(publish_received(publish, admitted, &shared.batcher)).await {
                            Ok(Received::Telemetry(Some(ack))) => {
                                pending.push_back(ack);
                                None
                            }
                            Ok(Received::Telemetry(None)) => None,
                            Ok(Received::Request { packet_id, routed, payload }) => {
                                // Acknowledged before the answer (Python waits for the PUBACK),
                                // and behind earlier acknowledgements if any are pending.
                                if let Some(packet_id) = packet_id {
                                    if pending.is_empty() {
                                        if let Err(err) = connection.write_packet(&Packet::PubAck(PubAck { packet_id })).await {
                                            return err.into();
                                        }
                                    } else {
                                        pending.push_back((packet_id, resolved()));
                                    }
                                }
                                let answer = Box::pin(request(routed, payload, admitted, shared, &mut provisioning, registration.serial)).await;
                                answer.and_then(|answer| deliverable(answer, &subscribed))
                            }
                            Err(end) => return end,
                        }
                    }
                    Packet::Subscribe(subscribe) => {
                        let (suback, granted) = suback(&subscribe, &admitted.endpoint);
                        // At most one of each filter: a device re-subscribing in a loop must
                        // not grow the session.
                        for filter in granted {
                            if !subscribed.contains(&filter) {
                                subscribed.push(filter);
                            }
                        }
                        // After the SUBACK is out (below), so nothing is published before it.
                        resubscribed = true;
                        Some(Packet::SubAck(suback))
                    }
                    Packet::Unsubscribe(unsubscribe) => {
                        subscribed.retain(|filter| {
                            !unsubscribe.filters().iter().any(|gone| SubscriptionFilter::parse(gone.as_str()).as_ref() == Ok(filter))
                        });
                        resubscribed = true;
                        Some(Packet::UnsubAck(UnsubAck { packet_id: unsubscribe.packet_id() }))
                    }
                    Packet::PingReq => Some(Packet::PingResp),
                    Packet::Disconnect => return SessionEnd::Disconnected,
                    // The bridge's QoS 1 PUBLISHes are cloud-to-device messages.
                    Packet::PubAck(PubAck { packet_id }) => {
                        c2d_acknowledged(packet_id, &mut downlink, admitted, shared);
                        None
                    }
                    // MQTT-3.1.0-2.
                    Packet::Connect(_) => return SessionEnd::Protocol("second CONNECT"),
                    Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                        return SessionEnd::Protocol("server-to-client packet from a client")
                    }
                };
                if let Some(reply) = reply {
                    if let Err(err) = connection.write_packet(&reply).await {
                        return err.into();
                    }
                }
                if resubscribed {
                    subscriptions_changed(&mut downlink, &subscribed, admitted, shared, registration);
                }
            }
        }
    }
}

/// What a PUBLISH from the device turned out to be.
enum Received {
    /// Telemetry (or a publish not served yet): the acknowledgement to await for QoS 1.
    Telemetry(Option<(PacketId, AckReceiver)>),
    /// A request the bridge answers itself (DPS, twin).
    Request {
        packet_id: Option<PacketId>,
        routed: Routed,
        payload: bytes::Bytes,
    },
}

/// Handles one PUBLISH.
async fn publish_received(
    publish: Publish,
    admitted: &Admitted,
    batcher: &BatcherHandle,
) -> Result<Received, SessionEnd> {
    let packet_id = match publish.qos {
        PublishQos::AtMostOnce => None,
        PublishQos::AtLeastOnce { packet_id, .. } => Some(packet_id),
        // IoT Hub serves QoS 0 and 1 only, and closes the connection on QoS 2.
        PublishQos::ExactlyOnce { .. } => return Err(SessionEnd::Protocol("QoS 2 publish")),
    };
    let routed = router::route(
        &admitted.endpoint,
        publish.topic.as_str(),
        &publish.payload,
        now().unix_millis(),
    )
    .inspect_err(
        |err| tracing::warn!(topic = %publish.topic, cause = %err, "publish refused; closing"),
    )?;
    let ack = match routed {
        Routed::Telemetry(message) => batcher
            .submit(message)
            .await
            .map_err(|_| SessionEnd::BatcherClosed)?,
        Routed::NotYetServed(what) => {
            tracing::info!(topic = %publish.topic, what, "publish to a topic not served yet; ignored");
            // Acknowledged at once (Python blocks until PUBACK), but behind earlier telemetry.
            resolved()
        }
        routed @ (Routed::DpsRegister { .. }
        | Routed::DpsStatus { .. }
        | Routed::TwinGet { .. }
        | Routed::TwinPatchReported { .. }
        | Routed::MethodResponse { .. }) => {
            return Ok(Received::Request {
                packet_id,
                routed,
                payload: publish.payload,
            })
        }
    };
    // At QoS 0 the message still rides its batch; nobody waits for the outcome.
    Ok(Received::Telemetry(
        packet_id.map(|packet_id| (packet_id, ack)),
    ))
}

/// An acknowledgement that is already settled.
fn resolved() -> AckReceiver {
    let (sender, receiver) = oneshot::channel();
    let _ = sender.send(Ok(()));
    receiver
}

/// Answers a request the bridge serves itself.
async fn request(
    routed: Routed,
    payload: bytes::Bytes,
    admitted: &Admitted,
    shared: &Shared,
    provisioning: &mut Provisioning,
    serial: u64,
) -> Option<Reply> {
    // `router::route` lets DPS topics through only on DPS connections and twin topics only on
    // hub connections.
    let registry = &shared.registry;
    match (routed, &admitted.dps) {
        (Routed::DpsRegister { rid }, Some(identity)) => Some(
            provisioning
                .register(rid, &payload, identity, &shared.hub_host_name, registry)
                .await,
        ),
        (Routed::DpsStatus { rid, operation_id }, Some(_)) => {
            Some(provisioning.status(rid, &operation_id))
        }
        (Routed::TwinGet { rid }, None) => {
            Some(twin::get(rid, &admitted.device_id, registry).await)
        }
        (Routed::TwinPatchReported { rid }, None) => {
            Some(twin::patch_reported(rid, &admitted.device_id, payload, registry).await)
        }
        (Routed::MethodResponse { status, rid }, None) => {
            let result = MethodResult::from_device(status, &payload);
            if !shared.sessions.methods.answer(serial, rid.as_str(), result) {
                tracing::info!(
                    rid = rid.as_str(),
                    status,
                    "method response for no pending call (unknown rid or timed out); ignored"
                );
            }
            None
        }
        _ => None,
    }
}

/// `reply` as a QoS 0 PUBLISH, if the device subscribed to a filter matching its topic.
fn deliverable(reply: Reply, subscribed: &[SubscriptionFilter]) -> Option<Packet> {
    if !subscribed.iter().any(|filter| filter.matches(&reply.topic)) {
        tracing::info!(topic = %reply.topic, "reply dropped: the device did not subscribe to it");
        return None;
    }
    let topic = MqttStr::from_bytes(bytes::Bytes::from(reply.topic.to_string()))
        .ok()
        .and_then(|text| TopicName::new(text).ok())?;
    Some(Packet::Publish(Publish {
        topic,
        qos: PublishQos::AtMostOnce,
        retain: false,
        payload: bytes::Bytes::from(reply.body),
    }))
}

/// Grants each filter the dialect knows and the device may use, at QoS 0 or 1; returns the
/// SUBACK and the filters granted.
fn suback(subscribe: &Subscribe, endpoint: &Endpoint) -> (SubAck, Vec<SubscriptionFilter>) {
    let mut granted = Vec::new();
    let codes = subscribe
        .filters()
        .iter()
        .map(|requested| {
            let allowed = SubscriptionFilter::parse(requested.filter.as_str())
                .map_err(|err| err.to_string())
                .and_then(|filter| {
                    authorize_subscription(endpoint, &filter)
                        .map(|()| filter)
                        .map_err(|err| err.to_string())
                });
            match allowed {
                Ok(filter) => {
                    granted.push(filter);
                    SubAckCode::Granted(requested.qos.min(QoS::AtLeastOnce))
                }
                Err(cause) => {
                    tracing::info!(filter = %requested.filter, %cause, "subscription refused");
                    SubAckCode::Failure
                }
            }
        })
        .collect();
    let suback = SubAck::new(subscribe.packet_id(), codes)
        .expect("one code per filter of a non-empty SUBSCRIBE");
    (suback, granted)
}

/// The next downlink message; never resolves for a session without a downlink. A `poll_fn`
/// rather than an async fn: it is one pointer in the session future, which every idle
/// connection holds.
fn next_downlink(
    downlink: &mut Option<Box<SessionDownlink>>,
) -> impl std::future::Future<Output = Option<Downlink>> + '_ {
    std::future::poll_fn(move |cx| match downlink {
        // The session holds a sender itself, so the channel never closes under it.
        Some(state) => state.receiver.poll_recv(cx),
        None => std::task::Poll::Pending,
    })
}

/// Tells the live-session map what the hub session now listens to, making its downlink on the
/// first downlink subscription; a new C2D subscription fetches the waiting messages.
fn subscriptions_changed(
    downlink: &mut Option<Box<SessionDownlink>>,
    subscribed: &[SubscriptionFilter],
    admitted: &Admitted,
    shared: &Shared,
    registration: &Registration,
) {
    if admitted.dps.is_some() {
        return;
    }
    let bits = downlink::mask(subscribed);
    if bits == 0 && downlink.is_none() {
        return;
    }
    let state = downlink.get_or_insert_with(Box::default);
    shared
        .sessions
        .set_downlink(&registration.key, registration.serial, &state.sender, bits);
    let listening = bits & downlink::C2D != 0;
    let newly = listening && !state.c2d.listening;
    state.c2d.listening = listening;
    if newly && state.c2d.start_fetch() {
        spawn_fetch(state, admitted, shared);
    }
}

fn spawn_fetch(state: &SessionDownlink, admitted: &Admitted, shared: &Shared) {
    tokio::spawn(downlink::fetch(
        Arc::clone(&shared.registry),
        admitted.device_id.clone(),
        state.sender.clone(),
    ));
}

/// What a downlink message puts on the wire: the packets to write, each only if the device
/// subscribed to its topic.
fn on_downlink(
    message: Downlink,
    state: &mut SessionDownlink,
    subscribed: &[SubscriptionFilter],
    admitted: &Admitted,
    shared: &Shared,
) -> Vec<Packet> {
    let listens = |topic: &CloudTopic| subscribed.iter().any(|filter| filter.matches(topic));
    match message {
        Downlink::Desired(desired) => {
            let (version, body) = *desired;
            let topic = CloudTopic::DesiredPatch { version };
            if !listens(&topic) {
                return Vec::new();
            }
            publish_packet(&topic, PublishQos::AtMostOnce, body)
                .into_iter()
                .collect()
        }
        Downlink::Method(call) => {
            let topic = RequestId::parse(&call.rid).map(|rid| CloudTopic::MethodRequest {
                name: call.name.clone(),
                rid,
            });
            match topic {
                Ok(topic) if listens(&topic) => {
                    publish_packet(&topic, PublishQos::AtMostOnce, call.payload)
                        .into_iter()
                        .collect()
                }
                // Unsubscribed since the call was routed here: the caller fails now.
                _ => {
                    shared.sessions.methods.forget(&call.rid);
                    Vec::new()
                }
            }
        }
        Downlink::C2dWaiting => {
            if state.c2d.listening && state.c2d.start_fetch() {
                spawn_fetch(state, admitted, shared);
            }
            Vec::new()
        }
        Downlink::C2dFetched(messages) => {
            let (publish, again) = state.c2d.fetched(messages, now().unix_millis());
            if again {
                spawn_fetch(state, admitted, shared);
            }
            let Endpoint::Hub { device_id, .. } = &admitted.endpoint else {
                return Vec::new();
            };
            publish
                .into_iter()
                .filter_map(|(packet_id, message)| {
                    let topic = message.topic(device_id);
                    let qos = PublishQos::AtLeastOnce {
                        packet_id,
                        dup: false,
                    };
                    publish_packet(&topic, qos, bytes::Bytes::from(message.body))
                })
                .collect()
        }
    }
}

/// The device acknowledged one of the session's cloud-to-device messages: complete it.
fn c2d_acknowledged(
    packet_id: PacketId,
    downlink: &mut Option<Box<SessionDownlink>>,
    admitted: &Admitted,
    shared: &Shared,
) {
    let Some(state) = downlink.as_mut() else {
        return;
    };
    let Some((message_id, fetch_next)) = state.c2d.acknowledged(packet_id) else {
        tracing::debug!(
            packet_id = packet_id.get(),
            "PUBACK for no message in flight; ignored"
        );
        return;
    };
    tokio::spawn(downlink::complete(
        Arc::clone(&shared.registry),
        admitted.device_id.clone(),
        message_id,
        fetch_next.then(|| state.sender.clone()),
    ));
}

/// A PUBLISH of `payload` on `topic`.
fn publish_packet(topic: &CloudTopic, qos: PublishQos, payload: bytes::Bytes) -> Option<Packet> {
    let topic = MqttStr::from_bytes(bytes::Bytes::from(topic.to_string()))
        .ok()
        .and_then(|text| TopicName::new(text).ok())?;
    Some(Packet::Publish(Publish {
        topic,
        qos,
        retain: false,
        payload,
    }))
}

/// The oldest pending acknowledgement; never resolves while there is none.
async fn oldest(
    pending: &mut VecDeque<(PacketId, AckReceiver)>,
) -> Result<Result<(), crate::upstream::IngestFailed>, oneshot::error::RecvError> {
    match pending.front_mut() {
        Some((_, receiver)) => receiver.await,
        None => std::future::pending().await,
    }
}

fn event(device_id: &str, kind: ConnectivityKind) -> ConnectivityEvent {
    ConnectivityEvent {
        device_id: device_id.to_owned(),
        kind,
        at: now().unix_millis(),
    }
}

/// The wall clock; the domain crate takes time as an argument.
fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    Timestamp::from_unix_millis(millis)
}
