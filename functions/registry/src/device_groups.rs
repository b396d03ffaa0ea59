//! `/api/deviceGroups`: list, get, create or replace (`PUT`), update (`PATCH`, RFC 7396),
//! delete, and `GET /deviceGroups/{id}/devices`, the group's members at that moment.
//!
//! The rules are gyre-domain's: `group::GroupContent` checks a body and parses its `filter`
//! (IoT Central's query language; errors say at which character and why), and
//! `store::device_groups` holds the SQL, including the member query that compiles the filter
//! with `DeviceFilter::to_sql`. Each write runs in one transaction with its audit record;
//! `If-Match` is honoured on `PUT` over an existing group, `PATCH` and `DELETE`.
//!
//! Not owned here: authentication and authorization (`gyre_component::authorized`).

use gyre_component::{
    authorized, check_if_match, json_response, merge_patch, no_content, page_request,
    page_response, read_json, read_merge_patch, ApiError, Ctx,
};
use gyre_domain::device::DeviceBody;
use gyre_domain::group::{DeviceGroup, DeviceGroupDto, DeviceGroupId, GroupContent};
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::device_groups;
use gyre_domain::store::Sql;
use spin_sdk::http::{Params, Request, Response, Router};

/// The audit log's name for these resources.
const RESOURCE_TYPE: &str = "deviceGroup";

pub fn routes(router: &mut Router) {
    router.get("/api/deviceGroups", authorized(list));
    router.get("/api/deviceGroups/:device_group_id", authorized(get));
    router.put("/api/deviceGroups/:device_group_id", authorized(put));
    router.patch("/api/deviceGroups/:device_group_id", authorized(patch));
    router.delete("/api/deviceGroups/:device_group_id", authorized(delete));
    router.get(
        "/api/deviceGroups/:device_group_id/devices",
        authorized(devices),
    );
}

/// `GET /deviceGroups`: one page in id order.
fn list(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let page = page_request(&request)?;
    let after = page.after_as("a device group id", DeviceGroupId::parse)?;
    let groups = device_groups::list(&mut ctx.sql, after.as_ref(), page.fetch_limit())?;
    page_response(
        &request,
        &page,
        groups,
        |group| DeviceGroupDto::from(group),
        |group| group.id().as_str().to_owned(),
    )
}

/// `GET /deviceGroups/{id}`.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let id = group_id(&params)?;
    let group = device_groups::get(&mut ctx.sql, &id)?.ok_or_else(|| not_found(&id))?;
    json_response(200, &DeviceGroupDto::from(&group))
}

/// `PUT /deviceGroups/{id}`: creates the group, or replaces the one with this id.
fn put(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = group_id(&params)?;
    let body = read_json(&request)?;
    let content = GroupContent::parse(&id, &body).map_err(bad_request)?;
    let etag = ctx.new_etag();
    let now = ctx.now;
    let create_record = ctx.audit_record(AuditAction::Create, RESOURCE_TYPE, id.as_str());
    let update_record = ctx.audit_record(AuditAction::Update, RESOURCE_TYPE, id.as_str());
    let group = ctx
        .sql
        .transaction(|sql| match device_groups::get(sql, &id)? {
            None => {
                let group = DeviceGroup::create(id.clone(), content, etag, now);
                // The transaction holds the write lock since the read above, so the insert cannot
                // find the id taken.
                device_groups::insert(sql, &group)?;
                audit::append(sql, &create_record)?;
                Ok::<_, ApiError>(group)
            }
            Some(current) => {
                check_if_match(&request, current.etag())?;
                let group = current.replaced(content, etag, now);
                device_groups::update(sql, &group)?;
                audit::append(sql, &update_record)?;
                Ok(group)
            }
        })?;
    json_response(200, &DeviceGroupDto::from(&group))
}

/// `PATCH /deviceGroups/{id}`: merges the patch into the group's JSON and checks the result as
/// a whole body, filter included.
fn patch(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = group_id(&params)?;
    let patch = read_merge_patch(&request)?;
    let etag = ctx.new_etag();
    let now = ctx.now;
    let update_record = ctx.audit_record(AuditAction::Update, RESOURCE_TYPE, id.as_str());
    let group = ctx.sql.transaction(|sql| {
        let current = device_groups::get(sql, &id)?.ok_or_else(|| not_found(&id))?;
        check_if_match(&request, current.etag())?;
        let mut merged = DeviceGroupDto::from(&current).to_json();
        merge_patch(&mut merged, &patch);
        let content = GroupContent::parse_update(&current, &merged).map_err(bad_request)?;
        let group = current.replaced(content, etag, now);
        device_groups::update(sql, &group)?;
        audit::append(sql, &update_record)?;
        Ok::<_, ApiError>(group)
    })?;
    json_response(200, &DeviceGroupDto::from(&group))
}

/// `DELETE /deviceGroups/{id}`. Devices are untouched: membership is never stored.
fn delete(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = group_id(&params)?;
    let delete_record = ctx.audit_record(AuditAction::Delete, RESOURCE_TYPE, id.as_str());
    ctx.sql.transaction(|sql| {
        let current = device_groups::get(sql, &id)?.ok_or_else(|| not_found(&id))?;
        check_if_match(&request, current.etag())?;
        device_groups::delete(sql, &id)?;
        audit::append(sql, &delete_record)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(no_content())
}

/// `GET /deviceGroups/{id}/devices`: the devices matching the group's filter now, paged in id
/// order (`$skiptoken` is the last device id of the previous page).
fn devices(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = group_id(&params)?;
    let page = page_request(&request)?;
    let group = device_groups::get(&mut ctx.sql, &id)?.ok_or_else(|| not_found(&id))?;
    let members = device_groups::members(
        &mut ctx.sql,
        group.content().filter(),
        page.after.as_deref(),
        page.fetch_limit(),
    )?;
    page_response(
        &request,
        &page,
        members,
        DeviceBody::from_device,
        |device| device.id.as_str().to_owned(),
    )
}

fn group_id(params: &Params) -> Result<DeviceGroupId, ApiError> {
    let raw = params.get("device_group_id").unwrap_or_default();
    DeviceGroupId::parse(raw).map_err(bad_request)
}

fn not_found(id: &DeviceGroupId) -> ApiError {
    ApiError::NotFound {
        message: format!("device group `{id}` does not exist"),
    }
}

fn bad_request(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        message: error.to_string(),
    }
}
