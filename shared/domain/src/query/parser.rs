//! The recursive-descent parser: tokens to a checked syntax tree, for both dialects.
//!
//! Grammar (keywords case-insensitive; `[]` optional, `{}` repeated):
//! ```text
//! statement  = SELECT [TOP integer] select FROM source [WHERE or]
//!              [GROUP BY group {, group}] [ORDER BY order {, order}]
//! select     = '*'                                  (device filters only)
//!            | item {, item}                        (queries only)
//! item       = (aggregate '(' field ')' | field) [AS name]
//! source     = 'devices' (device filters) | DTMI (queries)
//! or         = and {OR and}
//! and        = primary {AND primary}
//! primary    = '(' or ')' | WITHIN_WINDOW '(' duration | 'start/end' ')'
//!            | field comparison value | field IN ('[' values ']' | '(' values ')')
//! field      = '$'name | name ['.' name]
//! group      = WINDOW '(' duration ')' | $id
//! order      = (field | alias) [ASC | DESC]
//! ```
//! Semantic checks run as the tree is built, while the offending token's position is at hand:
//! the limits, operand types of `$` fields, alias rules, the place of `WITHIN_WINDOW` (a
//! top-level conjunct, at most once) and SQL's rule that with aggregates every other SELECT
//! item must be a GROUP BY key. The parser does not know templates, so whether `temperature` is
//! telemetry or a property is left to the executor.

use super::ast::{
    Aggregate, Comparison, Condition, Direction, Field, GroupKey, Literal, Name, OrderItem,
    OrderKey, SelectItem, Selected, SystemField, SystemKind, TimeWindow,
};
use super::duration::parse_timestamp;
use super::lexer::{reserved_word, tokenize, Token, TokenKind};
use super::{Duration, Limits, QueryError, TimeRange};
use crate::dtdl::Dtmi;

/// Parentheses may nest this deep. Not an IoT Central limit (350 characters bound it there);
/// it keeps the recursion shallow when a deployment raises `max_chars`.
pub(super) const MAX_NESTING: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    /// The query API: `SELECT items FROM <dtmi> ...`.
    Query,
    /// Device groups and exports: `SELECT * FROM devices [WHERE ...]`.
    DeviceFilter,
}

/// A statement as parsed, before the caller wraps it in its public type.
pub(super) struct Parsed {
    pub(super) top: Option<u32>,
    pub(super) select: Vec<SelectItem>,
    /// `None` in a device filter (`FROM devices`).
    pub(super) from: Option<Dtmi>,
    pub(super) window: Option<TimeWindow>,
    pub(super) filter: Option<Condition>,
    pub(super) group_by: Vec<GroupKey>,
    pub(super) order_by: Vec<OrderItem>,
}

pub(super) fn parse(text: &str, limits: &Limits, dialect: Dialect) -> Result<Parsed, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > limits.max_chars {
        return Err(QueryError::new(
            limits.max_chars,
            format!(
                "the query is {} characters long; at most {} are allowed",
                chars.len(),
                limits.max_chars
            ),
        ));
    }
    let tokens = tokenize(&chars)?;
    let mut parser = Parser {
        chars: &chars,
        tokens,
        pos: 0,
        limits,
        dialect,
        n_logical: 0,
        depth: 0,
        select: Vec::new(),
        select_spans: Vec::new(),
        window: None,
        window_offset: None,
        top_level_or_offset: None,
    };
    parser.statement()
}

struct Parser<'a> {
    chars: &'a [char],
    /// Never empty: the last token is `Eof`, and `pos` never moves past it.
    tokens: Vec<Token>,
    pos: usize,
    limits: &'a Limits,
    dialect: Dialect,
    n_logical: usize,
    /// How many parentheses enclose the current position in WHERE.
    depth: usize,
    /// The SELECT list so far, for aliases in WHERE and ORDER BY.
    select: Vec<SelectItem>,
    /// Where each SELECT item starts and ends, for errors found after the list is complete.
    select_spans: Vec<(usize, usize)>,
    window: Option<TimeWindow>,
    window_offset: Option<usize>,
    /// The first OR outside parentheses: a WITHIN_WINDOW must not sit beside one.
    top_level_or_offset: Option<usize>,
}

/// What may follow the clause parsed last, for the error at a stray token.
const AFTER_FROM: &[&str] = &["WHERE", "GROUP BY", "ORDER BY"];
const AFTER_WHERE: &[&str] = &["AND", "OR", "GROUP BY", "ORDER BY"];
const AFTER_GROUP_BY: &[&str] = &["','", "ORDER BY"];
const AFTER_ORDER_BY: &[&str] = &["','", "ASC", "DESC"];
const DEVICE_AFTER_FROM: &[&str] = &["WHERE"];
const DEVICE_AFTER_WHERE: &[&str] = &["AND", "OR"];
const DEVICE_FILTER_SHAPE: &str = "a device filter is SELECT * FROM devices WHERE ...";

impl Parser<'_> {
    fn statement(&mut self) -> Result<Parsed, QueryError> {
        if !self.eat_keyword("SELECT") {
            return Err(self.unexpected("SELECT"));
        }
        let mut top = None;
        let mut from = None;
        match self.dialect {
            Dialect::DeviceFilter => {
                if !self.eat(&TokenKind::Star) {
                    return Err(
                        self.unexpected(&format!("'*' after SELECT ({DEVICE_FILTER_SHAPE})"))
                    );
                }
                if !self.eat_keyword("FROM") {
                    return Err(self.unexpected("FROM after '*'"));
                }
                if !self.peek_keyword("devices") {
                    return Err(
                        self.unexpected(&format!("'devices' after FROM ({DEVICE_FILTER_SHAPE})"))
                    );
                }
                self.bump();
            }
            Dialect::Query => {
                if self.eat_keyword("TOP") {
                    top = Some(self.top()?);
                }
                self.select_list()?;
                if !self.eat_keyword("FROM") {
                    let (last_start, last_end) = self.select_spans[self.select_spans.len() - 1];
                    let last_item = self.source(last_start, last_end);
                    return Err(self.unexpected(&format!("',' or FROM after '{last_item}'")));
                }
                from = Some(self.template()?);
            }
        }
        let mut follows = match self.dialect {
            Dialect::Query => AFTER_FROM,
            Dialect::DeviceFilter => DEVICE_AFTER_FROM,
        };
        let mut filter = None;
        if self.eat_keyword("WHERE") {
            filter = self.condition()?;
            if let (Some(window_offset), Some(_)) = (self.window_offset, self.top_level_or_offset) {
                return Err(QueryError::new(
                    window_offset,
                    "WITHIN_WINDOW cannot be one side of an OR; join it to the rest with AND",
                ));
            }
            follows = match self.dialect {
                Dialect::Query => AFTER_WHERE,
                Dialect::DeviceFilter => DEVICE_AFTER_WHERE,
            };
        }
        let mut group_by = Vec::new();
        let mut order_by = Vec::new();
        if self.dialect == Dialect::Query {
            if self.peek_keyword("GROUP") {
                group_by = self.group_by()?;
                follows = AFTER_GROUP_BY;
            }
            self.check_aggregates_are_grouped(&group_by)?;
            if self.peek_keyword("ORDER") {
                order_by = self.order_by()?;
                follows = AFTER_ORDER_BY;
            }
        }
        if self.peek().kind != TokenKind::Eof {
            let mut expected = follows.to_vec();
            expected.push("the end of the query");
            return Err(self.unexpected(&or_list(&expected)));
        }
        Ok(Parsed {
            top,
            select: std::mem::take(&mut self.select),
            from,
            window: self.window,
            filter,
            group_by,
            order_by,
        })
    }

    fn top(&mut self) -> Result<u32, QueryError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Integer(n) if n >= 1 => {
                self.bump();
                u32::try_from(n).map_err(|_| {
                    QueryError::new(token.start, format!("TOP is at most {}", u32::MAX))
                })
            }
            TokenKind::Integer(_) => Err(QueryError::new(
                token.start,
                format!("TOP must be at least 1, found {}", self.text(token.start)),
            )),
            _ => Err(self.unexpected("a whole number after TOP")),
        }
    }

    fn select_list(&mut self) -> Result<(), QueryError> {
        loop {
            let start = self.peek().start;
            if self.select.len() == self.limits.max_select_items {
                return Err(QueryError::new(
                    start,
                    format!(
                        "too many items in SELECT: at most {} are allowed",
                        self.limits.max_select_items
                    ),
                ));
            }
            let item = self.select_item()?;
            if let Some(clash_idx) = self
                .select
                .iter()
                .position(|other| other.output_name() == item.output_name())
            {
                let name = item.output_name();
                let (clash_start, clash_end) = self.select_spans[clash_idx];
                let clash = self.source(clash_start, clash_end);
                let message = match item.alias {
                    Some(_) => format!("the alias '{name}' is already used by '{clash}' in SELECT"),
                    None => format!(
                        "'{name}' is already selected; give one of them another name with AS"
                    ),
                };
                return Err(QueryError::new(start, message));
            }
            self.select.push(item);
            self.select_spans.push((start, self.previous_end()));
            if !self.eat(&TokenKind::Comma) {
                return Ok(());
            }
        }
    }

    fn select_item(&mut self) -> Result<SelectItem, QueryError> {
        let token = self.peek().clone();
        if token.kind == TokenKind::Star {
            return Err(QueryError::new(
                token.start,
                "'*' is only allowed in device filters (SELECT * FROM devices); list the fields to select",
            ));
        }
        let selected = match self.function_call()? {
            Some(function) => {
                self.bump(); // The function's name.
                self.bump(); // The '(' that `function_call` saw after it.
                let field_start = self.peek().start;
                let field =
                    self.field(&format!("a field inside {}(...)", self.text(token.start)))?;
                if let Field::System(system_field) = field {
                    return Err(QueryError::new(
                        field_start,
                        format!(
                            "aggregates apply to telemetry, not to {}",
                            system_field.as_str()
                        ),
                    ));
                }
                if !self.eat(&TokenKind::RParen) {
                    let so_far = self.source(token.start, self.previous_end());
                    return Err(self.unexpected(&format!("')' after '{so_far}'")));
                }
                Selected::Aggregate { function, field }
            }
            None => {
                Selected::Field(self.field("a field or an aggregate such as AVG(temperature)")?)
            }
        };
        let mut alias = None;
        if self.eat_keyword("AS") {
            alias = Some(self.name("an alias name after AS")?);
        }
        Ok(SelectItem { selected, alias })
    }

    /// If the next tokens are `name (`, the aggregate `name` calls (an error if it is not one).
    fn function_call(&self) -> Result<Option<Aggregate>, QueryError> {
        let token = self.peek();
        let (TokenKind::Ident(word), Some(next)) = (&token.kind, self.tokens.get(self.pos + 1))
        else {
            return Ok(None);
        };
        if next.kind != TokenKind::LParen {
            return Ok(None);
        }
        match Aggregate::from_keyword(word) {
            Some(aggregate) => Ok(Some(aggregate)),
            None => Err(QueryError::new(
                token.start,
                format!(
                    "unknown function '{word}'; the aggregates are AVG, SUM, MIN, MAX, COUNT, FIRST and LAST"
                ),
            )),
        }
    }

    fn template(&mut self) -> Result<Dtmi, QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Dtmi(raw) => {
                let dtmi = Dtmi::parse(raw).map_err(|error| {
                    QueryError::new(token.start, format!("invalid device template id: {error}"))
                })?;
                self.bump();
                Ok(dtmi)
            }
            TokenKind::Ident(word) if word.eq_ignore_ascii_case("devices") => Err(QueryError::new(
                token.start,
                "FROM devices is only for device filters (SELECT * FROM devices); a query names a device template id such as dtmi:com:example:Thermostat;1",
            )),
            _ => Err(self.unexpected(
                "a device template id such as dtmi:com:example:Thermostat;1 after FROM",
            )),
        }
    }

    // WHERE

    fn condition(&mut self) -> Result<Option<Condition>, QueryError> {
        let mut branches = Vec::new();
        loop {
            branches.extend(self.conjunction()?);
            let token = self.peek().clone();
            if !self.eat_keyword("OR") {
                break;
            }
            self.count_logical(token.start)?;
            if self.depth == 0 {
                self.top_level_or_offset.get_or_insert(token.start);
            }
        }
        Ok(combine(branches, Condition::Or))
    }

    fn conjunction(&mut self) -> Result<Option<Condition>, QueryError> {
        let mut terms = Vec::new();
        loop {
            terms.extend(self.primary()?);
            let token = self.peek().clone();
            if !self.eat_keyword("AND") {
                break;
            }
            self.count_logical(token.start)?;
        }
        Ok(combine(terms, Condition::And))
    }

    /// One condition; `None` for WITHIN_WINDOW, which is kept apart in `self.window`.
    fn primary(&mut self) -> Result<Option<Condition>, QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::LParen => {
                if self.depth == MAX_NESTING {
                    return Err(QueryError::new(
                        token.start,
                        format!("parentheses nest deeper than {MAX_NESTING} levels"),
                    ));
                }
                self.bump();
                self.depth += 1;
                let condition = self.condition()?;
                self.depth -= 1;
                if !self.eat(&TokenKind::RParen) {
                    return Err(self.unexpected(&format!("')' to close the '(' at {}", token.start)));
                }
                Ok(condition)
            }
            TokenKind::Ident(word)
                if word.eq_ignore_ascii_case("WITHIN_WINDOW")
                    && self.tokens[self.pos + 1].kind == TokenKind::LParen =>
            {
                self.within_window()?;
                Ok(None)
            }
            TokenKind::Ident(word) if word.eq_ignore_ascii_case("NOT") => Err(QueryError::new(
                token.start,
                "NOT is not part of IoT Central's query language; use != or the opposite comparison",
            )),
            TokenKind::Ident(word) if reserved_word(word).is_none() => self.comparison().map(Some),
            TokenKind::System(_) => self.comparison().map(Some),
            _ => Err(self.unexpected(match self.dialect {
                Dialect::Query => "a condition (a field, '(' or WITHIN_WINDOW)",
                Dialect::DeviceFilter => "a condition (a field or '(')",
            })),
        }
    }

    fn within_window(&mut self) -> Result<(), QueryError> {
        let token = self.peek().clone();
        if self.dialect == Dialect::DeviceFilter {
            return Err(QueryError::new(
                token.start,
                "WITHIN_WINDOW selects telemetry by time; a device filter compares device attributes only",
            ));
        }
        if self.depth > 0 {
            return Err(QueryError::new(
                token.start,
                "WITHIN_WINDOW cannot be inside parentheses; join it to the rest of WHERE with AND",
            ));
        }
        if self.window_offset.is_some() {
            return Err(QueryError::new(
                token.start,
                "WITHIN_WINDOW appears twice; a query has one time window",
            ));
        }
        self.bump();
        self.bump(); // '('
        let argument = self.peek().clone();
        let window = match &argument.kind {
            TokenKind::Str(text) if text.contains('/') => {
                self.bump();
                TimeWindow::Range(TimeRange::parse(text).map_err(|error| {
                    QueryError::new(argument.start, format!("invalid time range: {error}"))
                })?)
            }
            TokenKind::Str(text) => {
                self.bump();
                TimeWindow::Last(self.checked_duration(text, argument.start)?)
            }
            _ => TimeWindow::Last(self.duration("WITHIN_WINDOW(")?),
        };
        if !self.eat(&TokenKind::RParen) {
            return Err(self.unexpected("')' after the time window"));
        }
        self.window = Some(window);
        self.window_offset = Some(token.start);
        Ok(())
    }

    /// An unquoted ISO 8601 duration. The lexer splits `PT0.5S` into `PT0`, `.`, `5`, `S`, so
    /// this reads the longest run of adjacent word, number and dot tokens as one text.
    fn duration(&mut self, after: &str) -> Result<Duration, QueryError> {
        let first = self.peek().clone();
        let is_part = |kind: &TokenKind| {
            matches!(
                kind,
                TokenKind::Ident(_) | TokenKind::Integer(_) | TokenKind::Real(_) | TokenKind::Dot
            )
        };
        if !matches!(first.kind, TokenKind::Ident(_) | TokenKind::Integer(_)) {
            return Err(self.unexpected(&format!("a duration such as PT10M after '{after}'")));
        }
        let mut end = first.end;
        self.bump();
        while is_part(&self.peek().kind) && self.peek().start == end {
            end = self.peek().end;
            self.bump();
        }
        let text = self.source(first.start, end);
        self.checked_duration(&text, first.start)
    }

    fn checked_duration(&self, text: &str, offset: usize) -> Result<Duration, QueryError> {
        Duration::parse(text)
            .map_err(|error| QueryError::new(offset, format!("invalid duration '{text}': {error}")))
    }

    fn comparison(&mut self) -> Result<Condition, QueryError> {
        let field_start = self.peek().start;
        let field = self.field("a field")?;
        let field = self.resolve_alias(field, field_start)?;
        if let (Dialect::DeviceFilter, Field::System(SystemField::Ts)) = (self.dialect, &field) {
            return Err(QueryError::new(
                field_start,
                "$ts is the time of a telemetry value; a device filter compares device attributes only",
            ));
        }
        let field_text = self.source(field_start, self.previous_end());
        let operator = self.peek().clone();
        let comparison = match operator.kind {
            TokenKind::Eq => Comparison::Eq,
            TokenKind::Ne => Comparison::Ne,
            TokenKind::Lt => Comparison::Lt,
            TokenKind::Gt => Comparison::Gt,
            TokenKind::Le => Comparison::Le,
            TokenKind::Ge => Comparison::Ge,
            TokenKind::Ident(ref word) if word.eq_ignore_ascii_case("IN") => {
                self.bump();
                return self.in_list(field, &field_text, operator.start);
            }
            _ => {
                return Err(self.unexpected(&format!("a comparison operator after '{field_text}'")))
            }
        };
        self.bump();
        let value_start = self.peek().start;
        let value = self.literal(&format!("after '{}'", self.text(operator.start)))?;
        let value = check_operand(&field, comparison, value).map_err(|problem| {
            let offset = match problem.at {
                At::Operator => operator.start,
                At::Value => value_start,
            };
            QueryError::new(offset, problem.message)
        })?;
        Ok(Condition::Compare {
            field,
            comparison,
            value,
        })
    }

    fn in_list(
        &mut self,
        field: Field,
        field_text: &str,
        in_offset: usize,
    ) -> Result<Condition, QueryError> {
        if field == Field::System(SystemField::Ts) {
            return Err(QueryError::new(
                in_offset,
                "IN cannot be used with $ts; compare it with < and >",
            ));
        }
        let close = match self.peek().kind {
            TokenKind::LBracket => TokenKind::RBracket,
            TokenKind::LParen => TokenKind::RParen,
            _ => return Err(self.unexpected(&format!("'[' or '(' after '{field_text} IN'"))),
        };
        let close_text = if close == TokenKind::RBracket {
            "']'"
        } else {
            "')'"
        };
        self.bump();
        if self.peek().kind == close {
            return Err(QueryError::new(
                self.peek().start,
                "an IN list needs at least one value",
            ));
        }
        let mut values = Vec::new();
        loop {
            let value_start = self.peek().start;
            let value = self.literal("in the IN list")?;
            if value == Literal::Null {
                return Err(QueryError::new(
                    value_start,
                    "null cannot be in an IN list; compare with = null instead",
                ));
            }
            let value = check_operand(&field, Comparison::Eq, value)
                .map_err(|problem| QueryError::new(value_start, problem.message))?;
            values.push(value);
            if self.eat(&close) {
                break;
            }
            if !self.eat(&TokenKind::Comma) {
                return Err(self.unexpected(&format!("',' or {close_text} in the IN list")));
            }
        }
        Ok(Condition::In { field, values })
    }

    fn literal(&mut self, context: &str) -> Result<Literal, QueryError> {
        let literal = match &self.peek().kind {
            TokenKind::Integer(integer) => Literal::Integer(*integer),
            TokenKind::Real(real) => Literal::Real(*real),
            TokenKind::Str(text) | TokenKind::Dtmi(text) => Literal::Text(text.clone()),
            TokenKind::Ident(word) => match reserved_word(word) {
                Some("TRUE") => Literal::Bool(true),
                Some("FALSE") => Literal::Bool(false),
                Some("NULL") => Literal::Null,
                _ => return Err(self.expected_value(context)),
            },
            _ => return Err(self.expected_value(context)),
        };
        self.bump();
        Ok(literal)
    }

    fn expected_value(&self, context: &str) -> QueryError {
        self.unexpected(&format!(
            "a value (a number, a string, true, false or null) {context}"
        ))
    }

    /// A plain name in WHERE that is an alias of a SELECT item means that item's field.
    fn resolve_alias(&self, field: Field, offset: usize) -> Result<Field, QueryError> {
        let Field::Capability {
            component: None,
            name,
        } = &field
        else {
            return Ok(field);
        };
        let aliased = self
            .select
            .iter()
            .find(|item| item.alias.as_ref() == Some(name));
        match aliased.map(|item| &item.selected) {
            None => Ok(field),
            Some(Selected::Field(aliased_field)) => Ok(aliased_field.clone()),
            Some(Selected::Aggregate { .. }) => Err(QueryError::new(
                offset,
                format!(
                    "'{name}' names an aggregate, which WHERE cannot compare; compare the telemetry itself"
                ),
            )),
        }
    }

    // GROUP BY and ORDER BY

    fn group_by(&mut self) -> Result<Vec<GroupKey>, QueryError> {
        self.bump(); // GROUP
        if !self.eat_keyword("BY") {
            return Err(self.unexpected("BY after GROUP"));
        }
        let mut keys: Vec<GroupKey> = Vec::new();
        loop {
            let token = self.peek().clone();
            let key = match &token.kind {
                TokenKind::Ident(word)
                    if word.eq_ignore_ascii_case("WINDOW")
                        && self.tokens[self.pos + 1].kind == TokenKind::LParen =>
                {
                    self.bump();
                    self.bump();
                    let duration = self.duration("WINDOW(")?;
                    if !self.eat(&TokenKind::RParen) {
                        return Err(self.unexpected("')' after the window length"));
                    }
                    GroupKey::Window(duration)
                }
                TokenKind::System(name) if name.eq_ignore_ascii_case("id") => {
                    self.bump();
                    GroupKey::DeviceId
                }
                _ => return Err(self.unexpected("WINDOW(<duration>) or $id in GROUP BY")),
            };
            let same_kind = keys
                .iter()
                .any(|seen| std::mem::discriminant(seen) == std::mem::discriminant(&key));
            if same_kind {
                return Err(QueryError::new(
                    token.start,
                    format!("{} appears twice in GROUP BY", self.text(token.start)),
                ));
            }
            keys.push(key);
            if !self.eat(&TokenKind::Comma) {
                return Ok(keys);
            }
        }
    }

    /// With an aggregate in SELECT, every other item must be a group key (SQL's rule): `$id`
    /// when grouped by `$id`, `$ts` when grouped by WINDOW. Without one, GROUP BY is an error.
    fn check_aggregates_are_grouped(&self, group_by: &[GroupKey]) -> Result<(), QueryError> {
        let is_aggregate = |item: &SelectItem| matches!(item.selected, Selected::Aggregate { .. });
        let has_aggregate = self.select.iter().any(is_aggregate);
        if !has_aggregate {
            if !group_by.is_empty() {
                return Err(QueryError::new(
                    self.select_spans[0].0,
                    "GROUP BY needs an aggregate in SELECT, such as AVG(temperature)",
                ));
            }
            return Ok(());
        }
        for (item, &(start, end)) in self.select.iter().zip(&self.select_spans) {
            let grouped = match &item.selected {
                Selected::Aggregate { .. } => true,
                Selected::Field(Field::System(SystemField::Id)) => {
                    group_by.contains(&GroupKey::DeviceId)
                }
                Selected::Field(Field::System(SystemField::Ts)) => group_by
                    .iter()
                    .any(|key| matches!(key, GroupKey::Window(_))),
                Selected::Field(_) => false,
            };
            if !grouped {
                return Err(QueryError::new(
                    start,
                    format!(
                        "'{}' is neither aggregated nor a GROUP BY key",
                        self.source(start, end)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn order_by(&mut self) -> Result<Vec<OrderItem>, QueryError> {
        self.bump(); // ORDER
        if !self.eat_keyword("BY") {
            return Err(self.unexpected("BY after ORDER"));
        }
        let mut items = Vec::new();
        loop {
            let token = self.peek().clone();
            if self.function_call().ok().flatten().is_some() {
                return Err(QueryError::new(
                    token.start,
                    "to order by an aggregate, name it with AS in SELECT and order by that name",
                ));
            }
            let field = self.field("a field or a SELECT alias after ORDER BY")?;
            let key = match &field {
                Field::Capability {
                    component: None,
                    name,
                } => match self
                    .select
                    .iter()
                    .position(|item| item.output_name() == name.as_str())
                {
                    Some(item_idx) => OrderKey::SelectItem(item_idx),
                    None => OrderKey::Field(field),
                },
                _ => OrderKey::Field(field),
            };
            let direction = if self.eat_keyword("DESC") {
                Direction::Descending
            } else {
                self.eat_keyword("ASC");
                Direction::Ascending
            };
            items.push(OrderItem { key, direction });
            if !self.eat(&TokenKind::Comma) {
                return Ok(items);
            }
        }
    }

    // Fields and names

    /// `$name`, `name` or `component.name`; `what` completes "expected ..." on failure.
    fn field(&mut self, what: &str) -> Result<Field, QueryError> {
        let token = self.peek().clone();
        if let TokenKind::System(name) = &token.kind {
            let system_field = SystemField::ALL
                .into_iter()
                .find(|system_field| system_field.as_str()[1..].eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    let known: Vec<&str> = SystemField::ALL
                        .iter()
                        .map(|field| field.as_str())
                        .collect();
                    QueryError::new(
                        token.start,
                        format!(
                            "unknown field '${name}'; the $ fields are {}",
                            or_list(&known)
                        ),
                    )
                })?;
            self.bump();
            return Ok(Field::System(system_field));
        }
        let name = self.name(what)?;
        if !self.eat(&TokenKind::Dot) {
            return Ok(Field::Capability {
                component: None,
                name,
            });
        }
        let member = self.name(&format!("a name after '{name}.'"))?;
        Ok(Field::Capability {
            component: Some(name),
            name: member,
        })
    }

    fn name(&mut self, what: &str) -> Result<Name, QueryError> {
        match &self.peek().kind {
            TokenKind::Ident(word) if reserved_word(word).is_none() => {
                let name = Name::from_lexer(word.clone());
                self.bump();
                Ok(name)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    // Token plumbing

    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn bump(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    fn previous_end(&self) -> usize {
        self.tokens[self.pos.saturating_sub(1)].end
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        let matched = &self.peek().kind == kind;
        if matched {
            self.bump();
        }
        matched
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let matched = self.peek_keyword(keyword);
        if matched {
            self.bump();
        }
        matched
    }

    fn count_logical(&mut self, offset: usize) -> Result<(), QueryError> {
        self.n_logical += 1;
        if self.n_logical > self.limits.max_logical_operators {
            return Err(QueryError::new(
                offset,
                format!(
                    "too many logical operators: at most {} AND and OR are allowed",
                    self.limits.max_logical_operators
                ),
            ));
        }
        Ok(())
    }

    /// The query text from `start` to `end` (character offsets).
    fn source(&self, start: usize, end: usize) -> String {
        self.chars[start..end].iter().collect()
    }

    /// The source text of the token starting at `start`.
    fn text(&self, start: usize) -> String {
        let token = self
            .tokens
            .iter()
            .find(|token| token.start == start)
            .expect("offsets passed to `text` come from tokens");
        self.source(token.start, token.end)
    }

    /// "expected {what}, found {the next token}", at the next token.
    fn unexpected(&self, what: &str) -> QueryError {
        let token = self.peek();
        QueryError::new(
            token.start,
            format!("expected {what}, found {}", self.describe(token)),
        )
    }

    fn describe(&self, token: &Token) -> String {
        const MAX_SHOWN: usize = 40;
        let mut text = self.source(token.start, token.end);
        if text.chars().count() > MAX_SHOWN {
            text = text.chars().take(MAX_SHOWN).collect::<String>() + "...";
        }
        match token.kind {
            TokenKind::Eof => "the end of the query".to_owned(),
            TokenKind::Str(_) => format!("the string {text}"),
            TokenKind::Integer(_) | TokenKind::Real(_) => format!("the number {text}"),
            _ => format!("'{text}'"),
        }
    }
}

/// Joins conditions with `make` when there are two or more.
fn combine(
    mut conditions: Vec<Condition>,
    make: fn(Vec<Condition>) -> Condition,
) -> Option<Condition> {
    match conditions.len() {
        0 | 1 => conditions.pop(),
        _ => Some(make(conditions)),
    }
}

/// `a, b or c`.
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Why an operand does not suit its field, and which token to blame.
struct OperandProblem {
    at: At,
    message: String,
}

enum At {
    Operator,
    Value,
}

/// Checks `field comparison value` and types the value: a `$ts` string becomes a timestamp.
fn check_operand(
    field: &Field,
    comparison: Comparison,
    value: Literal,
) -> Result<Literal, OperandProblem> {
    let equality = matches!(comparison, Comparison::Eq | Comparison::Ne);
    let problem = |at, message: String| Err(OperandProblem { at, message });
    let system_field = match field {
        Field::System(system_field) => *system_field,
        Field::Capability { .. } => {
            return match value {
                Literal::Null | Literal::Bool(_) if !equality => problem(
                    At::Operator,
                    "null, true and false can only be compared with = or !=".to_owned(),
                ),
                value => Ok(value),
            };
        }
    };
    let name = system_field.as_str();
    match (system_field.kind(), value) {
        (SystemKind::Text { .. }, value @ Literal::Text(_)) => Ok(value),
        (SystemKind::Text { nullable: true }, Literal::Null) if equality => Ok(Literal::Null),
        (SystemKind::Text { nullable: true }, Literal::Null) => problem(
            At::Operator,
            "null can only be compared with = or !=".to_owned(),
        ),
        (SystemKind::Text { .. }, _) => problem(
            At::Value,
            format!("{name} is text; compare it with a string"),
        ),
        (SystemKind::Boolean, _) if !equality => problem(
            At::Operator,
            format!("{name} is true or false; compare it with = or !="),
        ),
        (SystemKind::Boolean, value @ Literal::Bool(_)) => Ok(value),
        (SystemKind::Boolean, _) => problem(
            At::Value,
            format!("{name} is true or false; compare it with true or false"),
        ),
        (SystemKind::Timestamp, Literal::Text(text)) => parse_timestamp(&text)
            .map(Literal::Timestamp)
            .or_else(|error| problem(At::Value, format!("invalid time for $ts: {error}"))),
        (SystemKind::Timestamp, _) => problem(
            At::Value,
            "$ts is compared with a quoted RFC 3339 time such as '2021-06-13T13:00:00Z'".to_owned(),
        ),
    }
}
