//! Turns query text into tokens, each with its character span.
//!
//! The lexer knows no grammar: keywords are ordinary identifiers that the parser compares
//! case-insensitively (so `select`, `Select` and `SELECT` are one keyword). Two lexical rules
//! are Gyre's decisions where IoT Central is silent: a quote inside a string is written twice
//! (`'it''s'`, SQL's convention; backslash has no special meaning), and a DTMI is read as one
//! token when the identifier `dtmi` is directly followed by `:`, because `:` and `;` appear
//! nowhere else in the language.

use super::QueryError;

/// Words that can never be a field or alias name. Contextual words (`devices`, `ASC`, `DESC`,
/// `WINDOW`, `WITHIN_WINDOW`, aggregate names) stay usable as names: telemetry called `count`
/// or `last` is common.
const RESERVED: [&str; 15] = [
    "SELECT", "TOP", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "AS", "GROUP", "BY", "ORDER",
    "TRUE", "FALSE", "NULL",
];

/// The canonical spelling of `word` if it is reserved.
pub(super) fn reserved_word(word: &str) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|reserved| reserved.eq_ignore_ascii_case(word))
        .copied()
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum TokenKind {
    /// A name or keyword: `[A-Za-z_][A-Za-z0-9_]*`.
    Ident(String),
    /// `$` followed by a name, e.g. `$displayName` (the name without `$`).
    System(String),
    Integer(i64),
    Real(f64),
    /// The string's value, quotes removed and doubled quotes undone.
    Str(String),
    Dtmi(String),
    Star,
    Comma,
    Dot,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Eq,
    /// `!=` or `<>`.
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    /// Character offsets into the query: `start..end`.
    pub(super) start: usize,
    pub(super) end: usize,
}

/// All tokens of `chars`, ending with one `Eof` token at `chars.len()`.
pub(super) fn tokenize(chars: &[char]) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut idx = 0;
    while idx < chars.len() {
        let c = chars[idx];
        if c.is_whitespace() {
            idx += 1;
            continue;
        }
        let start = idx;
        let kind = match c {
            '*' => single(&mut idx, TokenKind::Star),
            ',' => single(&mut idx, TokenKind::Comma),
            '.' => single(&mut idx, TokenKind::Dot),
            '(' => single(&mut idx, TokenKind::LParen),
            ')' => single(&mut idx, TokenKind::RParen),
            '[' => single(&mut idx, TokenKind::LBracket),
            ']' => single(&mut idx, TokenKind::RBracket),
            '=' => single(&mut idx, TokenKind::Eq),
            '!' => {
                if chars.get(idx + 1) == Some(&'=') {
                    idx += 2;
                    TokenKind::Ne
                } else {
                    return Err(QueryError::new(start, "expected '=' after '!'"));
                }
            }
            '<' => match chars.get(idx + 1) {
                Some('=') => pair(&mut idx, TokenKind::Le),
                Some('>') => pair(&mut idx, TokenKind::Ne),
                _ => single(&mut idx, TokenKind::Lt),
            },
            '>' => match chars.get(idx + 1) {
                Some('=') => pair(&mut idx, TokenKind::Ge),
                _ => single(&mut idx, TokenKind::Gt),
            },
            '\'' | '"' => TokenKind::Str(string(chars, &mut idx)?),
            '$' => {
                idx += 1;
                let name = word(chars, &mut idx);
                if name.is_empty() {
                    return Err(QueryError::new(
                        start,
                        "expected a name after '$', as in $id",
                    ));
                }
                TokenKind::System(name)
            }
            '-' if chars.get(idx + 1).is_some_and(char::is_ascii_digit) => number(chars, &mut idx)?,
            c if c.is_ascii_digit() => number(chars, &mut idx)?,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let name = word(chars, &mut idx);
                if name == "dtmi" && chars.get(idx) == Some(&':') {
                    while idx < chars.len()
                        && (chars[idx].is_ascii_alphanumeric()
                            || matches!(chars[idx], '_' | ':' | ';' | '.'))
                    {
                        idx += 1;
                    }
                    TokenKind::Dtmi(chars[start..idx].iter().collect())
                } else {
                    TokenKind::Ident(name)
                }
            }
            other => {
                return Err(QueryError::new(
                    start,
                    format!("unexpected character {}", describe_char(other)),
                ))
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: idx,
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: chars.len(),
        end: chars.len(),
    });
    Ok(tokens)
}

fn single(idx: &mut usize, kind: TokenKind) -> TokenKind {
    *idx += 1;
    kind
}

fn pair(idx: &mut usize, kind: TokenKind) -> TokenKind {
    *idx += 2;
    kind
}

fn word(chars: &[char], idx: &mut usize) -> String {
    let start = *idx;
    while *idx < chars.len() && (chars[*idx].is_ascii_alphanumeric() || chars[*idx] == '_') {
        *idx += 1;
    }
    chars[start..*idx].iter().collect()
}

/// A quoted string starting at `*idx`; the closing quote must match the opening one.
fn string(chars: &[char], idx: &mut usize) -> Result<String, QueryError> {
    let start = *idx;
    let quote = chars[start];
    let mut value = String::new();
    *idx += 1;
    loop {
        match chars.get(*idx) {
            None => {
                return Err(QueryError::new(
                    start,
                    format!("unterminated string: no closing {quote} for this one"),
                ))
            }
            Some(&c) if c == quote => {
                if chars.get(*idx + 1) == Some(&quote) {
                    value.push(quote);
                    *idx += 2;
                } else {
                    *idx += 1;
                    return Ok(value);
                }
            }
            Some(&c) => {
                value.push(c);
                *idx += 1;
            }
        }
    }
}

/// `-?digits[.digits][(e|E)[+-]digits]`: an integer when it has neither fraction nor exponent
/// and fits in an `i64`, otherwise a real. A letter right after the number is left for the
/// parser, which reports it in context.
fn number(chars: &[char], idx: &mut usize) -> Result<TokenKind, QueryError> {
    let start = *idx;
    if chars[*idx] == '-' {
        *idx += 1;
    }
    let digits = |idx: &mut usize| {
        let from = *idx;
        while *idx < chars.len() && chars[*idx].is_ascii_digit() {
            *idx += 1;
        }
        *idx > from
    };
    digits(idx);
    let mut integral = true;
    if chars.get(*idx) == Some(&'.') && chars.get(*idx + 1).is_some_and(char::is_ascii_digit) {
        *idx += 1;
        digits(idx);
        integral = false;
    }
    if matches!(chars.get(*idx), Some('e' | 'E')) {
        let mut exponent_idx = *idx + 1;
        if matches!(chars.get(exponent_idx), Some('+' | '-')) {
            exponent_idx += 1;
        }
        if chars.get(exponent_idx).is_some_and(char::is_ascii_digit) {
            *idx = exponent_idx;
            digits(idx);
            integral = false;
        }
    }
    let text: String = chars[start..*idx].iter().collect();
    if integral {
        if let Ok(integer) = text.parse::<i64>() {
            return Ok(TokenKind::Integer(integer));
        }
    }
    match text.parse::<f64>() {
        Ok(real) if real.is_finite() => Ok(TokenKind::Real(real)),
        _ => Err(QueryError::new(
            start,
            format!("the number {text} is too large"),
        )),
    }
}

/// A character as an error message shows it: quoted if printable, else its code point.
pub(super) fn describe_char(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("'{c}'")
    }
}
