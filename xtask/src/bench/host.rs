//! `cargo xtask bench host`: requests per second and latency through gyre-host, with
//! `wasmtime serve` running the same hello component as the reference.
//!
//! Cases, each measured `--repeat` times with gyre-loadgen (medians reported):
//! - gyre-host, `/hello`: the hello test component, the host's per-request floor;
//! - gyre-host, `/probe?op=work`: the probe component doing one KV set and one SQLite insert;
//! - wasmtime serve, `/hello`: the hello component again, served by wasmtime's own CLI (installed
//!   with `cargo install wasmtime-cli` at the host's wasmtime version if missing), which gives
//!   the ratio gyre-host / wasmtime serve.
//!
//! The app lives in a fresh temporary directory (manifest and state), removed afterwards.
//! The load generator and the servers share this machine's cores; compare ratios, not absolutes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{
    log_tail, measure, print_table, start_gyre_host, Load, Measurement, ScratchDir, STARTUP_TIMEOUT,
};
use crate::build;
use crate::flags::BenchFlags;
use crate::process::Supervised;
use crate::project::{self, Project};

/// The wasmtime version the host links (workspace Cargo.toml), so the reference runs the same
/// engine release.
const WASMTIME_VERSION: &str = "48.0.8";

pub fn run(project: &Project, bench_flags: &BenchFlags) -> anyhow::Result<()> {
    build::run(project)?;
    let hello_wasm = project.wasm_component("gyre-test-hello");
    let probe_wasm = project.wasm_component("gyre-test-probe");
    // Find (or install) the reference first, so that a problem with it shows before minutes of
    // measurements rather than after them.
    let wasmtime = if bench_flags.no_reference {
        None
    } else {
        Some(ensure_wasmtime(project)?)
    };

    // Declared before the servers, so it is removed after they are stopped.
    let scratch = ScratchDir::create("host")?;
    let manifest = scratch.path.join("spin.toml");
    std::fs::write(&manifest, bench_manifest(&hello_wasm, &probe_wasm))
        .with_context(|| format!("writing {}", manifest.display()))?;

    let mut rows: Vec<(String, Measurement)> = Vec::new();
    {
        let (mut host, addr) =
            start_gyre_host(project, &scratch.path.join("gyre-host.log"), |command| {
                command
                    .arg(&manifest)
                    .arg("--state-dir")
                    .arg(scratch.path.join(".spin"));
            })?;
        for (case, path) in [
            ("gyre-host  /hello", "/hello"),
            ("gyre-host  /probe?op=work (KV+SQLite)", "/probe?op=work"),
        ] {
            let url = format!("http://{addr}{path}");
            let summary = measure(
                project,
                bench_flags,
                case,
                &Load::closed_loop(&url, bench_flags)?,
            )?;
            rows.push((case.to_string(), summary));
        }
        host.stop(Duration::from_secs(10))?;
    }
    if let Some(wasmtime) = &wasmtime {
        let (mut server, addr) = start_wasmtime_serve(wasmtime, &hello_wasm, &scratch.path)?;
        let case = "wasmtime serve  /hello";
        let url = format!("http://{addr}/hello");
        let summary = measure(
            project,
            bench_flags,
            case,
            &Load::closed_loop(&url, bench_flags)?,
        )?;
        rows.push((case.to_string(), summary));
        server.stop(Duration::from_secs(10))?;
    }

    println!();
    println!(
        "bench host: {} connections, {:?} per run after {:?} warm-up, median of {} run(s), {} CPU(s)",
        bench_flags.http_connections()?,
        bench_flags.duration_or(super::DEFAULT_DURATION),
        bench_flags.warmup_or(super::DEFAULT_WARMUP),
        bench_flags.repeat,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    print_table(&rows);
    if let [(_, gyre_hello), _, (_, wasmtime_hello)] = rows.as_slice() {
        println!(
            "ratio gyre-host / wasmtime serve on /hello: req/s {:.2}x, p50 {:.2}x, p99 {:.2}x",
            gyre_hello.rps / wasmtime_hello.rps,
            gyre_hello.p50_ms / wasmtime_hello.p50_ms,
            gyre_hello.p99_ms / wasmtime_hello.p99_ms,
        );
    }
    if rows
        .iter()
        .any(|(_, summary)| summary.errors > 0.0 || summary.non_2xx > 0.0)
    {
        eprintln!("xtask: some runs had errors or non-2xx answers; their numbers are suspect");
    }
    Ok(())
}

fn bench_manifest(hello_wasm: &Path, probe_wasm: &Path) -> String {
    // `{:?}` quotes and escapes the paths the way TOML basic strings expect.
    format!(
        r#"spin_manifest_version = 2

[application]
name = "gyre-bench-host"
version = "0.1.0"

[[trigger.http]]
route = "/hello"
component = "hello"

[component.hello]
source = {hello:?}

[[trigger.http]]
route = "/probe"
component = "probe"

[component.probe]
source = {probe:?}
key_value_stores = ["default"]
sqlite_databases = ["default"]
"#,
        hello = hello_wasm.display().to_string(),
        probe = probe_wasm.display().to_string(),
    )
}

/// Starts `wasmtime serve` on a free port and waits until it accepts connections.
fn start_wasmtime_serve(
    wasmtime: &Path,
    hello_wasm: &Path,
    scratch: &Path,
) -> anyhow::Result<(Supervised, SocketAddr)> {
    // wasmtime serve prints its address only as text on stderr, so pick the port here. Another
    // process could take it between the drop and wasmtime's bind; the start check below catches
    // that.
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log_path = scratch.join("wasmtime-serve.log");
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new(wasmtime);
    command
        .arg("serve")
        .args(["--addr", &addr.to_string()])
        .arg(wasi_cli_flag(wasmtime)?)
        .arg(hello_wasm)
        .env_remove("RUST_BACKTRACE")
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut server = Supervised::spawn("wasmtime serve", &mut command)?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = server.try_wait()? {
            bail!(
                "wasmtime serve exited ({status}) before serving:\n{}",
                log_tail(&log_path)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "wasmtime serve did not listen on {addr}:\n{}",
                log_tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, addr))
}

/// The `-S` option that links the wasi:cli imports (environment, stdio, exit) every Rust
/// component has: `-Scli` in recent wasmtime, `-Scommon` in older ones.
fn wasi_cli_flag(wasmtime: &Path) -> anyhow::Result<&'static str> {
    let help = project::read(Command::new(wasmtime).args(["serve", "-S", "help"]))?;
    let has_option = |name: &str| {
        help.lines().any(|line| {
            line.trim_start()
                .strip_prefix("-S")
                .unwrap_or(line)
                .trim_start()
                .starts_with(name)
        })
    };
    if has_option("cli") {
        Ok("-Scli")
    } else if has_option("common") {
        Ok("-Scommon")
    } else {
        bail!("`wasmtime serve -S help` lists neither `cli` nor `common`:\n{help}")
    }
}

/// A `wasmtime` at WASMTIME_VERSION: from PATH or cargo's bin directory, else installed with
/// `cargo install` (a long compile, done once per machine).
fn ensure_wasmtime(project: &Project) -> anyhow::Result<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("bin").join("wasmtime"));
    let candidates = std::iter::once(PathBuf::from("wasmtime")).chain(cargo_bin);
    for candidate in candidates.clone() {
        if let Ok(version) = project::read(Command::new(&candidate).arg("--version")) {
            if version.contains(WASMTIME_VERSION) {
                return Ok(candidate);
            }
            eprintln!(
                "xtask: ignoring {} ({}), not {WASMTIME_VERSION}",
                candidate.display(),
                version.trim()
            );
        }
    }
    eprintln!(
        "xtask: installing wasmtime-cli {WASMTIME_VERSION} for the reference (a long compile, once; \
         skip it with --no-reference)"
    );
    project::run(project.cargo().args([
        "install",
        "wasmtime-cli",
        "--version",
        WASMTIME_VERSION,
        "--locked",
    ]))?;
    for candidate in candidates {
        if project::read(Command::new(&candidate).arg("--version"))
            .is_ok_and(|v| v.contains(WASMTIME_VERSION))
        {
            return Ok(candidate);
        }
    }
    bail!("installed wasmtime-cli {WASMTIME_VERSION} but cannot find it in PATH or cargo's bin directory")
}
