//! `POST /internal/registry/bootstrap`: the first administrator API token.
//!
//! IoT Central creates an application with its owner as administrator; Gyre has no sign-in yet,
//! so whoever holds the internal secret (`cargo xtask up`, or an operator with the Spin
//! variable) asks once for an administrator token. It works only while the application has no
//! API token at all: afterwards tokens are made through `PUT /api/apiTokens/{id}` by an
//! administrator, and this answers 409.

use gyre_component::{internal, json_response, ApiError, Ctx};
use gyre_domain::auth::{self, ApiToken, ApiTokenId, RoleAssignment, ADMINISTRATOR};
use gyre_domain::store::audit::{self, AuditAction};
use gyre_domain::store::{api_tokens, settings, Sql as _};
use gyre_domain::time::Timestamp;
use spin_sdk::http::{Params, Request, Response, Router};

/// The id of the token bootstrap makes.
const BOOTSTRAP_TOKEN_ID: &str = "bootstrap-admin";
/// IoT Central's API tokens last a year by default; so does this one.
const VALIDITY_MILLIS: i64 = 365 * 24 * 60 * 60 * 1000;

pub fn routes(router: &mut Router) {
    router.post("/internal/registry/bootstrap", internal(bootstrap));
}

fn bootstrap(ctx: &mut Ctx, _request: Request, _params: Params) -> Result<Response, ApiError> {
    let token_id = ApiTokenId::parse(BOOTSTRAP_TOKEN_ID).map_err(|err| anyhow::anyhow!("{err}"))?;
    let expiry = Timestamp::from_unix_millis(ctx.now.unix_millis() + VALIDITY_MILLIS);
    let secret: [u8; 32] = ctx.random_bytes();
    let app_id_random: [u8; 16] = ctx.random_bytes();
    let audit_record = ctx.audit_record(AuditAction::Create, "apiToken", BOOTSTRAP_TOKEN_ID);
    let now = ctx.now;
    let issued = ctx.sql.transaction(|sql| {
        if !api_tokens::list(sql, None, 1)?.is_empty() {
            return Err(ApiError::Conflict {
                message:
                    "the application already has API tokens; an administrator creates more with \
                          PUT /api/apiTokens/{id}"
                        .into(),
            });
        }
        let application_id = settings::application_id(sql, app_id_random)?;
        let roles = vec![RoleAssignment::app_wide(&ADMINISTRATOR)];
        let issued = auth::issue(
            token_id.clone(),
            &application_id,
            expiry,
            roles,
            now,
            secret,
        )
        .map_err(|err| {
            ApiError::Unexpected(anyhow::anyhow!("issuing the bootstrap token: {err}"))
        })?;
        api_tokens::insert(sql, &issued.record)?;
        audit::append(sql, &audit_record)?;
        Ok(issued)
    })?;
    json_response(201, &ApiToken::created(&issued))
}
