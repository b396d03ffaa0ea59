//! Gyre's domain: the types, decisions and storage schema shared by every Spin component.
//!
//! Code map:
//! - [`store`]: the [`store::Sql`] seam every database access goes through, and the versioned
//!   schema migrations. All SQL lives here.
//! - [`api`]: the JSON wire types of the REST API (IoT Central's error shape, health).
//! - [`time`]: timestamps passed in by callers, and their wire formats.
//!
//! **Architecture Invariant:** no Spin SDK, no tokio, no IO of its own and no clock. A database is
//! reached only through the `Sql` implementation the caller passes in; the current time is an
//! argument. That is what lets every rule here run natively in `cargo test`.

pub mod api;
pub mod auth;
pub mod bridge;
pub mod command;
pub mod device;
pub mod dtdl;
pub mod enrollment;
pub mod group;
pub mod ingest;
pub mod mqtt;
pub mod percent;
pub mod provisioning;
pub mod query;
pub mod store;
pub mod template;
pub mod time;
pub mod twin;
