//! SAS tokens as devices send them in the CONNECT password, and their verification.
//!
//! Shape: `SharedAccessSignature sr={sr}&sig={urlenc(base64(HMAC-SHA256(base64decode(key),
//! sr + "\n" + se)))}&se={unix seconds}[&skn={name}]`. The four forms the SDKs send differ:
//! Python (hub and DPS) and Node hub percent-encode `sr` and sign the encoded text; Node DPS
//! sends `sr` raw, signs the raw text, adds `skn=registration` and puts `skn` before `se`. Hence
//! the rule: the signature is checked over `sr` exactly as sent, and also over
//! `percent::encode(decode(sr))`, Azure's documented form. The target is then checked on the
//! decoded `sr`, ignoring case.
//!
//! Decisions where the reference is silent:
//! - Fields may come in any order and any of them may be percent-encoded; empty, duplicate and
//!   unknown fields are refused (no SDK sends them, and none is covered by the signature).
//! - `sig` must be standard base64 of 32 bytes (an HMAC-SHA256), encoded or not; `se` decimal
//!   seconds that fit a [`Timestamp`], signed as its decoded digits (every SDK sends plain
//!   digits). A token is valid strictly before `se`.
//! - `skn` is parsed and exposed but not interpreted: Gyre has no hub-wide access policies, so a
//!   token is good only for the one identity its `sr` names.
//!
//! Not owned here: which keys a device or group has (registry), caching verified tokens, and
//! closing a connection when its token expires (the bridge reads [`SasToken::expiry`]).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::identity::Endpoint;
use crate::enrollment::SymmetricKey;
use crate::percent;
use crate::time::Timestamp;

/// Longer passwords are refused before parsing. The longest real token (a 253-character host and
/// a module id, all encoded) stays under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 4096;

const SCHEME: &str = "SharedAccessSignature";

/// A syntactically valid SAS token, not yet verified. `Debug` hides the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as sent: the text that was signed.
    sr_as_sent: String,
    /// `sr` percent-decoded: the resource, e.g. `host/devices/dev1`.
    resource: String,
    /// `se` decoded: the decimal digits that were signed.
    se_digits: String,
    expiry: Timestamp,
    signature: [u8; 32],
    key_name: Option<String>,
}

/// Why a CONNECT password does not authenticate. Every variant answers CONNACK 5; the variant
/// and its fields are for logs and never hold the signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    #[error("token is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("token does not start with 'SharedAccessSignature '")]
    UnsupportedScheme,
    #[error("token has an empty field between '&'")]
    EmptyField,
    #[error("token field '{field}' has no '='")]
    FieldWithoutValue { field: String },
    #[error("token has unknown field '{field}'")]
    UnknownField { field: String },
    #[error("token field '{field}' appears twice")]
    DuplicateField { field: &'static str },
    #[error("token field '{field}' is missing or empty")]
    MissingField { field: &'static str },
    #[error("token field '{field}' has bad percent-encoding")]
    BadPercentEncoding { field: &'static str },
    #[error("token 'se' is not a number of seconds since 1970: '{value}'")]
    InvalidExpiry { value: String },
    #[error("token 'sig' is not 32 bytes of standard base64")]
    InvalidSignature,
    #[error("token is for '{resource}', not '{expected}'")]
    WrongResource { resource: String, expected: String },
    #[error("token signature does not match any key")]
    BadSignature,
    #[error("token expired at {} (now {})", .expiry.to_rfc3339(), .now.to_rfc3339())]
    Expired { expiry: Timestamp, now: Timestamp },
}

impl SasToken {
    /// Parses a CONNECT password.
    pub fn parse(password: &str) -> Result<SasToken, SasError> {
        if password.len() > MAX_TOKEN_LEN {
            return Err(SasError::TooLong { max: MAX_TOKEN_LEN });
        }
        let password = password.trim_matches([' ', '\t']);
        let (scheme, fields) = password
            .split_once([' ', '\t'])
            .ok_or(SasError::UnsupportedScheme)?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(SasError::UnsupportedScheme);
        }
        let fields = fields.trim_start_matches([' ', '\t']);
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in fields.split('&') {
            if field.is_empty() {
                return Err(SasError::EmptyField);
            }
            let (name, value) =
                field
                    .split_once('=')
                    .ok_or_else(|| SasError::FieldWithoutValue {
                        field: short(field),
                    })?;
            let (slot, name) = match name {
                "sr" => (&mut sr, "sr"),
                "sig" => (&mut sig, "sig"),
                "se" => (&mut se, "se"),
                "skn" => (&mut skn, "skn"),
                other => {
                    return Err(SasError::UnknownField {
                        field: short(other),
                    })
                }
            };
            if slot.replace(value).is_some() {
                return Err(SasError::DuplicateField { field: name });
            }
        }
        let sr_as_sent = required(sr, "sr")?;
        let resource = decoded(sr_as_sent, "sr")?;
        let signature = decoded(required(sig, "sig")?, "sig")?;
        let signature: [u8; 32] = BASE64
            .decode(signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SasError::InvalidSignature)?;
        let se_digits = decoded(required(se, "se")?, "se")?;
        let expiry = parse_expiry(&se_digits)?;
        let key_name = skn.map(|skn| decoded(skn, "skn")).transpose()?;
        Ok(SasToken {
            sr_as_sent: sr_as_sent.to_owned(),
            resource,
            se_digits,
            expiry,
            signature,
            key_name,
        })
    }

    /// The decoded `sr`, e.g. `host/devices/dev1` or `0ne0000ABCD/registrations/reg-1`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The instant `se` names; the token is valid strictly before it.
    pub fn expiry(&self) -> Timestamp {
        self.expiry
    }

    /// The decoded `skn`, if any (`registration` from the Node DPS client).
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Checks that the token's resource is the connecting identity's, ignoring case.
    pub fn check_target(&self, endpoint: &Endpoint) -> Result<(), SasError> {
        let expected = endpoint.sas_resource();
        if self.resource.eq_ignore_ascii_case(&expected) {
            Ok(())
        } else {
            Err(SasError::WrongResource {
                resource: short(&self.resource),
                expected,
            })
        }
    }

    /// Checks the signature against each key in turn (primary, secondary), then the expiry.
    pub fn verify(&self, keys: &[&SymmetricKey], now: Timestamp) -> Result<(), SasError> {
        let alternative = percent::encode(&self.resource);
        let mut signed_texts = vec![self.sr_as_sent.as_str()];
        if alternative != self.sr_as_sent {
            signed_texts.push(&alternative);
        }
        let signed = keys.iter().any(|key| {
            let key = key_bytes(key);
            signed_texts.iter().any(|sr| {
                mac(&key, sr, &self.se_digits)
                    .verify_slice(&self.signature)
                    .is_ok()
            })
        });
        if !signed {
            return Err(SasError::BadSignature);
        }
        if now >= self.expiry {
            return Err(SasError::Expired {
                expiry: self.expiry,
                now,
            });
        }
        Ok(())
    }

    /// Everything a CONNECT needs: parse `password`, check it names `endpoint`, verify it
    /// against `keys` at `now`.
    pub fn authenticate(
        password: &str,
        endpoint: &Endpoint,
        keys: &[&SymmetricKey],
        now: Timestamp,
    ) -> Result<SasToken, SasError> {
        let token = SasToken::parse(password)?;
        token.check_target(endpoint)?;
        token.verify(keys, now)?;
        Ok(token)
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("sr", &self.sr_as_sent)
            .field("expiry", &self.expiry)
            .field("key_name", &self.key_name)
            .field("signature", &"<redacted>")
            .finish()
    }
}

/// How [`generate_token`] writes `sr`, after the SDK it imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrForm {
    /// Percent-encoded and signed encoded; fields `sr, sig, se[, skn]` (Python; Node hub).
    Encoded,
    /// Raw and signed raw; fields `sr, sig[, skn], se` (Node DPS).
    Raw,
}

/// A SAS token for `resource` (decoded, e.g. [`Endpoint::sas_resource`]) signed with `key`,
/// valid until `expiry_secs` (Unix seconds), as the SDK `form` imitates would write it.
pub fn generate_token(
    resource: &str,
    key: &SymmetricKey,
    expiry_secs: u64,
    key_name: Option<&str>,
    form: SrForm,
) -> String {
    let sr = match form {
        SrForm::Encoded => percent::encode(resource),
        SrForm::Raw => resource.to_owned(),
    };
    let se = expiry_secs.to_string();
    let sig = BASE64.encode(mac(&key_bytes(key), &sr, &se).finalize().into_bytes());
    let sig = percent::encode(&sig);
    let skn = key_name.map(|name| format!("&skn={}", percent::encode(name)));
    let skn = skn.as_deref().unwrap_or("");
    match form {
        SrForm::Encoded => format!("{SCHEME} sr={sr}&sig={sig}&se={se}{skn}"),
        SrForm::Raw => format!("{SCHEME} sr={sr}&sig={sig}{skn}&se={se}"),
    }
}

fn mac(key: &[u8], sr: &str, se: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC-SHA256 takes keys of any length");
    mac.update(sr.as_bytes());
    mac.update(b"\n");
    mac.update(se.as_bytes());
    mac
}

fn key_bytes(key: &SymmetricKey) -> Vec<u8> {
    // SymmetricKey's invariant is canonical base64, so decoding cannot fail.
    BASE64.decode(key.as_str()).unwrap_or_default()
}

fn required<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, SasError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or(SasError::MissingField { field })
}

fn decoded(value: &str, field: &'static str) -> Result<String, SasError> {
    percent::decode(value).ok_or(SasError::BadPercentEncoding { field })
}

fn parse_expiry(se: &str) -> Result<Timestamp, SasError> {
    let invalid = || SasError::InvalidExpiry { value: short(se) };
    if se.is_empty() || !se.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let secs: i64 = se.parse().map_err(|_| invalid())?;
    secs.checked_mul(1000)
        .map(Timestamp::from_unix_millis)
        .ok_or_else(invalid)
}

/// Error fields echo client input: keep them short enough for a log line.
fn short(raw: &str) -> String {
    raw.chars().take(300).collect()
}
