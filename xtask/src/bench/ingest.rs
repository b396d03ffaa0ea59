//! `cargo xtask bench ingest`: simulated MQTT devices publishing QoS 1 telemetry through the
//! bridge into stored rows (issue 4's "Measure"), with Debian's mosquitto (no persistence) under
//! the same load as the reference.
//!
//! Steps, all in a fresh temporary directory (manifest, state, certificates, logs):
//! 1. start gyre-host on the repository's `spin.toml`, bootstrap the administrator token, publish
//!    a template that models the bodies' six fields (`ingest/sensor.json`), create the devices
//!    `bench-00000`... of that template through the REST API (`PUT /api/devices/{id}` gives each
//!    device keys of its own) and read each one's primary key from its `/credentials`, as an
//!    operator hands them to a device;
//! 2. start gyre-ingest-bridge (TLS and plain listeners, development certificates) and
//!    mosquitto (the same certificate);
//! 3. idle memory, first, on the fresh processes: `IDLE_CONNECTIONS` TLS connections held open
//!    (keep-alive pings); (RSS with them − RSS before) / connections, for each server;
//! 4. for each transport and device count: gyre-mqtt-load publishes against the bridge, then
//!    against mosquitto, `--repeat` times; each run samples the servers' CPU time over the
//!    measured window and their RSS at its end;
//! 5. stop the bridge (graceful: it drains), and check that the database holds at least as many
//!    telemetry rows as the devices saw acknowledged (warm-up and drain included);
//! 6. print the table (medians) with the gyre / mosquitto ratios.
//!
//! What the comparison means: mosquitto acknowledges a QoS 1 PUBLISH as soon as it has read it
//! (nothing subscribes, nothing is stored), while the bridge acknowledges only after the batch
//! holding the message was committed to SQLite and its WAL synced. The load generator and
//! the servers share this machine's cores; compare ratios, not absolutes.

mod mosquitto;
mod proc_stats;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use self::proc_stats::ProcSample;
use super::{
    app_manifest, http_request, json_number, log_tail, median, start_gyre_host, ScratchDir,
    STARTUP_TIMEOUT,
};
use crate::bootstrap;
use crate::build;
use crate::flags::BenchFlags;
use crate::process::{self, Supervised};
use crate::project::Project;

/// The issue's device counts.
const DEFAULT_CONNECTIONS: &[usize] = &[1, 100, 1_000, 10_000];
/// The issue's idle-memory case: this many idle TLS connections (fewer if `--connections` asks
/// for no more than that).
const IDLE_CONNECTIONS: usize = 10_000;
/// The issue's target: bridge memory per idle TLS connection.
const IDLE_TARGET_KIB: f64 = 16.0;
/// The device count at which gyre must acknowledge at least mosquitto's rate (the issue's target).
const TARGET_CONNECTIONS: usize = 100;
const DEFAULT_DURATION: Duration = Duration::from_secs(5);
const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
/// PUBACKs outstanding per device, as a device on the official Python SDK keeps them:
/// `azure-iot-device` publishes through paho-mqtt, whose default in-flight limit for QoS 1 is 20
/// (the Node SDK's mqtt.js sets none). Measurements before this default used `--window 8`.
const DEFAULT_WINDOW: usize = 20;
/// How long idle connections are held; RSS is sampled in the middle.
const IDLE_HOLD: Duration = Duration::from_secs(5);
const DEVICE_PREFIX: &str = "bench-";
/// The name the devices dial: the development certificate names it.
const HOST_NAME: &str = "localhost";
/// Parallel REST clients creating the devices.
const CREATE_THREADS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Tls,
}

impl Transport {
    fn parse(raw: &str) -> anyhow::Result<Transport> {
        match raw {
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            other => bail!("unknown transport `{other}`; use tcp, tls or tcp,tls"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// What to run, from the command line.
#[derive(Debug, PartialEq)]
struct Plan {
    connections: Vec<usize>,
    transports: Vec<Transport>,
    window: usize,
    duration: Duration,
    warmup: Duration,
    repeat: usize,
    reference: bool,
}

impl Plan {
    fn from_flags(bench_flags: &BenchFlags) -> anyhow::Result<Plan> {
        let mut connections = if bench_flags.connections.is_empty() {
            DEFAULT_CONNECTIONS.to_vec()
        } else {
            bench_flags.connections.clone()
        };
        connections.sort_unstable();
        connections.dedup();
        if let Some(too_many) = connections.iter().find(|&&n| n > 10_000) {
            bail!("at most 10,000 devices (the bridge's connection cap), not {too_many}");
        }
        let mut transports = Vec::new();
        for raw in &bench_flags.transports {
            let transport = Transport::parse(raw)?;
            if !transports.contains(&transport) {
                transports.push(transport);
            }
        }
        if transports.is_empty() {
            transports = vec![Transport::Tcp, Transport::Tls];
        }
        Ok(Plan {
            connections,
            transports,
            window: bench_flags.window.unwrap_or(DEFAULT_WINDOW),
            duration: bench_flags.duration_or(DEFAULT_DURATION),
            warmup: bench_flags.warmup_or(DEFAULT_WARMUP),
            repeat: bench_flags.repeat,
            reference: !bench_flags.no_reference,
        })
    }

    fn devices(&self) -> usize {
        self.connections.iter().copied().max().unwrap_or(1)
    }

    fn idle_connections(&self) -> usize {
        IDLE_CONNECTIONS.min(self.devices())
    }
}

/// A server under load: its name, the processes whose CPU and memory count, its listeners.
struct Server {
    name: &'static str,
    /// (label, pid): the bridge and the host for gyre; mosquitto alone.
    pids: Vec<(&'static str, u32)>,
    tcp: SocketAddr,
    tls: SocketAddr,
}

impl Server {
    fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }
    }

    fn sample(&self) -> anyhow::Result<Vec<ProcSample>> {
        self.pids
            .iter()
            .map(|(label, pid)| {
                proc_stats::sample(*pid)
                    .with_context(|| format!("sampling {} ({label})", self.name))
            })
            .collect()
    }
}

/// Where a load run finds the devices' keys (one a line, in device order) and the CA.
struct Devices {
    keys: PathBuf,
    ca: PathBuf,
}

pub fn run(project: &Project, bench_flags: &BenchFlags) -> anyhow::Result<()> {
    let plan = Plan::from_flags(bench_flags)?;
    build::components(project, build::APP_COMPONENTS)?;
    build::native(project)?;
    // Find (or install) the reference first, so a problem with it shows before the runs.
    let mosquitto_binary = if plan.reference {
        Some(mosquitto::ensure()?)
    } else {
        None
    };
    // Children inherit the limit: 10,000 connections need 10,000 descriptors in each server.
    raise_file_limit()?;

    // Declared before the servers, so it is removed after they are stopped.
    let app = ScratchApp::prepare(project, "ingest")?;
    let (scratch, certs, secret) = (&app.scratch, &app.certs, &app.secret);

    // 1. The application, its administrator, the enrollment group and the devices.
    let (mut host, host_addr, token) = app.start_host(project, &[])?;
    put_template(host_addr, &token, BENCH_TEMPLATE, BENCH_MODEL, "Bench sensor")?;
    let creating = Instant::now();
    let keys = create_devices(host_addr, &token, plan.devices(), BENCH_TEMPLATE)?;
    eprintln!(
        "xtask: {} devices created through the REST API in {:.1} s",
        plan.devices(),
        creating.elapsed().as_secs_f64()
    );
    let devices = Devices {
        keys: scratch.path.join("device-keys.txt"),
        ca: certs.join("ca.pem"),
    };
    std::fs::write(&devices.keys, keys.join("\n"))
        .with_context(|| format!("writing {}", devices.keys.display()))?;

    // 2. The bridge and the reference.
    let (mut bridge, bridge_tls, bridge_tcp) =
        start_bridge(project, &scratch.path, certs, host_addr, secret, &[])?;
    let gyre = Server {
        name: "gyre",
        pids: vec![
            ("bridge", bridge.child_mut().id()),
            ("host", host.child_mut().id()),
        ],
        tcp: bridge_tcp,
        tls: bridge_tls,
    };
    let mut reference = match &mosquitto_binary {
        Some(binary) => Some(mosquitto::start(binary, &scratch.path, certs)?),
        None => None,
    };
    let mosquitto_server = reference.as_mut().map(|broker| Server {
        name: "mosquitto",
        pids: vec![("mosquitto", broker.process.child_mut().id())],
        tcp: broker.tcp,
        tls: broker.tls,
    });
    let servers: Vec<&Server> = std::iter::once(&gyre)
        .chain(mosquitto_server.as_ref())
        .collect();

    // 3. Idle memory, on fresh processes.
    let mut idle_rows = Vec::new();
    for server in &servers {
        let idle = measure_idle(project, server, &devices, plan.idle_connections())?;
        eprintln!(
            "xtask: {} idle: {} TLS connections, {:.2} KiB each",
            server.name, idle.connected, idle.kib_per_connection
        );
        idle_rows.push((server.name, idle));
    }

    // 4. The load.
    let mut rows = Vec::new();
    let mut acked_by_gyre = 0.0;
    for &transport in &plan.transports {
        for &connections in &plan.connections {
            let mut runs: Vec<Vec<Run>> = servers.iter().map(|_| Vec::new()).collect();
            for repeat_idx in 0..plan.repeat {
                for (server, server_runs) in servers.iter().zip(&mut runs) {
                    if process::interrupted() {
                        bail!("interrupted");
                    }
                    let run =
                        run_publish(project, server, &devices, &plan, transport, connections)?;
                    eprintln!(
                        "xtask: {} {} x{connections} run {}/{}: {:.0} msgs/s, p50 {:.3} ms, \
                         p99 {:.3} ms, {} error(s)",
                        server.name,
                        transport.name(),
                        repeat_idx + 1,
                        plan.repeat,
                        run.rate,
                        run.p50_ms,
                        run.p99_ms,
                        run.errors,
                    );
                    if server.name == "gyre" {
                        acked_by_gyre += run.acked_total;
                    }
                    server_runs.push(run);
                }
            }
            for (server, server_runs) in servers.iter().zip(&runs) {
                rows.push(Row {
                    transport,
                    connections,
                    server: server.name,
                    summary: summarize(server_runs),
                });
            }
        }
    }

    // 5. Every acknowledged message is stored.
    let status = bridge.stop(Duration::from_secs(20))?;
    if !status.success() {
        eprintln!("xtask: gyre-ingest-bridge exited with {status}");
    }
    apply_journal(host_addr, &app.secret)?;
    let stored = count_telemetry(project, &app.state_dir.join("sqlite_db.db"))?;
    if let Some(broker) = reference.as_mut() {
        broker.process.stop(Duration::from_secs(10))?;
    }
    host.stop(Duration::from_secs(10))?;

    // 6. The table.
    println!();
    println!(
        "bench ingest: QoS 1 JSON telemetry (~100 B), {} PUBACK(s) outstanding per device, \
         {:?} per run after {:?} warm-up, median of {} run(s), {} CPU(s)",
        plan.window,
        plan.duration,
        plan.warmup,
        plan.repeat,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!();
    print!("{}", load_table(&rows));
    println!();
    print!("{}", idle_table(&idle_rows));
    println!();
    for line in verdicts(&rows, &idle_rows) {
        println!("{line}");
    }
    let stored_ok = stored >= acked_by_gyre as u64;
    println!(
        "stored: {stored} telemetry rows for {} messages acknowledged by gyre (warm-up and drain \
         included): {}",
        acked_by_gyre as u64,
        if stored_ok { "ok" } else { "MISSING ROWS" }
    );
    if rows.iter().any(|row| row.summary.errors > 0.0) {
        eprintln!("xtask: some runs had errors; their numbers are suspect");
    }
    if !stored_ok {
        bail!(
            "{} acknowledged messages are not in the database",
            acked_by_gyre as u64 - stored
        );
    }
    Ok(())
}

/// A bench's application in a fresh scratch directory: the repository's manifest, a state
/// directory with its internal secret, and development certificates for the bridge.
pub(super) struct ScratchApp {
    pub scratch: ScratchDir,
    pub manifest: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_config: PathBuf,
    pub secret: String,
    pub certs: PathBuf,
}

impl ScratchApp {
    pub(super) fn prepare(project: &Project, bench_name: &str) -> anyhow::Result<ScratchApp> {
        let scratch = ScratchDir::create(bench_name)?;
        let manifest = scratch.path.join("spin.toml");
        std::fs::write(&manifest, app_manifest(project)?)
            .with_context(|| format!("writing {}", manifest.display()))?;
        let state_dir = scratch.path.join("state");
        let secret = bootstrap::internal_secret(&state_dir)?;
        let runtime_config = bootstrap::runtime_config(&project.root, &state_dir)?;
        let certs = scratch.path.join("certs");
        crate::project::read(
            Command::new(project.release_binary("gyre-ingest-bridge"))
                .arg("dev-certs")
                .arg("--out")
                .arg(&certs),
        )?;
        Ok(ScratchApp {
            scratch,
            manifest,
            state_dir,
            runtime_config,
            secret,
            certs,
        })
    }

    /// Starts gyre-host on the application (with `env` as extra environment) and bootstraps
    /// the administrator; returns the host, its address and the administrator token.
    pub(super) fn start_host(
        &self,
        project: &Project,
        env: &[(&str, String)],
    ) -> anyhow::Result<(Supervised, SocketAddr, String)> {
        let (host, host_addr) =
            start_gyre_host(project, &self.scratch.path.join("gyre-host.log"), |command| {
                command
                    .arg(&self.manifest)
                    .arg("--state-dir")
                    .arg(&self.state_dir)
                    .arg("--runtime-config-file")
                    .arg(&self.runtime_config)
                    .env("SPIN_VARIABLE_INTERNAL_SECRET", &self.secret)
                    .envs(env.iter().map(|(name, value)| (name, value)));
            })?;
        let (status, body) =
            bootstrap::post(host_addr, "/internal/registry/bootstrap", &self.secret)?;
        if status != 201 {
            bail!("POST /internal/registry/bootstrap answered {status}: {body}");
        }
        let token = bootstrap::json_string_field(&body, "token")
            .with_context(|| format!("the bootstrap answer has no token: {body}"))?;
        Ok((host, host_addr, token))
    }
}

/// The bench devices' template: it models the six fields of gyre-mqtt-load's bodies, as an IoT
/// Central device's template models its telemetry (without one, every field would be stored as
/// unmodeled).
const BENCH_TEMPLATE: &str = "dtmi:gyre:bench:Sensor;1";
const BENCH_MODEL: &str = include_str!("ingest/sensor.json");

/// `PUT /api/deviceTemplates/{id}` with `model` (a DTDL interface) as its capability model.
pub(super) fn put_template(
    addr: SocketAddr,
    token: &str,
    id: &str,
    model: &str,
    display_name: &str,
) -> anyhow::Result<()> {
    let template = format!(
        r#"{{"@type":["ModelDefinition","DeviceModel"],"displayName":"{display_name}","capabilityModel":{model}}}"#
    );
    let path = format!("/api/deviceTemplates/{id}");
    let (status, answer) = http(addr, "PUT", &path, token, &template)?;
    if status != 200 && status != 201 {
        bail!("PUT {path} answered {status}: {answer}");
    }
    Ok(())
}

/// `PUT /api/devices/bench-NNNNN` for `n_devices` devices assigned to `template`, from
/// `CREATE_THREADS` threads, then `GET .../credentials`; returns the devices' primary keys in
/// device order.
pub(super) fn create_devices(
    addr: SocketAddr,
    token: &str,
    n_devices: usize,
    template: &str,
) -> anyhow::Result<Vec<String>> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CREATE_THREADS)
            .map(|worker| {
                scope.spawn(move || -> anyhow::Result<Vec<(usize, String)>> {
                    let mut keys = Vec::new();
                    for idx in (worker..n_devices).step_by(CREATE_THREADS) {
                        let id = device_id(idx);
                        let path = format!("/api/devices/{id}");
                        let body = format!(
                            r#"{{"displayName":"Bench device {idx}","template":"{template}"}}"#
                        );
                        let (status, answer) = http(addr, "PUT", &path, token, &body)?;
                        if status != 200 && status != 201 {
                            bail!("PUT {path} answered {status}: {answer}");
                        }
                        let path = format!("/api/devices/{id}/credentials");
                        let (status, answer) = http(addr, "GET", &path, token, "")?;
                        let key = bootstrap::json_string_field(&answer, "primaryKey");
                        match (status, key) {
                            (200, Some(key)) => keys.push((idx, key)),
                            _ => bail!("GET {path} answered {status} without a key: {answer}"),
                        }
                    }
                    Ok(keys)
                })
            })
            .collect();
        let mut keys = vec![String::new(); n_devices];
        for worker in workers {
            let worker_keys = worker
                .join()
                .map_err(|_| anyhow::anyhow!("a device-creating thread panicked"))??;
            for (idx, key) in worker_keys {
                keys[idx] = key;
            }
        }
        Ok(keys)
    })
}

/// The device id of device `idx`: what gyre-mqtt-load's `--device-prefix bench-` connects as.
fn device_id(idx: usize) -> String {
    format!("{DEVICE_PREFIX}{idx:05}")
}

/// A minimal HTTP/1.0 request with a JSON body and the API token (xtask has no HTTP client):
/// the status and the body. HTTP/1.0, so the server ends the body by closing, unchunked.
pub(super) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let headers = [
        format!("Authorization: {token}"),
        "Content-Type: application/json".to_owned(),
    ];
    http_request(addr, method, path, &headers, body)
}

/// Starts gyre-ingest-bridge with a TLS and a plain listener on free ports (and `extra_args`);
/// returns it with the TLS and the plain address, read from its `Bridge listening on ...` lines.
pub(super) fn start_bridge(
    project: &Project,
    scratch: &Path,
    certs: &Path,
    host_addr: SocketAddr,
    secret: &str,
    extra_args: &[String],
) -> anyhow::Result<(Supervised, SocketAddr, SocketAddr)> {
    let log_path = scratch.join("gyre-ingest-bridge.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(project.release_binary("gyre-ingest-bridge"));
    command
        .args(["--listen-tls", "127.0.0.1:0", "--listen-tcp", "127.0.0.1:0"])
        .arg("--cert")
        .arg(certs.join("server.pem"))
        .arg("--key")
        .arg(certs.join("server-key.pem"))
        .arg("--app-url")
        .arg(format!("http://{host_addr}"))
        .args(extra_args)
        .env("GYRE_INTERNAL_SECRET", secret)
        .env_remove("SPIN_VARIABLE_INTERNAL_SECRET")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut bridge = Supervised::spawn("gyre-ingest-bridge", &mut command)?;
    let stdout = bridge
        .child_mut()
        .stdout
        .take()
        .context("the bridge's stdout was not captured")?;
    // A thread reads stdout for the whole life of the bridge, so the pipe never fills up.
    let (line_sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_sender.send(line);
        }
    });
    let (mut tls, mut tcp) = (None, None);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while tls.is_none() || tcp.is_none() {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let line = line.trim();
                if let Some(addr) = line.strip_prefix("Bridge listening on mqtts://") {
                    tls = Some(
                        addr.parse()
                            .with_context(|| format!("the bridge said `{line}`"))?,
                    );
                } else if let Some(addr) = line.strip_prefix("Bridge listening on mqtt://") {
                    tcp = Some(
                        addr.parse()
                            .with_context(|| format!("the bridge said `{line}`"))?,
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Some(status) = bridge.try_wait()? {
                    bail!(
                        "gyre-ingest-bridge exited ({status}) before listening:\n{}",
                        log_tail(&log_path)
                    );
                }
            }
            Err(_) => bail!(
                "gyre-ingest-bridge did not print both listening addresses:\n{}",
                log_tail(&log_path)
            ),
        }
    }
    let (Some(tls), Some(tcp)) = (tls, tcp) else {
        unreachable!("the loop ends once both are known");
    };
    Ok((bridge, tls, tcp))
}

/// The command line of gyre-mqtt-load for `server` over `transport`.
fn mqtt_load(
    project: &Project,
    mode: &str,
    server: &Server,
    devices: &Devices,
    transport: Transport,
    connections: usize,
) -> Command {
    let mut command = Command::new(project.release_binary("gyre-mqtt-load"));
    command
        .arg(mode)
        .args(["--addr", &server.addr(transport).to_string()])
        .arg("--keys")
        .arg(&devices.keys)
        .args(["--host-name", HOST_NAME])
        .args(["--device-prefix", DEVICE_PREFIX])
        .args(["--connections", &connections.to_string()])
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if transport == Transport::Tls {
        command.arg("--ca").arg(&devices.ca);
    }
    command
}

/// One publish run, as measured.
#[derive(Clone, Debug, Default, PartialEq)]
struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Every PUBACK the devices received (warm-up and drain included).
    acked_total: f64,
    /// Devices that failed to connect or whose session failed, and messages left unacknowledged.
    errors: f64,
    /// CPU seconds per second of the measured window, per server process (cores busy).
    cores: Vec<f64>,
    /// RSS at the end of the measured window, and the peak so far, per process, KiB.
    rss_kib: Vec<f64>,
    hwm_kib: Vec<f64>,
}

fn run_publish(
    project: &Project,
    server: &Server,
    devices: &Devices,
    plan: &Plan,
    transport: Transport,
    connections: usize,
) -> anyhow::Result<Run> {
    let mut command = mqtt_load(project, "publish", server, devices, transport, connections);
    command
        .args(["--window", &plan.window.to_string()])
        .args(["--warmup", &format!("{}ms", plan.warmup.as_millis())])
        .args(["--duration", &format!("{}ms", plan.duration.as_millis())]);
    let mut loadgen = Supervised::spawn("gyre-mqtt-load", &mut command)?;
    let stdout = loadgen
        .child_mut()
        .stdout
        .take()
        .context("gyre-mqtt-load's stdout was not captured")?;
    let (mut before, mut after, mut report) = (None, None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading gyre-mqtt-load's output")?;
        if line.contains("\"event\":\"measuring\"") {
            before = Some((Instant::now(), server.sample()?));
        } else if line.contains("\"event\":\"measured\"") {
            after = Some((Instant::now(), server.sample()?));
        } else if line.contains("\"acked_total\"") {
            report = Some(line);
        }
    }
    let status = loadgen.wait()?;
    if !status.success() {
        bail!(
            "gyre-mqtt-load failed ({status}) against {} over {}",
            server.name,
            transport.name()
        );
    }
    let report = report.context("gyre-mqtt-load printed no report")?;
    let (Some((started, before)), Some((ended, after))) = (before, after) else {
        bail!("gyre-mqtt-load did not announce its measured window: {report}");
    };
    let field = |name: &str| {
        json_number(&report, name)
            .with_context(|| format!("no `{name}` in gyre-mqtt-load's `{report}`"))
    };
    let window_secs = ended.duration_since(started).as_secs_f64().max(1e-3);
    Ok(Run {
        rate: field("rate")?,
        p50_ms: field("p50_ms")?,
        p99_ms: field("p99_ms")?,
        acked_total: field("acked_total")?,
        errors: field("connect_errors")? + field("errors")? + field("unacked")?,
        cores: before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.cpu_secs - b.cpu_secs) / window_secs)
            .collect(),
        rss_kib: after.iter().map(|a| a.rss_kib as f64).collect(),
        hwm_kib: after.iter().map(|a| a.hwm_kib as f64).collect(),
    })
}

/// The idle-memory case for one server.
#[derive(Clone, Debug, PartialEq)]
struct Idle {
    connected: u64,
    errors: u64,
    /// RSS of the server's first process (the bridge; mosquitto) before and with the connections.
    rss_before_kib: u64,
    rss_with_kib: u64,
    kib_per_connection: f64,
}

fn measure_idle(
    project: &Project,
    server: &Server,
    devices: &Devices,
    connections: usize,
) -> anyhow::Result<Idle> {
    let (_, pid) = server.pids[0];
    let rss_before_kib = proc_stats::sample(pid)?.rss_kib;
    let mut command = mqtt_load(
        project,
        "idle",
        server,
        devices,
        Transport::Tls,
        connections,
    );
    command.args(["--hold", &format!("{}ms", IDLE_HOLD.as_millis())]);
    let mut loadgen = Supervised::spawn("gyre-mqtt-load", &mut command)?;
    let stdout = loadgen
        .child_mut()
        .stdout
        .take()
        .context("gyre-mqtt-load's stdout was not captured")?;
    let (mut rss_with_kib, mut connected, mut errors) = (None, None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading gyre-mqtt-load's output")?;
        if line.contains("\"event\":\"connected\"") {
            connected = json_number(&line, "connected");
            errors = json_number(&line, "connect_errors");
        } else if line.contains("\"event\":\"holding\"") {
            // Let the last handshakes' buffers settle, then take the highest of a few looks.
            let mut highest = 0;
            for _ in 0..3 {
                std::thread::sleep(IDLE_HOLD / 5);
                highest = highest.max(proc_stats::sample(pid)?.rss_kib);
            }
            rss_with_kib = Some(highest);
        } else if line.contains("\"acked_total\"") {
            errors = Some(errors.unwrap_or(0.0) + json_number(&line, "errors").unwrap_or(0.0));
        }
    }
    let status = loadgen.wait()?;
    if !status.success() {
        bail!(
            "gyre-mqtt-load idle failed ({status}) against {}",
            server.name
        );
    }
    let (Some(rss_with_kib), Some(connected)) = (rss_with_kib, connected) else {
        bail!("gyre-mqtt-load idle did not announce its connections");
    };
    let connected = connected as u64;
    Ok(Idle {
        connected,
        errors: errors.unwrap_or(0.0) as u64,
        rss_before_kib,
        rss_with_kib,
        kib_per_connection: kib_per_connection(rss_before_kib, rss_with_kib, connected),
    })
}

fn kib_per_connection(before_kib: u64, with_kib: u64, connections: u64) -> f64 {
    if connections == 0 {
        return f64::NAN;
    }
    (with_kib as f64 - before_kib as f64) / connections as f64
}

/// `gyre-mqtt-load count-telemetry`: rows in the inbox and the compacted table.
/// Applies what the ingest journal still holds (a few batches at most: the bridge's compaction
/// requests keep it short), so that every acknowledged message can be counted in the database.
fn apply_journal(host_addr: SocketAddr, secret: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        let (status, body) = bootstrap::post(host_addr, "/internal/compact", secret)?;
        if status != 200 {
            bail!("POST /internal/compact answered {status}: {body}");
        }
        if json_number(&body, "applied") == Some(0.0) {
            return Ok(());
        }
    }
    bail!("the ingest journal did not drain in 100 compaction requests")
}

fn count_telemetry(project: &Project, db: &Path) -> anyhow::Result<u64> {
    let output = crate::project::read(
        Command::new(project.release_binary("gyre-mqtt-load"))
            .arg("count-telemetry")
            .arg("--db")
            .arg(db),
    )?;
    json_number(&output, "rows")
        .map(|rows| rows as u64)
        .with_context(|| format!("count-telemetry printed `{}`", output.trim()))
}

/// Medians over a case's runs, per field and per process; errors are summed, peaks maxed.
fn summarize(runs: &[Run]) -> Run {
    let median_of = |field: &dyn Fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(field).collect();
        median(&mut values)
    };
    let n_processes = runs.first().map_or(0, |run| run.cores.len());
    Run {
        rate: median_of(&|run| run.rate),
        p50_ms: median_of(&|run| run.p50_ms),
        p99_ms: median_of(&|run| run.p99_ms),
        acked_total: runs.iter().map(|run| run.acked_total).sum(),
        errors: runs.iter().map(|run| run.errors).sum(),
        cores: (0..n_processes)
            .map(|idx| median_of(&|run| run.cores[idx]))
            .collect(),
        rss_kib: (0..n_processes)
            .map(|idx| median_of(&|run| run.rss_kib[idx]))
            .collect(),
        hwm_kib: (0..n_processes)
            .map(|idx| runs.iter().map(|run| run.hwm_kib[idx]).fold(0.0, f64::max))
            .collect(),
    }
}

/// One line of the load table.
struct Row {
    transport: Transport,
    connections: usize,
    server: &'static str,
    summary: Run,
}

/// The load table in markdown: per case, gyre then mosquitto, then the ratio.
fn load_table(rows: &[Row]) -> String {
    let mut table = vec![[
        "transport",
        "devices",
        "server",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "CPU cores (bridge+host)",
        "µs CPU/msg",
        "RSS MiB (peak)",
        "errors",
    ]
    .map(String::from)
    .to_vec()];
    let mib = |kib: f64| kib / 1024.0;
    let joined = |values: &[f64], show: &dyn Fn(f64) -> String| {
        values
            .iter()
            .map(|&v| show(v))
            .collect::<Vec<_>>()
            .join("+")
    };
    for (idx, row) in rows.iter().enumerate() {
        let s = &row.summary;
        let total_cores: f64 = s.cores.iter().sum();
        let rss: Vec<String> = s
            .rss_kib
            .iter()
            .zip(&s.hwm_kib)
            .map(|(rss, hwm)| format!("{:.0} ({:.0})", mib(*rss), mib(*hwm)))
            .collect();
        table.push(vec![
            row.transport.name().to_owned(),
            row.connections.to_string(),
            row.server.to_owned(),
            format!("{:.0}", s.rate),
            format!("{:.3}", s.p50_ms),
            format!("{:.3}", s.p99_ms),
            if s.cores.len() > 1 {
                format!(
                    "{:.2} ({})",
                    total_cores,
                    joined(&s.cores, &|v| format!("{v:.2}"))
                )
            } else {
                format!("{total_cores:.2}")
            },
            if s.rate > 0.0 {
                format!("{:.1}", total_cores / s.rate * 1e6)
            } else {
                "-".to_owned()
            },
            rss.join(" + "),
            format!("{:.0}", s.errors),
        ]);
        // After the reference's row, the ratio of the case.
        let next_is_same_case = rows.get(idx + 1).is_some_and(|next| {
            next.transport == row.transport && next.connections == row.connections
        });
        if row.server != "gyre" && !next_is_same_case {
            if let Some(gyre) = rows.iter().find(|other| {
                other.server == "gyre"
                    && other.transport == row.transport
                    && other.connections == row.connections
            }) {
                let g = &gyre.summary;
                table.push(vec![
                    row.transport.name().to_owned(),
                    row.connections.to_string(),
                    format!("gyre/{}", row.server),
                    format!("{:.2}x", g.rate / s.rate),
                    format!("{:.2}x", g.p50_ms / s.p50_ms),
                    format!("{:.2}x", g.p99_ms / s.p99_ms),
                    format!("{:.2}x", g.cores.iter().sum::<f64>() / total_cores),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
    }
    markdown(&table)
}

fn idle_table(idle_rows: &[(&str, Idle)]) -> String {
    let mut table = vec![[
        "idle TLS connections",
        "server",
        "RSS before MiB",
        "RSS with MiB",
        "KiB per connection",
        "errors",
    ]
    .map(String::from)
    .to_vec()];
    for (server, idle) in idle_rows {
        table.push(vec![
            idle.connected.to_string(),
            (*server).to_owned(),
            format!("{:.1}", idle.rss_before_kib as f64 / 1024.0),
            format!("{:.1}", idle.rss_with_kib as f64 / 1024.0),
            format!("{:.2}", idle.kib_per_connection),
            idle.errors.to_string(),
        ]);
    }
    markdown(&table)
}

/// The issue's two targets, met or missed.
fn verdicts(rows: &[Row], idle_rows: &[(&str, Idle)]) -> Vec<String> {
    let mut lines = Vec::new();
    for transport in [Transport::Tcp, Transport::Tls] {
        let find = |server: &str| {
            rows.iter().find(|row| {
                row.server == server
                    && row.transport == transport
                    && row.connections == TARGET_CONNECTIONS
            })
        };
        if let (Some(gyre), Some(reference)) = (find("gyre"), find("mosquitto")) {
            let met = gyre.summary.rate >= reference.summary.rate && gyre.summary.errors == 0.0;
            lines.push(format!(
                "target: at {TARGET_CONNECTIONS} devices over {}, acknowledged-and-stored msgs/s \
                 >= mosquitto's QoS 1 rate: {:.0} vs {:.0} ({:.2}x), {}",
                transport.name(),
                gyre.summary.rate,
                reference.summary.rate,
                gyre.summary.rate / reference.summary.rate,
                if met { "met" } else { "MISSED" }
            ));
        }
    }
    if let Some((_, idle)) = idle_rows.iter().find(|(server, _)| *server == "gyre") {
        // The target is per connection at 10,000 of them; with fewer, the bridge's fixed memory
        // (runtime, TLS config, buffers) spread over a few connections says nothing about it.
        let attempted = idle.connected + idle.errors;
        if attempted >= IDLE_CONNECTIONS as u64 {
            let met = idle.kib_per_connection < IDLE_TARGET_KIB && idle.errors == 0;
            lines.push(format!(
                "target: bridge memory per idle TLS connection < {IDLE_TARGET_KIB} KiB at {} \
                 connections: {:.2} KiB, {}",
                idle.connected,
                idle.kib_per_connection,
                if met { "met" } else { "MISSED" }
            ));
        } else {
            lines.push(format!(
                "bridge memory per idle TLS connection at {attempted} connections: {:.2} KiB \
                 (the target, < {IDLE_TARGET_KIB} KiB, is judged at {IDLE_CONNECTIONS} \
                 connections: --connections {IDLE_CONNECTIONS})",
                idle.kib_per_connection,
            ));
        }
    }
    lines
}

/// Rows of cells as an aligned markdown table, the first row the header.
fn markdown(table: &[Vec<String>]) -> String {
    let n_columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n_columns)
        .map(|col| {
            table
                .iter()
                .filter_map(|row| row.get(col))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(col, width)| {
                let cell = cells.get(col).map_or("", String::as_str);
                format!("{cell}{}", " ".repeat(width - cell.chars().count()))
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = String::new();
    if let Some((header, body)) = table.split_first() {
        out.push_str(&line(header));
        let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in body {
            out.push_str(&line(row));
        }
    }
    out
}

/// Raises xtask's soft limit on open files to the hard limit; the servers and the load generator
/// it starts inherit it.
pub(super) fn raise_file_limit() -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to an rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
            }
        }
    }
    if limit.rlim_cur < IDLE_CONNECTIONS as u64 + 1_000 {
        eprintln!(
            "xtask: the open-file limit is {}; 10,000 connections may fail (raise `ulimit -Hn`)",
            limit.rlim_cur
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(connections: &[usize], transports: &[&str]) -> BenchFlags {
        BenchFlags {
            target: Some("ingest".to_owned()),
            repeat: 3,
            duration: None,
            warmup: None,
            connections: connections.to_vec(),
            transports: transports.iter().map(|t| t.to_string()).collect(),
            window: None,
            no_reference: false,
        }
    }

    #[test]
    fn the_plan_defaults_to_the_issues_cases_and_follows_the_flags() {
        let plan = Plan::from_flags(&flags(&[], &[])).unwrap();
        assert_eq!(plan.connections, [1, 100, 1_000, 10_000]);
        assert_eq!(plan.transports, [Transport::Tcp, Transport::Tls]);
        assert_eq!((plan.window, plan.duration), (20, Duration::from_secs(5)));
        assert_eq!((plan.devices(), plan.idle_connections()), (10_000, 10_000));

        let plan = Plan::from_flags(&flags(&[100, 1, 100], &["tls", "tls"])).unwrap();
        assert_eq!(plan.connections, [1, 100]);
        assert_eq!(plan.transports, [Transport::Tls]);
        assert_eq!(plan.idle_connections(), 100);
        assert!(Plan::from_flags(&flags(&[], &["quic"])).is_err());
        assert!(Plan::from_flags(&flags(&[20_000], &[])).is_err());
    }

    #[test]
    fn device_ids_match_the_load_generators() {
        assert_eq!(device_id(0), "bench-00000");
        assert_eq!(device_id(9_999), "bench-09999");
    }

    #[test]
    fn runs_are_summarized_by_median_errors_summed_and_peaks_maxed() {
        let run = |rate, errors, cores, hwm| Run {
            rate,
            p50_ms: rate / 1000.0,
            p99_ms: rate / 100.0,
            acked_total: rate * 7.0,
            errors,
            cores: vec![cores, 0.5],
            rss_kib: vec![1024.0, 2048.0],
            hwm_kib: vec![hwm, 4096.0],
        };
        let summary = summarize(&[
            run(1000.0, 0.0, 0.9, 5000.0),
            run(3000.0, 1.0, 1.1, 9000.0),
            run(2000.0, 2.0, 1.0, 7000.0),
        ]);
        assert_eq!((summary.rate, summary.p50_ms), (2000.0, 2.0));
        assert_eq!((summary.errors, summary.acked_total), (3.0, 42_000.0));
        assert_eq!(summary.cores, [1.0, 0.5]);
        assert_eq!(summary.hwm_kib, [9000.0, 4096.0]);
    }

    #[test]
    fn idle_memory_is_the_growth_per_connection() {
        assert_eq!(kib_per_connection(100_000, 180_000, 10_000), 8.0);
        assert!(kib_per_connection(1, 2, 0).is_nan());
    }

    #[test]
    fn the_table_puts_the_ratio_after_each_reference_row() {
        let summary = |rate: f64| Run {
            rate,
            p50_ms: 1.0,
            p99_ms: 2.0,
            cores: vec![1.0],
            rss_kib: vec![1024.0],
            hwm_kib: vec![2048.0],
            ..Run::default()
        };
        let rows = [
            Row {
                transport: Transport::Tcp,
                connections: 100,
                server: "gyre",
                summary: summary(30_000.0),
            },
            Row {
                transport: Transport::Tcp,
                connections: 100,
                server: "mosquitto",
                summary: summary(20_000.0),
            },
        ];
        let table = load_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[1].starts_with("|---"), "{table}");
        assert!(
            lines[4].contains("gyre/mosquitto") && lines[4].contains("1.50x"),
            "{table}"
        );
        let widths: Vec<usize> = lines.iter().map(|line| line.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
        let verdict = verdicts(&rows, &[]);
        assert_eq!(verdict.len(), 1);
        assert!(verdict[0].ends_with("(1.50x), met"), "{verdict:?}");
    }

    #[test]
    fn idle_memory_is_judged_only_at_the_targets_connection_count() {
        let idle = |connected: u64, kib_per_connection: f64| Idle {
            connected,
            errors: 0,
            rss_before_kib: 0,
            rss_with_kib: 0,
            kib_per_connection,
        };
        let verdict = |idle: Idle| verdicts(&[], &[("gyre", idle)]).join("\n");
        let few = verdict(idle(100, 45.5));
        assert!(
            few.contains("at 100 connections: 45.50 KiB") && !few.contains("MISSED"),
            "{few}"
        );
        assert!(few.contains("judged at 10000 connections"), "{few}");
        assert!(verdict(idle(10_000, 13.8)).ends_with("13.80 KiB, met"));
        assert!(verdict(idle(10_000, 16.2)).ends_with("16.20 KiB, MISSED"));
    }
}
