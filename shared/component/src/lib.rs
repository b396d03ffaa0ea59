//! The glue every Gyre Spin component shares: storage over Spin's SQLite, JSON responses, and
//! IoT Central-shaped errors.
//!
//! Code map:
//! - [`SpinSql`]: gyre-domain's `Sql` over `spin_sdk::sqlite`.
//! - [`ApiError`] and [`api`]: a handler returns `Result<Response, ApiError>`; `api` wraps it
//!   for the router, giving each request an id and turning errors into
//!   `{"error": {"code", "message", "requestId", "time"}}`.
//! - [`json_response`], [`now`]: the small helpers handlers use.
//!
//! **Architecture Invariant:** thin. Nothing here decides anything about devices, rules or
//! schema; that is gyre-domain's job. Only the Spin interfaces our hosts implement are used:
//! `spin_sdk::{http, sqlite, key_value, variables}`.

mod context;
mod error;
mod http;
mod rest;
mod sql;

pub use context::{authorized, internal, random_bytes, Caller, Ctx};
pub use error::ApiError;
pub use http::{api, json_response, method_not_allowed, now, request_id, route_not_found};
pub use rest::{
    check_if_match, collection, media_type, merge_patch, no_content, page_request, page_response,
    path_param, query_param, read_body_limited, read_json, read_json_limited, read_merge_patch,
    PageRequest, DEFAULT_PAGE_SIZE, MAX_BODY_BYTES, MAX_PAGE_SIZE,
};
pub use sql::SpinSql;
