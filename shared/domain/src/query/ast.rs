//! The syntax tree of a parsed query: what the parser produces and what executors read.
//!
//! Leaves that carry a constraint ([`Name`], [`crate::dtdl::Dtmi`], [`super::Duration`],
//! [`super::TimeRange`]) are built only by parsing; the nodes around them are plain data. Aliases
//! are already resolved here (a `WHERE t > 0` over `temperature AS t` compares `temperature`), so
//! an executor never looks names up again. This module does not know how a tree is evaluated:
//! device filters compile to SQL in `sql.rs`; telemetry execution belongs to the query component.

use std::fmt;

use super::{Duration, TimeRange};
use crate::time::Timestamp;

/// A telemetry, property or component name as written in a query: ASCII letters, digits and
/// `_`, not starting with a digit, and not a reserved word. Case-sensitive, as DTDL names are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    /// Accepts exactly the names the query lexer reads as identifiers.
    pub fn parse(raw: &str) -> Option<Name> {
        let mut chars = raw.chars();
        let first = chars.next()?;
        let valid = (first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && super::lexer::reserved_word(raw).is_none();
        valid.then(|| Name(raw.to_owned()))
    }

    /// Wraps an identifier the lexer already checked.
    pub(super) fn from_lexer(raw: String) -> Name {
        Name(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device attribute the platform itself maintains, written with a leading `$`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemField {
    /// `$id`: the device id (text).
    Id,
    /// `$ts`: the timestamp of a telemetry value, or the start of an aggregation window.
    Ts,
    /// `$displayName` (text, may be null).
    DisplayName,
    /// `$template`: the device template id (text, may be null for an unassigned device).
    Template,
    /// `$provisioned` (boolean).
    Provisioned,
    /// `$simulated` (boolean).
    Simulated,
    /// `$enabled` (boolean).
    Enabled,
}

impl SystemField {
    pub(super) const ALL: [SystemField; 7] = [
        SystemField::Id,
        SystemField::Ts,
        SystemField::DisplayName,
        SystemField::Template,
        SystemField::Provisioned,
        SystemField::Simulated,
        SystemField::Enabled,
    ];

    /// The name as IoT Central spells it, with its `$`.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemField::Id => "$id",
            SystemField::Ts => "$ts",
            SystemField::DisplayName => "$displayName",
            SystemField::Template => "$template",
            SystemField::Provisioned => "$provisioned",
            SystemField::Simulated => "$simulated",
            SystemField::Enabled => "$enabled",
        }
    }

    /// The type its values have, which decides what a comparison may use.
    pub(super) fn kind(self) -> SystemKind {
        match self {
            SystemField::Id => SystemKind::Text { nullable: false },
            SystemField::DisplayName | SystemField::Template => SystemKind::Text { nullable: true },
            SystemField::Provisioned | SystemField::Simulated | SystemField::Enabled => {
                SystemKind::Boolean
            }
            SystemField::Ts => SystemKind::Timestamp,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SystemKind {
    Text { nullable: bool },
    Boolean,
    Timestamp,
}

/// Something a query reads from a device: a system attribute, or a capability (telemetry,
/// reported property or cloud property) of the template, optionally inside a component.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    System(SystemField),
    /// `name`, or `component.name` when `component` is set.
    Capability {
        component: Option<Name>,
        name: Name,
    },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::System(system_field) => f.write_str(system_field.as_str()),
            Field::Capability {
                component: Some(component),
                name,
            } => write!(f, "{component}.{name}"),
            Field::Capability {
                component: None,
                name,
            } => write!(f, "{name}"),
        }
    }
}

/// An aggregate function over telemetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Avg,
    Sum,
    Min,
    Max,
    Count,
    First,
    Last,
}

impl Aggregate {
    pub(super) fn from_keyword(word: &str) -> Option<Aggregate> {
        const ALL: [(&str, Aggregate); 7] = [
            ("AVG", Aggregate::Avg),
            ("SUM", Aggregate::Sum),
            ("MIN", Aggregate::Min),
            ("MAX", Aggregate::Max),
            ("COUNT", Aggregate::Count),
            ("FIRST", Aggregate::First),
            ("LAST", Aggregate::Last),
        ];
        ALL.iter()
            .find(|(keyword, _)| keyword.eq_ignore_ascii_case(word))
            .map(|(_, aggregate)| *aggregate)
    }

    /// Lower-case, as IoT Central prefixes output columns (`avg_temperature`).
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Sum => "sum",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Count => "count",
            Aggregate::First => "first",
            Aggregate::Last => "last",
        }
    }
}

/// What one SELECT item computes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selected {
    Field(Field),
    /// `AVG(temperature)`; the field is always a capability, never a `$` attribute.
    Aggregate {
        function: Aggregate,
        field: Field,
    },
}

/// One item of the SELECT list, with its `AS` alias if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectItem {
    pub selected: Selected,
    pub alias: Option<Name>,
}

impl SelectItem {
    /// The key of this item in each result row: the alias, else the field as written
    /// (`temperature`, `$id`, `deviceInformation.model`), else IoT Central's aggregate name
    /// (`avg_temperature`). Unique within a query; the parser rejects duplicates.
    pub fn output_name(&self) -> String {
        match (&self.alias, &self.selected) {
            (Some(alias), _) => alias.as_str().to_owned(),
            (None, Selected::Field(field)) => field.to_string(),
            (None, Selected::Aggregate { function, field }) => {
                format!("{}_{field}", function.as_str())
            }
        }
    }
}

/// A comparison operator; `!=` and `<>` are the same operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Comparison {
    /// The SQL spelling, which is also a valid query-language spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Ne => "<>",
            Comparison::Lt => "<",
            Comparison::Gt => ">",
            Comparison::Le => "<=",
            Comparison::Ge => ">=",
        }
    }
}

/// A constant in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// A number written without a fraction or exponent that fits in an `i64`.
    Integer(i64),
    /// Any other number; always finite.
    Real(f64),
    Text(String),
    /// A string compared with `$ts`, parsed as RFC 3339.
    Timestamp(Timestamp),
}

/// A WHERE condition without its time window (see [`super::Query::window`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Two or more conditions that must all hold, in the order written.
    And(Vec<Condition>),
    /// Two or more conditions of which one must hold, in the order written.
    Or(Vec<Condition>),
    Compare {
        field: Field,
        comparison: Comparison,
        value: Literal,
    },
    /// `field IN [v1, v2, ...]`: at least one value, never `null`.
    In { field: Field, values: Vec<Literal> },
}

/// Which telemetry a query covers: `WITHIN_WINDOW(P1D)` (the last day, counted back from when
/// the query runs) or `WITHIN_WINDOW('start/end')`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeWindow {
    Last(Duration),
    Range(TimeRange),
}

/// One key of `GROUP BY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// `WINDOW(PT10M)`: consecutive windows of this length; `$ts` is each window's start.
    Window(Duration),
    /// `$id`: one group per device.
    DeviceId,
}

/// What ORDER BY sorts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderKey {
    Field(Field),
    /// An item of the SELECT list (by index), named by its alias or output name.
    SelectItem(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ascending,
    Descending,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderItem {
    pub key: OrderKey,
    pub direction: Direction,
}
