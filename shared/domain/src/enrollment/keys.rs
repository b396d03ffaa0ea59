//! Symmetric keys as DPS and IoT Hub use them, and the derived-key rule of symmetric-key
//! enrollment groups.
//!
//! A key travels as standard base64 (with padding) of 16 to 64 bytes, the range IoT Hub and DPS
//! accept. Gyre generates 32 random bytes, as IoT Central does. This file owns no storage and no
//! randomness: a fresh key is built from bytes the caller drew.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest and longest decoded key IoT Hub and DPS accept, in bytes.
pub const MIN_KEY_BYTES: usize = 16;
pub const MAX_KEY_BYTES: usize = 64;

/// A symmetric key. Invariant: canonical standard base64 of 16..=64 bytes; enforced only by
/// [`SymmetricKey::parse`] and the constructors. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKey(String);

/// Why a string is not a usable symmetric key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("a key must be standard base64 (with padding)")]
    NotBase64,
    #[error("a key must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, found {len}")]
    BadLength { len: usize },
}

impl SymmetricKey {
    pub fn parse(raw: &str) -> Result<SymmetricKey, InvalidKey> {
        let bytes = BASE64.decode(raw).map_err(|_| InvalidKey::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(InvalidKey::BadLength { len: bytes.len() });
        }
        // Re-encoding rejects non-canonical spellings (stray trailing bits), so one key has one
        // text and comparing texts compares keys.
        if BASE64.encode(&bytes) != raw {
            return Err(InvalidKey::NotBase64);
        }
        Ok(SymmetricKey(raw.to_owned()))
    }

    /// A fresh key from 32 random bytes the caller drew.
    pub fn from_random(bytes: [u8; 32]) -> SymmetricKey {
        SymmetricKey(BASE64.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn decoded(&self) -> Vec<u8> {
        // The invariant guarantees valid base64.
        BASE64.decode(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// A primary and a secondary key, so one can be rotated while devices use the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymmetricKeys {
    pub primary: SymmetricKey,
    pub secondary: SymmetricKey,
}

impl SymmetricKeys {
    /// Two fresh keys from 64 random bytes (the first 32 make the primary).
    pub fn from_random(bytes: [u8; 64]) -> SymmetricKeys {
        let mut primary = [0u8; 32];
        let mut secondary = [0u8; 32];
        primary.copy_from_slice(&bytes[..32]);
        secondary.copy_from_slice(&bytes[32..]);
        SymmetricKeys {
            primary: SymmetricKey::from_random(primary),
            secondary: SymmetricKey::from_random(secondary),
        }
    }

    /// Both keys derived for one device from a group's keys ([`derive_device_key`]).
    pub fn derive_for_device(&self, registration_id: &str) -> SymmetricKeys {
        SymmetricKeys {
            primary: derive_device_key(&self.primary, registration_id),
            secondary: derive_device_key(&self.secondary, registration_id),
        }
    }
}

/// The device key of a symmetric-key enrollment group member:
/// `base64(HMAC-SHA256(key = base64decode(group_key), message = UTF-8(registration_id)))`,
/// what `az iot central device compute-device-key` computes. The registration id is the device
/// id in IoT Central.
pub fn derive_device_key(group_key: &SymmetricKey, registration_id: &str) -> SymmetricKey {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(&group_key.decoded())
        .expect("HMAC-SHA256 takes keys of any length");
    mac.update(registration_id.as_bytes());
    SymmetricKey(BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_match_known_vectors() {
        // Computed independently with Python:
        // base64.b64encode(hmac.new(base64.b64decode(key), b"<id>", hashlib.sha256).digest())
        let check = |group_key: &str, registration_id: &str, expected: &str| {
            let group_key = SymmetricKey::parse(group_key).unwrap();
            assert_eq!(
                derive_device_key(&group_key, registration_id).as_str(),
                expected,
                "{registration_id}"
            );
        };
        check(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "thermostat-01",
            "n/Qau1qT3SrBejeQKhJu8vpKQ6Z3GZDPOxDaE80npBI=",
        );
        check(
            "dGhpcyBpcyBhIGdyb3VwIGtleSBmb3IgdGVzdGluZyE=",
            "sensor-1",
            "3Ru40DtS9vgpveufuxUy7FoSgO+HzEAA4lK3JfViJ9g=",
        );
    }

    #[test]
    fn keys_are_16_to_64_bytes_of_canonical_base64() {
        let check = |raw: &str, expected: Result<(), InvalidKey>| {
            assert_eq!(SymmetricKey::parse(raw).map(|_| ()), expected, "{raw:?}");
        };
        check(&BASE64.encode([7u8; 16]), Ok(()));
        check(&BASE64.encode([7u8; 64]), Ok(()));
        check(
            &BASE64.encode([7u8; 15]),
            Err(InvalidKey::BadLength { len: 15 }),
        );
        check(
            &BASE64.encode([7u8; 65]),
            Err(InvalidKey::BadLength { len: 65 }),
        );
        check("", Err(InvalidKey::BadLength { len: 0 }));
        check("not base64!", Err(InvalidKey::NotBase64));
        // URL-safe alphabet and missing padding are not what DPS sends.
        check(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            Err(InvalidKey::NotBase64),
        );
        check(
            "-_-_AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            Err(InvalidKey::NotBase64),
        );
        // Trailing bits set: decodes leniently elsewhere, but is not canonical.
        check(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
            Err(InvalidKey::NotBase64),
        );
    }

    #[test]
    fn random_keys_are_32_bytes_and_never_debug_printed() {
        let keys = SymmetricKeys::from_random([1u8; 64]);
        assert_eq!(keys.primary.as_str(), BASE64.encode([1u8; 32]));
        assert_eq!(
            SymmetricKey::parse(keys.secondary.as_str()),
            Ok(keys.secondary.clone())
        );
        assert!(!format!("{keys:?}").contains(keys.primary.as_str()));
    }
}
