//! [`ApiError`]: every way a Gyre API request can fail, and its IoT Central-shaped response.
//!
//! Expected failures (bad input, unknown resources) become 4xx with a message meant for the
//! caller. Unexpected ones become 500 with a generic message; their detail goes to the log
//! once, in [`crate::api`], and never to the client.

use gyre_domain::api::{ErrorBody, RequestId};
use gyre_domain::store::StoreError;
use gyre_domain::time::Timestamp;
use spin_sdk::http::Response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{message}")]
    NotFound { message: String },
    /// The token is missing, malformed, unknown, revoked, expired or forged; `reason` is for the
    /// log only: every case answers the same to the caller.
    #[error("a valid API token is required in the Authorization header")]
    Unauthorized { reason: &'static str },
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    PreconditionFailed { message: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type `{content_type}` is not supported: send application/json")]
    UnsupportedMediaType { content_type: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// Busy for now; the caller should retry later (the bridge retries a batch with backoff).
    #[error("{message}")]
    Unavailable { message: String },
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::NotFound { .. } => 404,
            ApiError::Unauthorized { .. } => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::Conflict { .. } => 409,
            ApiError::PreconditionFailed { .. } => 412,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Unavailable { .. } => 503,
            ApiError::Store(_) | ApiError::Unexpected(_) => 500,
        }
    }

    /// The `code` field and `x-ms-error-code` header value.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::Unauthorized { .. } => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::PreconditionFailed { .. } => "PreconditionFailed",
            ApiError::PayloadTooLarge { .. } => "PayloadTooLarge",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::Unavailable { .. } => "ServiceUnavailable",
            ApiError::Store(_) | ApiError::Unexpected(_) => "InternalServerError",
        }
    }

    pub fn is_unexpected(&self) -> bool {
        matches!(self, ApiError::Store(_) | ApiError::Unexpected(_))
    }

    /// The error and its whole cause chain on one line, for the log.
    pub fn chain(&self) -> String {
        let mut chain = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        chain
    }

    pub fn to_response(&self, request_id: &RequestId, time: Timestamp) -> Response {
        let message = if self.is_unexpected() {
            format!(
                "an unexpected error occurred; quote request id {}",
                request_id.as_str()
            )
        } else {
            self.to_string()
        };
        let body = ErrorBody::new(self.code(), &message, request_id, time);
        // Serializing four strings cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Response::builder()
            .status(self.status())
            .header("content-type", "application/json; charset=utf-8")
            .header("x-ms-error-code", self.code())
            .body(body)
            .build()
    }
}
