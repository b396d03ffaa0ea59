//! The load itself: `connections` tasks, each owning one keep-alive HTTP/1.1 connection and
//! sending requests back to back, then one merged `Report`.
//!
//! Time is bounded: every connect, request and body read races the end of the run, so a server
//! that hangs cannot hang the generator. A response counts when it completes inside the measured
//! window (after the warm-up, before the end); requests cut off by the end are not counted.
//! Transport failures of a request count as `errors` and the connection is re-established after
//! a short pause; answers outside 2xx count as `non_2xx` (and as requests, with their latency).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::histogram::Histogram;
use crate::target::Target;

pub struct Config {
    pub target: Target,
    pub connections: usize,
    /// The measured window, after `warmup`.
    pub duration: Duration,
    pub warmup: Duration,
    pub method: Method,
    pub body: Bytes,
}

/// What one connection (and, merged, the whole run) observed inside the measured window.
pub struct Report {
    requests: u64,
    errors: u64,
    non_2xx: u64,
    seconds: f64,
    /// Latency in nanoseconds, from writing the request to reading the last body byte.
    latencies: Histogram,
}

/// Pause after a failed connect or a broken connection, so a dead server is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

pub async fn run(config: Config) -> anyhow::Result<Report> {
    let started_at = Instant::now();
    let window = Window {
        measure_from: started_at + config.warmup,
        stop_at: started_at + config.warmup + config.duration,
    };
    let config = std::sync::Arc::new(config);
    let mut tasks = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            drive_connection(&config, window).await
        }));
    }
    let mut total = Report::empty();
    for task in tasks {
        let report = task.await.context("a connection task panicked")?;
        total.merge(&report);
    }
    total.seconds = config.duration.as_secs_f64();
    Ok(total)
}

#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Instant,
}

impl Window {
    fn counts(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.stop_at
    }
}

async fn drive_connection(config: &Config, window: Window) -> Report {
    let mut report = Report::empty();
    while Instant::now() < window.stop_at {
        let mut sender = match connect(&config.target, window.stop_at).await {
            Ok(sender) => sender,
            Err(_) => {
                report.error_at(Instant::now(), window);
                tokio::time::sleep_until((Instant::now() + RECONNECT_PAUSE).min(window.stop_at))
                    .await;
                continue;
            }
        };
        // Requests on this connection until it breaks or the run ends.
        loop {
            // A server may close an idle keep-alive connection after a complete response (an
            // HTTP/1.0 server always does): that failed no request, so just reconnect.
            match timeout_at(window.stop_at, sender.ready()).await {
                Err(_elapsed) => return report,
                Ok(Err(_closed)) => break,
                Ok(Ok(())) => {}
            }
            let request = Request::builder()
                .method(config.method.clone())
                .uri(config.target.path_and_query.as_str())
                .header(header::HOST, config.target.authority.as_str())
                .body(Full::new(config.body.clone()))
                .expect("method, origin-form path and host were validated when parsing");
            let sent_at = Instant::now();
            let exchange = async {
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            };
            match timeout_at(window.stop_at, exchange).await {
                // The run ended mid-request: not a server failure, and not counted.
                Err(_elapsed) => return report,
                Ok(Ok(status)) => {
                    let done_at = Instant::now();
                    if window.counts(done_at) {
                        report.requests += 1;
                        report.non_2xx += u64::from(!status.is_success());
                        report
                            .latencies
                            .record((done_at - sent_at).as_nanos() as u64);
                    }
                }
                Ok(Err(_)) => {
                    report.error_at(Instant::now(), window);
                    tokio::time::sleep_until(
                        (Instant::now() + RECONNECT_PAUSE).min(window.stop_at),
                    )
                    .await;
                    break;
                }
            }
        }
    }
    report
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target, stop_at: Instant) -> anyhow::Result<Sender> {
    let stream = timeout_at(stop_at, TcpStream::connect(target.addr)).await??;
    // Requests are small and sent one at a time: Nagle would only add latency.
    stream.set_nodelay(true)?;
    let (sender, connection) = timeout_at(
        stop_at,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await??;
    // The connection future ends when the sender is dropped or the peer closes; its error, if
    // any, also surfaces on the next `send_request`, where it is counted.
    tokio::spawn(connection);
    Ok(sender)
}

impl Report {
    fn empty() -> Report {
        Report {
            requests: 0,
            errors: 0,
            non_2xx: 0,
            seconds: 0.0,
            latencies: Histogram::new(),
        }
    }

    fn error_at(&mut self, at: Instant, window: Window) {
        if window.counts(at) {
            self.errors += 1;
        }
    }

    fn merge(&mut self, other: &Report) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.non_2xx += other.non_2xx;
        self.latencies.merge(&other.latencies);
    }

    /// One line of JSON, written by hand to keep the dependency list short; every value is a
    /// number, so no escaping is involved.
    pub fn to_json(&self) -> String {
        let millis = |nanos: u64| nanos as f64 / 1e6;
        let rps = if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        };
        format!(
            "{{\"requests\":{},\"errors\":{},\"non_2xx\":{},\"seconds\":{:.3},\"rps\":{:.1},\
             \"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
            self.requests,
            self.errors,
            self.non_2xx,
            self.seconds,
            rps,
            millis(self.latencies.value_at_quantile(0.50)),
            millis(self.latencies.value_at_quantile(0.90)),
            millis(self.latencies.value_at_quantile(0.99)),
            millis(self.latencies.max()),
        )
    }
}
