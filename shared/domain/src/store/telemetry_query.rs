//! Telemetry reads for the query component: the query API's queries run as SQL ([`run`]), last
//! known values ([`last_value`]), downsampled history ([`history`]), and retention
//! ([`prune_older_than`]).
//!
//! **How a query runs.** [`run`] compiles a parsed [`Query`] into one SQL statement; nothing is
//! filtered or aggregated in Rust. For telemetry the statement has three layers:
//! 1. *rows*: `devices JOIN telemetry` and `devices JOIN telemetry_inbox` (UNION ALL), each arm
//!    restricted to the template's devices, the time range, and the WHERE conjuncts that name
//!    only device attributes (`$id`, `$displayName`). So `$id = 'd1'` with a one-day window is a
//!    primary-key lookup of the device and one range scan of its `(device_id, enqueued_at)`
//!    cluster; "all devices, last hour" is one short range scan per device. Each capability the
//!    query names is read here, once per row, with `json_extract` on `fields` (only when the
//!    row's component matches), plus its JSON text (`->`) when it is output as it was sent.
//! 2. *filter*: the rest of WHERE. Rows carrying none of the selected fields are dropped.
//! 3. *answer*: the SELECT list, aggregated per `GROUP BY` key (a window is
//!    `enqueued_at / width * width`, windows aligned to the Unix epoch), ordered and limited.
//!
//! A query that names only properties (and no aggregate, window or `$ts`) reads the `devices`
//! table instead: one row per device of the template, cloud properties from
//! `cloud_properties` and the others from `reported`.
//!
//! Semantics, where IoT Central is silent or where we chose:
//! - A capability is a property when the template declares a property by that name (in that
//!   component); anything else is telemetry, so unmodeled telemetry can be queried too. One
//!   query reads telemetry or properties, not both.
//! - `name` reads the root component's messages, `component.name` that component's.
//! - `AVG`, `SUM`, `MIN`, `MAX` ignore values that are not numbers; `COUNT(x)` counts messages
//!   that carry `x`; `FIRST`/`LAST` take the value of the earliest/latest such message (by
//!   enqueued time, then arrival order). An aggregate query with no matching rows answers no
//!   rows rather than one row of nulls.
//! - Comparisons follow the device filters' rules (`query::SqlFilter`): `<`, `>`, `<=`, `>=`
//!   compare only values of the literal's kind, `= null` is `IS NULL`, booleans are 1/0.
//! - Without `WITHIN_WINDOW` a query covers all stored telemetry (retention bounds it); a
//!   window `Last(d)` is `[now - d, now]`; a range `'start/end'` is `[start, end)`, as
//!   `query::TimeRange` defines it.
//! - Without `ORDER BY`, rows come by time, then device; groups by window start, then device.
//!   `TOP n` and the caller's result cap both become the statement's LIMIT.
//!
//! **Invariant** (as `query::sql`): no text from the query reaches the SQL string; names travel
//! as JSON-path parameters and values as parameters.

use serde_json::{Map, Value as Json};

use super::rollups::{ceil_hour, floor_hour, HOUR_MS};
use super::{Sql, StoreError, Value};
use crate::dtdl::DeviceModel;
use crate::query::{
    Aggregate, Comparison, Condition, DeviceFilter, Direction, Field, GroupKey, Literal, OrderKey,
    Query, Selected, SystemField, TimeWindow,
};
use crate::time::Timestamp;

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The query is well-formed but cannot run against this template (mixes telemetry and
    /// properties, aggregates a property, ...); the message is for the caller.
    #[error("{message}")]
    Invalid { message: String },
    /// `FROM` names a template that does not exist.
    #[error("there is no device template '{template}'")]
    UnknownTemplate { template: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> RunError {
    RunError::Invalid {
        message: message.into(),
    }
}

/// One result row: output name → value, in SELECT order.
pub type ResultRow = Map<String, Json>;

/// How [`run_with`] runs a query.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions<'a> {
    /// At most this many rows (fewer when the query says `TOP`).
    pub max_results: u32,
    /// Only the devices of the template that are members of this device group's filter now.
    pub group: Option<&'a DeviceFilter>,
    /// Whether aggregates may read hourly rollups (`store::rollups`); the answer is the same
    /// either way, which the tests check by running both.
    pub rollups: bool,
}

/// Runs `query` against the telemetry (or the devices) of its template and returns at most
/// `max_results` rows (fewer when it says `TOP`). `now` anchors `WITHIN_WINDOW(<duration>)`.
pub fn run<S: Sql>(
    sql: &mut S,
    query: &Query,
    now: Timestamp,
    max_results: u32,
) -> Result<Vec<ResultRow>, RunError> {
    let options = RunOptions {
        max_results,
        group: None,
        rollups: true,
    };
    run_with(sql, query, now, &options)
}

/// [`run`] with a device group and the choice of rollups.
pub fn run_with<S: Sql>(
    sql: &mut S,
    query: &Query,
    now: Timestamp,
    options: &RunOptions<'_>,
) -> Result<Vec<ResultRow>, RunError> {
    let (statement, params, plan) = compile(sql, query, now, options)?;
    let rows = sql.execute(&statement, &params)?;
    let names: Vec<String> = query
        .select()
        .iter()
        .map(|item| item.output_name())
        .collect();
    rows.rows
        .into_iter()
        .map(|row| {
            let mut out = Map::new();
            for ((name, kind), value) in names.iter().zip(&plan.output_kinds).zip(row) {
                out.insert(name.clone(), kind.to_json(value));
            }
            Ok(out)
        })
        .collect()
}

/// The statement [`run`] executes, its parameters, and the plan that reads its rows.
fn compile<S: Sql>(
    sql: &mut S,
    query: &Query,
    now: Timestamp,
    options: &RunOptions<'_>,
) -> Result<(String, Vec<Value>, Plan), RunError> {
    let model = template_model(sql, query)?;
    let plan = Plan::new(query, model.as_ref())?;
    let max_results = options.max_results;
    let limit = query.top().map_or(max_results, |top| top.min(max_results));
    let mut builder = Builder::default();
    let statement = match plan.source {
        Source::Telemetry => telemetry_statement(query, &plan, now, limit, options, &mut builder)?,
        Source::Devices => devices_statement(query, &plan, limit, options.group, &mut builder)?,
    };
    Ok((statement, builder.params, plan))
}

fn template_model<S: Sql>(sql: &mut S, query: &Query) -> Result<Option<DeviceModel>, RunError> {
    const GET: &str = "SELECT capability_model FROM device_templates WHERE id = ?1";
    let rows = sql.execute(GET, &[Value::Text(query.from().as_str().to_owned())])?;
    let Some(value) = rows.scalar() else {
        return Err(RunError::UnknownTemplate {
            template: query.from().as_str().to_owned(),
        });
    };
    // A model that no longer parses still lets telemetry be queried: every name is telemetry.
    Ok(value
        .as_text()
        .and_then(|text| serde_json::from_str(text).ok())
        .and_then(|json| DeviceModel::parse(&json).ok()))
}

// ---- planning ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Telemetry,
    Devices,
}

/// How a capability is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    Telemetry,
    CloudProperty,
    ReportedProperty,
}

/// How an output column's SQL value becomes JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputKind {
    /// JSON text (from `->`), parsed back.
    Json,
    Number,
    Text,
    Bool,
    /// Unix milliseconds, written as RFC 3339.
    Timestamp,
}

impl OutputKind {
    fn to_json(self, value: Value) -> Json {
        match (self, value) {
            (_, Value::Null) => Json::Null,
            (OutputKind::Json, Value::Text(text)) => {
                serde_json::from_str(&text).unwrap_or(Json::String(text))
            }
            (OutputKind::Timestamp, Value::Integer(millis)) => {
                Json::String(Timestamp::from_unix_millis(millis).to_rfc3339())
            }
            (OutputKind::Bool, Value::Integer(flag)) => Json::Bool(flag != 0),
            (_, Value::Integer(integer)) => Json::from(integer),
            (_, Value::Real(real)) => serde_json::Number::from_f64(real)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            (_, Value::Text(text)) => Json::String(text),
            (_, Value::Blob(_)) => Json::Null,
        }
    }
}

/// What the query reads, decided once from the query and the template.
struct Plan {
    source: Source,
    /// Every distinct capability the query names, with how it is stored; column `v{i}` / `j{i}`.
    capabilities: Vec<(Field, Storage)>,
    aggregated: bool,
    /// Per capability: whether its JSON text is read too (a plain SELECT item, FIRST, LAST).
    needs_json: Vec<bool>,
    output_kinds: Vec<OutputKind>,
}

impl Plan {
    fn new(query: &Query, model: Option<&DeviceModel>) -> Result<Plan, RunError> {
        let mut fields: Vec<&Field> = Vec::new();
        let mut uses_ts = false;
        let mut aggregated = false;
        for item in query.select() {
            match &item.selected {
                Selected::Field(field) => fields.push(field),
                Selected::Aggregate { field, .. } => {
                    aggregated = true;
                    fields.push(field);
                }
            }
        }
        if let Some(condition) = query.filter() {
            condition_fields(condition, &mut fields);
        }
        for item in query.order_by() {
            if let OrderKey::Field(field) = &item.key {
                fields.push(field);
            }
        }
        let mut capabilities: Vec<(Field, Storage)> = Vec::new();
        for field in fields {
            match field {
                Field::System(SystemField::Ts) => uses_ts = true,
                Field::System(_) => {}
                Field::Capability { component, name } => {
                    if capabilities.iter().any(|(seen, _)| seen == field) {
                        continue;
                    }
                    let property = model.and_then(|model| {
                        model.property(component.as_ref().map(|c| c.as_str()), name.as_str())
                    });
                    let storage = match property {
                        Some(property) if property.cloud => Storage::CloudProperty,
                        Some(_) => Storage::ReportedProperty,
                        None => Storage::Telemetry,
                    };
                    capabilities.push((field.clone(), storage));
                }
            }
        }
        let telemetry = capabilities
            .iter()
            .find(|(_, storage)| *storage == Storage::Telemetry);
        let property = capabilities
            .iter()
            .find(|(_, storage)| *storage != Storage::Telemetry);
        let reads_telemetry = telemetry.is_some()
            || aggregated
            || uses_ts
            || query.window().is_some()
            || !query.group_by().is_empty();
        if let (true, Some((property, _))) = (reads_telemetry, property) {
            let why = match telemetry {
                Some((telemetry, _)) => format!("'{telemetry}' is telemetry"),
                None if aggregated => "aggregates apply to telemetry".to_owned(),
                None => "WITHIN_WINDOW, GROUP BY and $ts apply to telemetry".to_owned(),
            };
            return Err(invalid(format!(
                "a query reads telemetry or properties, not both: '{property}' is a property of \
                 the template and {why}"
            )));
        }
        let source = if reads_telemetry {
            Source::Telemetry
        } else {
            Source::Devices
        };
        let output_kinds = query
            .select()
            .iter()
            .map(|item| match &item.selected {
                Selected::Field(Field::System(system)) => match system {
                    SystemField::Ts => OutputKind::Timestamp,
                    SystemField::Provisioned | SystemField::Simulated | SystemField::Enabled => {
                        OutputKind::Bool
                    }
                    _ => OutputKind::Text,
                },
                Selected::Field(Field::Capability { .. }) => OutputKind::Json,
                Selected::Aggregate {
                    function: Aggregate::First | Aggregate::Last,
                    ..
                } => OutputKind::Json,
                Selected::Aggregate { .. } => OutputKind::Number,
            })
            .collect();
        let mut needs_json = vec![false; capabilities.len()];
        for item in query.select() {
            let field = match &item.selected {
                Selected::Field(field) => field,
                Selected::Aggregate {
                    function: Aggregate::First | Aggregate::Last,
                    field,
                } => field,
                Selected::Aggregate { .. } => continue,
            };
            if let Some(index) = capabilities.iter().position(|(seen, _)| seen == field) {
                needs_json[index] = true;
            }
        }
        Ok(Plan {
            source,
            capabilities,
            aggregated,
            needs_json,
            output_kinds,
        })
    }

    fn capability_index(&self, field: &Field) -> usize {
        self.capabilities
            .iter()
            .position(|(seen, _)| seen == field)
            .expect("every capability of the query was collected by Plan::new")
    }
}

fn condition_fields<'q>(condition: &'q Condition, out: &mut Vec<&'q Field>) {
    match condition {
        Condition::And(conditions) | Condition::Or(conditions) => {
            for condition in conditions {
                condition_fields(condition, out);
            }
        }
        Condition::Compare { field, .. } | Condition::In { field, .. } => out.push(field),
    }
}

// ---- SQL assembly ----

/// Numbered parameters (`?N`), so a fragment may be written before or after another and the
/// same value reused in both UNION arms.
#[derive(Default)]
struct Builder {
    params: Vec<Value>,
}

impl Builder {
    fn param(&mut self, value: Value) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    fn text(&mut self, text: &str) -> String {
        self.param(Value::Text(text.to_owned()))
    }

    /// A fragment written with anonymous `?` parameters (as `query::SqlFilter`), renumbered
    /// into this builder's. Its SQL holds no literals, so every `?` is a parameter.
    fn fragment(&mut self, sql: &str, params: Vec<Value>) -> String {
        let mut params = params.into_iter();
        let mut out = String::with_capacity(sql.len());
        for c in sql.chars() {
            if c == '?' {
                out.push_str(&self.param(params.next().unwrap_or(Value::Null)));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// `AND d.id IN (<the group's members>)`, or nothing without a group.
    fn group_condition(&mut self, group: Option<&DeviceFilter>) -> String {
        let Some(group) = group else {
            return String::new();
        };
        let filter = group.to_sql();
        let members = self.fragment(&filter.where_sql, filter.params);
        format!(" AND d.id IN (SELECT id FROM devices WHERE {members})")
    }
}

fn json_path(field: &Field) -> Option<(Option<&str>, String)> {
    match field {
        Field::Capability {
            component: Some(component),
            name,
        } => Some((Some(component.as_str()), format!("$.\"{name}\""))),
        Field::Capability {
            component: None,
            name,
        } => Some((None, format!("$.\"{name}\""))),
        Field::System(_) => None,
    }
}

/// The telemetry statement (see the module docs for its three layers).
fn telemetry_statement(
    query: &Query,
    plan: &Plan,
    now: Timestamp,
    limit: u32,
    options: &RunOptions<'_>,
    b: &mut Builder,
) -> Result<String, RunError> {
    // Layer 1: rows of the template's devices in the time range.
    let (mut low, mut high) = match query.window() {
        None => (i64::MIN, i64::MAX),
        Some(TimeWindow::Last(duration)) => {
            let length = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
            let now = now.unix_millis();
            (now.saturating_sub(length), now.saturating_add(1))
        }
        Some(TimeWindow::Range(range)) => (range.start().unix_millis(), range.end().unix_millis()),
    };
    let conjuncts: Vec<&Condition> = match query.filter() {
        None => Vec::new(),
        Some(Condition::And(conditions)) => conditions.iter().collect(),
        Some(condition) => vec![condition],
    };
    let mut device_conditions = Vec::new();
    let mut row_conditions = Vec::new();
    for conjunct in conjuncts {
        narrow_time(conjunct, &mut low, &mut high);
        if is_device_condition(conjunct) {
            device_conditions.push(conjunct);
        } else {
            row_conditions.push(conjunct);
        }
    }
    let template = b.text(query.from().as_str());
    let mut device_sql = String::new();
    for condition in device_conditions {
        device_sql.push_str(" AND ");
        condition_sql(condition, b, &mut device_sql, &|field, _| {
            device_column("d", field).unwrap_or("NULL").to_owned()
        });
    }
    device_sql.push_str(&b.group_condition(options.group));
    if options.rollups && rollups_apply(query, plan, &row_conditions) {
        return rollup_statement(query, plan, (low, high), &template, &device_sql, limit, b);
    }
    let low = b.param(Value::Integer(low));
    let high = b.param(Value::Integer(high));
    // Each capability is read once per row, inside the arms: the compound subquery is not
    // flattened, so its columns are computed once, while an expression repeated in the layers
    // above would be re-evaluated (and `json_extract` is the cost of a query).
    let mut values = String::new();
    let mut columns = String::new();
    for (index, (field, _)) in plan.capabilities.iter().enumerate() {
        let (component, path) = json_path(field).expect("capabilities are capability fields");
        let component = b.param(component.map_or(Value::Null, |c| Value::Text(c.to_owned())));
        let path = b.text(&path);
        values.push_str(&format!(
            ", CASE WHEN t.component IS {component} THEN json_extract(t.fields, {path}) END \
             AS v{index}"
        ));
        columns.push_str(&format!(", r.v{index} AS v{index}"));
        if plan.needs_json[index] {
            values.push_str(&format!(
                ", CASE WHEN t.component IS {component} THEN t.fields -> {path} END AS j{index}"
            ));
            columns.push_str(&format!(", r.j{index} AS j{index}"));
        }
    }
    let arm = |table: &str| {
        format!(
            "SELECT d.id AS id, d.display_name AS dn, d.enabled AS en, d.provisioned AS pr, \
             d.simulated AS si, t.enqueued_at AS ts, t.seq AS seq{values} \
             FROM devices d JOIN {table} t ON t.device_id = d.id \
             WHERE d.template = {template} AND t.enqueued_at >= {low} AND t.enqueued_at < {high}\
             {device_sql}"
        )
    };
    let rows = format!("{} UNION ALL {}", arm("telemetry"), arm("telemetry_inbox"));

    // Layer 2: the rest of WHERE.
    let value_sql = |field: &Field, _: &mut Builder| -> String {
        match field {
            Field::System(SystemField::Ts) => "r.ts".to_owned(),
            Field::System(SystemField::Template) => template.clone(),
            Field::System(_) => device_column("r", field).unwrap_or("NULL").to_owned(),
            Field::Capability { .. } => format!("r.v{}", plan.capability_index(field)),
        }
    };
    let mut where_sql = String::from("1");
    for condition in row_conditions {
        where_sql.push_str(" AND ");
        condition_sql(condition, b, &mut where_sql, &value_sql);
    }
    // Rows (or, aggregated, groups) that carry none of the selected capabilities answer
    // nothing. Aggregates skip NULLs anyway, so for them this is a HAVING on the counts.
    let selected: Vec<usize> = query
        .select()
        .iter()
        .filter_map(|item| match &item.selected {
            Selected::Field(field @ Field::Capability { .. }) => Some(field),
            Selected::Aggregate { field, .. } => Some(field),
            Selected::Field(_) => None,
        })
        .map(|field| plan.capability_index(field))
        .collect();
    let mut having = None;
    if !selected.is_empty() {
        if plan.aggregated {
            let counts: Vec<String> = selected
                .iter()
                .map(|index| format!("count(m.v{index})"))
                .collect();
            having = Some(format!("{} > 0", counts.join(" + ")));
        } else {
            let present: Vec<String> = selected
                .iter()
                .map(|index| format!("r.v{index} IS NOT NULL"))
                .collect();
            where_sql.push_str(&format!(" AND ({})", present.join(" OR ")));
        }
    }
    let middle = format!(
        "SELECT r.id AS id, r.dn AS dn, r.en AS en, r.pr AS pr, r.si AS si, r.ts AS ts, \
         r.seq AS seq{columns} FROM ({rows}) AS r WHERE {where_sql}"
    );

    // Layer 3: the answer.
    let having = having.unwrap_or_else(|| "count(*) > 0".to_owned());
    answer_sql(
        query,
        plan,
        &template,
        &middle,
        &having,
        &aggregate_sql,
        limit,
        b,
    )
}

/// Layer 3 of a telemetry statement: the SELECT list over the rows `middle` (alias `m`),
/// grouped (with `having`), ordered and limited. `aggregate` writes an aggregate's
/// `(output, sort key)` over capability `i`.
#[allow(clippy::too_many_arguments)]
fn answer_sql(
    query: &Query,
    plan: &Plan,
    template: &str,
    middle: &str,
    having: &str,
    aggregate: &dyn Fn(Aggregate, usize) -> (String, String),
    limit: u32,
    b: &mut Builder,
) -> Result<String, RunError> {
    let window = query.group_by().iter().find_map(|key| match key {
        GroupKey::Window(duration) => Some(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
        GroupKey::DeviceId => None,
    });
    let bucket = window.map(|width| {
        let width = b.param(Value::Integer(width));
        format!("(m.ts / {width} * {width})")
    });
    let by_device = query.group_by().contains(&GroupKey::DeviceId);
    let mut outputs = Vec::new();
    let mut sort_keys = Vec::new();
    for item in query.select() {
        let (output, sort) = match &item.selected {
            Selected::Field(Field::System(SystemField::Ts)) if plan.aggregated => {
                let bucket = bucket.clone().expect("the parser requires WINDOW for $ts");
                (bucket.clone(), bucket)
            }
            Selected::Field(field) => {
                let output = m_column(field, plan, template, true);
                (output, m_column(field, plan, template, false))
            }
            Selected::Aggregate { function, field } => {
                let index = plan.capability_index(field);
                aggregate(*function, index)
            }
        };
        outputs.push(output);
        sort_keys.push(sort);
    }
    let mut order = Vec::new();
    for item in query.order_by() {
        let key = match &item.key {
            OrderKey::SelectItem(index) => sort_keys[*index].clone(),
            OrderKey::Field(field) if !plan.aggregated => m_column(field, plan, template, false),
            OrderKey::Field(Field::System(SystemField::Id)) if by_device => "m.id".to_owned(),
            OrderKey::Field(Field::System(SystemField::Ts)) if bucket.is_some() => {
                bucket.clone().expect("checked")
            }
            OrderKey::Field(field) => {
                return Err(invalid(format!(
                    "ORDER BY '{field}': a query with aggregates orders by a SELECT item or a \
                     GROUP BY key"
                )))
            }
        };
        order.push(direction_sql(&key, item.direction));
    }
    let mut group = Vec::new();
    if let Some(bucket) = &bucket {
        group.push(bucket.clone());
    }
    if by_device {
        group.push("m.id".to_owned());
    }
    if plan.aggregated {
        order.extend(group.iter().cloned());
    } else {
        order.extend(["m.ts".to_owned(), "m.id".to_owned(), "m.seq".to_owned()]);
    }
    let limit = b.param(Value::Integer(i64::from(limit)));
    let mut statement = format!("SELECT {} FROM ({middle}) AS m", outputs.join(", "));
    if plan.aggregated {
        if !group.is_empty() {
            statement.push_str(&format!(" GROUP BY {}", group.join(", ")));
        }
        statement.push_str(&format!(" HAVING {having}"));
    }
    if !order.is_empty() {
        statement.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    statement.push_str(&format!(" LIMIT {limit}"));
    Ok(statement)
}

/// Whether an aggregate query can read hourly rollups for its whole hours: only AVG, SUM, MIN,
/// MAX and COUNT (FIRST and LAST need the messages), no condition on the rows themselves
/// (telemetry values, `$ts`), windows made of whole hours, and device columns only per device.
fn rollups_apply(query: &Query, plan: &Plan, row_conditions: &[&Condition]) -> bool {
    if !plan.aggregated || !row_conditions.is_empty() {
        return false;
    }
    let by_device = query.group_by().contains(&GroupKey::DeviceId);
    let mut windowed = false;
    for key in query.group_by() {
        if let GroupKey::Window(duration) = key {
            let width = i64::try_from(duration.as_millis()).unwrap_or(0);
            if width <= 0 || width % HOUR_MS != 0 {
                return false;
            }
            windowed = true;
        }
    }
    let device_field = |field: &Field| match field {
        Field::System(SystemField::Id | SystemField::DisplayName) => by_device,
        Field::System(SystemField::Ts) => windowed,
        _ => false,
    };
    let select_ok = query.select().iter().all(|item| match &item.selected {
        Selected::Aggregate { function, .. } => matches!(
            function,
            Aggregate::Avg | Aggregate::Sum | Aggregate::Min | Aggregate::Max | Aggregate::Count
        ),
        Selected::Field(field) => device_field(field),
    });
    let order_ok = query.order_by().iter().all(|item| match &item.key {
        OrderKey::SelectItem(_) => true,
        OrderKey::Field(field) => device_field(field),
    });
    select_ok
        && order_ok
        && plan
            .capabilities
            .iter()
            .all(|(_, storage)| *storage == Storage::Telemetry)
}

/// An aggregate query over rollups and raw rows. Per device (`dv`), the whole hours of the
/// range that its rollups cover, `[ra, rb)`, are read from `telemetry_rollups`; the rest of the
/// range (the partial hours at its edges, hours not rolled up yet) from `telemetry` as two
/// range scans, and the inbox raw as always. Every row of the middle layer carries either a
/// raw value `v{i}` or a rollup's `rn{i}` (count), `rc{i}` (numeric count), `rs{i}` (sum),
/// `rlo{i}`, `rhi{i}`; layer 3 combines both, so a window or device mixing them is exact.
fn rollup_statement(
    query: &Query,
    plan: &Plan,
    (low, high): (i64, i64),
    template: &str,
    device_sql: &str,
    limit: u32,
    b: &mut Builder,
) -> Result<String, RunError> {
    let whole_low = if low == i64::MIN { low } else { ceil_hour(low) };
    let whole_high = floor_hour(high);
    let low = b.param(Value::Integer(low));
    let high = b.param(Value::Integer(high));
    let whole_low = b.param(Value::Integer(whole_low));
    let whole_high = b.param(Value::Integer(whole_high));
    let start = format!("max({whole_low}, s.from_hour)");
    let end = format!("min({whole_high}, s.through)");
    let devices = format!(
        "SELECT d.id AS id, d.display_name AS dn, \
         CASE WHEN {start} < {end} THEN {start} ELSE {high} END AS ra, \
         CASE WHEN {start} < {end} THEN {end} ELSE {high} END AS rb \
         FROM devices d LEFT JOIN telemetry_rollup_state s ON s.device_id = d.id \
         WHERE d.template = {template}{device_sql}"
    );
    let mut raw_values = String::new();
    let mut raw_nulls = String::new();
    let mut rollup_values = String::new();
    let mut rollup_nulls = String::new();
    let mut rollup_match = Vec::new();
    for (index, (field, _)) in plan.capabilities.iter().enumerate() {
        let Field::Capability { component, name } = field else {
            unreachable!("capabilities are capability fields");
        };
        let (raw_component, path) = json_path(field).expect("a capability");
        let raw_component =
            b.param(raw_component.map_or(Value::Null, |c| Value::Text(c.to_owned())));
        let path = b.text(&path);
        raw_values.push_str(&format!(
            ", CASE WHEN t.component IS {raw_component} THEN json_extract(t.fields, {path}) END \
             AS v{index}"
        ));
        raw_nulls.push_str(&format!(
            ", NULL AS rn{index}, NULL AS rc{index}, NULL AS rs{index}, NULL AS rlo{index}, \
             NULL AS rhi{index}"
        ));
        let component = b.text(component.as_ref().map_or("", |c| c.as_str()));
        let name = b.text(name.as_str());
        let matches = format!("(r.component = {component} AND r.field = {name})");
        rollup_nulls.push_str(&format!(", NULL AS v{index}"));
        for (column, alias) in [
            ("n", "rn"),
            ("n_num", "rc"),
            ("sum", "rs"),
            ("lo", "rlo"),
            ("hi", "rhi"),
        ] {
            rollup_values.push_str(&format!(
                ", CASE WHEN {matches} THEN r.{column} END AS {alias}{index}"
            ));
        }
        rollup_match.push(matches);
    }
    let raw = |table: &str, range: &str| {
        format!(
            "SELECT dv.id AS id, dv.dn AS dn, t.enqueued_at AS ts{raw_values}{raw_nulls} \
             FROM dv JOIN {table} t ON t.device_id = dv.id WHERE {range}"
        )
    };
    let middle = format!(
        "WITH dv AS MATERIALIZED ({devices}) {} UNION ALL {} UNION ALL {} UNION ALL \
         SELECT dv.id AS id, dv.dn AS dn, r.hour AS ts{rollup_nulls}{rollup_values} \
         FROM dv JOIN telemetry_rollups r ON r.device_id = dv.id \
         WHERE r.hour >= dv.ra AND r.hour < dv.rb AND ({})",
        raw(
            "telemetry",
            &format!("t.enqueued_at >= {low} AND t.enqueued_at < dv.ra")
        ),
        raw(
            "telemetry",
            &format!("t.enqueued_at >= dv.rb AND t.enqueued_at < {high}")
        ),
        raw(
            "telemetry_inbox",
            &format!("t.enqueued_at >= {low} AND t.enqueued_at < {high}")
        ),
        rollup_match.join(" OR ")
    );
    let selected: Vec<usize> = query
        .select()
        .iter()
        .filter_map(|item| match &item.selected {
            Selected::Aggregate { field, .. } => Some(plan.capability_index(field)),
            Selected::Field(_) => None,
        })
        .collect();
    let having = if selected.is_empty() {
        "count(*) > 0".to_owned()
    } else {
        let counts: Vec<String> = selected.iter().map(|index| rollup_count(*index)).collect();
        format!("{} > 0", counts.join(" + "))
    };
    answer_sql(
        query,
        plan,
        template,
        &middle,
        &having,
        &rollup_aggregate_sql,
        limit,
        b,
    )
}

/// How many rows carry capability `index`: raw rows plus the rollups' counts.
fn rollup_count(index: usize) -> String {
    format!("(count(m.v{index}) + coalesce(sum(m.rn{index}), 0))")
}

/// `(output, sort key)` of an aggregate over raw values `v{index}` and rollup columns.
fn rollup_aggregate_sql(function: Aggregate, index: usize) -> (String, String) {
    let number = format!("CASE WHEN typeof(m.v{index}) IN ('integer', 'real') THEN m.v{index} END");
    // Either side may have no numbers (NULL); both NULL is NULL, as the raw aggregate.
    let combine = |raw: String, rolled: String, join: &dyn Fn(&str, &str) -> String| {
        format!(
            "(CASE WHEN {raw} IS NULL THEN {rolled} WHEN {rolled} IS NULL THEN {raw} \
             ELSE {} END)",
            join(&raw, &rolled)
        )
    };
    let sum = combine(
        format!("sum({number})"),
        format!("sum(m.rs{index})"),
        &|a, b| format!("{a} + {b}"),
    );
    let sql = match function {
        Aggregate::Sum => sum,
        Aggregate::Avg => {
            format!("(CAST({sum} AS REAL) / (count({number}) + coalesce(sum(m.rc{index}), 0)))")
        }
        Aggregate::Min => combine(
            format!("min({number})"),
            format!("min(m.rlo{index})"),
            &|a, b| format!("min({a}, {b})"),
        ),
        Aggregate::Max => combine(
            format!("max({number})"),
            format!("max(m.rhi{index})"),
            &|a, b| format!("max({a}, {b})"),
        ),
        Aggregate::Count => rollup_count(index),
        Aggregate::First | Aggregate::Last => {
            unreachable!("rollups_apply admits no FIRST or LAST")
        }
    };
    (sql.clone(), sql)
}

/// A column of the middle layer (`m`): JSON text for output, the SQL value for sorting.
fn m_column(field: &Field, plan: &Plan, template: &str, for_output: bool) -> String {
    match field {
        Field::System(SystemField::Ts) => "m.ts".to_owned(),
        Field::System(SystemField::Template) => template.to_owned(),
        Field::System(_) => device_column("m", field).unwrap_or("NULL").to_owned(),
        Field::Capability { .. } => {
            let index = plan.capability_index(field);
            if for_output {
                format!("m.j{index}")
            } else {
                format!("m.v{index}")
            }
        }
    }
}

/// `(output, sort key)` of an aggregate over column `v{index}` / `j{index}`.
fn aggregate_sql(function: Aggregate, index: usize) -> (String, String) {
    let number = format!("CASE WHEN typeof(m.v{index}) IN ('integer', 'real') THEN m.v{index} END");
    let plain = |name: &str| {
        let sql = format!("{name}({number})");
        (sql.clone(), sql)
    };
    match function {
        Aggregate::Avg => plain("avg"),
        Aggregate::Sum => plain("sum"),
        Aggregate::Min => plain("min"),
        Aggregate::Max => plain("max"),
        Aggregate::Count => {
            let sql = format!("count(m.v{index})");
            (sql.clone(), sql)
        }
        Aggregate::First | Aggregate::Last => {
            // The earliest (latest) message's value: a sortable (time, seq) prefix of fixed
            // width on the JSON text, min (max) of that, prefix cut off.
            let name = if function == Aggregate::First {
                "min"
            } else {
                "max"
            };
            let output = format!(
                "substr({name}(CASE WHEN m.j{index} IS NOT NULL THEN \
                 printf('%020d%020d', m.ts, m.seq) || m.j{index} END), 41)"
            );
            let sort = format!("json_extract({output}, '$')");
            (output, sort)
        }
    }
}

fn direction_sql(key: &str, direction: Direction) -> String {
    match direction {
        Direction::Ascending => format!("{key} ASC"),
        Direction::Descending => format!("{key} DESC"),
    }
}

/// The column of a device attribute in the table (or layer) `alias`.
fn device_column(alias: &str, field: &Field) -> Option<&'static str> {
    let column = match (alias, field) {
        ("d", Field::System(SystemField::Id)) => "d.id",
        ("d", Field::System(SystemField::DisplayName)) => "d.display_name",
        ("d", Field::System(SystemField::Template)) => "d.template",
        ("d", Field::System(SystemField::Enabled)) => "d.enabled",
        ("d", Field::System(SystemField::Provisioned)) => "d.provisioned",
        ("d", Field::System(SystemField::Simulated)) => "d.simulated",
        ("r", Field::System(SystemField::Id)) => "r.id",
        ("r", Field::System(SystemField::DisplayName)) => "r.dn",
        ("r", Field::System(SystemField::Enabled)) => "r.en",
        ("r", Field::System(SystemField::Provisioned)) => "r.pr",
        ("r", Field::System(SystemField::Simulated)) => "r.si",
        ("m", Field::System(SystemField::Id)) => "m.id",
        ("m", Field::System(SystemField::DisplayName)) => "m.dn",
        ("m", Field::System(SystemField::Enabled)) => "m.en",
        ("m", Field::System(SystemField::Provisioned)) => "m.pr",
        ("m", Field::System(SystemField::Simulated)) => "m.si",
        _ => return None,
    };
    Some(column)
}

/// A WHERE conjunct that names only device attributes can be applied before reading rows.
fn is_device_condition(condition: &Condition) -> bool {
    match condition {
        Condition::And(conditions) | Condition::Or(conditions) => {
            conditions.iter().all(is_device_condition)
        }
        Condition::Compare { field, .. } | Condition::In { field, .. } => matches!(
            field,
            Field::System(
                SystemField::Id
                    | SystemField::DisplayName
                    | SystemField::Enabled
                    | SystemField::Provisioned
                    | SystemField::Simulated
            )
        ),
    }
}

/// Tightens `[low, high)` by a top-level `$ts` comparison (the comparison stays in WHERE too).
fn narrow_time(condition: &Condition, low: &mut i64, high: &mut i64) {
    let Condition::Compare {
        field: Field::System(SystemField::Ts),
        comparison,
        value: Literal::Timestamp(at),
    } = condition
    else {
        return;
    };
    let at = at.unix_millis();
    match comparison {
        Comparison::Gt => *low = (*low).max(at.saturating_add(1)),
        Comparison::Ge => *low = (*low).max(at),
        Comparison::Lt => *high = (*high).min(at),
        Comparison::Le => *high = (*high).min(at.saturating_add(1)),
        Comparison::Eq => {
            *low = (*low).max(at);
            *high = (*high).min(at.saturating_add(1));
        }
        Comparison::Ne => {}
    }
}

/// Appends `condition` as SQL to `out`, reading fields through `field_sql`.
fn condition_sql(
    condition: &Condition,
    b: &mut Builder,
    out: &mut String,
    field_sql: &dyn Fn(&Field, &mut Builder) -> String,
) {
    match condition {
        Condition::And(conditions) | Condition::Or(conditions) => {
            let separator = if matches!(condition, Condition::And(_)) {
                " AND "
            } else {
                " OR "
            };
            out.push('(');
            for (index, condition) in conditions.iter().enumerate() {
                if index > 0 {
                    out.push_str(separator);
                }
                condition_sql(condition, b, out, field_sql);
            }
            out.push(')');
        }
        Condition::Compare {
            field,
            comparison,
            value: Literal::Null,
        } => {
            let column = field_sql(field, b);
            let test = if *comparison == Comparison::Ne {
                "IS NOT NULL"
            } else {
                "IS NULL"
            };
            out.push_str(&format!("({column} {test})"));
        }
        Condition::Compare {
            field: field @ Field::Capability { .. },
            comparison:
                comparison @ (Comparison::Lt | Comparison::Gt | Comparison::Le | Comparison::Ge),
            value,
        } => {
            let column = field_sql(field, b);
            let kinds = match value {
                Literal::Text(_) => "'text'",
                _ => "'integer', 'real'",
            };
            let value = b.param(literal_value(value));
            out.push_str(&format!(
                "(typeof({column}) IN ({kinds}) AND {column} {} {value})",
                comparison.as_str()
            ));
        }
        Condition::Compare {
            field,
            comparison,
            value,
        } => {
            let column = field_sql(field, b);
            let value = b.param(literal_value(value));
            out.push_str(&format!("({column} {} {value})", comparison.as_str()));
        }
        Condition::In { field, values } => {
            let column = field_sql(field, b);
            let values: Vec<String> = values
                .iter()
                .map(|value| b.param(literal_value(value)))
                .collect();
            out.push_str(&format!("({column} IN ({}))", values.join(", ")));
        }
    }
}

fn literal_value(value: &Literal) -> Value {
    match value {
        Literal::Null => Value::Null,
        Literal::Bool(flag) => Value::Integer(i64::from(*flag)),
        Literal::Integer(integer) => Value::Integer(*integer),
        Literal::Real(real) => Value::Real(*real),
        Literal::Text(text) => Value::Text(text.clone()),
        Literal::Timestamp(at) => Value::Integer(at.unix_millis()),
    }
}

/// The property statement: one row per device of the template.
fn devices_statement(
    query: &Query,
    plan: &Plan,
    limit: u32,
    group: Option<&DeviceFilter>,
    b: &mut Builder,
) -> Result<String, RunError> {
    let mut paths = Vec::new();
    for (field, storage) in &plan.capabilities {
        let path = match (field, storage) {
            (
                Field::Capability {
                    component: Some(component),
                    name,
                },
                _,
            ) => format!("$.\"{component}\".\"{name}\""),
            (field, _) => json_path(field).expect("a capability").1,
        };
        paths.push(b.text(&path));
    }
    let column = |field: &Field, for_output: bool| -> String {
        match field {
            Field::Capability { .. } => {
                let index = plan.capability_index(field);
                let path = &paths[index];
                let table = match plan.capabilities[index].1 {
                    Storage::CloudProperty => "d.cloud_properties",
                    _ => "d.reported",
                };
                if for_output {
                    format!("({table} -> {path})")
                } else {
                    format!("json_extract({table}, {path})")
                }
            }
            field => device_column("d", field).unwrap_or("NULL").to_owned(),
        }
    };
    let template = b.text(query.from().as_str());
    let mut where_sql = format!("d.template = {template}");
    where_sql.push_str(&b.group_condition(group));
    if let Some(condition) = query.filter() {
        where_sql.push_str(" AND ");
        condition_sql(condition, b, &mut where_sql, &|field, _| {
            column(field, false)
        });
    }
    let outputs: Vec<String> = query
        .select()
        .iter()
        .map(|item| match &item.selected {
            Selected::Field(field) => column(field, true),
            Selected::Aggregate { .. } => unreachable!("aggregates make a telemetry query"),
        })
        .collect();
    let mut order: Vec<String> = query
        .order_by()
        .iter()
        .map(|item| {
            let key = match &item.key {
                OrderKey::SelectItem(index) => match &query.select()[*index].selected {
                    Selected::Field(field) => column(field, false),
                    Selected::Aggregate { .. } => unreachable!("aggregates make a telemetry query"),
                },
                OrderKey::Field(field) => column(field, false),
            };
            direction_sql(&key, item.direction)
        })
        .collect();
    order.push("d.id".to_owned());
    let limit = b.param(Value::Integer(i64::from(limit)));
    Ok(format!(
        "SELECT {} FROM devices d WHERE {where_sql} ORDER BY {} LIMIT {limit}",
        outputs.join(", "),
        order.join(", ")
    ))
}

// ---- last known values and history ----

/// Whether a device with this id is registered.
pub fn device_exists<S: Sql>(sql: &mut S, device_id: &str) -> Result<bool, StoreError> {
    let rows = sql.execute(
        "SELECT 1 FROM devices WHERE id = ?1",
        &[Value::Text(device_id.to_owned())],
    )?;
    Ok(!rows.rows.is_empty())
}

/// The last known value of telemetry `name` of `component` (`""`: the root) and when it was
/// enqueued.
pub fn last_value<S: Sql>(
    sql: &mut S,
    device_id: &str,
    component: &str,
    name: &str,
) -> Result<Option<(Json, Timestamp)>, StoreError> {
    const GET: &str = "SELECT j.value -> 0, j.value ->> 1 \
         FROM last_values l, json_each(l.fields) j \
         WHERE l.device_id = ?1 AND l.component = ?2 AND j.key = ?3";
    let rows = sql.execute(
        GET,
        &[
            Value::Text(device_id.to_owned()),
            Value::Text(component.to_owned()),
            Value::Text(name.to_owned()),
        ],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    match (&row[0], &row[1]) {
        (Value::Text(value), Value::Integer(at)) => {
            let value =
                serde_json::from_str(value).map_err(|err| StoreError::UnexpectedResult {
                    statement: GET,
                    detail: format!("value is not JSON: {err}"),
                })?;
            Ok(Some((value, Timestamp::from_unix_millis(*at))))
        }
        _ => Err(StoreError::UnexpectedResult {
            statement: GET,
            detail: "unexpected column types".to_owned(),
        }),
    }
}

/// One bucket of a downsampled series: `[from, to)` and the numeric values in it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HistoryBucket {
    pub from: String,
    pub to: String,
    pub count: i64,
    pub min: Json,
    pub max: Json,
    pub avg: Json,
}

/// Telemetry `name` of `component` (`None`: the root) of one device over `[from, to)`, in at
/// most `points` equal buckets (each at least 1 ms wide); buckets without numeric values are
/// left out. One range scan of the device's cluster, aggregated in SQL.
pub fn history<S: Sql>(
    sql: &mut S,
    device_id: &str,
    component: Option<&str>,
    name: &str,
    from: Timestamp,
    to: Timestamp,
    points: u32,
) -> Result<Vec<HistoryBucket>, StoreError> {
    let (from, to) = (from.unix_millis(), to.unix_millis());
    if to <= from || points == 0 {
        return Ok(Vec::new());
    }
    let span = to - from;
    let points = i64::from(points);
    let width = (span / points + i64::from(span % points != 0)).max(1);
    let arm = |table: &str| {
        format!(
            "SELECT t.enqueued_at AS ts, CASE WHEN t.component IS ?2 \
             THEN json_extract(t.fields, ?3) END AS v FROM {table} t \
             WHERE t.device_id = ?1 AND t.enqueued_at >= ?4 AND t.enqueued_at < ?5"
        )
    };
    let statement = format!(
        "SELECT (r.ts - ?4) / ?6 AS b, count(r.v), min(r.v), max(r.v), avg(r.v) FROM ({} UNION ALL {}) AS r \
         WHERE typeof(r.v) IN ('integer', 'real') GROUP BY b ORDER BY b",
        arm("telemetry"),
        arm("telemetry_inbox")
    );
    let rows = sql.execute(
        &statement,
        &[
            Value::Text(device_id.to_owned()),
            component.map_or(Value::Null, |c| Value::Text(c.to_owned())),
            Value::Text(format!("$.\"{name}\"")),
            Value::Integer(from),
            Value::Integer(to),
            Value::Integer(width),
        ],
    )?;
    Ok(rows
        .rows
        .into_iter()
        .map(|row| {
            let bucket = row[0].as_integer().unwrap_or(0);
            let start = from + bucket * width;
            let number = |value: &Value| OutputKind::Number.to_json(value.clone());
            HistoryBucket {
                from: Timestamp::from_unix_millis(start).to_rfc3339(),
                to: Timestamp::from_unix_millis((start + width).min(to)).to_rfc3339(),
                count: row[1].as_integer().unwrap_or(0),
                min: number(&row[2]),
                max: number(&row[3]),
                avg: number(&row[4]),
            }
        })
        .collect())
}

// ---- retention ----

/// Where the last retention step stopped (a device id), in `gyre_meta`.
const RETENTION_CURSOR: &str = "telemetry.retention_cursor";

/// What one retention step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    pub rows: u64,
    pub devices_visited: u64,
}

/// Deletes telemetry enqueued before `before`: at most `max_rows` rows, visiting at most
/// `max_devices` devices, in one short transaction (a step of a few thousand rows holds the
/// write lock for milliseconds, so ingest waits at most that long). Each device's old rows are
/// one range at the start of its cluster, found by one index seek (a device with nothing old
/// costs that read only). Calls resume after the last device visited (kept in `gyre_meta`),
/// wrapping around, so successive ticks sweep every device. The inbox (small, not clustered)
/// is pruned within the same row budget.
pub fn prune_older_than<S: Sql>(
    sql: &mut S,
    before: Timestamp,
    max_rows: u32,
    max_devices: u32,
) -> Result<Pruned, StoreError> {
    sql.transaction(|tx| prune_step(tx, before, max_rows, max_devices))
}

fn prune_step<S: Sql>(
    sql: &mut S,
    before: Timestamp,
    max_rows: u32,
    max_devices: u32,
) -> Result<Pruned, StoreError> {
    let cut = before.unix_millis();
    let mut budget = i64::from(max_rows);
    let mut pruned = Pruned::default();
    let inbox = sql.execute(
        "DELETE FROM telemetry_inbox WHERE seq IN (SELECT seq FROM telemetry_inbox \
         WHERE enqueued_at < ?1 ORDER BY seq LIMIT ?2) RETURNING seq",
        &[Value::Integer(cut), Value::Integer(budget)],
    )?;
    pruned.rows += inbox.rows.len() as u64;
    budget -= inbox.rows.len() as i64;
    let cursor = sql.execute(
        "SELECT value FROM gyre_meta WHERE key = ?1",
        &[Value::Text(RETENTION_CURSOR.to_owned())],
    )?;
    let start = cursor
        .scalar()
        .and_then(Value::as_text)
        .unwrap_or_default()
        .to_owned();
    let mut cursor = start.clone();
    let mut wrapped = false;
    while budget > 0 && pruned.devices_visited < u64::from(max_devices) {
        // The next device and, clustered first, its oldest row.
        let next = sql.execute(
            "SELECT device_id, enqueued_at FROM telemetry WHERE device_id > ?1 \
             ORDER BY device_id, enqueued_at LIMIT 1",
            &[Value::Text(cursor.clone())],
        )?;
        let Some(row) = next.rows.first() else {
            cursor.clear();
            if wrapped || start.is_empty() {
                break;
            }
            wrapped = true;
            continue;
        };
        let device = row[0].as_text().unwrap_or_default().to_owned();
        if wrapped && device > start {
            break;
        }
        pruned.devices_visited += 1;
        if row[1].as_integer().is_some_and(|oldest| oldest < cut) {
            // At most `budget` rows: when there are more, stop before the time of the first
            // row over budget (ties at that time wait for the next step).
            let bound = sql
                .execute(
                    "SELECT enqueued_at FROM telemetry WHERE device_id = ?1 AND enqueued_at < ?2 \
                     ORDER BY enqueued_at LIMIT 1 OFFSET ?3",
                    &[
                        Value::Text(device.clone()),
                        Value::Integer(cut),
                        Value::Integer(budget),
                    ],
                )?
                .scalar()
                .and_then(Value::as_integer)
                .unwrap_or(cut);
            let deleted = sql.execute(
                "DELETE FROM telemetry WHERE device_id = ?1 AND enqueued_at < ?2 RETURNING seq",
                &[Value::Text(device.clone()), Value::Integer(bound)],
            )?;
            // The hours that lost rows no longer match their rollups.
            super::rollups::forget_before(sql, &device, bound)?;
            pruned.rows += deleted.rows.len() as u64;
            budget -= deleted.rows.len() as i64;
            if budget <= 0 {
                // The device may have old rows left: visit it again first next time.
                break;
            }
        }
        cursor = device;
    }
    sql.execute(
        "INSERT INTO gyre_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[
            Value::Text(RETENTION_CURSOR.to_owned()),
            Value::Text(cursor),
        ],
    )?;
    Ok(pruned)
}

#[cfg(all(test, feature = "rusqlite"))]
#[path = "telemetry_query_tests.rs"]
mod tests;
