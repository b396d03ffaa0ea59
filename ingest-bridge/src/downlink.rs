//! The cloud-to-device direction: what the control API (`control`) hands a hub session, and the
//! direct-method calls waiting for the device's answer.
//!
//! A hub session gets its downlink channel (a small bounded tokio mpsc) only when it first
//! subscribes to a downlink topic (desired patches, methods, C2D): idle connections, the memory
//! target, pay nothing. The live-session map (`session::Sessions`) holds the sender and which
//! downlink topics the session subscribed to ([`mask`]), so the control API decides without
//! asking the session; the session checks its subscriptions again when it publishes.
//!
//! Direct methods: [`PendingMethods`] maps the rid the bridge chose (a hex counter, unique per
//! bridge and URL-safe: Python quotes the rid it echoes) to the caller's oneshot sender and the
//! serial of the session the call went to. The caller removes its entry when it stops waiting
//! ([`PendingCall`]'s drop: timeout, answer, or the HTTP client going away), a session's end
//! removes its calls (the caller sees the sender dropped: the device is gone), and an answer is
//! taken only from the session the call was published to.
//!
//! Cloud-to-device messages: the session keeps [`C2dState`] (what it published at QoS 1 and
//! awaits the PUBACK of); fetching the waiting messages and completing acknowledged ones are
//! registry calls made by spawned tasks ([`fetch`], [`complete`]), which feed the session's
//! channel, so a slow registry never stalls telemetry.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gyre_domain::bridge::{C2dMessage, MethodResult};
use gyre_domain::mqtt::{MethodName, SubscriptionFilter};
use tokio::sync::{mpsc, oneshot};

use crate::codec::PacketId;
use crate::registry::Registry;

/// Messages a session's downlink channel holds before senders wait: a desired push or a method
/// call is small and the session drains the channel as fast as it writes to the socket.
pub const CHANNEL_CAPACITY: usize = 8;

/// Subscription bits in [`mask`].
pub const DESIRED: u8 = 1;
pub const METHODS: u8 = 2;
pub const C2D: u8 = 4;

/// What the downlink topics among `subscribed` are, as bits.
pub fn mask(subscribed: &[SubscriptionFilter]) -> u8 {
    subscribed.iter().fold(0, |bits, filter| {
        bits | match filter {
            SubscriptionFilter::DesiredPatches => DESIRED,
            SubscriptionFilter::MethodRequests => METHODS,
            SubscriptionFilter::C2d { .. } => C2D,
            SubscriptionFilter::TwinResponses | SubscriptionFilter::DpsResponses => 0,
        }
    })
}

/// One thing for a session to send its device. Boxed payloads keep the enum (and so each slot
/// of the channel, which tokio allocates in blocks of 32) at two words.
#[derive(Debug)]
pub enum Downlink {
    /// `$iothub/twin/PATCH/properties/desired/?$version=N`, QoS 0.
    Desired(Box<(u64, Bytes)>),
    /// `$iothub/methods/POST/{name}/?$rid={rid}`, QoS 0.
    Method(Box<MethodCall>),
    /// Cloud-to-device messages wait: fetch them (unless a fetch is running).
    C2dWaiting,
    /// A fetch's outcome (`None`: it failed; the next notice or session tries again).
    C2dFetched(Option<Vec<C2dMessage>>),
}

/// A direct-method call on its way to the device.
#[derive(Debug)]
pub struct MethodCall {
    pub name: MethodName,
    pub rid: String,
    pub payload: Bytes,
}

/// A session's downlink: the receiving end, a sender for its own fetch tasks, and C2D state.
#[derive(Debug)]
pub struct SessionDownlink {
    pub receiver: mpsc::Receiver<Downlink>,
    pub sender: mpsc::Sender<Downlink>,
    pub c2d: C2dState,
}

impl SessionDownlink {
    pub fn new() -> SessionDownlink {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        SessionDownlink {
            receiver,
            sender,
            c2d: C2dState::default(),
        }
    }
}

impl Default for SessionDownlink {
    fn default() -> Self {
        SessionDownlink::new()
    }
}

/// The most messages one fetch answers (`C2dPending`'s contract): a full answer means more may
/// wait, so the session fetches again once these are acknowledged.
const FETCH_MAX: usize = 50;

/// Message ids a session remembers as acknowledged, so a fetch racing a completion does not
/// deliver the message twice in one session.
const REMEMBERED_ACKS: usize = 2 * FETCH_MAX;

/// A session's cloud-to-device deliveries.
#[derive(Debug, Default)]
pub struct C2dState {
    /// Whether the session subscribed to its C2D topic (a new subscription fetches).
    pub listening: bool,
    /// Published at QoS 1, awaiting the device's PUBACK: packet id → message id.
    inflight: Vec<(PacketId, String)>,
    /// Recently acknowledged message ids (bounded).
    acked: VecDeque<String>,
    last_packet_id: u16,
    fetching: bool,
    /// A notice came during a fetch: fetch again when it ends.
    notice: bool,
    /// The last fetch was full: fetch again once its messages are acknowledged.
    more: bool,
}

impl C2dState {
    /// Whether to start a fetch now (for a notice, or a new subscription); marks it running.
    pub fn start_fetch(&mut self) -> bool {
        if self.fetching {
            self.notice = true;
            false
        } else {
            self.fetching = true;
            true
        }
    }

    /// A fetch ended with `messages` (`None`: failed): the ones to publish now with their packet
    /// ids (unexpired, not in flight, not acknowledged in this session), and whether to fetch
    /// again at once (a notice came meanwhile).
    pub fn fetched(
        &mut self,
        messages: Option<Vec<C2dMessage>>,
        now_millis: i64,
    ) -> (Vec<(PacketId, C2dMessage)>, bool) {
        self.fetching = false;
        let messages = messages.unwrap_or_default();
        let full = messages.len() >= FETCH_MAX;
        let mut publish = Vec::new();
        for message in messages {
            let known = self
                .inflight
                .iter()
                .any(|(_, id)| *id == message.message_id)
                || self.acked.contains(&message.message_id);
            if known || !message.is_live(now_millis) {
                continue;
            }
            let packet_id = self.next_packet_id();
            self.inflight.push((packet_id, message.message_id.clone()));
            publish.push((packet_id, message));
        }
        // A full answer: the rest is fetched once these are acknowledged (`acknowledged`). Not
        // when nothing was new: that would fetch in a loop until the completions land.
        self.more = full && !publish.is_empty();
        let again = std::mem::take(&mut self.notice);
        self.fetching = again;
        (publish, again)
    }

    /// The device acknowledged `packet_id`: the message id to complete, if it was ours, and
    /// whether to fetch again now (the last in flight was acknowledged after a full fetch).
    pub fn acknowledged(&mut self, packet_id: PacketId) -> Option<(String, bool)> {
        let at = self.inflight.iter().position(|(id, _)| *id == packet_id)?;
        let (_, message_id) = self.inflight.swap_remove(at);
        if self.acked.len() == REMEMBERED_ACKS {
            self.acked.pop_front();
        }
        self.acked.push_back(message_id.clone());
        let again = self.inflight.is_empty() && !self.fetching && std::mem::take(&mut self.more);
        if again {
            self.fetching = true;
        }
        Some((message_id, again))
    }

    /// The next packet id not in flight (the session's own space: it sends no other QoS 1).
    fn next_packet_id(&mut self) -> PacketId {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            let Some(id) = PacketId::new(self.last_packet_id) else {
                continue;
            };
            if !self.inflight.iter().any(|(used, _)| *used == id) {
                return id;
            }
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }
}

/// Fetches the messages waiting for `device_id` and hands them to the session.
pub async fn fetch(registry: Arc<Registry>, device_id: String, session: mpsc::Sender<Downlink>) {
    let messages = match registry.c2d_pending(&device_id).await {
        Ok(pending) => Some(pending.messages),
        Err(err) => {
            tracing::warn!(%device_id, cause = %err, "fetching cloud-to-device messages failed");
            None
        }
    };
    let _ = session.send(Downlink::C2dFetched(messages)).await;
}

/// Completes `message_id` (the device acknowledged it), retrying a few times; then, if
/// `then_fetch`, fetches what waits next. An uncompleted message is delivered again in a later
/// session: at least once, as IoT Hub.
pub async fn complete(
    registry: Arc<Registry>,
    device_id: String,
    message_id: String,
    then_fetch: Option<mpsc::Sender<Downlink>>,
) {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=4 {
        match registry.complete_c2d(&device_id, &message_id).await {
            Ok(()) => break,
            Err(err) if attempt == 4 => {
                tracing::warn!(%device_id, %message_id, cause = %err, "completing a cloud-to-device message failed; it will be delivered again");
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    if let Some(session) = then_fetch {
        fetch(registry, device_id, session).await;
    }
}

/// Direct-method calls waiting for their answer, by rid. One per bridge (in `Sessions`).
#[derive(Debug, Default)]
pub struct PendingMethods {
    next_rid: AtomicU64,
    /// A std `Mutex`: nothing awaits while it is held.
    calls: Mutex<HashMap<String, Waiting>>,
}

#[derive(Debug)]
struct Waiting {
    /// The session the call was published to; only it may answer.
    serial: u64,
    answer: oneshot::Sender<MethodResult>,
}

/// A caller's hold on its pending call: dropping it forgets the call, so a timed-out or
/// abandoned call leaves nothing behind.
pub struct PendingCall<'a> {
    methods: &'a PendingMethods,
    pub rid: String,
    pub answer: oneshot::Receiver<MethodResult>,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        self.methods.forget(&self.rid);
    }
}

impl PendingMethods {
    /// A new call to the session `serial`, with a fresh rid.
    pub fn start(&self, serial: u64) -> PendingCall<'_> {
        let rid = format!("{:x}", self.next_rid.fetch_add(1, Ordering::Relaxed) + 1);
        let (answer, receiver) = oneshot::channel();
        self.lock().insert(rid.clone(), Waiting { serial, answer });
        PendingCall {
            methods: self,
            rid,
            answer: receiver,
        }
    }

    /// The device on session `serial` answered `rid`; false when no such call waits for it.
    pub fn answer(&self, serial: u64, rid: &str, result: MethodResult) -> bool {
        let mut calls = self.lock();
        if calls
            .get(rid)
            .is_none_or(|waiting| waiting.serial != serial)
        {
            return false;
        }
        let waiting = calls.remove(rid).expect("checked above");
        drop(calls);
        waiting.answer.send(result).is_ok()
    }

    /// Fails the call `rid` now (the session could not publish it).
    pub fn forget(&self, rid: &str) {
        self.lock().remove(rid);
    }

    /// Session `serial` ended: its calls fail at once rather than at their timeout.
    pub fn session_ended(&self, serial: u64) {
        let mut calls = self.lock();
        if !calls.is_empty() {
            calls.retain(|_, waiting| waiting.serial != serial);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.calls.lock().expect("pending methods lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(id: &str, expires_at: i64) -> C2dMessage {
        C2dMessage {
            message_id: id.to_owned(),
            body: "hi".to_owned(),
            content_type: None,
            content_encoding: None,
            properties: Vec::new(),
            expires_at,
        }
    }

    fn result(status: i32) -> MethodResult {
        MethodResult::from_device(status, b"{}")
    }

    #[test]
    fn a_method_answer_reaches_its_caller_only_from_the_session_it_went_to() {
        let methods = PendingMethods::default();
        let mut call = methods.start(7);
        assert!(
            !methods.answer(8, &call.rid, result(200)),
            "another session"
        );
        assert!(
            !methods.answer(7, "no-such-rid", result(200)),
            "unknown rid"
        );
        assert!(methods.answer(7, &call.rid, result(201)));
        assert_eq!(call.answer.try_recv().unwrap().status, 201);
        assert!(!methods.answer(7, &call.rid, result(200)), "answered once");
    }

    #[test]
    fn rids_are_unique_and_url_safe() {
        let methods = PendingMethods::default();
        let first = methods.start(1);
        let second = methods.start(1);
        assert_ne!(first.rid, second.rid);
        assert!(first.rid.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn an_abandoned_or_timed_out_call_leaves_nothing_behind() {
        let methods = PendingMethods::default();
        let call = methods.start(1);
        let rid = call.rid.clone();
        assert_eq!(methods.len(), 1);
        drop(call);
        assert!(methods.is_empty());
        assert!(!methods.answer(1, &rid, result(200)));
    }

    #[test]
    fn a_session_ending_fails_its_calls_at_once() {
        let methods = PendingMethods::default();
        let mut gone = methods.start(1);
        let mut stays = methods.start(2);
        methods.session_ended(1);
        assert!(matches!(
            gone.answer.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(matches!(
            stays.answer.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(methods.len(), 1);
        assert_eq!(json!(null), MethodResult::from_device(200, b"").payload);
    }

    #[test]
    fn the_mask_names_downlink_subscriptions_only() {
        let filters = [
            SubscriptionFilter::parse("$iothub/twin/res/#").unwrap(),
            SubscriptionFilter::parse("$iothub/methods/POST/#").unwrap(),
        ];
        assert_eq!(mask(&filters), METHODS);
        let all = [
            SubscriptionFilter::parse("$iothub/twin/PATCH/properties/desired/#").unwrap(),
            SubscriptionFilter::parse("devices/d/messages/devicebound/#").unwrap(),
        ];
        assert_eq!(mask(&all), DESIRED | C2D);
    }

    #[test]
    fn c2d_messages_are_published_once_per_session_until_acknowledged() {
        let mut c2d = C2dState::default();
        assert!(c2d.start_fetch());
        assert!(!c2d.start_fetch(), "one fetch at a time");
        let (publish, again) = c2d.fetched(
            Some(vec![
                message("a", 100),
                message("old", 5),
                message("b", 100),
            ]),
            10,
        );
        let ids: Vec<_> = publish.iter().map(|(_, m)| m.message_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "the expired one is dropped");
        assert!(again, "a notice came during the fetch");
        assert_ne!(publish[0].0, publish[1].0);

        // The second fetch, while they await their PUBACK, publishes only what is new.
        let (publish_again, _) = c2d.fetched(Some(vec![message("a", 100), message("c", 100)]), 10);
        assert_eq!(publish_again.len(), 1);
        assert_eq!(publish_again[0].1.message_id, "c");

        // The PUBACK names the message to complete; an unknown packet id is ignored.
        assert_eq!(
            c2d.acknowledged(publish[0].0),
            Some(("a".to_owned(), false))
        );
        assert_eq!(c2d.acknowledged(publish[0].0), None);
        assert_eq!(c2d.inflight(), 2);

        // Acknowledged but not yet completed: a racing fetch does not deliver it again.
        assert!(c2d.start_fetch());
        let (none, _) = c2d.fetched(Some(vec![message("a", 100)]), 10);
        assert!(none.is_empty());
    }

    #[test]
    fn a_full_fetch_fetches_again_once_acknowledged() {
        let mut c2d = C2dState::default();
        assert!(c2d.start_fetch());
        let batch = (0..FETCH_MAX)
            .map(|i| message(&i.to_string(), 100))
            .collect();
        let (publish, again) = c2d.fetched(Some(batch), 10);
        assert!(!again);
        let last = publish.len() - 1;
        for (index, (packet_id, _)) in publish.iter().enumerate() {
            let (_, fetch) = c2d.acknowledged(*packet_id).unwrap();
            assert_eq!(
                fetch,
                index == last,
                "fetch again after the last PUBACK only"
            );
        }
    }

    #[test]
    fn packet_ids_wrap_and_skip_those_in_flight() {
        let mut c2d = C2dState {
            last_packet_id: u16::MAX - 1,
            ..C2dState::default()
        };
        c2d.inflight
            .push((PacketId::new(1).unwrap(), "x".to_owned()));
        assert_eq!(c2d.next_packet_id().get(), u16::MAX);
        assert_eq!(c2d.next_packet_id().get(), 2);
    }
}
