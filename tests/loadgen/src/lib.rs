//! What gyre-loadgen's two binaries share: the latency histogram.
//!
//! - `gyre-loadgen` (`src/main.rs`): HTTP/1.1 load for `cargo xtask bench host | registry`.
//! - `gyre-mqtt-load` (`src/bin/gyre-mqtt-load/`): MQTT devices for `cargo xtask bench ingest`.

pub mod histogram;
