//! `GET /deviceTemplates` query parameters: the basic OData subset of `$filter` and `$orderby`
//! that Gyre supports, and the keyset cursor behind `$skiptoken`.
//!
//! IoT Central documents "basic ODATA" without saying which. Gyre supports, over the fields
//! `id` (also written `@id`) and `displayName`:
//! - `$filter`: terms joined by `and`; a term is `<field> eq '<text>'`, `<field> ne '<text>'`,
//!   `<field> eq null`, `<field> ne null`, `startswith(<field>, '<text>')` or
//!   `contains(<field>, '<text>')`. Strings are single-quoted with `''` for a quote; matching
//!   is case-sensitive. Operators and function names are case-insensitive, field names are not.
//!   At most 10 terms and 1,000 characters.
//! - `$orderby`: one field, optionally followed by `asc` (the default) or `desc`. Templates
//!   without a display name sort as if it were empty; ties are broken by id.
//!
//! Errors name the parameter and the character offset at fault.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::dtdl::Dtmi;

/// Longest `$filter` accepted, in characters.
const MAX_FILTER_CHARS: usize = 1000;
/// Most terms in a `$filter`.
const MAX_FILTER_TERMS: usize = 10;

/// A field a template list may be filtered or ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateField {
    Id,
    DisplayName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    StartsWith,
    Contains,
}

/// One `$filter` term. `value` is `None` only for `eq null` and `ne null`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateFilter {
    pub field: TemplateField,
    pub op: FilterOp,
    pub value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateOrder {
    pub field: TemplateField,
    pub descending: bool,
}

/// The parsed `$filter` (all terms must hold) and `$orderby` of a list request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateListQuery {
    filters: Vec<TemplateFilter>,
    order: TemplateOrder,
}

/// A `$filter` or `$orderby` Gyre does not understand (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{parameter} at {offset}: {message}")]
pub struct InvalidListQuery {
    pub parameter: &'static str,
    /// Character offset into the parameter's value.
    pub offset: usize,
    pub message: String,
}

impl TemplateListQuery {
    /// Parses the (percent-decoded) `$filter` and `$orderby` values, each optional.
    pub fn parse(
        filter: Option<&str>,
        orderby: Option<&str>,
    ) -> Result<TemplateListQuery, InvalidListQuery> {
        let filters = match filter {
            Some(text) => parse_filter(text)?,
            None => Vec::new(),
        };
        let order = match orderby {
            Some(text) => parse_orderby(text)?,
            None => TemplateOrder {
                field: TemplateField::Id,
                descending: false,
            },
        };
        Ok(TemplateListQuery { filters, order })
    }

    pub fn filters(&self) -> &[TemplateFilter] {
        &self.filters
    }

    pub fn order(&self) -> TemplateOrder {
        self.order
    }
}

impl Default for TemplateListQuery {
    /// Every template, in id order.
    fn default() -> Self {
        TemplateListQuery {
            filters: Vec::new(),
            order: TemplateOrder {
                field: TemplateField::Id,
                descending: false,
            },
        }
    }
}

/// Where the next page starts: after this template in the list's order. In id order the
/// `$skiptoken` is the last id itself; in display-name order it also carries the sort key
/// (`dn.<base64url of the display name>.<id>`), so paging stays correct even if that template
/// is deleted or renamed between pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateCursor {
    /// The display name sort key, present exactly when the list is ordered by display name.
    pub display_name_key: Option<String>,
    pub id: Dtmi,
}

/// A `$skiptoken` this list did not issue (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("$skiptoken `{token}` is not a cursor of this list and order")]
pub struct InvalidCursor {
    pub token: String,
}

impl TemplateCursor {
    /// The cursor after a template with this id and display name, for `order`.
    pub fn after(id: &Dtmi, display_name: Option<&str>, order: TemplateOrder) -> TemplateCursor {
        TemplateCursor {
            display_name_key: match order.field {
                TemplateField::Id => None,
                TemplateField::DisplayName => Some(display_name.unwrap_or("").to_owned()),
            },
            id: id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        match &self.display_name_key {
            None => self.id.as_str().to_owned(),
            Some(key) => format!("dn.{}.{}", URL_SAFE_NO_PAD.encode(key), self.id),
        }
    }

    pub fn decode(token: &str, order: TemplateOrder) -> Result<TemplateCursor, InvalidCursor> {
        let invalid = || InvalidCursor {
            token: token.to_owned(),
        };
        match order.field {
            TemplateField::Id => Ok(TemplateCursor {
                display_name_key: None,
                id: Dtmi::parse(token).map_err(|_| invalid())?,
            }),
            TemplateField::DisplayName => {
                let rest = token.strip_prefix("dn.").ok_or_else(invalid)?;
                // Base64url has no '.', so the first one ends the key.
                let (key, id) = rest.split_once('.').ok_or_else(invalid)?;
                let key = URL_SAFE_NO_PAD.decode(key).map_err(|_| invalid())?;
                Ok(TemplateCursor {
                    display_name_key: Some(String::from_utf8(key).map_err(|_| invalid())?),
                    id: Dtmi::parse(id).map_err(|_| invalid())?,
                })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

/// Splits into (character offset, token).
fn tokenize(parameter: &'static str, text: &str) -> Result<Vec<(usize, Token)>, InvalidListQuery> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut idx = 0;
    while idx < chars.len() {
        let start = idx;
        let c = chars[idx];
        match c {
            c if c.is_whitespace() => idx += 1,
            '(' | ')' | ',' => {
                tokens.push((
                    start,
                    match c {
                        '(' => Token::Open,
                        ')' => Token::Close,
                        _ => Token::Comma,
                    },
                ));
                idx += 1;
            }
            '\'' => {
                let mut value = String::new();
                idx += 1;
                loop {
                    match chars.get(idx) {
                        None => {
                            return Err(InvalidListQuery {
                                parameter,
                                offset: start,
                                message: "unterminated string".to_owned(),
                            })
                        }
                        Some('\'') if chars.get(idx + 1) == Some(&'\'') => {
                            value.push('\'');
                            idx += 2;
                        }
                        Some('\'') => {
                            idx += 1;
                            break;
                        }
                        Some(&other) => {
                            value.push(other);
                            idx += 1;
                        }
                    }
                }
                tokens.push((start, Token::Text(value)));
            }
            c if c.is_ascii_alphanumeric() || c == '@' || c == '_' => {
                while idx < chars.len()
                    && (chars[idx].is_ascii_alphanumeric() || matches!(chars[idx], '@' | '_'))
                {
                    idx += 1;
                }
                tokens.push((start, Token::Word(chars[start..idx].iter().collect())));
            }
            other => {
                return Err(InvalidListQuery {
                    parameter,
                    offset: start,
                    message: format!("unexpected character `{other}`"),
                })
            }
        }
    }
    Ok(tokens)
}

struct Cursor<'a> {
    parameter: &'static str,
    tokens: &'a [(usize, Token)],
    idx: usize,
    end: usize,
}

impl Cursor<'_> {
    fn error(&self, message: impl Into<String>) -> InvalidListQuery {
        InvalidListQuery {
            parameter: self.parameter,
            offset: self
                .tokens
                .get(self.idx)
                .map_or(self.end, |(offset, _)| *offset),
            message: message.into(),
        }
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.idx).map(|(_, token)| token);
        self.idx += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.idx).map(|(_, token)| token)
    }

    fn field(&mut self) -> Result<TemplateField, InvalidListQuery> {
        let field = match self.peek() {
            Some(Token::Word(word)) if word == "id" || word == "@id" => TemplateField::Id,
            Some(Token::Word(word)) if word == "displayName" => TemplateField::DisplayName,
            _ => return Err(self.error("expected a field: `id` or `displayName`")),
        };
        self.idx += 1;
        Ok(field)
    }

    fn expect(&mut self, expected: Token, what: &str) -> Result<(), InvalidListQuery> {
        if self.peek() == Some(&expected) {
            self.idx += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    fn text(&mut self) -> Result<String, InvalidListQuery> {
        match self.peek() {
            Some(Token::Text(text)) => {
                let text = text.clone();
                self.idx += 1;
                Ok(text)
            }
            _ => Err(self.error("expected a quoted string such as 'Thermostat'")),
        }
    }
}

fn word_is(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
}

fn parse_filter(text: &str) -> Result<Vec<TemplateFilter>, InvalidListQuery> {
    const PARAMETER: &str = "$filter";
    let n_chars = text.chars().count();
    if n_chars > MAX_FILTER_CHARS {
        return Err(InvalidListQuery {
            parameter: PARAMETER,
            offset: MAX_FILTER_CHARS,
            message: format!("at most {MAX_FILTER_CHARS} characters, found {n_chars}"),
        });
    }
    let tokens = tokenize(PARAMETER, text)?;
    let mut cursor = Cursor {
        parameter: PARAMETER,
        tokens: &tokens,
        idx: 0,
        end: n_chars,
    };
    let mut filters = Vec::new();
    loop {
        if filters.len() == MAX_FILTER_TERMS {
            return Err(cursor.error(format!("at most {MAX_FILTER_TERMS} terms")));
        }
        filters.push(parse_term(&mut cursor)?);
        match cursor.peek() {
            None => return Ok(filters),
            token if word_is(token, "and") => cursor.idx += 1,
            _ => return Err(cursor.error("expected `and` or the end of the filter")),
        }
    }
}

fn parse_term(cursor: &mut Cursor<'_>) -> Result<TemplateFilter, InvalidListQuery> {
    let function = match cursor.peek() {
        token if word_is(token, "startswith") => Some(FilterOp::StartsWith),
        token if word_is(token, "contains") => Some(FilterOp::Contains),
        _ => None,
    };
    if let Some(op) = function {
        cursor.idx += 1;
        cursor.expect(Token::Open, "`(`")?;
        let field = cursor.field()?;
        cursor.expect(Token::Comma, "`,`")?;
        let value = cursor.text()?;
        cursor.expect(Token::Close, "`)`")?;
        return Ok(TemplateFilter {
            field,
            op,
            value: Some(value),
        });
    }
    let field = cursor.field()?;
    let op = match cursor.peek() {
        token if word_is(token, "eq") => FilterOp::Eq,
        token if word_is(token, "ne") => FilterOp::Ne,
        _ => return Err(cursor.error("expected `eq` or `ne`")),
    };
    cursor.idx += 1;
    let value = if word_is(cursor.peek(), "null") {
        cursor.next();
        None
    } else {
        Some(cursor.text()?)
    };
    Ok(TemplateFilter { field, op, value })
}

fn parse_orderby(text: &str) -> Result<TemplateOrder, InvalidListQuery> {
    const PARAMETER: &str = "$orderby";
    let tokens = tokenize(PARAMETER, text)?;
    let mut cursor = Cursor {
        parameter: PARAMETER,
        tokens: &tokens,
        idx: 0,
        end: text.chars().count(),
    };
    let field = cursor.field()?;
    let descending = match cursor.peek() {
        None => false,
        token if word_is(token, "asc") => {
            cursor.idx += 1;
            false
        }
        token if word_is(token, "desc") => {
            cursor.idx += 1;
            true
        }
        _ => return Err(cursor.error("expected `asc`, `desc` or the end")),
    };
    if cursor.peek().is_some() {
        return Err(cursor.error("Gyre orders device templates by one field only"));
    }
    Ok(TemplateOrder { field, descending })
}
