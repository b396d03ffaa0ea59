//! `/api/deviceTemplates`: list (paged, with the `$filter`/`$orderby` subset documented in
//! `gyre_domain::template`), get, create or replace (`PUT`), update (`PATCH`, RFC 7396), delete.
//!
//! The rules are gyre-domain's: `template::TemplateContent` checks a body and its DTDL (every
//! problem at once, each with its JSON path, in one 400), `template::check_deletable` refuses
//! to delete a template that devices use (409 naming how many), `store::device_templates` holds
//! the SQL. Each write runs in one transaction with its audit record; `If-Match` is honoured on
//! `PUT` over an existing template, `PATCH` and `DELETE` (412 on mismatch).
//!
//! Not owned here: authentication and authorization (`gyre_component::authorized`).

use gyre_component::{
    authorized, check_if_match, json_response, merge_patch, no_content, page_request,
    page_response, path_param, query_param, read_json, read_merge_patch, ApiError, Ctx,
};
use gyre_domain::dtdl::Dtmi;
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::device_templates;
use gyre_domain::store::Sql;
use gyre_domain::template::{
    check_deletable, parse_template_id, DeviceTemplate, DeviceTemplateDto, TemplateContent,
    TemplateCursor, TemplateListQuery,
};
use spin_sdk::http::{Params, Request, Response, Router};

/// The audit log's name for these resources.
const RESOURCE_TYPE: &str = "deviceTemplate";

pub fn routes(router: &mut Router) {
    router.get("/api/deviceTemplates", authorized(list));
    router.get("/api/deviceTemplates/:device_template_id", authorized(get));
    router.put("/api/deviceTemplates/:device_template_id", authorized(put));
    router.patch(
        "/api/deviceTemplates/:device_template_id",
        authorized(patch),
    );
    router.delete(
        "/api/deviceTemplates/:device_template_id",
        authorized(delete),
    );
}

/// `GET /deviceTemplates`: one page that passes `$filter`, in `$orderby` order.
fn list(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let page = page_request(&request)?;
    let query = TemplateListQuery::parse(
        query_param(&request, "$filter").as_deref(),
        query_param(&request, "$orderby").as_deref(),
    )
    .map_err(bad_request)?;
    let after = page
        .after
        .as_deref()
        .map(|token| TemplateCursor::decode(token, query.order()))
        .transpose()
        .map_err(bad_request)?;
    let templates =
        device_templates::list(&mut ctx.sql, &query, after.as_ref(), page.fetch_limit())?;
    page_response(
        &request,
        &page,
        templates,
        |template| DeviceTemplateDto::from(template),
        |last| {
            TemplateCursor::after(last.id(), last.content().display_name(), query.order()).encode()
        },
    )
}

/// `GET /deviceTemplates/{id}`.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let id = template_id(&params)?;
    let template = device_templates::get(&mut ctx.sql, &id)?.ok_or_else(|| not_found(&id))?;
    json_response(200, &DeviceTemplateDto::from(&template))
}

/// `PUT /deviceTemplates/{id}`: publishes a template, or replaces the one with this id.
fn put(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = template_id(&params)?;
    let body = read_json(&request)?;
    let content = TemplateContent::parse(&id, &body).map_err(bad_request)?;
    let etag = ctx.new_etag();
    let now = ctx.now;
    let create_record = ctx.audit_record(AuditAction::Create, RESOURCE_TYPE, id.as_str());
    let update_record = ctx.audit_record(AuditAction::Update, RESOURCE_TYPE, id.as_str());
    let template = ctx.sql.transaction(|sql| {
        match device_templates::get(sql, &id)? {
            None => {
                let template = DeviceTemplate::create(id.clone(), content, etag, now);
                // The transaction holds the write lock since the read above, so the insert
                // cannot find the id taken.
                device_templates::insert(sql, &template)?;
                audit::append(sql, &create_record)?;
                Ok::<_, ApiError>(template)
            }
            Some(current) => {
                check_if_match(&request, current.etag())?;
                let template = current.replaced(content, etag, now);
                device_templates::update(sql, &template)?;
                audit::append(sql, &update_record)?;
                Ok(template)
            }
        }
    })?;
    json_response(200, &DeviceTemplateDto::from(&template))
}

/// `PATCH /deviceTemplates/{id}`: merges the patch into the template's JSON and checks the
/// result as a whole body (the capability model again only if the patch changed it).
fn patch(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = template_id(&params)?;
    let patch = read_merge_patch(&request)?;
    let etag = ctx.new_etag();
    let now = ctx.now;
    let update_record = ctx.audit_record(AuditAction::Update, RESOURCE_TYPE, id.as_str());
    let template = ctx.sql.transaction(|sql| {
        let current = device_templates::get(sql, &id)?.ok_or_else(|| not_found(&id))?;
        check_if_match(&request, current.etag())?;
        let mut merged = DeviceTemplateDto::from(&current).to_json();
        merge_patch(&mut merged, &patch);
        let content = TemplateContent::parse_update(&current, &merged).map_err(bad_request)?;
        let template = current.replaced(content, etag, now);
        device_templates::update(sql, &template)?;
        audit::append(sql, &update_record)?;
        Ok::<_, ApiError>(template)
    })?;
    json_response(200, &DeviceTemplateDto::from(&template))
}

/// `DELETE /deviceTemplates/{id}`: 409 while devices use the template.
fn delete(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let id = template_id(&params)?;
    let delete_record = ctx.audit_record(AuditAction::Delete, RESOURCE_TYPE, id.as_str());
    ctx.sql.transaction(|sql| {
        let current = device_templates::get(sql, &id)?.ok_or_else(|| not_found(&id))?;
        check_if_match(&request, current.etag())?;
        let n_devices = device_templates::count_devices_using(sql, &id)?;
        check_deletable(&id, n_devices).map_err(|error| ApiError::Conflict {
            message: error.to_string(),
        })?;
        device_templates::delete(sql, &id)?;
        audit::append(sql, &delete_record)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(no_content())
}

fn template_id(params: &Params) -> Result<Dtmi, ApiError> {
    let raw = path_param(params, "device_template_id")?;
    parse_template_id(&raw).map_err(bad_request)
}

fn not_found(id: &Dtmi) -> ApiError {
    ApiError::NotFound {
        message: format!("device template `{id}` does not exist"),
    }
}

fn bad_request(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        message: error.to_string(),
    }
}
