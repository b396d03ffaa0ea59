//! The ingest component: `POST /internal/ingest`, the bridge's batches of device messages and
//! connectivity events (contract: `gyre_domain::ingest`), written in one SQLite transaction by
//! `gyre_domain::store::telemetry::apply_batch`. A 200 answer means the batch is committed
//! durably (the host syncs the WAL before a commit returns), so the bridge may PUBACK its
//! messages; a replayed batch id answers 200 with `duplicate: true` and writes nothing.
//!
//! Compaction: the batch's answer says `compactionDue` once the inbox holds at least
//! [`COMPACTION_STEP`] rows, and the bridge then sends `POST /internal/compact` (internal
//! secret), which moves the oldest rows into the per-device table a step at a time, each step
//! its own transaction, while a whole step waits (for at most [`COMPACTION_BUDGET_MILLIS`]).
//! A batch's request never compacts: Spin cannot work after the response, and a step inside
//! the request would hold back that batch's PUBACKs and every batch behind it. Large steps are
//! what make compaction cheap: a step touches about one page per device in it, so moving 16k
//! rows at once costs far less per row than moving each batch's rows (measured natively: 1,000
//! devices, ~80k rows/s in 2k-row steps vs ~340k rows/s in 20k-row steps; in the ingest
//! benchmark, 8k-row steps gave 60k msgs/s at 1,000 devices, 16k-row steps 72k, 32k-row steps
//! 75k with twice the p99). Batches commit between steps, so a batch waits at most one step
//! (~60 ms at 100 devices). When four steps wait, compaction is falling behind (many devices,
//! few rows each per step) and steps grow to half the backlog, up to four steps
//! (`telemetry::catch_up_step`; at 1,000 devices 67k msgs/s instead of 61k). The inbox stays
//! under a few steps, which bounds the inbox scan of a series read.
//!
//! `POST /internal/tick` (internal secret), sent by the bridge every second: the periodic work
//! that must not wait for traffic. It compacts what the inbox holds (up to one step, so a quiet
//! application's rows reach the per-device table within a second or two) and forgets batch ids
//! older than [`BATCH_ID_RETENTION_MILLIS`] (at most [`PRUNE_STEP`] per tick), and deletes
//! expired cloud-to-device messages (likewise at most [`PRUNE_STEP`]), and deletes telemetry
//! older than the Spin variable `telemetry_retention_days` (default 30) in a bounded step
//! ([`RETENTION_STEP_ROWS`] rows, [`RETENTION_STEP_DEVICES`] devices, each device's delete its
//! own short statement, so a batch never waits long for the write lock), and maintains the
//! hourly rollups of `store::rollups`: it first inspects new inbox rows for late ones and then
//! compacts only inspected rows, and at the end rolls up one bounded step of closed hours.
//! Later issues add their periodic work here or chain to it.
//!
//! Limits: a batch body is capped at [`MAX_BATCH_BYTES`] (8 MiB); the bridge sends a batch
//! before its base64 bodies pass 4 MiB, so a full batch of 256 KB messages still fits.
//!
//! Handlers parse, call gyre-domain, and map the result; no SQL here.

use gyre_component::{
    api, internal, json_response, media_type, method_not_allowed, read_body_limited,
    read_json_limited, route_not_found, ApiError, Ctx,
};
use gyre_domain::ingest::{binary, IngestBatch};
use gyre_domain::store::telemetry::{self, IngestError};
use gyre_domain::store::telemetry_query;
use gyre_domain::store::{c2d, rollups};
use gyre_domain::time::Timestamp;
use spin_sdk::http::{Params, Request, Response, Router};

/// Inbox rows that make a compaction due, and the rows one step moves.
const COMPACTION_STEP: u32 = 16_384;
/// How long one compaction request goes on moving steps.
const COMPACTION_BUDGET_MILLIS: u128 = 1_000;
/// The largest batch body accepted.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// How long a batch id is remembered. The bridge retries a batch for 30 s at most; an hour
/// leaves room for a bridge that was stopped in between.
const BATCH_ID_RETENTION_MILLIS: i64 = 60 * 60 * 1000;
/// Batch ids forgotten per tick at most (a step stays a few milliseconds).
const PRUNE_STEP: u32 = 10_000;
/// Old telemetry rows deleted per tick at most, and devices visited: a sweep of 1,000 devices
/// takes a few seconds, and at 5,000 rows a second it outpaces any ingest rate that one
/// SQLite file sustains for long.
const RETENTION_STEP_ROWS: u32 = 5_000;
const RETENTION_STEP_DEVICES: u32 = 256;
/// Hourly rollups: inbox rows inspected for late ones per tick at most (a read of their
/// times), and raw rows rolled up per tick at most, over at most this many devices (a step of
/// 20k rows takes some tens of milliseconds; an hour of 1,000 devices at one message every 10 s
/// is 360k rows, rolled up within a minute).
const ROLLUP_INSPECT_ROWS: u32 = 200_000;
const ROLLUP_STEP_ROWS: u32 = 20_000;
const ROLLUP_STEP_DEVICES: u32 = 1_024;
/// Used when `telemetry_retention_days` is unset or not a positive whole number.
const DEFAULT_RETENTION_DAYS: i64 = 30;

#[spin_sdk::http_component]
fn handle_ingest(request: Request) -> Response {
    routes().handle(request)
}

/// Every route this component serves; keep it in step with `spin.toml`.
fn routes() -> Router {
    let mut router = Router::new();
    router.post("/internal/ingest", internal(ingest));
    router.any("/internal/ingest", api(method_not_allowed));
    router.post("/internal/compact", internal(compact));
    router.any("/internal/compact", api(method_not_allowed));
    router.post("/internal/tick", internal(tick));
    router.any("/internal/tick", api(method_not_allowed));
    router.any("/*", api(route_not_found));
    router
}

fn ingest(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let batch = read_batch(&request)?;
    let mut result =
        telemetry::apply_batch(&mut ctx.sql, &batch, ctx.now).map_err(|err| match err {
            IngestError::Invalid { message } => ApiError::BadRequest { message },
            IngestError::Store(err) => ApiError::Store(err),
        })?;
    if !result.duplicate && result.n_messages > 0 {
        // The batch is committed; a failed look at the backlog only delays compaction to the
        // next batch or tick.
        match telemetry::inbox_len(&mut ctx.sql) {
            Ok(backlog) => result.compaction_due = backlog >= u64::from(COMPACTION_STEP),
            Err(err) => eprintln!(
                "request {}: reading the inbox backlog after batch {} failed: {err}",
                ctx.request_id.as_str(),
                result.batch_id
            ),
        }
    }
    json_response(200, &result)
}

/// The batch in its binary form (what the bridge sends) or as JSON.
fn read_batch(request: &Request) -> Result<IngestBatch, ApiError> {
    if media_type(request) != binary::BINARY_CONTENT_TYPE {
        return read_json_limited(request, MAX_BATCH_BYTES);
    }
    binary::decode(read_body_limited(request, MAX_BATCH_BYTES)?).map_err(|err| {
        ApiError::BadRequest {
            message: err.to_string(),
        }
    })
}

/// What one compaction request did.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CompactResult {
    compacted: u64,
    steps: u32,
}

/// `POST /internal/compact` (internal secret), sent by the bridge when a batch's answer says
/// `compactionDue`: moves the inbox's oldest rows into the per-device table, step by step,
/// while a whole step is waiting and for at most [`COMPACTION_BUDGET_MILLIS`]. Each step is its
/// own transaction, so batches commit between steps instead of waiting for all of them.
fn compact(ctx: &mut Ctx, _request: Request, _params: Params) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let mut done = CompactResult {
        compacted: 0,
        steps: 0,
    };
    loop {
        let backlog = telemetry::inbox_len(&mut ctx.sql)?;
        if backlog < u64::from(COMPACTION_STEP)
            || started.elapsed().as_millis() >= COMPACTION_BUDGET_MILLIS
        {
            break;
        }
        let step = telemetry::catch_up_step(backlog, COMPACTION_STEP);
        // The rollups must see a row's time before it leaves the inbox (a late row sends its
        // device's hour back to be redone): both in one transaction.
        done.compacted += rollups::inspect_and_compact(&mut ctx.sql, step, step)?.1;
        done.steps += 1;
    }
    json_response(200, &done)
}

/// What one tick did.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TickResult {
    compacted: u64,
    pruned_batch_ids: u64,
    pruned_c2d_messages: u64,
    pruned_telemetry: u64,
    inspected: rollups::Inspected,
    rolled_up: rollups::Rolled,
}

/// `POST /internal/tick`: compacts the inbox by up to one step, prunes old batch ids and
/// expired cloud-to-device messages (each up to [`PRUNE_STEP`]), and deletes one bounded step
/// of telemetry past retention.
fn tick(ctx: &mut Ctx, _request: Request, _params: Params) -> Result<Response, ApiError> {
    // Rollups stay exact only if every row is seen in the inbox before it is compacted, so the
    // tick compacts only rows it inspected (see `store::rollups`).
    let (inspected, compacted) =
        rollups::inspect_and_compact(&mut ctx.sql, ROLLUP_INSPECT_ROWS, COMPACTION_STEP)?;
    let before = Timestamp::from_unix_millis(ctx.now.unix_millis() - BATCH_ID_RETENTION_MILLIS);
    // One statement: atomic on its own.
    let pruned_batch_ids = telemetry::prune_batches(&mut ctx.sql, before, PRUNE_STEP)?;
    let pruned_c2d_messages = c2d::prune_expired(&mut ctx.sql, ctx.now, PRUNE_STEP)?;
    let retention_days = spin_sdk::variables::get("telemetry_retention_days")
        .ok()
        .and_then(|days| days.trim().parse::<i64>().ok())
        .filter(|days| *days > 0)
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    let oldest_kept = Timestamp::from_unix_millis(
        ctx.now
            .unix_millis()
            .saturating_sub(retention_days.saturating_mul(24 * 60 * 60 * 1000)),
    );
    let pruned_telemetry = telemetry_query::prune_older_than(
        &mut ctx.sql,
        oldest_kept,
        RETENTION_STEP_ROWS,
        RETENTION_STEP_DEVICES,
    )?
    .rows;
    let rolled_up = rollups::roll_up(&mut ctx.sql, ctx.now, ROLLUP_STEP_ROWS, ROLLUP_STEP_DEVICES)?;
    json_response(
        200,
        &TickResult {
            compacted,
            pruned_batch_ids,
            pruned_c2d_messages,
            pruned_telemetry,
            inspected,
            rolled_up,
        },
    )
}
