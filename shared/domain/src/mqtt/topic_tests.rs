//! Tests of `topic.rs`, built from the topics the reference observed on the wire.

use super::*;
use crate::device::DeviceId;

fn check(topic: &str, expected: Result<DeviceTopic, TopicError>) {
    assert_eq!(parse_publish_topic(topic), expected, "{topic}");
}

fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap()
}

fn rid(raw: &str) -> RequestId {
    RequestId::parse(raw).unwrap()
}

fn telemetry(device_id: &str, module_id: Option<&str>, bag: &str) -> DeviceTopic {
    DeviceTopic::Telemetry {
        device_id: device(device_id),
        module_id: module_id.map(|m| ModuleId::parse(m).unwrap()),
        properties: MessageProperties::parse_bag(bag).unwrap(),
    }
}

fn unknown(topic: &str) -> Result<DeviceTopic, TopicError> {
    Err(TopicError::UnknownTopic {
        topic: topic.into(),
    })
}

const PY_BAG: &str = "%24.mid=mid-1&%24.cid=corr-1&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00&a%2Fb=x%26y%3Dz&alert=high%20temp";
const NODE_BAG: &str = "%24.mid=mid-1&%24.cid=corr-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y%3Dz&%24.sub=thermostat1";

#[test]
fn telemetry_topics() {
    check(
        &format!("devices/dev1/messages/events/{PY_BAG}"),
        Ok(telemetry("dev1", None, PY_BAG)),
    );
    check(
        &format!("devices/dev-node/messages/events/{NODE_BAG}"),
        Ok(telemetry("dev-node", None, NODE_BAG)),
    );
    let with_component = parse_publish_topic(&format!("devices/d/messages/events/{NODE_BAG}"));
    let Ok(DeviceTopic::Telemetry { properties, .. }) = with_component else {
        panic!("{with_component:?}")
    };
    assert_eq!(properties.system.component.as_deref(), Some("thermostat1"));
    check(
        "devices/dev1/messages/events/",
        Ok(telemetry("dev1", None, "")),
    );
    check(
        "devices/dev1/messages/events",
        Ok(telemetry("dev1", None, "")),
    );
    check(
        "devices/dev1/modules/m1/messages/events/a=1",
        Ok(telemetry("dev1", Some("m1"), "a=1")),
    );
    // A plain client that leaves '/' unencoded in the bag.
    check(
        "devices/dev1/messages/events/$.ct=application/json&$.ce=utf-8",
        Ok(telemetry(
            "dev1",
            None,
            "%24.ct=application%2Fjson&%24.ce=utf-8",
        )),
    );
    check(
        "devices/a:b=c@d/messages/events/",
        Ok(telemetry("a:b=c@d", None, "")),
    );
    check(
        "devices/dev 1/messages/events/",
        Err(TopicError::InvalidDeviceId {
            device_id: "dev 1".into(),
        }),
    );
    check(
        "devices//messages/events/",
        Err(TopicError::InvalidDeviceId {
            device_id: "".into(),
        }),
    );
    check(
        "devices/d/x/messages/events/",
        Err(TopicError::InvalidDeviceId {
            device_id: "d/x".into(),
        }),
    );
    check(
        "devices/d/modules/m 1/messages/events/",
        Err(TopicError::InvalidModuleId {
            module_id: "m 1".into(),
        }),
    );
    check(
        "devices/d/messages/events/%24.mid=1&%24.mid=2",
        Err(TopicError::Properties(
            PropertyError::DuplicateSystemProperty {
                name: "$.mid".into(),
            },
        )),
    );
    check(
        "devices/d/messages/eventsx",
        unknown("devices/d/messages/eventsx"),
    );
    check(
        "devices/d/messages/devicebound/",
        unknown("devices/d/messages/devicebound/"),
    );
    check("devices/d", unknown("devices/d"));
}

#[test]
fn twin_method_and_dps_topics() {
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    check(
        &format!("$iothub/twin/GET/?$rid={uuid}"),
        Ok(DeviceTopic::TwinGet { rid: rid(uuid) }),
    );
    check(
        "$iothub/twin/GET?$rid=1",
        Ok(DeviceTopic::TwinGet { rid: rid("1") }),
    );
    check(
        "$iothub/twin/PATCH/properties/reported/?$rid=7",
        Ok(DeviceTopic::TwinPatchReported {
            rid: rid("7"),
            version: None,
        }),
    );
    check(
        "$iothub/twin/PATCH/properties/reported/?$rid=7&$version=12",
        Ok(DeviceTopic::TwinPatchReported {
            rid: rid("7"),
            version: Some(12),
        }),
    );
    check(
        "$iothub/methods/res/200/?$rid=42",
        Ok(DeviceTopic::MethodResponse {
            status: 200,
            rid: rid("42"),
        }),
    );
    check(
        "$iothub/methods/res/-1?$rid=42",
        Ok(DeviceTopic::MethodResponse {
            status: -1,
            rid: rid("42"),
        }),
    );
    check(
        &format!("$dps/registrations/PUT/iotdps-register/?$rid={uuid}"),
        Ok(DeviceTopic::DpsRegister { rid: rid(uuid) }),
    );
    check(
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.abc%2Fdef",
        Ok(DeviceTopic::DpsOperationStatus {
            rid: rid("2"),
            operation_id: OperationId::parse("4.abc/def").unwrap(),
        }),
    );
    // Unknown parameters are ignored, order does not matter, values are decoded.
    check(
        "$iothub/twin/GET/?x=1&%24rid=a%20b",
        Ok(DeviceTopic::TwinGet { rid: rid("a b") }),
    );
}

#[test]
fn refuses_bad_topics_with_a_reason() {
    let missing = |name| Err(TopicError::MissingParameter { name });
    check("", unknown(""));
    check("$iothub/twin/GET/", missing("$rid"));
    check(
        "$iothub/twin/GET/?$rid=",
        Err(TopicError::InvalidParameter {
            name: "$rid",
            value: "".into(),
        }),
    );
    check(
        &format!(
            "$iothub/twin/GET/?$rid={}",
            "r".repeat(MAX_OPAQUE_ID_LEN + 1)
        ),
        Err(TopicError::InvalidParameter {
            name: "$rid",
            value: "r".repeat(MAX_OPAQUE_ID_LEN + 1),
        }),
    );
    check(
        "$iothub/twin/GET/?$rid=a%0Ab",
        Err(TopicError::InvalidParameter {
            name: "$rid",
            value: "a\nb".into(),
        }),
    );
    check(
        "$iothub/twin/GET/?$rid=1&$rid=2",
        Err(TopicError::DuplicateParameter { name: "$rid" }),
    );
    check(
        "$iothub/twin/GET/?$rid=%G1",
        Err(TopicError::BadPercentEncoding {
            segment: "$rid=%G1".into(),
        }),
    );
    check(
        "$iothub/twin/PATCH/properties/reported/?$rid=1&$version=-3",
        Err(TopicError::InvalidParameter {
            name: "$version",
            value: "-3".into(),
        }),
    );
    check(
        "$iothub/methods/res/ok/?$rid=1",
        Err(TopicError::InvalidStatus {
            status: "ok".into(),
        }),
    );
    check(
        "$iothub/methods/res//?$rid=1",
        Err(TopicError::InvalidStatus { status: "".into() }),
    );
    check(
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2",
        missing("operationId"),
    );
    check(
        "devices/d/messages/events/#",
        Err(TopicError::Wildcard {
            topic: "devices/d/messages/events/#".into(),
        }),
    );
    check(
        "devices/+/messages/events/",
        Err(TopicError::Wildcard {
            topic: "devices/+/messages/events/".into(),
        }),
    );
    for topic in [
        "$iothub/twin/GETX/?$rid=1",
        "$iothub/twin/GET/x?$rid=1",
        "$iothub/twin/res/200/?$rid=1",
        "$iothub/twin/PATCH/properties/desired/?$version=1",
        "$iothub/methods/POST/reboot/?$rid=1",
        "$dps/registrations/res/202/?$rid=1",
        "devices/d/messages/devicebound/a=1",
        "telemetry/d",
        "/devices/d/messages/events/",
    ] {
        check(topic, unknown(topic));
    }
}

#[test]
fn device_topics_round_trip() {
    for topic in [
        "devices/dev1/messages/events/",
        "devices/dev1/modules/m1/messages/events/%24.mid=1&k=v%20w",
        "$iothub/twin/GET/?$rid=0f8fad5b-d9cb-469f-a165-70867728950e",
        "$iothub/twin/PATCH/properties/reported/?$rid=3",
        "$iothub/twin/PATCH/properties/reported/?$rid=3&$version=4",
        "$iothub/methods/res/404/?$rid=ab",
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.36a2c7f3",
    ] {
        let parsed = parse_publish_topic(topic).unwrap();
        assert_eq!(parsed.to_string(), topic);
    }
}

#[test]
fn cloud_topics_are_written_as_the_sdks_parse_them() {
    let check = |topic: CloudTopic, expected: &str| {
        assert_eq!(topic.to_string(), expected);
        assert_eq!(CloudTopic::parse(expected), Ok(topic), "{expected}");
    };
    check(
        CloudTopic::TwinResponse {
            status: 200,
            rid: rid("0f8fad5b-d9cb-469f-a165-70867728950e"),
            version: None,
        },
        "$iothub/twin/res/200/?$rid=0f8fad5b-d9cb-469f-a165-70867728950e",
    );
    check(
        CloudTopic::TwinResponse {
            status: 204,
            rid: rid("5"),
            version: Some(7),
        },
        "$iothub/twin/res/204/?$rid=5&$version=7",
    );
    check(
        CloudTopic::DesiredPatch { version: 3 },
        "$iothub/twin/PATCH/properties/desired/?$version=3",
    );
    check(
        CloudTopic::MethodRequest {
            name: MethodName::parse("thermostat1*getMaxMinReport").unwrap(),
            rid: rid("1a"),
        },
        "$iothub/methods/POST/thermostat1*getMaxMinReport/?$rid=1a",
    );
    check(
        CloudTopic::C2d {
            device_id: device("dev1"),
            properties: MessageProperties::parse_bag(
                "%24.mid=m1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&my%20prop=a%20b%26c",
            )
            .unwrap(),
        },
        "devices/dev1/messages/devicebound/%24.mid=m1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&my%20prop=a%20b%26c",
    );
    check(
        CloudTopic::DpsResponse {
            status: 202,
            rid: rid("9"),
            retry_after_secs: Some(1),
        },
        "$dps/registrations/res/202/?$rid=9&retry-after=1",
    );
    check(
        CloudTopic::DpsResponse {
            status: 200,
            rid: rid("9"),
            retry_after_secs: None,
        },
        "$dps/registrations/res/200/?$rid=9",
    );
    // Odd request ids are escaped, so `$rid` stays first and nothing breaks the topic.
    check(
        CloudTopic::TwinResponse {
            status: 200,
            rid: rid("a&b$c/?"),
            version: None,
        },
        "$iothub/twin/res/200/?$rid=a%26b%24c%2F%3F",
    );
}

#[test]
fn python_reads_method_names_and_statuses_from_the_fourth_segment() {
    let method = CloudTopic::MethodRequest {
        name: MethodName::parse("reboot").unwrap(),
        rid: rid("1"),
    }
    .to_string();
    assert_eq!(method.split('/').nth(3), Some("reboot"));
    let twin = CloudTopic::TwinResponse {
        status: 204,
        rid: rid("1"),
        version: Some(2),
    }
    .to_string();
    assert_eq!(twin.split('/').nth(3), Some("204"));
}

#[test]
fn method_names_and_opaque_ids() {
    for name in ["reboot", "c*cmd", "a.b-c_d", &"m".repeat(MAX_OPAQUE_ID_LEN)] {
        assert!(MethodName::parse(name).is_ok(), "{name}");
    }
    for name in ["", "a/b", "a?b", "a#b", "a+b", "a b", "é", &"m".repeat(129)] {
        assert_eq!(
            MethodName::parse(name),
            Err(TopicError::InvalidMethodName { name: name.into() })
        );
    }
    assert!(OperationId::parse("").is_err());
    assert!(RequestId::parse("ü").is_ok());
}

#[test]
fn cloud_topic_parse_refuses_others() {
    let check = |topic: &str, expected: TopicError| {
        assert_eq!(CloudTopic::parse(topic), Err(expected), "{topic}");
    };
    let unknown = |topic: &str| TopicError::UnknownCloudTopic {
        topic: topic.into(),
    };
    check(
        "devices/d/messages/events/",
        unknown("devices/d/messages/events/"),
    );
    check(
        "$iothub/twin/GET/?$rid=1",
        unknown("$iothub/twin/GET/?$rid=1"),
    );
    check(
        "$iothub/twin/PATCH/properties/desired/",
        TopicError::MissingParameter { name: "$version" },
    );
    check(
        "$iothub/twin/res/2000000/?$rid=1",
        TopicError::InvalidStatus {
            status: "2000000".into(),
        },
    );
    check(
        "$dps/registrations/res/202/?$rid=1&retry-after=soon",
        TopicError::InvalidParameter {
            name: "retry-after",
            value: "soon".into(),
        },
    );
}

#[test]
fn subscription_filters_the_sdks_use() {
    let check = |filter: &str, expected: Result<SubscriptionFilter, TopicError>| {
        let parsed = SubscriptionFilter::parse(filter);
        assert_eq!(parsed, expected, "{filter}");
        if let Ok(parsed) = parsed {
            assert_eq!(parsed.to_string(), filter);
        }
    };
    let unsupported = |filter: &str| {
        Err(TopicError::UnsupportedFilter {
            filter: filter.into(),
        })
    };
    check("$iothub/twin/res/#", Ok(SubscriptionFilter::TwinResponses));
    check(
        "$iothub/twin/PATCH/properties/desired/#",
        Ok(SubscriptionFilter::DesiredPatches),
    );
    check(
        "$iothub/methods/POST/#",
        Ok(SubscriptionFilter::MethodRequests),
    );
    check(
        "$dps/registrations/res/#",
        Ok(SubscriptionFilter::DpsResponses),
    );
    check(
        "devices/dev1/messages/devicebound/#",
        Ok(SubscriptionFilter::C2d {
            device_id: device("dev1"),
        }),
    );
    check(
        "devices/a b/messages/devicebound/#",
        Err(TopicError::InvalidDeviceId {
            device_id: "a b".into(),
        }),
    );
    for filter in [
        "#",
        "$iothub/#",
        "$iothub/twin/res/+",
        "devices/+/messages/devicebound/#",
        "devices/#/messages/devicebound/#",
        "devices/dev1/messages/events/#",
        "devices/dev1/messages/devicebound",
        "",
    ] {
        check(filter, unsupported(filter));
    }
}

#[test]
fn filters_match_the_cloud_topics_they_name() {
    let twin = CloudTopic::TwinResponse {
        status: 200,
        rid: rid("1"),
        version: None,
    };
    let desired = CloudTopic::DesiredPatch { version: 1 };
    let method = CloudTopic::MethodRequest {
        name: MethodName::parse("m").unwrap(),
        rid: rid("1"),
    };
    let c2d = CloudTopic::C2d {
        device_id: device("dev1"),
        properties: MessageProperties::default(),
    };
    let dps = CloudTopic::DpsResponse {
        status: 202,
        rid: rid("1"),
        retry_after_secs: None,
    };
    let topics = [&twin, &desired, &method, &c2d, &dps];
    let check = |filter: &str, expected: [bool; 5]| {
        let filter = SubscriptionFilter::parse(filter).unwrap();
        let actual = topics.map(|topic| filter.matches(topic));
        assert_eq!(actual, expected, "{filter}");
    };
    check("$iothub/twin/res/#", [true, false, false, false, false]);
    check(
        "$iothub/twin/PATCH/properties/desired/#",
        [false, true, false, false, false],
    );
    check("$iothub/methods/POST/#", [false, false, true, false, false]);
    check(
        "devices/dev1/messages/devicebound/#",
        [false, false, false, true, false],
    );
    check("devices/dev2/messages/devicebound/#", [false; 5]);
    check(
        "$dps/registrations/res/#",
        [false, false, false, false, true],
    );
}

fn hub(client_id: &str) -> Endpoint {
    Endpoint::parse(
        client_id,
        &format!("localhost/{client_id}/?api-version=2021-04-12"),
    )
    .unwrap()
}

fn dps(registration_id: &str) -> Endpoint {
    Endpoint::parse(
        registration_id,
        &format!("0ne0000ABCD/registrations/{registration_id}/"),
    )
    .unwrap()
}

#[test]
fn a_device_publishes_only_as_itself() {
    let check = |endpoint: &Endpoint, topic: &str, expected: Result<(), AccessError>| {
        let topic = parse_publish_topic(topic).unwrap();
        assert_eq!(authorize_publish(endpoint, &topic), expected, "{topic}");
    };
    let not = |client_id: &str, topic_identity: &str| {
        Err(AccessError::NotThisDevice {
            client_id: client_id.into(),
            topic_identity: topic_identity.into(),
        })
    };
    let wrong = |kind, what| Err(AccessError::WrongEndpoint { kind, what });
    let (dev1, module, reg) = (hub("dev1"), hub("dev1/m1"), dps("dev1"));
    check(&dev1, "devices/dev1/messages/events/", Ok(()));
    check(&dev1, "devices/dev2/messages/events/", not("dev1", "dev2"));
    check(&dev1, "devices/DEV1/messages/events/", not("dev1", "DEV1"));
    check(
        &dev1,
        "devices/dev1/modules/m1/messages/events/",
        not("dev1", "dev1/m1"),
    );
    check(&module, "devices/dev1/modules/m1/messages/events/", Ok(()));
    check(
        &module,
        "devices/dev1/messages/events/",
        not("dev1/m1", "dev1"),
    );
    check(
        &module,
        "devices/dev1/modules/m2/messages/events/",
        not("dev1/m1", "dev1/m2"),
    );
    for topic in [
        "$iothub/twin/GET/?$rid=1",
        "$iothub/twin/PATCH/properties/reported/?$rid=1",
        "$iothub/methods/res/200/?$rid=1",
    ] {
        check(&dev1, topic, Ok(()));
        check(&module, topic, Ok(()));
        check(&reg, topic, wrong(EndpointKind::Dps, "IoT Hub topics"));
    }
    for topic in [
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=o",
    ] {
        check(&reg, topic, Ok(()));
        check(&dev1, topic, wrong(EndpointKind::Hub, "DPS topics"));
    }
    // Same registration id as the device: the DPS session still cannot send telemetry.
    check(
        &reg,
        "devices/dev1/messages/events/",
        wrong(EndpointKind::Dps, "IoT Hub topics"),
    );
}

#[test]
fn a_device_subscribes_only_to_its_own_messages() {
    let check = |endpoint: &Endpoint, filter: &str, expected: Result<(), AccessError>| {
        let filter = SubscriptionFilter::parse(filter).unwrap();
        assert_eq!(
            authorize_subscription(endpoint, &filter),
            expected,
            "{filter}"
        );
    };
    let not = |client_id: &str, topic_identity: &str| {
        Err(AccessError::NotThisDevice {
            client_id: client_id.into(),
            topic_identity: topic_identity.into(),
        })
    };
    let wrong = |kind, what| Err(AccessError::WrongEndpoint { kind, what });
    let (dev1, module, reg) = (hub("dev1"), hub("dev1/m1"), dps("dev1"));
    check(&dev1, "devices/dev1/messages/devicebound/#", Ok(()));
    check(
        &dev1,
        "devices/dev2/messages/devicebound/#",
        not("dev1", "dev2"),
    );
    check(
        &module,
        "devices/dev1/messages/devicebound/#",
        not("dev1/m1", "dev1"),
    );
    for filter in [
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/methods/POST/#",
    ] {
        check(&dev1, filter, Ok(()));
        check(&module, filter, Ok(()));
        check(&reg, filter, wrong(EndpointKind::Dps, "IoT Hub topics"));
    }
    check(&reg, "$dps/registrations/res/#", Ok(()));
    check(
        &dev1,
        "$dps/registrations/res/#",
        wrong(EndpointKind::Hub, "DPS topics"),
    );
    check(
        &reg,
        "devices/dev1/messages/devicebound/#",
        wrong(EndpointKind::Dps, "IoT Hub topics"),
    );
}
