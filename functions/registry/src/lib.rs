//! The registry component: IoT Central's management plane under `/api/...` (devices, their
//! commands and cloud-to-device messages, device templates, device groups, enrollment groups,
//! API tokens, roles, the OpenAPI document, health) and the registry's `/internal/registry/...`
//! endpoints (see `spin.toml`).
//!
//! Every `/api` route is wrapped in `gyre_component::authorized`, which checks the caller's API
//! token against gyre-domain's permission table before the handler runs; `/internal` routes
//! take the internal secret instead (`gyre_component::internal`).
//!
//! Handlers parse, call gyre-domain, and map the result; no SQL and no business rule lives
//! here. The query string (IoT Central's `api-version`) is accepted and ignored: the router
//! matches on the path alone.

use gyre_component::{
    api, json_response, method_not_allowed, now, route_not_found, ApiError, SpinSql,
};
use gyre_domain::{api as wire, store};
use spin_sdk::http::{Params, Request, Response, Router};

mod api_tokens;
mod bootstrap;
mod commands;
mod control;
mod device_groups;
mod device_properties;
mod device_templates;
mod devices;
mod enrollment_groups;
mod internal;
mod messages;
mod openapi;
mod roles;

#[spin_sdk::http_component]
fn handle_registry(request: Request) -> Response {
    routes().handle(request)
}

/// Every route this component serves; keep it in step with `spin.toml`. For a known path, the
/// router tries the method-specific handler first and the `any` one after.
fn routes() -> Router {
    let mut router = Router::new();
    router.get("/api/health", api(health));
    router.any("/api/health", api(method_not_allowed));
    devices::routes(&mut router);
    device_properties::routes(&mut router);
    commands::routes(&mut router);
    messages::routes(&mut router);
    device_templates::routes(&mut router);
    device_groups::routes(&mut router);
    enrollment_groups::routes(&mut router);
    api_tokens::routes(&mut router);
    roles::routes(&mut router);
    openapi::routes(&mut router);
    bootstrap::routes(&mut router);
    internal::routes(&mut router);
    router.any("/*", api(route_not_found));
    router
}

/// Reports that the component runs and the database is migrated to this build's schema.
fn health(_request: Request, _params: Params) -> Result<Response, ApiError> {
    let mut sql = SpinSql::open_default()?;
    let migrated = store::migrate(&mut sql, now())?;
    json_response(200, &wire::Health::ok(migrated.schema_version))
}
