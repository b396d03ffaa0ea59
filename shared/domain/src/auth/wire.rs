//! The JSON of `/api/apiTokens`, IoT Central's `ApiToken`: `{id, token, expiry, roles:
//! [{role, organization}]}`, and its conversion to and from the domain types.
//!
//! `token` appears only in the response to the `PUT` that created the token; list and get leave
//! it out (IoT Central: "the token value will never be returned"). `expiry` is an RFC 3339
//! date-time; the request may omit it (one year, as IoT Central defaults). `id` and `token` in a
//! request body are read-only and ignored, like every unknown field.
//!
//! This file also holds a small RFC 3339 parser, because `time` only formats today; it belongs in
//! `time` and should move there when that module grows a parser.
//!
//! Not owned here: status codes, paging (`nextLink`) and the collection envelope, which the
//! component adds.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::roles::{OrganizationId, RoleAssignment, RoleId};
use super::token::{default_expiry, IssuedToken, TokenRecord};
use crate::time::Timestamp;

/// The body of `PUT /apiTokens/{tokenId}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenBody {
    pub roles: Vec<RoleAssignmentBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// IoT Central's `RoleAssignment`: `{role, organization?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignmentBody {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
}

/// A token as the API returns it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    /// The `SharedAccessSignature ...` value; only in the create response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub expiry: String,
    pub roles: Vec<RoleAssignmentBody>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expiry", &self.expiry)
            .field("roles", &self.roles)
            .finish()
    }
}

impl ApiToken {
    /// For list and get: everything but the token.
    pub fn from_record(record: &TokenRecord) -> ApiToken {
        ApiToken {
            id: record.id().as_str().to_owned(),
            token: None,
            expiry: record.expiry().to_rfc3339(),
            roles: record
                .roles()
                .iter()
                .map(RoleAssignmentBody::from)
                .collect(),
        }
    }

    /// For the create response: the one time the token is shown.
    pub fn created(issued: &IssuedToken) -> ApiToken {
        ApiToken {
            token: Some(issued.header_value.clone()),
            ..ApiToken::from_record(&issued.record)
        }
    }
}

impl From<&RoleAssignment> for RoleAssignmentBody {
    fn from(assignment: &RoleAssignment) -> RoleAssignmentBody {
        RoleAssignmentBody {
            role: assignment.role.as_str().to_owned(),
            organization: assignment
                .organization
                .as_ref()
                .map(|organization| organization.as_str().to_owned()),
        }
    }
}

/// A create request, parsed; hand it to `token::issue` with the id from the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub roles: Vec<RoleAssignment>,
    /// `None` when the body named no expiry; see [`TokenRequest::expiry_or_default`].
    pub expiry: Option<Timestamp>,
}

impl TokenRequest {
    pub fn expiry_or_default(&self, now: Timestamp) -> Timestamp {
        self.expiry.unwrap_or_else(|| default_expiry(now))
    }
}

/// Why a create body is invalid (400). Fields name the JSON path of the offending value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidApiTokenBody {
    #[error("expiry: `{value}` is not an RFC 3339 date-time")]
    Expiry { value: String },
    #[error("roles[{idx}].role: `{value}` is not a role id (a GUID)")]
    RoleId { idx: usize, value: String },
    #[error("roles[{idx}].organization: `{value}` is not an organization id")]
    OrganizationId { idx: usize, value: String },
}

impl ApiTokenBody {
    /// Checks the shapes of the values; whether the roles exist is `token::issue`'s decision.
    pub fn parse(&self) -> Result<TokenRequest, InvalidApiTokenBody> {
        let expiry = match &self.expiry {
            None => None,
            Some(value) => {
                Some(
                    parse_rfc3339(value).ok_or_else(|| InvalidApiTokenBody::Expiry {
                        value: value.clone(),
                    })?,
                )
            }
        };
        let mut roles = Vec::with_capacity(self.roles.len());
        for (idx, body) in self.roles.iter().enumerate() {
            let role = RoleId::parse(&body.role).map_err(|_| InvalidApiTokenBody::RoleId {
                idx,
                value: body.role.clone(),
            })?;
            let organization = match &body.organization {
                None => None,
                Some(value) => Some(OrganizationId::parse(value).map_err(|_| {
                    InvalidApiTokenBody::OrganizationId {
                        idx,
                        value: value.clone(),
                    }
                })?),
            };
            roles.push(RoleAssignment { role, organization });
        }
        Ok(TokenRequest { roles, expiry })
    }
}

/// Parses an RFC 3339 date-time (`2026-11-26T12:47:05.120Z`, `...T13:47:05+01:00`, lower-case
/// `t`/`z` allowed) to millisecond precision: extra fraction digits are truncated. Leap seconds
/// (`:60`) are refused rather than guessed at.
fn parse_rfc3339(raw: &str) -> Option<Timestamp> {
    let bytes = raw.as_bytes();
    // Fixed part: "YYYY-MM-DDTHH:MM:SS" is 19 bytes.
    if bytes.len() < 20 || !raw.is_ascii() {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = &raw[range];
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut rest = &raw[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let n_digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n_digits == 0 {
            return None;
        }
        let mut padded = fraction[..n_digits.min(3)].to_owned();
        while padded.len() < 3 {
            padded.push('0');
        }
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[n_digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let offset = &rest[1..];
            if offset.len() != 5 || offset.as_bytes()[2] != b':' {
                return None;
            }
            let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            let (hours, minutes) = (&offset[0..2], &offset[3..5]);
            if !all_digits(hours) || !all_digits(minutes) {
                return None;
            }
            let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
    };

    let days = days_from_civil(year, month, day);
    let local_millis = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + millis;
    Some(Timestamp::from_unix_millis(
        local_millis - offset_minutes * 60_000,
    ))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date; the inverse of `time`'s conversion
/// (Howard Hinnant's `days_from_civil`: 400-year eras starting on March 1st).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::{issue, ApiTokenId, ApplicationId, ADMINISTRATOR, OPERATOR};

    const NOW: i64 = 1_764_161_225_120; // 2025-11-26T12:47:05.120Z

    fn at(unix_millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(unix_millis)
    }

    #[test]
    fn parses_rfc3339_date_times() {
        let check = |raw: &str, expected: Option<i64>| {
            assert_eq!(parse_rfc3339(raw), expected.map(at), "{raw:?}");
        };
        check("1970-01-01T00:00:00Z", Some(0));
        check("1970-01-01T00:00:00.000Z", Some(0));
        check("2025-11-26T12:47:05.120Z", Some(NOW));
        check("2025-11-26t12:47:05.12z", Some(NOW));
        check("2025-11-26T12:47:05.1209999Z", Some(NOW));
        check("2025-11-26T13:47:05.120+01:00", Some(NOW));
        check("2025-11-26T07:17:05.120-05:30", Some(NOW));
        check("1969-12-31T23:59:59.999Z", Some(-1));
        check("2000-02-29T00:00:00Z", Some(951_782_400_000));
        check("2020-10-18T18:30:40.227Z", Some(1_603_045_840_227));
        check("2100-01-01T00:00:00Z", Some(4_102_444_800_000));
        check("", None);
        check("2025-11-26", None);
        check("2025-11-26T12:47:05", None);
        check("2025-11-26 12:47:05Z", None);
        check("2025-11-26T12:47:05.Z", None);
        check("2025-11-26T12:47:05.120", None);
        check("2025-11-26T12:47:05+0100", None);
        check("2025-11-26T12:47:05+24:00", None);
        check("2025-11-26T12:47:05Zjunk", None);
        check("2025-13-01T00:00:00Z", None);
        check("2025-00-01T00:00:00Z", None);
        check("2025-02-29T00:00:00Z", None);
        check("1900-02-29T00:00:00Z", None);
        check("2025-04-31T00:00:00Z", None);
        check("2025-11-26T24:00:00Z", None);
        check("2025-11-26T12:60:00Z", None);
        check("2016-12-31T23:59:60Z", None);
        check("+025-11-26T12:47:05Z", None);
        check("2025-11-26T12:47:0\u{e9}Z", None);
    }

    #[test]
    fn parsing_inverts_formatting() {
        for millis in [
            0,
            -1,
            951_782_400_000,
            NOW,
            4_102_444_800_000,
            253_402_300_799_999,
        ] {
            let formatted = at(millis).to_rfc3339();
            assert_eq!(parse_rfc3339(&formatted), Some(at(millis)), "{formatted}");
        }
    }

    #[test]
    fn create_bodies_parse_like_iot_centrals_example() {
        // The request of IoT Central's `apitoken_create.json`, with an expiry added.
        let body: ApiTokenBody = serde_json::from_value(json!({
            "roles": [{ "role": "ca310b8d-2f4a-44e0-a36e-957c202cd8d4" }],
            "expiry": "2026-11-26T12:47:05.120Z",
            "id": "ignored",
            "token": "ignored",
        }))
        .unwrap();
        let request = body.parse().unwrap();
        assert_eq!(
            request,
            TokenRequest {
                roles: vec![RoleAssignment::app_wide(&ADMINISTRATOR)],
                expiry: Some(at(1_795_697_225_120)),
            }
        );
        assert_eq!(request.expiry_or_default(at(NOW)), at(1_795_697_225_120));

        let without_expiry: ApiTokenBody = serde_json::from_value(json!({
            "roles": [{ "role": "AE2C9854-393B-4F97-8C42-479D70CE626E", "organization": "seattle" }],
        }))
        .unwrap();
        let request = without_expiry.parse().unwrap();
        assert_eq!(request.roles[0].role, OPERATOR.role_id());
        assert_eq!(
            request.roles[0].organization.as_ref().unwrap().as_str(),
            "seattle"
        );
        assert_eq!(
            request.expiry_or_default(at(NOW)).to_rfc3339(),
            "2026-11-26T12:47:05.120Z"
        );
    }

    #[test]
    fn invalid_create_bodies_name_the_offending_value() {
        let check = |body: serde_json::Value, expected: InvalidApiTokenBody| {
            let body: ApiTokenBody = serde_json::from_value(body).unwrap();
            assert_eq!(body.parse(), Err(expected));
        };
        let admin = "ca310b8d-2f4a-44e0-a36e-957c202cd8d4";
        check(
            json!({ "roles": [{ "role": admin }], "expiry": "tomorrow" }),
            InvalidApiTokenBody::Expiry {
                value: "tomorrow".into(),
            },
        );
        check(
            json!({ "roles": [{ "role": admin }, { "role": "admin" }] }),
            InvalidApiTokenBody::RoleId {
                idx: 1,
                value: "admin".into(),
            },
        );
        check(
            json!({ "roles": [{ "role": admin, "organization": "Seattle" }] }),
            InvalidApiTokenBody::OrganizationId {
                idx: 0,
                value: "Seattle".into(),
            },
        );
        assert_eq!(
            InvalidApiTokenBody::RoleId {
                idx: 1,
                value: "admin".into()
            }
            .to_string(),
            "roles[1].role: `admin` is not a role id (a GUID)"
        );
        // Missing roles is a JSON shape error, for the component's 400.
        assert!(serde_json::from_value::<ApiTokenBody>(json!({ "expiry": null })).is_err());
    }

    #[test]
    fn the_token_is_shown_on_create_only() {
        let issued = issue(
            ApiTokenId::parse("testtoken").unwrap(),
            &ApplicationId::parse("app").unwrap(),
            at(1_795_697_225_120),
            vec![RoleAssignment::app_wide(&ADMINISTRATOR)],
            at(NOW),
            [7; 32],
        )
        .unwrap();
        let created = serde_json::to_value(ApiToken::created(&issued)).unwrap();
        assert_eq!(
            created,
            json!({
                "id": "testtoken",
                "token": issued.header_value,
                "expiry": "2026-11-26T12:47:05.120Z",
                "roles": [{ "role": "ca310b8d-2f4a-44e0-a36e-957c202cd8d4" }],
            })
        );
        let listed = serde_json::to_value(ApiToken::from_record(&issued.record)).unwrap();
        assert_eq!(
            listed,
            json!({
                "id": "testtoken",
                "expiry": "2026-11-26T12:47:05.120Z",
                "roles": [{ "role": "ca310b8d-2f4a-44e0-a36e-957c202cd8d4" }],
            })
        );
        let debug = format!("{:?}", ApiToken::created(&issued));
        assert!(!debug.contains("SharedAccessSignature"), "{debug}");
    }
}
