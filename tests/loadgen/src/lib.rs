//! What gyre-loadgen's two binaries share: the latency histogram and flag parsing.
//!
//! - `gyre-loadgen` (`src/main.rs`): HTTP/1.1 load for `cargo xtask bench host | registry`.
//! - `gyre-mqtt-load` (`src/bin/gyre-mqtt-load/`): MQTT devices for `cargo xtask bench ingest`.

pub mod histogram;

use std::time::Duration;

use anyhow::{bail, Context};

/// A flag's positive integer.
pub fn positive(flag: &str, raw: &str) -> anyhow::Result<usize> {
    match raw.parse::<usize>() {
        Ok(0) | Err(_) => bail!("`{flag}` takes a positive integer, got `{raw}`"),
        Ok(count) => Ok(count),
    }
}

/// `250ms`, `10s`, `1m`, or bare seconds: the spelling of the host's `--request-timeout` and of
/// xtask's flags.
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
