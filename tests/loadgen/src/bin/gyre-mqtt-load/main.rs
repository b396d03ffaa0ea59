//! `gyre-mqtt-load`: simulated MQTT devices for `cargo xtask bench ingest`.
//!
//! ```text
//! gyre-mqtt-load publish --addr 127.0.0.1:8883 --keys KEYS.txt --connections 100
//!                [--ca ca.pem] [--window 8] [--warmup 2s] [--duration 5s] [...]
//! gyre-mqtt-load idle    --addr 127.0.0.1:8883 --group-key KEY --connections 10000
//!                --ca ca.pem [--hold 10s] [...]
//! gyre-mqtt-load respond --addr 127.0.0.1:1883 --keys KEYS.txt --connections 100 [--hold 10m]
//! gyre-mqtt-load count-telemetry --db STATE/sqlite_db.db
//! ```
//! Devices `{prefix}00000`... sign their SAS tokens with their own keys (`--keys`: one a line,
//! as the bench reads them from `/credentials`) or with keys derived from an enrollment group's
//! (`--group-key`, as DPS-provisioned devices do).
//! `publish`: N devices connect, at most `--connect-concurrency` at a time,
//! then all publish QoS 1 JSON telemetry (~100 bytes, the SDKs' property bag) with up to
//! `--window` PUBACKs outstanding each, for `--warmup` then the measured `--duration`; the
//! report gives acknowledged messages per second and publish → PUBACK latency percentiles.
//! `idle`: N devices connect and stay, with PINGREQs, for `--hold`, so the bench can read the
//! server's memory. `respond`: N devices subscribe to direct methods and desired-property
//! pushes, answer every method at once (status 200, the request echoed) and count the pushes,
//! until `--hold` passes or standard input closes (`cargo xtask bench commands`).
//! `count-telemetry`: the telemetry rows in the host's database (inbox and
//! compacted table), which must be at least the acknowledged messages.
//!
//! Output: JSON lines on stdout (progress events, then the report; see `run.rs`).
//! Code map: `main.rs` the command line; `run.rs` a run's phases; `device.rs` one device.
//! Deliberately absent: QoS 0 telemetry, reconnection (a failed device is counted).

mod device;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use gyre_domain::enrollment::SymmetricKey;
use gyre_loadgen::{parse_duration, positive};

use crate::device::Target;
use crate::run::{DeviceKeys, Mode};

const USAGE: &str = "\
usage: gyre-mqtt-load publish|idle|respond --addr 127.0.0.1:PORT --connections N
                      (--group-key BASE64 | --keys FILE)
                      [--ca CA.pem] [--server-name localhost] [--host-name localhost]
                      [--device-prefix bench-] [--connect-concurrency 200] [--keep-alive 60]
                      [--threads 1]
                      publish: [--window 8] [--warmup 2s] [--duration 5s] [--drain 10s]
                      idle, respond: [--hold 10s]
       gyre-mqtt-load count-telemetry --db PATH";

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gyre-mqtt-load: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    match parse_args(&args)? {
        Command::CountTelemetry { db } => {
            println!("{{\"rows\":{}}}", count_telemetry(&db)?);
            Ok(())
        }
        Command::Load(load) => {
            raise_file_limit()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(load.threads)
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let report = runtime.block_on(async {
                let config = load.into_config()?;
                run::run(config).await
            })?;
            println!("{}", report.to_json());
            Ok(())
        }
    }
}

#[derive(Debug, PartialEq)]
enum Command {
    Load(Box<LoadArgs>),
    CountTelemetry { db: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum LoadMode {
    Publish,
    Idle,
    Respond,
}

#[derive(Debug, PartialEq)]
struct LoadArgs {
    mode: LoadMode,
    addr: SocketAddr,
    ca: Option<PathBuf>,
    server_name: String,
    host_name: String,
    group_key: Option<String>,
    keys: Option<PathBuf>,
    device_prefix: String,
    connections: usize,
    connect_concurrency: usize,
    keep_alive_secs: u16,
    threads: usize,
    window: usize,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    hold: Duration,
}

impl LoadArgs {
    fn into_config(self) -> anyhow::Result<run::Config> {
        let tls = match &self.ca {
            Some(ca) => {
                let server_name = rustls_pki_types::ServerName::try_from(self.server_name.clone())
                    .with_context(|| format!("`--server-name {}`", self.server_name))?;
                Some((Target::tls_connector(ca)?, server_name))
            }
            None => None,
        };
        let keys = match (&self.group_key, &self.keys) {
            (Some(group_key), None) => DeviceKeys::Group(
                SymmetricKey::parse(group_key)
                    .ok()
                    .context("`--group-key` is not a base64 symmetric key")?,
            ),
            (None, Some(path)) => {
                let keys = read_keys(path)?;
                if keys.len() < self.connections {
                    bail!(
                        "{} holds {} keys for {} connections",
                        path.display(),
                        keys.len(),
                        self.connections
                    );
                }
                DeviceKeys::Individual(keys)
            }
            _ => bail!("give either `--group-key` or `--keys`\n{USAGE}"),
        };
        Ok(run::Config {
            target: Target {
                addr: self.addr,
                tls,
                host_name: self.host_name,
                keep_alive_secs: self.keep_alive_secs,
            },
            keys,
            device_prefix: self.device_prefix,
            connections: self.connections,
            connect_concurrency: self.connect_concurrency,
            mode: match self.mode {
                LoadMode::Idle => Mode::Idle { hold: self.hold },
                LoadMode::Respond => Mode::Respond { hold: self.hold },
                LoadMode::Publish => Mode::Publish {
                    window: self.window,
                    warmup: self.warmup,
                    duration: self.duration,
                    drain: self.drain,
                },
            },
        })
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Command> {
    let (mode, rest) = args.split_first().context(USAGE)?;
    let mode = match mode.as_str() {
        "publish" => LoadMode::Publish,
        "idle" => LoadMode::Idle,
        "respond" => LoadMode::Respond,
        "count-telemetry" => {
            return match rest {
                [flag, db] if flag == "--db" => Ok(Command::CountTelemetry { db: db.into() }),
                _ => bail!("`count-telemetry` takes `--db PATH`\n{USAGE}"),
            }
        }
        other => bail!("unknown mode `{other}`\n{USAGE}"),
    };
    let mut addr = None;
    let mut connections = None;
    let mut load = LoadArgs {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ca: None,
        server_name: "localhost".to_owned(),
        host_name: "localhost".to_owned(),
        group_key: None,
        keys: None,
        device_prefix: "bench-".to_owned(),
        connections: 0,
        connect_concurrency: 200,
        keep_alive_secs: 60,
        threads: 1,
        window: 8,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(5),
        drain: Duration::from_secs(10),
        hold: Duration::from_secs(10),
    };
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("`{flag}` needs a value\n{USAGE}"))?
            .as_str();
        match flag.as_str() {
            "--addr" => {
                let parsed: SocketAddr = value
                    .parse()
                    .with_context(|| format!("`--addr {value}`: expected IP:PORT"))?;
                if !parsed.ip().is_loopback() {
                    bail!("`--addr {value}`: only loopback targets are allowed");
                }
                addr = Some(parsed);
            }
            "--ca" => load.ca = Some(value.into()),
            "--server-name" => load.server_name = value.to_owned(),
            "--host-name" => load.host_name = value.to_owned(),
            "--group-key" => load.group_key = Some(value.to_owned()),
            "--keys" => load.keys = Some(value.into()),
            "--device-prefix" => load.device_prefix = value.to_owned(),
            "--connections" => connections = Some(positive("--connections", value)?),
            "--connect-concurrency" => {
                load.connect_concurrency = positive("--connect-concurrency", value)?;
            }
            "--keep-alive" => {
                load.keep_alive_secs = u16::try_from(positive("--keep-alive", value)?)
                    .ok()
                    .context("`--keep-alive` is at most 65535 seconds")?;
            }
            "--threads" => load.threads = positive("--threads", value)?,
            "--window" => load.window = positive("--window", value)?,
            "--warmup" => load.warmup = parse_duration(value)?,
            "--duration" => load.duration = parse_duration(value)?,
            "--drain" => load.drain = parse_duration(value)?,
            "--hold" => load.hold = parse_duration(value)?,
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    load.addr = addr.with_context(|| format!("`--addr` is required\n{USAGE}"))?;
    if load.group_key.is_some() == load.keys.is_some() {
        bail!("give either `--group-key` or `--keys`\n{USAGE}");
    }
    load.connections =
        connections.with_context(|| format!("`--connections` is required\n{USAGE}"))?;
    if mode == LoadMode::Publish && load.duration.is_zero() {
        bail!("`--duration` must be more than zero");
    }
    Ok(Command::Load(Box::new(load)))
}

/// Device keys from `path`, one per line in device order (`{prefix}00000` first): base64, or
/// `device-id key` (the id is then ignored; the line's position decides).
fn read_keys(path: &std::path::Path) -> anyhow::Result<Vec<SymmetricKey>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(idx, line)| {
            let key = line.split_whitespace().last().unwrap_or_default();
            SymmetricKey::parse(key)
                .ok()
                .with_context(|| format!("{} line {}: not a key", path.display(), idx + 1))
        })
        .collect()
}

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor.
fn raise_file_limit() -> anyhow::Result<()> {
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
    Ok(())
}

/// Telemetry rows stored: those still in the inbox plus those compacted into `telemetry`
/// (`gyre_domain::store::telemetry`: a row is in exactly one of the two).
fn count_telemetry(db: &std::path::Path) -> anyhow::Result<u64> {
    let connection = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", db.display()))?;
    connection
        .busy_timeout(Duration::from_secs(10))
        .context("setting a busy timeout")?;
    let rows: i64 = connection
        .query_row(
            "SELECT (SELECT count(*) FROM telemetry_inbox) + (SELECT count(*) FROM telemetry)",
            [],
            |row| row.get(0),
        )
        .with_context(|| format!("counting telemetry rows in {}", db.display()))?;
    Ok(rows as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> anyhow::Result<Command> {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        parse_args(&args)
    }

    #[test]
    fn publish_takes_defaults_and_overrides() {
        let Command::Load(load) = parse_strs(&[
            "publish",
            "--addr",
            "127.0.0.1:1883",
            "--group-key",
            "AAAA",
            "--connections",
            "100",
            "--window",
            "1",
            "--duration",
            "500ms",
        ])
        .unwrap() else {
            panic!("not a load")
        };
        assert_eq!(load.mode, LoadMode::Publish);
        assert_eq!(load.addr.port(), 1883);
        assert_eq!(
            (load.connections, load.window, load.duration, load.warmup),
            (100, 1, Duration::from_millis(500), Duration::from_secs(2))
        );
        assert_eq!((load.ca, load.connect_concurrency), (None, 200));
    }

    #[test]
    fn required_flags_bad_values_and_remote_targets_are_refused() {
        let base = ["idle", "--addr", "127.0.0.1:1", "--group-key", "AAAA"];
        assert!(parse_strs(&base).is_err(), "--connections is required");
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse_strs(&args)
        };
        assert!(with(&["--connections", "10"]).is_ok());
        assert!(
            with(&["--connections", "10", "--keys", "/keys.txt"]).is_err(),
            "a group key and a key file at once"
        );
        assert!(with(&["--connections", "0"]).is_err());
        assert!(with(&["--connections", "10", "--hold", "ten"]).is_err());
        assert!(with(&["--connections", "10", "--bogus", "1"]).is_err());
        assert!(parse_strs(&[
            "idle",
            "--addr",
            "10.0.0.1:1",
            "--group-key",
            "AAAA",
            "--connections",
            "1"
        ])
        .is_err());
        assert_eq!(
            parse_strs(&["count-telemetry", "--db", "/x/sqlite_db.db"]).unwrap(),
            Command::CountTelemetry {
                db: "/x/sqlite_db.db".into()
            }
        );
    }
}
