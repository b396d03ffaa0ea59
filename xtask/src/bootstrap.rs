//! First-start bootstrap for `cargo xtask up`: the internal secret the host and bridge share,
//! and the administrator API token printed once.
//!
//! The secret is made once per state directory (`<state>/internal-secret`, owner-only) and
//! given to the host as `SPIN_VARIABLE_INTERNAL_SECRET`. Once the host listens, xtask calls the
//! registry's `POST /internal/registry/bootstrap` with it: on an application with no API token
//! yet, that creates an administrator token, which xtask prints and writes to
//! `<state>/admin-token` (owner-only). Later starts find the file instead.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long the host may take to start listening (the first start compiles the components).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The internal secret of `state_dir`, made on first use.
pub fn internal_secret(state_dir: &Path) -> anyhow::Result<String> {
    let file = state_dir.join("internal-secret");
    if let Ok(secret) = std::fs::read_to_string(&file) {
        if !secret.trim().is_empty() {
            return Ok(secret.trim().to_string());
        }
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_owner_only(&file, &secret)?;
    Ok(secret)
}

/// Writes `<state_dir>/runtime-config.toml`: the repository's `runtime-config.toml` with each
/// store's `path` moved into `state_dir` (same file name), so every store of a state directory
/// lives in it (the repository's copy puts them in `.spin/`, for `spin up`). Returns its path.
pub fn runtime_config(repo_root: &Path, state_dir: &Path) -> anyhow::Result<PathBuf> {
    let source = repo_root.join("runtime-config.toml");
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    let mut moved = String::with_capacity(text.len());
    for line in text.lines() {
        let store_file = line
            .strip_prefix("path = \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(|path| Path::new(path).file_name());
        match store_file {
            Some(file) => moved.push_str(&format!("path = \"{}\"", file.to_string_lossy())),
            None => moved.push_str(line),
        }
        moved.push('\n');
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let file = state_dir.join("runtime-config.toml");
    std::fs::write(&file, moved).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Waits for the host at `addr`, then bootstraps and reports the administrator token.
/// `host_running` tells whether the host process is still alive, so a host that failed to start
/// is not waited for.
pub fn administrator_token(
    addr: SocketAddr,
    state_dir: &Path,
    secret: &str,
    host_running: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let token_file = state_dir.join("admin-token");
    wait_until_listening(addr, host_running)?;
    let (status, body) = post(addr, "/internal/registry/bootstrap", secret)?;
    match status {
        201 => {
            let token =
                json_string_field(&body, "token").context("the bootstrap answer has no token")?;
            write_owner_only(&token_file, &token)?;
            println!(
                "xtask: administrator API token (shown once; also in {}):",
                token_file.display()
            );
            println!("{token}");
        }
        409 => println!(
            "xtask: the administrator API token was created on first start: {}",
            token_file.display()
        ),
        _ => anyhow::bail!("bootstrap answered {status}: {body}"),
    }
    Ok(())
}

fn wait_until_listening(
    addr: SocketAddr,
    mut host_running: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if !host_running() {
            anyhow::bail!("gyre-host stopped before it listened");
        }
        if Instant::now() > deadline {
            anyhow::bail!("gyre-host did not listen on {addr} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A minimal HTTP/1.1 POST: xtask stays free of an HTTP client dependency.
pub(crate) fn post(addr: SocketAddr, path: &str, secret: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nx-gyre-internal-secret: {secret}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("a malformed HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    Ok((status, decode_chunked(body)))
}

/// The body of a `Transfer-Encoding: chunked` response (what Spin components send), or the
/// text as it is when it is not chunked.
fn decode_chunked(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if size == 0 || after.len() < size {
            return if size == 0 { out } else { body.to_string() };
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// `"name": "value"` from a flat JSON object (enough for the bootstrap answer).
pub(crate) fn json_string_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("\"{name}\""))? + name.len() + 2;
    let rest = body[start..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn write_owner_only(path: &PathBuf, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded_and_plain_ones_kept() {
        assert_eq!(
            decode_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(decode_chunked("{\"a\":1}"), "{\"a\":1}");
    }

    #[test]
    fn the_token_field_is_found() {
        let body = r#"{"id":"bootstrap-admin","token":"SharedAccessSignature sr=a&sig=b%3D&skn=c&se=1","roles":[]}"#;
        assert_eq!(
            json_string_field(body, "token").as_deref(),
            Some("SharedAccessSignature sr=a&sig=b%3D&skn=c&se=1")
        );
        assert_eq!(json_string_field(body, "missing"), None);
    }
}
