//! The device gateway: MQTT 3.1.1 over TLS in the IoT Hub and DPS dialect, batching telemetry
//! into the Spin application's ingest component.
//!
//! Code map, in the order a packet meets the layers (mini-redis's layering; see
//! `shared/STYLE.md`, "MQTT bridge"):
//!
//! - [`codec`]: MQTT 3.1.1 packets as values. `check` (is a whole frame buffered, is it too
//!   large), `parse` (every field validated, payloads as zero-copy `Bytes`) and `encode`. No IO.
//! - [`server`]: [`run`], the accept loop: a semaphore caps connections, one task per
//!   connection, shutdown notifies every session and waits for them. [`run_tls`] runs the
//!   rustls handshake in front of `server::serve_stream`.
//! - [`tls`]: the rustls server configuration (TLS 1.2 and 1.3, ring) from PEM files, and the
//!   development CA and server certificate of `gyre-ingest-bridge dev-certs`.
//! - [`connection`]: the stream (generic, so TLS slots in) and its read buffer; `read_packet`
//!   and `write_packet`. The only code that touches the socket.
//! - [`session`]: per-client state: CONNECT authentication (hub and DPS dialects),
//!   keep-alive at 1.5 times the client's value, QoS 0/1 with PUBACK after the commit,
//!   subscriptions, session takeover keyed by endpoint kind and client id, token expiry.
//! - [`dps`]: DPS provisioning over MQTT for one connection: register, operation status.
//! - [`twin`]: `$iothub/twin/GET` and reported patches, answered from the registry.
//! - [`registry`]: the HTTP client to the registry's connection endpoint, with a TTL cache.
//! - [`router`]: topic to domain message, through the shared domain crate's parsers.
//! - [`batcher`]: the pure flush policy (size or age) and the task that owns the buffer; sessions
//!   submit over a bounded channel and PUBACK only when the message's batch was committed.
//! - [`upstream`]: the HTTP client to the ingest component: retry with backoff and jitter, a
//!   random UUID batch id as the idempotency key; the `Upstream` trait is the batcher's seam.
//! - [`control`]: the control API the Spin application calls (`--control-listen`, HTTP/1.1):
//!   desired-property pushes, direct methods, notices that C2D messages wait.
//! - [`downlink`]: what the control API hands a hub session over its small bounded channel,
//!   the direct-method calls waiting for their answer (by rid), and C2D delivery state.
//! - [`tick`]: `POST /internal/tick` every second, the application's clock for periodic work.
//! - [`revocation`]: on each tick, disconnects devices that may no longer connect (blocked,
//!   deleted, re-keyed), from the registry's change feed.
//! - Shutdown is the binary's (`main.rs`): stop accepting, notify every session, let the batcher
//!   flush and wait for in-flight batches within a deadline, exit (see `server` and `batcher`).
//!
//! **Architecture Invariant:** the bridge never touches storage; it only calls the Spin
//! application over HTTP.

pub mod batcher;
pub mod codec;
pub mod compactor;
pub mod connection;
pub mod control;
pub mod downlink;
pub mod dps;
pub mod registry;
pub mod revocation;
pub mod router;
pub mod server;
pub mod session;
pub mod tick;
pub mod tls;
pub mod twin;
pub mod upstream;

pub use server::{run, run_tls, BridgeConfig};
