//! Topic to domain message: what a device's PUBLISH means, through the shared domain crate's
//! parsers ([`gyre_domain::mqtt::parse_publish_topic`], [`authorize_publish`]). Pure: no IO, and
//! the time is an argument.
//!
//! Owns the mapping from [`DeviceTopic`] to what the bridge does with it. Does not own the
//! topic grammar (the domain crate) or acknowledgements (the session). Telemetry becomes a
//! [`DeviceMessage`]; DPS requests go to the session's provisioning (`dps`), twin requests to
//! `twin`; method responses go to the call waiting for them (`downlink`).

use std::collections::BTreeMap;

use gyre_domain::ingest::DeviceMessage;
use gyre_domain::mqtt::{
    authorize_publish, parse_publish_topic, AccessError, DeviceTopic, Endpoint, OperationId,
    RequestId, SystemProperties, TopicError,
};

/// What a PUBLISH from a device asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Routed {
    Telemetry(DeviceMessage),
    /// `$dps/registrations/PUT/iotdps-register/?$rid=`: the payload is the registration body.
    DpsRegister {
        rid: RequestId,
    },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`.
    DpsStatus {
        rid: RequestId,
        operation_id: OperationId,
    },
    /// `$iothub/twin/GET/?$rid=`.
    TwinGet {
        rid: RequestId,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=`: the payload is the patch.
    TwinPatchReported {
        rid: RequestId,
    },
    /// `$iothub/methods/res/{status}/?$rid=`: the payload is the device's answer to a call.
    MethodResponse {
        status: i32,
        rid: RequestId,
    },
    /// A topic of the dialect the bridge does not serve yet; the name is for the log line.
    NotYetServed(&'static str),
}

/// Why a PUBLISH is refused; the session closes the connection (as IoT Hub does).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The device tried to publish as another device, or to the other endpoint's topics.
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Routes a PUBLISH on `topic` with `payload` from the connection authenticated as `endpoint`,
/// received at `now_millis` (Unix milliseconds, the message's enqueued time).
pub fn route(
    endpoint: &Endpoint,
    topic: &str,
    payload: &[u8],
    now_millis: i64,
) -> Result<Routed, RouteError> {
    let device_topic = parse_publish_topic(topic)?;
    authorize_publish(endpoint, &device_topic)?;
    Ok(match device_topic {
        DeviceTopic::Telemetry {
            device_id,
            module_id,
            properties,
        } => Routed::Telemetry(DeviceMessage {
            device_id: device_id.as_str().to_owned(),
            module_id: module_id.map(|module_id| module_id.as_str().to_owned()),
            enqueued_at: now_millis,
            system_properties: system_map(properties.system),
            application_properties: properties.application,
            body: payload.to_vec(),
        }),
        DeviceTopic::TwinGet { rid } => Routed::TwinGet { rid },
        DeviceTopic::TwinPatchReported { rid, .. } => Routed::TwinPatchReported { rid },
        DeviceTopic::MethodResponse { status, rid } => Routed::MethodResponse { status, rid },
        DeviceTopic::DpsRegister { rid } => Routed::DpsRegister { rid },
        DeviceTopic::DpsOperationStatus { rid, operation_id } => {
            Routed::DpsStatus { rid, operation_id }
        }
    })
}

/// The system properties by their wire names (`$.ct`, ...), as the ingest contract carries them.
fn system_map(system: SystemProperties) -> BTreeMap<String, String> {
    let SystemProperties {
        message_id,
        correlation_id,
        user_id,
        to,
        content_type,
        content_encoding,
        component,
        interface_id,
        expiry,
        output_name,
        other,
    } = system;
    let known = [
        ("$.mid", message_id),
        ("$.cid", correlation_id),
        ("$.uid", user_id),
        ("$.to", to),
        ("$.ct", content_type),
        ("$.ce", content_encoding),
        ("$.sub", component),
        ("$.ifid", interface_id),
        ("$.exp", expiry),
        ("$.on", output_name),
    ];
    known
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value)))
        .chain(other)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(client_id: &str) -> Endpoint {
        Endpoint::parse(
            client_id,
            &format!("localhost/{client_id}/?api-version=2021-04-12"),
        )
        .unwrap()
    }

    #[test]
    fn telemetry_keeps_device_properties_and_body() {
        let routed = route(
            &hub("dev1"),
            "devices/dev1/messages/events/%24.ct=application%2Fjson&%24.sub=th1&alert=high%20temp",
            b"{\"t\":1}",
            42,
        )
        .unwrap();
        let Routed::Telemetry(message) = routed else {
            panic!("{routed:?}")
        };
        assert_eq!(message.device_id, "dev1");
        assert_eq!(message.module_id, None);
        assert_eq!(message.enqueued_at, 42);
        assert_eq!(message.system_properties["$.ct"], "application/json");
        assert_eq!(message.system_properties["$.sub"], "th1");
        assert_eq!(
            message.application_properties,
            vec![("alert".to_owned(), "high temp".to_owned())]
        );
        assert_eq!(message.body, br#"{"t":1}"#);
    }

    #[test]
    fn publishing_as_another_device_is_refused() {
        let refused = route(&hub("dev1"), "devices/dev2/messages/events/", b"", 0);
        assert!(matches!(refused, Err(RouteError::Access(_))), "{refused:?}");
    }

    #[test]
    fn unknown_topics_are_refused_twin_requests_and_method_responses_routed() {
        assert!(matches!(
            route(&hub("dev1"), "foo/bar", b"", 0),
            Err(RouteError::Topic(_))
        ));
        let rid = RequestId::parse("1").unwrap();
        assert_eq!(
            route(&hub("dev1"), "$iothub/twin/GET/?$rid=1", b" ", 0),
            Ok(Routed::TwinGet { rid: rid.clone() })
        );
        assert_eq!(
            route(
                &hub("dev1"),
                "$iothub/twin/PATCH/properties/reported/?$rid=1",
                b"{}",
                0
            ),
            Ok(Routed::TwinPatchReported { rid })
        );
        assert_eq!(
            route(&hub("dev1"), "$iothub/methods/res/200/?$rid=1", b"{}", 0),
            Ok(Routed::MethodResponse {
                status: 200,
                rid: RequestId::parse("1").unwrap()
            })
        );
    }
}
