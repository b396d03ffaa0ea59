//! Digital Twin Model Identifiers: `dtmi:<segment>(:<segment>)*;<version>`.
//!
//! Owns the syntax of a DTMI as the DTDL specification defines it for model documents (user
//! DTMIs only) and the [`Dtmi`] type that device templates are keyed by. It does not own what a
//! DTMI may identify in a given place (an Interface id is at most 128 characters, a minor
//! version needs DTDL v3): those rules depend on the document and live in the parser.
//!
//! Decision where the specification leaves a choice: DTDL v3 allows a DTMI without a version,
//! but Gyre requires one everywhere, as IoT Central does for device template ids; a template's
//! identity is its versioned DTMI.

use std::fmt;

/// The most characters a user DTMI may have, per the DTDL specification.
pub const MAX_DTMI_LEN: usize = 2048;

/// A digital twin model identifier, such as `dtmi:com:example:Thermostat;1`.
///
/// Invariant: `dtmi:` then one or more colon-separated segments (a letter, then letters, digits
/// and underscores, not ending with an underscore), then `;` and a version: 1 to 999999999
/// without leading zeros, optionally followed by `.` and a minor version 1 to 999999; at most
/// [`MAX_DTMI_LEN`] characters. Enforced only by [`Dtmi::parse`]. Equality is case-sensitive,
/// as the specification says.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dtmi(String);

/// Why a string is not a DTMI.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DtmiError {
    #[error("a DTMI has at most {max} characters, found {len}")]
    TooLong { len: usize, max: usize },
    #[error("a DTMI starts with 'dtmi:'")]
    MissingScheme,
    #[error("a DTMI ends with ';' and a version, e.g. ';1'")]
    MissingVersion,
    #[error("a DTMI needs at least one path segment after 'dtmi:'")]
    EmptyPath,
    #[error(
        "segment '{segment}' must start with a letter, hold only letters, digits and \
         underscores, and not end with an underscore"
    )]
    BadSegment { segment: String },
    #[error(
        "version '{version}' must be 1 to 999999999 without leading zeros, optionally \
         followed by '.' and a minor version 1 to 999999"
    )]
    BadVersion { version: String },
}

impl Dtmi {
    pub fn parse(raw: &str) -> Result<Dtmi, DtmiError> {
        if raw.len() > MAX_DTMI_LEN {
            return Err(DtmiError::TooLong {
                len: raw.len(),
                max: MAX_DTMI_LEN,
            });
        }
        let rest = raw.strip_prefix("dtmi:").ok_or(DtmiError::MissingScheme)?;
        let (path, version) = rest.rsplit_once(';').ok_or(DtmiError::MissingVersion)?;
        if path.is_empty() {
            return Err(DtmiError::EmptyPath);
        }
        if let Some(segment) = path.split(':').find(|segment| !is_user_segment(segment)) {
            return Err(DtmiError::BadSegment {
                segment: segment.to_owned(),
            });
        }
        if !is_version(version) {
            return Err(DtmiError::BadVersion {
                version: version.to_owned(),
            });
        }
        Ok(Dtmi(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The major version: `1` for `dtmi:com:example:Thermostat;1` and for `...;1.2`.
    pub fn major_version(&self) -> u32 {
        let version = self.version_text();
        let major = version.split('.').next().unwrap_or(version);
        // The invariant guarantees at most nine digits, which always fit in a u32.
        major.parse().unwrap_or(0)
    }

    /// The minor version of a two-part (DTDL v3) version, `None` for a one-part version.
    pub fn minor_version(&self) -> Option<u32> {
        let (_, minor) = self.version_text().split_once('.')?;
        minor.parse().ok()
    }

    /// Everything before `;`: the DTMI without its version.
    pub fn unversioned(&self) -> &str {
        self.0
            .rsplit_once(';')
            .map_or(self.0.as_str(), |(path, _)| path)
    }

    fn version_text(&self) -> &str {
        self.0.rsplit_once(';').map_or("", |(_, version)| version)
    }
}

impl fmt::Display for Dtmi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Dtmi {
    type Err = DtmiError;

    fn from_str(raw: &str) -> Result<Dtmi, DtmiError> {
        Dtmi::parse(raw)
    }
}

/// A user segment: a letter, then letters, digits and underscores, not ending with `_`.
/// System segments (starting with `_`) are not permitted in model documents.
fn is_user_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphabetic()
                && *last != b'_'
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        _ => false,
    }
}

fn is_version(version: &str) -> bool {
    let (major, minor) = match version.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (version, None),
    };
    is_version_part(major, 9) && minor.is_none_or(|minor| is_version_part(minor, 6))
}

/// 1 to `max_digits` ASCII digits, the first not zero.
fn is_version_part(part: &str, max_digits: usize) -> bool {
    (1..=max_digits).contains(&part.len())
        && !part.starts_with('0')
        && part.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<&str, DtmiError>) {
        let actual = Dtmi::parse(raw);
        assert_eq!(
            actual.as_ref().map(Dtmi::as_str),
            expected.as_ref().map(|s| *s),
            "{raw}"
        );
    }

    fn bad_segment(segment: &str) -> DtmiError {
        DtmiError::BadSegment {
            segment: segment.to_owned(),
        }
    }

    fn bad_version(version: &str) -> DtmiError {
        DtmiError::BadVersion {
            version: version.to_owned(),
        }
    }

    #[test]
    fn parses_the_dtmi_syntax() {
        check(
            "dtmi:com:example:Thermostat;1",
            Ok("dtmi:com:example:Thermostat;1"),
        );
        check("dtmi:a;999999999", Ok("dtmi:a;999999999"));
        check("dtmi:foo_bar:baz33;12", Ok("dtmi:foo_bar:baz33;12"));
        check("dtmi:com:example:Room;1.2", Ok("dtmi:com:example:Room;1.2"));
        check("dtmi:x;1.999999", Ok("dtmi:x;1.999999"));
        check("DTMI:com:x;1", Err(DtmiError::MissingScheme));
        check("urn:com:x;1", Err(DtmiError::MissingScheme));
        check("dtmi:com:example", Err(DtmiError::MissingVersion));
        check("dtmi:;1", Err(DtmiError::EmptyPath));
        check("dtmi:com::x;1", Err(bad_segment("")));
        check("dtmi:com:1x;1", Err(bad_segment("1x")));
        check("dtmi:com:x_;1", Err(bad_segment("x_")));
        check("dtmi:foo:_16:x;1", Err(bad_segment("_16")));
        check("dtmi:com:ex-ample;1", Err(bad_segment("ex-ample")));
        check("dtmi:com:exämple;1", Err(bad_segment("exämple")));
        check("dtmi:com:x;0", Err(bad_version("0")));
        check("dtmi:com:x;01", Err(bad_version("01")));
        check("dtmi:com:x;", Err(bad_version("")));
        check("dtmi:com:x;1000000000", Err(bad_version("1000000000")));
        check("dtmi:com:x;1.0", Err(bad_version("1.0")));
        check("dtmi:com:x;1.1234567", Err(bad_version("1.1234567")));
        check("dtmi:com:x;1.2.3", Err(bad_version("1.2.3")));
        check("dtmi:com:x;v1", Err(bad_version("v1")));
        let long = format!("dtmi:{};1", "a".repeat(2048));
        check(
            &long,
            Err(DtmiError::TooLong {
                len: 2055,
                max: 2048,
            }),
        );
    }

    #[test]
    fn exposes_versions_and_display() {
        let dtmi = Dtmi::parse("dtmi:com:example:Room;3.14").unwrap();
        assert_eq!(dtmi.major_version(), 3);
        assert_eq!(dtmi.minor_version(), Some(14));
        assert_eq!(dtmi.unversioned(), "dtmi:com:example:Room");
        assert_eq!(dtmi.to_string(), "dtmi:com:example:Room;3.14");
        let dtmi: Dtmi = "dtmi:com:example:Thermostat;1".parse().unwrap();
        assert_eq!((dtmi.major_version(), dtmi.minor_version()), (1, None));
    }
}
