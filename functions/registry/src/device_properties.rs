//! `/api/devices/{id}/properties` and `/api/devices/{id}/components/{name}/properties`: a
//! device's properties as IoT Central shows them (GET: reported values, writable values with
//! the device's acknowledgement under `$metadata`, cloud properties), and writes (PUT, PATCH;
//! both answer 202): cloud properties are stored, writable device properties become a desired
//! patch of the device's twin and are pushed to the device.
//!
//! The rules and shapes are gyre-domain's (`device::properties`, `twin`,
//! `store::device_properties`, `store::twins`): a write reads the device, its template's model
//! and its twin, applies the body, and stores the new cloud set and desired document with a new
//! device etag, the change records (`store::device_events`) and the audit row, in one
//! transaction. Only then is the desired patch pushed through the bridge's control API; a
//! bridge that cannot be reached is logged and ignored, as the device reads its desired
//! properties when it next fetches its twin. `If-Match` is honoured against the device's etag,
//! which every response also carries in an `ETag` header.

use crate::devices::{device_id, not_found};
use gyre_component::{
    authorized, check_if_match, json_response, path_param, read_json, read_merge_patch, ApiError,
    Ctx,
};
use gyre_domain::bridge::DesiredPush;
use gyre_domain::device::properties::{self, PropertyWriteError, Scope, WriteBody, WriteMode};
use gyre_domain::device::DeviceId;
use gyre_domain::dtdl::DeviceModel;
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::device_events::{self, kind};
use gyre_domain::store::device_properties::StoredProperties;
use gyre_domain::store::twins::{self, PatchError};
use gyre_domain::store::{device_properties, Sql};
use gyre_domain::twin;
use serde_json::Value;
use spin_sdk::http::{Params, Request, Response, Router};

use crate::control::{self, ControlFailure};

/// The audit log's name for this resource.
const DEVICE_PROPERTIES: &str = "deviceProperties";

pub fn routes(router: &mut Router) {
    router.get("/api/devices/:device_id/properties", authorized(get));
    router.put("/api/devices/:device_id/properties", authorized(put));
    router.patch("/api/devices/:device_id/properties", authorized(patch));
    const COMPONENT: &str = "/api/devices/:device_id/components/:component_name/properties";
    router.get(COMPONENT, authorized(get_component));
    router.put(COMPONENT, authorized(put_component));
    router.patch(COMPONENT, authorized(patch_component));
}

/// `GET /devices/{id}/properties`.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    read(ctx, &device_id, Scope::Device)
}

/// `GET /devices/{id}/components/{name}/properties`.
fn get_component(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let component = path_param(&params, "component_name")?;
    read(ctx, &device_id, Scope::Component(&component))
}

/// `PUT /devices/{id}/properties`: the body becomes the device's cloud properties; its
/// writable properties are sent to the device.
fn put(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body: WriteBody = read_json(&request)?;
    write(
        ctx,
        &request,
        &device_id,
        &body,
        WriteMode::Replace,
        Scope::Device,
    )
}

/// `PATCH /devices/{id}/properties`: a JSON merge patch of the device's properties.
fn patch(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body = WriteBody::from(read_merge_patch(&request)?);
    write(
        ctx,
        &request,
        &device_id,
        &body,
        WriteMode::Merge,
        Scope::Device,
    )
}

/// `PUT /devices/{id}/components/{name}/properties`.
fn put_component(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let component = path_param(&params, "component_name")?;
    let body: WriteBody = read_json(&request)?;
    let scope = Scope::Component(&component);
    write(ctx, &request, &device_id, &body, WriteMode::Replace, scope)
}

/// `PATCH /devices/{id}/components/{name}/properties`.
fn patch_component(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let component = path_param(&params, "component_name")?;
    let body = WriteBody::from(read_merge_patch(&request)?);
    let scope = Scope::Component(&component);
    write(ctx, &request, &device_id, &body, WriteMode::Merge, scope)
}

fn read(ctx: &mut Ctx, device_id: &DeviceId, scope: Scope<'_>) -> Result<Response, ApiError> {
    // Two plain reads, no write lock: a write between them shows at the next GET.
    let stored =
        device_properties::get(&mut ctx.sql, device_id)?.ok_or_else(|| not_found(device_id))?;
    let model = model(&stored)?;
    check_component(model.as_ref(), scope)?;
    let twin = twins::get(&mut ctx.sql, device_id)?.ok_or_else(|| not_found(device_id))?;
    let view = properties::device_view(model.as_ref(), &twin);
    let body = properties::properties_body(&stored.cloud, &view);
    let body = match scope {
        Scope::Device => body,
        Scope::Component(component) => properties::component_body(&body, component),
    };
    with_etag(json_response(200, &body)?, &stored.etag)
}

fn write(
    ctx: &mut Ctx,
    request: &Request,
    device_id: &DeviceId,
    body: &WriteBody,
    mode: WriteMode,
    scope: Scope<'_>,
) -> Result<Response, ApiError> {
    let etag = ctx.new_etag();
    let audit_record = ctx.audit_record(AuditAction::Update, DEVICE_PROPERTIES, device_id.as_str());
    let now = ctx.now;
    let (written, version) = ctx.sql.transaction(|sql| {
        let stored = device_properties::get(sql, device_id)?.ok_or_else(|| not_found(device_id))?;
        check_if_match(request, &stored.etag)?;
        let model = model(&stored)?;
        check_component(model.as_ref(), scope)?;
        let twin = twins::get(sql, device_id)?.ok_or_else(|| not_found(device_id))?;
        let written = properties::apply_write(
            model.as_ref(),
            &stored.cloud,
            twin.desired.properties(),
            body.json(),
            mode,
            scope,
        )
        .map_err(|err| match err {
            PropertyWriteError::NoTemplate if stored.template.is_some() => ApiError::BadRequest {
                message: format!(
                    "the device's template `{}` does not exist, so it has no properties to write",
                    stored.template.as_deref().unwrap_or_default()
                ),
            },
            err => ApiError::BadRequest {
                message: err.to_string(),
            },
        })?;
        let version = if written.desired_patch.is_empty() {
            None
        } else {
            let patch = Value::Object(written.desired_patch.clone());
            let version = twins::patch_desired(sql, device_id, &patch, now)
                .map_err(|error| match error {
                    // Oversize is the desired document's limit (IoT Hub's), not the body's.
                    PatchError::Invalid(invalid) => ApiError::BadRequest {
                        message: format!("the device's desired properties: {invalid}"),
                    },
                    PatchError::Store(error) => ApiError::Store(error),
                })?
                .ok_or_else(|| not_found(device_id))?;
            Some(version)
        };
        if !device_properties::write_cloud(sql, device_id, &written.cloud, &etag, now)? {
            return Err(not_found(device_id));
        }
        for (kind, changes) in [
            (kind::CLOUD_PROPERTY_CHANGE, &written.cloud_changes),
            (kind::DESIRED_PROPERTY_CHANGE, &written.desired_patch),
        ] {
            for event in twin::change_events(changes) {
                device_events::record(sql, now, device_id.as_str(), kind, &event)?;
            }
        }
        audit::append(sql, &audit_record)?;
        Ok::<_, ApiError>((written, version))
    })?;
    if let Some(version) = version {
        push(device_id, &written.desired_patch, version);
    }
    let body = written.accepted_body(version);
    let body = match scope {
        Scope::Device => body,
        Scope::Component(component) => properties::component_body(&body, component),
    };
    with_etag(json_response(202, &body)?, &etag)
}

/// Sends the committed desired patch to the device if it is connected; a failure is only
/// logged, as the device reads its desired properties when it next fetches its twin.
fn push(device_id: &DeviceId, patch: &serde_json::Map<String, Value>, version: u64) {
    let push = DesiredPush {
        version,
        patch: twin::desired_push(&Value::Object(patch.clone()), version),
    };
    match control::push_desired(device_id.as_str(), &push) {
        Ok(_) => {}
        Err(ControlFailure::Unavailable(why)) => {
            eprintln!("desired push to `{device_id}` (version {version}) not sent: {why}");
        }
        Err(ControlFailure::Refused { status, error }) => {
            eprintln!(
                "desired push to `{device_id}` (version {version}) refused with {status}: {}: {}",
                error.code, error.message
            );
        }
    }
}

/// The device's template model, if it has one.
fn model(stored: &StoredProperties) -> Result<Option<DeviceModel>, ApiError> {
    match &stored.capability_model {
        Some(json) => Ok(Some(DeviceModel::parse(json).map_err(|err| {
            ApiError::Unexpected(anyhow::anyhow!(
                "the stored template {:?} no longer parses: {err}",
                stored.template
            ))
        })?)),
        None => Ok(None),
    }
}

/// A component route names a component of the device's template: 404 otherwise.
fn check_component(model: Option<&DeviceModel>, scope: Scope<'_>) -> Result<(), ApiError> {
    let Scope::Component(component) = scope else {
        return Ok(());
    };
    if model.and_then(|model| model.component(component)).is_some() {
        return Ok(());
    }
    Err(ApiError::NotFound {
        message: match model {
            Some(_) => format!("the device's template has no component `{component}`"),
            None => format!("the device has no template, so it has no component `{component}`"),
        },
    })
}

/// The response, carrying the device's etag.
fn with_etag(mut response: Response, etag: &str) -> Result<Response, ApiError> {
    response.set_header("etag", etag);
    Ok(response)
}

