//! Outbound HTTP: the `allowed_outbound_hosts` allow-list, and the `wasi:http` hook that enforces
//! it and dispatches `http://<component>.spin.internal` requests in process (service chaining).
//!
//! Entries follow Spin: `scheme://host[:port]`, where the scheme may be `*`, the host `*` or
//! `*.domain`, and the port a number, a range `8000..9000` or `*`; without a port, the scheme's
//! default port. A denied request fails with `HttpRequestDenied`, as on Spin.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`: stored as `.example.com`.
    Subdomains(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// No port written: the default port of the request's scheme.
    Default,
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses rendered entries (templates already expanded); reports every bad entry.
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, Vec<String>> {
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            match AllowedHost::parse(entry) {
                Ok(Some(host)) => parsed.push(host),
                Ok(None) => {}
                Err(why) => problems.push(format!("allowed_outbound_hosts `{entry}`: {why}")),
            }
        }
        if problems.is_empty() {
            Ok(AllowedHosts { entries: parsed })
        } else {
            Err(problems)
        }
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        let Some(port) = port.or_else(|| default_port(&scheme)) else {
            return false;
        };
        self.entries.iter().any(|entry| {
            let scheme_ok = entry.scheme.as_deref().is_none_or(|s| s == scheme);
            let host_ok = match &entry.host {
                HostPattern::Any => true,
                HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
                HostPattern::Exact(exact) => *exact == host,
            };
            let port_ok = match entry.port {
                PortPattern::Any => true,
                PortPattern::Default => Some(port) == default_port(&scheme),
                PortPattern::Range(lo, hi) => (lo..=hi).contains(&port),
            };
            scheme_ok && host_ok && port_ok
        })
    }
}

impl AllowedHost {
    /// `Ok(None)` for entries of other protocols (`redis://`, `mysql://`, ...), which do not
    /// concern HTTP.
    fn parse(entry: &str) -> Result<Option<AllowedHost>, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("write it as `scheme://host[:port]`, for example `https://example.com`")?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_string()),
            "" => return Err("the scheme is missing".into()),
            _ => return Ok(None),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(
                "paths and CIDR ranges are not supported: give only scheme, host and port".into(),
            );
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host = match host {
            "" => return Err("the host is missing".into()),
            "*" => HostPattern::Any,
            "self" => return Err(
                "`self` is not supported by gyre-host: use `http://<component-id>.spin.internal`"
                    .into(),
            ),
            _ => match host.strip_prefix("*.") {
                Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                    HostPattern::Subdomains(format!(".{}", domain.to_ascii_lowercase()))
                }
                _ if host.contains('*') => {
                    return Err("`*` may only stand alone or as `*.domain`".into())
                }
                _ => HostPattern::Exact(host.to_ascii_lowercase()),
            },
        };
        let port = match port {
            None => {
                if scheme.is_none() && host == HostPattern::Any {
                    PortPattern::Any
                } else {
                    PortPattern::Default
                }
            }
            Some("*") => PortPattern::Any,
            Some(range) => match range.split_once("..") {
                Some((lo, hi)) => {
                    let lo: u16 = lo
                        .parse()
                        .map_err(|_| format!("`{range}` is not a port range"))?;
                    let hi: u16 = hi
                        .parse()
                        .map_err(|_| format!("`{range}` is not a port range"))?;
                    if lo > hi {
                        return Err(format!("`{range}` is an empty port range"));
                    }
                    PortPattern::Range(lo, hi)
                }
                None => {
                    let port: u16 = range
                        .parse()
                        .map_err(|_| format!("`{range}` is not a port"))?;
                    PortPattern::Range(port, port)
                }
            },
        };
        Ok(Some(AllowedHost { scheme, host, port }))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The host name suffix of service chaining: `http://<component-id>.spin.internal/...`.
const CHAINING_SUFFIX: &str = ".spin.internal";

/// Dispatches a chained request to a component of the same application, without a socket.
pub trait ChainTarget: Send + Sync {
    fn dispatch(
        &self,
        component_id: &str,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send>>;
}

/// The `wasi:http` hooks of one instance: the allow-list check, chaining, then the network.
pub struct OutboundHooks {
    pub component_id: Arc<str>,
    pub allowed: Arc<AllowedHosts>,
    pub chain: Arc<dyn ChainTarget>,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or("").to_string();
        if !self.allowed.allows(&scheme, &host, uri.port_u16()) {
            tracing::warn!(
                component = %self.component_id,
                url = %uri,
                "outbound request denied: add the host to the component's allowed_outbound_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Some(target) = host.strip_suffix(CHAINING_SUFFIX) {
            let response = self.chain.dispatch(target, request);
            return Box::new(async move {
                let response = response.await?;
                let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response, done))
            });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn entries_match_like_spin() {
        let hosts = allowed(&[
            "https://example.com",
            "http://localhost:3000",
            "http://*.example.org:*",
        ]);
        assert!(hosts.allows("https", "example.com", None));
        assert!(hosts.allows("https", "EXAMPLE.com", Some(443)));
        assert!(!hosts.allows("https", "example.com", Some(8443)));
        assert!(!hosts.allows("http", "example.com", None));
        assert!(hosts.allows("http", "localhost", Some(3000)));
        assert!(!hosts.allows("http", "localhost", Some(3001)));
        assert!(hosts.allows("http", "api.example.org", Some(1234)));
        assert!(!hosts.allows("http", "example.org", Some(80)));
        assert!(!hosts.allows("https", "other.com", None));
    }

    #[test]
    fn wildcards_and_ranges() {
        let hosts = allowed(&["*://*:*"]);
        assert!(hosts.allows("http", "anything", Some(1)));
        let hosts = allowed(&["http://127.0.0.1:8000..8010", "*://db.internal"]);
        assert!(hosts.allows("http", "127.0.0.1", Some(8005)));
        assert!(!hosts.allows("http", "127.0.0.1", Some(8011)));
        assert!(hosts.allows("https", "db.internal", None));
        assert!(hosts.allows("http", "db.internal", Some(80)));
        let hosts = allowed(&["http://*.spin.internal"]);
        assert!(hosts.allows("http", "registry.spin.internal", None));
        assert!(!hosts.allows("https", "registry.spin.internal", None));
    }

    #[test]
    fn no_entries_allow_nothing_and_other_protocols_are_ignored() {
        assert!(!allowed(&[]).allows("https", "example.com", None));
        assert!(!allowed(&["redis://cache:6379"]).allows("http", "cache", Some(6379)));
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let entries: Vec<String> = [
            "example.com",
            "http://a.com/path",
            "http://a.com:99999",
            "http://a*b.com",
            "http://self",
        ]
        .iter()
        .map(|e| e.to_string())
        .collect();
        assert_eq!(AllowedHosts::parse(&entries).unwrap_err().len(), 5);
    }
}
