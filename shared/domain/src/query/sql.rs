//! Device filters compiled to a SQL condition over the `devices` table.
//!
//! The table (owned by the store's migrations) is `devices(id TEXT PRIMARY KEY, display_name
//! TEXT, template TEXT, enabled INTEGER 0/1, provisioned INTEGER 0/1, simulated INTEGER 0/1,
//! cloud_properties TEXT JSON object, reported TEXT JSON object)`.
//!
//! **Invariant:** no text from the query reaches the SQL string. The SQL is assembled only from
//! the fixed fragments below; every value and every JSON path travels as a `?` parameter. Names
//! are identifiers (`[A-Za-z_][A-Za-z0-9_]*`, checked by the lexer), so a path such as
//! `$."temperature"` needs no escaping either, and SQLite's JSON path syntax cannot be broken
//! out of.
//!
//! Semantics, where IoT Central is silent:
//! - A plain name is a cloud property if the device has one by that name, else a reported
//!   property (`COALESCE` over both columns); `component.name` is a reported property of that
//!   component. A missing property is SQL `NULL`, so every comparison with it is false except
//!   `= null`; `!= 'x'` does not select devices that lack the property.
//! - JSON values compare as SQLite sees them after `json_extract`: numbers numerically, strings
//!   as text, and `true`/`false` as 1/0 (so `p = true` and `p = 1` select the same devices). A
//!   string never equals a number (`'20' = 20` is false), and `<`, `>`, `<=`, `>=` only compare
//!   values of the literal's kind (number or text): plain SQLite would rank every string above
//!   every number, so `firmware >= 1` would select a device reporting `"2.5"` as a string.
//! - `= null` and `!= null` become `IS NULL` and `IS NOT NULL`.
//!
//! Not here: running the statement (the registry's store code wraps the fragment in its
//! `SELECT`), and telemetry queries.

use super::ast::{Comparison, Condition, Field, Literal, SystemField};
use super::DeviceFilter;
use crate::store::Value;

/// A SQL boolean expression over the `devices` table, and the values of its `?` parameters in
/// order. Use it as `SELECT ... FROM devices WHERE <where_sql>` with `params` bound first (or
/// at the position where the fragment appears, if the statement has other `?`s). The fragment
/// uses anonymous `?` only, so do not mix it with numbered `?NNN` parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlFilter {
    pub where_sql: String,
    pub params: Vec<Value>,
}

impl DeviceFilter {
    /// The filter as a SQL condition; `1` (true) when it has no WHERE.
    pub fn to_sql(&self) -> SqlFilter {
        let mut filter = SqlFilter {
            where_sql: String::new(),
            params: Vec::new(),
        };
        match self.condition() {
            Some(condition) => condition_sql(condition, &mut filter),
            None => filter.where_sql.push('1'),
        }
        filter
    }
}

fn condition_sql(condition: &Condition, out: &mut SqlFilter) {
    match condition {
        Condition::And(conditions) => joined(conditions, " AND ", out),
        Condition::Or(conditions) => joined(conditions, " OR ", out),
        Condition::Compare {
            field,
            comparison,
            value: Literal::Null,
        } => {
            field_sql(field, out);
            out.where_sql.push_str(match comparison {
                Comparison::Ne => " IS NOT NULL",
                // The parser allows null with = and != only.
                _ => " IS NULL",
            });
        }
        Condition::Compare {
            field: field @ Field::Capability { .. },
            comparison:
                comparison @ (Comparison::Lt | Comparison::Gt | Comparison::Le | Comparison::Ge),
            value,
        } => {
            // SQLite orders every TEXT above every number; compare within the literal's kind.
            // The kind names are parameters too, so the SQL text never holds a quote.
            let kinds: &[&str] = match value {
                Literal::Text(_) => &["text"],
                _ => &["integer", "real"],
            };
            out.where_sql.push_str("(typeof(");
            field_sql(field, out);
            out.where_sql.push_str(") IN (");
            for (kind_idx, kind) in kinds.iter().enumerate() {
                if kind_idx > 0 {
                    out.where_sql.push_str(", ");
                }
                out.where_sql.push('?');
                out.params.push(Value::Text((*kind).to_owned()));
            }
            out.where_sql.push_str(") AND ");
            field_sql(field, out);
            out.where_sql.push(' ');
            out.where_sql.push_str(comparison.as_str());
            out.where_sql.push_str(" ?)");
            out.params.push(value_param(value));
        }
        Condition::Compare {
            field,
            comparison,
            value,
        } => {
            field_sql(field, out);
            out.where_sql.push(' ');
            out.where_sql.push_str(comparison.as_str());
            out.where_sql.push_str(" ?");
            out.params.push(value_param(value));
        }
        Condition::In { field, values } => {
            field_sql(field, out);
            out.where_sql.push_str(" IN (");
            for (value_idx, value) in values.iter().enumerate() {
                if value_idx > 0 {
                    out.where_sql.push_str(", ");
                }
                out.where_sql.push('?');
                out.params.push(value_param(value));
            }
            out.where_sql.push(')');
        }
    }
}

fn joined(conditions: &[Condition], separator: &str, out: &mut SqlFilter) {
    out.where_sql.push('(');
    for (condition_idx, condition) in conditions.iter().enumerate() {
        if condition_idx > 0 {
            out.where_sql.push_str(separator);
        }
        condition_sql(condition, out);
    }
    out.where_sql.push(')');
}

fn field_sql(field: &Field, out: &mut SqlFilter) {
    let column = match field {
        Field::System(SystemField::Id) => "id",
        Field::System(SystemField::DisplayName) => "display_name",
        Field::System(SystemField::Template) => "template",
        Field::System(SystemField::Enabled) => "enabled",
        Field::System(SystemField::Provisioned) => "provisioned",
        Field::System(SystemField::Simulated) => "simulated",
        // The device-filter dialect rejects $ts; a filter can only hold one if this module's
        // caller built the tree some other way, which the private fields prevent. Compare it
        // with nothing rather than panic.
        Field::System(SystemField::Ts) => "NULL",
        Field::Capability {
            component: None,
            name,
        } => {
            let path = format!("$.\"{name}\"");
            out.params.push(Value::Text(path.clone()));
            out.params.push(Value::Text(path));
            "COALESCE(json_extract(cloud_properties, ?), json_extract(reported, ?))"
        }
        Field::Capability {
            component: Some(component),
            name,
        } => {
            out.params
                .push(Value::Text(format!("$.\"{component}\".\"{name}\"")));
            "json_extract(reported, ?)"
        }
    };
    out.where_sql.push_str(column);
}

fn value_param(value: &Literal) -> Value {
    match value {
        Literal::Null => Value::Null,
        Literal::Bool(flag) => Value::Integer(i64::from(*flag)),
        Literal::Integer(integer) => Value::Integer(*integer),
        Literal::Real(real) => Value::Real(*real),
        Literal::Text(text) => Value::Text(text.clone()),
        // Device filters have no $ts (see `field_sql`); keep the instant comparable anyway.
        Literal::Timestamp(timestamp) => Value::Integer(timestamp.unix_millis()),
    }
}
