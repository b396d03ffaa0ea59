//! DPS provisioning over MQTT for one connection: the register request and the operation-status
//! polls (reference §6), answered on `$dps/registrations/res/{status}/?$rid=...`.
//!
//! The registration itself happens at the register request, through the registry
//! (`Registry::register`, which applies IoT Central's rules); its outcome is kept under a new
//! operation id and the device is told `202 assigning`, then its first poll gets `200 assigned`
//! with the `registrationState` (`assignedHub` = the bridge's configured host name). That is the
//! conversation both SDKs expect from DPS, which always answers a register with 202.
//!
//! Errors carry a JSON body with `errorCode` and `message`, DPS' shape: a malformed request is
//! 400, a refused registration (blocked device, disabled group) 401, an unknown operation 404;
//! a registry that cannot answer is 503 with `retry-after`, which both SDKs retry (≥ 429).
//!
//! Owns only the conversation; the session decides whether the device may hear it (it must have
//! subscribed to `$dps/registrations/res/#`).

use std::collections::VecDeque;

use gyre_domain::mqtt::{CloudTopic, OperationId, RequestId};
use gyre_domain::provisioning::{
    DeviceRegistration, Enrollment, RegisterRequest, RegistrationState,
};
use serde_json::json;

use crate::registry::{Registration, Registry};

/// Completed operations kept per connection; a device polls only its latest one.
const MAX_OPERATIONS: usize = 4;
/// Seconds a device is told to wait before polling (Node honours it; Python waits 2 s anyway).
const POLL_AFTER_SECS: u32 = 1;
/// Seconds a device is told to wait before retrying when the registry cannot answer.
const RETRY_AFTER_SECS: u32 = 5;

/// Who is provisioning on this connection, as authenticated at CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpsIdentity {
    pub id_scope: String,
    pub registration_id: String,
    /// The enrollment whose key signed the connection's token.
    pub enrollment: Enrollment,
}

/// An answer to publish to the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub topic: CloudTopic,
    pub body: Vec<u8>,
}

/// One connection's provisioning operations.
#[derive(Debug, Default)]
pub struct Provisioning {
    operations: VecDeque<(String, RegistrationState)>,
}

impl Provisioning {
    /// Handles `$dps/registrations/PUT/iotdps-register/?$rid={rid}` with `body`.
    pub async fn register(
        &mut self,
        rid: RequestId,
        body: &[u8],
        identity: &DpsIdentity,
        hub_host_name: &str,
        registry: &Registry,
    ) -> Reply {
        let registration = match DeviceRegistration::parse(body) {
            Ok(registration) => registration,
            Err(err) => {
                return error(
                    rid,
                    400,
                    400_004,
                    &format!("the register body is not valid: {err}"),
                )
            }
        };
        if let Some(claimed) = &registration.registration_id {
            if claimed != &identity.registration_id {
                return error(
                    rid,
                    400,
                    400_004,
                    &format!(
                        "registrationId `{claimed}` is not the connection's `{}`",
                        identity.registration_id
                    ),
                );
            }
        }
        let request = RegisterRequest {
            id_scope: identity.id_scope.clone(),
            enrollment: identity.enrollment.clone(),
            model_id: registration.model_id().map(str::to_owned),
            assigned_hub: hub_host_name.to_owned(),
        };
        match registry.register(&identity.registration_id, &request).await {
            Ok(Registration::Assigned(state)) => {
                // A random UUID, the form DPS gives its operation ids.
                let operation_id = crate::upstream::new_batch_id();
                if self.operations.len() == MAX_OPERATIONS {
                    self.operations.pop_front();
                }
                self.operations.push_back((operation_id.clone(), state));
                let body = json!({ "operationId": operation_id, "status": "assigning" });
                reply(rid, 202, Some(POLL_AFTER_SECS), &body)
            }
            Ok(Registration::Refused(reason)) => {
                tracing::info!(registration_id = %identity.registration_id, %reason, "registration refused");
                error(rid, 401, 401_002, &reason)
            }
            Err(err) => {
                tracing::warn!(registration_id = %identity.registration_id, cause = %err, "registry unavailable; the device is told to retry");
                let body = json!({
                    "errorCode": 503_000,
                    "message": "the registry is unavailable; retry later",
                });
                reply(rid, 503, Some(RETRY_AFTER_SECS), &body)
            }
        }
    }

    /// Handles `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`.
    pub fn status(&self, rid: RequestId, operation_id: &OperationId) -> Reply {
        match self
            .operations
            .iter()
            .find(|(id, _)| id == operation_id.as_str())
        {
            Some((id, state)) => {
                let body = json!({
                    "operationId": id,
                    "status": "assigned",
                    "registrationState": state,
                });
                reply(rid, 200, None, &body)
            }
            None => error(
                rid,
                404,
                404_002,
                &format!(
                    "no operation `{}` on this connection",
                    operation_id.as_str()
                ),
            ),
        }
    }
}

fn reply(
    rid: RequestId,
    status: u16,
    retry_after_secs: Option<u32>,
    body: &serde_json::Value,
) -> Reply {
    Reply {
        topic: CloudTopic::DpsResponse {
            status,
            rid,
            retry_after_secs,
        },
        body: body.to_string().into_bytes(),
    }
}

fn error(rid: RequestId, status: u16, code: u32, message: &str) -> Reply {
    reply(
        rid,
        status,
        None,
        &json!({ "errorCode": code, "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid() -> RequestId {
        RequestId::parse("1").unwrap()
    }

    #[test]
    fn an_unknown_operation_is_404_with_an_error_code() {
        let provisioning = Provisioning::default();
        let reply = provisioning.status(rid(), &OperationId::parse("nope").unwrap());
        assert_eq!(
            reply.topic.to_string(),
            "$dps/registrations/res/404/?$rid=1"
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["errorCode"], 404_002);
    }
}
