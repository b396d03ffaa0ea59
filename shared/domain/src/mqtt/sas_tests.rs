//! Tests of `sas.rs`, built from the reference's four token forms. Signatures were computed
//! independently with Python: `urllib.parse.quote(base64.b64encode(hmac.new(
//! base64.b64decode(key), (sr + "\n" + se).encode(), hashlib.sha256).digest()), safe="")`.

use super::*;
use crate::enrollment::{derive_device_key, SymmetricKey};
use crate::time::Timestamp;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "dGhpcyBpcyBhIGdyb3VwIGtleSBmb3IgdGVzdGluZyE=";
const SE: u64 = 1_900_000_000;

const PY_HUB: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=Oiao1PCH2OlFwtyyHnJJaB8hJTrerrOTqazZ3T%2BrZx0%3D&se=1900000000";
const PY_DPS: &str = "SharedAccessSignature sr=0ne0000ABCD%2Fregistrations%2Freg-py-1&sig=BCQpuSJV%2F94FxcIYp3bQ%2F8AJstxLz%2FQKwo2Fdksabd4%3D&se=1900000000";
const NODE_DPS: &str = "SharedAccessSignature sr=0ne0000ABCD/registrations/reg-node-1&sig=HpzwvHYDwk2oDIMnh4rMCh9Ta1763jm5Os%2BpA6m6PhE%3D&skn=registration&se=1900000000";
const MODULE: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1%2Fmodules%2Fm1&sig=R%2BmJZs4RxqdtVQo3N85ENBysL%2BLF%2B3upNuK%2BBarxuXg%3D&se=1900000000";

fn key(raw: &str) -> SymmetricKey {
    SymmetricKey::parse(raw).unwrap()
}

fn before_expiry() -> Timestamp {
    Timestamp::from_unix_millis(SE as i64 * 1000 - 1)
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
        &format!("0ne0000ABCD/registrations/{registration_id}/api-version=2019-03-31"),
    )
    .unwrap()
}

#[test]
fn generates_the_tokens_the_sdks_send() {
    let check = |resource: &str, key_name, form, expected: &str| {
        assert_eq!(
            generate_token(resource, &key(KEY), SE, key_name, form),
            expected
        );
    };
    check("localhost/devices/dev1", None, SrForm::Encoded, PY_HUB);
    check(
        "0ne0000ABCD/registrations/reg-py-1",
        None,
        SrForm::Encoded,
        PY_DPS,
    );
    check(
        "0ne0000ABCD/registrations/reg-node-1",
        Some("registration"),
        SrForm::Raw,
        NODE_DPS,
    );
    check(
        "localhost/devices/dev1/modules/m1",
        None,
        SrForm::Encoded,
        MODULE,
    );
}

#[test]
fn accepts_every_form_the_sdks_send() {
    let group = key(KEY);
    let derived = derive_device_key(&group, "reg-node-1");
    let node_dps_derived = generate_token(
        "0ne0000ABCD/registrations/reg-node-1",
        &derived,
        SE,
        Some("registration"),
        SrForm::Raw,
    );
    assert!(node_dps_derived.contains("sig=DovlcGAWtwDF%2FZudqMmDAfNgQ2lA7ZhQPV4wvMAwEWo%3D"));
    let check = |password: &str, endpoint: Endpoint, key: &SymmetricKey, skn: Option<&str>| {
        let token = SasToken::authenticate(password, &endpoint, &[key], before_expiry())
            .unwrap_or_else(|err| panic!("{password}: {err}"));
        assert_eq!(token.resource(), endpoint.sas_resource());
        assert_eq!(token.key_name(), skn);
        assert_eq!(
            token.expiry(),
            Timestamp::from_unix_millis(SE as i64 * 1000)
        );
    };
    check(PY_HUB, hub("dev1"), &group, None);
    check(PY_DPS, dps("reg-py-1"), &group, None);
    check(NODE_DPS, dps("reg-node-1"), &group, Some("registration"));
    check(MODULE, hub("dev1/m1"), &group, None);
    check(
        &node_dps_derived,
        dps("reg-node-1"),
        &derived,
        Some("registration"),
    );
    // Node hub: the same shape as Python's.
    let node_hub = generate_token(
        "localhost/devices/dev-node",
        &group,
        SE,
        None,
        SrForm::Encoded,
    );
    check(&node_hub, hub("dev-node"), &group, None);
}

#[test]
fn the_signature_covers_sr_as_sent_or_azures_documented_form() {
    let check = |password: &str, expected: Result<(), SasError>| {
        let token = SasToken::parse(password).unwrap();
        assert_eq!(
            token.verify(&[&key(KEY)], before_expiry()),
            expected,
            "{password}"
        );
    };
    // Sent raw, signed over the encoded form: accepted through `encode(decode(sr))`.
    check(
        "SharedAccessSignature sr=localhost/devices/dev1&sig=Oiao1PCH2OlFwtyyHnJJaB8hJTrerrOTqazZ3T%2BrZx0%3D&se=1900000000",
        Ok(()),
    );
    // Sent encoded, signed over the raw form: not a form any SDK produces.
    check(
        "SharedAccessSignature sr=0ne0000ABCD%2Fregistrations%2Freg-node-1&sig=HpzwvHYDwk2oDIMnh4rMCh9Ta1763jm5Os%2BpA6m6PhE%3D&se=1900000000",
        Err(SasError::BadSignature),
    );
    // Any edit to a signed field breaks it.
    check(
        &PY_HUB.replace("se=1900000000", "se=1900000001"),
        Err(SasError::BadSignature),
    );
    check(&PY_HUB.replace("dev1", "dev2"), Err(SasError::BadSignature));
    // Lower-case hex is another spelling of the same resource; the documented form fixes it.
    check(&PY_HUB.replace("%2Fdevices", "%2fdevices"), Ok(()));
    // An unencoded signature (raw '+', '/', '=') is the same signature.
    check(
        "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=Oiao1PCH2OlFwtyyHnJJaB8hJTrerrOTqazZ3T+rZx0=&se=1900000000",
        Ok(()),
    );
}

#[test]
fn fields_come_in_any_order_with_any_spacing() {
    let check = |password: &str| {
        let token = SasToken::parse(password).unwrap_or_else(|err| panic!("{password}: {err}"));
        assert_eq!(
            token.verify(&[&key(KEY)], before_expiry()),
            Ok(()),
            "{password}"
        );
    };
    let sr = "sr=localhost%2Fdevices%2Fdev1";
    let sig = "sig=Oiao1PCH2OlFwtyyHnJJaB8hJTrerrOTqazZ3T%2BrZx0%3D";
    let se = "se=1900000000";
    for fields in [[sr, sig, se], [se, sr, sig], [sig, se, sr], [sr, se, sig]] {
        check(&format!("SharedAccessSignature {}", fields.join("&")));
    }
    check(&format!(
        "sharedaccesssignature  {sr}&{sig}&{se}&skn=device"
    ));
    check(&format!("  SharedAccessSignature\t{sr}&{sig}&{se}  "));
    check(&format!("SharedAccessSignature {sr}&{sig}&se=%31900000000"));
}

#[test]
fn refuses_malformed_tokens_with_a_reason() {
    let check = |password: &str, expected: SasError| {
        assert_eq!(SasToken::parse(password), Err(expected), "{password}");
    };
    let sig = "sig=Oiao1PCH2OlFwtyyHnJJaB8hJTrerrOTqazZ3T%2BrZx0%3D";
    check("", SasError::UnsupportedScheme);
    check("password", SasError::UnsupportedScheme);
    check("Bearer sr=a&sig=b&se=1", SasError::UnsupportedScheme);
    check(
        &"x".repeat(MAX_TOKEN_LEN + 1),
        SasError::TooLong { max: MAX_TOKEN_LEN },
    );
    check("SharedAccessSignature ", SasError::UnsupportedScheme);
    check("SharedAccessSignature &", SasError::EmptyField);
    check(
        &format!("SharedAccessSignature sr=a&&{sig}&se=1"),
        SasError::EmptyField,
    );
    check(
        &format!("SharedAccessSignature sr=a&{sig}&se"),
        SasError::FieldWithoutValue { field: "se".into() },
    );
    check(
        &format!("SharedAccessSignature sr=a&{sig}&se=1&sx=2"),
        SasError::UnknownField { field: "sx".into() },
    );
    check(
        &format!("SharedAccessSignature sr=a&{sig}&se=1&SR=b"),
        SasError::UnknownField { field: "SR".into() },
    );
    check(
        &format!("SharedAccessSignature sr=a&{sig}&se=1&sr=b"),
        SasError::DuplicateField { field: "sr" },
    );
    check(
        &format!("SharedAccessSignature {sig}&se=1"),
        SasError::MissingField { field: "sr" },
    );
    check(
        &format!("SharedAccessSignature sr=&{sig}&se=1"),
        SasError::MissingField { field: "sr" },
    );
    check(
        "SharedAccessSignature sr=a&se=1",
        SasError::MissingField { field: "sig" },
    );
    check(
        &format!("SharedAccessSignature sr=a&{sig}"),
        SasError::MissingField { field: "se" },
    );
    check(
        &format!("SharedAccessSignature sr=a%zz&{sig}&se=1"),
        SasError::BadPercentEncoding { field: "sr" },
    );
    check(
        &format!("SharedAccessSignature sr=a&{sig}&se=1&skn=%"),
        SasError::BadPercentEncoding { field: "skn" },
    );
    check(
        "SharedAccessSignature sr=a&sig=AAAA&se=1",
        SasError::InvalidSignature,
    );
    check(
        "SharedAccessSignature sr=a&sig=not*base64&se=1",
        SasError::InvalidSignature,
    );
    for se in [
        "-1",
        "1.5",
        "1e9",
        "0x10",
        "99999999999999999999",
        "9223372036854776",
    ] {
        check(
            &format!("SharedAccessSignature sr=a&{sig}&se={se}"),
            SasError::InvalidExpiry { value: se.into() },
        );
    }
}

#[test]
fn never_panics_on_any_prefix_or_byte_flip() {
    for end in 0..=NODE_DPS.len() {
        let _ = SasToken::parse(&NODE_DPS[..end]);
    }
    for idx in 0..PY_HUB.len() {
        for replacement in ['%', '&', '=', ' ', 'é', '\0'] {
            let mut password = PY_HUB.to_owned();
            password.replace_range(idx..idx + 1, &replacement.to_string());
            if let Ok(token) = SasToken::parse(&password) {
                let _ = token.verify(&[&key(KEY)], before_expiry());
                let _ = token.check_target(&hub("dev1"));
            }
        }
    }
}

#[test]
fn expires_at_se_and_tries_each_key() {
    let token = SasToken::parse(PY_HUB).unwrap();
    let (primary, secondary) = (key(OTHER_KEY), key(KEY));
    let check = |keys: &[&SymmetricKey], now_millis: i64, expected: Result<(), SasError>| {
        let now = Timestamp::from_unix_millis(now_millis);
        assert_eq!(token.verify(keys, now), expected, "{now_millis}");
    };
    let expiry = Timestamp::from_unix_millis(1_900_000_000_000);
    check(&[&secondary], 0, Ok(()));
    check(&[&secondary], 1_899_999_999_999, Ok(()));
    check(
        &[&secondary],
        1_900_000_000_000,
        Err(SasError::Expired {
            expiry,
            now: expiry,
        }),
    );
    check(&[&primary, &secondary], 0, Ok(()));
    check(&[&primary], 0, Err(SasError::BadSignature));
    check(&[], 0, Err(SasError::BadSignature));
    // A bad signature is reported before the expiry.
    check(&[&primary], 2_000_000_000_000, Err(SasError::BadSignature));
}

#[test]
fn the_token_must_name_the_connecting_identity() {
    let check = |password: &str, endpoint: Endpoint, expected: Result<(), SasError>| {
        let token = SasToken::parse(password).unwrap();
        assert_eq!(token.check_target(&endpoint), expected, "{password}");
    };
    let wrong = |resource: &str, expected: &str| {
        Err(SasError::WrongResource {
            resource: resource.into(),
            expected: expected.into(),
        })
    };
    check(PY_HUB, hub("dev1"), Ok(()));
    check(
        PY_HUB,
        Endpoint::parse("DEV1", "LocalHost/DEV1/?").unwrap(),
        Ok(()),
    );
    check(
        PY_HUB,
        hub("dev2"),
        wrong("localhost/devices/dev1", "localhost/devices/dev2"),
    );
    check(
        PY_HUB,
        hub("dev1/m1"),
        wrong(
            "localhost/devices/dev1",
            "localhost/devices/dev1/modules/m1",
        ),
    );
    check(
        MODULE,
        hub("dev1"),
        wrong(
            "localhost/devices/dev1/modules/m1",
            "localhost/devices/dev1",
        ),
    );
    check(
        PY_HUB,
        Endpoint::parse("dev1", "gyre.example/dev1/?").unwrap(),
        wrong("localhost/devices/dev1", "gyre.example/devices/dev1"),
    );
    check(NODE_DPS, dps("reg-node-1"), Ok(()));
    check(
        NODE_DPS,
        dps("reg-py-1"),
        wrong(
            "0ne0000ABCD/registrations/reg-node-1",
            "0ne0000ABCD/registrations/reg-py-1",
        ),
    );
    // A DPS token does not open the hub for the same id, nor the reverse.
    check(
        PY_DPS,
        hub("reg-py-1"),
        wrong(
            "0ne0000ABCD/registrations/reg-py-1",
            "localhost/devices/reg-py-1",
        ),
    );
}

#[test]
fn debug_never_shows_the_signature() {
    let token = SasToken::parse(PY_HUB).unwrap();
    let debug = format!("{token:?}");
    assert!(!debug.contains("Oiao1"), "{debug}");
}
