//! Connected devices that may no longer connect are disconnected: an operator blocks a device,
//! deletes it, gives it new keys, or disables or re-keys its enrollment group. IoT Hub closes
//! such a connection; Gyre does the same within about a second.
//!
//! On each tick the bridge asks the registry what changed since its cursor
//! (`GET /internal/registry/connection-changes`, from the audit log) and rechecks the devices
//! named that have a hub session (every connected device after a group change): a fresh
//! connection answer that refuses the device, or no longer holds the key its session was
//! admitted with, closes the session ([`Sessions::revoke`]). A device admitted with a key that
//! is still valid is left alone, so unrelated changes (a display name, a new group) do not
//! disconnect anyone. The first poll learns the cursor and rechecks every session admitted
//! before it: such a session was checked at CONNECT, but a change between its CONNECT and the
//! first poll would otherwise fall before the cursor and never be seen (a race that a slow
//! first tick made real).
//!
//! A registry that cannot answer leaves sessions alone and the cursor where it was, so the
//! next tick tries again.

use crate::registry::Registry;
use crate::session::{key_hash, Sessions};

/// The revocation check's state: where in the registry's change feed it is.
#[derive(Debug, Default)]
pub struct Revocation {
    cursor: Option<i64>,
}

impl Revocation {
    /// Polls the change feed once and closes the sessions that may no longer connect.
    pub async fn recheck(&mut self, registry: &Registry, sessions: &Sessions) {
        let changes = match registry.connection_changes(self.cursor).await {
            Ok(changes) => changes,
            Err(err) => {
                tracing::debug!(cause = %err, "connection changes unavailable");
                return;
            }
        };
        let first_poll = self.cursor.is_none();
        let devices = if first_poll || changes.all_devices {
            sessions.hub_devices()
        } else {
            changes.device_ids
        };
        for device_id in devices {
            let Some(admitted_with) = sessions.hub_key_hash(&device_id) else {
                continue;
            };
            let still_allowed = match registry.fresh_connection(&device_id).await {
                Ok(Some(answer)) => {
                    answer.may_connect
                        && answer.keys.iter().any(|key| key_hash(key) == admitted_with)
                }
                Ok(None) => false,
                // Undecided: keep the session and the cursor, and try again next tick.
                Err(err) => {
                    tracing::debug!(%device_id, cause = %err, "recheck postponed");
                    return;
                }
            };
            if !still_allowed && sessions.revoke(&device_id) {
                tracing::info!(%device_id, "device may no longer connect; disconnected");
            }
        }
        self.cursor = Some(changes.cursor);
    }
}
