//! A run: connect N devices with bounded concurrency, then publish (or hold idle), then close.
//!
//! Every device is one task that connects (holding one of `connect_concurrency` permits, so a
//! ramp of 10,000 does not overflow the server's listen backlog), reports, and then follows the
//! phase broadcast on a `watch` channel: wait with keep-alive pings until every device is
//! connected, then publish on one shared schedule (or stay idle), then disconnect.
//!
//! Progress goes to stdout as JSON lines, so the bench can sample the server at the right
//! moments: `{"event":"connected",..}` once the ramp is over, `{"event":"measuring"}` when the
//! warm-up ends, `{"event":"measured"}` when the measured window ends (idle: `{"event":
//! "holding"}` then `{"event":"released"}`), and the report last.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gyre_domain::enrollment::SymmetricKey;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::device::{BodyMaker, Device, Identity, Phase, PublishPlan, Stats, Target};

/// Errors printed in full; the rest are only counted.
const SHOWN_ERRORS: u64 = 5;

pub struct Config {
    pub target: Target,
    pub keys: DeviceKeys,
    /// Device `i` is `{device_prefix}{i:05}`.
    pub device_prefix: String,
    pub connections: usize,
    pub connect_concurrency: usize,
    pub mode: Mode,
}

/// The keys devices sign their SAS tokens with.
pub enum DeviceKeys {
    /// Each device's key is derived from the enrollment group's (DPS-provisioned devices).
    Group(SymmetricKey),
    /// Device `i` has key `i` (devices created through the REST API get keys of their own).
    Individual(Vec<SymmetricKey>),
}

pub enum Mode {
    Publish {
        window: usize,
        warmup: Duration,
        duration: Duration,
        drain: Duration,
    },
    Idle {
        hold: Duration,
    },
    /// Subscribed to direct methods and desired properties: answer and count until `hold`
    /// passes or standard input closes, whichever comes first.
    Respond {
        hold: Duration,
    },
}

/// The device id of connection `idx`: what `cargo xtask bench ingest` creates.
pub fn device_id(prefix: &str, idx: usize) -> String {
    format!("{prefix}{idx:05}")
}

/// What the run saw, printed as the last JSON line.
pub struct Report {
    pub connections: usize,
    pub connected: u64,
    pub connect_errors: u64,
    /// Devices whose session failed after connecting.
    pub errors: u64,
    pub ramp_seconds: f64,
    pub seconds: f64,
    pub stats: Arc<Stats>,
}

impl Report {
    pub fn to_json(&self) -> String {
        let stats = &self.stats;
        let latencies = stats.latencies.lock().expect("latency lock poisoned");
        let millis = |nanos: u64| nanos as f64 / 1e6;
        let acked = stats.acked.load(Ordering::Relaxed);
        let rate = if self.seconds > 0.0 {
            acked as f64 / self.seconds
        } else {
            0.0
        };
        format!(
            "{{\"connections\":{},\"connected\":{},\"connect_errors\":{},\"errors\":{},\
             \"ramp_s\":{:.3},\"seconds\":{:.3},\"published\":{},\"acked\":{},\
             \"acked_total\":{},\"unacked\":{},\"rate\":{:.1},\"p50_ms\":{:.3},\
             \"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"methods_answered\":{},\
             \"desired_received\":{}}}",
            self.connections,
            self.connected,
            self.connect_errors,
            self.errors,
            self.ramp_seconds,
            self.seconds,
            stats.published.load(Ordering::Relaxed),
            acked,
            stats.acked_total.load(Ordering::Relaxed),
            stats.unacked.load(Ordering::Relaxed),
            rate,
            millis(latencies.value_at_quantile(0.50)),
            millis(latencies.value_at_quantile(0.90)),
            millis(latencies.value_at_quantile(0.99)),
            millis(latencies.max()),
            stats.methods_answered.load(Ordering::Relaxed),
            stats.desired_received.load(Ordering::Relaxed),
        )
    }
}

pub async fn run(config: Config) -> anyhow::Result<Report> {
    let config = Arc::new(config);
    let stats = Arc::new(Stats::default());
    let (phase_sender, phase) = watch::channel(Phase::Waiting);
    let (connected_sender, mut connected_receiver) = mpsc::unbounded_channel::<bool>();
    let permits = Arc::new(Semaphore::new(config.connect_concurrency));
    let mut devices = JoinSet::new();
    let ramp_started = Instant::now();
    for idx in 0..config.connections {
        let config = Arc::clone(&config);
        let stats = Arc::clone(&stats);
        let permits = Arc::clone(&permits);
        let connected_sender = connected_sender.clone();
        let mut phase = phase.clone();
        devices.spawn(async move {
            let device_id = device_id(&config.device_prefix, idx);
            let identity = match &config.keys {
                DeviceKeys::Group(group_key) => {
                    Identity::derived(device_id, group_key, &config.target.host_name)
                }
                DeviceKeys::Individual(keys) => {
                    Identity::new(device_id, &keys[idx], &config.target.host_name)
                }
            };
            let permit = permits.acquire_owned().await;
            let device = Device::connect(&config.target, identity).await;
            drop(permit);
            let _ = connected_sender.send(device.is_ok());
            drop(connected_sender);
            let mut device = device.map_err(|err| (true, err))?;
            if matches!(config.mode, Mode::Respond { .. }) {
                device
                    .subscribe_downlink()
                    .await
                    .map_err(|err| (true, err))?;
            }
            let keep_alive = Duration::from_secs(u64::from(config.target.keep_alive_secs));
            let mut body = BodyMaker::new(idx);
            let mut seen = Phase::Waiting;
            loop {
                seen = device
                    .wait(&mut phase, seen, keep_alive, &stats)
                    .await
                    .map_err(|err| (false, err))?;
                match seen {
                    Phase::Waiting => {}
                    // Then idle again until told to close.
                    Phase::Publish(plan) => device
                        .publish(&plan, &stats, &mut body)
                        .await
                        .map_err(|err| (false, err))?,
                    Phase::Close => break,
                }
            }
            device.disconnect().await;
            Ok::<(), (bool, anyhow::Error)>(())
        });
    }
    drop(connected_sender);

    // The ramp: every device either connected or failed.
    let mut connected = 0u64;
    let mut connect_errors = 0u64;
    for _ in 0..config.connections {
        match connected_receiver.recv().await {
            Some(true) => connected += 1,
            Some(false) => connect_errors += 1,
            None => break,
        }
    }
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    event(&format!(
        "{{\"event\":\"connected\",\"connected\":{connected},\"connect_errors\":{connect_errors},\
         \"ramp_s\":{ramp_seconds:.3}}}"
    ));

    let mut seconds = 0.0;
    match config.mode {
        Mode::Publish {
            window,
            warmup,
            duration,
            drain,
        } => {
            let measure_from = Instant::now() + warmup;
            let plan = PublishPlan {
                window,
                measure_from,
                end: measure_from + duration,
                drain,
            };
            let _ = phase_sender.send(Phase::Publish(plan));
            sleep_until(plan.measure_from).await;
            event("{\"event\":\"measuring\"}");
            sleep_until(plan.end).await;
            event("{\"event\":\"measured\"}");
            seconds = duration.as_secs_f64();
            // Devices drain their last PUBACKs, then go back to waiting.
            sleep_until(plan.end + plan.drain.min(Duration::from_millis(200))).await;
            while stats_settling(&stats, plan.end + plan.drain).await {}
        }
        Mode::Idle { hold } => {
            event("{\"event\":\"holding\"}");
            tokio::time::sleep(hold).await;
            event("{\"event\":\"released\"}");
        }
        Mode::Respond { hold } => {
            let (closed_sender, closed) = tokio::sync::oneshot::channel::<()>();
            // Blocking reads of stdin on a thread of their own; EOF ends the hold.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = closed_sender.send(());
            });
            event("{\"event\":\"responding\"}");
            tokio::select! {
                () = tokio::time::sleep(hold) => {}
                _ = closed => {}
            }
            event("{\"event\":\"released\"}");
        }
    }
    let _ = phase_sender.send(Phase::Close);

    let mut errors = 0u64;
    let mut shown = 0u64;
    while let Some(joined) = devices.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err((during_connect, err))) => {
                if !during_connect {
                    errors += 1;
                }
                if shown < SHOWN_ERRORS {
                    shown += 1;
                    let when = if during_connect {
                        "connecting"
                    } else {
                        "connected"
                    };
                    eprintln!("gyre-mqtt-load: a device failed ({when}): {err:#}");
                }
            }
            Err(join_error) => {
                errors += 1;
                eprintln!("gyre-mqtt-load: a device task panicked: {join_error}");
            }
        }
    }
    Ok(Report {
        connections: config.connections,
        connected,
        connect_errors,
        errors,
        ramp_seconds,
        seconds,
        stats,
    })
}

/// After the measured window: true while PUBACKs are still outstanding and the drain deadline
/// is ahead (checked every 50 ms).
async fn stats_settling(stats: &Stats, deadline: Instant) -> bool {
    let published = stats.published.load(Ordering::Relaxed);
    let done = stats.acked_total.load(Ordering::Relaxed) + stats.unacked.load(Ordering::Relaxed);
    if done >= published || Instant::now() >= deadline {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    true
}

/// A progress line on stdout, flushed at once (the bench reads it while the run goes on).
fn event(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_the_prefix_and_five_digits() {
        assert_eq!(device_id("bench-", 0), "bench-00000");
        assert_eq!(device_id("bench-", 9_999), "bench-09999");
    }
}
