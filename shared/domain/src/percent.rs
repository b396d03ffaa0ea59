//! Percent-encoding (RFC 3986 §2.1), once for the whole crate and its callers: SAS token fields,
//! path segments (device ids, DTMIs) and query parameters.
//!
//! `+` is never a space here: that is form encoding, which only query strings use, and callers
//! that read one replace `+` before decoding. Not owned here: which characters an id may hold
//! (each id type's `parse`).

/// Decodes `%XX` escapes. `None` on a malformed escape or a result that is not UTF-8, so that a
/// caller can refuse the input instead of guessing.
pub fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'%' {
            let hex = bytes.get(idx + 1..idx + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            // Two ASCII hex digits: both conversions succeed.
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            idx += 3;
        } else {
            out.push(bytes[idx]);
            idx += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    encode_into(&mut out, raw, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
    });
    out
}

/// Appends `raw` to `out`, each character `keep` refuses percent-encoded as its UTF-8 bytes.
pub fn encode_into(out: &mut String, raw: &str, keep: impl Fn(char) -> bool) {
    if raw.chars().all(&keep) {
        out.push_str(raw);
        return;
    }
    for c in raw.chars() {
        if keep(c) {
            out.push(c);
        } else {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_strict_and_keeps_plus() {
        let cases: &[(&str, Option<&str>)] = &[
            ("plain", Some("plain")),
            ("a%20b", Some("a b")),
            ("a+b", Some("a+b")),
            ("dtmi%3Acom%3Aexample%3BThermostat%3B1", Some("dtmi:com:example;Thermostat;1")),
            ("%C3%BC", Some("ü")),
            ("%", None),
            ("%2", None),
            ("%zz", None),
            ("%FF", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode(raw).as_deref(), *expected, "{raw}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        for raw in ["plain", "a b", "x=y&z", "dtmi:com:example;1", "ünï", "%", "a+b/c=="] {
            assert_eq!(decode(&encode(raw)).as_deref(), Some(raw));
        }
        assert_eq!(encode("a+b/="), "a%2Bb%2F%3D");
    }
}
