//! Cloud-to-device messages. `POST /api/devices/{id}/messages` queues one (202 with the queued
//! message) and `GET` lists the device's queue with each message's state; the bridge reads
//! what waits (`GET /internal/registry/devices/{id}/messages`) and reports what the device
//! acknowledged (`POST .../messages/{messageId}/complete`), as `gyre_domain::bridge` describes.
//! The rules are `gyre_domain::command::c2d`'s; the queue is `store::c2d`.
//!
//! After a message commits, the bridge is told (`control::notify_messages`) so that a
//! connected device gets it at once; a bridge that cannot be reached is ignored, as the device
//! fetches its queue when it next subscribes.

use crate::devices::{device_id, not_found};
use gyre_component::{
    authorized, collection, json_response, no_content, page_request, path_param, read_json,
    ApiError, Ctx,
};
use gyre_domain::bridge::C2dPending;
use gyre_domain::command::c2d::{self, SendBody, SendError, MAX_QUEUED};
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::c2d::{self as queue, Enqueued};
use gyre_domain::store::{devices, Sql as _};
use spin_sdk::http::{Params, Request, Response, Router};

use crate::control;

/// The audit log's name for this resource.
const DEVICE_MESSAGE: &str = "deviceMessage";

pub fn routes(router: &mut Router) {
    router.get("/api/devices/:device_id/messages", authorized(list));
    router.post("/api/devices/:device_id/messages", authorized(send));
}

/// `POST /api/devices/{id}/messages`.
fn send(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body: SendBody = read_json(&request)?;
    let message = c2d::prepare(body).map_err(|err| match err {
        SendError::TooLarge => ApiError::PayloadTooLarge {
            limit: c2d::MAX_PAYLOAD_BYTES,
        },
        err => ApiError::BadRequest {
            message: err.to_string(),
        },
    })?;
    let id = gyre_domain::api::RequestId::from_random(ctx.random_bytes())
        .as_str()
        .to_owned();
    let mut audit_record =
        ctx.audit_record(AuditAction::Create, DEVICE_MESSAGE, device_id.as_str());
    audit_record.detail = Some(format!("message {id}"));
    let now = ctx.now;
    let queued =
        ctx.sql.transaction(
            |sql| match queue::enqueue(sql, &device_id, &id, &message, now)? {
                Enqueued::Queued(queued) => {
                    audit::append(sql, &audit_record)?;
                    Ok(queued)
                }
                Enqueued::NoDevice => Err(not_found(&device_id)),
                Enqueued::QueueFull => Err(ApiError::Conflict {
                    message: format!(
                        "{MAX_QUEUED} messages already wait for device `{device_id}`; \
                     try again once it has received some"
                    ),
                }),
            },
        )?;
    if let Err(failure) = control::notify_messages(device_id.as_str()) {
        // Not an error for the caller: the message is queued and the device fetches it when it
        // next subscribes.
        eprintln!(
            "request {}: telling the bridge about message {id}: {failure:?}",
            ctx.request_id.as_str()
        );
    }
    json_response(202, &queued.to_wire(now))
}

/// `GET /api/devices/{id}/messages`: the device's messages not yet pruned, newest first.
fn list(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let page = page_request(&request)?;
    let before = page.after_as("a message cursor", str::parse::<i64>)?;
    if devices::get(&mut ctx.sql, &device_id)?.is_none() {
        return Err(not_found(&device_id));
    }
    let mut fetched = queue::list(&mut ctx.sql, &device_id, before, page.fetch_limit())?;
    let has_more = fetched.len() > page.top;
    fetched.truncate(page.top);
    let items: Vec<_> = fetched.iter().map(|m| m.to_wire(ctx.now)).collect();
    let next = has_more
        .then(|| fetched.last().map(|m| m.seq.to_string()))
        .flatten();
    collection(&request, &items, next.as_deref())
}

/// `GET /internal/registry/devices/{id}/messages`: what waits for the device, oldest first.
pub fn pending(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    if devices::get(&mut ctx.sql, &device_id)?.is_none() {
        return Err(not_found(&device_id));
    }
    let waiting = queue::pending(&mut ctx.sql, &device_id, ctx.now, MAX_QUEUED)?;
    json_response(
        200,
        &C2dPending {
            messages: waiting.iter().map(|m| m.to_bridge()).collect(),
        },
    )
}

/// `POST /internal/registry/devices/{id}/messages/{messageId}/complete`: the device
/// acknowledged the message; 204, again for a repeat, 404 for a message the device never had.
pub fn complete(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let message_id = path_param(&params, "message_id")?;
    let now = ctx.now;
    let found = ctx
        .sql
        .transaction(|sql| queue::mark_delivered(sql, &device_id, &message_id, now))?;
    if !found {
        return Err(ApiError::NotFound {
            message: format!("device `{device_id}` has no message `{message_id}`"),
        });
    }
    Ok(no_content())
}

