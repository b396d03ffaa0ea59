//! `/api/roles`: the built-in roles as IoT Central shows them, `{id, displayName}`; read-only,
//! as in IoT Central's API.
//!
//! The roles and their permissions are gyre-domain's (`auth::BUILT_IN_ROLES`); this file only
//! lists them, in IoT Central's order, with the usual paging (`$top`, `$skiptoken` = the last
//! role id of the previous page). Not owned here: custom roles, which Gyre does not have.

use std::collections::BTreeMap;

use gyre_component::{authorized, collection, json_response, page_request, ApiError, Ctx};
use gyre_domain::auth::{Role, RoleId, BUILT_IN_ROLES};
use spin_sdk::http::{Params, Request, Response, Router};

pub fn routes(router: &mut Router) {
    router.get("/api/roles", authorized(list));
    router.get("/api/roles/:role_id", authorized(get));
}

/// IoT Central's `Role`: `{"id", "displayName"}`. A map rather than a derived struct because
/// this crate has no serde of its own; the two keys are the whole wire contract.
type RoleBody = BTreeMap<&'static str, &'static str>;

fn role_body(role: &Role) -> RoleBody {
    BTreeMap::from([("id", role.id), ("displayName", role.display_name)])
}

/// `GET /roles`.
fn list(_ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let page = page_request(&request)?;
    let start = match page.after.as_deref() {
        None => 0,
        Some(after) => {
            let idx = BUILT_IN_ROLES
                .iter()
                .position(|role| role.id == after)
                .ok_or_else(|| ApiError::BadRequest {
                    message: format!("$skiptoken `{after}` is not a role id"),
                })?;
            idx + 1
        }
    };
    let roles: Vec<&Role> = BUILT_IN_ROLES
        .iter()
        .copied()
        .skip(start)
        .take(page.top)
        .collect();
    let items: Vec<RoleBody> = roles.iter().map(|role| role_body(role)).collect();
    let has_more = start + roles.len() < BUILT_IN_ROLES.len();
    let next_after = if has_more {
        roles.last().map(|role| role.id)
    } else {
        None
    };
    collection(&request, &items, next_after)
}

/// `GET /roles/{roleId}`: 400 for an id that is not a GUID, 404 for an unknown one.
fn get(_ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let raw = params.get("role_id").unwrap_or_default();
    let role_id = RoleId::parse(raw).map_err(|error| ApiError::BadRequest {
        message: format!("`{raw}`: {error}"),
    })?;
    let role = Role::built_in(&role_id).ok_or_else(|| ApiError::NotFound {
        message: format!("role `{role_id}` does not exist"),
    })?;
    json_response(200, &role_body(role))
}
