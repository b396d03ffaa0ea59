//! The registry's `/internal/registry/...` endpoints for the device bridge (internal secret,
//! never API tokens): what a device may connect with, and DPS registrations
//! (contract: `gyre_domain::bridge` and `gyre_domain::provisioning`).

use gyre_component::{
    internal, json_response, path_param, query_param, read_json, read_merge_patch, ApiError, Ctx,
};
use gyre_domain::bridge::{DeviceConnection, ReportedPatched};
use gyre_domain::device::DeviceId;
use gyre_domain::provisioning::RegisterRequest;
use gyre_domain::store::audit::{self, AuditAction, AuditRecord};
use gyre_domain::store::device_events;
use gyre_domain::store::provisioning::{self, RegisterError};
use gyre_domain::store::twins::{self, PatchError};
use gyre_domain::store::{devices, Sql as _};
use gyre_domain::twin;
use spin_sdk::http::{Params, Request, Response, Router};

pub fn routes(router: &mut Router) {
    router.get(
        "/internal/registry/devices/:device_id/connection",
        internal(connection),
    );
    router.get("/internal/registry/devices/:device_id/twin", internal(twin));
    router.patch(
        "/internal/registry/devices/:device_id/twin/reported",
        internal(patch_reported),
    );
    router.get(
        "/internal/registry/devices/:device_id/messages",
        internal(crate::messages::pending),
    );
    router.post(
        "/internal/registry/devices/:device_id/messages/:message_id/complete",
        internal(crate::messages::complete),
    );
    router.get(
        "/internal/registry/connection-changes",
        internal(connection_changes),
    );
    router.get(
        "/internal/registry/registrations/:registration_id",
        internal(registration_candidates),
    );
    router.post(
        "/internal/registry/registrations/:registration_id/register",
        internal(register),
    );
}

fn id_param(params: &Params, name: &str) -> Result<DeviceId, ApiError> {
    let raw = path_param(params, name)?;
    DeviceId::parse(&raw).map_err(|error| ApiError::BadRequest {
        message: format!("`{raw}`: {error}"),
    })
}

/// `GET /internal/registry/devices/{id}/connection`: whether the device may connect, and every
/// key its SAS token may be signed with (its own, or derived from each enabled group).
fn connection(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = id_param(&params, "device_id")?;
    // Plain reads, no transaction: this is on the bridge's connect path, and a group changing
    // between them only means the bridge asks again on the next connection.
    let device = devices::get(&mut ctx.sql, &device_id)?.ok_or_else(|| ApiError::NotFound {
        message: format!("device `{device_id}` does not exist"),
    })?;
    let enrollments = provisioning::enrollments(&mut ctx.sql, &device_id, Some(&device))?;
    json_response(200, &DeviceConnection::new(&device, &enrollments))
}

/// `GET /internal/registry/devices/{id}/twin`: the twin as `$iothub/twin/GET` answers it.
fn twin(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = id_param(&params, "device_id")?;
    let twin = twins::get(&mut ctx.sql, &device_id)?.ok_or_else(|| no_device(&device_id))?;
    json_response(200, &twin.to_get_response())
}

/// `PATCH /internal/registry/devices/{id}/twin/reported`: a device's reported patch (a JSON
/// object); answers `{"version": N}`, or 400 naming what is wrong with the patch.
fn patch_reported(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = id_param(&params, "device_id")?;
    let patch = read_merge_patch(&request)?;
    let now = ctx.now;
    let version = ctx.sql.transaction(|sql| {
        let version =
            twins::patch_reported(sql, &device_id, &patch, now).map_err(|error| match error {
                PatchError::Invalid(invalid) => ApiError::BadRequest {
                    message: invalid.to_string(),
                },
                PatchError::Store(error) => ApiError::Store(error),
            })?;
        // The export issue's record of what changed, committed with the change.
        if let (Some(_), Some(patch)) = (version, patch.as_object()) {
            for event in twin::change_events(patch) {
                device_events::record(
                    sql,
                    now,
                    device_id.as_str(),
                    device_events::kind::REPORTED_PROPERTY_CHANGE,
                    &event,
                )?;
            }
        }
        Ok::<_, ApiError>(version)
    })?;
    let version = version.ok_or_else(|| no_device(&device_id))?;
    json_response(200, &ReportedPatched { version })
}

fn no_device(device_id: &DeviceId) -> ApiError {
    ApiError::NotFound {
        message: format!("device `{device_id}` does not exist"),
    }
}

/// The most device ids one answer names; beyond, it asks the bridge to recheck every device.
const MAX_CHANGED_DEVICES: u32 = 1000;

/// `GET /internal/registry/connection-changes[?after=cursor]`: the devices whose right to
/// connect may have changed since `after` (none, with the current cursor, without `after`).
fn connection_changes(
    ctx: &mut Ctx,
    request: Request,
    _params: Params,
) -> Result<Response, ApiError> {
    let after = match query_param(&request, "after") {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| ApiError::BadRequest {
            message: format!("`after={raw}` is not a cursor"),
        })?),
    };
    let changes = audit::connection_changes(&mut ctx.sql, after, MAX_CHANGED_DEVICES)?;
    json_response(200, &changes)
}

/// `GET /internal/registry/registrations/{id}?idScope=`: the enrollments a DPS connection may
/// authenticate through; 404 for another application's ID scope.
fn registration_candidates(
    ctx: &mut Ctx,
    request: Request,
    params: Params,
) -> Result<Response, ApiError> {
    let registration_id = id_param(&params, "registration_id")?;
    let id_scope = query_param(&request, "idScope").ok_or_else(|| ApiError::BadRequest {
        message: "the `idScope` query parameter is required".to_owned(),
    })?;
    let random = ctx.random_bytes();
    let found = provisioning::candidates(&mut ctx.sql, &id_scope, &registration_id, random)?
        .ok_or_else(|| ApiError::NotFound {
            message: format!("`{id_scope}` is not this application's ID scope"),
        })?;
    json_response(200, &found)
}

/// `POST /internal/registry/registrations/{id}/register`: applies a DPS registration and
/// answers its `registrationState`; a refusal is 403 with the reason.
fn register(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let registration_id = id_param(&params, "registration_id")?;
    let body: RegisterRequest = read_json(&request)?;
    let (etag, now, random) = (ctx.new_etag(), ctx.now, ctx.random_bytes());
    let state = ctx.sql.transaction(|sql| {
        let (state, written) =
            provisioning::register(sql, &registration_id, &body, etag, now, random).map_err(
                |error| match error {
                    RegisterError::WrongIdScope(_) => ApiError::NotFound {
                        message: error.to_string(),
                    },
                    RegisterError::Refused(refused) => ApiError::Forbidden {
                        message: refused.to_string(),
                    },
                    RegisterError::Store(error) => ApiError::Store(error),
                },
            )?;
        if let Some(written) = written {
            let action = if written.created {
                AuditAction::Create
            } else {
                AuditAction::Update
            };
            audit::append(
                sql,
                &AuditRecord {
                    at: now,
                    actor: format!("device:{registration_id}"),
                    action,
                    resource_type: audit::resource::DEVICE.to_owned(),
                    resource_id: registration_id.as_str().to_owned(),
                    detail: Some("dps registration".to_owned()),
                },
            )?;
        }
        Ok::<_, ApiError>(state)
    })?;
    json_response(200, &state)
}
