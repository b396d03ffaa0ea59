//! `cargo xtask bench [NAME]`: the benchmark list, and what every benchmark shares: a scratch
//! directory, starting gyre-host on a free port, running the load generator, taking medians over
//! repeats, and printing a table.
//!
//! Each benchmark is one module under `bench/` with a `run(&Project, &BenchFlags)`, listed in
//! `BENCHES`. A benchmark starts its own processes as `process::Supervised` children (stopped by
//! pid, also on error) and unsets `RUST_BACKTRACE` for them, so that a captured backtrace on
//! every error path does not skew the numbers.

mod commands;
mod host;
mod ingest;
mod query;
mod registry;

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::flags::BenchFlags;
use crate::process::{self, Supervised};
use crate::project::Project;

struct Bench {
    name: &'static str,
    summary: &'static str,
    run: fn(&Project, &BenchFlags) -> anyhow::Result<()>,
}

/// Every benchmark.
const BENCHES: &[Bench] = &[
    Bench {
        name: "host",
        summary: "HTTP throughput and latency of gyre-host (hello; KV set + SQLite insert), \
                  with `wasmtime serve` on hello as the reference",
        run: host::run,
    },
    Bench {
        name: "registry",
        summary: "REST latency and throughput with 100,000 devices: get-device (also at a \
                  fixed 1,000 req/s), a page of the device list, a device group's members",
        run: registry::run,
    },
    Bench {
        name: "ingest",
        summary: "MQTT devices (1 to 10,000, TCP and TLS) publishing QoS 1 telemetry through \
                  the bridge to stored rows: msgs/s, publish-to-PUBACK latency, CPU, memory; \
                  idle memory per TLS connection; mosquitto as the reference",
        run: ingest::run,
    },
    Bench {
        name: "commands",
        summary: "100 connected devices: command round trips (REST → bridge → device → REST) \
                  closed loop and at a fixed rate, and desired-property pushes per second",
        run: commands::run,
    },
    Bench {
        name: "query",
        summary: "telemetry reads over 10 million points from 1,000 devices: last known \
                  value, one device's day in 5-minute averages, every device's last-hour \
                  average, top 10 by a day's maximum",
        run: query::run,
    },
];

/// The HTTP benchmarks' defaults (`bench host`, `bench registry`).
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
const DEFAULT_HTTP_CONNECTIONS: usize = 16;

impl BenchFlags {
    /// `--duration`, else the benchmark's `default`.
    fn duration_or(&self, default: Duration) -> Duration {
        self.duration.unwrap_or(default)
    }

    /// `--warmup`, else the benchmark's `default`.
    fn warmup_or(&self, default: Duration) -> Duration {
        self.warmup.unwrap_or(default)
    }

    /// The one connection count of an HTTP benchmark: `--connections N`, else 16.
    fn http_connections(&self) -> anyhow::Result<usize> {
        match self.connections.as_slice() {
            [] => Ok(DEFAULT_HTTP_CONNECTIONS),
            [count] => Ok(*count),
            _ => bail!("this benchmark takes one `--connections` count"),
        }
    }
}

/// How long a server may take to compile its components and start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(project: &Project, bench_flags: &BenchFlags) -> anyhow::Result<ExitCode> {
    let Some(target) = bench_flags.target.as_deref() else {
        println!(
            "benchmarks (run one with `cargo xtask bench <NAME>`; options in `cargo xtask help`):"
        );
        for bench in BENCHES {
            println!("  {:<10} {}", bench.name, bench.summary);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(bench) = BENCHES.iter().find(|bench| bench.name == target) else {
        let names: Vec<&str> = BENCHES.iter().map(|bench| bench.name).collect();
        bail!(
            "unknown benchmark `{target}`; there is: {}",
            names.join(", ")
        );
    };
    (bench.run)(project, bench_flags)?;
    Ok(ExitCode::SUCCESS)
}

/// One gyre-loadgen run, as read from its JSON line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Measurement {
    requests: f64,
    errors: f64,
    non_2xx: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// What to load: an URL, and how hard.
struct Load<'a> {
    url: &'a str,
    /// `Name: value` headers sent with every request.
    headers: &'a [String],
    connections: usize,
    duration: Duration,
    warmup: Duration,
    /// Open loop at this many requests per second in all; `None`: closed loop (as fast as the
    /// server answers).
    rate: Option<u32>,
    /// `GET` unless told otherwise; `body` goes with it.
    method: &'a str,
    body: &'a str,
    /// `Some(n)`: `{device}` in the URL's path runs over n devices (gyre-loadgen `--spread`).
    spread: Option<usize>,
}

impl<'a> Load<'a> {
    /// A closed-loop load of `url` sized by the command line.
    fn closed_loop(url: &'a str, bench_flags: &BenchFlags) -> anyhow::Result<Load<'a>> {
        Ok(Load {
            url,
            headers: &[],
            connections: bench_flags.http_connections()?,
            duration: bench_flags.duration_or(DEFAULT_DURATION),
            warmup: bench_flags.warmup_or(DEFAULT_WARMUP),
            rate: None,
            method: "GET",
            body: "",
            spread: None,
        })
    }
}

/// Runs gyre-loadgen once; its stderr passes through, its JSON line is parsed.
fn run_loadgen(project: &Project, load: &Load) -> anyhow::Result<Measurement> {
    let mut command = Command::new(project.release_binary("gyre-loadgen"));
    command
        .args(["--url", load.url])
        .args(["--connections", &load.connections.to_string()])
        .args(["--duration", &format!("{}ms", load.duration.as_millis())])
        .args(["--warmup", &format!("{}ms", load.warmup.as_millis())])
        .args(["--method", load.method])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped());
    for header in load.headers {
        command.args(["--header", header]);
    }
    if let Some(rate) = load.rate {
        command.args(["--rate", &rate.to_string()]);
    }
    if !load.body.is_empty() {
        command.args(["--body", load.body]);
    }
    if let Some(spread) = load.spread {
        command.args(["--spread", &spread.to_string()]);
    }
    let mut loadgen = Supervised::spawn("gyre-loadgen", &mut command)?;
    let mut stdout = String::new();
    if let Some(mut pipe) = loadgen.child_mut().stdout.take() {
        pipe.read_to_string(&mut stdout)
            .context("reading gyre-loadgen's output")?;
    }
    let status = loadgen.wait()?;
    if !status.success() {
        bail!("gyre-loadgen failed ({status}) on {}", load.url);
    }
    let line = stdout
        .lines()
        .last()
        .context("gyre-loadgen printed nothing")?;
    let field = |name: &str| {
        json_number(line, name).with_context(|| format!("no `{name}` in gyre-loadgen's `{line}`"))
    };
    Ok(Measurement {
        requests: field("requests")?,
        errors: field("errors")?,
        non_2xx: field("non_2xx")?,
        rps: field("rps")?,
        p50_ms: field("p50_ms")?,
        p99_ms: field("p99_ms")?,
    })
}

/// Runs `load` `bench_flags.repeat` times, logging each run, and returns the medians.
fn measure(
    project: &Project,
    bench_flags: &BenchFlags,
    case: &str,
    load: &Load,
) -> anyhow::Result<Measurement> {
    let mut measurements = Vec::with_capacity(bench_flags.repeat);
    for repeat_idx in 0..bench_flags.repeat {
        if process::interrupted() {
            bail!("interrupted");
        }
        let measurement = run_loadgen(project, load)?;
        eprintln!(
            "xtask: {case} run {}/{}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            repeat_idx + 1,
            bench_flags.repeat,
            measurement.rps,
            measurement.p50_ms,
            measurement.p99_ms
        );
        measurements.push(measurement);
    }
    Ok(summarize(&measurements))
}

/// Starts gyre-host on port 0 and reads the address from its `Serving http://...` line.
/// `configure` adds the manifest, `--state-dir` and whatever else the benchmark needs; stderr
/// goes to `log_path`.
fn start_gyre_host(
    project: &Project,
    log_path: &Path,
    configure: impl FnOnce(&mut Command),
) -> anyhow::Result<(Supervised, SocketAddr)> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(project.release_binary("gyre-host"));
    configure(&mut command);
    command
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(log);
    let mut host = Supervised::spawn("gyre-host", &mut command)?;
    let stdout = host
        .child_mut()
        .stdout
        .take()
        .context("gyre-host stdout was not captured")?;

    // A thread reads stdout for the whole life of the host, so the pipe never fills up.
    let (addr_sender, addr_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.trim().strip_prefix("Serving http://") {
                let _ = addr_sender.send(addr.trim_end_matches('/').to_string());
            }
        }
    });
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match addr_receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(addr) => {
                let addr = addr
                    .parse()
                    .with_context(|| format!("gyre-host announced `{addr}`"))?;
                return Ok((host, addr));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Some(status) = host.try_wait()? {
                    bail!(
                        "gyre-host exited ({status}) before serving:\n{}",
                        log_tail(log_path)
                    );
                }
            }
            Err(_) => bail!(
                "gyre-host did not print `Serving http://...`:\n{}",
                log_tail(log_path)
            ),
        }
    }
}

/// A minimal HTTP/1.0 request (xtask has no HTTP client), each of `headers` a `Name: value`
/// line: the status and the body. HTTP/1.0, so the server ends the body by closing.
pub(super) fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("a malformed HTTP response: {response:.200}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok((status, body))
}

/// A SQL string literal, for the benches' seed scripts.
fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Stops gyre-host (gracefully, 10 s at most), reporting an unclean exit.
fn stop(host: &mut Supervised) -> anyhow::Result<()> {
    let status = host.stop(Duration::from_secs(10))?;
    if !status.success() {
        eprintln!("xtask: gyre-host exited with {status}");
    }
    Ok(())
}

/// spin.toml with its `source = "target/...` paths made absolute, so the copy in the scratch
/// directory runs the components this build produced (as the end-to-end tests do).
fn app_manifest(project: &Project) -> anyhow::Result<String> {
    let path = project.path("spin.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let absolute = format!("source = \"{}/", project.target_dir.display());
    if !text.contains("source = \"target/") {
        bail!(
            "{} has no `source = \"target/...` to rewrite",
            path.display()
        );
    }
    Ok(text.replace("source = \"target/", &absolute))
}

/// The last lines of a server's log, for an error message (the log itself is in the scratch
/// directory, which is removed).
fn log_tail(log_path: &Path) -> String {
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A temporary directory removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// `<tmp>/gyre-bench-<bench_name>-<pid>`, emptied if a previous run left it behind.
    fn create(bench_name: &str) -> anyhow::Result<ScratchDir> {
        let path =
            std::env::temp_dir().join(format!("gyre-bench-{bench_name}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("clearing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            eprintln!("xtask: could not remove {}: {err}", self.path.display());
        }
    }
}

/// The number after `"name":` in a flat JSON object of numbers (gyre-loadgen's output).
fn json_number(line: &str, name: &str) -> Option<f64> {
    let key = format!("\"{name}\":");
    let start = line.find(&key)? + key.len();
    let rest = line[start..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Medians of each field over the repeats; errors and non-2xx answers are summed instead, since
/// any of them makes a run suspect.
fn summarize(measurements: &[Measurement]) -> Measurement {
    let median_of = |field: fn(&Measurement) -> f64| {
        let mut values: Vec<f64> = measurements.iter().map(field).collect();
        median(&mut values)
    };
    Measurement {
        requests: median_of(|m| m.requests),
        errors: measurements.iter().map(|m| m.errors).sum(),
        non_2xx: measurements.iter().map(|m| m.non_2xx).sum(),
        rps: median_of(|m| m.rps),
        p50_ms: median_of(|m| m.p50_ms),
        p99_ms: median_of(|m| m.p99_ms),
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Prints `rows` of (case, summary) as an aligned table.
fn print_table(rows: &[(String, Measurement)]) {
    let case_width = rows
        .iter()
        .map(|(case, _)| case.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<case_width$}  {:>10}  {:>8}  {:>8}  {:>6}  {:>7}",
        "case", "req/s", "p50 ms", "p99 ms", "errors", "non-2xx"
    );
    for (case, summary) in rows {
        println!(
            "{:<case_width$}  {:>10.0}  {:>8.3}  {:>8.3}  {:>6}  {:>7}",
            case, summary.rps, summary.p50_ms, summary.p99_ms, summary.errors, summary.non_2xx
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_json_fields_are_read() {
        let line = r#"{"requests":1200,"errors":0,"non_2xx":3,"seconds":10.000,"rps":120.0,"p50_ms":0.512,"p90_ms":0.9,"p99_ms":1.250,"max_ms":3.1}"#;
        assert_eq!(json_number(line, "requests"), Some(1200.0));
        assert_eq!(json_number(line, "p99_ms"), Some(1.25));
        assert_eq!(json_number(line, "max_ms"), Some(3.1));
        assert_eq!(json_number(line, "missing"), None);
    }

    #[test]
    fn medians_are_taken_per_field_and_errors_summed() {
        let run = |rps, p50_ms, errors| Measurement {
            requests: rps * 10.0,
            errors,
            non_2xx: 0.0,
            rps,
            p50_ms,
            p99_ms: p50_ms * 2.0,
        };
        let summary = summarize(&[
            run(100.0, 3.0, 0.0),
            run(300.0, 1.0, 2.0),
            run(200.0, 2.0, 1.0),
        ]);
        assert_eq!(
            (summary.rps, summary.p50_ms, summary.errors),
            (200.0, 2.0, 3.0)
        );
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
