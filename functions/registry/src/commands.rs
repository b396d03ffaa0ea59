//! `/api/devices/{id}/commands/{name}` and `/api/devices/{id}/components/{component}/commands/
//! {name}`: run a device command (POST → 201 `DeviceCommand`) and list its history (GET, newest
//! first, paged).
//!
//! A run reads the device's template, validates the body (`gyre_domain::command::prepare`),
//! calls the bridge's method relay (`control::invoke_method`) with no transaction open, since it
//! may wait up to a minute for the device, then stores the execution, its `commandExecution`
//! device event and its audit row in one transaction. Failures after validation (device not
//! connected, timeout, bridge unreachable) are stored too and answered in IoT Central's error
//! shape with the statuses `gyre_domain::command` documents.

use crate::devices::{device_id, not_found};
use gyre_component::{
    authorized, json_response, page_request, page_response, path_param, read_json_limited,
    ApiError, Ctx,
};
use gyre_domain::api::ErrorBody;
use gyre_domain::bridge::MethodInvocation;
use gyre_domain::command::{self, CommandBody, CommandRecord, CommandTarget, Outcome};
use gyre_domain::dtdl::DeviceModel;
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::{commands, device_events, device_properties, devices, Sql as _};
use spin_sdk::http::{Params, Request, Response, Router};

use crate::control::{self, ControlFailure};

/// The audit log's name for this resource.
const DEVICE_COMMAND: &str = "deviceCommand";

pub fn routes(router: &mut Router) {
    router.get(
        "/api/devices/:device_id/commands/:command_name",
        authorized(history),
    );
    router.post(
        "/api/devices/:device_id/commands/:command_name",
        authorized(run),
    );
    router.get(
        "/api/devices/:device_id/components/:component_name/commands/:command_name",
        authorized(history),
    );
    router.post(
        "/api/devices/:device_id/components/:component_name/commands/:command_name",
        authorized(run),
    );
}

/// IoT Hub's limit on a direct method's payload (128 KB): a larger request could never reach
/// the device, so it is refused (413) before anything is called.
const MAX_COMMAND_BODY_BYTES: usize = 128 * 1024;

/// `POST .../commands/{name}`.
fn run(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let target = target(&params)?;
    // IoT Central's portal posts `{}`; an empty body means the same.
    let body: CommandBody = if request.body().is_empty() {
        CommandBody::default()
    } else {
        read_json_limited(&request, MAX_COMMAND_BODY_BYTES)?
    };
    let stored =
        device_properties::get(&mut ctx.sql, &device_id)?.ok_or_else(|| not_found(&device_id))?;
    let model = match &stored.capability_model {
        Some(json) => Some(DeviceModel::parse(json).map_err(|err| {
            ApiError::Unexpected(anyhow::anyhow!(
                "the stored template {:?} no longer parses: {err}",
                stored.template
            ))
        })?),
        None => None,
    };
    let invocation = command::prepare(model.as_ref(), target, &body).map_err(|err| {
        if err.is_not_found() {
            ApiError::NotFound {
                message: err.to_string(),
            }
        } else {
            ApiError::BadRequest {
                message: err.to_string(),
            }
        }
    })?;

    let call = MethodInvocation {
        method_name: invocation.target.method_name(),
        payload: invocation.request.clone(),
        connection_timeout: invocation.connection_timeout,
        response_timeout: invocation.response_timeout,
    };
    let outcome = match control::invoke_method(device_id.as_str(), &call) {
        Ok(result) => Outcome::Responded {
            status: result.status,
            payload: result.payload,
        },
        Err(ControlFailure::Refused { error, .. }) if error.code == "deviceNotConnected" => {
            Outcome::NotConnected
        }
        Err(ControlFailure::Refused { error, .. }) if error.code == "timeout" => Outcome::TimedOut,
        Err(ControlFailure::Refused { status, error }) => {
            eprintln!(
                "request {}: the bridge refused method {}: {status} {error:?}",
                ctx.request_id.as_str(),
                call.method_name
            );
            Outcome::BadGateway
        }
        Err(ControlFailure::Unavailable(why)) => {
            eprintln!("request {}: {why}", ctx.request_id.as_str());
            Outcome::Unavailable
        }
    };

    let id = gyre_domain::api::RequestId::from_random(ctx.random_bytes())
        .as_str()
        .to_owned();
    let record = CommandRecord::new(id, device_id.as_str(), invocation, outcome, ctx.now);
    let mut audit_record =
        ctx.audit_record(AuditAction::Create, DEVICE_COMMAND, device_id.as_str());
    audit_record.detail = Some(format!(
        "command {} ({}): {}",
        record.target.method_name(),
        record.id,
        record.outcome.as_str()
    ));
    let now = ctx.now;
    ctx.sql.transaction(|sql| {
        // The device may have been deleted while the call waited; its history goes with it
        // then (and nobody is left to read it), so store nothing.
        if devices::get(sql, &device_id)?.is_none() {
            return Ok::<_, ApiError>(());
        }
        commands::insert(sql, &record)?;
        device_events::record(
            sql,
            now,
            device_id.as_str(),
            device_events::kind::COMMAND_EXECUTION,
            &record.event_body(),
        )?;
        audit::append(sql, &audit_record)?;
        Ok(())
    })?;

    match record.outcome.failure() {
        None => json_response(201, &record.to_wire()),
        Some(failure) => {
            let message = format!(
                "command `{}` ({}): {}",
                record.target.method_name(),
                record.id,
                failure.message
            );
            let body = ErrorBody::new(
                failure.code,
                &message,
                &ctx.request_id,
                gyre_component::now(),
            );
            let mut response = json_response(failure.status, &body)?;
            response.set_header("x-ms-error-code", failure.code);
            Ok(response)
        }
    }
}

/// `GET .../commands/{name}`: the executions of this command on this device, newest first.
/// Lists what was run even if the template no longer declares the command.
fn history(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let target = target(&params)?;
    let page = page_request(&request)?;
    let before = page.after_as("a command history cursor", str::parse::<i64>)?;
    if devices::get(&mut ctx.sql, &device_id)?.is_none() {
        return Err(not_found(&device_id));
    }
    let fetched = commands::list(
        &mut ctx.sql,
        &device_id,
        &target,
        before,
        page.fetch_limit(),
    )?;
    page_response(
        &request,
        &page,
        fetched,
        |(_, record)| record.to_wire(),
        |(seq, _)| seq.to_string(),
    )
}

fn target(params: &Params) -> Result<CommandTarget, ApiError> {
    let component = match params.get("component_name") {
        Some(_) => Some(path_param(params, "component_name")?),
        None => None,
    };
    Ok(CommandTarget {
        component,
        name: path_param(params, "command_name")?,
    })
}

