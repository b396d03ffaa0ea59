//! The numbers of the device protocol, each with where it comes from, so the bridge and the load
//! generator share one source. Owns constants and the keep-alive arithmetic only; enforcing
//! them (the codec, the session timers) is the bridge's job.

/// IoT Hub's device-to-cloud message limit, 256 KB: the Python SDK refuses larger bodies on the
/// client side (`constant.TELEMETRY_MESSAGE_SIZE_LIMIT = 262144`).
pub const MAX_MESSAGE_BYTES: usize = 262_144;

/// The longest topic name MQTT 3.1.1 can encode (a two-byte length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// The largest PUBLISH packet the bridge needs to read, fixed header included: a body of
/// [`MAX_MESSAGE_BYTES`] under the longest topic (the property bag travels in the topic), its
/// two length bytes, a packet id, and a fixed header of at most 5 bytes. Gyre's choice: the
/// reference limits the body, and an MQTT topic cannot be longer anyway.
pub const MAX_PACKET_BYTES: usize = MAX_MESSAGE_BYTES + MAX_TOPIC_BYTES + 2 + 2 + 5;

/// The MQTT protocol level both SDKs send: 3.1.1. Neither uses MQTT 5.
pub const MQTT_PROTOCOL_LEVEL: u8 = 4;

/// The port both SDKs dial for MQTT over TLS; Python cannot use another.
pub const MQTT_TLS_PORT: u16 = 8883;

/// Websocket transport: port, path and subprotocol both SDKs use.
pub const WEBSOCKET_PORT: u16 = 443;
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";
pub const WEBSOCKET_SUBPROTOCOL: &str = "mqtt";

/// Keep-alive the Python SDK sends by default, and the most it accepts.
pub const PYTHON_KEEP_ALIVE_SECS: u16 = 60;
pub const PYTHON_MAX_KEEP_ALIVE_SECS: u16 = 1740;
/// Keep-alive the Node SDK sends by default.
pub const NODE_KEEP_ALIVE_SECS: u16 = 180;

/// A silent client is dropped after 1.5 times its keep-alive (MQTT 3.1.1 §3.1.2.10).
/// `None` for a keep-alive of 0, which switches the mechanism off.
pub fn keep_alive_timeout_millis(keep_alive_secs: u16) -> Option<u64> {
    (keep_alive_secs > 0).then(|| u64::from(keep_alive_secs) * 1500)
}

/// How long both SDKs make a SAS token live by default.
pub const DEFAULT_SAS_TTL_SECS: u64 = 3600;
/// Python renews its token this long before expiry (by reconnecting).
pub const PYTHON_SAS_RENEW_MARGIN_SECS: u64 = 120;
/// Node renews its token this long after issuing it (3600 − 900), also by reconnecting.
pub const NODE_SAS_RENEW_AFTER_SECS: u64 = 2700;

/// Both SDKs give up on a DPS request after this long.
pub const DPS_REQUEST_TIMEOUT_SECS: u64 = 30;
/// The polling interval both SDKs use without `retry-after` (Python's first poll after a 202
/// always waits this long).
pub const DPS_DEFAULT_POLLING_SECS: u64 = 2;
/// DPS statuses at or above this mean "retry after `retry-after`"; 300..429 are errors.
pub const DPS_RETRY_STATUS_MIN: u16 = 429;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_enforced_at_one_and_a_half_times() {
        let check = |keep_alive: u16, expected: Option<u64>| {
            assert_eq!(
                keep_alive_timeout_millis(keep_alive),
                expected,
                "{keep_alive}"
            );
        };
        check(0, None);
        check(1, Some(1_500));
        check(PYTHON_KEEP_ALIVE_SECS, Some(90_000));
        check(NODE_KEEP_ALIVE_SECS, Some(270_000));
        check(PYTHON_MAX_KEEP_ALIVE_SECS, Some(2_610_000));
        check(u16::MAX, Some(98_302_500));
    }

    #[test]
    fn the_packet_limit_covers_a_full_message_under_the_longest_topic() {
        assert_eq!(MAX_MESSAGE_BYTES, 256 * 1024);
        assert_eq!(MAX_PACKET_BYTES, 327_688);
    }
}
