//! `/api/devices`: list (keyset pages, `$filter`, `$orderby`), get, create (PUT), update (merge
//! patch), delete; `/devices/{id}/credentials`; `/devices/{id}/attestation` (individual
//! symmetric-key enrollment: GET, PUT, PATCH, DELETE).
//!
//! The rules are gyre-domain's (`device`, `enrollment`, `store::devices`,
//! `store::enrollment_groups`, `store::settings`); each handler parses, then reads, decides and
//! writes inside one transaction together with its audit row. A PUT on an existing id is a 409
//! (use PATCH). `If-Match` is honoured on PATCH and DELETE. PATCH applies the body as a JSON
//! merge patch to the device's GET representation and validates the result as a whole.
//!
//! Device ids may hold characters that are special in URLs (`%`, `?`, `$`, `'`...); clients
//! percent-encode them in the path and this module decodes the segment before parsing it.

use gyre_component::{
    authorized, check_if_match, json_response, merge_patch, no_content, page_request,
    page_response, path_param, query_param, read_json, read_merge_patch, ApiError, Ctx,
};
use gyre_domain::device::{
    AttestationBody, Device, DeviceBody, DeviceCredentials, DeviceCursor, DeviceId, DeviceQuery,
};
use gyre_domain::store::audit::{self, AuditAction, AuditRecord};
use gyre_domain::store::devices::{self, Inserted};
use gyre_domain::store::{settings, Sql};
use gyre_domain::time::Timestamp;
use spin_sdk::http::{Params, Request, Response, Router};

/// The audit log's names for these resources.
// The bridge watches these (`audit::connection_changes`).
const DEVICE: &str = audit::resource::DEVICE;
const ATTESTATION: &str = audit::resource::DEVICE_ATTESTATION;

pub fn routes(router: &mut Router) {
    router.get("/api/devices", authorized(list));
    router.get("/api/devices/:device_id", authorized(get));
    router.put("/api/devices/:device_id", authorized(create));
    router.patch("/api/devices/:device_id", authorized(update));
    router.delete("/api/devices/:device_id", authorized(delete));
    router.get(
        "/api/devices/:device_id/credentials",
        authorized(credentials),
    );
    router.get(
        "/api/devices/:device_id/attestation",
        authorized(get_attestation),
    );
    router.put(
        "/api/devices/:device_id/attestation",
        authorized(put_attestation),
    );
    router.patch(
        "/api/devices/:device_id/attestation",
        authorized(patch_attestation),
    );
    router.delete(
        "/api/devices/:device_id/attestation",
        authorized(delete_attestation),
    );
}

/// `GET /devices`: one page of devices matching `$filter`, in `$orderby` order.
fn list(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let page = page_request(&request)?;
    let query = DeviceQuery::parse(
        query_param(&request, "$filter").as_deref(),
        query_param(&request, "$orderby").as_deref(),
        page.after.as_deref(),
    )
    .map_err(bad_request)?;
    let found = devices::query_devices(&mut ctx.sql, &query, page.fetch_limit())?;
    page_response(&request, &page, found, DeviceBody::from_device, |last| {
        DeviceCursor::after_row(query.order_by, &last.id, &last.display_name).encode()
    })
}

/// `GET /devices/{id}`.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let device = devices::get(&mut ctx.sql, &device_id)?.ok_or_else(|| not_found(&device_id))?;
    json_response(200, &DeviceBody::from_device(&device))
}

/// `PUT /devices/{id}`: registers a new device with fresh individual keys.
fn create(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body: DeviceBody = read_json(&request)?;
    let device = body
        .to_new_device(&device_id, ctx.new_etag(), ctx.random_bytes())
        .map_err(bad_request)?;
    let audit_record = ctx.audit_record(AuditAction::Create, DEVICE, device_id.as_str());
    let now = ctx.now;
    ctx.sql.transaction(|sql| {
        check_template(sql, &device)?;
        match devices::insert(sql, &device, now)? {
            Inserted::Created => {}
            Inserted::AlreadyExists => {
                return Err(ApiError::Conflict {
                    message: format!("device `{device_id}` already exists; use PATCH to change it"),
                })
            }
        }
        audit::append(sql, &audit_record)?;
        Ok(())
    })?;
    json_response(200, &DeviceBody::from_device(&device))
}

/// `PATCH /devices/{id}`: a JSON merge patch of the device's representation.
fn update(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let patch = read_merge_patch(&request)?;
    let etag = ctx.new_etag();
    let audit_record = ctx.audit_record(AuditAction::Update, DEVICE, device_id.as_str());
    let now = ctx.now;
    let updated = ctx.sql.transaction(|sql| {
        let current = current_device(sql, &request, &device_id)?;
        let mut document = DeviceBody::from_device(&current).to_document();
        merge_patch(&mut document, &patch);
        let merged = DeviceBody::from_document(document).map_err(invalid_patch)?;
        let updated = merged
            .to_updated_device(&current, etag)
            .map_err(bad_request)?;
        if updated.template != current.template {
            check_template(sql, &updated)?;
        }
        save(sql, &updated, now, &audit_record)?;
        Ok::<Device, ApiError>(updated)
    })?;
    json_response(200, &DeviceBody::from_device(&updated))
}

/// `DELETE /devices/{id}`.
fn delete(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let audit_record = ctx.audit_record(AuditAction::Delete, DEVICE, device_id.as_str());
    ctx.sql.transaction(|sql| {
        current_device(sql, &request, &device_id)?;
        devices::delete(sql, &device_id)?;
        audit::append(sql, &audit_record)?;
        Ok::<(), ApiError>(())
    })?;
    Ok(no_content())
}

/// `GET /devices/{id}/credentials`: the application's ID scope and the device's keys.
fn credentials(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let random = ctx.random_bytes();
    let credentials = ctx.sql.transaction(|sql| {
        let device = devices::get(sql, &device_id)?.ok_or_else(|| not_found(&device_id))?;
        let id_scope = settings::id_scope(sql, random)?;
        let keys = devices::connection_keys(sql, &device)?;
        Ok::<_, ApiError>(DeviceCredentials::new(&id_scope, keys.as_ref()))
    })?;
    json_response(200, &credentials)
}

/// `GET /devices/{id}/attestation`.
fn get_attestation(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let device = devices::get(&mut ctx.sql, &device_id)?.ok_or_else(|| not_found(&device_id))?;
    let keys = device
        .keys
        .as_ref()
        .ok_or_else(|| no_attestation(&device_id))?;
    json_response(200, &AttestationBody::from_keys(keys))
}

/// `PUT /devices/{id}/attestation`: sets the individual keys (generating any left out); the
/// old keys stop working at once.
fn put_attestation(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let body: AttestationBody = read_json(&request)?;
    let keys = body.to_keys(ctx.random_bytes()).map_err(bad_request)?;
    let etag = ctx.new_etag();
    let audit_record = ctx.audit_record(AuditAction::Update, ATTESTATION, device_id.as_str());
    let now = ctx.now;
    ctx.sql.transaction(|sql| {
        let mut device = current_device(sql, &request, &device_id)?;
        device.keys = Some(keys.clone());
        device.etag = etag;
        save(sql, &device, now, &audit_record)
    })?;
    json_response(200, &AttestationBody::from_keys(&keys))
}

/// `PATCH /devices/{id}/attestation`: a merge patch of the current attestation; a key set to
/// `null` is regenerated.
fn patch_attestation(
    ctx: &mut Ctx,
    request: Request,
    params: Params,
) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let patch = read_merge_patch(&request)?;
    let random = ctx.random_bytes();
    let etag = ctx.new_etag();
    let audit_record = ctx.audit_record(AuditAction::Update, ATTESTATION, device_id.as_str());
    let now = ctx.now;
    let keys = ctx.sql.transaction(|sql| {
        let mut device = current_device(sql, &request, &device_id)?;
        let current = device
            .keys
            .as_ref()
            .ok_or_else(|| no_attestation(&device_id))?;
        let mut document = AttestationBody::from_keys(current).to_document();
        merge_patch(&mut document, &patch);
        let merged = AttestationBody::from_document(document).map_err(invalid_patch)?;
        let keys = merged.to_keys(random).map_err(bad_request)?;
        device.keys = Some(keys.clone());
        device.etag = etag;
        save(sql, &device, now, &audit_record)?;
        Ok::<_, ApiError>(keys)
    })?;
    json_response(200, &AttestationBody::from_keys(&keys))
}

/// `DELETE /devices/{id}/attestation`: removes the individual enrollment; the device can then
/// provision only through an enrollment group.
fn delete_attestation(
    ctx: &mut Ctx,
    request: Request,
    params: Params,
) -> Result<Response, ApiError> {
    let device_id = device_id(&params)?;
    let etag = ctx.new_etag();
    let audit_record = ctx.audit_record(AuditAction::Delete, ATTESTATION, device_id.as_str());
    let now = ctx.now;
    ctx.sql.transaction(|sql| {
        let mut device = current_device(sql, &request, &device_id)?;
        if device.keys.is_none() {
            return Err(no_attestation(&device_id));
        }
        device.keys = None;
        device.etag = etag;
        save(sql, &device, now, &audit_record)
    })?;
    Ok(no_content())
}

/// The stored device, after checking `If-Match` against its etag.
fn current_device<S: Sql>(
    sql: &mut S,
    request: &Request,
    device_id: &DeviceId,
) -> Result<Device, ApiError> {
    let device = devices::get(sql, device_id)?.ok_or_else(|| not_found(device_id))?;
    check_if_match(request, &device.etag)?;
    Ok(device)
}

fn save<S: Sql>(
    sql: &mut S,
    device: &Device,
    now: Timestamp,
    audit_record: &AuditRecord,
) -> Result<(), ApiError> {
    if !devices::update(sql, device, now)? {
        return Err(not_found(&device.id));
    }
    audit::append(sql, audit_record)?;
    Ok(())
}

/// A device's `template`, when it has one, must name a published template.
fn check_template<S: Sql>(sql: &mut S, device: &Device) -> Result<(), ApiError> {
    match &device.template {
        Some(template) if !devices::template_exists(sql, template)? => Err(ApiError::BadRequest {
            message: format!(
                "`template`: device template `{}` does not exist; publish it first",
                template.as_str()
            ),
        }),
        _ => Ok(()),
    }
}

/// The `:device_id` path segment, percent-decoded and parsed (every device route's).
pub(crate) fn device_id(params: &Params) -> Result<DeviceId, ApiError> {
    let decoded = path_param(params, "device_id")?;
    DeviceId::parse(&decoded).map_err(|error| ApiError::BadRequest {
        message: format!("`{decoded}`: {error}"),
    })
}

fn invalid_patch(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        message: format!("the patched document is not valid: {error}"),
    }
}

fn bad_request(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        message: error.to_string(),
    }
}

/// 404 for a device that does not exist.
pub(crate) fn not_found(device_id: &DeviceId) -> ApiError {
    ApiError::NotFound {
        message: format!("device `{device_id}` does not exist"),
    }
}

fn no_attestation(device_id: &DeviceId) -> ApiError {
    ApiError::NotFound {
        message: format!("device `{device_id}` has no individual attestation"),
    }
}
