//! The registry as the bridge sees it: `GET {base_url}/internal/registry/devices/{id}/connection`
//! (internal secret) answering a [`DeviceConnection`], behind a small cache.
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
use gyre_domain::bridge::DeviceConnection;
use http_body_util::{BodyExt, Empty};
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
    client: Client<HttpConnector, Empty<Bytes>>,
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
        let url = format!(
            "{}/internal/registry/devices/{}/connection",
            self.base_url,
            gyre_domain::percent::encode(device_id)
        );
        let request = http::Request::get(url)
            .header(SECRET_HEADER, self.secret.clone())
            .body(Empty::new())
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
        let (status, body) = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| RegistryError::Unavailable("timed out".to_owned()))??;
        match status {
            http::StatusCode::OK => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|err| RegistryError::InvalidAnswer(err.to_string())),
            http::StatusCode::NOT_FOUND => Ok(None),
            other => Err(RegistryError::Status(other.as_u16())),
        }
    }
}
