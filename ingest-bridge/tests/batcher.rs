//! The batcher against a fake upstream that hands every batch to the test and waits for the test
//! to answer it, under paused time: flushing by size and by age, acknowledgements only after the
//! commit, failures, shutdown and backpressure.

use std::sync::Arc;
use std::time::Duration;

use gyre_domain::ingest::{
    ConnectivityEvent, ConnectivityKind, DeviceMessage, IngestBatch, IngestResult,
};
use gyre_ingest_bridge::batcher::{
    self, AckReceiver, Batch, BatcherConfig, BatcherHandle, FlushPolicy, Pending, Submission,
};
use gyre_ingest_bridge::upstream::{IngestFailed, Upstream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

type Reply = oneshot::Sender<Result<IngestResult, IngestFailed>>;

/// Every `send` shows up on the test's channel with a way to answer it; until answered, the
/// upstream is "still retrying".
struct FakeUpstream {
    calls: mpsc::UnboundedSender<(IngestBatch, Reply)>,
}

impl Upstream for FakeUpstream {
    async fn send(&self, batch: &IngestBatch) -> Result<IngestResult, IngestFailed> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send((batch.clone(), reply))
            .expect("the test is listening");
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

fn message(n: i64) -> DeviceMessage {
    DeviceMessage {
        device_id: "d1".into(),
        module_id: None,
        enqueued_at: n,
        system_properties: Default::default(),
        application_properties: Vec::new(),
        body: b"{}".to_vec(),
    }
}

struct Bridge {
    handle: BatcherHandle,
    calls: mpsc::UnboundedReceiver<(IngestBatch, Reply)>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// A batcher flushing by size and age only (`eager` off), as most tests here want.
fn spawn(max_messages: usize, max_age_ms: u64, capacity: usize, max_in_flight: usize) -> Bridge {
    spawn_with(max_messages, max_age_ms, capacity, max_in_flight, false)
}

fn spawn_with(
    max_messages: usize,
    max_age_ms: u64,
    capacity: usize,
    max_in_flight: usize,
    eager: bool,
) -> Bridge {
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let (handle, inbox) = batcher::channel(capacity);
    let (stop, stopped) = oneshot::channel::<()>();
    let config = BatcherConfig {
        policy: FlushPolicy {
            max_messages,
            max_age: Duration::from_millis(max_age_ms),
            eager,
        },
        max_in_flight,
        shutdown_deadline: Duration::from_secs(5),
    };
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(batcher::run(
        inbox,
        Arc::new(FakeUpstream { calls: calls_tx }),
        config,
        shutdown,
    ));
    Bridge {
        handle,
        calls,
        stop: Some(stop),
        task,
    }
}

fn is_pending(ack: &mut AckReceiver) -> bool {
    matches!(ack.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

#[test]
fn flush_policy_decides_by_size_and_age() {
    let policy = FlushPolicy {
        max_messages: 3,
        max_age: Duration::from_millis(100),
        eager: false,
    };
    let start = Instant::now();
    // (items, elapsed since the first item in ms, expected)
    let cases: &[(usize, u64, bool)] = &[
        (0, 0, false),
        (0, 10_000, false),
        (1, 0, false),
        (2, 99, false),
        (1, 100, true),
        (1, 5_000, true),
        (3, 0, true),
        (4, 0, true),
    ];
    for &(items, elapsed_ms, expected) in cases {
        let mut batch = Batch::new();
        for n in 0..items {
            let (ack, _receiver) = oneshot::channel();
            let submission = if n % 2 == 0 {
                Submission::Message(Pending {
                    message: message(n as i64),
                    ack,
                })
            } else {
                Submission::Event(ConnectivityEvent {
                    device_id: "d1".into(),
                    kind: ConnectivityKind::Connected,
                    at: 0,
                })
            };
            batch.push(submission, start);
        }
        let now = start + Duration::from_millis(elapsed_ms);
        assert_eq!(
            policy.is_due(&batch, now, true),
            expected,
            "{items} items, {elapsed_ms} ms"
        );
    }
}

#[test]
fn a_batch_is_due_once_its_bodies_reach_the_byte_budget() {
    // The ingest component refuses bodies over 8 MiB; a batch of full-size (256 KiB) messages
    // must stay under it, whatever `max_messages` says.
    let policy = FlushPolicy {
        max_messages: 1000,
        max_age: Duration::from_secs(60),
        eager: false,
    };
    let start = Instant::now();
    let full_size = vec![b'A'; 256 * 1024];
    let mut batch = Batch::new();
    let mut pushed = 0;
    while !policy.is_due(&batch, start, true) {
        let (ack, _receiver) = oneshot::channel();
        let mut big = message(pushed);
        big.body = full_size.clone();
        batch.push(Submission::Message(Pending { message: big, ack }), start);
        pushed += 1;
    }
    // Due with the message that reached the budget, not one later.
    let pushed = pushed as usize;
    assert!(
        (pushed - 1) * full_size.len() < batcher::MAX_BATCH_BYTES,
        "{pushed} messages"
    );
    assert!(
        pushed * (full_size.len() + 64) >= batcher::MAX_BATCH_BYTES,
        "{pushed} messages"
    );
    assert!(
        pushed * full_size.len() < 8 * 1024 * 1024,
        "{pushed} messages"
    );
}

#[test]
fn an_eager_policy_sends_whenever_nothing_is_in_flight() {
    let policy = FlushPolicy {
        max_messages: 1000,
        max_age: Duration::from_secs(60),
        eager: true,
    };
    let start = Instant::now();
    let mut batch = Batch::new();
    assert!(
        !policy.is_due(&batch, start, true),
        "an empty batch is never due"
    );
    let (ack, _receiver) = oneshot::channel();
    batch.push(
        Submission::Message(Pending {
            message: message(0),
            ack,
        }),
        start,
    );
    assert!(policy.is_due(&batch, start, true), "idle: at once");
    assert!(
        !policy.is_due(&batch, start, false),
        "busy: half the size, or age"
    );
    assert!(policy.is_due(&batch, start + Duration::from_secs(60), false));
    for n in 1..500 {
        let (ack, _receiver) = oneshot::channel();
        batch.push(
            Submission::Message(Pending {
                message: message(n),
                ack,
            }),
            start,
        );
        assert_eq!(
            policy.is_due(&batch, start, false),
            n == 499,
            "{} items",
            n + 1
        );
    }
}

/// Group commit: the first message leaves at once; what arrives while it commits leaves
/// together as soon as it committed, without waiting for the age timer.
#[tokio::test(start_paused = true)]
async fn an_eager_batcher_sends_what_accumulated_while_the_previous_batch_committed() {
    let mut bridge = spawn_with(1000, 60_000, 16, 4, true);
    let start = Instant::now();
    let first = bridge.handle.submit(message(0)).await.unwrap();
    let (batch, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(batch.messages, vec![message(0)]);
    let mut acks = Vec::new();
    for n in 1..4 {
        acks.push(bridge.handle.submit(message(n)).await.unwrap());
    }
    tokio::time::advance(Duration::from_millis(5)).await;
    assert!(
        bridge.calls.try_recv().is_err(),
        "nothing more while the first is in flight"
    );
    reply.send(committed(&batch)).unwrap();
    assert_eq!(first.await.unwrap(), Ok(()));
    let (next, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(next.messages, vec![message(1), message(2), message(3)]);
    assert!(
        Instant::now() - start < Duration::from_secs(1),
        "no age timer involved"
    );
    reply.send(committed(&next)).unwrap();
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_sent_at_once_and_acknowledged_only_after_the_commit() {
    let mut bridge = spawn(3, 60_000, 16, 1);
    let start = Instant::now();
    let mut acks = Vec::new();
    for n in 0..3 {
        acks.push(bridge.handle.submit(message(n)).await.unwrap());
    }

    let (batch, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(Instant::now(), start, "sent by size, not by age");
    assert_eq!(batch.messages, vec![message(0), message(1), message(2)]);
    tokio::time::advance(Duration::from_secs(600)).await; // the upstream is still retrying
    assert!(
        acks.iter_mut().all(is_pending),
        "no acknowledgement before the commit"
    );

    reply.send(committed(&batch)).unwrap();
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_sent_when_its_oldest_message_reaches_max_age() {
    let mut bridge = spawn(100, 250, 16, 1);
    let start = Instant::now();
    let ack = bridge.handle.submit(message(1)).await.unwrap();
    // Paused time moves only once every task is idle, so the batcher has taken the message.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _second = bridge.handle.submit(message(2)).await.unwrap();

    assert!(
        tokio::time::timeout(Duration::from_millis(149), bridge.calls.recv())
            .await
            .is_err(),
        "not before 250 ms"
    );
    let (batch, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(
        Instant::now() - start,
        Duration::from_millis(250),
        "age counts from the oldest message"
    );
    assert_eq!(batch.messages.len(), 2);
    reply.send(committed(&batch)).unwrap();
    assert_eq!(ack.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_refused_batch_fails_every_acknowledgement() {
    let mut bridge = spawn(2, 60_000, 16, 1);
    let first = bridge.handle.submit(message(1)).await.unwrap();
    let second = bridge.handle.submit(message(2)).await.unwrap();
    let (_batch, reply) = bridge.calls.recv().await.unwrap();
    let refusal = IngestFailed::Rejected {
        status: 400,
        message: "bad batch".into(),
    };
    reply.send(Err(refusal.clone())).unwrap();
    assert_eq!(first.await.unwrap(), Err(refusal.clone()));
    assert_eq!(second.await.unwrap(), Err(refusal));

    // The batcher keeps working after a failure.
    let third = bridge.handle.submit(message(3)).await.unwrap();
    let fourth = bridge.handle.submit(message(4)).await.unwrap();
    let (batch, reply) = bridge.calls.recv().await.unwrap();
    reply.send(committed(&batch)).unwrap();
    assert_eq!(third.await.unwrap(), Ok(()));
    assert_eq!(fourth.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn connectivity_events_ride_in_the_same_batch_in_arrival_order() {
    let mut bridge = spawn(3, 60_000, 16, 1);
    let connected = ConnectivityEvent {
        device_id: "d1".into(),
        kind: ConnectivityKind::Connected,
        at: 5,
    };
    bridge.handle.event(connected.clone()).await.unwrap();
    let ack = bridge.handle.submit(message(1)).await.unwrap();
    let disconnected = ConnectivityEvent {
        device_id: "d1".into(),
        kind: ConnectivityKind::Disconnected,
        at: 9,
    };
    bridge.handle.event(disconnected.clone()).await.unwrap();

    let (batch, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(batch.events, vec![connected, disconnected]);
    assert_eq!(batch.messages, vec![message(1)]);
    reply.send(committed(&batch)).unwrap();
    assert_eq!(ack.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_what_is_held_and_waits_for_the_commit() {
    let mut bridge = spawn(100, 60_000, 16, 1);
    let start = Instant::now();
    let first = bridge.handle.submit(message(1)).await.unwrap();
    let second = bridge.handle.submit(message(2)).await.unwrap();
    bridge.stop.take().unwrap().send(()).unwrap();

    let (batch, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(Instant::now(), start, "flushed at shutdown, not by age");
    assert_eq!(batch.messages.len(), 2);
    assert!(
        bridge.handle.submit(message(3)).await.is_err(),
        "nothing is accepted after shutdown"
    );
    reply.send(committed(&batch)).unwrap();
    assert_eq!(first.await.unwrap(), Ok(()));
    assert_eq!(second.await.unwrap(), Ok(()));
    bridge.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_the_acknowledgements_it_could_not_commit_by_the_deadline() {
    let mut bridge = spawn(100, 60_000, 16, 1);
    let start = Instant::now();
    let ack = bridge.handle.submit(message(1)).await.unwrap();
    bridge.stop.take().unwrap().send(()).unwrap();
    let (_batch, _reply_never_sent) = bridge.calls.recv().await.unwrap();

    assert_eq!(ack.await.unwrap(), Err(IngestFailed::ShuttingDown));
    assert_eq!(
        Instant::now() - start,
        Duration::from_secs(5),
        "the shutdown deadline"
    );
    bridge.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_flushes_and_stops_the_batcher() {
    let Bridge {
        handle,
        mut calls,
        stop: _stop,
        task,
    } = spawn(100, 60_000, 16, 1);
    let ack = handle.submit(message(1)).await.unwrap();
    drop(handle);
    let (batch, reply) = calls.recv().await.unwrap();
    reply.send(committed(&batch)).unwrap();
    assert_eq!(ack.await.unwrap(), Ok(()));
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_upstream_fills_the_bounded_channel_and_submit_waits() {
    // One batch in flight, one full buffer, two queued in the channel: the fifth submit waits.
    let mut bridge = spawn(1, 60_000, 2, 1);
    let mut acks = Vec::new();
    let mut accepted = 0;
    let blocked = loop {
        let submit = bridge.handle.submit(message(accepted));
        match tokio::time::timeout(Duration::from_secs(60), submit).await {
            Ok(ack) => {
                acks.push(ack.unwrap());
                accepted += 1;
                assert!(accepted <= 10, "the channel is not bounded");
            }
            Err(_elapsed) => break accepted,
        }
    };
    assert_eq!(blocked, 4);
    assert!(acks.iter_mut().all(is_pending));

    // Committing drains the backlog batch by batch, and then submit proceeds again.
    let waiting = tokio::spawn({
        let handle = bridge.handle.clone();
        async move { handle.submit(message(99)).await }
    });
    for expected in 0..4 {
        let (batch, reply) = bridge.calls.recv().await.unwrap();
        assert_eq!(batch.messages, vec![message(expected)]);
        reply.send(committed(&batch)).unwrap();
    }
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(()));
    }
    let last = waiting.await.unwrap().unwrap();
    let (batch, reply) = bridge.calls.recv().await.unwrap();
    assert_eq!(batch.messages, vec![message(99)]);
    reply.send(committed(&batch)).unwrap();
    assert_eq!(last.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn batches_overlap_up_to_max_in_flight_and_each_has_its_own_id() {
    let mut bridge = spawn(1, 60_000, 16, 2);
    let first = bridge.handle.submit(message(1)).await.unwrap();
    let second = bridge.handle.submit(message(2)).await.unwrap();
    let (batch_one, reply_one) = bridge.calls.recv().await.unwrap();
    let (batch_two, reply_two) = bridge.calls.recv().await.unwrap();
    assert_ne!(batch_one.batch_id, batch_two.batch_id);

    // Answered out of order: each acknowledgement follows its own batch.
    reply_two.send(committed(&batch_two)).unwrap();
    assert_eq!(second.await.unwrap(), Ok(()));
    let mut first = first;
    assert!(is_pending(&mut first));
    reply_one
        .send(Err(IngestFailed::Unavailable {
            attempts: 7,
            last_error: "503".into(),
        }))
        .unwrap();
    assert!(matches!(
        first.await.unwrap(),
        Err(IngestFailed::Unavailable { .. })
    ));
}
