//! Batching: sessions hand telemetry to one task, which sends it upstream in batches and
//! acknowledges each message only after the batch holding it was committed.
//!
//! Two parts: [`FlushPolicy::is_due`], a pure decision over a [`Batch`] and the current time, and
//! [`run`], the task that owns the buffer. Sessions reach the task through a [`BatcherHandle`]
//! over a bounded channel: when ingest is slow the channel fills, `submit` waits, and sessions
//! stop reading their sockets (backpressure instead of unbounded memory).
//!
//! Durability: a message's acknowledgement resolves `Ok` only after [`Upstream::send`] returned
//! `Ok` for its batch, which means the component committed it; the session sends PUBACK then.
//! Every other outcome (the batch refused, retries exhausted, the bridge stopping before commit)
//! resolves `Err`, and so does a dropped acknowledgement, so the session must not PUBACK: the
//! device sends the message again.
//!
//! Connectivity events share the channel with messages, so a device's `connected` event is
//! never batched after telemetry it published once connected. Events carry no acknowledgement:
//! nobody waits for them. They ride in the same batches, so they are retried with them; a batch
//! that fails for good loses its events (logged), which is acceptable for a connection history
//! but never for telemetry.
//!
//! Shutdown (a signal or every handle dropped): stop taking submissions, put what is queued into
//! final batches, and wait for every in-flight batch until the deadline; the acknowledgements of
//! batches still uncommitted then fail with [`IngestFailed::ShuttingDown`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gyre_domain::ingest::{binary, ConnectivityEvent, DeviceMessage, IngestBatch};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::upstream::{new_batch_id, IngestFailed, Upstream};

/// A batch is due once its messages reach this many bytes in the binary form it is sent in
/// (`gyre_domain::ingest::binary`). The ingest component refuses request bodies over 8 MiB
/// (`functions/ingest`, `MAX_BATCH_BYTES`) with a permanent 413, and a full-size message
/// (256 KiB) must still fit after a batch just under this budget.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Completed with the outcome of the batch that held the message.
pub type AckSender = oneshot::Sender<Result<(), IngestFailed>>;
/// The session's end of an [`AckSender`]. A receive error (the sender dropped) is a failure too.
pub type AckReceiver = oneshot::Receiver<Result<(), IngestFailed>>;

/// When a batch is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Send once the batch holds this many items (messages and events); at least 1.
    pub max_messages: usize,
    /// Send once the oldest item has waited this long.
    pub max_age: Duration,
    /// Also send as soon as no batch is in flight (group commit): the next batch fills while
    /// the previous one commits, so batches grow with the load and a lone message waits for no
    /// timer. Without it a quiet bridge holds every message for `max_age`. And, while batches
    /// are in flight, send one that reached half of `max_messages`: it is parsed and prepared
    /// while the ones before are committed. Smaller ones wait, since every batch pays a request
    /// and a commit of its own (a second batch sent at once, at any size, measured slower; a
    /// third of `max_messages` instead of half, 3% fewer msgs/s at 100 devices once the
    /// application journals batches and runs CPU-bound).
    pub eager: bool,
}

impl FlushPolicy {
    /// Whether `batch` should be sent at `now`, `idle` telling whether no batch is in flight.
    /// An empty batch is never due.
    pub fn is_due(&self, batch: &Batch, now: Instant, idle: bool) -> bool {
        match batch.oldest {
            None => false,
            Some(oldest) => {
                (self.eager && (idle || batch.len() >= self.pipelined_size()))
                    || self.is_full(batch)
                    || now.saturating_duration_since(oldest) >= self.max_age
            }
        }
    }

    /// The size at which an eager policy sends a batch while others are in flight.
    fn pipelined_size(&self) -> usize {
        (self.max_messages / 2).max(1)
    }

    /// Whether `batch` may take nothing more: `max_messages` items, or [`MAX_BATCH_BYTES`].
    fn is_full(&self, batch: &Batch) -> bool {
        batch.len() >= self.max_messages.max(1) || batch.bytes >= MAX_BATCH_BYTES
    }

    /// When `batch` becomes due by age, if it holds anything.
    fn age_deadline(&self, batch: &Batch) -> Option<Instant> {
        batch.oldest.map(|oldest| oldest + self.max_age)
    }
}

/// Everything the batcher needs besides its inbox and upstream. No `Default`: the binary's config
/// spells these out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatcherConfig {
    pub policy: FlushPolicy,
    /// Batches sent concurrently; while all are in flight the buffer fills, then the channel
    /// does, then sessions wait. At least 1.
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight batches before failing their acknowledgements.
    pub shutdown_deadline: Duration,
}

/// A message waiting for its batch, with the way to tell its session the outcome.
#[derive(Debug)]
pub struct Pending {
    pub message: DeviceMessage,
    pub ack: AckSender,
}

/// What sessions send the batcher.
#[derive(Debug)]
pub enum Submission {
    Message(Pending),
    Event(ConnectivityEvent),
}

/// The buffer being filled: the items of the next batch and their acknowledgements.
#[derive(Debug, Default)]
pub struct Batch {
    messages: Vec<DeviceMessage>,
    acks: Vec<AckSender>,
    events: Vec<ConnectivityEvent>,
    /// The messages' size as sent (binary form).
    bytes: usize,
    /// When the first item arrived; `None` while empty.
    oldest: Option<Instant>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Messages and events held.
    pub fn len(&self) -> usize {
        self.messages.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `submission`, received at `now`.
    pub fn push(&mut self, submission: Submission, now: Instant) {
        self.oldest.get_or_insert(now);
        match submission {
            Submission::Message(Pending { message, ack }) => {
                self.bytes += binary::message_len(&message);
                self.messages.push(message);
                self.acks.push(ack);
            }
            Submission::Event(event) => self.events.push(event),
        }
    }

    /// The wire batch under a new id, and the acknowledgements it settles.
    fn into_ingest(self) -> (IngestBatch, Vec<AckSender>) {
        let batch = IngestBatch {
            batch_id: new_batch_id(),
            messages: self.messages,
            events: self.events,
        };
        (batch, self.acks)
    }
}

/// The sessions' side of the channel. Cheap to clone; the batcher stops when every clone is
/// dropped (after flushing).
#[derive(Clone, Debug)]
pub struct BatcherHandle {
    sender: mpsc::Sender<Submission>,
}

/// The batcher has stopped; nothing more is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the batcher has stopped")]
pub struct BatcherClosed;

impl BatcherHandle {
    /// Queues `message`, waiting while the channel is full. PUBACK only once the returned
    /// receiver yields `Ok(Ok(()))`.
    pub async fn submit(&self, message: DeviceMessage) -> Result<AckReceiver, BatcherClosed> {
        let (ack, receiver) = oneshot::channel();
        self.sender
            .send(Submission::Message(Pending { message, ack }))
            .await
            .map_err(|_| BatcherClosed)?;
        Ok(receiver)
    }

    /// Queues a connectivity event, waiting while the channel is full.
    pub async fn event(&self, event: ConnectivityEvent) -> Result<(), BatcherClosed> {
        self.sender
            .send(Submission::Event(event))
            .await
            .map_err(|_| BatcherClosed)
    }
}

/// The batcher's side of the channel; pass it to [`run`].
#[derive(Debug)]
pub struct Inbox {
    receiver: mpsc::Receiver<Submission>,
}

/// The bounded channel between sessions and the batcher. `capacity` (at least 1) is the number of
/// submissions queued beyond the buffer before `submit` waits.
pub fn channel(capacity: usize) -> (BatcherHandle, Inbox) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (BatcherHandle { sender }, Inbox { receiver })
}

/// The batcher task: runs until `shutdown` resolves or every handle is dropped, then drains as
/// the module doc describes and returns.
pub async fn run<U: Upstream>(
    inbox: Inbox,
    upstream: Arc<U>,
    config: BatcherConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut receiver = inbox.receiver;
    let policy = config.policy;
    let max_in_flight = config.max_in_flight.max(1);
    let mut batch = Batch::new();
    let mut in_flight = InFlight::new(upstream);
    tokio::pin!(shutdown);

    loop {
        let now = Instant::now();
        let due = policy.is_due(&batch, now, in_flight.len() == 0);
        if due && in_flight.len() < max_in_flight {
            in_flight.send(std::mem::take(&mut batch));
            continue;
        }
        let full = policy.is_full(&batch);
        let age_deadline = policy.age_deadline(&batch).filter(|_| !due);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = in_flight.join_next(), if in_flight.len() > 0 => in_flight.settle(joined),
            submission = receiver.recv(), if !full => match submission {
                Some(submission) => batch.push(submission, Instant::now()),
                None => break,
            },
            () = sleep_until_some(age_deadline), if age_deadline.is_some() => {}
        }
    }

    // Shutdown: nothing new is accepted, what was queued goes into final batches. These are sent
    // at once, past `max_in_flight`: there are at most capacity / max_messages + 1 of them, and
    // the deadline leaves no time to send them one after another.
    let deadline = Instant::now() + config.shutdown_deadline;
    receiver.close();
    while let Some(submission) = receiver.recv().await {
        if policy.is_full(&batch) {
            in_flight.send(std::mem::take(&mut batch));
        }
        batch.push(submission, Instant::now());
    }
    if !batch.is_empty() {
        in_flight.send(batch);
    }
    while in_flight.len() > 0 {
        match tokio::time::timeout_at(deadline, in_flight.join_next()).await {
            Ok(Some(joined)) => in_flight.settle(joined),
            Ok(None) => break,
            Err(_elapsed) => {
                tracing::warn!(
                    batches = in_flight.len(),
                    "shutdown deadline passed; failing uncommitted batches"
                );
                in_flight.fail_all(IngestFailed::ShuttingDown);
                break;
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

type SendOutcome = Result<gyre_domain::ingest::IngestResult, IngestFailed>;

/// Batches being sent, each in its own task; the acknowledgements stay here, keyed by task, so
/// they are settled explicitly even when a task panics or is aborted.
struct InFlight<U> {
    upstream: Arc<U>,
    tasks: JoinSet<SendOutcome>,
    acks: HashMap<Id, (String, Vec<AckSender>)>,
}

impl<U: Upstream> InFlight<U> {
    fn new(upstream: Arc<U>) -> InFlight<U> {
        InFlight {
            upstream,
            tasks: JoinSet::new(),
            acks: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn send(&mut self, batch: Batch) {
        let (batch, acks) = batch.into_ingest();
        let batch_id = batch.batch_id.clone();
        let upstream = Arc::clone(&self.upstream);
        let handle = self.tasks.spawn(async move { upstream.send(&batch).await });
        self.acks.insert(handle.id(), (batch_id, acks));
    }

    async fn join_next(&mut self) -> Option<Result<(Id, SendOutcome), tokio::task::JoinError>> {
        self.tasks.join_next_with_id().await
    }

    fn settle(&mut self, joined: Result<(Id, SendOutcome), tokio::task::JoinError>) {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(err) => (
                err.id(),
                Err(IngestFailed::Unavailable {
                    attempts: 0,
                    last_error: format!("send task failed: {err}"),
                }),
            ),
        };
        let Some((batch_id, acks)) = self.acks.remove(&id) else {
            return;
        };
        match &outcome {
            Ok(result) => {
                tracing::debug!(%batch_id, n_messages = result.n_messages, duplicate = result.duplicate, "batch committed")
            }
            Err(err) => {
                tracing::warn!(%batch_id, n_acks = acks.len(), cause = %err, "batch not committed; its messages are not acknowledged")
            }
        }
        let ack_value = outcome.map(|_| ());
        for ack in acks {
            // The session may have gone; its device resends what it did not see acknowledged.
            let _ = ack.send(ack_value.clone());
        }
    }

    fn fail_all(&mut self, failure: IngestFailed) {
        self.tasks.abort_all();
        for (_, (_, acks)) in self.acks.drain() {
            for ack in acks {
                let _ = ack.send(Err(failure.clone()));
            }
        }
    }
}
