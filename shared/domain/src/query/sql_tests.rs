//! Device filters compiled to SQL and run on real SQLite: each case is a filter and the ids
//! of the devices it selects from a small fixed fleet. Every case also checks that the SQL
//! text holds no quote (so no literal was spliced in) and that the table is intact afterwards.

use super::{parse_device_filter, SqlFilter};
use crate::store::{RusqliteSql, Sql, Value};

/// The table device groups filter, exactly as the registry defines it.
const DEVICES_TABLE: &str = "CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    display_name TEXT,
    template TEXT,
    enabled INTEGER NOT NULL,
    provisioned INTEGER NOT NULL,
    simulated INTEGER NOT NULL,
    cloud_properties TEXT,
    reported TEXT
)";

const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";
const SENSOR: &str = "dtmi:com:example:Sensor;1";

/// (id, display name, template, enabled, provisioned, simulated, cloud properties, reported)
type Device = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    i64,
    i64,
    i64,
    Option<&'static str>,
    Option<&'static str>,
);

const FLEET: &[Device] = &[
    (
        "th-1",
        Some("Thermostat 1"),
        Some(THERMOSTAT),
        1,
        1,
        0,
        Some(r#"{"City": "Seattle", "floor": 3}"#),
        Some(
            r#"{"firmware": 2.5, "online": true, "deviceInformation": {"manufacturer": "Contoso", "model": "X1"}}"#,
        ),
    ),
    (
        "th-2",
        Some("Thermostat 2"),
        Some(THERMOSTAT),
        1,
        0,
        1,
        Some(r#"{"City": "Portland"}"#),
        // A reported `City` is shadowed by the cloud property of the same name.
        Some(
            r#"{"firmware": 1, "online": false, "City": "Ignored", "deviceInformation": {"manufacturer": "Fabrikam"}}"#,
        ),
    ),
    (
        "sensor-a",
        Some("Sensor A"),
        Some(SENSOR),
        0,
        1,
        0,
        Some("{}"),
        // Only reported here; and firmware is a string, which never equals a number.
        Some(r#"{"City": "Seattle", "firmware": "2.5"}"#),
    ),
    ("orphan", None, None, 1, 0, 0, None, None),
    (
        "o'brien",
        Some(r#"say "hi""#),
        Some(SENSOR),
        1,
        1,
        0,
        Some(r#"{"DROP": "x'; DROP TABLE devices; --"}"#),
        Some("{}"),
    ),
];

fn fleet() -> RusqliteSql {
    let mut sql = RusqliteSql::open_in_memory().unwrap();
    sql.execute(DEVICES_TABLE, &[]).unwrap();
    let text = |value: Option<&str>| value.map_or(Value::Null, |text| Value::Text(text.to_owned()));
    for (id, display_name, template, enabled, provisioned, simulated, cloud, reported) in FLEET {
        sql.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                Value::Text((*id).to_owned()),
                text(*display_name),
                text(*template),
                Value::Integer(*enabled),
                Value::Integer(*provisioned),
                Value::Integer(*simulated),
                text(*cloud),
                text(*reported),
            ],
        )
        .unwrap();
    }
    sql
}

fn selected_ids(sql: &mut RusqliteSql, filter: &SqlFilter) -> Vec<String> {
    let statement = format!(
        "SELECT id FROM devices WHERE {} ORDER BY id",
        filter.where_sql
    );
    let rows = sql.execute(&statement, &filter.params).unwrap();
    rows.rows
        .iter()
        .map(|row| row[0].as_text().unwrap().to_owned())
        .collect()
}

fn assert_fleet_intact(sql: &mut RusqliteSql, context: &str) {
    let count = sql.execute("SELECT count(*) FROM devices", &[]).unwrap();
    assert_eq!(
        count.scalar(),
        Some(&Value::Integer(FLEET.len() as i64)),
        "{context}"
    );
}

/// Parses `where_clause` as `SELECT * FROM devices WHERE <where_clause>` (or the whole filter
/// when it starts with SELECT), runs it and compares the selected ids (sorted).
fn check(where_clause: &str, expected: &[&str]) {
    let text = if where_clause.to_ascii_uppercase().starts_with("SELECT") {
        where_clause.to_owned()
    } else {
        format!("SELECT * FROM devices WHERE {where_clause}")
    };
    let filter = parse_device_filter(&text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .to_sql();
    assert!(
        !filter.where_sql.contains(['\'', '"', ';']),
        "literal text in SQL: {}",
        filter.where_sql
    );
    let mut sql = fleet();
    let mut expected: Vec<&str> = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(selected_ids(&mut sql, &filter), expected, "{text}");
    assert_fleet_intact(&mut sql, &text);
}

#[test]
fn the_compiled_sql_is_fixed_text_and_parameters() {
    let filter = parse_device_filter(
        "SELECT * FROM devices WHERE City = 'Seattle' AND comp.p IN [1, 2.5] AND $enabled = true AND $displayName != null",
    )
    .unwrap()
    .to_sql();
    assert_eq!(
        filter.where_sql,
        "(COALESCE(json_extract(cloud_properties, ?), json_extract(reported, ?)) = ? \
         AND json_extract(reported, ?) IN (?, ?) AND enabled = ? AND display_name IS NOT NULL)"
    );
    assert_eq!(
        filter.params,
        [
            Value::Text(r#"$."City""#.to_owned()),
            Value::Text(r#"$."City""#.to_owned()),
            Value::Text("Seattle".to_owned()),
            Value::Text(r#"$."comp"."p""#.to_owned()),
            Value::Integer(1),
            Value::Real(2.5),
            Value::Integer(1),
        ]
    );
    let ordered = parse_device_filter("SELECT * FROM devices WHERE comp.p > 2 OR q <= 'm'")
        .unwrap()
        .to_sql();
    assert_eq!(
        ordered.where_sql,
        "((typeof(json_extract(reported, ?)) IN (?, ?) AND json_extract(reported, ?) > ?) \
         OR (typeof(COALESCE(json_extract(cloud_properties, ?), json_extract(reported, ?))) IN (?) \
         AND COALESCE(json_extract(cloud_properties, ?), json_extract(reported, ?)) <= ?))"
    );
    let text = |text: &str| Value::Text(text.to_owned());
    assert_eq!(
        ordered.params,
        [
            text(r#"$."comp"."p""#),
            text("integer"),
            text("real"),
            text(r#"$."comp"."p""#),
            Value::Integer(2),
            text(r#"$."q""#),
            text(r#"$."q""#),
            text("text"),
            text(r#"$."q""#),
            text(r#"$."q""#),
            text("m"),
        ]
    );
    let everything = parse_device_filter("SELECT * FROM devices")
        .unwrap()
        .to_sql();
    assert_eq!(everything.where_sql, "1");
    assert!(everything.params.is_empty());
}

#[test]
fn system_fields() {
    let everyone = ["th-1", "th-2", "sensor-a", "orphan", "o'brien"];
    check("SELECT * FROM devices", &everyone);
    check("select * from devices", &everyone);
    check("$id = 'th-1'", &["th-1"]);
    check("$id != 'th-1'", &["th-2", "sensor-a", "orphan", "o'brien"]);
    check("$id <> 'th-1'", &["th-2", "sensor-a", "orphan", "o'brien"]);
    check("$id > 'th'", &["th-1", "th-2"]);
    check("$id <= 'orphan'", &["orphan", "o'brien"]);
    check(
        "$id IN ['th-1', 'sensor-a', 'nobody']",
        &["th-1", "sensor-a"],
    );
    check("$id IN ('th-2')", &["th-2"]);
    check("$id = 'TH-1'", &[]);
    check("$id = 'o''brien'", &["o'brien"]);
    check("$displayName = 'Sensor A'", &["sensor-a"]);
    check("$displayName = \"say \"\"hi\"\"\"", &["o'brien"]);
    check("$displayName = null", &["orphan"]);
    check(
        "$displayName != null",
        &["th-1", "th-2", "sensor-a", "o'brien"],
    );
    // A missing value is unknown, not different: `orphan` has no display name.
    check("$displayName != 'Sensor A'", &["th-1", "th-2", "o'brien"]);
    check(&format!("$template = '{THERMOSTAT}'"), &["th-1", "th-2"]);
    check(&format!("$template = {SENSOR}"), &["sensor-a", "o'brien"]);
    check("$template = null", &["orphan"]);
    check("$enabled = false", &["sensor-a"]);
    check("$enabled = true", &["th-1", "th-2", "orphan", "o'brien"]);
    check("$enabled != true", &["sensor-a"]);
    check("$provisioned = true", &["th-1", "sensor-a", "o'brien"]);
    check("$simulated = true", &["th-2"]);
    check("$simulated IN [true, false]", &everyone);
    check(
        "$provisioned = true AND $simulated = false",
        &["th-1", "sensor-a", "o'brien"],
    );
}

#[test]
fn properties() {
    check("City = 'Seattle'", &["th-1", "sensor-a"]);
    check("City = 'Portland'", &["th-2"]);
    check("City = 'Ignored'", &[]);
    check("City != 'Seattle'", &["th-2"]);
    check("City = null", &["orphan", "o'brien"]);
    check("City != null", &["th-1", "th-2", "sensor-a"]);
    check(
        "City IN ['Seattle', 'Portland']",
        &["th-1", "th-2", "sensor-a"],
    );
    check("city = 'Seattle'", &[]);
    check("floor > 2", &["th-1"]);
    check("floor > 3", &[]);
    check("firmware = 2.5", &["th-1"]);
    check("firmware = '2.5'", &["sensor-a"]);
    check("firmware >= 1", &["th-1", "th-2"]);
    check("firmware < 2", &["th-2"]);
    check("firmware > '2'", &["sensor-a"]);
    check("firmware > 'z'", &[]);
    check("City >= 'S'", &["th-1", "sensor-a"]);
    check("City < 5", &[]);
    check("firmware IN [1, 2.5]", &["th-1", "th-2"]);
    check("online = true", &["th-1"]);
    check("online = false", &["th-2"]);
    // JSON true reads back as 1 in SQLite (documented in sql.rs).
    check("online = 1", &["th-1"]);
    check("deviceInformation.manufacturer = 'Contoso'", &["th-1"]);
    check(
        "deviceInformation.manufacturer IN ['Contoso', 'Fabrikam']",
        &["th-1", "th-2"],
    );
    check(
        "deviceInformation.model = null",
        &["th-2", "sensor-a", "orphan", "o'brien"],
    );
    check("deviceInformation.model != null", &["th-1"]);
    // Components are reported properties only: City is not a component of anything.
    check(
        "City.x = null",
        &["th-1", "th-2", "sensor-a", "orphan", "o'brien"],
    );
    check("missing = 1", &[]);
}

#[test]
fn logic() {
    check(
        "(City = 'Seattle' OR $simulated = true) AND $enabled = true",
        &["th-1", "th-2"],
    );
    check(
        "City = 'Seattle' OR $simulated = true AND $enabled = true",
        &["th-1", "th-2", "sensor-a"],
    );
    check(
        "City = 'Seattle' AND (firmware = 2.5 OR firmware = '2.5')",
        &["th-1", "sensor-a"],
    );
    check(
        "$id = 'th-1' OR $id = 'th-2' OR $id = 'orphan'",
        &["th-1", "th-2", "orphan"],
    );
    check("$id = 'th-1' AND $id = 'th-2'", &[]);
    check(
        "((($enabled = true))) AND ((City = 'Portland') OR (floor = 3))",
        &["th-1", "th-2"],
    );
}

#[test]
fn injection_attempts_in_strings_select_nothing_and_break_nothing() {
    check("$id = 'x''; DROP TABLE devices; --'", &[]);
    check("$id = '1'' OR ''1''=''1'", &[]);
    check("$id = '1'' OR 1=1 --'", &[]);
    check("$displayName = \"x\"\"; DROP TABLE devices; --\"", &[]);
    check("City = 'Seattle'' OR ''a''=''a'", &[]);
    check("City IN ['a'') OR 1=1 --', 'b']", &[]);
    check("deviceInformation.manufacturer = '$.\"x\"'", &[]);
    check(
        "$template = 'dtmi:x;1'' UNION SELECT name FROM sqlite_master --'",
        &[],
    );
    check("$id = 'th-1\u{0}'' OR 1=1'", &[]);
    // Names that are SQL words are just property names: `DROP` is one o'brien really has.
    check("DROP = 'x''; DROP TABLE devices; --'", &["o'brien"]);
    check("TABLE = 1 OR sqlite_master = 1 OR devices = 1", &[]);
}

#[test]
fn injection_attempts_in_names_are_parse_errors() {
    let attempts = [
        "SELECT * FROM devices WHERE x'; DROP TABLE devices; -- = 1",
        "SELECT * FROM devices WHERE City\"; DROP TABLE devices; -- = 1",
        "SELECT * FROM devices WHERE \"City\" = 'Seattle'",
        "SELECT * FROM devices WHERE [City] = 'Seattle'",
        "SELECT * FROM devices WHERE `City` = 'Seattle'",
        "SELECT * FROM devices WHERE City) OR (1 = 1",
        "SELECT * FROM devices WHERE 1 = 1",
        "SELECT * FROM devices WHERE City = 'a' -- ' AND $id = 'b'",
        "SELECT * FROM devices WHERE City = 'a'; DROP TABLE devices",
        "SELECT * FROM devices; DROP TABLE devices",
        "SELECT * FROM devices WHERE $id; = 'a'",
        "SELECT * FROM devices WHERE $id = 'a' /* comment */",
        "SELECT * FROM devices WHERE comp.\"p\" = 1",
        "SELECT * FROM devices WHERE comp.p.q = 1",
        "SELECT * FROM devices WHERE City = Seattle",
    ];
    for attempt in attempts {
        assert!(parse_device_filter(attempt).is_err(), "accepted: {attempt}");
    }
}
