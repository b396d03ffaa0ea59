//! The registry's side of the contract with the device bridge (besides ingest, see
//! [`crate::ingest`]): what the bridge asks before it accepts a device's connection.
//!
//! `GET /internal/registry/devices/{deviceId}/connection` (internal secret) answers a
//! [`DeviceConnection`]; the bridge verifies the device's SAS token against its keys
//! ([`crate::mqtt`]) and refuses a device that may not connect. Not owned here: the token rules
//! themselves, or how the bridge caches the answer.

use serde::{Deserialize, Serialize};

use crate::device::{Device, DeviceStatus};
use crate::provisioning::Candidate;

/// What the bridge needs to admit or refuse a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceConnection {
    pub device_id: String,
    /// Whether the device may connect now: provisioned (or registered through the API), not
    /// blocked, not waiting for approval.
    pub may_connect: bool,
    /// The keys a SAS token may be signed with; empty without keys.
    pub keys: Vec<String>,
    /// The template the device was assigned, for validating what it sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl DeviceConnection {
    /// The answer for `device`, which may sign its tokens with any key of `candidates` (its own
    /// keys, or those derived from each enabled enrollment group it could provision through;
    /// see [`crate::provisioning::candidates`]).
    pub fn new(device: &Device, candidates: &[Candidate]) -> DeviceConnection {
        let may_connect = matches!(
            device.status(),
            DeviceStatus::Registered | DeviceStatus::Provisioned
        );
        DeviceConnection {
            device_id: device.id.as_str().to_owned(),
            may_connect,
            keys: candidates
                .iter()
                .flat_map(|candidate| candidate.keys.iter().cloned())
                .collect(),
            template: device
                .template
                .as_ref()
                .map(|template| template.as_str().to_owned()),
        }
    }
}

/// `GET /internal/registry/connection-changes?after={cursor}`: what changed in the registry that
/// may end a connected device's right to stay connected (blocked, deleted, new keys, a group
/// disabled or re-keyed). The bridge polls it on its tick and rechecks the devices named
/// (every connected device when `all_devices`), closing the sessions that may no longer
/// connect; IoT Hub does the same when a device is disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionChanges {
    /// Pass it as `after` next time.
    pub cursor: i64,
    pub device_ids: Vec<String>,
    pub all_devices: bool,
}

/// `PATCH /internal/registry/devices/{id}/twin/reported` (body: the device's patch, a JSON
/// object) answers the reported document's new version; `GET .../twin` answers
/// [`crate::twin::Twin::to_get_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportedPatched {
    pub version: u64,
}
