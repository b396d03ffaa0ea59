//! API security: who is calling (API tokens) and what they may do (roles, permissions, and the
//! one table that says which permission each route needs).
//!
//! Code map:
//! - `token`: IoT Central's API token, `SharedAccessSignature sr=<app id>&sig=<signature>&
//!   skn=<token id>&se=<expiry ms>`: issuing one from caller-supplied random bytes, parsing an
//!   `Authorization` header, and verifying a presented token against its stored record (a
//!   SHA-256 verifier, never the token in clear).
//! - `roles`: the permission catalogue, the built-in roles administrator, builder and operator
//!   with IoT Central's role ids, role assignments, and [`authorize`].
//! - `routes`: [`ROUTES`], every `/api` route with the permission it requires, and
//!   [`required_permission`] to match a concrete request against it.
//! - `wire`: the `ApiToken` JSON shapes of `/api/apiTokens`.
//!
//! A request is handled in this order, before any data is touched: [`required_permission`]
//! (unknown route: 404; public: serve), then [`parse_authorization`], the record lookup and
//! [`verify`] (any failure: 401; `store::api_tokens::authenticate` does all three), then
//! [`authorize`] (403).
//!
//! This module owns no storage (the `api_tokens` table and its SQL live in `store`), no clock
//! and no randomness: the time and the 32 random bytes of a new token are arguments. It does not
//! implement organizations, custom roles or Azure AD bearer tokens; see each file for the
//! decisions taken where IoT Central is silent.

mod roles;
mod routes;
mod token;
mod wire;

pub use roles::{
    authorize, Forbidden, InvalidOrganizationId, InvalidRoleId, OrganizationId, Permission, Role,
    RoleAssignment, RoleId, ADMINISTRATOR, BUILDER, BUILT_IN_ROLES, OPERATOR,
};
pub use routes::{match_route, required_permission, Method, Requirement, Route, ROUTES};
pub use token::{
    default_expiry, issue, parse_authorization, verify, ApiTokenId, ApplicationId, AuthError,
    InvalidApiTokenId, InvalidApplicationId, IssueError, IssuedToken, Malformed, ParsedToken,
    TokenRecord, TokenVerifier, DEFAULT_TOKEN_LIFETIME_MILLIS,
};
pub use wire::{ApiToken, ApiTokenBody, InvalidApiTokenBody, RoleAssignmentBody, TokenRequest};
