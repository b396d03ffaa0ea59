//! `/api/devices/{id}/properties`: a device's cloud and reported properties as IoT Central
//! shows them (GET), and writes of its cloud properties (PUT replaces the set, PATCH merges;
//! both answer 202).
//!
//! The rules and shapes are gyre-domain's (`device::properties`, `store::device_properties`):
//! a write reads the device and its template's model, applies the body, and stores the new set
//! with a new device etag and its audit row, in one transaction. `If-Match` is honoured against
//! the device's etag, which every response also carries in an `ETag` header.

use gyre_component::{
    authorized, check_if_match, json_response, path_param, read_json, read_merge_patch, ApiError,
    Ctx,
};
use gyre_domain::device::properties::{self, PropertyWriteError, WriteBody, WriteMode};
use gyre_domain::device::DeviceId;
use gyre_domain::dtdl::DeviceModel;
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::{device_properties, Sql};
use spin_sdk::http::{Params, Request, Response, Router};

/// The audit log's name for this resource.
const DEVICE_PROPERTIES: &str = "deviceProperties";

pub fn routes(router: &mut Router) {
    router.get("/api/devices/:device_id/properties", authorized(get));
    router.put("/api/devices/:device_id/properties", authorized(put));
    router.patch("/api/devices/:device_id/properties", authorized(patch));
}

/// `GET /devices/{id}/properties`.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let stored =
        device_properties::get(&mut ctx.sql, &device_id)?.ok_or_else(|| not_found(&device_id))?;
    let body = properties::properties_body(&stored.cloud, &stored.reported);
    with_etag(json_response(200, &body)?, &stored.etag)
}

/// `PUT /devices/{id}/properties`: the body becomes the device's cloud properties.
fn put(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body: WriteBody = read_json(&request)?;
    write(ctx, &request, &device_id, &body, WriteMode::Replace)
}

/// `PATCH /devices/{id}/properties`: a JSON merge patch of the device's cloud properties.
fn patch(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body = WriteBody::from(read_merge_patch(&request)?);
    write(ctx, &request, &device_id, &body, WriteMode::Merge)
}

fn write(
    ctx: &mut Ctx,
    request: &Request,
    device_id: &DeviceId,
    body: &WriteBody,
    mode: WriteMode,
) -> Result<Response, ApiError> {
    let etag = ctx.new_etag();
    let audit_record = ctx.audit_record(AuditAction::Update, DEVICE_PROPERTIES, device_id.as_str());
    let now = ctx.now;
    let cloud = ctx.sql.transaction(|sql| {
        let stored = device_properties::get(sql, device_id)?.ok_or_else(|| not_found(device_id))?;
        check_if_match(request, &stored.etag)?;
        let model = match &stored.capability_model {
            Some(json) => Some(DeviceModel::parse(json).map_err(|err| {
                ApiError::Unexpected(anyhow::anyhow!(
                    "the stored template {:?} no longer parses: {err}",
                    stored.template
                ))
            })?),
            None => None,
        };
        let cloud = properties::apply_write(model.as_ref(), &stored.cloud, body.json(), mode)
            .map_err(|err| match err {
                PropertyWriteError::NoTemplate if stored.template.is_some() => {
                    ApiError::BadRequest {
                        message: format!(
                        "the device's template `{}` does not exist, so it has no cloud properties",
                        stored.template.as_deref().unwrap_or_default()
                    ),
                    }
                }
                err => ApiError::BadRequest {
                    message: err.to_string(),
                },
            })?;
        if !device_properties::write_cloud(sql, device_id, &cloud, &etag, now)? {
            return Err(not_found(device_id));
        }
        audit::append(sql, &audit_record)?;
        Ok::<_, ApiError>(cloud)
    })?;
    with_etag(json_response(202, &cloud.accepted_body())?, &etag)
}

/// The response, carrying the device's etag.
fn with_etag(mut response: Response, etag: &str) -> Result<Response, ApiError> {
    response.set_header("etag", etag);
    Ok(response)
}

/// The `:device_id` path segment, percent-decoded and parsed.
fn device_id(params: &Params) -> Result<DeviceId, ApiError> {
    let decoded = path_param(params, "device_id")?;
    DeviceId::parse(&decoded).map_err(|error| ApiError::BadRequest {
        message: format!("`{decoded}`: {error}"),
    })
}

fn not_found(device_id: &DeviceId) -> ApiError {
    ApiError::NotFound {
        message: format!("device `{device_id}` does not exist"),
    }
}
