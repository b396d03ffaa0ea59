//! Device twin requests over MQTT (reference §3): `$iothub/twin/GET` answers both documents,
//! `$iothub/twin/PATCH/properties/reported` answers `204` with the reported document's new
//! version, on `$iothub/twin/res/{status}/?$rid=...[&$version=N]`. The twin itself is the
//! registry's (`/internal/registry/devices/{id}/twin`); this module only speaks the topics.
//!
//! Errors carry a JSON body with `errorCode` and `message` (the Node SDK ignores status codes,
//! §8.14): a patch that is not a JSON object, or breaks the twin's key, depth or size rules, is
//! 400; a device deleted meanwhile is 404; a registry that cannot answer is 503.

use bytes::Bytes;
use gyre_domain::mqtt::{CloudTopic, RequestId};
use serde_json::json;

use crate::dps::Reply;
use crate::registry::{Registry, RegistryError, ReportedPatch};

/// Answers `$iothub/twin/GET/?$rid={rid}` for `device_id`.
pub async fn get(rid: RequestId, device_id: &str, registry: &Registry) -> Reply {
    match registry.twin(device_id).await {
        Ok(Some(twin)) => reply(rid, 200, None, twin.to_string().into_bytes()),
        Ok(None) => error(rid, 404, 404_001, "the device does not exist"),
        Err(err) => unavailable(rid, device_id, &err),
    }
}

/// Answers `$iothub/twin/PATCH/properties/reported/?$rid={rid}` with `patch` from `device_id`.
pub async fn patch_reported(
    rid: RequestId,
    device_id: &str,
    patch: Bytes,
    registry: &Registry,
) -> Reply {
    match registry.patch_reported(device_id, patch).await {
        Ok(ReportedPatch::Patched(version)) => reply(rid, 204, Some(version), Vec::new()),
        Ok(ReportedPatch::Invalid(message)) => error(rid, 400, 400_004, &message),
        Ok(ReportedPatch::NoDevice) => error(rid, 404, 404_001, "the device does not exist"),
        Err(err) => unavailable(rid, device_id, &err),
    }
}

fn unavailable(rid: RequestId, device_id: &str, err: &RegistryError) -> Reply {
    tracing::warn!(%device_id, cause = %err, "twin request failed: registry unavailable");
    error(rid, 503, 503_001, "the service is unavailable; retry later")
}

fn reply(rid: RequestId, status: u16, version: Option<u64>, body: Vec<u8>) -> Reply {
    Reply {
        topic: CloudTopic::TwinResponse {
            status,
            rid,
            version,
        },
        body,
    }
}

fn error(rid: RequestId, status: u16, code: u32, message: &str) -> Reply {
    let body = json!({ "errorCode": code, "message": message });
    reply(rid, status, None, body.to_string().into_bytes())
}
