//! The tick: `POST /internal/tick` every interval (one second by default), so the Spin
//! application does its periodic work (compaction, pruning, and in later issues rules, jobs
//! and export) even when no device sends anything. Spin components cannot run in the
//! background, so the bridge is their clock (`shared/DESIGN.md`).
//!
//! After each tick it runs the revocation check ([`crate::revocation`]): connected devices that
//! were blocked, deleted or re-keyed are disconnected within about a second.
//!
//! Ticks never overlap: the next one is due an interval after the previous one was sent and
//! never before it was answered; missed ticks are skipped, not caught up. A failing tick is
//! logged once when it starts failing and once when it recovers, not every second.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::MissedTickBehavior;

use crate::registry::{Registry, RegistryError};
use crate::revocation::Revocation;
use crate::session::Sessions;

/// Sends a tick through `app` every `interval`, then rechecks `sessions`, until `shutdown`
/// resolves.
pub async fn run(
    app: Arc<Registry>,
    sessions: Arc<Sessions>,
    interval: Duration,
    shutdown: impl Future,
) {
    let mut revocation = Revocation::default();
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut health = Health::new("tick");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let outcome = tokio::select! {
            _ = &mut shutdown => return,
            outcome = app.exchange(http::Method::POST, "/internal/tick", Bytes::new()) => outcome,
        };
        tokio::select! {
            _ = &mut shutdown => return,
            () = revocation.recheck(&app, &sessions) => {}
        }
        health.record(&outcome);
    }
}

/// Logs a periodic request once when it starts failing and once when it recovers, not on
/// every attempt.
pub(crate) struct Health {
    what: &'static str,
    failing: bool,
}

impl Health {
    pub(crate) fn new(what: &'static str) -> Health {
        Health {
            what,
            failing: false,
        }
    }

    pub(crate) fn record(&mut self, outcome: &Result<(http::StatusCode, Bytes), RegistryError>) {
        let what = self.what;
        match outcome {
            Ok((status, _)) if status.is_success() => {
                if self.failing {
                    tracing::info!("{what} answered again");
                    self.failing = false;
                }
            }
            Ok((status, body)) => {
                if !self.failing {
                    tracing::warn!(%status, body = %String::from_utf8_lossy(body), "{what} failed");
                    self.failing = true;
                }
            }
            Err(err) => {
                if !self.failing {
                    tracing::warn!(cause = %err, "{what} failed");
                    self.failing = true;
                }
            }
        }
    }
}
