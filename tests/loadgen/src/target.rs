//! The URL under load, parsed by hand: `http://HOST[:PORT][/PATH[?QUERY]]`.
//!
//! Only loopback hosts are accepted (`localhost`, `127.0.0.0/8`, `[::1]`): the generator exists
//! to measure our own processes on this machine and must never be pointed at someone else's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub authority: String,
    /// Origin-form request target, at least `/`.
    pub path_and_query: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("`{url}`: only http:// URLs are supported"))?;
        let (authority, path_and_query) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) =
            split_host_port(authority).with_context(|| format!("`{url}`: invalid host or port"))?;
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            literal => literal
                .parse::<IpAddr>()
                .ok()
                .with_context(|| format!("`{url}`: host must be localhost or an IP address"))?,
        };
        if !ip.is_loopback() {
            bail!("`{url}`: refusing a non-loopback target; gyre-loadgen only loads this machine");
        }
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            authority: authority.to_string(),
            path_and_query: path_and_query.to_string(),
        })
    }
}

/// `127.0.0.1:3000`, `localhost`, `[::1]:8080`; the port defaults to 80.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 80,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_parse_into_address_host_header_and_path() {
        let target = Target::parse("http://127.0.0.1:3000/hello?x=1").unwrap();
        assert_eq!(target.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(target.authority, "127.0.0.1:3000");
        assert_eq!(target.path_and_query, "/hello?x=1");

        let target = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (target.addr.port(), target.path_and_query.as_str()),
            (80, "/")
        );
        assert_eq!(
            Target::parse("http://[::1]:8080/").unwrap().addr.port(),
            8080
        );
    }

    #[test]
    fn anything_but_plain_http_to_loopback_is_refused() {
        for url in [
            "https://127.0.0.1/",
            "http://10.0.0.1/",
            "http://example.com/",
            "http://127.0.0.1:notaport/",
            "http://:80/",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
