//! `gyre-host`: the command line of the embedded host. Parses flags as `spin up` does, loads
//! the application, binds the listeners, prints where it serves, and stops on Ctrl-C or SIGTERM.
//! Everything else lives in the library.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use gyre_host::{App, HostOptions, PoolLimits};

/// Run a Spin application's HTTP components on this machine.
#[derive(Parser, Debug)]
#[command(name = "gyre-host", version)]
struct Cli {
    /// The application manifest.
    #[arg(
        value_name = "MANIFEST",
        default_value = "spin.toml",
        conflicts_with = "from"
    )]
    manifest: PathBuf,
    /// The application manifest (as `spin up -f`).
    #[arg(short = 'f', long = "from")]
    from: Option<PathBuf>,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Application state directory (default: `.spin` beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Spin runtime configuration file (store labels).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// SQL statement, or `@file`, to run against the default database before serving. Repeatable.
    #[arg(long = "sqlite")]
    sqlite: Vec<String>,
    /// Address to serve Prometheus metrics on (`GET /metrics`).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Per-request deadline, e.g. `500ms`, `30s`, `2m`. Spin has none; the default leaves room
    /// for a device command, which may wait 30 s for the device to connect and 30 s for its
    /// answer.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Component instances alive at once (requests in flight, chained ones included).
    #[arg(long, default_value_t = 256)]
    max_instances: u32,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 30s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| err.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("Error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let options = HostOptions {
        manifest: cli.from.unwrap_or(cli.manifest),
        state_dir: cli.state_dir,
        runtime_config: cli.runtime_config_file,
        sqlite_statements: cli.sqlite,
        request_timeout: cli.request_timeout,
        pool: PoolLimits {
            max_instances: cli.max_instances,
            max_memory_bytes: 256 << 20,
        },
    };
    let app = tokio::task::spawn_blocking(move || App::load(&options)).await??;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match cli.metrics_listen {
        Some(metrics_addr) => Some(
            tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("binding {metrics_addr}"))?,
        ),
        None => None,
    };

    let mut out = std::io::stdout().lock();
    writeln!(out, "Serving http://{addr}")?;
    writeln!(out, "Available Routes:")?;
    for (component, route, wildcard) in app.routes() {
        let route = if wildcard {
            route
                .trim_end_matches("...")
                .trim_end_matches('/')
                .to_string()
        } else {
            route
        };
        writeln!(
            out,
            "  {component}: http://{addr}{route}{}",
            if wildcard { " (wildcard)" } else { "" }
        )?;
    }
    if let Some(listener) = &metrics_listener {
        writeln!(out, "Metrics at http://{}/metrics", listener.local_addr()?)?;
    }
    out.flush()?;
    drop(out);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(listener) = metrics_listener {
        let mut stop = stop_rx.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(err) = gyre_host::http::serve_metrics(app, listener, stopped).await {
                tracing::error!(error = %format!("{err:#}"), "metrics listener stopped");
            }
        });
    }
    let mut stop = stop_rx;
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    gyre_host::http::serve(app, listener, stopped).await
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
