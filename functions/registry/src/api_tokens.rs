//! `/api/apiTokens`: create (the one time a token is shown), list, get, revoke.
//!
//! The rules are gyre-domain's: `auth::issue` mints the token from 32 bytes of `wasi:random`,
//! `store::api_tokens` keeps only its verifier. A `PUT` on an existing id is a 409 and changes
//! nothing (a new secret under an old id would silently revoke the old token); `DELETE` removes
//! the record, so the very next request presenting the token gets 401. Expired tokens stay
//! listed, with their `expiry`, until an administrator deletes them.
//!
//! Not owned here: authentication and authorization of the caller (`gyre_component::authorized`
//! does both before any handler runs) and the application id (`store::settings`).

use gyre_component::{
    authorized, json_response, no_content, page_request, page_response, read_json, ApiError, Ctx,
};
use gyre_domain::auth::{self, ApiToken, ApiTokenBody, ApiTokenId};
use gyre_domain::store::api_tokens::{self, Inserted};
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::{settings, Sql as _};
use spin_sdk::http::{Params, Request, Response, Router};

/// The audit log's name for these resources.
const RESOURCE_TYPE: &str = "apiToken";

pub fn routes(router: &mut Router) {
    router.get("/api/apiTokens", authorized(list));
    router.get("/api/apiTokens/:token_id", authorized(get));
    router.put("/api/apiTokens/:token_id", authorized(create));
    router.delete("/api/apiTokens/:token_id", authorized(delete));
}

/// `GET /apiTokens`: one page in id order, never with the token values.
fn list(ctx: &mut Ctx, request: Request, _params: Params) -> Result<Response, ApiError> {
    let page = page_request(&request)?;
    let after = page.after_as("an API token id", ApiTokenId::parse)?;
    let records = api_tokens::list(&mut ctx.sql, after.as_ref(), page.fetch_limit())?;
    page_response(&request, &page, records, ApiToken::from_record, |record| {
        record.id().as_str().to_owned()
    })
}

/// `GET /apiTokens/{tokenId}`: the token's id, expiry and roles, never its value.
fn get(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let token_id = token_id(&params)?;
    let record = api_tokens::get(&mut ctx.sql, &token_id)?.ok_or_else(|| not_found(&token_id))?;
    json_response(200, &ApiToken::from_record(&record))
}

/// `PUT /apiTokens/{tokenId}`: mints the token and returns it, once.
fn create(ctx: &mut Ctx, request: Request, params: Params) -> Result<Response, ApiError> {
    let token_id = token_id(&params)?;
    let body: ApiTokenBody = read_json(&request)?;
    let token_request = body.parse().map_err(|error| ApiError::BadRequest {
        message: error.to_string(),
    })?;
    let expiry = token_request.expiry_or_default(ctx.now);
    let random: [u8; 32] = ctx.random_bytes();
    let app_id_random: [u8; 16] = ctx.random_bytes();
    let audit_record = ctx.audit_record(AuditAction::Create, RESOURCE_TYPE, token_id.as_str());
    let now = ctx.now;
    let issued = ctx.sql.transaction(|sql| {
        let application_id = settings::application_id(sql, app_id_random)?;
        let issued = auth::issue(
            token_id.clone(),
            &application_id,
            expiry,
            token_request.roles,
            now,
            random,
        )
        .map_err(|error| ApiError::BadRequest {
            message: error.to_string(),
        })?;
        match api_tokens::insert(sql, &issued.record)? {
            Inserted::Created => {}
            Inserted::AlreadyExists => {
                return Err(ApiError::Conflict {
                    message: format!(
                        "API token `{token_id}` already exists; delete it first to replace it"
                    ),
                })
            }
        }
        audit::append(sql, &audit_record)?;
        Ok(issued)
    })?;
    json_response(200, &ApiToken::created(&issued))
}

/// `DELETE /apiTokens/{tokenId}`: revokes the token at once.
fn delete(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let token_id = token_id(&params)?;
    let audit_record = ctx.audit_record(AuditAction::Delete, RESOURCE_TYPE, token_id.as_str());
    ctx.sql.transaction(|sql| {
        if !api_tokens::delete(sql, &token_id)? {
            return Err(not_found(&token_id));
        }
        audit::append(sql, &audit_record)?;
        Ok::<(), ApiError>(())
    })?;
    Ok(no_content())
}

fn token_id(params: &Params) -> Result<ApiTokenId, ApiError> {
    let raw = params.get("token_id").unwrap_or_default();
    ApiTokenId::parse(raw).map_err(|error| ApiError::BadRequest {
        message: format!("`{raw}`: {error}"),
    })
}

fn not_found(token_id: &ApiTokenId) -> ApiError {
    ApiError::NotFound {
        message: format!("API token `{token_id}` does not exist"),
    }
}
