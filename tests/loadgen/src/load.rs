//! The load itself: `connections` tasks, each owning one keep-alive HTTP/1.1 connection and
//! sending requests back to back (closed loop) or on a fixed schedule (open loop, `rate`), then
//! one merged `Report`.
//!
//! Time is bounded: every connect, request and body read races the end of the run, so a server
//! that hangs cannot hang the generator. A response counts when it completes inside the measured
//! window (after the warm-up, before the end); requests cut off by the end are not counted.
//! Transport failures of a request count as `errors` and the connection is re-established after
//! a short pause; answers outside 2xx count as `non_2xx` (and as requests, with their latency).
//!
//! Open loop: connection `i` of `n` sends at `start + i/rate + k*n/rate`, so the whole run sends
//! `rate` requests per second, evenly spaced. A connection carries one request at a time, so a
//! request whose predecessor answered late goes out late; its latency then counts from its
//! scheduled time, which is what a client on that schedule would have waited (no coordinated
//! omission). A request sent on time counts from when it was sent. The timer ticks in
//! milliseconds, so a schedule is exact only while each connection's gap (`connections / rate`)
//! is well above that.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::target::Target;
use gyre_loadgen::histogram::Histogram;

pub struct Config {
    pub target: Target,
    pub connections: usize,
    /// The measured window, after `warmup`.
    pub duration: Duration,
    pub warmup: Duration,
    pub method: Method,
    pub body: Bytes,
    /// Sent with every request, after `Host`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Requests per second over all connections (open loop); `None`: closed loop.
    pub rate: Option<u64>,
    /// `Some(n)`: [`DEVICE_PLACEHOLDER`] in the path becomes `00000`..`{n-1:05}`, in turn.
    pub spread: Option<usize>,
}

/// Replaced in the request path by a five-digit device number under `--spread`.
pub const DEVICE_PLACEHOLDER: &str = "{device}";

impl Config {
    /// The path of request number `seq`.
    fn path(&self, seq: usize) -> std::borrow::Cow<'_, str> {
        match self.spread {
            Some(spread) => self
                .target
                .path_and_query
                .replace(DEVICE_PLACEHOLDER, &format!("{:05}", seq % spread))
                .into(),
            None => self.target.path_and_query.as_str().into(),
        }
    }
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
        start: started_at,
        measure_from: started_at + config.warmup,
        stop_at: started_at + config.warmup + config.duration,
    };
    let config = std::sync::Arc::new(config);
    let mut tasks = Vec::with_capacity(config.connections);
    for connection_idx in 0..config.connections {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            drive_connection(&config, window, connection_idx).await
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
    /// When the run started: the origin of the open-loop schedule.
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
}

impl Window {
    fn counts(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.stop_at
    }
}

/// When this connection sends its requests in open loop: the next slot, and the gap between two.
struct Schedule {
    next_at: Instant,
    interval: Duration,
}

impl Schedule {
    fn new(rate: u64, connections: usize, connection_idx: usize, start: Instant) -> Schedule {
        let rate = rate as f64;
        Schedule {
            next_at: start + Duration::from_secs_f64(connection_idx as f64 / rate),
            interval: Duration::from_secs_f64(connections as f64 / rate),
        }
    }

    /// The slot of the next request; moves the schedule on by one.
    fn take(&mut self) -> Instant {
        let slot = self.next_at;
        self.next_at += self.interval;
        slot
    }
}

async fn drive_connection(config: &Config, window: Window, connection_idx: usize) -> Report {
    let mut report = Report::empty();
    let mut schedule = config
        .rate
        .map(|rate| Schedule::new(rate, config.connections, connection_idx, window.start));
    let mut sent = 0usize;
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
            // Open loop: the latency of a request sent late because the previous answer came
            // late counts from its slot. One sent on time counts from when the timer woke, so
            // the timer's lag (tokio's timer ticks in milliseconds) is not charged to the server.
            let late_from = match &mut schedule {
                Some(schedule) => {
                    let slot = schedule.take();
                    if slot >= window.stop_at {
                        return report;
                    }
                    if Instant::now() < slot {
                        tokio::time::sleep_until(slot).await;
                        None
                    } else {
                        Some(slot)
                    }
                }
                None => None,
            };
            // Connection `i` of `n` sends requests i, i+n, i+2n...: every device gets its share.
            let path = config.path(sent * config.connections + connection_idx);
            sent += 1;
            let mut request = Request::builder()
                .method(config.method.clone())
                .uri(path.as_ref())
                .header(header::HOST, config.target.authority.as_str());
            for (name, value) in &config.headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(config.body.clone()))
                .expect("method, origin-form path, host and headers were validated when parsing");
            let sent_at = late_from.unwrap_or_else(Instant::now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_loop_schedule_spreads_the_rate_evenly_over_connections() {
        let start = Instant::now();
        let mut slots: Vec<Duration> = (0..4)
            .flat_map(|connection_idx| {
                let mut schedule = Schedule::new(1000, 4, connection_idx, start);
                (0..3).map(move |_| schedule.take() - start)
            })
            .collect();
        slots.sort();
        let expected: Vec<Duration> = (0..12).map(Duration::from_millis).collect();
        let close = slots
            .iter()
            .zip(&expected)
            .all(|(slot, expected)| slot.abs_diff(*expected) < Duration::from_micros(1));
        assert!(close, "{slots:?}");
    }
}
