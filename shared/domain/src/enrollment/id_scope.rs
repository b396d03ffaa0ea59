//! The application's DPS ID scope: what a device sends first when it provisions.
//!
//! IoT Central's scopes look like `0ne0004CB9A`: `0ne` then eight upper-case hex digits. Gyre
//! draws the digits from 4 random bytes once, when the application first needs its scope, and
//! keeps it (see `store::settings`); this file owns only the format.

use std::fmt;

/// Invariant: `0ne` followed by 8 characters of `[0-9A-F]`; enforced only by [`IdScope::parse`]
/// and [`IdScope::from_random`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdScope(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an id scope is '0ne' followed by 8 upper-case hex digits")]
pub struct InvalidIdScope;

impl IdScope {
    pub fn parse(raw: &str) -> Result<IdScope, InvalidIdScope> {
        let digits = raw.strip_prefix("0ne").ok_or(InvalidIdScope)?;
        let valid = digits.len() == 8
            && digits
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte));
        if valid {
            Ok(IdScope(raw.to_owned()))
        } else {
            Err(InvalidIdScope)
        }
    }

    pub fn from_random(bytes: [u8; 4]) -> IdScope {
        let hex: String = bytes.iter().map(|byte| format!("{byte:02X}")).collect();
        IdScope(format!("0ne{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_have_iot_centrals_format() {
        assert_eq!(
            IdScope::from_random([0x00, 0x04, 0xcb, 0x9a]).as_str(),
            "0ne0004CB9A"
        );
        let check = |raw: &str, valid: bool| {
            assert_eq!(IdScope::parse(raw).is_ok(), valid, "{raw:?}");
        };
        check("0ne0004CB9A", true);
        check("0ne0004cb9a", false);
        check("0ne0004CB9", false);
        check("0ne0004CB9AB", false);
        check("1ne0004CB9A", false);
        check("", false);
    }
}
