//! Applying and compacting on demand: `POST /internal/compact` whenever a batch's answer says
//! so (`IngestResult::compaction_due`, set for every new batch). The ingest component keeps
//! each batch in its journal and cannot work after it answers; this request applies the
//! journal to the default database (many batches per transaction) and moves compaction steps
//! (thousands of rows into the per-device table). Sent from here, that work runs beside the
//! batches instead of inside their requests, so no PUBACK waits for it.
//!
//! At most one compaction request is in flight. Signals that arrive meanwhile fold into one
//! more request after it ([`Notify`] keeps a single permit), which finds nothing to do if the
//! backlog is gone. The tick still applies the journal and compacts a step a second, so a lost
//! signal only delays.

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
