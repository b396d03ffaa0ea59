//! The request pipeline every `/api` handler runs behind: find the route's permission, open and
//! migrate the database, authenticate the API token, authorize it, then hand the handler a
//! [`Ctx`]. And the same for `/internal` endpoints, which take the shared secret instead.
//!
//! The order is the contract of issue 3: a request with a missing, malformed, expired or revoked
//! token gets 401, and one whose roles lack the permission gets 403, before any resource is read
//! or written. Routes missing from gyre-domain's permission table answer 404: the check fails
//! closed.

use gyre_domain::api::RequestId;
use gyre_domain::auth::{self, Requirement, RoleAssignment};
use gyre_domain::store::audit::{AuditAction, AuditRecord};
use gyre_domain::store::{self, api_tokens};
use gyre_domain::time::Timestamp;
use spin_sdk::http::{Params, Request, Response};

use crate::http::{api_with_id, now};
use crate::{ApiError, SpinSql};

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A public route: no token was asked for.
    Anonymous,
    /// An API token that passed authentication.
    Token {
        id: String,
        roles: Vec<RoleAssignment>,
    },
    /// The bridge or `cargo xtask`, holding the internal secret.
    Internal,
}

/// What a handler works with: the migrated database, the caller, the time, the request id.
pub struct Ctx {
    pub sql: SpinSql,
    pub caller: Caller,
    pub now: Timestamp,
    pub request_id: RequestId,
}

impl Ctx {
    /// Random bytes from the host (`wasi:random`), for keys, token secrets and etags.
    pub fn random_bytes<const N: usize>(&self) -> [u8; N] {
        random_bytes()
    }

    /// A fresh opaque entity tag, quoted as HTTP sends it.
    pub fn new_etag(&self) -> String {
        let bytes: [u8; 8] = self.random_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    }

    /// The audit log's name for the caller.
    pub fn actor(&self) -> String {
        match &self.caller {
            Caller::Anonymous => "anonymous".to_string(),
            Caller::Token { id, .. } => format!("apiToken:{id}"),
            Caller::Internal => "internal".to_string(),
        }
    }

    /// The audit row for a change by this caller, now. Append it with
    /// `gyre_domain::store::audit::append` inside the transaction that makes the change.
    pub fn audit_record(
        &self,
        action: AuditAction,
        resource_type: &str,
        resource_id: &str,
    ) -> AuditRecord {
        AuditRecord {
            at: self.now,
            actor: self.actor(),
            action,
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            detail: None,
        }
    }
}

/// Random bytes from `wasi:random`.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // wasi:random cannot fail on a conforming host; a failure here would be a host bug that must
    // not silently produce predictable keys.
    getrandom::fill(&mut bytes).expect("wasi:random failed");
    bytes
}

/// Wraps an `/api` handler: permission lookup, database, authentication, authorization.
pub fn authorized<H>(handler: H) -> impl Fn(Request, Params) -> Response + 'static
where
    H: Fn(&mut Ctx, Request, Params) -> Result<Response, ApiError> + 'static,
{
    api_with_id(move |request_id, request, params| {
        let method = request.method().to_string();
        let requirement = auth::Method::parse(&method)
            .and_then(|method| auth::required_permission(method, request.path()))
            .ok_or_else(|| ApiError::NotFound {
                message: format!("no resource at {}", request.path()),
            })?;
        let mut ctx = open(request_id.clone())?;
        ctx.caller = match requirement {
            Requirement::Public => Caller::Anonymous,
            Requirement::Permission(_) => {
                let header = request
                    .header("authorization")
                    .and_then(|value| value.as_str());
                let record =
                    api_tokens::authenticate(&mut ctx.sql, header, ctx.now)?.map_err(|err| {
                        ApiError::Unauthorized {
                            reason: err.reason(),
                        }
                    })?;
                auth::authorize(record.roles(), requirement).map_err(|forbidden| {
                    ApiError::Forbidden {
                        message: format!(
                            "this token's roles lack the permission `{}`",
                            forbidden.required.name()
                        ),
                    }
                })?;
                Caller::Token {
                    id: record.id().as_str().to_string(),
                    roles: record.roles().to_vec(),
                }
            }
        };
        handler(&mut ctx, request, params)
    })
}

/// Wraps an `/internal` handler: the caller must present the internal secret (Spin variable
/// `internal_secret`) in `x-gyre-internal-secret`. API tokens are never accepted here.
pub fn internal<H>(handler: H) -> impl Fn(Request, Params) -> Response + 'static
where
    H: Fn(&mut Ctx, Request, Params) -> Result<Response, ApiError> + 'static,
{
    api_with_id(move |request_id, request, params| {
        let expected = spin_sdk::variables::get("internal_secret").map_err(|err| {
            ApiError::Unexpected(anyhow::anyhow!(
                "the internal_secret variable is not available: {err}"
            ))
        })?;
        let presented = request
            .header("x-gyre-internal-secret")
            .and_then(|value| value.as_str())
            .unwrap_or("");
        if expected.is_empty() || !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::Unauthorized {
                reason: "internal secret",
            });
        }
        let mut ctx = open(request_id.clone())?;
        ctx.caller = Caller::Internal;
        handler(&mut ctx, request, params)
    })
}

/// Opens the default database and brings its schema up to date.
fn open(request_id: RequestId) -> Result<Ctx, ApiError> {
    let mut sql = SpinSql::open_default()?;
    let now = now();
    store::migrate(&mut sql, now)?;
    Ok(Ctx {
        sql,
        caller: Caller::Anonymous,
        now,
        request_id,
    })
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
