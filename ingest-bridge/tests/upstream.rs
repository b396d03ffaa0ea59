//! The HTTP upstream against a fake ingest endpoint on 127.0.0.1:0 that answers from a script
//! and reports every request it saw: retries under the same batch id, permanent refusals, and the
//! exact headers and JSON body; then the batcher in front of it, from `submit` to the ack.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gyre_domain::ingest::{
    binary, ConnectivityEvent, ConnectivityKind, DeviceMessage, IngestBatch, IngestResult,
    BATCH_ID_HEADER,
};
use gyre_ingest_bridge::batcher::{self, BatcherConfig, FlushPolicy};
use gyre_ingest_bridge::compactor;
use gyre_ingest_bridge::registry::{Registry, RegistryConfig};
use gyre_ingest_bridge::upstream::{
    new_batch_id, HttpUpstream, IngestFailed, InvalidUpstreamConfig, RetryPolicy, Upstream,
    SECRET_HEADER,
};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// One request as the fake endpoint saw it.
#[derive(Debug)]
struct Seen {
    method: http::Method,
    path: String,
    headers: http::HeaderMap,
    /// The batch (decoded from its binary form) as JSON, for easy inspection.
    body: serde_json::Value,
}

/// Serves `script` in order (status codes; 200 answers with the batch's `IngestResult`), then
/// 500 for anything beyond it. Returns the base URL and the requests seen.
async fn fake_ingest(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Seen>) {
    fake_app(script, false).await
}

/// As [`fake_ingest`], its 200 answers saying `compactionDue` as told; it also answers
/// `POST /internal/compact` (200, outside the script).
async fn fake_app(
    script: Vec<u16>,
    compaction_due: bool,
) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen_tx = seen_tx.clone();
            let script = Arc::clone(&script);
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let seen_tx = seen_tx.clone();
                let script = Arc::clone(&script);
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let body: serde_json::Value = if parts.uri.path() == "/internal/compact" {
                        serde_json::Value::Null
                    } else {
                        serde_json::to_value(binary::decode(&body).unwrap()).unwrap()
                    };
                    let status = if body.is_null() {
                        200
                    } else {
                        script.lock().unwrap().pop_front().unwrap_or(500)
                    };
                    let answer = if body.is_null() {
                        br#"{"compacted":0,"steps":0}"#.to_vec()
                    } else if status == 200 {
                        let result = IngestResult {
                            batch_id: body["batchId"].as_str().unwrap().to_owned(),
                            n_messages: body["messages"].as_array().map_or(0, Vec::len) as u32,
                            n_events: body["events"].as_array().map_or(0, Vec::len) as u32,
                            duplicate: false,
                            compaction_due,
                        };
                        serde_json::to_vec(&result).unwrap()
                    } else {
                        format!("{{\"error\":\"scripted {status}\"}}").into_bytes()
                    };
                    let _ = seen_tx.send(Seen {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        headers: parts.headers,
                        body,
                    });
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(answer)))
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
    (base_url, seen)
}

/// Short real-time delays: the test exercises real sockets, which paused time would race.
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_secs(5),
        give_up_after: Duration::from_secs(5),
    }
}

fn batch() -> IngestBatch {
    IngestBatch {
        batch_id: new_batch_id(),
        messages: vec![DeviceMessage {
            device_id: "thermostat-1".into(),
            module_id: None,
            enqueued_at: 1_764_161_225_120,
            system_properties: [("$.ct".to_owned(), "application/json".to_owned())].into(),
            application_properties: vec![("alert".into(), "true".into())],
            body: br#"{"t":21}"#.to_vec(),
        }],
        events: vec![ConnectivityEvent {
            device_id: "thermostat-1".into(),
            kind: ConnectivityKind::Connected,
            at: 1_764_161_225_000,
        }],
    }
}

#[tokio::test]
async fn a_batch_is_posted_as_json_with_the_secret_and_batch_id_headers() {
    let (base_url, mut seen) = fake_ingest(vec![200]).await;
    let upstream = HttpUpstream::new(&format!("{base_url}/"), "s3cret", retry_policy()).unwrap();
    let batch = batch();

    let result = upstream.send(&batch).await.unwrap();

    assert_eq!(
        result,
        IngestResult {
            batch_id: batch.batch_id.clone(),
            n_messages: 1,
            n_events: 1,
            duplicate: false,
            compaction_due: false,
        }
    );
    let request = seen.recv().await.unwrap();
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.path, "/internal/ingest");
    assert_eq!(request.headers[SECRET_HEADER], "s3cret");
    assert_eq!(request.headers[BATCH_ID_HEADER], batch.batch_id.as_str());
    assert_eq!(
        request.headers[http::header::CONTENT_TYPE],
        binary::BINARY_CONTENT_TYPE
    );
    assert_eq!(request.body, serde_json::to_value(&batch).unwrap());
    assert_eq!(
        serde_json::from_value::<IngestBatch>(request.body).unwrap(),
        batch
    );
}

#[tokio::test]
async fn unavailable_and_throttled_answers_are_retried_under_the_same_batch_id() {
    let (base_url, mut seen) = fake_ingest(vec![503, 429, 500, 200]).await;
    let upstream = HttpUpstream::new(&base_url, "s3cret", retry_policy()).unwrap();
    let batch = batch();

    let result = upstream.send(&batch).await.unwrap();

    assert_eq!(result.batch_id, batch.batch_id);
    for attempt in 1..=4 {
        let request = seen.recv().await.unwrap();
        assert_eq!(
            request.headers[BATCH_ID_HEADER],
            batch.batch_id.as_str(),
            "attempt {attempt}"
        );
        assert_eq!(
            request.body["batchId"],
            batch.batch_id.as_str(),
            "attempt {attempt}"
        );
    }
    assert!(seen.try_recv().is_err(), "no attempt after the commit");
}

#[tokio::test]
async fn a_client_error_is_permanent_and_not_retried() {
    let (base_url, mut seen) = fake_ingest(vec![400, 200]).await;
    let upstream = HttpUpstream::new(&base_url, "s3cret", retry_policy()).unwrap();

    let failure = upstream.send(&batch()).await.unwrap_err();

    assert_eq!(
        failure,
        IngestFailed::Rejected {
            status: 400,
            message: "{\"error\":\"scripted 400\"}".into()
        }
    );
    seen.recv().await.unwrap();
    assert!(seen.try_recv().is_err(), "a 400 is sent once");
}

#[tokio::test]
async fn retries_stop_when_the_budget_runs_out() {
    let (base_url, mut seen) = fake_ingest(vec![]).await; // 500 forever
    let policy = RetryPolicy {
        give_up_after: Duration::from_millis(30),
        ..retry_policy()
    };
    let upstream = HttpUpstream::new(&base_url, "s3cret", policy).unwrap();

    let failure = upstream.send(&batch()).await.unwrap_err();

    let IngestFailed::Unavailable {
        attempts,
        last_error,
    } = failure
    else {
        panic!("{failure:?}")
    };
    assert!(attempts >= 2, "{attempts} attempts");
    assert!(last_error.contains("500"), "{last_error}");
    for _ in 0..attempts {
        seen.recv().await.unwrap();
    }
}

#[tokio::test]
async fn connection_errors_are_retried_until_the_budget_runs_out() {
    // A port that was just free: nothing listens there.
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let policy = RetryPolicy {
        give_up_after: Duration::from_millis(30),
        ..retry_policy()
    };
    let upstream = HttpUpstream::new(&format!("http://{address}"), "s3cret", policy).unwrap();

    let failure = upstream.send(&batch()).await.unwrap_err();

    assert!(
        matches!(failure, IngestFailed::Unavailable { attempts, .. } if attempts >= 2),
        "{failure:?}"
    );
}

#[test]
fn only_http_base_urls_and_header_safe_secrets_are_accepted() {
    let check = |base_url: &str, secret: &str, expected: Result<(), InvalidUpstreamConfig>| {
        let actual = HttpUpstream::new(base_url, secret, retry_policy()).map(|_| ());
        assert_eq!(actual, expected, "{base_url:?} {secret:?}");
    };
    check("http://127.0.0.1:3000", "s3cret", Ok(()));
    check("http://ingest.spin.internal/", "s3cret", Ok(()));
    let bad_url = |url: &str| Err(InvalidUpstreamConfig::BaseUrl(url.to_owned()));
    check(
        "https://example.com",
        "s3cret",
        bad_url("https://example.com"),
    );
    check("127.0.0.1:3000", "s3cret", bad_url("127.0.0.1:3000"));
    check("http://", "s3cret", bad_url("http://"));
    check(
        "http://127.0.0.1:3000",
        "line\nbreak",
        Err(InvalidUpstreamConfig::Secret),
    );
}

/// The batcher and the HTTP upstream together: the whole path from `submit` to the ack.
async fn spawn_batcher(base_url: &str) -> batcher::BatcherHandle {
    let upstream = Arc::new(HttpUpstream::new(base_url, "s3cret", retry_policy()).unwrap());
    let (handle, inbox) = batcher::channel(8);
    let config = BatcherConfig {
        policy: FlushPolicy {
            max_messages: 2,
            max_age: Duration::from_secs(60),
            eager: false,
        },
        max_in_flight: 1,
        shutdown_deadline: Duration::from_secs(5),
    };
    tokio::spawn(batcher::run(
        inbox,
        upstream,
        config,
        std::future::pending(),
    ));
    handle
}

#[tokio::test]
async fn submitted_messages_are_acknowledged_once_their_batch_commits_after_a_retry() {
    let (base_url, mut seen) = fake_ingest(vec![503, 200]).await;
    let handle = spawn_batcher(&base_url).await;
    let first = handle.submit(batch().messages[0].clone()).await.unwrap();
    let second = handle.submit(batch().messages[0].clone()).await.unwrap();

    assert_eq!(first.await.unwrap(), Ok(()));
    assert_eq!(second.await.unwrap(), Ok(()));
    let attempt_one = seen.recv().await.unwrap();
    let attempt_two = seen.recv().await.unwrap();
    assert_eq!(
        attempt_one.body, attempt_two.body,
        "the retry resends the same batch"
    );
    assert_eq!(attempt_one.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn submitted_messages_fail_when_ingest_refuses_their_batch() {
    let (base_url, _seen) = fake_ingest(vec![422]).await;
    let handle = spawn_batcher(&base_url).await;
    let first = handle.submit(batch().messages[0].clone()).await.unwrap();
    let second = handle.submit(batch().messages[0].clone()).await.unwrap();

    assert!(matches!(
        first.await.unwrap(),
        Err(IngestFailed::Rejected { status: 422, .. })
    ));
    assert!(matches!(
        second.await.unwrap(),
        Err(IngestFailed::Rejected { status: 422, .. })
    ));
}

#[tokio::test]
async fn an_answer_saying_a_compaction_is_due_wakes_the_compactor_which_asks_once() {
    let (base_url, mut seen) = fake_app(vec![200, 200, 200], true).await;
    let due = Arc::new(Notify::new());
    let upstream = HttpUpstream::new(&base_url, "s3cret", retry_policy())
        .unwrap()
        .with_compaction_signal(Arc::clone(&due));
    // Three answers before the compactor runs fold into one request.
    for _ in 0..3 {
        upstream.send(&batch()).await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(seen.recv().await.unwrap().path, "/internal/ingest");
    }
    let app = Arc::new(
        Registry::new(RegistryConfig {
            base_url,
            secret: "s3cret".into(),
            ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            max_entries: 10,
        })
        .unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let compactor = tokio::spawn(compactor::run(app, due, stopped));
    let request = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("a compaction request")
        .unwrap();
    assert_eq!(
        (request.method, request.path.as_str()),
        (http::Method::POST, "/internal/compact")
    );
    assert_eq!(request.headers[SECRET_HEADER], "s3cret");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), seen.recv())
            .await
            .is_err(),
        "one request for the three signals"
    );
    stop.send(()).unwrap();
    compactor.await.unwrap();
}

#[tokio::test]
async fn an_answer_without_a_due_compaction_signals_nothing() {
    let (base_url, _seen) = fake_app(vec![200], false).await;
    let due = Arc::new(Notify::new());
    let upstream = HttpUpstream::new(&base_url, "s3cret", retry_policy())
        .unwrap()
        .with_compaction_signal(Arc::clone(&due));
    upstream.send(&batch()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), due.notified())
            .await
            .is_err()
    );
}
