//! The ingest component: `POST /internal/ingest`, the bridge's batches of device messages and
//! connectivity events (contract: `gyre_domain::ingest`).
//!
//! A batch is checked and prepared (`telemetry::prepare`: decoded, matched to its devices'
//! templates, turned into rows) and appended to the ingest journal, a SQLite database of its
//! own (label `journal`, see `gyre_domain::store::journal`). A 200 answer means the batch is
//! durable there (the host syncs the WAL before a commit returns), so the bridge may PUBACK its
//! messages; a replayed batch id (in the journal, or applied) answers 200 with
//! `duplicate: true` and writes nothing. The journal's only writers are batches and the apply,
//! so a batch never waits behind the default database's writers (compaction steps hold its
//! write lock for tens of milliseconds). When [`JOURNAL_LIMIT`] batches wait to be applied, a
//! new batch waits for room (up to [`JOURNAL_WAIT_MILLIS`], then 503 and the bridge retries):
//! the journal stays short, and what it holds reaches the database within milliseconds.
//!
//! Every answer to a new batch says `compactionDue`, and the bridge then sends
//! `POST /internal/compact` (internal secret; at most one at a time, signals meanwhile fold into
//! the next): it applies the journal to the default database, [`APPLY_BATCHES`] batches per
//! transaction (`journal::apply`: each batch id claimed once, each device's last known values
//! written once per transaction), and compacts. Until then a batch is durable but not yet
//! visible to queries (as in IoT Central, telemetry appears shortly after it is acknowledged).
//!
//! Compaction: applied rows land in an inbox; once it holds at least [`COMPACTION_STEP`] rows,
//! the compaction request moves the oldest rows into the per-device table a step at a time,
//! each step its own transaction, while a whole step waits (for at most
//! [`COMPACTION_BUDGET_MILLIS`], applying the journal between steps). Spin cannot work after
//! the response, so the work is a request of its own. Large steps are
//! what make compaction cheap: a step touches about one page per device in it, so moving 16k
//! rows at once costs far less per row than moving each batch's rows (measured natively: 1,000
//! devices, ~80k rows/s in 2k-row steps vs ~340k rows/s in 20k-row steps; in the ingest
//! benchmark, 8k-row steps gave 60k msgs/s at 1,000 devices, 16k-row steps 72k, 32k-row steps
//! 75k with twice the p99). When four steps wait, compaction is falling behind (many devices,
//! few rows each per step) and steps grow to half the backlog, up to four steps
//! (`telemetry::catch_up_step`; at 1,000 devices 67k msgs/s instead of 61k). The inbox stays
//! under a few steps, which bounds the inbox scan of a series read.
//!
//! `POST /internal/tick` (internal secret), sent by the bridge every second: the periodic work
//! that must not wait for traffic. It applies what the journal holds, compacts what the inbox holds (up to one step, so a quiet
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
    read_json_limited, route_not_found, ApiError, Ctx, SpinSql,
};
use gyre_domain::ingest::{binary, IngestBatch, IngestResult};
use gyre_domain::store::journal;
use gyre_domain::store::telemetry::{self, IngestError};
use gyre_domain::store::telemetry_query;
use gyre_domain::store::{c2d, rollups};
use gyre_domain::time::Timestamp;
use spin_sdk::http::{Params, Request, Response, Router};

/// Inbox rows that make a compaction due, and the rows one step moves.
const COMPACTION_STEP: u32 = 16_384;
/// How long one compaction request goes on moving steps.
const COMPACTION_BUDGET_MILLIS: u128 = 1_000;
/// Journal entries (batches) applied in one transaction at most, and their bytes at most past
/// the first entry: an apply holds its entries and their rows in memory at once (the host
/// gives an instance 256 MiB; a batch of large messages is a few MiB).
const APPLY_BATCHES: u32 = 48;
const APPLY_BYTES: u64 = 16 << 20;
/// Unapplied batches in the journal from which a new batch waits for room, and for how long
/// at most before it is refused with 503.
const JOURNAL_LIMIT: u64 = 64;
const JOURNAL_WAIT_MILLIS: u128 = 5_000;
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
    let duplicate = IngestResult {
        batch_id: batch.batch_id.clone(),
        n_messages: 0,
        n_events: 0,
        duplicate: true,
        compaction_due: false,
    };
    if telemetry::batch_applied(&mut ctx.sql, &batch.batch_id)? {
        return json_response(200, &duplicate);
    }
    let prepared = telemetry::prepare(&mut ctx.sql, &batch).map_err(|err| match err {
        IngestError::Invalid { message } => ApiError::BadRequest { message },
        IngestError::Store(err) => ApiError::Store(err),
    })?;
    let mut journal = open_journal(ctx)?;
    wait_for_room(&mut journal)?;
    // Durable when this returns: the host syncs the journal's WAL before a commit returns.
    let result = if journal::append(&mut journal, &prepared)? {
        IngestResult {
            batch_id: prepared.batch_id.clone(),
            n_messages: prepared.n_messages,
            n_events: prepared.n_events,
            duplicate: false,
            compaction_due: true,
        }
    } else {
        duplicate
    };
    // The instance ends with this request and its memory with it: the batch's many small
    // allocations (a few per message) need not be freed one by one.
    std::mem::forget((batch, prepared));
    json_response(200, &result)
}

/// The journal database, its schema up to date.
fn open_journal(ctx: &Ctx) -> Result<SpinSql, ApiError> {
    let mut journal = SpinSql::open(journal::LABEL)?;
    journal::migrate(&mut journal, ctx.now)?;
    Ok(journal)
}

/// Returns once the journal holds fewer than [`JOURNAL_LIMIT`] batches, or answers 503 after
/// [`JOURNAL_WAIT_MILLIS`] (the bridge retries the batch later). This is the backpressure that
/// keeps the journal, and what the store has not applied yet, bounded: a batch that waits
/// holds back its devices' PUBACKs, and the devices' windows then hold back their publishes.
fn wait_for_room(journal: &mut SpinSql) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    while journal::len(journal)? >= JOURNAL_LIMIT {
        if started.elapsed().as_millis() >= JOURNAL_WAIT_MILLIS {
            return Err(ApiError::Unavailable {
                message: format!(
                    "{JOURNAL_LIMIT} batches are waiting to be applied; retry the batch later"
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

/// Applies journal entries ([`APPLY_BATCHES`] per transaction) until the journal is empty or
/// `deadline` passed; returns the messages applied.
fn drain_journal(
    ctx: &mut Ctx,
    journal: &mut SpinSql,
    deadline: std::time::Instant,
) -> Result<u64, ApiError> {
    let mut applied = 0;
    while std::time::Instant::now() < deadline {
        let drained = journal::apply(journal, &mut ctx.sql, APPLY_BATCHES, APPLY_BYTES, ctx.now)?;
        applied += drained.applied.messages;
        if drained.entries == 0 {
            break;
        }
    }
    Ok(applied)
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
    applied: u64,
    compacted: u64,
    steps: u32,
}

/// `POST /internal/compact` (internal secret), sent by the bridge when a batch's answer says
/// `compactionDue`: applies the journal to the default database, and moves the inbox's oldest
/// rows into the per-device table step by step while a whole step is waiting, for at most
/// [`COMPACTION_BUDGET_MILLIS`]. Each apply and each step is its own transaction of the
/// default database; batches go on appending to the journal meanwhile.
fn compact(ctx: &mut Ctx, _request: Request, _params: Params) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let mut journal = open_journal(ctx)?;
    let mut done = CompactResult {
        applied: 0,
        compacted: 0,
        steps: 0,
    };
    loop {
        let drained = journal::apply(
            &mut journal,
            &mut ctx.sql,
            APPLY_BATCHES,
            APPLY_BYTES,
            ctx.now,
        )?;
        done.applied += drained.applied.messages;
        let backlog = telemetry::inbox_len(&mut ctx.sql)?;
        let out_of_time = started.elapsed().as_millis() >= COMPACTION_BUDGET_MILLIS;
        if backlog >= u64::from(COMPACTION_STEP) && !out_of_time {
            let step = telemetry::catch_up_step(backlog, COMPACTION_STEP);
            // The rollups must see a row's time before it leaves the inbox (a late row sends
            // its device's hour back to be redone): both in one transaction.
            done.compacted += rollups::inspect_and_compact(&mut ctx.sql, step, step)?.1;
            done.steps += 1;
        } else if drained.entries == 0 || out_of_time {
            break;
        }
    }
    json_response(200, &done)
}

/// What one tick did.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TickResult {
    applied: u64,
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
    // What the journal holds first, so a quiet application's batches are applied within a
    // tick even if the bridge's compaction request was lost.
    let mut journal = open_journal(ctx)?;
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(COMPACTION_BUDGET_MILLIS as u64);
    let applied = drain_journal(ctx, &mut journal, deadline)?;
    drop(journal);
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
            applied,
            compacted,
            pruned_batch_ids,
            pruned_c2d_messages,
            pruned_telemetry,
            inspected,
            rolled_up,
        },
    )
}
