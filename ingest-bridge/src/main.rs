//! The device gateway: MQTT 3.1.1 over TLS in the IoT Hub and DPS dialect, batching telemetry
//! into the Spin application's ingest component.
//!
//! Not built yet: this binary is a placeholder until the ingest-bridge issue lays its layers
//! (codec, connection, session, router, batcher, upstream, shutdown).

fn main() {
    eprintln!("gyre-ingest-bridge: not implemented yet; see the ingest-bridge issue");
    std::process::exit(2);
}
