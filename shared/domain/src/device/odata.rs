//! The "basic OData" of `GET /devices`: `$filter` and `$orderby`, parsed into a
//! [`DeviceQuery`] that `store::devices` turns into SQL with bound parameters, and the keyset
//! cursor (`$skiptoken`) for each ordering.
//!
//! IoT Central documents only "basic ODATA (`$top`, `$filter`, `$orderby`)". Gyre's subset:
//! - `$filter`: comparisons joined by `and`; each is `<field> eq <value>` or
//!   `<field> ne <value>`. Fields: `id`, `displayName`, `template` (string values in single
//!   quotes, `''` for a quote; `template` also takes `null`, meaning unassigned), and `enabled`,
//!   `provisioned`, `simulated` (`true` or `false`). Operators and literals are lower-case, as
//!   OData spells them; field names are case-sensitive. At most [`MAX_CONDITIONS`] comparisons.
//!   `ne` keeps rows where the field is null (an unassigned device is `template ne 'x'`).
//! - `$orderby`: `id` or `displayName`, optionally followed by `asc` (default) or `desc`;
//!   ties on `displayName` break by `id` in the same direction.
//!
//! Anything else (`or`, `not`, parentheses, functions, other fields or operators) is refused
//! with a message saying where and what was expected.
//!
//! The cursor for `id` order is the last id itself, as for every other collection. For
//! `displayName` order it is the last row's display name and id, as base64url of a JSON array,
//! because a keyset needs both; the client treats both as opaque.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine as _;

use super::DeviceId;

/// Most comparisons one `$filter` may hold.
pub const MAX_CONDITIONS: usize = 16;

/// A device field `$filter` can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterField {
    Id,
    DisplayName,
    Template,
    Enabled,
    Provisioned,
    Simulated,
}

impl FilterField {
    fn parse(name: &str) -> Option<FilterField> {
        Some(match name {
            "id" => FilterField::Id,
            "displayName" => FilterField::DisplayName,
            "template" => FilterField::Template,
            "enabled" => FilterField::Enabled,
            "provisioned" => FilterField::Provisioned,
            "simulated" => FilterField::Simulated,
            _ => return None,
        })
    }

    fn is_boolean(self) -> bool {
        matches!(
            self,
            FilterField::Enabled | FilterField::Provisioned | FilterField::Simulated
        )
    }
}

/// A literal a field is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterValue {
    Text(String),
    Bool(bool),
    Null,
}

/// `<field> eq <value>` (`equal: true`) or `<field> ne <value>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub field: FilterField,
    pub equal: bool,
    pub value: FilterValue,
}

/// The ordering of a device listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrderBy {
    #[default]
    Id,
    DisplayName,
}

/// Where the next page starts: after this row, in the query's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceCursor {
    Id(DeviceId),
    DisplayName { display_name: String, id: DeviceId },
}

/// A parsed device listing: every condition must hold; rows come in `order_by`
/// (descending when `descending`), starting after `after`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeviceQuery {
    pub conditions: Vec<Condition>,
    pub order_by: OrderBy,
    pub descending: bool,
    pub after: Option<DeviceCursor>,
}

/// Why `$filter`, `$orderby` or `$skiptoken` was refused. `at` is a 1-based character position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDeviceQuery {
    #[error("$filter: at character {at}: {reason}")]
    Filter { at: usize, reason: String },
    #[error("$filter: at most {MAX_CONDITIONS} comparisons are supported")]
    TooManyConditions,
    #[error(
        "$orderby: `{found}` is not supported; use `id` or `displayName`, optionally followed \
         by `asc` or `desc`"
    )]
    OrderBy { found: String },
    #[error("$skiptoken is not a token this listing issued")]
    SkipToken,
}

impl DeviceQuery {
    /// Parses the three query parameters; each may be absent.
    pub fn parse(
        filter: Option<&str>,
        order_by: Option<&str>,
        skip_token: Option<&str>,
    ) -> Result<DeviceQuery, InvalidDeviceQuery> {
        let conditions = match filter {
            Some(filter) if !filter.trim().is_empty() => parse_filter(filter)?,
            _ => Vec::new(),
        };
        let (order_by, descending) = match order_by {
            Some(raw) if !raw.trim().is_empty() => parse_order_by(raw)?,
            _ => (OrderBy::Id, false),
        };
        let after = skip_token
            .map(|token| DeviceCursor::parse(token, order_by))
            .transpose()?;
        Ok(DeviceQuery {
            conditions,
            order_by,
            descending,
            after,
        })
    }
}

impl DeviceCursor {
    /// The cursor after a row with this id and display name, for `order_by`.
    pub fn after_row(order_by: OrderBy, id: &DeviceId, display_name: &str) -> DeviceCursor {
        match order_by {
            OrderBy::Id => DeviceCursor::Id(id.clone()),
            OrderBy::DisplayName => DeviceCursor::DisplayName {
                display_name: display_name.to_owned(),
                id: id.clone(),
            },
        }
    }

    /// The `$skiptoken` text.
    pub fn encode(&self) -> String {
        match self {
            DeviceCursor::Id(id) => id.as_str().to_owned(),
            DeviceCursor::DisplayName { display_name, id } => {
                // Serializing two strings cannot fail.
                let json = serde_json::to_string(&[display_name.as_str(), id.as_str()])
                    .unwrap_or_default();
                BASE64URL.encode(json)
            }
        }
    }

    fn parse(token: &str, order_by: OrderBy) -> Result<DeviceCursor, InvalidDeviceQuery> {
        match order_by {
            OrderBy::Id => DeviceId::parse(token)
                .map(DeviceCursor::Id)
                .map_err(|_| InvalidDeviceQuery::SkipToken),
            OrderBy::DisplayName => {
                let json = BASE64URL
                    .decode(token)
                    .map_err(|_| InvalidDeviceQuery::SkipToken)?;
                let [display_name, id]: [String; 2] =
                    serde_json::from_slice(&json).map_err(|_| InvalidDeviceQuery::SkipToken)?;
                let id = DeviceId::parse(&id).map_err(|_| InvalidDeviceQuery::SkipToken)?;
                Ok(DeviceCursor::DisplayName { display_name, id })
            }
        }
    }
}

fn parse_order_by(raw: &str) -> Result<(OrderBy, bool), InvalidDeviceQuery> {
    let words: Vec<&str> = raw.split_whitespace().collect();
    let order_by = match words.first() {
        Some(&"id") => OrderBy::Id,
        Some(&"displayName") => OrderBy::DisplayName,
        _ => None.ok_or_else(|| InvalidDeviceQuery::OrderBy {
            found: raw.to_owned(),
        })?,
    };
    let descending = match words.get(1..) {
        Some([]) | Some(["asc"]) => false,
        Some(["desc"]) => true,
        _ => {
            return Err(InvalidDeviceQuery::OrderBy {
                found: raw.to_owned(),
            })
        }
    };
    Ok((order_by, descending))
}

/// One token of `$filter`, with its 1-based character position.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
}

fn tokenize(raw: &str) -> Result<Vec<(usize, Token)>, InvalidDeviceQuery> {
    let chars: Vec<char> = raw.chars().collect();
    let mut tokens = Vec::new();
    let mut idx = 0;
    while idx < chars.len() {
        let start = idx + 1;
        let c = chars[idx];
        if c.is_whitespace() {
            idx += 1;
        } else if c == '\'' {
            let mut text = String::new();
            idx += 1;
            loop {
                match (chars.get(idx), chars.get(idx + 1)) {
                    (Some('\''), Some('\'')) => {
                        text.push('\'');
                        idx += 2;
                    }
                    (Some('\''), _) => {
                        idx += 1;
                        break;
                    }
                    (Some(c), _) => {
                        text.push(*c);
                        idx += 1;
                    }
                    (None, _) => {
                        return Err(InvalidDeviceQuery::Filter {
                            at: start,
                            reason: "unterminated string; strings are in single quotes, with \
                                     '' for a quote"
                                .to_owned(),
                        })
                    }
                }
            }
            tokens.push((start, Token::Text(text)));
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(c) = chars
                .get(idx)
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                word.push(*c);
                idx += 1;
            }
            tokens.push((start, Token::Word(word)));
        } else {
            return Err(InvalidDeviceQuery::Filter {
                at: start,
                reason: format!(
                    "unexpected `{c}`; only `<field> eq|ne <value>` joined by `and` is supported"
                ),
            });
        }
    }
    Ok(tokens)
}

fn parse_filter(raw: &str) -> Result<Vec<Condition>, InvalidDeviceQuery> {
    let tokens = tokenize(raw)?;
    let end = raw.chars().count() + 1;
    let mut tokens = tokens.into_iter().peekable();
    let mut conditions = Vec::new();
    let error = |at: usize, reason: String| InvalidDeviceQuery::Filter { at, reason };
    loop {
        // <field>
        let field = match tokens.next() {
            Some((at, Token::Word(name))) => FilterField::parse(&name).ok_or_else(|| {
                error(
                    at,
                    format!(
                        "unknown field `{name}`; use id, displayName, template, enabled, \
                         provisioned or simulated"
                    ),
                )
            })?,
            Some((at, Token::Text(_))) => return Err(error(at, "expected a field name".into())),
            None => return Err(error(end, "expected a field name".into())),
        };
        // eq | ne
        let equal = match tokens.next() {
            Some((_, Token::Word(op))) if op == "eq" => true,
            Some((_, Token::Word(op))) if op == "ne" => false,
            Some((at, _)) => return Err(error(at, "expected `eq` or `ne`".into())),
            None => return Err(error(end, "expected `eq` or `ne`".into())),
        };
        // <value>
        let (at, value) = match tokens.next() {
            Some((at, Token::Text(text))) => (at, FilterValue::Text(text)),
            Some((at, Token::Word(word))) => match word.as_str() {
                "true" => (at, FilterValue::Bool(true)),
                "false" => (at, FilterValue::Bool(false)),
                "null" => (at, FilterValue::Null),
                _ => {
                    return Err(error(
                        at,
                        format!("expected a value ('text', true, false or null), found `{word}`"),
                    ))
                }
            },
            None => return Err(error(end, "expected a value".into())),
        };
        let fits = match (&value, field.is_boolean()) {
            (FilterValue::Bool(_), true) => true,
            (FilterValue::Text(_), false) => true,
            (FilterValue::Null, false) => field == FilterField::Template,
            _ => false,
        };
        if !fits {
            let expected = if field.is_boolean() {
                "true or false"
            } else if field == FilterField::Template {
                "a 'quoted string' or null"
            } else {
                "a 'quoted string'"
            };
            return Err(error(at, format!("this field takes {expected}")));
        }
        conditions.push(Condition {
            field,
            equal,
            value,
        });
        if conditions.len() > MAX_CONDITIONS {
            return Err(InvalidDeviceQuery::TooManyConditions);
        }
        match tokens.next() {
            None => return Ok(conditions),
            Some((_, Token::Word(word))) if word == "and" => continue,
            Some((at, _)) => {
                return Err(error(
                    at,
                    "expected `and` or the end; `or`, `not` and parentheses are not supported"
                        .into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(filter: &str, expected: Result<Vec<Condition>, &str>) {
        let parsed = DeviceQuery::parse(Some(filter), None, None)
            .map(|query| query.conditions)
            .map_err(|error| error.to_string());
        match expected {
            Ok(expected) => assert_eq!(parsed, Ok(expected), "{filter}"),
            Err(expected) => {
                let error = parsed.unwrap_err();
                assert_eq!(error, expected, "{filter}");
            }
        }
    }

    fn cond(field: FilterField, equal: bool, value: FilterValue) -> Condition {
        Condition {
            field,
            equal,
            value,
        }
    }

    fn text(raw: &str) -> FilterValue {
        FilterValue::Text(raw.to_owned())
    }

    #[test]
    fn filters_in_the_supported_subset_parse() {
        use FilterField::*;
        check("id eq 'd1'", Ok(vec![cond(Id, true, text("d1"))]));
        check(
            "  displayName ne 'O''Brien''s'  ",
            Ok(vec![cond(DisplayName, false, text("O'Brien's"))]),
        );
        check(
            "template eq 'dtmi:com:example:Thermostat;1' and enabled eq true and simulated ne false",
            Ok(vec![
                cond(Template, true, text("dtmi:com:example:Thermostat;1")),
                cond(Enabled, true, FilterValue::Bool(true)),
                cond(Simulated, false, FilterValue::Bool(false)),
            ]),
        );
        check(
            "template eq null",
            Ok(vec![cond(Template, true, FilterValue::Null)]),
        );
        check(
            "provisioned eq false",
            Ok(vec![cond(Provisioned, true, FilterValue::Bool(false))]),
        );
        check(
            "id eq ''' or 1=1 --'",
            Ok(vec![cond(Id, true, text("' or 1=1 --"))]),
        );
        check("", Ok(vec![]));
    }

    #[test]
    fn filters_outside_the_subset_say_where_and_why() {
        check("id eq 'd1' or id eq 'd2'", Err("$filter: at character 12: expected `and` or the end; `or`, `not` and parentheses are not supported"));
        check("Id eq 'd1'", Err("$filter: at character 1: unknown field `Id`; use id, displayName, template, enabled, provisioned or simulated"));
        check(
            "id gt 'd1'",
            Err("$filter: at character 4: expected `eq` or `ne`"),
        );
        check("id eq", Err("$filter: at character 6: expected a value"));
        check("id eq 'd1", Err("$filter: at character 7: unterminated string; strings are in single quotes, with '' for a quote"));
        check(
            "enabled eq 'true'",
            Err("$filter: at character 12: this field takes true or false"),
        );
        check(
            "id eq null",
            Err("$filter: at character 7: this field takes a 'quoted string'"),
        );
        check("template eq 1", Err("$filter: at character 13: expected a value ('text', true, false or null), found `1`"));
        check("simulated eq True", Err("$filter: at character 14: expected a value ('text', true, false or null), found `True`"));
        check("(id eq 'a')", Err("$filter: at character 1: unexpected `(`; only `<field> eq|ne <value>` joined by `and` is supported"));
        check("startswith(id, 'a')", Err("$filter: at character 11: unexpected `(`; only `<field> eq|ne <value>` joined by `and` is supported"));
        check("startswith eq 'a'", Err("$filter: at character 1: unknown field `startswith`; use id, displayName, template, enabled, provisioned or simulated"));
        check(
            "id eq 'a' and",
            Err("$filter: at character 14: expected a field name"),
        );
        check("id eq 'a'; DROP TABLE devices", Err("$filter: at character 10: unexpected `;`; only `<field> eq|ne <value>` joined by `and` is supported"));
        let many = vec!["enabled eq true"; MAX_CONDITIONS + 1].join(" and ");
        check(&many, Err("$filter: at most 16 comparisons are supported"));
    }

    #[test]
    fn order_by_takes_a_field_and_a_direction() {
        let check = |raw: &str, expected: Result<(OrderBy, bool), ()>| {
            let parsed = DeviceQuery::parse(None, Some(raw), None)
                .map(|query| (query.order_by, query.descending))
                .map_err(|_| ());
            assert_eq!(parsed, expected, "{raw}");
        };
        check("id", Ok((OrderBy::Id, false)));
        check("id desc", Ok((OrderBy::Id, true)));
        check("displayName asc", Ok((OrderBy::DisplayName, false)));
        check(" displayName  desc ", Ok((OrderBy::DisplayName, true)));
        check("", Ok((OrderBy::Id, false)));
        check("template", Err(()));
        check("id DESC", Err(()));
        check("id desc, displayName", Err(()));
        check("id sideways", Err(()));
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let id = DeviceId::parse("d'1").unwrap();
        for order_by in [OrderBy::Id, OrderBy::DisplayName] {
            let cursor = DeviceCursor::after_row(order_by, &id, "Name, with \"quotes\"");
            let parsed = DeviceQuery::parse(None, None, None).unwrap();
            assert_eq!(parsed.after, None);
            assert_eq!(DeviceCursor::parse(&cursor.encode(), order_by), Ok(cursor));
        }
        let check = |token: &str, order_by: OrderBy| {
            assert_eq!(
                DeviceCursor::parse(token, order_by),
                Err(InvalidDeviceQuery::SkipToken),
                "{token}"
            );
        };
        check("a b", OrderBy::Id);
        check("d1", OrderBy::DisplayName);
        check(&BASE64URL.encode("[\"x\"]"), OrderBy::DisplayName);
        check(&BASE64URL.encode("[\"x\", \"a b\"]"), OrderBy::DisplayName);
    }
}
