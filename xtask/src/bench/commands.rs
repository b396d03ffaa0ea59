//! `cargo xtask bench commands`: commands and desired properties through the whole path (issue
//! 5's "Measure"): REST call → registry component → the bridge's control API → MQTT → device →
//! back, with 100 connected devices.
//!
//! Steps, in a fresh temporary directory:
//! 1. start gyre-host (its `bridge_control_url` pointing at a free port), bootstrap the
//!    administrator token, publish the thermostat template, create `bench-00000`.. assigned to
//!    it and read their keys;
//! 2. start gyre-ingest-bridge with its control API on that port;
//! 3. `gyre-mqtt-load respond`: the devices connect over plain TCP, subscribe to direct methods
//!    and desired properties, answer every method at once and count the pushes;
//! 4. gyre-loadgen, `--repeat` times per case, spreading requests over the devices:
//!    `POST /api/devices/{id}/commands/getMaxMinReport` closed loop (throughput) and open loop
//!    at a fixed rate (latency, the target), then `PATCH /api/devices/{id}/properties` with a
//!    writable property (each 202 is one push);
//! 5. release the devices and check they answered and received at least what REST reported.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::ingest::{create_devices, put_template, raise_file_limit, start_bridge, ScratchApp};
use super::{json_number, measure, print_table, Load, Measurement, STARTUP_TIMEOUT};
use crate::build;
use crate::flags::BenchFlags;
use crate::process::Supervised;
use crate::project::Project;

const DEVICES: usize = 100;
const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";
/// The public IoT Plug and Play thermostat: `getMaxMinReport` and writable `targetTemperature`.
const THERMOSTAT_MODEL: &str = include_str!("../../../shared/domain/src/dtdl/fixtures/thermostat.json");
/// Concurrent REST clients in the closed-loop cases.
const CLIENTS: usize = 16;
/// The open-loop case's rate, commands per second over all devices.
const OPEN_LOOP_RATE: u32 = 200;
/// The issue's target for a command round trip on loopback.
const TARGET_P99_MS: f64 = 20.0;
const DEFAULT_DURATION: Duration = Duration::from_secs(5);

pub fn run(project: &Project, bench_flags: &BenchFlags) -> anyhow::Result<()> {
    build::components(project, build::APP_COMPONENTS)?;
    build::native(project)?;
    raise_file_limit()?;

    let app = ScratchApp::prepare(project, "commands")?;
    let control = free_port()?;

    // 1. The application, the template and the devices.
    let (mut host, host_addr, token) = app.start_host(
        project,
        &[(
            "SPIN_VARIABLE_BRIDGE_CONTROL_URL",
            format!("http://127.0.0.1:{control}"),
        )],
    )?;
    put_template(host_addr, &token, THERMOSTAT, THERMOSTAT_MODEL, "Thermostat")?;
    let keys = create_devices(host_addr, &token, DEVICES, THERMOSTAT)?;
    let keys_path = app.scratch.path.join("device-keys.txt");
    std::fs::write(&keys_path, keys.join("\n"))
        .with_context(|| format!("writing {}", keys_path.display()))?;

    // 2. The bridge, with its control API where the registry looks for it.
    let (mut bridge, _tls, tcp) = start_bridge(
        project,
        &app.scratch.path,
        &app.certs,
        host_addr,
        &app.secret,
        &["--control-listen".to_owned(), format!("127.0.0.1:{control}")],
    )?;

    // 3. The devices.
    let mut responder = start_responder(project, tcp, &keys_path)?;

    // 4. The load.
    let url = |rest: &str| format!("http://{host_addr}/api/devices/bench-{{device}}/{rest}");
    let headers = [format!("Authorization: {token}")];
    let command_url = url("commands/getMaxMinReport");
    let properties_url = url("properties");
    let command_body = r#"{"request":"2026-01-01T00:00:00Z"}"#;
    let closed_loop = |url| -> anyhow::Result<Load> {
        Ok(Load {
            headers: &headers,
            connections: CLIENTS,
            duration: bench_flags.duration_or(DEFAULT_DURATION),
            spread: Some(DEVICES),
            ..Load::closed_loop(url, bench_flags)?
        })
    };
    let cases: Vec<(String, Load)> = vec![
        (
            format!("command round trip, {CLIENTS} clients"),
            Load {
                method: "POST",
                body: command_body,
                ..closed_loop(&command_url)?
            },
        ),
        (
            format!("command round trip, {OPEN_LOOP_RATE}/s"),
            Load {
                method: "POST",
                body: command_body,
                rate: Some(OPEN_LOOP_RATE),
                ..closed_loop(&command_url)?
            },
        ),
        (
            format!("desired property push, {CLIENTS} clients"),
            Load {
                method: "PATCH",
                body: r#"{"targetTemperature":21.5}"#,
                ..closed_loop(&properties_url)?
            },
        ),
    ];
    let mut rows: Vec<(String, Measurement)> = Vec::new();
    for (case, load) in &cases {
        let summary = measure(project, bench_flags, case, load)?;
        rows.push((case.clone(), summary));
    }

    // 5. Release the devices; their report says what they saw.
    drop(responder.child_mut().stdin.take());
    // Progress events come first; the report is the line with the counters.
    let report = std::iter::from_fn(|| responder.lines.recv_timeout(STARTUP_TIMEOUT).ok())
        .find(|line| line.contains("\"methods_answered\""));
    let _ = responder.process.wait_timeout(Duration::from_secs(10));
    let _ = bridge.stop(Duration::from_secs(10));
    let _ = host.stop(Duration::from_secs(10));

    println!();
    print_table(&rows);
    if let Some(report) = &report {
        let answered = json_number(report, "methods_answered").unwrap_or(f64::NAN);
        let pushes = json_number(report, "desired_received").unwrap_or(f64::NAN);
        println!(
            "\ndevices: {answered:.0} methods answered, {pushes:.0} desired-property pushes \
             received (warm-ups included)"
        );
    } else {
        println!("\ndevices: no report from gyre-mqtt-load");
    }
    let open_loop = &rows[1].1;
    let verdict = if open_loop.p99_ms < TARGET_P99_MS && open_loop.non_2xx == 0.0 {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "target: command round trip p99 < {TARGET_P99_MS} ms at {OPEN_LOOP_RATE}/s: {:.3} ms, {verdict}",
        open_loop.p99_ms
    );
    Ok(())
}

/// A free loopback port for the bridge's control API, which the host must know before the
/// bridge starts.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// gyre-mqtt-load in `respond` mode, and its output lines.
struct Responder {
    process: Supervised,
    lines: mpsc::Receiver<String>,
}

impl Responder {
    fn child_mut(&mut self) -> &mut std::process::Child {
        self.process.child_mut()
    }
}

/// Starts the devices and waits until every one is connected and subscribed.
fn start_responder(
    project: &Project,
    addr: SocketAddr,
    keys: &std::path::Path,
) -> anyhow::Result<Responder> {
    let mut command = Command::new(project.release_binary("gyre-mqtt-load"));
    command
        .arg("respond")
        .args(["--addr", &addr.to_string()])
        .arg("--keys")
        .arg(keys)
        .args(["--connections", &DEVICES.to_string()])
        .args(["--hold", "60m"])
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut process = Supervised::spawn("gyre-mqtt-load", &mut command)?;
    let stdout = process
        .child_mut()
        .stdout
        .take()
        .context("gyre-mqtt-load's stdout was not captured")?;
    let (line_sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_sender.send(line);
        }
    });
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(wait)
            .context("gyre-mqtt-load did not report its devices responding")?;
        if line.contains("\"event\":\"connected\"") {
            let failed = json_number(&line, "connect_errors").unwrap_or(0.0);
            if failed > 0.0 {
                bail!("{failed} devices could not connect: {line}");
            }
        } else if line.contains("\"event\":\"responding\"") {
            return Ok(Responder { process, lines });
        }
    }
}
