//! `GET /api/openapi.json`: the OpenAPI 3 document describing exactly the `/api` routes Gyre
//! serves (public, no token).
//!
//! The document is hand-written (`openapi.json`, next to this file) and embedded at build time.
//! The e2e test `tests/registry/openapi.rs` keeps it honest: its (method, path) set must equal
//! gyre-domain's `auth::ROUTES`, and every documented route must be served.

use gyre_component::{authorized, ApiError, Ctx};
use spin_sdk::http::{Params, Request, Response, Router};

/// The document, exactly as served.
const OPENAPI_JSON: &str = include_str!("openapi.json");

pub fn routes(router: &mut Router) {
    router.get("/api/openapi.json", authorized(openapi));
}

fn openapi(_ctx: &mut Ctx, _request: Request, _params: Params) -> Result<Response, ApiError> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json; charset=utf-8")
        .body(OPENAPI_JSON)
        .build())
}
