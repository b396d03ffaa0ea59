//! `gyre-loadgen`: an HTTP/1.1 load generator for `cargo xtask bench`.
//!
//! ```text
//! gyre-loadgen --url http://127.0.0.1:3000/hello --connections 16 --duration 10s
//!              [--warmup 2s] [--method GET|POST] [--body STR] [--threads N]
//!              [--header "Name: value"]... [--rate N] [--spread N]
//! ```
//! With `--spread N`, `{device}` in the URL's path becomes `00000`...`{N-1:05}` in turn, so one
//! run addresses N devices (`/api/devices/bench-{device}/commands/...`).
//! Each connection is one keep-alive HTTP/1.1 connection. Closed loop (the default), it sends its
//! next request as soon as the previous response body has been read: the result is the server's
//! throughput. With `--rate N` the load is open loop: N requests per second in all, spread evenly
//! over the connections, each request sent at its scheduled time (or at once when the previous
//! answer came late) and its latency counted from that scheduled time, so a slow server is not
//! flattered by sending less (no coordinated omission). The result is one JSON line on stdout:
//! `{"requests", "errors", "non_2xx", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms"}`.
//!
//! Code map: `main.rs` reads the command line and prints; `target.rs` parses the URL (and refuses
//! anything but loopback); `load.rs` drives the connections; `histogram.rs` keeps latencies.
//! Deliberately absent: TLS, HTTP/2, and any non-loopback target.

mod load;
mod target;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use gyre_loadgen::{parse_duration, positive};
use http::{HeaderName, HeaderValue, Method};

const USAGE: &str = "\
usage: gyre-loadgen --url http://127.0.0.1:PORT/PATH [--connections 16] [--duration 10s]
                    [--warmup 0s] [--method GET] [--body STR] [--threads 1]
                    [--header \"Name: value\"]... [--rate REQUESTS_PER_SECOND] [--spread N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gyre-loadgen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let (config, threads) = parse_args(&args)?;
    // One worker thread by default: on a small machine the server under test needs the other
    // cores more than the client does, and 16 connections on one thread keep a server busy.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(load::run(config))?;
    println!("{}", report.to_json());
    Ok(())
}

fn parse_args(args: &[String]) -> anyhow::Result<(load::Config, usize)> {
    let mut url = None;
    let mut connections = 16;
    let mut duration = Duration::from_secs(10);
    let mut warmup = Duration::ZERO;
    let mut method = Method::GET;
    let mut body = Bytes::new();
    let mut threads = 1;
    let mut headers = Vec::new();
    let mut rate = None;
    let mut spread = None;

    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("`{flag}` needs a value\n{USAGE}"))?
            .as_str();
        match flag.as_str() {
            "--url" => url = Some(target::Target::parse(value)?),
            "--connections" => connections = positive("--connections", value)?,
            "--duration" => duration = parse_duration(value)?,
            "--warmup" => warmup = parse_duration(value)?,
            "--method" => {
                method = Method::from_bytes(value.to_ascii_uppercase().as_bytes())
                    .with_context(|| format!("invalid method `{value}`"))?;
            }
            "--body" => body = Bytes::copy_from_slice(value.as_bytes()),
            "--threads" => threads = positive("--threads", value)?,
            "--header" => headers.push(parse_header(value)?),
            "--rate" => rate = Some(positive("--rate", value)? as u64),
            "--spread" => spread = Some(positive("--spread", value)?),
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let Some(target) = url else {
        bail!("`--url` is required\n{USAGE}")
    };
    if duration.is_zero() {
        bail!("`--duration` must be more than zero");
    }
    if spread.is_some() != target.path_and_query.contains(load::DEVICE_PLACEHOLDER) {
        bail!("`--spread N` and `{{device}}` in the URL go together");
    }
    Ok((
        load::Config {
            target,
            connections,
            duration,
            warmup,
            method,
            body,
            headers,
            rate,
            spread,
        },
        threads,
    ))
}

/// `Name: value`, as curl's `-H` spells a header.
fn parse_header(raw: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = raw
        .split_once(':')
        .with_context(|| format!("`--header {raw}`: expected `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("`--header {raw}`: invalid header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .with_context(|| format!("`--header {raw}`: invalid header value"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> anyhow::Result<(load::Config, usize)> {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        parse_args(&args)
    }

    #[test]
    fn headers_repeat_and_keep_their_value_verbatim() {
        let (config, _) = parse_strs(&[
            "--url",
            "http://127.0.0.1:1/",
            "--header",
            "Authorization: SharedAccessSignature sr=a&sig=b%3D&skn=c&se=1",
            "--header",
            "x-extra:1",
        ])
        .unwrap();
        let headers: Vec<(&str, &str)> = config
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                (
                    "authorization",
                    "SharedAccessSignature sr=a&sig=b%3D&skn=c&se=1"
                ),
                ("x-extra", "1")
            ]
        );
        assert_eq!(config.rate, None);
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn spread_needs_the_device_placeholder() {
        let url = "http://127.0.0.1:1/api/devices/bench-{device}/commands/c";
        let (config, _) = parse_strs(&["--url", url, "--spread", "100"]).unwrap();
        assert_eq!(config.spread, Some(100));
        assert!(parse_strs(&["--url", url]).is_err());
        assert!(parse_strs(&["--url", "http://127.0.0.1:1/", "--spread", "2"]).is_err());
    }

    #[test]
    fn rate_is_a_positive_count() {
        let (config, _) = parse_strs(&["--url", "http://127.0.0.1:1/", "--rate", "1000"]).unwrap();
        assert_eq!(config.rate, Some(1000));
        assert!(parse_strs(&["--url", "http://127.0.0.1:1/", "--rate", "0"]).is_err());
    }
}
