//! The query component: what devices sent, read back.
//!
//! - `POST /api/query` (IoT Central 2022-10-31-preview): `{"query": "SELECT ..."}` →
//!   `{"results": [...]}`. Parsed by `gyre_domain::query::Query::parse`, run as one SQL
//!   statement by `gyre_domain::store::telemetry_query::run_with` (aggregates over whole hours
//!   read the hourly rollups the ingest tick maintains). Gyre's addition: `"group": "<device
//!   group id>"` in the body limits the query to the template's devices in that group now.
//!   IoT Central's language has only `FROM <template>`, so the group travels beside the query,
//!   as IoT Central's jobs name theirs (`"group"`), rather than as new syntax.
//! - `GET /api/devices/{id}/telemetry/{name}` and the component form: the last known value,
//!   `{"value", "timestamp"}` as IoT Central answers (404 when the device or the value is
//!   unknown).
//! - `GET /api/devices/{id}/telemetry/{name}/history?from=&to=&points=` and the component form
//!   (Gyre's addition): the series over `[from, to)` in at most `points` buckets with
//!   `count`/`min`/`max`/`avg` each, for charts.
//!
//! Limits: IoT Central's (350 characters, 15 SELECT items, 10 logical operators, 10,000
//! results) unless the Spin variables `query_max_chars`, `query_max_select_items`,
//! `query_max_logical_operators` and `query_max_results` raise them; a value below IoT
//! Central's is ignored, so every query IoT Central accepts runs here.
//!
//! Every route needs `devices.view`: IoT Central shows telemetry to whoever can view devices.
//! Spin routes these paths here, more specific than the registry's `/api/...` (see spin.toml).
//! Handlers parse, call gyre-domain, and map the result; no SQL here.

use gyre_component::{
    api, authorized, json_response, method_not_allowed, path_param, query_param, read_json,
    route_not_found, ApiError, Ctx,
};
use gyre_domain::group::DeviceGroupId;
use gyre_domain::query::{DeviceFilter, Limits, Name, Query, TimeRange};
use gyre_domain::store::device_groups;
use gyre_domain::store::telemetry_query::{self, RunError, RunOptions};
use gyre_domain::time::Timestamp;
use spin_sdk::http::{Params, Request, Response, Router};

/// IoT Central's cap on the rows one query returns.
const IOT_CENTRAL_MAX_RESULTS: u32 = 10_000;
/// History: buckets when `points` is not given, and the most one request may ask for.
const DEFAULT_POINTS: u32 = 100;
const MAX_POINTS: u32 = 10_000;
/// History: the range when `from` is not given, counted back from `to`.
const DEFAULT_HISTORY_MILLIS: i64 = 24 * 60 * 60 * 1000;

#[spin_sdk::http_component]
fn handle_query(request: Request) -> Response {
    routes().handle(request)
}

/// Every route this component serves; keep it in step with `spin.toml` and `auth::ROUTES`.
fn routes() -> Router {
    const LAST: &str = "/api/devices/:device_id/telemetry/:telemetry_name";
    const COMPONENT_LAST: &str =
        "/api/devices/:device_id/components/:component_name/telemetry/:telemetry_name";
    const HISTORY: &str = "/api/devices/:device_id/telemetry/:telemetry_name/history";
    const COMPONENT_HISTORY: &str =
        "/api/devices/:device_id/components/:component_name/telemetry/:telemetry_name/history";
    let mut router = Router::new();
    router.post("/api/query", authorized(query));
    router.any("/api/query", api(method_not_allowed));
    for path in [LAST, COMPONENT_LAST] {
        router.get(path, authorized(last_value));
        router.any(path, api(method_not_allowed));
    }
    for path in [HISTORY, COMPONENT_HISTORY] {
        router.get(path, authorized(history));
        router.any(path, api(method_not_allowed));
    }
    router.any("/*", api(route_not_found));
    router
}

#[derive(serde::Deserialize)]
struct QueryRequest {
    query: String,
    /// Gyre's addition: a device group's id; the query then covers only the template's
    /// devices that are members of the group now (as `/deviceGroups/{id}/devices` lists them).
    #[serde(default)]
    group: Option<String>,
}

#[derive(serde::Serialize)]
struct QueryResponse {
    results: Vec<telemetry_query::ResultRow>,
}

/// `POST /api/query`.
fn query(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let body: QueryRequest = read_json(&request)?;
    let (limits, max_results) = configured_limits();
    let parsed = Query::parse(&body.query, &limits).map_err(|err| ApiError::BadRequest {
        message: format!("invalid query: {err}"),
    })?;
    let group = match &body.group {
        None => None,
        Some(raw) => Some(group_filter(ctx, raw)?),
    };
    let options = RunOptions {
        max_results,
        group: group.as_ref(),
        rollups: true,
    };
    let results = telemetry_query::run_with(&mut ctx.sql, &parsed, ctx.now, &options).map_err(
        |err| match err {
            RunError::Invalid { message } => ApiError::BadRequest {
                message: format!("invalid query: {message}"),
            },
            err @ RunError::UnknownTemplate { .. } => ApiError::BadRequest {
                message: format!("invalid query: {err}"),
            },
            RunError::Store(err) => ApiError::Store(err),
        },
    )?;
    json_response(200, &QueryResponse { results })
}

/// The filter of device group `raw`; 400 when there is no such group (it is part of the body).
fn group_filter(ctx: &mut Ctx, raw: &str) -> Result<DeviceFilter, ApiError> {
    let missing = || ApiError::BadRequest {
        message: format!("invalid query: there is no device group '{raw}'"),
    };
    let id = DeviceGroupId::parse(raw).map_err(|_| missing())?;
    let group = device_groups::get(&mut ctx.sql, &id)?.ok_or_else(missing)?;
    Ok(group.content().filter().clone())
}

/// IoT Central's limits, raised by the Spin variables that are set higher.
fn configured_limits() -> (Limits, u32) {
    let raised = |variable: &str, floor: usize| -> usize {
        spin_sdk::variables::get(variable)
            .ok()
            .and_then(|value| value.trim().parse::<usize>().ok())
            .map_or(floor, |value| value.max(floor))
    };
    let iot_central = Limits::iot_central();
    let limits = Limits {
        max_chars: raised("query_max_chars", iot_central.max_chars),
        max_select_items: raised("query_max_select_items", iot_central.max_select_items),
        max_logical_operators: raised(
            "query_max_logical_operators",
            iot_central.max_logical_operators,
        ),
    };
    let max_results = raised("query_max_results", IOT_CENTRAL_MAX_RESULTS as usize);
    (limits, u32::try_from(max_results).unwrap_or(u32::MAX))
}

/// The device, component (`None`: the root) and telemetry name of a telemetry route; 404 for a
/// device that is not registered.
fn telemetry_target(
    ctx: &mut Ctx,
    params: &Params,
) -> Result<(String, Option<String>, String), ApiError> {
    let device_id = path_param(params, "device_id")?;
    let component = params
        .get("component_name")
        .map(|_| path_param(params, "component_name"))
        .transpose()?;
    let name = path_param(params, "telemetry_name")?;
    if !telemetry_query::device_exists(&mut ctx.sql, &device_id)? {
        return Err(ApiError::NotFound {
            message: format!("device '{device_id}' not found"),
        });
    }
    Ok((device_id, component, name))
}

#[derive(serde::Serialize)]
struct LastValueResponse {
    value: serde_json::Value,
    timestamp: String,
}

/// `GET /api/devices/{id}[/components/{c}]/telemetry/{name}`.
fn last_value(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let (device_id, component, name) = telemetry_target(ctx, &params)?;
    let found = telemetry_query::last_value(
        &mut ctx.sql,
        &device_id,
        component.as_deref().unwrap_or(""),
        &name,
    )?;
    let Some((value, at)) = found else {
        let what = match &component {
            Some(component) => format!("{component}.{name}"),
            None => name,
        };
        return Err(ApiError::NotFound {
            message: format!("device '{device_id}' has sent no telemetry '{what}'"),
        });
    };
    json_response(
        200,
        &LastValueResponse {
            value,
            timestamp: at.to_rfc3339(),
        },
    )
}

#[derive(serde::Serialize)]
struct HistoryResponse {
    value: Vec<telemetry_query::HistoryBucket>,
}

/// `GET /api/devices/{id}[/components/{c}]/telemetry/{name}/history`.
fn history(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let (device_id, component, name) = telemetry_target(ctx, &params)?;
    let bad = |message: String| ApiError::BadRequest { message };
    // Telemetry names are DTDL names; anything else cannot have been stored as a field path.
    if Name::parse(&name).is_none()
        || component
            .as_deref()
            .is_some_and(|component| Name::parse(component).is_none())
    {
        return Err(ApiError::NotFound {
            message: format!("'{name}' is not a telemetry name"),
        });
    }
    let points = match query_param(&request, "points") {
        None => DEFAULT_POINTS,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|points| (1..=MAX_POINTS).contains(points))
            .ok_or_else(|| {
                bad(format!(
                    "points must be a whole number from 1 to {MAX_POINTS}, not '{raw}'"
                ))
            })?,
    };
    let to_text = query_param(&request, "to").unwrap_or_else(|| ctx.now.to_rfc3339());
    let from_text = match query_param(&request, "from") {
        Some(from) => from,
        None => {
            // The default range needs `to` as a time first; an unparsable `to` fails below.
            let to = TimeRange::parse(&format!("1970-01-01T00:00:00Z/{to_text}"))
                .map(|range| range.end())
                .unwrap_or(ctx.now);
            Timestamp::from_unix_millis(to.unix_millis() - DEFAULT_HISTORY_MILLIS).to_rfc3339()
        }
    };
    let range = TimeRange::parse(&format!("{from_text}/{to_text}")).map_err(|err| {
        bad(format!(
            "from and to must be RFC 3339 times with from before to: {err}"
        ))
    })?;
    let buckets = telemetry_query::history(
        &mut ctx.sql,
        &device_id,
        component.as_deref(),
        &name,
        range.start(),
        range.end(),
        points,
    )?;
    json_response(200, &HistoryResponse { value: buckets })
}
