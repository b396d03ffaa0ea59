//! The device-facing MQTT dialect of IoT Hub and DPS, as the official Azure IoT device SDKs
//! speak it (see `shared/reference/azure-iot-mqtt.md`): who a CONNECT says it is, its SAS token,
//! the topics devices publish and subscribe to, and the topics the cloud publishes.
//!
//! Code map:
//! - `identity.rs`: [`Endpoint`], the typed CONNECT identity from the client id and the username
//!   (`{host}/{clientId}/?{query}` for the hub, `{idScope}/registrations/{regId}/{query}` for
//!   DPS), with [`HostName`] and [`ModuleId`].
//! - `sas.rs`: [`SasToken`], the CONNECT password: parsing every form the SDKs send, verifying
//!   it against symmetric keys at a given time, checking it targets the connecting identity, and
//!   [`generate_token`] for tests and the load generator.
//! - `properties.rs`: [`MessageProperties`], the percent-encoded property bag at the end of
//!   telemetry and C2D topics, split into [`SystemProperties`] and application properties.
//! - `topic.rs`: [`DeviceTopic`] (what a device publishes), [`CloudTopic`] (what the cloud
//!   publishes), [`SubscriptionFilter`] (what the SDKs subscribe to), and the rules that a
//!   device acts only as itself ([`authorize_publish`], [`authorize_subscription`]).
//! - `limits.rs`: the protocol's numbers (message size, keep-alive, token lifetime, DPS timing).
//!
//! **Architecture Invariant:** pure. No IO, no clock, no tokio, no MQTT packet codec: the bridge
//! owns bytes and sockets and hands this module strings, keys and the current time. This module
//! does not own which keys a device has (registry), session state, or what a message body means.

mod identity;
mod limits;
mod properties;
mod sas;
mod topic;

#[cfg(test)]
mod sas_tests;
#[cfg(test)]
mod topic_tests;

pub use identity::{Endpoint, EndpointKind, HostName, IdentityError, ModuleId, MAX_HOST_NAME_LEN};
pub use limits::*;
pub use properties::{MessageProperties, PropertyError, SystemProperties};
pub use sas::{generate_token, SasError, SasToken, SrForm, MAX_TOKEN_LEN};
pub use topic::{
    authorize_publish, authorize_subscription, parse_publish_topic, AccessError, CloudTopic,
    DeviceTopic, MethodName, OperationId, RequestId, SubscriptionFilter, TopicError,
    MAX_OPAQUE_ID_LEN,
};

/// Splits a query (`k=v&k=v`) into percent-decoded pairs: split on `&`, then on the first `=`,
/// then decode each part. Empty segments (`a=1&&b=2`, a trailing `&`) are skipped; a segment
/// without `=` is a key with an empty value. `Err(raw segment)` on malformed percent-encoding.
/// `+` stays `+`: neither SDK uses form encoding (Python `quote`, Node `encodeURIComponent`).
fn decode_query(query: &str) -> Result<Vec<(String, String)>, &str> {
    let mut pairs = Vec::new();
    for segment in query.split('&').filter(|segment| !segment.is_empty()) {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        let key = crate::percent::decode(key).ok_or(segment)?;
        let value = crate::percent::decode(value).ok_or(segment)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}
