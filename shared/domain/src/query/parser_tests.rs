//! Parser tests, driven by data: each case is a query and either a compact rendering of the
//! tree it parses to or the error it gets (`at <offset>: <message>`). The rendering is
//! test-only (`render_query`), so the tree's public API stays free of a format to maintain.

use super::{
    Condition, DeviceFilter, Direction, Field, GroupKey, Limits, Literal, OrderKey, Query,
    Selected, TimeWindow,
};

/// Parses `text` with IoT Central's limits and compares the rendering or the error.
fn check(text: &str, expected: &str) {
    check_with(&Limits::iot_central(), text, expected);
}

fn check_with(limits: &Limits, text: &str, expected: &str) {
    let actual = match Query::parse(text, limits) {
        Ok(query) => render_query(&query),
        Err(error) => error.to_string(),
    };
    assert_eq!(actual, expected, "query: {text}");
}

fn check_filter(text: &str, expected: &str) {
    check_filter_with(&Limits::iot_central(), text, expected);
}

fn check_filter_with(limits: &Limits, text: &str, expected: &str) {
    let actual = match DeviceFilter::parse(text, limits) {
        Ok(filter) => match filter.condition() {
            Some(condition) => render_condition(condition),
            None => "all".to_owned(),
        },
        Err(error) => error.to_string(),
    };
    assert_eq!(actual, expected, "filter: {text}");
}

fn render_query(query: &Query) -> String {
    let mut parts = Vec::new();
    if let Some(top) = query.top() {
        parts.push(format!("top {top}"));
    }
    let items: Vec<String> = query
        .select()
        .iter()
        .map(|item| {
            let selected = match &item.selected {
                Selected::Field(field) => field.to_string(),
                Selected::Aggregate { function, field } => {
                    format!("{}({field})", function.as_str())
                }
            };
            match &item.alias {
                Some(alias) => format!("{selected} as {alias}"),
                None => selected,
            }
        })
        .collect();
    parts.push(format!("select {}", items.join(", ")));
    parts.push(format!("from {}", query.from()));
    match query.window() {
        Some(TimeWindow::Last(duration)) => parts.push(format!("window {duration}")),
        Some(TimeWindow::Range(range)) => parts.push(format!(
            "window {}/{}",
            range.start().to_rfc3339(),
            range.end().to_rfc3339()
        )),
        None => {}
    }
    if let Some(condition) = query.filter() {
        parts.push(format!("where {}", render_condition(condition)));
    }
    if !query.group_by().is_empty() {
        let keys: Vec<String> = query
            .group_by()
            .iter()
            .map(|key| match key {
                GroupKey::Window(duration) => format!("window({duration})"),
                GroupKey::DeviceId => "$id".to_owned(),
            })
            .collect();
        parts.push(format!("group {}", keys.join(", ")));
    }
    if !query.order_by().is_empty() {
        let items: Vec<String> = query
            .order_by()
            .iter()
            .map(|item| {
                let key = match &item.key {
                    OrderKey::Field(field) => field.to_string(),
                    OrderKey::SelectItem(item_idx) => format!("#{item_idx}"),
                };
                let direction = match item.direction {
                    Direction::Ascending => "asc",
                    Direction::Descending => "desc",
                };
                format!("{key} {direction}")
            })
            .collect();
        parts.push(format!("order {}", items.join(", ")));
    }
    parts.join("; ")
}

fn render_condition(condition: &Condition) -> String {
    match condition {
        Condition::And(conditions) => render_joined(conditions, " AND "),
        Condition::Or(conditions) => render_joined(conditions, " OR "),
        Condition::Compare {
            field,
            comparison,
            value,
        } => format!("{field} {} {}", comparison.as_str(), render_literal(value)),
        Condition::In { field, values } => {
            let values: Vec<String> = values.iter().map(render_literal).collect();
            format!("{field} IN [{}]", values.join(", "))
        }
    }
}

fn render_joined(conditions: &[Condition], separator: &str) -> String {
    let rendered: Vec<String> = conditions.iter().map(render_condition).collect();
    format!("({})", rendered.join(separator))
}

fn render_literal(literal: &Literal) -> String {
    match literal {
        Literal::Null => "null".to_owned(),
        Literal::Bool(flag) => flag.to_string(),
        Literal::Integer(integer) => integer.to_string(),
        Literal::Real(real) => format!("{real:?}"),
        Literal::Text(text) => format!("{text:?}"),
        Literal::Timestamp(timestamp) => format!("@{}", timestamp.to_rfc3339()),
    }
}

const T: &str = "dtmi:com:example:Thermostat;1";

/// `SELECT <select> FROM <T> <rest>`, to keep cases short.
fn q(select: &str, rest: &str) -> String {
    format!("SELECT {select} FROM {T} {rest}")
        .trim_end()
        .to_owned()
}

/// IoT Central's documented queries, with `;1` added to the template id: Gyre keys templates
/// by versioned DTMIs (see `crate::dtdl::Dtmi`), so an unversioned id could match nothing.
#[test]
fn the_documentation_examples_parse() {
    check(
        "SELECT $id, $ts, temperature, humidity FROM dtmi:azurertos:devkit:hlby5jgib2o;1 WHERE WITHIN_WINDOW(P1D)",
        "select $id, $ts, temperature, humidity; from dtmi:azurertos:devkit:hlby5jgib2o;1; window P1D",
    );
    check(
        "SELECT deviceInformation.model, deviceInformation.swVersion FROM dtmi:azurertos:devkit:hlby5jgib2o;1",
        "select deviceInformation.model, deviceInformation.swVersion; from dtmi:azurertos:devkit:hlby5jgib2o;1",
    );
    check(
        "SELECT $id as ID, $ts as timestamp, temperature as t, pressure as p FROM dtmi:azurertos:devkit:hlby5jgib2o;1 WHERE WITHIN_WINDOW(P1D) AND t > 0 AND p > 50",
        "select $id as ID, $ts as timestamp, temperature as t, pressure as p; from dtmi:azurertos:devkit:hlby5jgib2o;1; window P1D; where (temperature > 0 AND pressure > 50)",
    );
    check(
        "SELECT TOP 10 $id as ID, $ts as timestamp, temperature, humidity FROM dtmi:azurertos:devkit:hlby5jgib2o;1",
        "top 10; select $id as ID, $ts as timestamp, temperature, humidity; from dtmi:azurertos:devkit:hlby5jgib2o;1",
    );
    check(
        "SELECT $id, $ts, temperature AS t, pressure AS p FROM dtmi:azurertos:devkit:hlby5jgib2o;1 WHERE WITHIN_WINDOW(P1D) AND t > 0 AND p > 50 AND $id IN ['sample-002', 'sample-003']",
        "select $id, $ts, temperature as t, pressure as p; from dtmi:azurertos:devkit:hlby5jgib2o;1; window P1D; where (temperature > 0 AND pressure > 50 AND $id IN [\"sample-002\", \"sample-003\"])",
    );
    check(
        "SELECT AVG(temperature), AVG(pressure) FROM dtmi:azurertos:devkit:hlby5jgib2o;1 WHERE WITHIN_WINDOW(P1D) AND $id='sample-001' GROUP BY WINDOW(PT10M)",
        "select avg(temperature), avg(pressure); from dtmi:azurertos:devkit:hlby5jgib2o;1; window P1D; where $id = \"sample-001\"; group window(PT10M)",
    );
    check(
        "SELECT $id as ID, $ts as timestamp, temperature, humidity FROM dtmi:azurertos:devkit:hlby5jgib2o;1 ORDER BY timestamp DESC",
        "select $id as ID, $ts as timestamp, temperature, humidity; from dtmi:azurertos:devkit:hlby5jgib2o;1; order #1 desc",
    );
    check(
        "SELECT AVG(RootTelemetry), MAX(RootTelemetry) FROM dtmi:contoso:root;1 WHERE WITHIN_WINDOW(P1D) AND RootTelemetry > 0 GROUP BY WINDOW(PT3H) ORDER BY $ts ASC",
        "select avg(RootTelemetry), max(RootTelemetry); from dtmi:contoso:root;1; window P1D; where RootTelemetry > 0; group window(PT3H); order $ts asc",
    );
}

#[test]
fn select_items() {
    check(
        &q("temperature", ""),
        &format!("select temperature; from {T}"),
    );
    check(&q("$id", ""), &format!("select $id; from {T}"));
    check(
        &q("$ID, $DisplayName, $TEMPLATE", ""),
        &format!("select $id, $displayName, $template; from {T}"),
    );
    check(
        &q("$provisioned, $simulated, $enabled, $ts", ""),
        &format!("select $provisioned, $simulated, $enabled, $ts; from {T}"),
    );
    check(
        &q("comp.field", ""),
        &format!("select comp.field; from {T}"),
    );
    check(&q("_x1, a_b", ""), &format!("select _x1, a_b; from {T}"));
    check(
        &q("temperature AS t, comp.x as y", ""),
        &format!("select temperature as t, comp.x as y; from {T}"),
    );
    // Contextual words stay usable as names.
    check(
        &q("count, last, window, devices, asc, desc", ""),
        &format!("select count, last, window, devices, asc, desc; from {T}"),
    );
    check(
        &q("avg(temperature), Sum(t), MIN(t2), max(t3), COUNT(t4), first(t5), last(c.t6)", ""),
        &format!(
            "select avg(temperature), sum(t), min(t2), max(t3), count(t4), first(t5), last(c.t6); from {T}"
        ),
    );
    check(
        &q("AVG(temperature) AS avgT", ""),
        &format!("select avg(temperature) as avgT; from {T}"),
    );
    check(
        "select temperature from dtmi:com:example:Thermostat;1",
        &format!("select temperature; from {T}"),
    );
    check(
        "  SELECT\ttemperature\nFROM   dtmi:com:example:Thermostat;1  ",
        &format!("select temperature; from {T}"),
    );
}

#[test]
fn select_errors() {
    check("", "at 0: expected SELECT, found the end of the query");
    check("   ", "at 3: expected SELECT, found the end of the query");
    check("SELEC temperature", "at 0: expected SELECT, found 'SELEC'");
    check(
        &format!("SELECT FROM {T}"),
        "at 7: expected a field or an aggregate such as AVG(temperature), found 'FROM'",
    );
    check(
        &format!("SELECT * FROM {T}"),
        "at 7: '*' is only allowed in device filters (SELECT * FROM devices); list the fields to select",
    );
    check(
        &format!("SELECT a b FROM {T}"),
        "at 9: expected ',' or FROM after 'a', found 'b'",
    );
    check(
        &format!("SELECT a, FROM {T}"),
        "at 10: expected a field or an aggregate such as AVG(temperature), found 'FROM'",
    );
    check(
        &format!("SELECT a,, b FROM {T}"),
        "at 9: expected a field or an aggregate such as AVG(temperature), found ','",
    );
    check(
        "SELECT a",
        "at 8: expected ',' or FROM after 'a', found the end of the query",
    );
    check(
        &format!("SELECT 5 FROM {T}"),
        "at 7: expected a field or an aggregate such as AVG(temperature), found the number 5",
    );
    check(
        &format!("SELECT 'x' FROM {T}"),
        "at 7: expected a field or an aggregate such as AVG(temperature), found the string 'x'",
    );
    check(
        &format!("SELECT $foo FROM {T}"),
        "at 7: unknown field '$foo'; the $ fields are $id, $ts, $displayName, $template, $provisioned, $simulated or $enabled",
    );
    check(
        &format!("SELECT comp. FROM {T}"),
        "at 13: expected a name after 'comp.', found 'FROM'",
    );
    check(
        &format!("SELECT comp.$id FROM {T}"),
        "at 12: expected a name after 'comp.', found '$id'",
    );
    check(
        &format!("SELECT a.b.c FROM {T}"),
        "at 10: expected ',' or FROM after 'a.b', found '.'",
    );
    check(
        &format!("SELECT select FROM {T}"),
        "at 7: expected a field or an aggregate such as AVG(temperature), found 'select'",
    );
    check(
        &format!("SELECT temperature AS FROM {T}"),
        "at 22: expected an alias name after AS, found 'FROM'",
    );
    check(
        &format!("SELECT temperature AS $id FROM {T}"),
        "at 22: expected an alias name after AS, found '$id'",
    );
    check(
        &format!("SELECT temperature AS t, pressure AS t FROM {T}"),
        "at 25: the alias 't' is already used by 'temperature AS t' in SELECT",
    );
    check(
        &format!("SELECT id, temp AS id FROM {T}"),
        "at 11: the alias 'id' is already used by 'id' in SELECT",
    );
    check(
        &format!("SELECT temperature, temperature FROM {T}"),
        "at 20: 'temperature' is already selected; give one of them another name with AS",
    );
    check(
        &format!("SELECT avg_t, AVG(t) FROM {T}"),
        "at 14: 'avg_t' is already selected; give one of them another name with AS",
    );
}

#[test]
fn aggregate_errors() {
    check(
        &format!("SELECT MEDIAN(t) FROM {T}"),
        "at 7: unknown function 'MEDIAN'; the aggregates are AVG, SUM, MIN, MAX, COUNT, FIRST and LAST",
    );
    check(
        &format!("SELECT AVG() FROM {T}"),
        "at 11: expected a field inside AVG(...), found ')'",
    );
    check(
        &format!("SELECT AVG(*) FROM {T}"),
        "at 11: expected a field inside AVG(...), found '*'",
    );
    check(
        &format!("SELECT COUNT($id) FROM {T}"),
        "at 13: aggregates apply to telemetry, not to $id",
    );
    check(
        &format!("SELECT AVG(t FROM {T}"),
        "at 13: expected ')' after 'AVG(t', found 'FROM'",
    );
    check(
        &format!("SELECT avg(a, b) FROM {T}"),
        "at 12: expected ')' after 'avg(a', found ','",
    );
    check(
        &format!("SELECT AVG(AVG(t)) FROM {T}"),
        "at 14: expected ')' after 'AVG(AVG', found '('",
    );
}

#[test]
fn top() {
    check(&q("TOP 1 t", ""), &format!("top 1; select t; from {T}"));
    check(
        &q("top 10000 t", ""),
        &format!("top 10000; select t; from {T}"),
    );
    check(&q("TOP 0 t", ""), "at 11: TOP must be at least 1, found 0");
    check(
        &q("TOP -5 t", ""),
        "at 11: TOP must be at least 1, found -5",
    );
    check(
        &q("TOP 1.5 t", ""),
        "at 11: expected a whole number after TOP, found the number 1.5",
    );
    check(
        &q("TOP t", ""),
        "at 11: expected a whole number after TOP, found 't'",
    );
    check(
        &q("TOP 4294967296 t", ""),
        "at 11: TOP is at most 4294967295",
    );
    check(
        &q("TOP 99999999999999999999 t", ""),
        "at 11: expected a whole number after TOP, found the number 99999999999999999999",
    );
}

#[test]
fn from() {
    check(
        "SELECT t FROM dtmi:contoso:testDeviceTemplate;1",
        "select t; from dtmi:contoso:testDeviceTemplate;1",
    );
    check("SELECT t FROM dtmi:a:b;1.2", "select t; from dtmi:a:b;1.2");
    check(
        "SELECT t FROM devices",
        "at 14: FROM devices is only for device filters (SELECT * FROM devices); a query names a device template id such as dtmi:com:example:Thermostat;1",
    );
    check(
        "SELECT t FROM",
        "at 13: expected a device template id such as dtmi:com:example:Thermostat;1 after FROM, found the end of the query",
    );
    check(
        "SELECT t FROM 'dtmi:a:b;1'",
        "at 14: expected a device template id such as dtmi:com:example:Thermostat;1 after FROM, found the string 'dtmi:a:b;1'",
    );
    check(
        "SELECT t FROM dtmi",
        "at 14: expected a device template id such as dtmi:com:example:Thermostat;1 after FROM, found 'dtmi'",
    );
    // The wording of a bad DTMI is the dtdl module's; the query adds where and the prefix.
    for bad in [
        "dtmi:azurertos:devkit:hlby5jgib2o",
        "dtmi:com:1bad;1",
        "dtmi:com:x;0",
    ] {
        let error = crate::dtdl::Dtmi::parse(bad).unwrap_err();
        check(
            &format!("SELECT t FROM {bad}"),
            &format!("at 14: invalid device template id: {error}"),
        );
    }
    check(
        "SELECT t FROM dtmi:com:x;1 extra",
        "at 27: expected WHERE, GROUP BY, ORDER BY or the end of the query, found 'extra'",
    );
    check(
        "SELECT t FROM dtmi:com:x;1 WHERE t > 1 extra",
        "at 39: expected AND, OR, GROUP BY, ORDER BY or the end of the query, found 'extra'",
    );
}

#[test]
fn comparisons_and_literals() {
    check(
        &q("t", "WHERE t = 1"),
        &format!("select t; from {T}; where t = 1"),
    );
    check(
        &q("t", "WHERE t != 1"),
        &format!("select t; from {T}; where t <> 1"),
    );
    check(
        &q("t", "WHERE t <> 1"),
        &format!("select t; from {T}; where t <> 1"),
    );
    check(
        &q("t", "WHERE t < 1"),
        &format!("select t; from {T}; where t < 1"),
    );
    check(
        &q("t", "WHERE t > 1"),
        &format!("select t; from {T}; where t > 1"),
    );
    check(
        &q("t", "WHERE t <= 1"),
        &format!("select t; from {T}; where t <= 1"),
    );
    check(
        &q("t", "WHERE t >= 1"),
        &format!("select t; from {T}; where t >= 1"),
    );
    check(
        &q("t", "WHERE t>=-1"),
        &format!("select t; from {T}; where t >= -1"),
    );
    check(
        &q("t", "WHERE t = 2.5"),
        &format!("select t; from {T}; where t = 2.5"),
    );
    check(
        &q("t", "WHERE t = -0.25"),
        &format!("select t; from {T}; where t = -0.25"),
    );
    check(
        &q("t", "WHERE t = 1e3"),
        &format!("select t; from {T}; where t = 1000.0"),
    );
    check(
        &q("t", "WHERE t = 1.5E-2"),
        &format!("select t; from {T}; where t = 0.015"),
    );
    check(
        &q("t", "WHERE t = 9223372036854775807"),
        &format!("select t; from {T}; where t = 9223372036854775807"),
    );
    check(
        &q("t", "WHERE t = 9223372036854775808"),
        &format!("select t; from {T}; where t = 9.223372036854776e18"),
    );
    check(
        &q("t", "WHERE t = 'a b'"),
        &format!("select t; from {T}; where t = \"a b\""),
    );
    check(
        &q("t", "WHERE t = \"a b\""),
        &format!("select t; from {T}; where t = \"a b\""),
    );
    check(
        &q("t", "WHERE t = 'it''s'"),
        &format!("select t; from {T}; where t = \"it's\""),
    );
    check(
        &q("t", "WHERE t = \"say \"\"hi\"\"\""),
        &format!("select t; from {T}; where t = \"say \\\"hi\\\"\""),
    );
    check(
        &q("t", "WHERE t = 'a\"b'"),
        &format!("select t; from {T}; where t = \"a\\\"b\""),
    );
    check(
        &q("t", "WHERE t = 'back\\'"),
        &format!("select t; from {T}; where t = \"back\\\\\""),
    );
    check(
        &q("t", "WHERE t = ''"),
        &format!("select t; from {T}; where t = \"\""),
    );
    check(
        &q("t", "WHERE t = 'héllo ✓'"),
        &format!("select t; from {T}; where t = \"héllo ✓\""),
    );
    check(
        &q("t", "WHERE t = true"),
        &format!("select t; from {T}; where t = true"),
    );
    check(
        &q("t", "WHERE t = FALSE"),
        &format!("select t; from {T}; where t = false"),
    );
    check(
        &q("t", "WHERE t != Null"),
        &format!("select t; from {T}; where t <> null"),
    );
    check(
        &q("t", "WHERE c.t = 1"),
        &format!("select t; from {T}; where c.t = 1"),
    );
    check(
        &q("t", "WHERE $template = dtmi:com:example:Thermostat;1"),
        &format!("select t; from {T}; where $template = \"dtmi:com:example:Thermostat;1\""),
    );
}

#[test]
fn comparison_errors() {
    // Offsets count characters from the start of the query text.
    check(
        "SELECT t FROM dtmi:a:b;1 WHERE temperature AND t > 1",
        "at 43: expected a comparison operator after 'temperature', found 'AND'",
    );
    check(
        "SELECT t FROM dtmi:a:b;2 WHERE temperature AND t > 1",
        "at 43: expected a comparison operator after 'temperature', found 'AND'",
    );
    check(
        &q("t", "WHERE c.t 5"),
        "at 54: expected a comparison operator after 'c.t', found the number 5",
    );
    check(
        &q("t", "WHERE"),
        "at 49: expected a condition (a field, '(' or WITHIN_WINDOW), found the end of the query",
    );
    check(
        &q("t", "WHERE 5 < t"),
        "at 50: expected a condition (a field, '(' or WITHIN_WINDOW), found the number 5",
    );
    check(&q("t", "WHERE t ="), "at 53: expected a value (a number, a string, true, false or null) after '=', found the end of the query");
    check(
        &q("t", "WHERE t = u"),
        "at 54: expected a value (a number, a string, true, false or null) after '=', found 'u'",
    );
    check(
        &q("t", "WHERE t >= AND"),
        "at 55: expected a value (a number, a string, true, false or null) after '>=', found 'AND'",
    );
    check(
        &q("t", "WHERE t == 1"),
        "at 53: expected a value (a number, a string, true, false or null) after '=', found '='",
    );
    check(&q("t", "WHERE t ! 1"), "at 52: expected '=' after '!'");
    check(
        &q("t", "WHERE t = 'open"),
        "at 54: unterminated string: no closing ' for this one",
    );
    check(
        &q("t", "WHERE t = \"open'"),
        "at 54: unterminated string: no closing \" for this one",
    );
    check(
        &q("t", "WHERE t = 1 # x"),
        "at 56: unexpected character '#'",
    );
    check(
        &q("t", "WHERE t = 1\u{7}"),
        "at 55: unexpected character U+0007",
    );
    check(
        &q("t", "WHERE t = 1e999"),
        "at 54: the number 1e999 is too large",
    );
    check(
        &q("t", "WHERE t = 5abc"),
        "at 55: expected AND, OR, GROUP BY, ORDER BY or the end of the query, found 'abc'",
    );
    check(
        &q("t", "WHERE t = $"),
        "at 54: expected a name after '$', as in $id",
    );
    check(
        &q("t", "WHERE NOT t = 1"),
        "at 50: NOT is not part of IoT Central's query language; use != or the opposite comparison",
    );
    check(
        &q("t", "WHERE t > null"),
        "at 52: null, true and false can only be compared with = or !=",
    );
    check(
        &q("t", "WHERE t < true"),
        "at 52: null, true and false can only be compared with = or !=",
    );
    check(
        &q("t", "WHERE select = 1"),
        "at 50: expected a condition (a field, '(' or WITHIN_WINDOW), found 'select'",
    );
}

#[test]
fn system_field_types() {
    check(
        &q("t", "WHERE $id = 'a'"),
        &format!("select t; from {T}; where $id = \"a\""),
    );
    check(
        &q("t", "WHERE $id > 'a'"),
        &format!("select t; from {T}; where $id > \"a\""),
    );
    check(
        &q("t", "WHERE $id = 5"),
        "at 56: $id is text; compare it with a string",
    );
    check(
        &q("t", "WHERE $id = null"),
        "at 56: $id is text; compare it with a string",
    );
    check(
        &q("t", "WHERE $id = true"),
        "at 56: $id is text; compare it with a string",
    );
    check(
        &q("t", "WHERE $displayName = null"),
        &format!("select t; from {T}; where $displayName = null"),
    );
    check(
        &q("t", "WHERE $displayName < null"),
        "at 63: null can only be compared with = or !=",
    );
    check(
        &q("t", "WHERE $template != null"),
        &format!("select t; from {T}; where $template <> null"),
    );
    check(
        &q("t", "WHERE $template = 3"),
        "at 62: $template is text; compare it with a string",
    );
    check(
        &q("t", "WHERE $provisioned = true"),
        &format!("select t; from {T}; where $provisioned = true"),
    );
    check(
        &q("t", "WHERE $simulated <> false"),
        &format!("select t; from {T}; where $simulated <> false"),
    );
    check(
        &q("t", "WHERE $enabled = 1"),
        "at 61: $enabled is true or false; compare it with true or false",
    );
    check(
        &q("t", "WHERE $enabled = 'true'"),
        "at 61: $enabled is true or false; compare it with true or false",
    );
    check(
        &q("t", "WHERE $enabled > false"),
        "at 59: $enabled is true or false; compare it with = or !=",
    );
    check(
        &q("t", "WHERE $enabled = null"),
        "at 61: $enabled is true or false; compare it with true or false",
    );
    check(
        &q("t", "WHERE $ts > '2021-06-13T13:00:00Z'"),
        &format!("select t; from {T}; where $ts > @2021-06-13T13:00:00.000Z"),
    );
    check(
        &q("t", "WHERE $ts <= \"2021-06-13T15:00:00.5+02:00\""),
        &format!("select t; from {T}; where $ts <= @2021-06-13T13:00:00.500Z"),
    );
    check(
        &q("t", "WHERE $ts > 'yesterday'"),
        "at 56: invalid time for $ts: 'yesterday' is not an RFC 3339 time such as 2021-06-13T13:00:00Z",
    );
    check(
        &q("t", "WHERE $ts > '2021-02-30T00:00:00Z'"),
        "at 56: invalid time for $ts: '2021-02-30T00:00:00Z' is not a valid date and time",
    );
    check(
        &q("t", "WHERE $ts > 5"),
        "at 56: $ts is compared with a quoted RFC 3339 time such as '2021-06-13T13:00:00Z'",
    );
    check(
        &q("t", "WHERE $ts IN ['x']"),
        "at 54: IN cannot be used with $ts; compare it with < and >",
    );
    check(
        &q("t", "WHERE $bogus = 1"),
        "at 50: unknown field '$bogus'; the $ fields are $id, $ts, $displayName, $template, $provisioned, $simulated or $enabled",
    );
}

#[test]
fn in_lists() {
    check(
        &q("t", "WHERE $id IN ['a', 'b']"),
        &format!("select t; from {T}; where $id IN [\"a\", \"b\"]"),
    );
    check(
        &q("t", "WHERE $id in ('a')"),
        &format!("select t; from {T}; where $id IN [\"a\"]"),
    );
    check(
        &q("t", "WHERE t IN [1, 2.5, 'x', true]"),
        &format!("select t; from {T}; where t IN [1, 2.5, \"x\", true]"),
    );
    check(
        &q("t", "WHERE $id IN []"),
        "at 58: an IN list needs at least one value",
    );
    check(
        &q("t", "WHERE $id IN ()"),
        "at 58: an IN list needs at least one value",
    );
    check(
        &q("t", "WHERE $id IN 'a'"),
        "at 57: expected '[' or '(' after '$id IN', found the string 'a'",
    );
    check(
        &q("t", "WHERE $id IN ['a')"),
        "at 61: expected ',' or ']' in the IN list, found ')'",
    );
    check(
        &q("t", "WHERE $id IN ('a']"),
        "at 61: expected ',' or ')' in the IN list, found ']'",
    );
    check(&q("t", "WHERE $id IN ['a',]"), "at 62: expected a value (a number, a string, true, false or null) in the IN list, found ']'");
    check(
        &q("t", "WHERE $id IN ['a'"),
        "at 61: expected ',' or ']' in the IN list, found the end of the query",
    );
    check(
        &q("t", "WHERE t IN [1, null]"),
        "at 59: null cannot be in an IN list; compare with = null instead",
    );
    check(
        &q("t", "WHERE $id IN ['a', 2]"),
        "at 63: $id is text; compare it with a string",
    );
    check(
        &q("t", "WHERE $enabled IN [true]"),
        &format!("select t; from {T}; where $enabled IN [true]"),
    );
}

#[test]
fn logic_and_parentheses() {
    check(
        &q("t", "WHERE a = 1 AND b = 2 OR c = 3"),
        &format!("select t; from {T}; where ((a = 1 AND b = 2) OR c = 3)"),
    );
    check(
        &q("t", "WHERE a = 1 OR b = 2 AND c = 3"),
        &format!("select t; from {T}; where (a = 1 OR (b = 2 AND c = 3))"),
    );
    check(
        &q("t", "WHERE (a = 1 OR b = 2) AND c = 3"),
        &format!("select t; from {T}; where ((a = 1 OR b = 2) AND c = 3)"),
    );
    check(
        &q("t", "WHERE a = 1 and b = 2 and c = 3"),
        &format!("select t; from {T}; where (a = 1 AND b = 2 AND c = 3)"),
    );
    check(
        &q("t", "WHERE ((((a = 1))))"),
        &format!("select t; from {T}; where a = 1"),
    );
    check(
        &q("t", "WHERE (a = 1 AND b = 2) AND c = 3"),
        &format!("select t; from {T}; where ((a = 1 AND b = 2) AND c = 3)"),
    );
    check(
        &q("t", "WHERE (a = 1"),
        "at 56: expected ')' to close the '(' at 50, found the end of the query",
    );
    check(
        &q("t", "WHERE a = 1)"),
        "at 55: expected AND, OR, GROUP BY, ORDER BY or the end of the query, found ')'",
    );
    check(
        &q("t", "WHERE ()"),
        "at 51: expected a condition (a field, '(' or WITHIN_WINDOW), found ')'",
    );
    check(
        &q("t", "WHERE a = 1 AND"),
        "at 59: expected a condition (a field, '(' or WITHIN_WINDOW), found the end of the query",
    );
    check(
        &q("t", "WHERE a = 1 OR OR b = 1"),
        "at 59: expected a condition (a field, '(' or WITHIN_WINDOW), found 'OR'",
    );
    check(
        &q("t", "WHERE a = 1 b = 2"),
        "at 56: expected AND, OR, GROUP BY, ORDER BY or the end of the query, found 'b'",
    );
}

#[test]
fn aliases_in_where() {
    check(
        &q("temperature AS t, c.p AS p", "WHERE t > 0 AND p < 5 AND temperature = 1"),
        &format!("select temperature as t, c.p as p; from {T}; where (temperature > 0 AND c.p < 5 AND temperature = 1)"),
    );
    check(
        &q("$id AS device", "WHERE device = 'a'"),
        &format!("select $id as device; from {T}; where $id = \"a\""),
    );
    // The alias brings its field's type rules along.
    check(
        &q("$id AS device", "WHERE device = 5"),
        "at 71: $id is text; compare it with a string",
    );
    check(
        &q("AVG(temperature) AS a", "WHERE a > 5"),
        "at 70: 'a' names an aggregate, which WHERE cannot compare; compare the telemetry itself",
    );
    // Only plain names are aliases: `t.x` is component t's x.
    check(
        &q("temperature AS t", "WHERE t.x > 0"),
        &format!("select temperature as t; from {T}; where t.x > 0"),
    );
}

#[test]
fn time_windows() {
    check(
        &q("t", "WHERE WITHIN_WINDOW(PT10M)"),
        &format!("select t; from {T}; window PT10M"),
    );
    check(
        &q("t", "WHERE within_window(P2DT12H)"),
        &format!("select t; from {T}; window P2DT12H"),
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1W)"),
        &format!("select t; from {T}; window P7D"),
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(PT0.5S)"),
        &format!("select t; from {T}; window PT0.5S"),
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW( PT5H )"),
        &format!("select t; from {T}; window PT5H"),
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW('PT5H')"),
        &format!("select t; from {T}; window PT5H"),
    );
    check(
        &q(
            "t",
            "WHERE WITHIN_WINDOW('2021-06-13T13:00:00Z/2021-06-13T15:30:00Z')",
        ),
        &format!("select t; from {T}; window 2021-06-13T13:00:00.000Z/2021-06-13T15:30:00.000Z"),
    );
    check(
        &q("t", "WHERE t > 1 AND WITHIN_WINDOW(P1D) AND u < 2"),
        &format!("select t; from {T}; window P1D; where (t > 1 AND u < 2)"),
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1D) AND (a = 1 OR b = 2)"),
        &format!("select t; from {T}; window P1D; where (a = 1 OR b = 2)"),
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1M)"),
        "at 64: invalid duration 'P1M': months have no fixed length, so they are not accepted; use days (P30D) or weeks (P4W)",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1Y)"),
        "at 64: invalid duration 'P1Y': years have no fixed length, so they are not accepted; use days (P30D) or weeks (P4W)",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(10M)"),
        "at 64: invalid duration '10M': a duration starts with 'P', as in PT10M or P1D",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(PT0S)"),
        "at 64: invalid duration 'PT0S': the duration is zero; a window must be longer than that",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW()"),
        "at 64: expected a duration such as PT10M after 'WITHIN_WINDOW(', found ')'",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1D"),
        "at 67: expected ')' after the time window, found the end of the query",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1D PT1H)"),
        "at 68: expected ')' after the time window, found 'PT1H'",
    );
    check(
        &q(
            "t",
            "WHERE WITHIN_WINDOW('2021-06-13T15:30:00Z/2021-06-13T13:00:00Z')",
        ),
        "at 64: invalid time range: the range ends before it starts",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW('2021-06-13T13:00:00Z/soon')"),
        "at 64: invalid time range: 'soon' is not an RFC 3339 time such as 2021-06-13T13:00:00Z",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1D) OR t > 1"),
        "at 50: WITHIN_WINDOW cannot be one side of an OR; join it to the rest with AND",
    );
    check(
        &q("t", "WHERE t > 1 OR u > 2 AND WITHIN_WINDOW(P1D)"),
        "at 69: WITHIN_WINDOW cannot be one side of an OR; join it to the rest with AND",
    );
    check(
        &q("t", "WHERE (WITHIN_WINDOW(P1D) AND t > 1)"),
        "at 51: WITHIN_WINDOW cannot be inside parentheses; join it to the rest of WHERE with AND",
    );
    check(
        &q("t", "WHERE WITHIN_WINDOW(P1D) AND WITHIN_WINDOW(PT1H)"),
        "at 73: WITHIN_WINDOW appears twice; a query has one time window",
    );
    // Without parentheses it is a telemetry name.
    check(
        &q("t", "WHERE within_window = 1"),
        &format!("select t; from {T}; where within_window = 1"),
    );
}

#[test]
fn group_by() {
    check(
        &q("AVG(t)", "GROUP BY WINDOW(PT10M)"),
        &format!("select avg(t); from {T}; group window(PT10M)"),
    );
    check(
        &q("$id, AVG(t)", "GROUP BY $id"),
        &format!("select $id, avg(t); from {T}; group $id"),
    );
    check(
        &q("$id, $ts, MAX(t)", "group by window(PT1H), $id"),
        &format!("select $id, $ts, max(t); from {T}; group window(PT1H), $id"),
    );
    check(&q("AVG(t)", ""), &format!("select avg(t); from {T}"));
    check(
        &q("t", "GROUP BY WINDOW(PT10M)"),
        "at 7: GROUP BY needs an aggregate in SELECT, such as AVG(temperature)",
    );
    check(
        &q("$id, AVG(t)", ""),
        "at 7: '$id' is neither aggregated nor a GROUP BY key",
    );
    check(
        &q("AVG(t), u", "GROUP BY $id"),
        "at 15: 'u' is neither aggregated nor a GROUP BY key",
    );
    check(
        &q("$ts, AVG(t)", "GROUP BY $id"),
        "at 7: '$ts' is neither aggregated nor a GROUP BY key",
    );
    check(
        &q("AVG(t)", "GROUP WINDOW(PT1H)"),
        "at 55: expected BY after GROUP, found 'WINDOW'",
    );
    check(
        &q("AVG(t)", "GROUP BY"),
        "at 57: expected WINDOW(<duration>) or $id in GROUP BY, found the end of the query",
    );
    check(
        &q("AVG(t)", "GROUP BY t"),
        "at 58: expected WINDOW(<duration>) or $id in GROUP BY, found 't'",
    );
    check(&q("AVG(t)", "GROUP BY WINDOW(P1M)"), "at 65: invalid duration 'P1M': months have no fixed length, so they are not accepted; use days (P30D) or weeks (P4W)");
    check(
        &q("AVG(t)", "GROUP BY WINDOW(PT1H"),
        "at 69: expected ')' after the window length, found the end of the query",
    );
    check(
        &q("AVG(t)", "GROUP BY $id, $id"),
        "at 63: $id appears twice in GROUP BY",
    );
    check(
        &q("AVG(t)", "GROUP BY WINDOW(PT1H), window(PT2H)"),
        "at 72: window appears twice in GROUP BY",
    );
    check(
        &q("AVG(t)", "GROUP BY $id WHERE t > 1"),
        "at 62: expected ',', ORDER BY or the end of the query, found 'WHERE'",
    );
}

#[test]
fn order_by() {
    check(
        &q("t", "ORDER BY t"),
        &format!("select t; from {T}; order #0 asc"),
    );
    check(
        &q("t", "ORDER BY u DESC, $ts asc"),
        &format!("select t; from {T}; order u desc, $ts asc"),
    );
    check(
        &q("t", "order by c.t desc"),
        &format!("select t; from {T}; order c.t desc"),
    );
    check(
        &q("temperature AS x, y", "ORDER BY x DESC, y"),
        &format!("select temperature as x, y; from {T}; order #0 desc, #1 asc"),
    );
    check(
        &q("AVG(t)", "ORDER BY avg_t"),
        &format!("select avg(t); from {T}; order #0 asc"),
    );
    check(
        &q(
            "$id, AVG(t) AS a",
            "WHERE WITHIN_WINDOW(P1D) GROUP BY $id ORDER BY a DESC",
        ),
        &format!("select $id, avg(t) as a; from {T}; window P1D; group $id; order #1 desc"),
    );
    check(
        &q("t", "ORDER t"),
        "at 50: expected BY after ORDER, found 't'",
    );
    check(
        &q("t", "ORDER BY"),
        "at 52: expected a field or a SELECT alias after ORDER BY, found the end of the query",
    );
    check(
        &q("t", "ORDER BY AVG(t)"),
        "at 53: to order by an aggregate, name it with AS in SELECT and order by that name",
    );
    check(
        &q("t", "ORDER BY t DESC DESC"),
        "at 60: expected ',', ASC, DESC or the end of the query, found 'DESC'",
    );
    check(
        &q("t", "ORDER BY t WHERE t > 1"),
        "at 55: expected ',', ASC, DESC or the end of the query, found 'WHERE'",
    );
    check(
        &q("t", "ORDER BY t GROUP BY $id"),
        "at 55: expected ',', ASC, DESC or the end of the query, found 'GROUP'",
    );
}

#[test]
fn every_clause_together() {
    check(
        &q(
            "TOP 5 $id, AVG(c.t) AS avgT",
            "WHERE WITHIN_WINDOW(P1D) AND $id IN ['a','b'] GROUP BY WINDOW(PT1H), $id ORDER BY avgT DESC",
        ),
        &format!("top 5; select $id, avg(c.t) as avgT; from {T}; window P1D; where $id IN [\"a\", \"b\"]; group window(PT1H), $id; order #1 desc"),
    );
}

#[test]
fn limits() {
    let iot_central = Limits::iot_central();
    assert_eq!(
        (
            iot_central.max_chars,
            iot_central.max_select_items,
            iot_central.max_logical_operators
        ),
        (350, 15, 10)
    );

    // 350 characters pass, 351 do not; the error points at the first character too many.
    let base = q("t", "WHERE t = ''");
    let fill =
        |n_chars: usize| base.replace("''", &format!("'{}'", "x".repeat(n_chars - base.len())));
    assert_eq!(fill(350).chars().count(), 350);
    check(
        &fill(350),
        &format!(
            "select t; from {T}; where t = \"{}\"",
            "x".repeat(350 - base.len())
        ),
    );
    check(
        &fill(351),
        "at 350: the query is 351 characters long; at most 350 are allowed",
    );
    // Characters, not bytes: 350 'é' are 700 bytes but still within the limit.
    let accented = base.replace("''", &format!("'{}'", "é".repeat(350 - base.len())));
    assert!(Query::parse(&accented, &iot_central).is_ok());

    let items = |n: usize| {
        (0..n)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    check(
        &q(&items(15), ""),
        &format!("select {}; from {T}", items(15).replace(',', ", ")),
    );
    check(
        &q(&items(16), ""),
        "at 57: too many items in SELECT: at most 15 are allowed",
    );

    let conditions = |n: usize| {
        (0..n)
            .map(|i| format!("a{i}=1"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let ten_operators = q("t", &format!("WHERE {}", conditions(11)));
    assert!(Query::parse(&ten_operators, &iot_central).is_ok());
    let eleven_operators = q("t", &format!("WHERE {}", conditions(12)));
    check(
        &eleven_operators,
        "at 136: too many logical operators: at most 10 AND and OR are allowed",
    );

    // Raised limits accept what IoT Central's refuse.
    let raised = Limits {
        max_chars: 2_000,
        max_select_items: 100,
        max_logical_operators: 50,
    };
    check_with(
        &raised,
        &q(&items(16), ""),
        &format!("select {}; from {T}", items(16).replace(',', ", ")),
    );
    assert!(Query::parse(&eleven_operators, &raised).is_ok());
    assert!(Query::parse(&fill(351), &raised).is_ok());
    let strict = Limits {
        max_chars: 350,
        max_select_items: 1,
        max_logical_operators: 0,
    };
    check_with(
        &strict,
        &q("a, b", ""),
        "at 10: too many items in SELECT: at most 1 are allowed",
    );
    check_with(
        &strict,
        &q("a", "WHERE a = 1 AND b = 2"),
        "at 56: too many logical operators: at most 0 AND and OR are allowed",
    );
}

#[test]
fn nesting_is_bounded() {
    let raised = Limits {
        max_chars: 100_000,
        max_select_items: 15,
        max_logical_operators: 10,
    };
    let nested = |depth: usize| {
        q(
            "t",
            &format!("WHERE {}a = 1{}", "(".repeat(depth), ")".repeat(depth)),
        )
    };
    check_with(
        &raised,
        &nested(32),
        &format!("select t; from {T}; where a = 1"),
    );
    check_with(
        &raised,
        &nested(33),
        "at 82: parentheses nest deeper than 32 levels",
    );
    check_with(
        &raised,
        &nested(10_000),
        "at 82: parentheses nest deeper than 32 levels",
    );
}

#[test]
fn device_filters() {
    check_filter("SELECT * FROM devices", "all");
    check_filter("select * from DEVICES", "all");
    check_filter(
        "SELECT * FROM devices WHERE $displayName != \"abc\" AND $id = \"a\"",
        "($displayName <> \"abc\" AND $id = \"a\")",
    );
    check_filter(
        "SELECT * FROM devices WHERE $template = 'dtmi:com:example:Thermostat;1' AND $provisioned = true",
        "($template = \"dtmi:com:example:Thermostat;1\" AND $provisioned = true)",
    );
    check_filter(
        "SELECT * FROM devices WHERE $simulated = false OR $enabled != true",
        "($simulated = false OR $enabled <> true)",
    );
    check_filter(
        "SELECT * FROM devices WHERE City = 'Seattle' AND deviceInformation.manufacturer IN ['Contoso', 'Fabrikam']",
        "(City = \"Seattle\" AND deviceInformation.manufacturer IN [\"Contoso\", \"Fabrikam\"])",
    );
    check_filter(
        "SELECT * FROM devices WHERE firmware >= 2.5",
        "firmware >= 2.5",
    );
    check_filter(
        "SELECT * FROM devices WHERE $displayName = null",
        "$displayName = null",
    );
}

#[test]
fn device_filter_errors() {
    check_filter("", "at 0: expected SELECT, found the end of the query");
    check_filter(
        "SELECT $id FROM devices",
        "at 7: expected '*' after SELECT (a device filter is SELECT * FROM devices WHERE ...), found '$id'",
    );
    check_filter(
        "SELECT TOP 5 * FROM devices",
        "at 7: expected '*' after SELECT (a device filter is SELECT * FROM devices WHERE ...), found 'TOP'",
    );
    check_filter(
        "SELECT * devices",
        "at 9: expected FROM after '*', found 'devices'",
    );
    check_filter(
        &format!("SELECT * FROM {T}"),
        "at 14: expected 'devices' after FROM (a device filter is SELECT * FROM devices WHERE ...), found 'dtmi:com:example:Thermostat;1'",
    );
    check_filter(
        "SELECT * FROM devices WHERE",
        "at 27: expected a condition (a field or '('), found the end of the query",
    );
    check_filter(
        "SELECT * FROM devices ORDER BY $id",
        "at 22: expected WHERE or the end of the query, found 'ORDER'",
    );
    check_filter(
        "SELECT * FROM devices WHERE $id = 'a' GROUP BY $id",
        "at 38: expected AND, OR or the end of the query, found 'GROUP'",
    );
    check_filter(
        "SELECT * FROM devices WHERE $ts > '2021-06-13T13:00:00Z'",
        "at 28: $ts is the time of a telemetry value; a device filter compares device attributes only",
    );
    check_filter(
        "SELECT * FROM devices WHERE WITHIN_WINDOW(P1D)",
        "at 28: WITHIN_WINDOW selects telemetry by time; a device filter compares device attributes only",
    );
    check_filter(
        "SELECT * FROM devices WHERE $provisioned = 'yes'",
        "at 43: $provisioned is true or false; compare it with true or false",
    );
    check_filter(
        "SELECT * FROM devices WHERE $id = 'x''; DROP TABLE devices; --",
        "at 34: unterminated string: no closing ' for this one",
    );
    check_filter(
        "SELECT * FROM devices WHERE x'; DROP TABLE devices; -- = 1",
        "at 29: unterminated string: no closing ' for this one",
    );
    check_filter(
        "SELECT * FROM devices WHERE \"p\" = 1",
        "at 28: expected a condition (a field or '('), found the string \"p\"",
    );
    check_filter(
        "SELECT * FROM devices; DROP TABLE devices",
        "at 21: unexpected character ';'",
    );
    check_filter(
        "SELECT * FROM devices WHERE a = 1 -- comment",
        "at 34: unexpected character '-'",
    );
    let too_long = format!("SELECT * FROM devices WHERE $id = '{}'", "x".repeat(400));
    check_filter(
        &too_long,
        "at 350: the query is 436 characters long; at most 350 are allowed",
    );
    let raised = Limits {
        max_chars: 1_000,
        max_select_items: 15,
        max_logical_operators: 10,
    };
    check_filter_with(
        &raised,
        &too_long,
        &format!("$id = \"{}\"", "x".repeat(400)),
    );
}

#[test]
fn name_parse_matches_the_lexer() {
    use super::Name;
    for valid in ["a", "_", "temperature", "Temp_1", "count", "devices"] {
        assert_eq!(
            Name::parse(valid).map(|name| name.as_str().to_owned()),
            Some(valid.to_owned())
        );
    }
    for invalid in ["", "1a", "a-b", "a.b", "$id", "select", "AND", "null", "é"] {
        assert_eq!(Name::parse(invalid), None, "{invalid:?}");
    }
}

#[test]
fn output_names() {
    let query = Query::parse(
        &q("$id, AVG(t), MAX(c.u), AVG(x) AS y", "GROUP BY $id"),
        &Limits::iot_central(),
    )
    .unwrap();
    let names: Vec<String> = query
        .select()
        .iter()
        .map(|item| item.output_name())
        .collect();
    assert_eq!(names, ["$id", "avg_t", "max_c.u", "y"]);
    let plain = Query::parse(&q("$id, c.t, temperature AS x", ""), &Limits::iot_central()).unwrap();
    let names: Vec<String> = plain
        .select()
        .iter()
        .map(|item| item.output_name())
        .collect();
    assert_eq!(names, ["$id", "c.t", "x"]);
    assert_eq!(
        plain.select()[1].selected,
        Selected::Field(Field::Capability {
            component: Some(super::Name::parse("c").unwrap()),
            name: super::Name::parse("t").unwrap(),
        })
    );
}
