//! The accept loop: [`run`] takes a bound listener, caps connections with a semaphore, and runs
//! one session task per connection until `shutdown` resolves.
//!
//! Shutdown order (the batcher's part is in `batcher::run`, driven by the binary): stop
//! accepting → notify every session (each closes its socket and sends its `disconnected`
//! event) → wait for the session tasks → the caller drops its `BatcherHandle` and stops the
//! batcher, which flushes and waits for in-flight batches with a deadline → exit.
//!
//! [`run`] serves plain TCP (local tools, benchmarks); [`run_tls`] runs the rustls handshake on
//! each accepted `TcpStream` inside the connection's task, under the session's connect timeout
//! (a client that never finishes its handshake holds a permit no longer than one that never
//! sends CONNECT), and hands the `TlsStream` to [`serve_stream`], which is generic over the
//! stream for that reason.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::batcher::BatcherHandle;
use crate::connection::Connection;
use crate::registry::Registry;
use crate::session::{self, SessionLimits, Sessions, Shared};

/// Everything [`run`] needs. No `Default`: the binary's config spells these out.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// Where telemetry and connectivity events go; the caller runs the batcher task.
    pub batcher: BatcherHandle,
    pub registry: Arc<Registry>,
    /// The live sessions, shared by every listener and the revocation check.
    pub sessions: Arc<Sessions>,
    /// Connections served at once; the next one waits in the listen backlog.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, fixed header included
    /// (`gyre_domain::mqtt::MAX_PACKET_BYTES` in production).
    pub max_packet_size: usize,
    pub limits: SessionLimits,
    /// The host name devices are told to connect to after DPS provisioning (`assignedHub`).
    pub hub_host_name: String,
}

/// Serves devices over plain TCP on `listener` until `shutdown` resolves, then closes every
/// session and returns once their tasks have ended.
pub async fn run(listener: TcpListener, config: BridgeConfig, shutdown: impl Future) {
    serve(listener, None, config, shutdown).await
}

/// [`run`] with TLS: every accepted connection is handshaken with `acceptor` first (see
/// `tls::server_config` for the rustls configuration devices need).
pub async fn run_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    config: BridgeConfig,
    shutdown: impl Future,
) {
    serve(listener, Some(acceptor), config, shutdown).await
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    config: BridgeConfig,
    shutdown: impl Future,
) {
    let shared = Arc::new(Shared {
        batcher: config.batcher,
        registry: config.registry,
        sessions: config.sessions,
        limits: config.limits,
        hub_host_name: config.hub_host_name,
    });
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let (notify_shutdown, shutdown_seen) = watch::channel(());
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        let shared = Arc::clone(&shared);
        let mut shutdown_seen = shutdown_seen.clone();
        let max_packet_size = config.max_packet_size;
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            // The stream is boxed and the handshake runs in its own boxed future: a task is as
            // large as its largest state for the connection's whole life, and an idle TLS
            // connection should cost kilobytes, not the handshake's peak (memory per idle
            // connection is a target of `cargo xtask bench ingest`).
            match acceptor {
                None => {
                    serve_stream(
                        Box::new(stream),
                        peer,
                        max_packet_size,
                        &shared,
                        &mut shutdown_seen,
                    )
                    .await
                }
                Some(acceptor) => {
                    let handshake = Box::pin(handshake(
                        acceptor,
                        stream,
                        peer,
                        shared.limits.connect_timeout,
                        &mut shutdown_seen,
                    ));
                    if let Some(stream) = handshake.await {
                        serve_stream(stream, peer, max_packet_size, &shared, &mut shutdown_seen)
                            .await;
                    }
                }
            }
            drop(permit);
        });
        // Reap finished tasks so the set does not grow with the connection history.
        while tasks.try_join_next().is_some() {}
    }

    drop(listener);
    let _ = notify_shutdown.send(());
    while tasks.join_next().await.is_some() {}
}

/// The TLS handshake of an accepted connection, within `timeout`; `None` when it failed, timed
/// out or the bridge is shutting down.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    shutdown: &mut watch::Receiver<()>,
) -> Option<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
    let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
    tokio::select! {
        _ = shutdown.changed() => None,
        handshake = handshake => match handshake {
            Ok(Ok(stream)) => Some(Box::new(stream)),
            Ok(Err(err)) => {
                tracing::info!(%peer, cause = %err, "TLS handshake failed");
                None
            }
            Err(_elapsed) => {
                tracing::info!(%peer, "TLS handshake timed out");
                None
            }
        },
    }
}

/// Runs one session over an established stream (plain TCP or TLS) and logs its end.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    max_packet_size: usize,
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<()>,
) {
    let span = tracing::info_span!("mqtt_connection", %peer, device_id = tracing::field::Empty);
    async move {
        let connection = Connection::new(stream, max_packet_size);
        let end = session::run(connection, shared, shutdown).await;
        if end.is_normal() {
            tracing::info!(cause = %end, "connection closed");
        } else {
            tracing::warn!(cause = %end, "connection closed");
        }
    }
    .instrument(span)
    .await
}

/// Accepts the next connection, retrying transient errors (such as running out of file
/// descriptors) with a doubling backoff capped at a few seconds; an accept error never stops
/// the server.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(err) => {
                tracing::warn!(cause = %err, ?backoff, "accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
