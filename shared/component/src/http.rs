//! Request and response plumbing shared by every component's route table.
//!
//! [`api`] adapts a handler of shape `fn(Request, Params) -> Result<Response, ApiError>` to the
//! Spin router: it picks the request id before the handler consumes the request, maps errors to
//! IoT Central's shape, and echoes the id in `x-request-id`. The clock and the random source are
//! read here, at the edge, and handed to gyre-domain as values.

use std::time::{SystemTime, UNIX_EPOCH};

use gyre_domain::api::RequestId;
use gyre_domain::time::Timestamp;
use serde::Serialize;
use spin_sdk::http::{Params, Request, Response};

use crate::ApiError;

/// Wraps a handler for `Router::get` and friends.
pub fn api<H>(handler: H) -> impl Fn(Request, Params) -> Response + 'static
where
    H: Fn(Request, Params) -> Result<Response, ApiError> + 'static,
{
    api_with_id(move |_request_id, request, params| handler(request, params))
}

/// [`api`] for handlers that need the request id the response will carry.
pub(crate) fn api_with_id<H>(handler: H) -> impl Fn(Request, Params) -> Response + 'static
where
    H: Fn(&RequestId, Request, Params) -> Result<Response, ApiError> + 'static,
{
    move |request, params| {
        let request_id = request_id(&request);
        let mut response = match handler(&request_id, request, params) {
            Ok(response) => response,
            Err(error) => {
                if error.is_unexpected() {
                    // Spin collects component stderr as the log; this is the one place a 500's
                    // detail is recorded.
                    eprintln!("request {}: {}", request_id.as_str(), error.chain());
                }
                error.to_response(&request_id, now())
            }
        };
        response.set_header("x-request-id", request_id.as_str());
        response
    }
}

/// A JSON response with `status`.
pub fn json_response<T: Serialize>(status: u16, body: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(body).map_err(anyhow::Error::from)?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .build())
}

/// The caller's `x-request-id` when it is a safe id, otherwise a fresh random one.
pub fn request_id(request: &Request) -> RequestId {
    let from_caller = request
        .header("x-request-id")
        .and_then(|value| value.as_str())
        .and_then(RequestId::parse);
    from_caller.unwrap_or_else(|| {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // wasi:random cannot fail on a conforming host; if it somehow does, an id from the
            // clock still distinguishes requests well enough for a log search.
            bytes[..8].copy_from_slice(&now().unix_millis().to_le_bytes());
        }
        RequestId::from_random(bytes)
    })
}

/// The current time from the host's wall clock.
pub fn now() -> Timestamp {
    let unix_millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => since_epoch.as_millis() as i64,
        Err(before_epoch) => -(before_epoch.duration().as_millis() as i64),
    };
    Timestamp::from_unix_millis(unix_millis)
}

/// Fallback for paths a component's route table does not know.
pub fn route_not_found(request: Request, _params: Params) -> Result<Response, ApiError> {
    Err(ApiError::NotFound {
        message: format!("no resource at {}", request.path()),
    })
}

/// Fallback for a known path asked with a method it does not serve.
pub fn method_not_allowed(request: Request, _params: Params) -> Result<Response, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.path().to_owned(),
    })
}
