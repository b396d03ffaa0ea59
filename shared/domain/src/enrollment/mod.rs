//! Device provisioning's side of the registry: the application's DPS ID scope, symmetric keys,
//! the derived-key rule of symmetric-key enrollment groups, and enrollment groups themselves.
//!
//! Code map:
//! - `keys.rs`: [`SymmetricKey`] (base64 of 16..=64 bytes), [`SymmetricKeys`] (primary and
//!   secondary), and [`derive_device_key`], `base64(HMAC-SHA256(base64decode(groupKey),
//!   registrationId))`, the rule the provisioning service and devices share.
//! - `id_scope.rs`: [`IdScope`], IoT Central's `0ne` + 8 hex digits.
//! - `group.rs`: [`EnrollmentGroup`] (type `iot`, symmetric keys, `enabled`, Gyre's
//!   `autoApprove`), its id, and the JSON wire shape [`EnrollmentGroupBody`].
//!
//! This module owns no storage (`store::enrollment_groups`, `store::settings`), no HTTP and no
//! randomness: fresh keys and scopes are built from bytes the caller drew. It does not implement
//! X.509 or TPM attestation, IoT Edge groups, or the DPS protocol itself.

mod group;
mod id_scope;
mod keys;

pub use group::{
    attested_keys, EnrollmentGroup, EnrollmentGroupBody, EnrollmentGroupId, GroupAttestationBody,
    InvalidAttestation, InvalidEnrollmentGroup, InvalidEnrollmentGroupId, SymmetricKeyBody,
    GROUP_TYPE_IOT, MAX_GROUP_DISPLAY_NAME,
};
pub use id_scope::{IdScope, InvalidIdScope};
pub use keys::{
    derive_device_key, InvalidKey, SymmetricKey, SymmetricKeys, MAX_KEY_BYTES, MIN_KEY_BYTES,
};
