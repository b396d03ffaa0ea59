//! The command line of `cargo xtask`, parsed by hand into a `Task`.
//!
//! A hand parser instead of clap keeps xtask's cold compile to a few seconds. Durations use the
//! same spelling as the host's `--request-timeout` (`500ms`, `2s`, `1m`).

use std::time::Duration;

use anyhow::{bail, Context};

pub const HELP: &str = "\
cargo xtask <TASK>

Tasks:
  build                   build the wasm components (wasm32-wasip2) and the native binaries, release
  up [-- HOST_ARGS...]    build, then run gyre-host on spin.toml (127.0.0.1:3000, metrics on :9090)
  test                    build, then unit tests and end-to-end tests (release profile)
  bench                   list the benchmarks
  bench host [OPTIONS]    HTTP throughput of gyre-host, with `wasmtime serve` as the reference
  bench registry [OPTIONS]
                          REST latency and throughput of the registry with 100,000 devices
  bench ingest [OPTIONS]  MQTT devices publishing through the bridge, with mosquitto as the
                          reference

Options of the benchmarks:
  --repeat N              measurements per case; the table shows medians (default 3)
  --duration D            measured time per run, e.g. 10s (default 10s; ingest 5s)
  --warmup D              unmeasured time before each run (default 2s)
  --connections N[,N..]   keep-alive connections of the load generator (default 16); `ingest`:
                          the device counts to run (default 1,100,1000,10000)
  --transport T[,T..]     `ingest` only: tcp, tls or both (default tcp,tls)
  --window N              `ingest` only: PUBACKs outstanding per device (default 20)
  --no-reference          skip the reference (`host`: `wasmtime serve`; `ingest`: mosquitto)
                          and its installation
";

/// What the user asked for.
#[derive(Debug, PartialEq)]
pub enum Task {
    Help,
    Build,
    /// `host_args` are appended to the host's default command line.
    Up {
        host_args: Vec<String>,
    },
    Test,
    Bench(BenchFlags),
}

#[derive(Debug, PartialEq)]
pub struct BenchFlags {
    /// `None` lists the benchmarks.
    pub target: Option<String>,
    pub repeat: usize,
    /// `None`: the benchmark's default (`bench::BenchFlags::duration_or`).
    pub duration: Option<Duration>,
    pub warmup: Option<Duration>,
    /// `--connections 1,100`; empty: the benchmark's default.
    pub connections: Vec<usize>,
    /// `--transport tcp,tls` (`ingest`); empty: the benchmark's default.
    pub transports: Vec<String>,
    /// `--window N` (`ingest`).
    pub window: Option<usize>,
    /// Skip the reference (for `host`: `wasmtime serve`; for `ingest`: mosquitto).
    pub no_reference: bool,
}

pub fn parse(args: &[String]) -> anyhow::Result<Task> {
    let Some((task_name, rest)) = args.split_first() else {
        return Ok(Task::Help);
    };
    match task_name.as_str() {
        "help" | "-h" | "--help" => Ok(Task::Help),
        "build" => no_more_args("build", rest).map(|()| Task::Build),
        "test" => no_more_args("test", rest).map(|()| Task::Test),
        "up" => {
            // Everything after `--` goes to the host untouched; `cargo xtask up --x` without the
            // separator is almost certainly a typo, so it is rejected rather than guessed at.
            let host_args = match rest.split_first() {
                None => Vec::new(),
                Some((separator, host_args)) if separator == "--" => host_args.to_vec(),
                Some((unexpected, _)) => {
                    bail!("unexpected argument `{unexpected}` to `up`; pass host flags after `--`")
                }
            };
            Ok(Task::Up { host_args })
        }
        "bench" => parse_bench(rest).map(Task::Bench),
        other => bail!("unknown task `{other}`; run `cargo xtask help`"),
    }
}

fn parse_bench(args: &[String]) -> anyhow::Result<BenchFlags> {
    let mut bench_flags = BenchFlags {
        target: None,
        repeat: 3,
        duration: None,
        warmup: None,
        connections: Vec::new(),
        transports: Vec::new(),
        window: None,
        no_reference: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value_of = |flag: &str| {
            args.next()
                .with_context(|| format!("`{flag}` needs a value"))
                .map(String::as_str)
        };
        match arg.as_str() {
            "--repeat" => {
                bench_flags.repeat = parse_count("--repeat", value_of("--repeat")?)?;
            }
            "--connections" => {
                bench_flags.connections = value_of("--connections")?
                    .split(',')
                    .map(|count| parse_count("--connections", count.trim()))
                    .collect::<anyhow::Result<_>>()?;
            }
            "--transport" => {
                bench_flags.transports = value_of("--transport")?
                    .split(',')
                    .map(|transport| transport.trim().to_owned())
                    .collect();
            }
            "--window" => {
                bench_flags.window = Some(parse_count("--window", value_of("--window")?)?)
            }
            "--duration" => bench_flags.duration = Some(parse_duration(value_of("--duration")?)?),
            "--warmup" => bench_flags.warmup = Some(parse_duration(value_of("--warmup")?)?),
            "--no-reference" => bench_flags.no_reference = true,
            flag if flag.starts_with('-') => bail!("unknown option `{flag}` to `bench`"),
            target if bench_flags.target.is_none() => bench_flags.target = Some(target.to_owned()),
            extra => bail!("unexpected argument `{extra}` to `bench`"),
        }
    }
    Ok(bench_flags)
}

fn no_more_args(task_name: &str, rest: &[String]) -> anyhow::Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => bail!("unexpected argument `{extra}` to `{task_name}`"),
    }
}

fn parse_count(flag: &str, raw: &str) -> anyhow::Result<usize> {
    match raw.parse::<usize>() {
        Ok(0) | Err(_) => bail!("`{flag}` takes a positive integer, got `{raw}`"),
        Ok(count) => Ok(count),
    }
}

/// Parses `250ms`, `10s`, `1m`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> anyhow::Result<Duration> {
    let (number, unit_millis) = if let Some(number) = raw.strip_suffix("ms") {
        (number, 1)
    } else if let Some(number) = raw.strip_suffix('s') {
        (number, 1_000)
    } else if let Some(number) = raw.strip_suffix('m') {
        (number, 60_000)
    } else {
        (raw, 1_000)
    };
    let number: u64 = number
        .parse()
        .ok()
        .with_context(|| format!("invalid duration `{raw}`; use e.g. 500ms, 10s, 1m"))?;
    Ok(Duration::from_millis(number * unit_millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> anyhow::Result<Task> {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        parse(&args)
    }

    #[test]
    fn no_task_shows_help() {
        assert_eq!(parse_strs(&[]).unwrap(), Task::Help);
    }

    #[test]
    fn up_passes_everything_after_the_separator_to_the_host() {
        let task = parse_strs(&["up", "--", "--listen", "127.0.0.1:0"]).unwrap();
        let expected_args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        assert_eq!(
            task,
            Task::Up {
                host_args: expected_args
            }
        );
        assert!(parse_strs(&["up", "--listen"]).is_err());
    }

    #[test]
    fn bench_without_target_lists_and_options_override_defaults() {
        let Task::Bench(listing) = parse_strs(&["bench"]).unwrap() else {
            panic!("not bench")
        };
        assert_eq!(listing.target, None);
        assert_eq!(listing.repeat, 3);

        let Task::Bench(host) = parse_strs(&[
            "bench",
            "host",
            "--repeat",
            "1",
            "--duration",
            "3s",
            "--no-reference",
        ])
        .unwrap() else {
            panic!("not bench")
        };
        assert_eq!(host.target.as_deref(), Some("host"));
        assert_eq!(
            (host.repeat, host.duration, host.no_reference),
            (1, Some(Duration::from_secs(3)), true)
        );
        assert_eq!((host.warmup, host.connections.len()), (None, 0));
        assert!(parse_strs(&["bench", "host", "--repeat", "0"]).is_err());
        assert!(parse_strs(&["bench", "host", "--bogus"]).is_err());
    }

    #[test]
    fn ingest_takes_lists_of_connection_counts_and_transports() {
        let Task::Bench(ingest) = parse_strs(&[
            "bench",
            "ingest",
            "--connections",
            "1,100",
            "--transport",
            "tls",
            "--window",
            "1",
        ])
        .unwrap() else {
            panic!("not bench")
        };
        assert_eq!(ingest.connections, [1, 100]);
        assert_eq!(ingest.transports, ["tls"]);
        assert_eq!(ingest.window, Some(1));
        assert!(parse_strs(&["bench", "ingest", "--connections", "1,,100"]).is_err());
        assert!(parse_strs(&["bench", "ingest", "--window", "0"]).is_err());
    }

    #[test]
    fn durations_accept_the_hosts_spelling() {
        let cases = [
            ("500ms", 500),
            ("10s", 10_000),
            ("1m", 60_000),
            ("3", 3_000),
        ];
        for (raw, millis) in cases {
            assert_eq!(
                parse_duration(raw).unwrap(),
                Duration::from_millis(millis),
                "{raw}"
            );
        }
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn unknown_tasks_are_rejected() {
        assert!(parse_strs(&["deploy"]).is_err());
        assert!(parse_strs(&["build", "extra"]).is_err());
    }
}
