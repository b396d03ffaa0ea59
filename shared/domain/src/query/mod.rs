//! IoT Central's query language: one parser for the query API, device-group filters and
//! export filters.
//!
//! Two entry points share the lexer and the recursive-descent parser:
//! - [`Query::parse`]: the query API's `SELECT <items> FROM <template dtmi> [WHERE ...]
//!   [GROUP BY ...] [ORDER BY ...]`, with `TOP`, aliases, aggregates and `WITHIN_WINDOW`.
//! - [`DeviceFilter::parse`] / [`parse_device_filter`]: `SELECT * FROM devices [WHERE ...]`
//!   over device attributes and properties, as device groups and exports write it;
//!   [`DeviceFilter::to_sql`] compiles it to a parameterised SQL condition on the `devices`
//!   table.
//!
//! Errors carry the character offset of the token at fault and say why ([`QueryError`]);
//! IoT Central's limits are a value ([`Limits`]) the parser enforces. Module map: `lexer`
//! (text to tokens), `parser` (tokens to the tree, with every semantic check), `ast` (the
//! tree), `duration` (ISO 8601 durations, RFC 3339 times and ranges), `sql` (device filters
//! to SQL). Template ids are [`crate::dtdl::Dtmi`], the same type templates are keyed by.
//!
//! Deliberately absent: evaluating queries over telemetry or properties (the query component's
//! job, reading the tree), knowing templates (so "telemetry or properties, not both" is the
//! executor's check), and the clock (`WITHIN_WINDOW(P1D)` stays a duration until an executor
//! is given `now`).

mod ast;
mod duration;
mod lexer;
mod parser;
mod sql;

#[cfg(test)]
mod parser_tests;
#[cfg(all(test, feature = "rusqlite"))]
mod sql_tests;

pub use ast::{
    Aggregate, Comparison, Condition, Direction, Field, GroupKey, Literal, Name, OrderItem,
    OrderKey, SelectItem, Selected, SystemField, TimeWindow,
};
pub use duration::{Duration, DurationError, TimeError, TimeRange};
pub use sql::SqlFilter;

use crate::dtdl::Dtmi;
use parser::Dialect;

/// A query the parser rejected: where (a character offset into the query text, not a byte
/// offset) and why. Displays as `at 27: expected a comparison operator after 'temperature',
/// found 'AND'`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at {offset}: {message}")]
pub struct QueryError {
    pub offset: usize,
    pub message: String,
}

impl QueryError {
    fn new(offset: usize, message: impl Into<String>) -> QueryError {
        QueryError {
            offset,
            message: message.into(),
        }
    }
}

/// The size limits the parser enforces. [`Limits::iot_central`] gives IoT Central's; a
/// deployment may raise them (any value works, but lowering them rejects queries IoT Central
/// accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest query text, in characters.
    pub max_chars: usize,
    /// Most items in a SELECT list.
    pub max_select_items: usize,
    /// Most `AND` and `OR` operators in WHERE, counted together.
    pub max_logical_operators: usize,
}

impl Limits {
    /// IoT Central's documented limits: 350 characters, 15 SELECT items, 10 logical operators.
    pub fn iot_central() -> Limits {
        Limits {
            max_chars: 350,
            max_select_items: 15,
            max_logical_operators: 10,
        }
    }
}

/// A query of the query API, checked against the language's rules and the [`Limits`] it was
/// parsed with. Built only by [`Query::parse`].
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    top: Option<u32>,
    select: Vec<SelectItem>,
    from: Dtmi,
    window: Option<TimeWindow>,
    filter: Option<Condition>,
    group_by: Vec<GroupKey>,
    order_by: Vec<OrderItem>,
}

impl Query {
    /// Parses `SELECT [TOP n] items FROM <dtmi> [WHERE ...] [GROUP BY ...] [ORDER BY ...]`.
    /// `SELECT *` and `FROM devices` belong to device filters and are rejected here.
    pub fn parse(text: &str, limits: &Limits) -> Result<Query, QueryError> {
        let parsed = parser::parse(text, limits, Dialect::Query)?;
        Ok(Query {
            top: parsed.top,
            select: parsed.select,
            from: parsed
                .from
                .expect("the query dialect always parses a FROM template"),
            window: parsed.window,
            filter: parsed.filter,
            group_by: parsed.group_by,
            order_by: parsed.order_by,
        })
    }

    /// `TOP n`: at most this many results.
    pub fn top(&self) -> Option<u32> {
        self.top
    }

    /// The SELECT list: one to `max_select_items` items with distinct output names.
    pub fn select(&self) -> &[SelectItem] {
        &self.select
    }

    /// The device template whose devices the query reads.
    pub fn from(&self) -> &Dtmi {
        &self.from
    }

    /// The `WITHIN_WINDOW` of WHERE, taken out of the condition: it always applies to the
    /// whole query, because the parser only accepts it joined to the rest with AND.
    pub fn window(&self) -> Option<&TimeWindow> {
        self.window.as_ref()
    }

    /// The WHERE condition without its window, aliases resolved to fields.
    pub fn filter(&self) -> Option<&Condition> {
        self.filter.as_ref()
    }

    /// GROUP BY keys, each kind at most once; empty without GROUP BY.
    pub fn group_by(&self) -> &[GroupKey] {
        &self.group_by
    }

    /// ORDER BY items in order; empty without ORDER BY.
    pub fn order_by(&self) -> &[OrderItem] {
        &self.order_by
    }
}

/// Which devices belong to a device group (or pass an export's filter):
/// `SELECT * FROM devices [WHERE ...]` over `$id`, `$displayName`, `$template`,
/// `$provisioned`, `$simulated`, `$enabled`, and cloud or reported properties (`name`, or
/// `component.name` for a reported property of a component). Built only by parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceFilter {
    condition: Option<Condition>,
}

impl DeviceFilter {
    pub fn parse(text: &str, limits: &Limits) -> Result<DeviceFilter, QueryError> {
        let parsed = parser::parse(text, limits, Dialect::DeviceFilter)?;
        Ok(DeviceFilter {
            condition: parsed.filter,
        })
    }

    /// The WHERE condition; `None` when the filter selects every device.
    pub fn condition(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }
}

/// [`DeviceFilter::parse`] with IoT Central's limits.
pub fn parse_device_filter(text: &str) -> Result<DeviceFilter, QueryError> {
    DeviceFilter::parse(text, &Limits::iot_central())
}
