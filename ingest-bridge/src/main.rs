//! The `gyre-ingest-bridge` command line: configuration, TLS loading, binding, and Ctrl-C or
//! SIGTERM → graceful shutdown. Everything else is in the library (`lib.rs` has the code map).
//!
//! `gyre-ingest-bridge --cert server.pem --key server-key.pem` serves MQTT over TLS on
//! 127.0.0.1:8883 (loopback by default for safety; `--listen-tls 0.0.0.0:8883` for devices on
//! the network), `--listen-tcp` adds plain MQTT for local tools, and `--control-listen`
//! (127.0.0.1:3001) serves the control API the Spin application calls. The internal secret shared with
//! the Spin application comes from `GYRE_INTERNAL_SECRET` (or `SPIN_VARIABLE_INTERNAL_SECRET`),
//! never from a flag, which any user could read in `ps`.
//!
//! `gyre-ingest-bridge dev-certs --out DIR` makes a development CA and a server certificate for
//! `localhost` and `127.0.0.1` (`cargo xtask up` runs it); existing files are reused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gyre_ingest_bridge::batcher::{self, BatcherConfig, FlushPolicy};
use gyre_ingest_bridge::registry::{Registry, RegistryConfig};
use gyre_ingest_bridge::session::SessionLimits;
use gyre_ingest_bridge::upstream::{HttpUpstream, RetryPolicy};
use gyre_ingest_bridge::{tls, BridgeConfig};
use std::io::Write as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "gyre-ingest-bridge",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a development CA (ca.pem) and a server certificate and key signed by it
    /// (server.pem, server-key.pem) into DIR, reusing files already there.
    DevCerts {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A DNS name or IP address the certificate names (repeatable).
        #[arg(long = "host", value_name = "NAME", default_values = ["localhost", "127.0.0.1"])]
        hosts: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct Serve {
    /// MQTT over TLS (port 0 picks a free port; the bound address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8883")]
    listen_tls: SocketAddr,
    /// Also plain MQTT over TCP, for local tools and benchmarks.
    #[arg(long, value_name = "ADDR")]
    listen_tcp: Option<SocketAddr>,
    /// The server certificate chain (PEM, leaf first).
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// The Spin application: its ingest and registry endpoints.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:3000")]
    app_url: String,
    /// A batch is sent once it holds this many messages...
    #[arg(long, default_value_t = 1000)]
    batch_max_messages: usize,
    /// ...or once its oldest message is this old (`20ms`, `1s`).
    #[arg(long, value_parser = parse_duration, default_value = "20ms")]
    batch_max_age: Duration,
    /// The host name devices reach this bridge by, given to them as their hub when they
    /// provision (DPS `assignedHub`); it must be a name the server certificate holds.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    hub_host_name: String,
    /// How often the application's periodic work is triggered (`POST /internal/tick`).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    tick_interval: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// The control API the Spin application calls (desired pushes, direct methods, C2D
    /// notices): plain HTTP behind the internal secret, so keep it on loopback or a private
    /// network. The registry's `bridge_control_url` variable must point here.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3001")]
    control_listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::DevCerts { out, hosts }) => {
            let certs = tls::dev_certs(&out, &hosts)?;
            let verb = if certs.created { "Wrote" } else { "Reusing" };
            println!("{verb} development certificates in {}", out.display());
            println!("Devices trust {}", certs.ca.display());
            Ok(())
        }
        None => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            tokio::runtime::Runtime::new()?.block_on(serve(cli.serve))
        }
    }
}

async fn serve(args: Serve) -> anyhow::Result<()> {
    let secret = std::env::var("GYRE_INTERNAL_SECRET")
        .or_else(|_| std::env::var("SPIN_VARIABLE_INTERNAL_SECRET"))
        .context("set GYRE_INTERNAL_SECRET to the Spin application's internal secret")?;
    let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
        anyhow::bail!(
            "--cert and --key are required (`gyre-ingest-bridge dev-certs` makes a pair)"
        );
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(cert, key)?);

    let upstream = HttpUpstream::new(
        &args.app_url,
        &secret,
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(30),
        },
    )?;
    let compaction_due = Arc::new(tokio::sync::Notify::new());
    let upstream = upstream.with_compaction_signal(Arc::clone(&compaction_due));
    let registry = Registry::new(RegistryConfig {
        base_url: args.app_url.clone(),
        secret: secret.clone(),
        ttl: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        max_entries: 100_000,
    })?;
    let registry = Arc::new(registry);
    let sessions = Arc::new(gyre_ingest_bridge::session::Sessions::default());
    let (handle, inbox) = batcher::channel(args.batch_max_messages.max(1) * 4);
    let config = BridgeConfig {
        batcher: handle,
        registry: Arc::clone(&registry),
        sessions: Arc::clone(&sessions),
        max_connections: args.max_connections,
        max_packet_size: gyre_domain::mqtt::MAX_PACKET_BYTES,
        limits: SessionLimits {
            connect_timeout: Duration::from_secs(10),
            max_inflight: 64,
        },
        hub_host_name: args.hub_host_name.clone(),
    };

    let tls_listener = TcpListener::bind(args.listen_tls)
        .await
        .with_context(|| format!("binding {}", args.listen_tls))?;
    let tcp_listener = match args.listen_tcp {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let control_listener = TcpListener::bind(args.control_listen)
        .await
        .with_context(|| format!("binding the control API on {}", args.control_listen))?;

    let (stop, stopped) = watch::channel(());
    let stop_signal = |mut stopped: watch::Receiver<()>| async move {
        let _ = stopped.changed().await;
    };
    let batcher = tokio::spawn(batcher::run(
        inbox,
        Arc::new(upstream),
        BatcherConfig {
            policy: FlushPolicy {
                max_messages: args.batch_max_messages,
                max_age: args.batch_max_age,
                eager: true,
            },
            max_in_flight: 4,
            shutdown_deadline: Duration::from_secs(10),
        },
        // Ends once every handle is gone: the servers drop theirs after their sessions ended.
        std::future::pending(),
    ));
    let compactions = tokio::spawn(gyre_ingest_bridge::compactor::run(
        Arc::clone(&registry),
        compaction_due,
        stop_signal(stopped.clone()),
    ));
    let ticks = tokio::spawn(gyre_ingest_bridge::tick::run(
        registry,
        Arc::clone(&sessions),
        args.tick_interval,
        stop_signal(stopped.clone()),
    ));
    let mut servers = tokio::task::JoinSet::new();
    println!("Bridge listening on mqtts://{}", tls_listener.local_addr()?);
    servers.spawn(gyre_ingest_bridge::run_tls(
        tls_listener,
        acceptor,
        config.clone(),
        stop_signal(stopped.clone()),
    ));
    if let Some(listener) = tcp_listener {
        println!("Bridge listening on mqtt://{}", listener.local_addr()?);
        servers.spawn(gyre_ingest_bridge::run(
            listener,
            config.clone(),
            stop_signal(stopped.clone()),
        ));
    }
    println!(
        "Bridge control API on http://{}",
        control_listener.local_addr()?
    );
    let control = tokio::spawn(gyre_ingest_bridge::control::run(
        control_listener,
        sessions,
        secret,
        stop_signal(stopped.clone()),
    ));
    drop(config);
    std::io::stdout().flush()?;

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = stop.send(());
    while servers.join_next().await.is_some() {}
    control.await?;
    ticks.await?;
    compactions.await?;
    batcher.await?;
    Ok(())
}

/// `20ms`, `2s`, `1m` or plain milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|at| text.split_at(at))
        .unwrap_or((text, "ms"));
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 20ms or 1s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("{text:?}: the unit must be ms, s or m")),
    }
}
