//! API tokens in IoT Central's form: issuing, parsing the `Authorization` header, verifying.
//!
//! A token is `SharedAccessSignature sr=<app id>&sig=<signature>&skn=<token id>&se=<expiry ms>`.
//! IoT Central does not say how it derives `sig`; Gyre's rule:
//! - `sig` is 32 bytes from the caller's random source, in standard base64 (URL-encoded in the
//!   header, as IoT Hub encodes its SAS signatures). It is the whole secret: 256 bits.
//! - The stored record keeps only a verifier, `SHA-256("gyre-api-token-v1" 0 sr 0 skn 0 se 0
//!   secret)`, never the token. Because the secret is uniformly random and 256 bits long, a plain
//!   hash is as strong as a slow password hash or an HMAC with a server-held key would be: there is
//!   no dictionary to try, and a leaked database gives nothing that authenticates. A server key
//!   would only add a secret to provision and rotate. Hashing `sr`, `skn` and `se` in binds every
//!   field: a token replayed against another application, under another id, or with an edited
//!   expiry fails as a bad signature.
//! - Verification compares the 32-byte digests in constant time and enforces that `se` equals the
//!   recorded expiry and lies in the future. A revoked token has no record: the caller reports
//!   [`AuthError::UnknownToken`].
//!
//! The parser never panics and accepts fields in any order, surrounding whitespace, a
//! case-insensitive scheme and percent-encoding in every value; it refuses missing, empty,
//! duplicate and unknown fields. Every failure is an [`AuthError`] that answers 401; its variant
//! is the reason, for logs only.
//!
//! Token ids: IoT Central's OpenAPI file gives `tokenId` no pattern. Gyre applies the rule IoT
//! Central documents for user ids, `^[a-zA-Z0-9-_]*$` with at most 48 characters (and at least
//! one), which also keeps `skn` free of characters that would need encoding.
//!
//! Not owned here: storing records (`store::api_tokens`), where the random bytes come from, and
//! which token ids a deployment reserves.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::roles::{OrganizationId, Role, RoleAssignment, RoleId};
use crate::time::Timestamp;

/// How long a token lives when its creator names no expiry: one year, as in IoT Central.
pub const DEFAULT_TOKEN_LIFETIME_MILLIS: i64 = 365 * 24 * 60 * 60 * 1000;

/// The expiry of a token created at `now` without an explicit one.
pub fn default_expiry(now: Timestamp) -> Timestamp {
    Timestamp::from_unix_millis(
        now.unix_millis()
            .saturating_add(DEFAULT_TOKEN_LIFETIME_MILLIS),
    )
}

/// The scheme of IoT Central's API tokens in the `Authorization` header.
const SCHEME: &str = "SharedAccessSignature";

/// Longer headers are refused before any parsing. A real token is about 300 bytes.
const MAX_HEADER_LEN: usize = 1024;

/// Domain separation for the verifier, so the digest can never collide with another use of
/// SHA-256 over similar fields. Bump the version to change the derivation.
const VERIFIER_CONTEXT: &[u8] = b"gyre-api-token-v1";

/// Identifies an API token: the `{tokenId}` of `/apiTokens/{tokenId}` and the token's `skn`.
/// Invariant: 1..=48 characters from `[A-Za-z0-9_-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiTokenId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("API token id must be 1 to 48 letters, digits, '-' or '_'")]
pub struct InvalidApiTokenId;

impl ApiTokenId {
    pub fn parse(raw: &str) -> Result<ApiTokenId, InvalidApiTokenId> {
        let valid_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if (1..=48).contains(&raw.len()) && raw.bytes().all(valid_char) {
            Ok(ApiTokenId(raw.to_owned()))
        } else {
            Err(InvalidApiTokenId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiTokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The application a token belongs to: its `sr`. IoT Central uses the application's GUID; a
/// Gyre deployment names its own.
/// Invariant: 1..=128 characters from `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ApplicationId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("application id must be 1 to 128 letters, digits, '.', '-' or '_'")]
pub struct InvalidApplicationId;

impl ApplicationId {
    pub fn parse(raw: &str) -> Result<ApplicationId, InvalidApplicationId> {
        let valid_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if (1..=128).contains(&raw.len()) && raw.bytes().all(valid_char) {
            Ok(ApplicationId(raw.to_owned()))
        } else {
            Err(InvalidApplicationId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the server keeps instead of the token: a SHA-256 digest that only the token's holder can
/// reproduce. Not secret, but `Debug` still leaves it out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenVerifier([u8; 32]);

impl TokenVerifier {
    pub fn from_bytes(bytes: [u8; 32]) -> TokenVerifier {
        TokenVerifier(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenVerifier(..)")
    }
}

/// A token as stored: everything but the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    id: ApiTokenId,
    verifier: TokenVerifier,
    expiry: Timestamp,
    roles: Vec<RoleAssignment>,
    created_at: Timestamp,
}

impl TokenRecord {
    /// Rebuilds a record read back from storage; only `store` does this.
    pub(crate) fn from_stored(
        id: ApiTokenId,
        verifier: TokenVerifier,
        expiry: Timestamp,
        roles: Vec<RoleAssignment>,
        created_at: Timestamp,
    ) -> TokenRecord {
        TokenRecord {
            id,
            verifier,
            expiry,
            roles,
            created_at,
        }
    }

    pub fn id(&self) -> &ApiTokenId {
        &self.id
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The instant the token stops working; it is valid strictly before.
    pub fn expiry(&self) -> Timestamp {
        self.expiry
    }

    pub fn roles(&self) -> &[RoleAssignment] {
        &self.roles
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

/// A freshly issued token: the header value to show once, and the record to store.
pub struct IssuedToken {
    /// The full `SharedAccessSignature ...` string. Return it in the create response, then drop
    /// it; it exists nowhere else.
    pub header_value: String,
    pub record: TokenRecord,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("header_value", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// Why a token could not be issued: each answers 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueError {
    #[error("an API token needs at least one role")]
    NoRoles,
    #[error("role `{role}` does not exist")]
    UnknownRole { role: RoleId },
    #[error("organization `{}` does not exist: Gyre has no organizations", .organization.as_str())]
    OrganizationsUnsupported { organization: OrganizationId },
    #[error(
        "expiry {} is not after the current time {}",
        .expiry.to_rfc3339(),
        .now.to_rfc3339()
    )]
    ExpiryNotInFuture { expiry: Timestamp, now: Timestamp },
}

/// Creates the token `token_id` for `application_id`, valid until `expiry`, granting `roles`.
/// `random` must come from a cryptographically secure source: it is the token's whole secret.
pub fn issue(
    token_id: ApiTokenId,
    application_id: &ApplicationId,
    expiry: Timestamp,
    roles: Vec<RoleAssignment>,
    now: Timestamp,
    random: [u8; 32],
) -> Result<IssuedToken, IssueError> {
    if roles.is_empty() {
        return Err(IssueError::NoRoles);
    }
    for assignment in &roles {
        if Role::built_in(&assignment.role).is_none() {
            return Err(IssueError::UnknownRole {
                role: assignment.role.clone(),
            });
        }
        if let Some(organization) = &assignment.organization {
            return Err(IssueError::OrganizationsUnsupported {
                organization: organization.clone(),
            });
        }
    }
    if expiry <= now {
        return Err(IssueError::ExpiryNotInFuture { expiry, now });
    }
    let header_value = format!(
        "{SCHEME} sr={}&sig={}&skn={}&se={}",
        crate::percent::encode(application_id.as_str()),
        crate::percent::encode(&BASE64.encode(random)),
        token_id.as_str(),
        expiry.unix_millis()
    );
    let verifier = TokenVerifier(derive_verifier(application_id, &token_id, expiry, &random));
    Ok(IssuedToken {
        header_value,
        record: TokenRecord {
            id: token_id,
            verifier,
            expiry,
            roles,
            created_at: now,
        },
    })
}

/// A syntactically valid token from an `Authorization` header, not yet verified.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedToken {
    application_id: ApplicationId,
    token_id: ApiTokenId,
    expiry: Timestamp,
    secret: [u8; 32],
}

impl ParsedToken {
    pub fn application_id(&self) -> &ApplicationId {
        &self.application_id
    }

    /// The `skn`: look the record up by this.
    pub fn token_id(&self) -> &ApiTokenId {
        &self.token_id
    }

    /// The `se` the caller presented.
    pub fn expiry(&self) -> Timestamp {
        self.expiry
    }
}

impl fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("application_id", &self.application_id)
            .field("token_id", &self.token_id)
            .field("expiry", &self.expiry)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a request is unauthenticated. Every variant answers 401 with the same public message; the
/// variant and its fields are for logs. No variant carries any part of the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(#[from] Malformed),
    /// Never issued, or revoked (deleted).
    #[error("API token `{token_id}` is unknown or revoked")]
    UnknownToken { token_id: ApiTokenId },
    /// The presented `se` is not the expiry the token was issued with.
    #[error("API token `{token_id}` presents an expiry it was not issued with")]
    ExpiryMismatch { token_id: ApiTokenId },
    #[error("API token `{token_id}` has a bad signature")]
    BadSignature { token_id: ApiTokenId },
    #[error("API token `{token_id}` expired at {}", .expiry.to_rfc3339())]
    Expired {
        token_id: ApiTokenId,
        expiry: Timestamp,
    },
}

impl AuthError {
    /// The HTTP status for every authentication failure.
    pub const STATUS: u16 = 401;

    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownToken { .. } => "unknown",
            AuthError::ExpiryMismatch { .. } => "expiry-mismatch",
            AuthError::BadSignature { .. } => "bad-signature",
            AuthError::Expired { .. } => "expired",
        }
    }
}

/// How an `Authorization` header fails to be an API token.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    #[error("longer than {max} bytes")]
    TooLong { max: usize },
    #[error("scheme is not SharedAccessSignature")]
    UnsupportedScheme,
    #[error("no fields after the scheme")]
    NoFields,
    #[error("empty field between '&'")]
    EmptyField,
    #[error("unknown field")]
    UnknownField,
    #[error("field `{field}` has no '='")]
    FieldWithoutValue { field: &'static str },
    #[error("field `{field}` appears twice")]
    DuplicateField { field: &'static str },
    #[error("field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("field `{field}` has bad percent-encoding")]
    BadPercentEncoding { field: &'static str },
    #[error("`sr` is not a valid application id")]
    InvalidApplicationId,
    #[error("`skn` is not a valid API token id")]
    InvalidTokenId,
    #[error("`se` is not a number of milliseconds")]
    InvalidExpiry,
    #[error("`sig` is not 32 bytes of base64")]
    InvalidSignature,
}

/// Parses the value of an `Authorization` header (`None` when the header is absent).
pub fn parse_authorization(header: Option<&str>) -> Result<ParsedToken, AuthError> {
    let header = header
        .map(|value| value.trim_matches([' ', '\t']))
        .unwrap_or("");
    if header.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(parse_token(header)?)
}

fn parse_token(header: &str) -> Result<ParsedToken, Malformed> {
    if header.len() > MAX_HEADER_LEN {
        return Err(Malformed::TooLong {
            max: MAX_HEADER_LEN,
        });
    }
    // RFC 9110 §11.1: the scheme is case-insensitive and followed by one or more spaces.
    let (scheme, fields) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(Malformed::UnsupportedScheme);
    }
    let fields = fields.trim_start_matches([' ', '\t']);
    if fields.is_empty() {
        return Err(Malformed::NoFields);
    }

    const NAMES: [&str; 4] = ["sr", "sig", "skn", "se"];
    let mut values: [Option<String>; 4] = [None, None, None, None];
    for field in fields.split('&') {
        if field.is_empty() {
            return Err(Malformed::EmptyField);
        }
        let (name, raw_value) = match field.split_once('=') {
            Some((name, raw_value)) => (name, Some(raw_value)),
            None => (field, None),
        };
        let idx = NAMES
            .iter()
            .position(|known| *known == name)
            .ok_or(Malformed::UnknownField)?;
        let field = NAMES[idx];
        let raw_value = raw_value.ok_or(Malformed::FieldWithoutValue { field })?;
        if values[idx].is_some() {
            return Err(Malformed::DuplicateField { field });
        }
        let value = crate::percent::decode(raw_value).ok_or(Malformed::BadPercentEncoding { field })?;
        values[idx] = Some(value);
    }
    let [sr, sig, skn, se] = values;
    let sr = sr.ok_or(Malformed::MissingField { field: "sr" })?;
    let sig = sig.ok_or(Malformed::MissingField { field: "sig" })?;
    let skn = skn.ok_or(Malformed::MissingField { field: "skn" })?;
    let se = se.ok_or(Malformed::MissingField { field: "se" })?;

    let application_id = ApplicationId::parse(&sr).map_err(|_| Malformed::InvalidApplicationId)?;
    let token_id = ApiTokenId::parse(&skn).map_err(|_| Malformed::InvalidTokenId)?;
    let expiry = parse_millis(&se).ok_or(Malformed::InvalidExpiry)?;
    let secret: [u8; 32] = BASE64
        .decode(sig.as_bytes())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(Malformed::InvalidSignature)?;
    Ok(ParsedToken {
        application_id,
        token_id,
        expiry,
        secret,
    })
}

/// `se`: 1 to 18 ASCII digits (up to the year 33,000), so it always fits an `i64`.
fn parse_millis(raw: &str) -> Option<Timestamp> {
    let valid = (1..=18).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .map(Timestamp::from_unix_millis)
}

/// Checks a presented token against the record stored under its `skn`, at `now`.
///
/// The order keeps the reasons honest: a presented expiry that differs from the record is
/// reported as such; then the signature; only a genuine token is reported as expired.
pub fn verify(
    presented: &ParsedToken,
    record: &TokenRecord,
    now: Timestamp,
) -> Result<(), AuthError> {
    let token_id = || presented.token_id.clone();
    if presented.expiry != record.expiry {
        return Err(AuthError::ExpiryMismatch {
            token_id: token_id(),
        });
    }
    let digest = derive_verifier(
        &presented.application_id,
        &presented.token_id,
        presented.expiry,
        &presented.secret,
    );
    if !constant_time_eq(&digest, record.verifier.as_bytes()) {
        return Err(AuthError::BadSignature {
            token_id: token_id(),
        });
    }
    if now >= record.expiry {
        return Err(AuthError::Expired {
            token_id: token_id(),
            expiry: record.expiry,
        });
    }
    Ok(())
}

fn derive_verifier(
    application_id: &ApplicationId,
    token_id: &ApiTokenId,
    expiry: Timestamp,
    secret: &[u8; 32],
) -> [u8; 32] {
    // The ids cannot contain NUL (see their invariants), so NUL separators make the encoding
    // unambiguous.
    let mut hasher = Sha256::new();
    hasher.update(VERIFIER_CONTEXT);
    hasher.update([0]);
    hasher.update(application_id.as_str());
    hasher.update([0]);
    hasher.update(token_id.as_str());
    hasher.update([0]);
    hasher.update(expiry.unix_millis().to_string());
    hasher.update([0]);
    hasher.update(secret);
    hasher.finalize().into()
}

/// Compares in time independent of where the inputs differ: every byte is visited, differences
/// are OR-ed together, and `black_box` keeps the optimiser from turning the loop into an early
/// exit.
fn constant_time_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    let mut difference = 0u8;
    for (l, r) in left.iter().zip(right) {
        difference |= std::hint::black_box(l ^ r);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{RoleAssignment, ADMINISTRATOR, OPERATOR};

    const NOW: i64 = 1_764_161_225_120; // 2025-11-26T12:47:05.120Z
    const EXPIRY: i64 = NOW + DEFAULT_TOKEN_LIFETIME_MILLIS;
    /// 32 bytes whose base64 has `+`, `/` and `=`, to exercise the encoding.
    const RANDOM: [u8; 32] = [
        0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19,
    ];
    const SIG: &str = "%2B%2F%2B%2F%2B%2F%2B%2FAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBk%3D";

    fn at(unix_millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(unix_millis)
    }

    fn token_id(raw: &str) -> ApiTokenId {
        ApiTokenId::parse(raw).unwrap()
    }

    fn app() -> ApplicationId {
        ApplicationId::parse("e8a2f9c0-gyre").unwrap()
    }

    fn issue_operator_token() -> IssuedToken {
        issue(
            token_id("operator-token"),
            &app(),
            at(EXPIRY),
            vec![RoleAssignment::app_wide(&OPERATOR)],
            at(NOW),
            RANDOM,
        )
        .unwrap()
    }

    fn header(sr: &str, sig: &str, skn: &str, se: &str) -> String {
        format!("SharedAccessSignature sr={sr}&sig={sig}&skn={skn}&se={se}")
    }

    #[test]
    fn issued_tokens_have_iot_centrals_form() {
        let issued = issue_operator_token();
        assert_eq!(
            issued.header_value,
            header("e8a2f9c0-gyre", SIG, "operator-token", &EXPIRY.to_string())
        );
        assert_eq!(issued.record.id().as_str(), "operator-token");
        assert_eq!(issued.record.expiry(), at(EXPIRY));
        assert_eq!(issued.record.created_at(), at(NOW));
        assert_eq!(issued.record.roles(), [RoleAssignment::app_wide(&OPERATOR)]);
    }

    #[test]
    fn the_record_holds_no_part_of_the_secret() {
        let issued = issue_operator_token();
        let verifier = issued.record.verifier().as_bytes();
        assert_ne!(verifier, &RANDOM);
        assert!(!verifier
            .windows(8)
            .any(|window| RANDOM.windows(8).any(|r| r == window)));
        let debug = format!("{issued:?}");
        assert!(!debug.contains("sig="), "{debug}");
        assert!(!debug.contains("AAECAwQF"), "{debug}");
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let issued = issue_operator_token();
        let presented = parse_authorization(Some(&issued.header_value)).unwrap();
        assert_eq!(presented.token_id().as_str(), "operator-token");
        assert_eq!(presented.application_id(), &app());
        assert_eq!(presented.expiry(), at(EXPIRY));

        assert_eq!(verify(&presented, &issued.record, at(NOW)), Ok(()));
        assert_eq!(verify(&presented, &issued.record, at(EXPIRY - 1)), Ok(()));
        let expired = Err(AuthError::Expired {
            token_id: token_id("operator-token"),
            expiry: at(EXPIRY),
        });
        assert_eq!(verify(&presented, &issued.record, at(EXPIRY)), expired);
        assert_eq!(verify(&presented, &issued.record, at(EXPIRY + 1)), expired);
    }

    /// Tampering with any field fails; each case edits the genuine header once.
    #[test]
    fn tampered_tokens_fail_with_their_reason() {
        let issued = issue_operator_token();
        let genuine = issued.header_value.clone();
        let check = |header: &str, expected: AuthError| {
            let presented = parse_authorization(Some(header)).unwrap();
            assert_eq!(
                verify(&presented, &issued.record, at(NOW)),
                Err(expected),
                "{header}"
            );
        };
        let id = || token_id("operator-token");

        // A different secret: first byte, last byte (the constant-time loop sees both).
        let mut first = RANDOM;
        first[0] ^= 1;
        let mut last = RANDOM;
        last[31] ^= 0x80;
        for random in [first, last, [0; 32]] {
            let sig = crate::percent::encode(&BASE64.encode(random));
            check(
                &header("e8a2f9c0-gyre", &sig, "operator-token", &EXPIRY.to_string()),
                AuthError::BadSignature { token_id: id() },
            );
        }
        // Another application.
        check(
            &genuine.replace("sr=e8a2f9c0-gyre", "sr=other-app"),
            AuthError::BadSignature { token_id: id() },
        );
        // A later (or earlier) expiry than issued.
        check(
            &genuine.replace(&EXPIRY.to_string(), &(EXPIRY + 1).to_string()),
            AuthError::ExpiryMismatch { token_id: id() },
        );
        check(
            &genuine.replace(&EXPIRY.to_string(), &(EXPIRY - 1).to_string()),
            AuthError::ExpiryMismatch { token_id: id() },
        );
    }

    #[test]
    fn a_token_verifies_only_against_its_own_record() {
        let operator = issue_operator_token();
        // Same secret, another id: the verifier differs because the id is hashed in.
        let other = issue(
            token_id("other-token"),
            &app(),
            at(EXPIRY),
            vec![RoleAssignment::app_wide(&ADMINISTRATOR)],
            at(NOW),
            RANDOM,
        )
        .unwrap();
        assert_ne!(operator.record.verifier(), other.record.verifier());
        let presented = parse_authorization(Some(&operator.header_value)).unwrap();
        assert_eq!(
            verify(&presented, &other.record, at(NOW)),
            Err(AuthError::BadSignature {
                token_id: token_id("operator-token")
            })
        );
    }

    #[test]
    fn constant_time_eq_sees_a_difference_at_every_position() {
        let base = [0x5a; 32];
        assert!(constant_time_eq(&base, &base));
        for idx in 0..32 {
            for bit in 0..8 {
                let mut other = base;
                other[idx] ^= 1 << bit;
                assert!(!constant_time_eq(&base, &other), "byte {idx} bit {bit}");
            }
        }
    }

    #[test]
    fn issuing_refuses_what_iot_central_or_gyre_cannot_honour() {
        let check = |roles: Vec<RoleAssignment>, expiry: i64, expected: IssueError| {
            let result = issue(token_id("t"), &app(), at(expiry), roles, at(NOW), RANDOM);
            assert_eq!(result.unwrap_err(), expected);
        };
        let unknown = RoleId::parse("c495eb57-eb18-489e-9802-62c474e5645c").unwrap();
        let seattle = OrganizationId::parse("seattle").unwrap();
        check(vec![], EXPIRY, IssueError::NoRoles);
        check(
            vec![RoleAssignment {
                role: unknown.clone(),
                organization: None,
            }],
            EXPIRY,
            IssueError::UnknownRole { role: unknown },
        );
        check(
            vec![RoleAssignment {
                role: ADMINISTRATOR.role_id(),
                organization: Some(seattle.clone()),
            }],
            EXPIRY,
            IssueError::OrganizationsUnsupported {
                organization: seattle,
            },
        );
        for expiry in [NOW, NOW - 1, 0] {
            check(
                vec![RoleAssignment::app_wide(&OPERATOR)],
                expiry,
                IssueError::ExpiryNotInFuture {
                    expiry: at(expiry),
                    now: at(NOW),
                },
            );
        }
    }

    /// Good headers: each must parse to the genuine token and verify.
    #[test]
    fn parses_good_headers() {
        let issued = issue_operator_token();
        let se = EXPIRY.to_string();
        let raw_sig = BASE64.encode(RANDOM);
        let check = |header: &str| {
            let presented = parse_authorization(Some(header))
                .unwrap_or_else(|error| panic!("{header:?}: {error}"));
            assert_eq!(
                verify(&presented, &issued.record, at(NOW)),
                Ok(()),
                "{header:?}"
            );
        };
        check(&issued.header_value);
        // Fields in any order.
        check(&format!(
            "SharedAccessSignature se={se}&skn=operator-token&sig={SIG}&sr=e8a2f9c0-gyre"
        ));
        check(&format!(
            "SharedAccessSignature skn=operator-token&se={se}&sr=e8a2f9c0-gyre&sig={SIG}"
        ));
        // Surrounding whitespace, several spaces or a tab after the scheme, scheme in any case.
        check(&format!("  {}\t", issued.header_value));
        check(&issued.header_value.replace("Signature ", "Signature   "));
        check(&issued.header_value.replace("Signature ", "Signature\t"));
        check(
            &issued
                .header_value
                .replace("SharedAccessSignature", "sharedaccesssignature"),
        );
        // The signature unencoded (an unencoded `+` is not a space), or lower-case escapes.
        check(&header("e8a2f9c0-gyre", &raw_sig, "operator-token", &se));
        let lower_escapes = SIG
            .replace("%2B", "%2b")
            .replace("%2F", "%2f")
            .replace("%3D", "%3d");
        check(&header(
            "e8a2f9c0-gyre",
            &lower_escapes,
            "operator-token",
            &se,
        ));
        // Any value percent-encoded, even where it need not be.
        check(&header("e8a2f9c0%2Dgyre", SIG, "operator%2Dtoken", &se));
        check(&header(
            "e8a2f9c0-gyre",
            SIG,
            "operator-token",
            &se.replacen('1', "%31", 1),
        ));
    }

    /// Malformed headers: each is refused with its reason, never a panic.
    #[test]
    fn refuses_malformed_headers() {
        let se = EXPIRY.to_string();
        let check = |header: &str, expected: Malformed| {
            assert_eq!(
                parse_authorization(Some(header)),
                Err(AuthError::Malformed(expected)),
                "{header:?}"
            );
        };
        let good = |sr: &str, sig: &str, skn: &str, se: &str| header(sr, sig, skn, se);

        check(
            "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9",
            Malformed::UnsupportedScheme,
        );
        check("SharedAccessSignatureX sr=a", Malformed::UnsupportedScheme);
        check(
            &format!("sr=a&sig={SIG}&skn=t&se={se}"),
            Malformed::UnsupportedScheme,
        );
        check("SharedAccessSignature", Malformed::NoFields);
        check("SharedAccessSignature   ", Malformed::NoFields);
        check(
            &format!("SharedAccessSignature sr=a&sig={SIG}&skn=t&se={se}&"),
            Malformed::EmptyField,
        );
        check(
            &format!("SharedAccessSignature &sr=a&sig={SIG}&skn=t&se={se}"),
            Malformed::EmptyField,
        );
        check(
            &format!("SharedAccessSignature sr=a&&sig={SIG}&skn=t&se={se}"),
            Malformed::EmptyField,
        );
        check(
            &format!("SharedAccessSignature sr=a&sig={SIG}&skn=t&se={se}&foo=bar"),
            Malformed::UnknownField,
        );
        check(
            &format!("SharedAccessSignature SR=a&sig={SIG}&skn=t&se={se}"),
            Malformed::UnknownField,
        );
        check(
            &format!("SharedAccessSignature sr=a&sig={SIG}&skn=t& se={se}"),
            Malformed::UnknownField,
        );
        check(
            &format!("SharedAccessSignature sr&sig={SIG}&skn=t&se={se}"),
            Malformed::FieldWithoutValue { field: "sr" },
        );
        check(
            &format!("SharedAccessSignature sr=a&sig={SIG}&skn=t&se={se}&sr=a"),
            Malformed::DuplicateField { field: "sr" },
        );
        check(
            &format!("SharedAccessSignature sig={SIG}&sr=a&sig={SIG}&skn=t&se={se}"),
            Malformed::DuplicateField { field: "sig" },
        );
        check(
            &format!("SharedAccessSignature sig={SIG}&skn=t&se={se}"),
            Malformed::MissingField { field: "sr" },
        );
        check(
            &format!("SharedAccessSignature sr=a&skn=t&se={se}"),
            Malformed::MissingField { field: "sig" },
        );
        check(
            &format!("SharedAccessSignature sr=a&sig={SIG}&se={se}"),
            Malformed::MissingField { field: "skn" },
        );
        check(
            &format!("SharedAccessSignature sr=a&sig={SIG}&skn=t"),
            Malformed::MissingField { field: "se" },
        );
        check(
            &good("a%", SIG, "t", &se),
            Malformed::BadPercentEncoding { field: "sr" },
        );
        check(
            &good("a%2", SIG, "t", &se),
            Malformed::BadPercentEncoding { field: "sr" },
        );
        check(
            &good("a", "%zz", "t", &se),
            Malformed::BadPercentEncoding { field: "sig" },
        );
        check(
            &good("a", SIG, "%ff", &se),
            Malformed::BadPercentEncoding { field: "skn" },
        );
        check(
            &good("a", SIG, "t", "%+1"),
            Malformed::BadPercentEncoding { field: "se" },
        );
        check(&good("", SIG, "t", &se), Malformed::InvalidApplicationId);
        check(
            &good("a%20b", SIG, "t", &se),
            Malformed::InvalidApplicationId,
        );
        check(
            &good("a%26skn%3Dx", SIG, "t", &se),
            Malformed::InvalidApplicationId,
        );
        check(&good("a", SIG, "", &se), Malformed::InvalidTokenId);
        check(
            &good("a", SIG, &"t".repeat(49), &se),
            Malformed::InvalidTokenId,
        );
        check(&good("a", SIG, "t.x", &se), Malformed::InvalidTokenId);
        check(&good("a", SIG, "t", ""), Malformed::InvalidExpiry);
        check(&good("a", SIG, "t", "-1"), Malformed::InvalidExpiry);
        check(&good("a", SIG, "t", "+1"), Malformed::InvalidExpiry);
        check(&good("a", SIG, "t", "1.5"), Malformed::InvalidExpiry);
        check(&good("a", SIG, "t", "1e3"), Malformed::InvalidExpiry);
        check(
            &good("a", SIG, "t", &"9".repeat(19)),
            Malformed::InvalidExpiry,
        );
        check(
            &good("a", SIG, "t", "1764161225120%20"),
            Malformed::InvalidExpiry,
        );
        check(&good("a", "", "t", &se), Malformed::InvalidSignature);
        check(
            &good("a", "not-base64!", "t", &se),
            Malformed::InvalidSignature,
        );
        // 31 and 33 bytes.
        check(
            &good("a", &BASE64.encode([1u8; 31]), "t", &se),
            Malformed::InvalidSignature,
        );
        check(
            &good("a", &BASE64.encode([1u8; 33]), "t", &se),
            Malformed::InvalidSignature,
        );
        // Unpadded and URL-safe base64 are not what Gyre issues.
        check(
            &good("a", BASE64.encode(RANDOM).trim_end_matches('='), "t", &se),
            Malformed::InvalidSignature,
        );
        check(
            &good(
                "a",
                &BASE64.encode(RANDOM).replace('+', "-").replace('/', "_"),
                "t",
                &se,
            ),
            Malformed::InvalidSignature,
        );
        check(&"A".repeat(2000), Malformed::TooLong { max: 1024 });
        check(
            &format!("SharedAccessSignature sr={}", "a".repeat(1024)),
            Malformed::TooLong { max: 1024 },
        );
    }

    #[test]
    fn a_missing_or_blank_header_is_missing() {
        for header in [None, Some(""), Some("   "), Some("\t")] {
            assert_eq!(
                parse_authorization(header),
                Err(AuthError::Missing),
                "{header:?}"
            );
        }
    }

    /// Arbitrary bytes never panic the parser; a crude fuzz over every prefix of a token and
    /// some junk.
    #[test]
    fn garbage_never_panics() {
        let issued = issue_operator_token();
        let genuine = issued.header_value;
        for end in 0..=genuine.len() {
            let _ = parse_authorization(Some(&genuine[..end]));
            let _ = parse_authorization(Some(&genuine[end..]));
        }
        for junk in [
            "%",
            "%%",
            "=",
            "&",
            "&=&",
            "é",
            "SharedAccessSignature é=é",
            "\u{0}",
        ] {
            let _ = parse_authorization(Some(junk));
            let _ = parse_authorization(Some(&format!("SharedAccessSignature {junk}")));
        }
    }

    #[test]
    fn every_failure_answers_401_with_a_reason() {
        let id = || token_id("t");
        let cases = [
            (AuthError::Missing, "missing"),
            (AuthError::Malformed(Malformed::NoFields), "malformed"),
            (AuthError::UnknownToken { token_id: id() }, "unknown"),
            (
                AuthError::ExpiryMismatch { token_id: id() },
                "expiry-mismatch",
            ),
            (AuthError::BadSignature { token_id: id() }, "bad-signature"),
            (
                AuthError::Expired {
                    token_id: id(),
                    expiry: at(0),
                },
                "expired",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason);
        }
        assert_eq!(AuthError::STATUS, 401);
        assert_eq!(
            AuthError::Expired {
                token_id: id(),
                expiry: at(0)
            }
            .to_string(),
            "API token `t` expired at 1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn token_ids_follow_the_user_id_rule() {
        let check = |raw: &str, valid: bool| {
            assert_eq!(ApiTokenId::parse(raw).is_ok(), valid, "{raw:?}");
        };
        check("operator-token", true);
        check("A_b-9", true);
        check(&"x".repeat(48), true);
        check(&"x".repeat(49), false);
        check("", false);
        check("a b", false);
        check("a&b", false);
        check("a=b", false);
        check("a.b", false);
        check("a/b", false);
        check("é", false);
    }

    #[test]
    fn application_ids_are_header_safe() {
        let check = |raw: &str, valid: bool| {
            assert_eq!(ApplicationId::parse(raw).is_ok(), valid, "{raw:?}");
        };
        check("e8a2f9c0-1b2c-4d5e-8f90-123456789abc", true);
        check("my-app.example", true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(129), false);
        check("", false);
        check("a&b", false);
        check("a b", false);
    }

    #[test]
    fn the_default_lifetime_is_a_year() {
        assert_eq!(
            default_expiry(at(NOW)).to_rfc3339(),
            "2026-11-26T12:47:05.120Z"
        );
        assert_eq!(default_expiry(at(i64::MAX)), at(i64::MAX));
    }
}
