//! `cargo xtask up [-- HOST_ARGS]`: build, then run the platform on this machine in the
//! foreground until Ctrl-C, exiting with the host's exit status.
//!
//! Once the host listens and is bootstrapped, the device bridge starts next to it: MQTT over TLS
//! on 127.0.0.1:8883 with a development CA and server certificate made once in
//! `<state>/certs` (`gyre-ingest-bridge dev-certs`), the internal secret in its environment.
//!
//! The host runs on the repository's spin.toml with a fixed dev address (127.0.0.1:3000, metrics
//! on 127.0.0.1:9090). Extra arguments are appended; a default the user gives again is left out
//! (the host, like clap, rejects a repeated flag): `-- --listen 127.0.0.1:4000` moves the
//! listener, `-- other.toml` (first argument, not a flag) or `-- -f other.toml` the manifest.
//! Ctrl-C reaches the host directly (same process group) and xtask waits for it: see `process`.

use std::process::{Command, ExitCode};

use anyhow::Context as _;

use crate::bootstrap;
use crate::build;
use crate::process::{self, Supervised};
use crate::project::Project;

pub fn run(project: &Project, host_args: &[String]) -> anyhow::Result<ExitCode> {
    build::native(project)?;
    build::components(project, build::APP_COMPONENTS)?;

    let mut command_line = host_command_line(host_args);
    let state_dir = flag_value(&command_line, "--state-dir")
        .map(|dir| project.root.join(dir))
        .unwrap_or_else(|| project.path(".spin"));
    if flag_value(&command_line, "--runtime-config-file").is_none() {
        let runtime_config = bootstrap::runtime_config(&project.root, &state_dir)?;
        command_line.extend([
            "--runtime-config-file".to_string(),
            runtime_config.display().to_string(),
        ]);
    }
    let secret = match std::env::var("SPIN_VARIABLE_INTERNAL_SECRET") {
        Ok(secret) => secret,
        Err(_) => bootstrap::internal_secret(&state_dir)?,
    };
    let mut command = Command::new(project.release_binary("gyre-host"));
    command
        .current_dir(&project.root)
        .env("SPIN_VARIABLE_INTERNAL_SECRET", &secret)
        .args(&command_line);
    let mut host = Supervised::spawn("gyre-host", &mut command)?;
    let listen = flag_value(&command_line, "--listen").unwrap_or("127.0.0.1:3000");
    let host_addr = match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.port() != 0 => {
            let host_running = || matches!(host.try_wait(), Ok(None));
            if let Err(err) =
                bootstrap::administrator_token(addr, &state_dir, &secret, host_running)
            {
                eprintln!("xtask: could not bootstrap the administrator token: {err:#}");
            }
            Some(addr)
        }
        _ => {
            eprintln!(
                "xtask: --listen {listen} names no fixed address; skipping the token bootstrap \
                 and the bridge"
            );
            None
        }
    };

    let mut bridge = match host_addr {
        Some(addr) if matches!(host.try_wait(), Ok(None)) => {
            Some(start_bridge(project, &state_dir, addr, &secret)?)
        }
        _ => None,
    };

    // Whichever child exits first (Ctrl-C reaches both) ends the run; the other is stopped by
    // `Supervised`'s drop. The status reported is the host's, or the bridge's if it failed first.
    let status = loop {
        if let Some(status) = host.try_wait()? {
            break status;
        }
        if let Some(bridge) = bridge.as_mut() {
            if let Some(status) = bridge.try_wait()? {
                if !process::interrupted() {
                    eprintln!("xtask: gyre-ingest-bridge exited with {status}; stopping gyre-host");
                    host.stop(std::time::Duration::from_secs(10))?;
                    return Ok(ExitCode::from(process::exit_code(status).max(1)));
                }
                break host.wait()?;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(bridge);
    if !status.success() && !process::interrupted() {
        eprintln!("xtask: gyre-host exited with {status}");
    }
    Ok(ExitCode::from(process::exit_code(status)))
}

/// Makes (or reuses) the development certificates in `<state>/certs`, then starts the bridge on
/// 127.0.0.1:8883 in front of the host at `host_addr`.
fn start_bridge(
    project: &Project,
    state_dir: &std::path::Path,
    host_addr: std::net::SocketAddr,
    secret: &str,
) -> anyhow::Result<Supervised> {
    let bridge_binary = project.release_binary("gyre-ingest-bridge");
    let certs = state_dir.join("certs");
    let output = Command::new(&bridge_binary)
        .arg("dev-certs")
        .arg("--out")
        .arg(&certs)
        .output()
        .with_context(|| format!("running {} dev-certs", bridge_binary.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "gyre-ingest-bridge dev-certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ca = certs.join("ca.pem");
    let shown = ca.strip_prefix(&project.root).unwrap_or(&ca);
    println!(
        "xtask: devices trust {} (server certificate for localhost and 127.0.0.1)",
        shown.display()
    );
    let mut command = Command::new(&bridge_binary);
    command
        .current_dir(&project.root)
        .env("GYRE_INTERNAL_SECRET", secret)
        .arg("--listen-tls")
        .arg("127.0.0.1:8883")
        .arg("--cert")
        .arg(certs.join("server.pem"))
        .arg("--key")
        .arg(certs.join("server-key.pem"))
        .arg("--app-url")
        .arg(format!("http://{host_addr}"));
    Supervised::spawn("gyre-ingest-bridge", &mut command)
}

/// The value of `--flag value` or `--flag=value` in a command line.
fn flag_value<'a>(command_line: &'a [String], flag: &str) -> Option<&'a str> {
    command_line.iter().enumerate().find_map(|(idx, arg)| {
        if arg == flag {
            command_line.get(idx + 1).map(String::as_str)
        } else {
            arg.strip_prefix(flag)
                .and_then(|rest| rest.strip_prefix('='))
        }
    })
}

/// The dev defaults, minus those `host_args` override, followed by `host_args`.
fn host_command_line(host_args: &[String]) -> Vec<String> {
    let gives = |flags: &[&str]| {
        host_args.iter().any(|arg| {
            flags
                .iter()
                .any(|flag| arg == flag || arg.starts_with(&format!("{flag}=")))
        })
    };
    let gives_manifest = host_args
        .first()
        .is_some_and(|first| !first.starts_with('-'))
        || gives(&["-f", "--from"]);
    let mut command_line = Vec::new();
    if !gives_manifest {
        command_line.push("spin.toml".to_string());
    }
    for (flag, value) in [
        ("--listen", "127.0.0.1:3000"),
        ("--metrics-listen", "127.0.0.1:9090"),
    ] {
        if !gives(&[flag]) {
            command_line.extend([flag.to_string(), value.to_string()]);
        }
    }
    command_line.extend(host_args.iter().cloned());
    command_line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_line(host_args: &[&str]) -> String {
        let host_args: Vec<String> = host_args.iter().map(|arg| arg.to_string()).collect();
        host_command_line(&host_args).join(" ")
    }

    #[test]
    fn defaults_apply_unless_the_user_gives_the_same_flag() {
        let defaults = "spin.toml --listen 127.0.0.1:3000 --metrics-listen 127.0.0.1:9090";
        assert_eq!(command_line(&[]), defaults);
        assert_eq!(
            command_line(&["--request-timeout", "2s"]),
            format!("{defaults} --request-timeout 2s")
        );
        assert_eq!(
            command_line(&["--listen", "127.0.0.1:0"]),
            "spin.toml --metrics-listen 127.0.0.1:9090 --listen 127.0.0.1:0"
        );
        assert_eq!(
            command_line(&["--metrics-listen=127.0.0.1:0", "-f", "x.toml"]),
            "--listen 127.0.0.1:3000 --metrics-listen=127.0.0.1:0 -f x.toml"
        );
        assert_eq!(
            command_line(&["other.toml"]),
            "--listen 127.0.0.1:3000 --metrics-listen 127.0.0.1:9090 other.toml"
        );
    }
}
