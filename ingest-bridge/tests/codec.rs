//! Byte-fixture tests of the MQTT 3.1.1 codec (in the manner of mini-redis's
//! `frame_validation.rs`): a round trip of every packet, every malformed case we know of, the
//! CONNECT packets the official Azure IoT SDKs send, and a random-input loop that must never
//! panic.

use bytes::{Bytes, BytesMut};
use gyre_ingest_bridge::codec::{
    check, encode, parse, ConnAck, Connect, ConnectReturnCode, Credentials, EncodeError,
    FrameError, MqttStr, Packet, PacketId, Password, ProtocolError, PubAck, Publish, PublishQos,
    QoS, SubAck, SubAckCode, Subscribe, SubscribeFilter, TopicFilter, TopicName, UnsubAck,
    Unsubscribe, Will,
};

/// IoT Hub's 256 KiB message limit, the bridge's intended maximum.
const MAX: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers: every fixture goes through the same few checks.

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A two-byte length prefix and the bytes.
fn lp(field: &[u8]) -> Vec<u8> {
    let mut out = (field.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(field);
    out
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn mqtt_str(text: &str) -> MqttStr {
    MqttStr::try_from(text).unwrap()
}

fn topic(text: &str) -> TopicName {
    TopicName::try_from(text).unwrap()
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::try_from(text).unwrap()
}

fn encoded(packet: &Packet) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode(packet, &mut dst).unwrap();
    dst.to_vec()
}

/// `bytes` is exactly one frame that parses to `packet`, `packet` encodes to exactly `bytes`,
/// and every strict prefix of `bytes` is `Incomplete`.
fn assert_round_trip(bytes: &[u8], packet: Packet) {
    assert_eq!(check(bytes, MAX), Ok(bytes.len()), "check of {bytes:02X?}");
    for cut in 0..bytes.len() {
        assert_eq!(
            check(&bytes[..cut], MAX),
            Err(FrameError::Incomplete),
            "prefix of {cut} bytes of {bytes:02X?}"
        );
    }
    assert_eq!(parse(Bytes::copy_from_slice(bytes)), Ok(packet.clone()));
    assert_eq!(encoded(&packet), bytes, "encoding of {packet:?}");
}

/// `bytes` passes `check` as one frame and `parse` refuses it with `expected`.
fn assert_parse_error(bytes: &[u8], expected: ProtocolError) {
    assert_eq!(check(bytes, MAX), Ok(bytes.len()), "check of {bytes:02X?}");
    assert_eq!(
        parse(Bytes::copy_from_slice(bytes)),
        Err(expected),
        "parse of {bytes:02X?}"
    );
}

/// `check` refuses `bytes` as invalid (and `parse` agrees).
fn assert_invalid_frame(bytes: &[u8], expected: ProtocolError) {
    assert_eq!(
        check(bytes, MAX),
        Err(FrameError::Invalid(expected.clone())),
        "check of {bytes:02X?}"
    );
    assert_eq!(parse(Bytes::copy_from_slice(bytes)), Err(expected));
}

// ---------------------------------------------------------------------------------------------
// Round trips of every packet.

#[test]
fn connect_minimal_round_trips() {
    let bytes = cat(&[
        &[0x10, 13],
        &lp(b"MQTT"),
        &[0x04, 0x02, 0x00, 0x3C],
        &lp(b"a"),
    ]);
    assert_round_trip(
        &bytes,
        Packet::Connect(Connect {
            clean_session: true,
            keep_alive: 60,
            client_id: mqtt_str("a"),
            will: None,
            credentials: None,
        }),
    );
}

#[test]
fn connect_with_every_flag_round_trips() {
    // user name, password, will retain, will QoS 1, will, clean session: 0b1110_1110.
    let bytes = cat(&[
        &[0x10, 31],
        &lp(b"MQTT"),
        &[0x04, 0xEE, 0x00, 0x0A],
        &lp(b"c1"),
        &lp(b"w/t"),
        &lp(b"bye"),
        &lp(b"u"),
        &lp(&[0x00, 0xFF]),
    ]);
    assert_round_trip(
        &bytes,
        Packet::Connect(Connect {
            clean_session: true,
            keep_alive: 10,
            client_id: mqtt_str("c1"),
            will: Some(Will {
                topic: topic("w/t"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            credentials: Some(Credentials {
                username: mqtt_str("u"),
                password: Some(Password::new(Bytes::from_static(&[0x00, 0xFF]))),
            }),
        }),
    );
}

#[test]
fn connect_with_username_only_and_empty_client_id_round_trips() {
    let bytes = cat(&[
        &[0x10, 15],
        &lp(b"MQTT"),
        &[0x04, 0x82, 0x00, 0x00],
        &lp(b""),
        &lp(b"u"),
    ]);
    assert_round_trip(
        &bytes,
        Packet::Connect(Connect {
            clean_session: true,
            keep_alive: 0,
            client_id: mqtt_str(""),
            will: None,
            credentials: Some(Credentials {
                username: mqtt_str("u"),
                password: None,
            }),
        }),
    );
}

#[test]
fn connack_round_trips() {
    assert_round_trip(
        &[0x20, 0x02, 0x01, 0x00],
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
    );
    let refusals = [
        (1, ConnectReturnCode::UnacceptableProtocolVersion),
        (2, ConnectReturnCode::IdentifierRejected),
        (3, ConnectReturnCode::ServerUnavailable),
        (4, ConnectReturnCode::BadUsernameOrPassword),
        (5, ConnectReturnCode::NotAuthorized),
    ];
    for (byte, code) in refusals {
        assert_round_trip(
            &[0x20, 0x02, 0x00, byte],
            Packet::ConnAck(ConnAck {
                session_present: false,
                code,
            }),
        );
    }
}

#[test]
fn publish_round_trips_at_every_qos() {
    assert_round_trip(
        &cat(&[&[0x30, 7], &lp(b"a/b"), b"hi"]),
        Packet::Publish(Publish {
            topic: topic("a/b"),
            qos: PublishQos::AtMostOnce,
            retain: false,
            payload: Bytes::from_static(b"hi"),
        }),
    );
    // DUP, QoS 1, RETAIN.
    assert_round_trip(
        &cat(&[&[0x3B, 9], &lp(b"a/b"), &[0x00, 0x07], b"hi"]),
        Packet::Publish(Publish {
            topic: topic("a/b"),
            qos: PublishQos::AtLeastOnce {
                packet_id: id(7),
                dup: true,
            },
            retain: true,
            payload: Bytes::from_static(b"hi"),
        }),
    );
    // QoS 1 with an empty payload.
    assert_round_trip(
        &cat(&[&[0x32, 7], &lp(b"a/b"), &[0xFF, 0xFF]]),
        Packet::Publish(Publish {
            topic: topic("a/b"),
            qos: PublishQos::AtLeastOnce {
                packet_id: id(0xFFFF),
                dup: false,
            },
            retain: false,
            payload: Bytes::new(),
        }),
    );
}

#[test]
fn publish_at_qos_2_parses_and_is_flagged_as_exactly_once() {
    let bytes = cat(&[&[0x34, 8], &lp(b"a/b"), &[0x00, 0x01], b"x"]);
    let packet = Packet::Publish(Publish {
        topic: topic("a/b"),
        qos: PublishQos::ExactlyOnce {
            packet_id: id(1),
            dup: false,
        },
        retain: false,
        payload: Bytes::from_static(b"x"),
    });
    assert_round_trip(&bytes, packet.clone());
    let Packet::Publish(publish) = packet else {
        unreachable!()
    };
    assert_eq!(publish.qos.qos(), QoS::ExactlyOnce);
}

#[test]
fn publish_payload_is_a_slice_of_the_frame() {
    let frame = Bytes::from(cat(&[&[0x30, 7], &lp(b"a/b"), b"hi"]));
    let Ok(Packet::Publish(publish)) = parse(frame.clone()) else {
        panic!("not a publish")
    };
    let frame_range = frame.as_ptr_range();
    assert!(frame_range.contains(&publish.payload.as_ptr()));
    assert!(frame_range.contains(&publish.topic.as_str().as_ptr()));
}

#[test]
fn publish_round_trips_across_every_remaining_length_size() {
    // Remaining length = 2 + 1 (topic "t") + payload; the boundaries of 1, 2, 3 and 4 bytes.
    let cases: [(usize, &[u8]); 6] = [
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (remaining_length, length_bytes) in cases {
        let payload = Bytes::from(vec![0xA5; remaining_length - 3]);
        let bytes = cat(&[&[0x30], length_bytes, &lp(b"t"), &payload]);
        let packet = Packet::Publish(Publish {
            topic: topic("t"),
            qos: PublishQos::AtMostOnce,
            retain: false,
            payload,
        });
        assert_eq!(check(&bytes, usize::MAX), Ok(bytes.len()));
        assert_eq!(
            check(&bytes[..bytes.len() - 1], usize::MAX),
            Err(FrameError::Incomplete)
        );
        assert_eq!(parse(Bytes::from(bytes.clone())), Ok(packet.clone()));
        assert_eq!(encoded(&packet), bytes);
    }
}

#[test]
fn puback_and_unsuback_round_trip() {
    assert_round_trip(
        &[0x40, 0x02, 0x00, 0x07],
        Packet::PubAck(PubAck { packet_id: id(7) }),
    );
    assert_round_trip(
        &[0xB0, 0x02, 0x01, 0x00],
        Packet::UnsubAck(UnsubAck { packet_id: id(256) }),
    );
}

#[test]
fn subscribe_round_trips() {
    let bytes = cat(&[
        &[0x82, 48, 0x00, 0x0A],
        &lp(b"$iothub/twin/res/#"),
        &[0x01],
        &lp(b"$iothub/methods/POST/#"),
        &[0x00],
    ]);
    let subscribe = Subscribe::new(
        id(10),
        vec![
            SubscribeFilter {
                filter: filter("$iothub/twin/res/#"),
                qos: QoS::AtLeastOnce,
            },
            SubscribeFilter {
                filter: filter("$iothub/methods/POST/#"),
                qos: QoS::AtMostOnce,
            },
        ],
    )
    .unwrap();
    assert_round_trip(&bytes, Packet::Subscribe(subscribe));
}

#[test]
fn suback_round_trips() {
    let suback = SubAck::new(
        id(10),
        vec![
            SubAckCode::Granted(QoS::AtLeastOnce),
            SubAckCode::Failure,
            SubAckCode::Granted(QoS::AtMostOnce),
            SubAckCode::Granted(QoS::ExactlyOnce),
        ],
    )
    .unwrap();
    assert_round_trip(
        &[0x90, 0x06, 0x00, 0x0A, 0x01, 0x80, 0x00, 0x02],
        Packet::SubAck(suback),
    );
}

#[test]
fn unsubscribe_round_trips() {
    let bytes = cat(&[&[0xA2, 28, 0x00, 0x0B], &lp(b"$dps/registrations/res/#")]);
    let unsubscribe = Unsubscribe::new(id(11), vec![filter("$dps/registrations/res/#")]).unwrap();
    assert_round_trip(&bytes, Packet::Unsubscribe(unsubscribe));
}

#[test]
fn empty_packets_round_trip() {
    assert_round_trip(&[0xC0, 0x00], Packet::PingReq);
    assert_round_trip(&[0xD0, 0x00], Packet::PingResp);
    assert_round_trip(&[0xE0, 0x00], Packet::Disconnect);
}

// ---------------------------------------------------------------------------------------------
// The CONNECT packets the official SDKs send (azure-iot-mqtt.md section 1), byte for byte.
// The signatures are made up: the codec does not verify them.

#[test]
fn python_sdk_hub_connect_parses() {
    let username = "localhost/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29";
    let password = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c%3D&se=1798761600";
    let bytes = cat(&[
        &[0x10, 0xA6, 0x02], // CONNECT, remaining length 294
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'],
        &[0x04],       // level 4
        &[0xC0],       // user name, password; clean session 0; no will
        &[0x00, 0x3C], // keep-alive 60 s
        &[0x00, 0x04],
        b"dev1",
        &[0x00, 0x9E],
        username.as_bytes(),
        &[0x00, 0x74],
        password.as_bytes(),
    ]);
    assert_eq!(bytes.len(), 3 + 294);
    assert_round_trip(
        &bytes,
        Packet::Connect(Connect {
            clean_session: false,
            keep_alive: 60,
            client_id: mqtt_str("dev1"),
            will: None,
            credentials: Some(Credentials {
                username: mqtt_str(username),
                password: Some(Password::new(Bytes::from_static(password.as_bytes()))),
            }),
        }),
    );
}

#[test]
fn node_sdk_hub_connect_with_raw_model_id_parses() {
    let username = "localhost/dev-node/?api-version=2021-04-12&model-id=dtmi:com:example:Thermostat;1&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)";
    let password = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev-node&sig=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5%3D&se=1798761600";
    let bytes = cat(&[
        &[0x10, 0xBB, 0x02], // CONNECT, remaining length 315
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'],
        &[0x04],
        &[0xC0],       // clean session 0 (`config.clean || false`)
        &[0x00, 0xB4], // keep-alive 180 s
        &[0x00, 0x08],
        b"dev-node",
        &[0x00, 0xAA],
        username.as_bytes(),
        &[0x00, 0x79],
        password.as_bytes(),
    ]);
    assert_eq!(bytes.len(), 3 + 315);
    assert_round_trip(
        &bytes,
        Packet::Connect(Connect {
            clean_session: false,
            keep_alive: 180,
            client_id: mqtt_str("dev-node"),
            will: None,
            credentials: Some(Credentials {
                username: mqtt_str(username),
                password: Some(Password::new(Bytes::from_static(password.as_bytes()))),
            }),
        }),
    );
}

#[test]
fn node_sdk_dps_connect_with_unencoded_sr_parses() {
    let username = "0ne0000ABCD/registrations/reg-node-1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1";
    let password = "SharedAccessSignature sr=0ne0000ABCD/registrations/reg-node-1&sig=c2lnbmF0dXJlLW9mLXRoZS1yZWdpc3RyYXRpb24tMDA%3D&skn=registration&se=1798761600";
    let bytes = cat(&[
        &[0x10, 0x98, 0x02], // CONNECT, remaining length 280
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'],
        &[0x04],
        &[0xC2], // DPS: clean session 1
        &[0x00, 0xB4],
        &[0x00, 0x0A],
        b"reg-node-1",
        &[0x00, 0x6F],
        username.as_bytes(),
        &[0x00, 0x8F],
        password.as_bytes(),
    ]);
    assert_eq!(bytes.len(), 3 + 280);
    assert_round_trip(
        &bytes,
        Packet::Connect(Connect {
            clean_session: true,
            keep_alive: 180,
            client_id: mqtt_str("reg-node-1"),
            will: None,
            credentials: Some(Credentials {
                username: mqtt_str(username),
                password: Some(Password::new(Bytes::from_static(password.as_bytes()))),
            }),
        }),
    );
}

#[test]
fn password_is_redacted_in_debug_output() {
    let password = Password::new(Bytes::from_static(b"SharedAccessSignature sr=x&sig=secret"));
    let shown = format!("{password:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("37 bytes"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// check: framing, sizes, the fixed header.

#[test]
fn empty_buffer_is_incomplete() {
    assert_eq!(check(&[], MAX), Err(FrameError::Incomplete));
}

#[test]
fn remaining_length_of_five_bytes_is_invalid() {
    assert_invalid_frame(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ProtocolError::MalformedRemainingLength,
    );
    // Known invalid as soon as the fourth length byte asks for a fifth.
    assert_eq!(
        check(&[0x30, 0x80, 0x80, 0x80, 0x80], MAX),
        Err(FrameError::Invalid(ProtocolError::MalformedRemainingLength))
    );
    // Three continuation bytes: a fourth may still end the field.
    assert_eq!(
        check(&[0x30, 0xFF, 0xFF, 0xFF], MAX),
        Err(FrameError::Incomplete)
    );
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    // MQTT 3.1.1, unlike 5, does not require the shortest encoding.
    assert_eq!(check(&[0xC0, 0x80, 0x00], MAX), Ok(3));
    assert_eq!(
        parse(Bytes::from_static(&[0xC0, 0x80, 0x00])),
        Ok(Packet::PingReq)
    );
}

#[test]
fn oversize_declared_length_is_too_large_before_the_body_arrives() {
    // The largest length MQTT can declare, with no body buffered at all.
    assert_eq!(
        check(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], MAX),
        Err(FrameError::TooLarge {
            declared: 5 + 268_435_455,
            max: MAX
        })
    );
    // One byte over the limit: 1 + 3 + 262_141 = MAX + 1.
    let remaining_length = MAX + 1 - 4;
    let length_bytes = [
        (remaining_length & 0x7F) as u8 | 0x80,
        ((remaining_length >> 7) & 0x7F) as u8 | 0x80,
        (remaining_length >> 14) as u8,
    ];
    let header = cat(&[&[0x30], &length_bytes]);
    assert_eq!(
        check(&header, MAX),
        Err(FrameError::TooLarge {
            declared: MAX + 1,
            max: MAX
        })
    );
    // Exactly at the limit: a frame (once buffered).
    let mut at_limit = cat(&[&[0x30], &length_bytes]);
    at_limit[1] -= 1;
    assert_eq!(check(&at_limit, MAX), Err(FrameError::Incomplete));
    at_limit.extend(lp(b"t"));
    at_limit.resize(MAX, 0);
    assert_eq!(check(&at_limit, MAX), Ok(MAX));
    assert!(parse(Bytes::from(at_limit)).is_ok());
}

#[test]
fn max_packet_size_counts_the_fixed_header() {
    assert_eq!(check(&[0xC0, 0x00], 2), Ok(2));
    assert_eq!(
        check(&[0xC0, 0x00], 1),
        Err(FrameError::TooLarge {
            declared: 2,
            max: 1
        })
    );
}

#[test]
fn check_measures_only_the_first_of_several_frames() {
    let bytes = [0xC0, 0x00, 0x40, 0x02, 0x00];
    assert_eq!(check(&bytes, MAX), Ok(2));
    assert_eq!(check(&bytes[2..], MAX), Err(FrameError::Incomplete));
}

#[test]
fn unknown_packet_types_are_invalid() {
    for first in [0x00, 0x0F, 0xF0, 0xFF] {
        assert_invalid_frame(&[first, 0x00], ProtocolError::UnknownPacketType(first >> 4));
    }
}

#[test]
fn qos_2_flow_packets_are_unsupported() {
    for first in [0x50, 0x62, 0x70] {
        assert_invalid_frame(
            &[first, 0x02, 0x00, 0x01],
            ProtocolError::UnsupportedPacketType(first >> 4),
        );
    }
}

#[test]
fn reserved_fixed_header_flags_are_invalid() {
    let cases: [(u8, u8); 12] = [
        (0x11, 1),
        (0x28, 2),
        (0x41, 4),
        (0x80, 8), // SUBSCRIBE must be 0b0010
        (0x83, 8),
        (0x92, 9),
        (0xA0, 10), // UNSUBSCRIBE must be 0b0010
        (0xAA, 10),
        (0xB1, 11),
        (0xC1, 12),
        (0xD4, 13),
        (0xE8, 14),
    ];
    for (first, packet_type) in cases {
        assert_invalid_frame(
            &[first, 0x00],
            ProtocolError::InvalidFlags {
                packet_type,
                flags: first & 0x0F,
            },
        );
    }
}

#[test]
fn publish_with_qos_3_or_dup_at_qos_0_is_invalid() {
    let body = cat(&[&[0x05], &lp(b"a/b")]);
    assert_invalid_frame(&cat(&[&[0x36], &body]), ProtocolError::InvalidQos(3));
    assert_invalid_frame(&cat(&[&[0x37], &body]), ProtocolError::InvalidQos(3));
    assert_invalid_frame(
        &cat(&[&[0x38], &body]),
        ProtocolError::InvalidFlags {
            packet_type: 3,
            flags: 0b1000,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// parse: frame boundaries and fields.

#[test]
fn parse_refuses_anything_but_exactly_one_frame() {
    assert_eq!(parse(Bytes::new()), Err(ProtocolError::Truncated));
    assert_eq!(
        parse(Bytes::from_static(&[0x30, 0x80])),
        Err(ProtocolError::Truncated)
    );
    assert_eq!(
        parse(Bytes::from_static(&[0xC0, 0x00, 0xC0, 0x00])),
        Err(ProtocolError::LengthMismatch {
            declared: 0,
            actual: 2
        })
    );
    assert_eq!(
        parse(Bytes::from_static(&[0x40, 0x02, 0x00])),
        Err(ProtocolError::LengthMismatch {
            declared: 2,
            actual: 1
        })
    );
}

#[test]
fn fixed_size_packets_with_a_wrong_length_are_refused() {
    assert_parse_error(&[0xC0, 0x01, 0x00], ProtocolError::TrailingBytes(1));
    assert_parse_error(&[0xE0, 0x02, 0x00, 0x00], ProtocolError::TrailingBytes(2));
    assert_parse_error(&[0x40, 0x01, 0x07], ProtocolError::Truncated);
    assert_parse_error(
        &[0x40, 0x03, 0x00, 0x07, 0x00],
        ProtocolError::TrailingBytes(1),
    );
    assert_parse_error(
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        ProtocolError::TrailingBytes(1),
    );
    assert_parse_error(&[0xB0, 0x00], ProtocolError::Truncated);
}

#[test]
fn zero_packet_ids_are_refused() {
    assert_parse_error(&[0x40, 0x02, 0x00, 0x00], ProtocolError::ZeroPacketId);
    assert_parse_error(&[0xB0, 0x02, 0x00, 0x00], ProtocolError::ZeroPacketId);
    assert_parse_error(
        &cat(&[&[0x32, 7], &lp(b"a/b"), &[0x00, 0x00]]),
        ProtocolError::ZeroPacketId,
    );
    assert_parse_error(
        &cat(&[&[0x34, 7], &lp(b"a/b"), &[0x00, 0x00]]),
        ProtocolError::ZeroPacketId,
    );
    assert_parse_error(
        &cat(&[&[0x82, 6, 0x00, 0x00], &lp(b"a"), &[0x01]]),
        ProtocolError::ZeroPacketId,
    );
    assert_parse_error(&[0x90, 0x03, 0x00, 0x00, 0x01], ProtocolError::ZeroPacketId);
    assert_parse_error(
        &cat(&[&[0xA2, 5, 0x00, 0x00], &lp(b"a")]),
        ProtocolError::ZeroPacketId,
    );
}

#[test]
fn publish_topic_names_are_validated() {
    let cases: [(&[u8], ProtocolError); 8] = [
        (b"a/+", ProtocolError::WildcardInTopicName),
        (b"a/#", ProtocolError::WildcardInTopicName),
        (
            b"devices/d+1/messages/events/",
            ProtocolError::WildcardInTopicName,
        ),
        (b"", ProtocolError::EmptyTopic),
        (&[0x61, 0x00, 0x62], ProtocolError::NulInString),
        (&[0xC3, 0x28], ProtocolError::InvalidUtf8), // bad continuation byte
        (&[0xC0, 0xAF], ProtocolError::InvalidUtf8), // overlong "/"
        (&[0xED, 0xA0, 0x80], ProtocolError::InvalidUtf8), // UTF-16 surrogate
    ];
    for (topic_bytes, expected) in cases {
        let remaining_length = 2 + topic_bytes.len() as u8;
        let bytes = cat(&[&[0x30, remaining_length], &lp(topic_bytes)]);
        assert_parse_error(&bytes, expected);
    }
}

#[test]
fn publish_truncated_inside_its_fields_is_refused() {
    // The topic's length prefix runs past the end.
    assert_parse_error(&[0x30, 0x03, 0x00, 0x05, b'a'], ProtocolError::Truncated);
    // QoS 1 without a packet id.
    assert_parse_error(&cat(&[&[0x32, 5], &lp(b"a/b")]), ProtocolError::Truncated);
    assert_parse_error(
        &cat(&[&[0x32, 6], &lp(b"a/b"), &[0x01]]),
        ProtocolError::Truncated,
    );
}

#[test]
fn connect_with_another_protocol_level_is_refused_with_connack_1() {
    // MQTT 5, whose CONNECT carries properties the codec never reads.
    let mqtt5 = cat(&[
        &[0x10, 13],
        &lp(b"MQTT"),
        &[0x05, 0x02, 0x00, 0x3C, 0x00],
        &lp(b""),
    ]);
    assert_parse_error(&mqtt5, ProtocolError::UnsupportedProtocolLevel(5));
    // MQTT 3.1.
    let mqtt31 = cat(&[
        &[0x10, 15],
        &lp(b"MQIsdp"),
        &[0x03, 0x02, 0x00, 0x3C],
        &lp(b"a"),
    ]);
    assert_parse_error(&mqtt31, ProtocolError::UnsupportedProtocolLevel(3));
    // Level 4 under the 3.1 name is still not 3.1.1.
    let mixed = cat(&[
        &[0x10, 15],
        &lp(b"MQIsdp"),
        &[0x04, 0x02, 0x00, 0x3C],
        &lp(b"a"),
    ]);
    assert_parse_error(&mixed, ProtocolError::UnsupportedProtocolLevel(4));
    assert_eq!(
        ProtocolError::UnsupportedProtocolLevel(5).connack_code(),
        Some(ConnectReturnCode::UnacceptableProtocolVersion)
    );
}

#[test]
fn connect_with_an_unknown_protocol_name_is_closed_without_connack() {
    let bytes = cat(&[
        &[0x10, 13],
        &lp(b"MQTX"),
        &[0x04, 0x02, 0x00, 0x3C],
        &lp(b"a"),
    ]);
    assert_parse_error(&bytes, ProtocolError::InvalidProtocolName);
    assert_eq!(ProtocolError::InvalidProtocolName.connack_code(), None);
}

#[test]
fn connect_with_invalid_flags_is_refused() {
    let cases: [(u8, ProtocolError); 6] = [
        (0x03, ProtocolError::InvalidConnectFlags(0x03)), // reserved bit
        (0x0A, ProtocolError::InvalidConnectFlags(0x0A)), // will QoS without will
        (0x12, ProtocolError::InvalidConnectFlags(0x12)), // will QoS 2 without will
        (0x22, ProtocolError::InvalidConnectFlags(0x22)), // will retain without will
        (0x42, ProtocolError::InvalidConnectFlags(0x42)), // password without user name
        (0x1E, ProtocolError::InvalidQos(3)),             // will QoS 3
    ];
    for (flags, expected) in cases {
        let bytes = cat(&[
            &[0x10, 13],
            &lp(b"MQTT"),
            &[0x04, flags, 0x00, 0x3C],
            &lp(b"a"),
        ]);
        assert_parse_error(&bytes, expected);
    }
}

#[test]
fn connect_with_empty_client_id_and_persistent_session_is_refused_with_connack_2() {
    let bytes = cat(&[
        &[0x10, 12],
        &lp(b"MQTT"),
        &[0x04, 0x00, 0x00, 0x3C],
        &lp(b""),
    ]);
    assert_parse_error(&bytes, ProtocolError::EmptyClientId);
    assert_eq!(
        ProtocolError::EmptyClientId.connack_code(),
        Some(ConnectReturnCode::IdentifierRejected)
    );
}

#[test]
fn connect_strings_are_validated() {
    // Bad UTF-8 in the client id.
    let bytes = cat(&[
        &[0x10, 14],
        &lp(b"MQTT"),
        &[0x04, 0x02, 0x00, 0x3C],
        &lp(&[0xFF, 0xFE]),
    ]);
    assert_parse_error(&bytes, ProtocolError::InvalidUtf8);
    // NUL in the user name.
    let bytes = cat(&[
        &[0x10, 17],
        &lp(b"MQTT"),
        &[0x04, 0x82, 0x00, 0x3C],
        &lp(b"a"),
        &lp(&[b'u', 0x00]),
    ]);
    assert_parse_error(&bytes, ProtocolError::NulInString);
    // A wildcard in the will topic.
    let bytes = cat(&[
        &[0x10, 20],
        &lp(b"MQTT"),
        &[0x04, 0x06, 0x00, 0x3C],
        &lp(b"a"),
        &lp(b"w/#"),
        &lp(b""),
    ]);
    assert_parse_error(&bytes, ProtocolError::WildcardInTopicName);
}

#[test]
fn connect_truncated_or_padded_is_refused() {
    // User name flag set, user name missing.
    let bytes = cat(&[
        &[0x10, 13],
        &lp(b"MQTT"),
        &[0x04, 0x82, 0x00, 0x3C],
        &lp(b"a"),
    ]);
    assert_parse_error(&bytes, ProtocolError::Truncated);
    // Keep-alive cut in half.
    let bytes = cat(&[&[0x10, 9], &lp(b"MQTT"), &[0x04, 0x02, 0x00]]);
    assert_parse_error(&bytes, ProtocolError::Truncated);
    // A byte after the last field.
    let bytes = cat(&[
        &[0x10, 14],
        &lp(b"MQTT"),
        &[0x04, 0x02, 0x00, 0x3C],
        &lp(b"a"),
        &[0x00],
    ]);
    assert_parse_error(&bytes, ProtocolError::TrailingBytes(1));
}

#[test]
fn connack_with_invalid_fields_is_refused() {
    assert_parse_error(
        &[0x20, 0x02, 0x02, 0x00],
        ProtocolError::InvalidConnAckFlags(0x02),
    );
    assert_parse_error(
        &[0x20, 0x02, 0x01, 0x05],
        ProtocolError::InvalidConnAckFlags(0x01),
    );
    assert_parse_error(
        &[0x20, 0x02, 0x00, 0x06],
        ProtocolError::InvalidReturnCode(6),
    );
}

#[test]
fn subscribe_with_invalid_payload_is_refused() {
    // No filter at all.
    assert_parse_error(&[0x82, 0x02, 0x00, 0x01], ProtocolError::EmptyList);
    // Requested QoS 3, and reserved bits in the options byte.
    for (options, expected) in [
        (0x03, ProtocolError::InvalidQos(3)),
        (0x05, ProtocolError::InvalidQos(5)),
    ] {
        let bytes = cat(&[&[0x82, 6, 0x00, 0x01], &lp(b"a"), &[options]]);
        assert_parse_error(&bytes, expected);
    }
    // A filter without its options byte.
    assert_parse_error(
        &cat(&[&[0x82, 5, 0x00, 0x01], &lp(b"a")]),
        ProtocolError::Truncated,
    );
    // Malformed filters.
    let cases: [(&[u8], ProtocolError); 6] = [
        (b"a/#/b", ProtocolError::InvalidTopicFilter),
        (b"a#", ProtocolError::InvalidTopicFilter),
        (b"a/b#", ProtocolError::InvalidTopicFilter),
        (b"a+/b", ProtocolError::InvalidTopicFilter),
        (b"", ProtocolError::EmptyTopic),
        (&[0xC3, 0x28], ProtocolError::InvalidUtf8),
    ];
    for (filter_bytes, expected) in cases {
        let remaining_length = 2 + 2 + filter_bytes.len() as u8 + 1;
        let bytes = cat(&[
            &[0x82, remaining_length, 0x00, 0x01],
            &lp(filter_bytes),
            &[0x01],
        ]);
        assert_parse_error(&bytes, expected);
    }
}

#[test]
fn topic_filters_follow_the_wildcard_rules() {
    for valid in [
        "#",
        "+",
        "+/+/#",
        "/",
        "a//b",
        "$iothub/twin/res/#",
        "sport/+/player1",
        "/+",
    ] {
        assert!(TopicFilter::try_from(valid).is_ok(), "{valid}");
    }
    for invalid in ["#/", "a/#/", "++", "a/+b", "sport+", "#a"] {
        assert_eq!(
            TopicFilter::try_from(invalid),
            Err(ProtocolError::InvalidTopicFilter),
            "{invalid}"
        );
    }
}

#[test]
fn suback_with_invalid_payload_is_refused() {
    assert_parse_error(&[0x90, 0x02, 0x00, 0x01], ProtocolError::EmptyList);
    assert_parse_error(
        &[0x90, 0x03, 0x00, 0x01, 0x03],
        ProtocolError::InvalidReturnCode(3),
    );
    assert_parse_error(
        &[0x90, 0x03, 0x00, 0x01, 0x81],
        ProtocolError::InvalidReturnCode(0x81),
    );
}

#[test]
fn unsubscribe_with_invalid_payload_is_refused() {
    assert_parse_error(&[0xA2, 0x02, 0x00, 0x01], ProtocolError::EmptyList);
    assert_parse_error(
        &cat(&[&[0xA2, 8, 0x00, 0x01], &lp(b"a/#/")]),
        ProtocolError::InvalidTopicFilter,
    );
    assert_parse_error(&[0xA2, 0x03, 0x00, 0x01, 0x00], ProtocolError::Truncated);
}

// ---------------------------------------------------------------------------------------------
// Constructors and encode refuse what MQTT cannot express.

#[test]
fn list_packets_cannot_be_built_empty() {
    assert_eq!(Subscribe::new(id(1), vec![]), Err(ProtocolError::EmptyList));
    assert_eq!(SubAck::new(id(1), vec![]), Err(ProtocolError::EmptyList));
    assert_eq!(
        Unsubscribe::new(id(1), vec![]),
        Err(ProtocolError::EmptyList)
    );
    assert_eq!(PacketId::new(0), None);
}

#[test]
fn strings_over_65535_bytes_cannot_be_built() {
    assert_eq!(
        MqttStr::try_from("a".repeat(65_536)),
        Err(ProtocolError::FieldTooLong(65_536))
    );
    assert!(MqttStr::try_from("a".repeat(65_535)).is_ok());
}

#[test]
fn encode_refuses_oversized_binary_fields_and_writes_nothing() {
    let connect = Packet::Connect(Connect {
        clean_session: true,
        keep_alive: 60,
        client_id: mqtt_str("a"),
        will: None,
        credentials: Some(Credentials {
            username: mqtt_str("u"),
            password: Some(Password::new(Bytes::from(vec![b'p'; 65_536]))),
        }),
    });
    let mut dst = BytesMut::new();
    assert_eq!(
        encode(&connect, &mut dst),
        Err(EncodeError::FieldTooLong(65_536))
    );
    assert!(dst.is_empty());
}

#[test]
fn encode_refuses_payloads_over_the_mqtt_maximum() {
    let publish = Packet::Publish(Publish {
        topic: topic("t"),
        qos: PublishQos::AtMostOnce,
        retain: false,
        payload: Bytes::from(vec![0; 268_435_455 - 2]),
    });
    let mut dst = BytesMut::new();
    assert_eq!(
        encode(&publish, &mut dst),
        Err(EncodeError::TooLarge(268_435_456))
    );
    assert!(dst.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Random input: check and parse never panic, and whatever parses re-encodes to the same packet.

/// Marsaglia's xorshift64: enough randomness to walk the decoder, reproducible from the seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Returns whether `input` started with a packet that parsed, so the loops can show they reach
/// the field parsers and not only the fixed header.
fn assert_never_panics(input: &[u8]) -> bool {
    let _ = check(input, 4096);
    let _ = parse(Bytes::copy_from_slice(input));
    let Ok(frame_length) = check(input, usize::MAX) else {
        return false;
    };
    let Ok(packet) = parse(Bytes::copy_from_slice(&input[..frame_length])) else {
        return false;
    };
    let reencoded = encoded(&packet);
    assert_eq!(
        parse(Bytes::from(reencoded)),
        Ok(packet),
        "input {input:02X?}"
    );
    true
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut n_parsed = 0;
    for _ in 0..100_000 {
        let len = rng.below(48);
        let input = rng.bytes(len);
        n_parsed += usize::from(assert_never_panics(&input));
    }
    // Random bytes seldom form a packet (1 in 100,000 with this seed); the next two loops are
    // the ones that reach the field parsers.
    assert!(n_parsed > 0, "no input parsed");
}

#[test]
fn random_bodies_behind_valid_headers_never_panic() {
    // Random bytes rarely get past the first byte; a valid first byte and a consistent length
    // send them into every packet's field parser.
    let first_bytes = [
        0x10, 0x20, 0x30, 0x32, 0x34, 0x3B, 0x40, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0,
    ];
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut n_parsed = 0;
    for _ in 0..200_000 {
        let first = first_bytes[rng.below(first_bytes.len())];
        let body_len = rng.below(40);
        let mut body = rng.bytes(body_len);
        // Plausible length prefixes make strings decode often.
        if body_len >= 2 && rng.below(2) == 0 {
            body[0] = 0;
            body[1] = rng.below(body_len) as u8;
        }
        let input = cat(&[&[first, body_len as u8], &body]);
        n_parsed += usize::from(assert_never_panics(&input));
    }
    assert!(n_parsed > 1_000, "only {n_parsed} inputs parsed");
}

#[test]
fn mutated_valid_packets_never_panic() {
    let seeds: Vec<Vec<u8>> = vec![
        cat(&[
            &[0x10, 31],
            &lp(b"MQTT"),
            &[0x04, 0xEE, 0x00, 0x0A],
            &lp(b"c1"),
            &lp(b"w/t"),
            &lp(b"bye"),
            &lp(b"u"),
            &lp(&[0x00, 0xFF]),
        ]),
        cat(&[&[0x3B, 9], &lp(b"a/b"), &[0x00, 0x07], b"hi"]),
        cat(&[
            &[0x82, 48, 0x00, 0x0A],
            &lp(b"$iothub/twin/res/#"),
            &[0x01],
            &lp(b"$iothub/methods/POST/#"),
            &[0x00],
        ]),
        vec![0x90, 0x06, 0x00, 0x0A, 0x01, 0x80, 0x00, 0x02],
        cat(&[&[0xA2, 28, 0x00, 0x0B], &lp(b"$dps/registrations/res/#")]),
        vec![0x20, 0x02, 0x01, 0x00],
    ];
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut n_parsed = 0;
    for _ in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(3) {
                0 => {
                    let idx = rng.below(input.len());
                    input[idx] = rng.next() as u8;
                }
                1 => {
                    let idx = rng.below(input.len());
                    input[idx] ^= 1 << rng.below(8);
                }
                _ => input.truncate(rng.below(input.len() + 1).max(1)),
            }
        }
        n_parsed += usize::from(assert_never_panics(&input));
    }
    assert!(n_parsed > 1_000, "only {n_parsed} inputs parsed");
}
