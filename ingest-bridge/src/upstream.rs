//! The HTTP client to the ingest component: `POST {base_url}/internal/ingest` with one
//! [`IngestBatch`] as JSON, retried with exponential backoff and jitter until the component
//! answers 200 (the batch's transaction committed) or refuses it for good.
//!
//! Which answers are retried: connection errors, attempts that exceed their time limit, 5xx and
//! 429. Retrying is safe because every attempt carries the same batch id, which the component
//! applies at most once (`gyre_domain::ingest`). Any other 4xx is permanent: the batch itself is
//! wrong, so sending it again cannot help; the batcher fails its acknowledgements and the devices
//! send those messages again.
//!
//! [`Upstream`] is the seam the batcher is written against, so it is tested without HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gyre_domain::ingest::{binary, IngestBatch, IngestResult, BATCH_ID_HEADER};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Header carrying the shared secret of the internal endpoints.
pub const SECRET_HEADER: &str = "x-gyre-internal-secret";

/// Why a batch was not committed. Cloned into every acknowledgement of the batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestFailed {
    /// The component refused the batch with a 4xx other than 429; retrying cannot help.
    #[error("ingest refused the batch with status {status}: {message}")]
    Rejected { status: u16, message: String },
    /// Every attempt failed with a retryable error until the retry budget ran out.
    #[error("ingest unavailable after {attempts} attempts: {last_error}")]
    Unavailable { attempts: u32, last_error: String },
    /// The component answered 200 with a body that is not this batch's `IngestResult`.
    #[error("ingest answered 200 with an invalid body: {0}")]
    InvalidAnswer(String),
    /// The batch cannot be sent at all (its id is not a valid header value).
    #[error("the batch cannot be sent: {0}")]
    InvalidBatch(String),
    /// The bridge stopped before the batch was committed.
    #[error("the bridge shut down before the batch was committed")]
    ShuttingDown,
}

/// Where batches go. `send` resolves `Ok` only once the batch is durably committed; it does its
/// own retrying, so an `Err` is final for this batch.
pub trait Upstream: Send + Sync + 'static {
    fn send(
        &self,
        batch: &IngestBatch,
    ) -> impl Future<Output = Result<IngestResult, IngestFailed>> + Send;
}

/// Retry timing. No `Default`: the binary's config spells these out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt; it doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time limit of one attempt: connect, send, and read the whole answer.
    pub attempt_timeout: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub give_up_after: Duration,
}

/// The delay before attempt `attempt + 1` (`attempt` counts from 1), "equal jitter": half of the
/// exponential step is fixed, the other half is scaled by `jitter` in `[0, 1)`. The fixed half
/// keeps retries from hammering a recovering component; the random half spreads the bridges.
pub fn backoff_delay(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let step = policy
        .initial_backoff
        .saturating_mul(1u32 << exponent)
        .min(policy.max_backoff);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A new batch id: a random UUID v4 in its text form.
///
/// The bytes come from the OS CSPRNG (`getrandom`, already in the lockfile through hyper's and
/// wasmtime's trees). Hashing a counter and the time with std's `RandomState` would also give
/// unique ids, but its keys are only per-process random and its output is 64 bits; an
/// idempotency key shared by every bridge instance writing to one store should be a real
/// 122-bit random UUID, and one syscall per batch is negligible.
pub fn new_batch_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut text = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// A uniform number in `[0, 1)` for jitter.
fn jitter() -> f64 {
    // A failed random source only loses the jitter, never the retry.
    let bits = getrandom::u64().unwrap_or(0) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// The HTTP/1.1 upstream: one pooled client to the ingest component.
#[derive(Clone)]
pub struct HttpUpstream {
    client: Client<HttpConnector, Full<Bytes>>,
    ingest_uri: http::Uri,
    secret: http::HeaderValue,
    retry: RetryPolicy,
    /// Told when an answer says a compaction step is due (see [`crate::compactor`]).
    compaction_due: Option<Arc<Notify>>,
}

/// [`HttpUpstream::new`] refused its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUpstreamConfig {
    #[error("the ingest base URL {0:?} is not an http:// URL with a host")]
    BaseUrl(String),
    #[error("the internal secret is not a valid HTTP header value")]
    Secret,
}

impl HttpUpstream {
    /// `base_url` is the Spin application's address, such as `http://127.0.0.1:3000`; plain
    /// HTTP only (the bridge and the application share a host or a private network).
    pub fn new(
        base_url: &str,
        secret: &str,
        retry: RetryPolicy,
    ) -> Result<HttpUpstream, InvalidUpstreamConfig> {
        let url = format!("{}/internal/ingest", base_url.trim_end_matches('/'));
        let ingest_uri: http::Uri = url
            .parse()
            .map_err(|_| InvalidUpstreamConfig::BaseUrl(base_url.to_owned()))?;
        if ingest_uri.scheme() != Some(&http::uri::Scheme::HTTP) || ingest_uri.host().is_none() {
            return Err(InvalidUpstreamConfig::BaseUrl(base_url.to_owned()));
        }
        let mut secret =
            http::HeaderValue::from_str(secret).map_err(|_| InvalidUpstreamConfig::Secret)?;
        secret.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(retry.attempt_timeout));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpUpstream {
            client,
            ingest_uri,
            secret,
            retry,
            compaction_due: None,
        })
    }

    /// Notifies `due` whenever a batch's answer says a compaction step is due.
    pub fn with_compaction_signal(mut self, due: Arc<Notify>) -> HttpUpstream {
        self.compaction_due = Some(due);
        self
    }

    /// One attempt. `Err(Retry)` and `Err(Final)` tell the loop in `send` what to do.
    async fn attempt(&self, batch_id: &str, body: Bytes) -> Result<IngestResult, AttemptError> {
        let request = http::Request::post(self.ingest_uri.clone())
            .header(http::header::CONTENT_TYPE, binary::BINARY_CONTENT_TYPE)
            .header(SECRET_HEADER, self.secret.clone())
            .header(BATCH_ID_HEADER, batch_id)
            .body(Full::new(body))
            .map_err(|err| AttemptError::Final(IngestFailed::InvalidBatch(err.to_string())))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|err| AttemptError::Retry(err.to_string()))?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|err| AttemptError::Retry(format!("reading the answer: {err}")))?
            .to_bytes();
        if status == http::StatusCode::OK {
            let result: IngestResult = serde_json::from_slice(&answer)
                .map_err(|err| AttemptError::Final(IngestFailed::InvalidAnswer(err.to_string())))?;
            if result.batch_id != batch_id {
                let message = format!(
                    "answer names batch {} instead of {batch_id}",
                    result.batch_id
                );
                return Err(AttemptError::Final(IngestFailed::InvalidAnswer(message)));
            }
            return Ok(result);
        }
        let message = String::from_utf8_lossy(&answer[..answer.len().min(512)]).into_owned();
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Err(AttemptError::Retry(format!(
                "status {}: {message}",
                status.as_u16()
            )))
        } else {
            Err(AttemptError::Final(IngestFailed::Rejected {
                status: status.as_u16(),
                message,
            }))
        }
    }
}

enum AttemptError {
    Retry(String),
    Final(IngestFailed),
}

impl Upstream for HttpUpstream {
    async fn send(&self, batch: &IngestBatch) -> Result<IngestResult, IngestFailed> {
        // Encoded once: every attempt sends the same bytes under the same batch id.
        let body = Bytes::from(binary::encode(batch));
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = tokio::time::timeout(
                self.retry.attempt_timeout,
                self.attempt(&batch.batch_id, body.clone()),
            )
            .await;
            let last_error = match outcome {
                Ok(Ok(result)) => {
                    if result.compaction_due {
                        if let Some(due) = &self.compaction_due {
                            due.notify_one();
                        }
                    }
                    return Ok(result);
                }
                Ok(Err(AttemptError::Final(failed))) => return Err(failed),
                Ok(Err(AttemptError::Retry(cause))) => cause,
                Err(_elapsed) => format!("no answer within {:?}", self.retry.attempt_timeout),
            };
            let delay = backoff_delay(&self.retry, attempts, jitter());
            if started.elapsed() + delay > self.retry.give_up_after {
                return Err(IngestFailed::Unavailable {
                    attempts,
                    last_error,
                });
            }
            tracing::warn!(batch_id = %batch.batch_id, attempts, cause = %last_error, ?delay, "ingest attempt failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(attempt: u32, jitter: f64, expected_ms: u64) {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(60),
        };
        assert_eq!(
            backoff_delay(&policy, attempt, jitter),
            Duration::from_millis(expected_ms),
            "attempt {attempt}, jitter {jitter}"
        );
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_up_to_the_cap() {
        check(1, 0.0, 50);
        check(1, 0.5, 75);
        check(2, 0.0, 100);
        check(3, 1.0, 400);
        check(6, 0.0, 1600);
        check(7, 0.0, 2500); // 6.4 s capped at 5 s
        check(7, 1.0, 5000);
        check(40, 0.5, 3750); // no overflow on long outages
        check(0, 0.0, 50);
    }

    #[test]
    fn batch_ids_are_distinct_uuid_v4_text() {
        let first = new_batch_id();
        let second = new_batch_id();
        assert_ne!(first, second);
        for id in [first, second] {
            assert_eq!(id.len(), 36, "{id}");
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|group| group.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
            assert_eq!(&groups[2][..1], "4", "version nibble of {id}");
            assert!(
                matches!(&groups[3][..1], "8" | "9" | "a" | "b"),
                "variant of {id}"
            );
        }
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..100 {
            let value = jitter();
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }
}
