//! Compaction on demand: `POST /internal/compact` whenever a batch's answer says a compaction
//! step is due (`IngestResult::compaction_due`). The ingest component cannot work after it
//! answers, and a step (thousands of rows moved into the per-device table) inside a batch's
//! request would hold back that batch's PUBACKs and every batch queued behind it. Sent from
//! here, the step runs beside the batches: it holds the write lock only while it moves rows,
//! and batches commit between its steps.
//!
//! At most one compaction request is in flight. Signals that arrive meanwhile fold into one
//! more request after it ([`Notify`] keeps a single permit), which finds nothing to do if the
//! backlog is gone. The tick still compacts a step a second, so a lost signal only delays.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::registry::Registry;
use crate::tick::Health;

/// Sends `POST /internal/compact` through `app` each time `due` is notified, one request at a
/// time, until `shutdown` resolves.
pub async fn run(app: Arc<Registry>, due: Arc<Notify>, shutdown: impl Future) {
    let mut health = Health::new("compaction");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            () = due.notified() => {}
        }
        let outcome = tokio::select! {
            _ = &mut shutdown => return,
            outcome = app.exchange(http::Method::POST, "/internal/compact", Bytes::new()) => outcome,
        };
        health.record(&outcome);
    }
}
