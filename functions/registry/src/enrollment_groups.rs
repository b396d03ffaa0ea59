//! `/api/enrollmentGroups`: list, get, create (PUT), update (merge patch), delete of
//! symmetric-key enrollment groups (type `iot`).
//!
//! The rules are gyre-domain's (`enrollment`, `store::enrollment_groups`); each write reads,
//! decides and writes inside one transaction together with its audit row. A PUT on an
//! existing id is a 409 (use PATCH). `If-Match` is honoured on PATCH and DELETE. PATCH applies
//! the body as a JSON merge patch to the group's GET representation; a key set to `null` is
//! regenerated, a key given replaces (revokes) the old one.

use gyre_component::{
    authorized, check_if_match, json_response, merge_patch, no_content, page_request,
    page_response, read_json, read_merge_patch, ApiError, Ctx,
};
use gyre_domain::enrollment::{EnrollmentGroup, EnrollmentGroupBody, EnrollmentGroupId};
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::enrollment_groups::{self, Inserted};
use gyre_domain::store::Sql;
use spin_sdk::http::{Params, Request, Response, Router};

/// The audit log's name for these resources.
// The bridge watches it (`audit::connection_changes`).
const RESOURCE_TYPE: &str = audit::resource::ENROLLMENT_GROUP;

pub fn routes(router: &mut Router) {
    router.get("/api/enrollmentGroups", authorized(list));
    router.get(
        "/api/enrollmentGroups/:enrollment_group_id",
        authorized(get),
    );
    router.put(
        "/api/enrollmentGroups/:enrollment_group_id",
        authorized(create),
    );
    router.patch(
        "/api/enrollmentGroups/:enrollment_group_id",
        authorized(update),
    );
    router.delete(
        "/api/enrollmentGroups/:enrollment_group_id",
        authorized(delete),
    );
}

/// `GET /enrollmentGroups`: one page in id order.
fn list(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let page = page_request(&request)?;
    let after = page.after_as("an enrollment group id", EnrollmentGroupId::parse)?;
    let groups = enrollment_groups::list(&mut ctx.sql, after.as_ref(), page.fetch_limit())?;
    page_response(
        &request,
        &page,
        groups,
        EnrollmentGroupBody::from_group,
        |group| group.id.as_str().to_owned(),
    )
}

/// `GET /enrollmentGroups/{id}`.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let group_id = group_id(&params)?;
    let group =
        enrollment_groups::get(&mut ctx.sql, &group_id)?.ok_or_else(|| not_found(&group_id))?;
    json_response(200, &EnrollmentGroupBody::from_group(&group))
}

/// `PUT /enrollmentGroups/{id}`: creates a group, generating the keys left out.
fn create(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let group_id = group_id(&params)?;
    let body: EnrollmentGroupBody = read_json(&request)?;
    let group = body
        .to_group(&group_id, ctx.new_etag(), ctx.random_bytes())
        .map_err(bad_request)?;
    let audit_record = ctx.audit_record(AuditAction::Create, RESOURCE_TYPE, group_id.as_str());
    let now = ctx.now;
    ctx.sql.transaction(|sql| {
        match enrollment_groups::insert(sql, &group, now)? {
            Inserted::Created => {}
            Inserted::AlreadyExists => {
                return Err(ApiError::Conflict {
                    message: format!(
                        "enrollment group `{group_id}` already exists; use PATCH to change it"
                    ),
                })
            }
        }
        audit::append(sql, &audit_record)?;
        Ok(())
    })?;
    json_response(200, &EnrollmentGroupBody::from_group(&group))
}

/// `PATCH /enrollmentGroups/{id}`: a JSON merge patch of the group's representation.
fn update(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let group_id = group_id(&params)?;
    let patch = read_merge_patch(&request)?;
    let etag = ctx.new_etag();
    let random = ctx.random_bytes();
    let audit_record = ctx.audit_record(AuditAction::Update, RESOURCE_TYPE, group_id.as_str());
    let now = ctx.now;
    let updated = ctx.sql.transaction(|sql| {
        let current = current_group(sql, &request, &group_id)?;
        let mut document = EnrollmentGroupBody::from_group(&current).to_document();
        merge_patch(&mut document, &patch);
        let merged =
            EnrollmentGroupBody::from_document(document).map_err(|error| ApiError::BadRequest {
                message: format!("the patched document is not valid: {error}"),
            })?;
        let updated = merged
            .to_updated_group(&current, etag, random)
            .map_err(bad_request)?;
        if !enrollment_groups::update(sql, &updated, now)? {
            return Err(not_found(&group_id));
        }
        audit::append(sql, &audit_record)?;
        Ok::<EnrollmentGroup, ApiError>(updated)
    })?;
    json_response(200, &EnrollmentGroupBody::from_group(&updated))
}

/// `DELETE /enrollmentGroups/{id}`: devices provisioned through it keep working until their
/// next provisioning; new ones can no longer use its keys.
fn delete(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let group_id = group_id(&params)?;
    let audit_record = ctx.audit_record(AuditAction::Delete, RESOURCE_TYPE, group_id.as_str());
    ctx.sql.transaction(|sql| {
        current_group(sql, &request, &group_id)?;
        enrollment_groups::delete(sql, &group_id)?;
        audit::append(sql, &audit_record)?;
        Ok::<(), ApiError>(())
    })?;
    Ok(no_content())
}

/// The stored group, after checking `If-Match` against its etag.
fn current_group<S: Sql>(
    sql: &mut S,
    request: &Request,
    group_id: &EnrollmentGroupId,
) -> Result<EnrollmentGroup, ApiError> {
    let group = enrollment_groups::get(sql, group_id)?.ok_or_else(|| not_found(group_id))?;
    check_if_match(request, &group.etag)?;
    Ok(group)
}

fn group_id(params: &Params) -> Result<EnrollmentGroupId, ApiError> {
    let raw = params.get("enrollment_group_id").unwrap_or_default();
    EnrollmentGroupId::parse(raw).map_err(|error| ApiError::BadRequest {
        message: format!("`{raw}`: {error}"),
    })
}

fn bad_request(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        message: error.to_string(),
    }
}

fn not_found(group_id: &EnrollmentGroupId) -> ApiError {
    ApiError::NotFound {
        message: format!("enrollment group `{group_id}` does not exist"),
    }
}
