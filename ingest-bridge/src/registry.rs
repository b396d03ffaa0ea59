//! The registry as the bridge sees it (internal secret): `GET
//! {base_url}/internal/registry/devices/{id}/connection` answering a [`DeviceConnection`],
//! behind a small cache; and, uncached (provisioning is rare and must see the latest state), the
//! DPS calls `GET .../registrations/{id}?idScope=` ([`RegistrationCandidates`]) and `POST
//! .../registrations/{id}/register` ([`RegistrationState`] or a refusal), the twin
//! (`GET .../devices/{id}/twin`, `PATCH .../twin/reported`) and the change feed the revocation
//! check polls (`GET .../connection-changes`), and cloud-to-device messages (`GET
//! .../devices/{id}/messages`, `POST .../messages/{mid}/complete`). `Registry::exchange` is the
//! one way out.
//!
//! The cache keeps each answer (a 404 included) for `ttl`, a few seconds: a reconnect storm
//! costs one request per device per `ttl`, and a blocked device or a revoked key is refused at
//! most `ttl` after the change. Entries expire on read; when the map reaches `max_entries` the
//! expired ones are swept, and if none were, the map is cleared (a bound, never unbounded
//! memory). Does not own the token rules (`gyre_domain::mqtt`) or the decision to admit (the
//! session).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use gyre_domain::bridge::{C2dPending, ConnectionChanges, DeviceConnection, ReportedPatched};
use gyre_domain::provisioning::{RegisterRequest, RegistrationCandidates, RegistrationState};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::upstream::SECRET_HEADER;

/// How the registry is reached and how long its answers are trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The Spin application's address, such as `http://127.0.0.1:3000`.
    pub base_url: String,
    pub secret: String,
    /// How long an answer is reused; also the longest a blocked device can still connect.
    pub ttl: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
    pub max_entries: usize,
}

/// Why the registry could not answer; the session refuses the device (CONNACK 3, server
/// unavailable, so the SDKs retry) rather than guess.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry request failed: {0}")]
    Unavailable(String),
    #[error("registry answered status {0}")]
    Status(u16),
    #[error("registry answered an invalid body: {0}")]
    InvalidAnswer(String),
}

/// The registry's answer to a DPS registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    Assigned(RegistrationState),
    /// Refused (blocked device, disabled group...), with the registry's reason.
    Refused(String),
}

/// The registry's answer to a reported-properties patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportedPatch {
    /// Applied; the reported document's new version.
    Patched(u64),
    /// Refused (not a JSON object, a bad key, too deep or too large), with the reason.
    Invalid(String),
    NoDevice,
}

/// [`Registry::new`] refused its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRegistryConfig {
    #[error("the registry base URL {0:?} is not an http:// URL with a host")]
    BaseUrl(String),
    #[error("the internal secret is not a valid HTTP header value")]
    Secret,
}

/// The HTTP client and its cache. Share it behind an `Arc`.
pub struct Registry {
    client: Client<HttpConnector, Full<Bytes>>,
    base_url: String,
    secret: http::HeaderValue,
    config: RegistryConfig,
    /// Device id → (fetched at, answer; `None` for an unknown device). A std `Mutex`: nothing
    /// awaits while it is held, and the critical sections are a map lookup or insert.
    cache: Mutex<HashMap<String, (Instant, Option<DeviceConnection>)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base_url", &self.base_url)
            .field("ttl", &self.config.ttl)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Registry, InvalidRegistryConfig> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base_url
            .parse()
            .map_err(|_| InvalidRegistryConfig::BaseUrl(config.base_url.clone()))?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) || uri.host().is_none() {
            return Err(InvalidRegistryConfig::BaseUrl(config.base_url.clone()));
        }
        let mut secret = http::HeaderValue::from_str(&config.secret)
            .map_err(|_| InvalidRegistryConfig::Secret)?;
        secret.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        Ok(Registry {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base_url,
            secret,
            config,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// What the registry says about `device_id` (`None`: no such device), from the cache when
    /// the answer is younger than the TTL.
    pub async fn connection(
        &self,
        device_id: &str,
    ) -> Result<Option<DeviceConnection>, RegistryError> {
        if let Some(cached) = self.cached(device_id) {
            return Ok(cached);
        }
        let answer = self.fetch(device_id).await?;
        self.remember(device_id, answer.clone());
        Ok(answer)
    }

    fn cached(&self, device_id: &str) -> Option<Option<DeviceConnection>> {
        let cache = self.cache.lock().expect("registry cache lock poisoned");
        let (fetched_at, answer) = cache.get(device_id)?;
        (fetched_at.elapsed() < self.config.ttl).then(|| answer.clone())
    }

    fn remember(&self, device_id: &str, answer: Option<DeviceConnection>) {
        let mut cache = self.cache.lock().expect("registry cache lock poisoned");
        if cache.len() >= self.config.max_entries.max(1) {
            let ttl = self.config.ttl;
            cache.retain(|_, (fetched_at, _)| fetched_at.elapsed() < ttl);
            if cache.len() >= self.config.max_entries.max(1) {
                cache.clear();
            }
        }
        cache.insert(device_id.to_owned(), (Instant::now(), answer));
    }

    async fn fetch(&self, device_id: &str) -> Result<Option<DeviceConnection>, RegistryError> {
        // Device ids may hold punctuation that is not a path character (`?`, `#`, ...).
        let path = format!(
            "/internal/registry/devices/{}/connection",
            gyre_domain::percent::encode(device_id)
        );
        self.get_json(&path).await
    }

    /// What the registry answers for `device_id` now, bypassing (and refreshing) the cache.
    pub async fn fresh_connection(
        &self,
        device_id: &str,
    ) -> Result<Option<DeviceConnection>, RegistryError> {
        let answer = self.fetch(device_id).await?;
        self.remember(device_id, answer.clone());
        Ok(answer)
    }

    /// The devices whose right to connect may have changed after `after` (see
    /// [`ConnectionChanges`]); without `after`, only the current cursor.
    pub async fn connection_changes(
        &self,
        after: Option<i64>,
    ) -> Result<ConnectionChanges, RegistryError> {
        let path = match after {
            Some(after) => format!("/internal/registry/connection-changes?after={after}"),
            None => "/internal/registry/connection-changes".to_owned(),
        };
        self.get_json(&path)
            .await?
            .ok_or(RegistryError::Status(404))
    }

    /// The twin of `device_id` as `$iothub/twin/GET` answers it; `None`: no such device.
    pub async fn twin(&self, device_id: &str) -> Result<Option<serde_json::Value>, RegistryError> {
        let path = format!(
            "/internal/registry/devices/{}/twin",
            gyre_domain::percent::encode(device_id)
        );
        self.get_json(&path).await
    }

    /// Applies `patch` (the device's bytes, forwarded as they came) to the reported document.
    pub async fn patch_reported(
        &self,
        device_id: &str,
        patch: Bytes,
    ) -> Result<ReportedPatch, RegistryError> {
        let path = format!(
            "/internal/registry/devices/{}/twin/reported",
            gyre_domain::percent::encode(device_id)
        );
        let (status, answer) = self.exchange(http::Method::PATCH, &path, patch).await?;
        match status {
            http::StatusCode::OK => parse::<ReportedPatched>(&answer)
                .map(|patched| ReportedPatch::Patched(patched.version)),
            http::StatusCode::NOT_FOUND => Ok(ReportedPatch::NoDevice),
            status if status.is_client_error() => {
                Ok(ReportedPatch::Invalid(error_message(&answer)))
            }
            other => Err(RegistryError::Status(other.as_u16())),
        }
    }

    /// The cloud-to-device messages waiting for `device_id` (none for an unknown device).
    pub async fn c2d_pending(&self, device_id: &str) -> Result<C2dPending, RegistryError> {
        let path = format!(
            "/internal/registry/devices/{}/messages",
            gyre_domain::percent::encode(device_id)
        );
        Ok(self.get_json(&path).await?.unwrap_or_default())
    }

    /// The device acknowledged `message_id`; idempotent, and a message already gone (completed,
    /// expired, deleted) is not an error.
    pub async fn complete_c2d(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<(), RegistryError> {
        let path = format!(
            "/internal/registry/devices/{}/messages/{}/complete",
            gyre_domain::percent::encode(device_id),
            gyre_domain::percent::encode(message_id)
        );
        let (status, _) = self
            .exchange(http::Method::POST, &path, Bytes::new())
            .await?;
        if status.is_success() || status == http::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(RegistryError::Status(status.as_u16()))
        }
    }

    /// The enrollments `registration_id` may authenticate through; `None` when `id_scope` is
    /// not the application's.
    pub async fn registration_candidates(
        &self,
        id_scope: &str,
        registration_id: &str,
    ) -> Result<Option<RegistrationCandidates>, RegistryError> {
        let path = format!(
            "/internal/registry/registrations/{}?idScope={}",
            gyre_domain::percent::encode(registration_id),
            gyre_domain::percent::encode(id_scope)
        );
        self.get_json(&path).await
    }

    /// Registers `registration_id` (DPS register); forgets the cached connection answer, which
    /// the registration may have changed.
    pub async fn register(
        &self,
        registration_id: &str,
        request: &RegisterRequest,
    ) -> Result<Registration, RegistryError> {
        let path = format!(
            "/internal/registry/registrations/{}/register",
            gyre_domain::percent::encode(registration_id)
        );
        let body = serde_json::to_vec(request)
            .map_err(|err| RegistryError::InvalidAnswer(err.to_string()))?;
        let (status, answer) = self
            .exchange(http::Method::POST, &path, Bytes::from(body))
            .await?;
        self.cache
            .lock()
            .expect("registry cache lock poisoned")
            .remove(registration_id);
        match status {
            http::StatusCode::OK => parse(&answer).map(Registration::Assigned),
            http::StatusCode::FORBIDDEN | http::StatusCode::NOT_FOUND => {
                Ok(Registration::Refused(error_message(&answer)))
            }
            other => Err(RegistryError::Status(other.as_u16())),
        }
    }

    /// `GET path` answering JSON; `None` for 404.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<Option<T>, RegistryError> {
        let (status, body) = self
            .exchange(http::Method::GET, path_and_query, Bytes::new())
            .await?;
        match status {
            http::StatusCode::OK => parse(&body).map(Some),
            http::StatusCode::NOT_FOUND => Ok(None),
            other => Err(RegistryError::Status(other.as_u16())),
        }
    }

    /// One request to the Spin application's internal endpoints, within the configured time
    /// limit (the tick uses it too).
    pub(crate) async fn exchange(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes), RegistryError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base_url))
            .header(SECRET_HEADER, self.secret.clone());
        if !body.is_empty() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|err| RegistryError::Unavailable(err.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| RegistryError::Unavailable(err.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| RegistryError::Unavailable(err.to_string()))?
                .to_bytes();
            Ok::<_, RegistryError>((status, body))
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| RegistryError::Unavailable("timed out".to_owned()))?
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|err| RegistryError::InvalidAnswer(err.to_string()))
}

/// `error.message` of an IoT Central error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
