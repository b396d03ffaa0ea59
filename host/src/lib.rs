//! Gyre's embedded host: runs a Spin application (`spin.toml`, manifest version 2) on one
//! machine, serving its HTTP components the way Spin does, so that Gyre needs no Spin CLI and
//! the same manifest deploys unchanged to Spin, SpinKube or Fermyon Cloud.
//!
//! Code map, in the order a request meets it:
//! - [`manifest`]: reads and validates `spin.toml`, refusing what the host does not support.
//! - [`routes`]: Spin's route patterns and most-specific-wins matching.
//! - [`variables`]: application variables (`SPIN_VARIABLE_*`) and component templates.
//! - [`runtime_config`]: where store labels live (`--runtime-config-file`).
//! - [`app`]: loads everything above and compiles and links the components, reporting every
//!   problem at once.
//! - [`engine`]: wasmtime configuration: pooling allocator, epoch deadlines, code cache.
//! - [`http`]: the server: a fresh instance per request, Spin's headers, deadlines, chaining.
//! - [`state`]: the per-instance store data; `fermyon:spin/variables`.
//! - [`kv`], [`sqlite`]: `fermyon:spin/key-value` and `sqlite` over durable SQLite files.
//! - [`outbound`]: `allowed_outbound_hosts` and the `wasi:http` outgoing hook.
//! - [`metrics`]: per-route request metrics in Prometheus text.
//!
//! Architecture invariant: the host knows nothing of Gyre's domain. It is a Spin host; anything
//! Gyre-specific belongs in the components.

pub mod app;
pub mod engine;
pub mod http;
pub mod kv;
pub mod manifest;
pub mod metrics;
pub mod outbound;
pub mod routes;
pub mod runtime_config;
pub mod sqlite;
pub mod state;
pub mod variables;

pub use app::{App, HostOptions, LoadError};
pub use engine::PoolLimits;

/// Host bindings for the `fermyon:spin@2.0.0` interfaces in `wit/spin@2.0.0`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/spin@2.0.0",
        world: "fermyon:spin/gyre-host",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::kv::KvStoreHandle,
            "fermyon:spin/sqlite.connection": crate::sqlite::SqliteConnection,
        },
    });
}
