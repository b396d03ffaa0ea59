//! The query executor against a seeded data set: every answer is computed again here, in plain
//! Rust over the same points, and compared with what the SQL returned.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use super::*;
use crate::query::{Limits, Query};
use crate::store::{migrate, rollups, telemetry, RusqliteSql};

const TEMPLATE: &str = "dtmi:test:Thermostat;1";
const OTHER: &str = "dtmi:test:Other;1";
/// 2025-11-26T12:00:00Z: the first point.
const T0: i64 = 1_764_158_400_000;
const MINUTE: i64 = 60_000;
const N_POINTS: i64 = 120;
const DEVICES: [&str; 5] = ["d0", "d1", "d2", "d3", "d4"];

/// One stored message, as the test knows it.
#[derive(Clone, Debug)]
struct Point {
    device: String,
    ts: i64,
    seq: i64,
    component: Option<&'static str>,
    fields: Map<String, Json>,
}

impl Point {
    fn num(&self, name: &str) -> Option<f64> {
        self.fields.get(name).and_then(Json::as_f64)
    }
}

/// Device `i`, minute `k`: temperature cycles through 0..25 in half degrees; humidity on even
/// minutes only; status text; every third minute a `sensor` component message with pressure.
fn points() -> Vec<Point> {
    let mut out = Vec::new();
    let mut seq = 0;
    for (i, device) in DEVICES.iter().enumerate().chain([(9, &"x9")]) {
        let i = i as i64;
        for k in 0..N_POINTS {
            seq += 1;
            let ts = T0 + k * MINUTE + i * 1000;
            let temperature = ((i * 37 + k * 13) % 50) as f64 / 2.0;
            let mut fields = Map::new();
            // Whole numbers are stored as JSON integers, as devices send them.
            if temperature.fract() == 0.0 {
                fields.insert("temperature".into(), json!(temperature as i64));
            } else {
                fields.insert("temperature".into(), json!(temperature));
            }
            if k % 2 == 0 {
                fields.insert("humidity".into(), json!((i * 7 + k) % 40));
            }
            let status = if temperature > 20.0 { "hot" } else { "ok" };
            fields.insert("status".into(), json!(status));
            out.push(Point {
                device: device.to_string(),
                ts,
                seq,
                component: None,
                fields,
            });
            if k % 3 == 0 {
                seq += 1;
                let mut fields = Map::new();
                fields.insert("pressure".into(), json!(1000 + i * 10 + k % 7));
                out.push(Point {
                    device: device.to_string(),
                    ts: ts + 1,
                    seq,
                    component: Some("sensor"),
                    fields,
                });
            }
        }
    }
    out
}

/// The points of the template's devices only (`x9` is on another template).
fn template_points() -> Vec<Point> {
    points()
        .into_iter()
        .filter(|point| point.device != "x9")
        .collect()
}

fn seeded() -> RusqliteSql {
    let mut sql = RusqliteSql::open_in_memory().unwrap();
    migrate(&mut sql, Timestamp::from_unix_millis(T0)).unwrap();
    let model = json!({
        "@id": TEMPLATE,
        "@type": "Interface",
        "@context": "dtmi:dtdl:context;2",
        "contents": [
            {"@type": "Telemetry", "name": "temperature", "schema": "double"},
            {"@type": "Telemetry", "name": "humidity", "schema": "double"},
            {"@type": "Telemetry", "name": "status", "schema": "string"},
            {"@type": "Property", "name": "firmware", "schema": "string"},
            {"@type": ["Property", "Cloud"], "name": "location", "schema": "string"},
            {"@type": "Component", "name": "sensor", "schema": {
                "@id": "dtmi:test:Sensor;1",
                "@type": "Interface",
                "contents": [
                    {"@type": "Telemetry", "name": "pressure", "schema": "double"},
                    {"@type": "Property", "name": "serial", "schema": "string"}
                ]
            }}
        ]
    });
    crate::dtdl::DeviceModel::parse(&model).expect("the test model parses");
    for (id, model) in [(TEMPLATE, model.to_string()), (OTHER, "{}".to_owned())] {
        sql.execute(
            "INSERT INTO device_templates (id, etag, types, capability_model, created_at, \
             updated_at) VALUES (?1, 'e', '[]', ?2, 0, 0)",
            &[Value::Text(id.into()), Value::Text(model)],
        )
        .unwrap();
    }
    for (i, id) in DEVICES.iter().enumerate() {
        let location = if i % 2 == 0 { "lab" } else { "field" };
        sql.execute(
            "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
             simulated, cloud_properties, reported, created_at, updated_at) \
             VALUES (?1, 'e', ?2, ?3, 1, 1, 0, ?4, ?5, 0, 0)",
            &[
                Value::Text((*id).into()),
                Value::Text(format!("Device {i}")),
                Value::Text(TEMPLATE.into()),
                Value::Text(json!({"location": location}).to_string()),
                Value::Text(
                    json!({"firmware": format!("1.{i}"), "sensor": {"serial": format!("S{i}")}})
                        .to_string(),
                ),
            ],
        )
        .unwrap();
    }
    sql.execute(
        "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, simulated, \
         created_at, updated_at) VALUES ('x9', 'e', 'Other', ?1, 1, 1, 0, 0, 0)",
        &[Value::Text(OTHER.into())],
    )
    .unwrap();
    // Even minutes compacted, odd ones still in the inbox: every read must see both.
    for point in points() {
        let table = if (point.ts - T0) / MINUTE % 2 == 0 {
            "telemetry"
        } else {
            "telemetry_inbox"
        };
        sql.execute(
            &format!(
                "INSERT INTO {table} (seq, device_id, component, enqueued_at, body, fields) \
                 VALUES (?1, ?2, ?3, ?4, x'', ?5)"
            ),
            &[
                Value::Integer(point.seq),
                Value::Text(point.device.clone()),
                point
                    .component
                    .map_or(Value::Null, |c| Value::Text(c.to_owned())),
                Value::Integer(point.ts),
                Value::Text(Json::Object(point.fields.clone()).to_string()),
            ],
        )
        .unwrap();
    }
    sql
}

fn now() -> Timestamp {
    Timestamp::from_unix_millis(T0 + N_POINTS * MINUTE)
}

fn query(sql: &mut RusqliteSql, text: &str) -> Result<Vec<Json>, RunError> {
    query_capped(sql, text, 10_000)
}

fn query_capped(sql: &mut RusqliteSql, text: &str, cap: u32) -> Result<Vec<Json>, RunError> {
    let parsed = Query::parse(text, &Limits::iot_central())
        .unwrap_or_else(|err| panic!("{text}: does not parse: {err}"));
    Ok(run(sql, &parsed, now(), cap)?
        .into_iter()
        .map(Json::Object)
        .collect())
}

fn at(ts: i64) -> String {
    Timestamp::from_unix_millis(ts).to_rfc3339()
}

fn range(from_minute: i64, to_minute: i64) -> String {
    format!(
        "'{}/{}'",
        at(T0 + from_minute * MINUTE),
        at(T0 + to_minute * MINUTE)
    )
}

/// Compares as numbers where both are numbers (1 and 1.0 are the same answer).
fn assert_same(actual: &[Json], expected: &[Json], label: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{label}: {actual:#?} vs {expected:#?}"
    );
    for (row, (a, e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (a.as_object().unwrap(), e.as_object().unwrap());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            e.keys().collect::<Vec<_>>(),
            "{label}: row {row} columns"
        );
        for (key, a_value) in a {
            let e_value = &e[key];
            match (a_value.as_f64(), e_value.as_f64()) {
                (Some(x), Some(y)) => {
                    assert!((x - y).abs() < 1e-9, "{label}: row {row} {key}: {x} vs {y}")
                }
                _ => assert_eq!(a_value, e_value, "{label}: row {row} {key}"),
            }
        }
    }
}

fn avg(values: &[f64]) -> Json {
    if values.is_empty() {
        Json::Null
    } else {
        json!(values.iter().sum::<f64>() / values.len() as f64)
    }
}

fn fmax(values: &[f64]) -> Json {
    values
        .iter()
        .cloned()
        .reduce(f64::max)
        .map_or(Json::Null, |v| json!(v))
}

fn fmin(values: &[f64]) -> Json {
    values
        .iter()
        .cloned()
        .reduce(f64::min)
        .map_or(Json::Null, |v| json!(v))
}

#[test]
fn one_device_over_an_explicit_range_returns_its_messages_in_time_order() {
    let mut sql = seeded();
    let text = format!(
        "SELECT $id, $ts, temperature FROM {TEMPLATE} WHERE $id = 'd1' AND WITHIN_WINDOW({})",
        range(10, 20)
    );
    let expected: Vec<Json> = template_points()
        .iter()
        .filter(|p| p.device == "d1" && p.component.is_none())
        .filter(|p| p.ts >= T0 + 10 * MINUTE && p.ts < T0 + 20 * MINUTE)
        .map(|p| json!({"$id": "d1", "$ts": at(p.ts), "temperature": p.fields["temperature"]}))
        .collect();
    assert_eq!(expected.len(), 10);
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn within_window_counts_back_from_now() {
    let mut sql = seeded();
    let text = format!("SELECT $id, humidity FROM {TEMPLATE} WHERE WITHIN_WINDOW(PT15M)");
    let mut expected: Vec<(i64, String, Json)> = template_points()
        .iter()
        .filter(|p| p.component.is_none() && p.fields.contains_key("humidity"))
        .filter(|p| p.ts >= now().unix_millis() - 15 * MINUTE)
        .map(|p| (p.ts, p.device.clone(), p.fields["humidity"].clone()))
        .collect();
    expected.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let expected: Vec<Json> = expected
        .into_iter()
        .map(|(_, id, h)| json!({"$id": id, "humidity": h}))
        .collect();
    assert!(!expected.is_empty());
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

/// WHERE conditions, each paired with the same predicate written in Rust.
#[test]
fn where_conditions_select_the_same_messages_as_their_rust_reading() {
    type Predicate = fn(&Point) -> bool;
    let cases: &[(&str, Predicate)] = &[
        ("temperature > 20", |p| {
            p.num("temperature").is_some_and(|t| t > 20.0)
        }),
        ("temperature >= 20", |p| {
            p.num("temperature").is_some_and(|t| t >= 20.0)
        }),
        ("temperature < 2.5", |p| {
            p.num("temperature").is_some_and(|t| t < 2.5)
        }),
        ("temperature <= 2.5", |p| {
            p.num("temperature").is_some_and(|t| t <= 2.5)
        }),
        ("temperature = 12", |p| p.num("temperature") == Some(12.0)),
        ("temperature != 12", |p| {
            p.num("temperature").is_some_and(|t| t != 12.0)
        }),
        ("temperature > 10 AND humidity < 20", |p| {
            p.num("temperature").is_some_and(|t| t > 10.0)
                && p.num("humidity").is_some_and(|h| h < 20.0)
        }),
        ("temperature > 23 OR humidity = 3", |p| {
            p.num("temperature").is_some_and(|t| t > 23.0) || p.num("humidity") == Some(3.0)
        }),
        ("$id IN ['d0', 'd3']", |p| {
            p.device == "d0" || p.device == "d3"
        }),
        ("$id != 'd0' AND status = 'hot'", |p| {
            p.device != "d0" && p.fields.get("status") == Some(&json!("hot"))
        }),
        ("status IN ['hot']", |p| {
            p.fields.get("status") == Some(&json!("hot"))
        }),
        // A string is never ordered against a number.
        ("status > 1", |_| false),
        ("temperature > 'a'", |_| false),
        ("humidity = null", |p| !p.fields.contains_key("humidity")),
        ("humidity != null", |p| p.fields.contains_key("humidity")),
        ("$displayName = 'Device 2'", |p| p.device == "d2"),
        ("($id = 'd1' OR $id = 'd2') AND temperature < 5", |p| {
            (p.device == "d1" || p.device == "d2") && p.num("temperature").is_some_and(|t| t < 5.0)
        }),
    ];
    let mut sql = seeded();
    let start = T0 + 30 * MINUTE;
    for (condition, predicate) in cases {
        let text = format!(
            "SELECT $id, $ts, temperature FROM {TEMPLATE} WHERE ({condition}) AND $ts >= '{}'",
            at(start)
        );
        let mut expected: Vec<&Point> = Vec::new();
        let all = template_points();
        for p in &all {
            if p.component.is_none() && p.ts >= start && predicate(p) {
                expected.push(p);
            }
        }
        expected.sort_by(|a, b| (a.ts, &a.device).cmp(&(b.ts, &b.device)));
        let expected: Vec<Json> = expected
            .iter()
            .map(|p| json!({"$id": p.device, "$ts": at(p.ts), "temperature": p.fields["temperature"]}))
            .collect();
        assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
    }
}

/// Per-device aggregates, one query per function, against the same numbers in Rust.
#[test]
fn aggregates_per_device_match_their_rust_reading() {
    let mut sql = seeded();
    let text = format!(
        "SELECT $id, AVG(temperature), SUM(humidity), MIN(temperature), MAX(temperature), \
         COUNT(humidity), FIRST(temperature), LAST(temperature) FROM {TEMPLATE} \
         WHERE WITHIN_WINDOW({}) GROUP BY $id",
        range(5, 65)
    );
    let mut expected = Vec::new();
    for device in DEVICES {
        let rows: Vec<Point> = template_points()
            .into_iter()
            .filter(|p| p.device == device && p.component.is_none())
            .filter(|p| p.ts >= T0 + 5 * MINUTE && p.ts < T0 + 65 * MINUTE)
            .collect();
        let temps: Vec<f64> = rows.iter().filter_map(|p| p.num("temperature")).collect();
        let hums: Vec<f64> = rows.iter().filter_map(|p| p.num("humidity")).collect();
        expected.push(json!({
            "$id": device,
            "avg_temperature": avg(&temps),
            "sum_humidity": hums.iter().sum::<f64>(),
            "min_temperature": fmin(&temps),
            "max_temperature": fmax(&temps),
            "count_humidity": hums.len(),
            "first_temperature": rows.first().unwrap().fields["temperature"],
            "last_temperature": rows.last().unwrap().fields["temperature"],
        }));
    }
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn group_by_window_buckets_from_the_epoch_with_ts_as_the_window_start() {
    let mut sql = seeded();
    let text = format!(
        "SELECT $ts, AVG(temperature) AS t, COUNT(temperature) AS n FROM {TEMPLATE} \
         WHERE $id = 'd2' GROUP BY WINDOW(PT10M)"
    );
    let width = 10 * MINUTE;
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for p in template_points() {
        if p.device == "d2" && p.component.is_none() {
            buckets
                .entry(p.ts / width * width)
                .or_default()
                .push(p.num("temperature").unwrap());
        }
    }
    let expected: Vec<Json> = buckets
        .iter()
        .map(|(start, temps)| json!({"$ts": at(*start), "t": avg(temps), "n": temps.len()}))
        .collect();
    assert_eq!(expected.len(), 12);
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn group_by_window_and_device_gives_a_row_per_window_and_device() {
    let mut sql = seeded();
    let text = format!(
        "SELECT $ts, $id, MAX(humidity) FROM {TEMPLATE} WHERE WITHIN_WINDOW({}) \
         GROUP BY WINDOW(PT30M), $id",
        range(0, 59)
    );
    let width = 30 * MINUTE;
    let mut groups: BTreeMap<(i64, String), Vec<f64>> = BTreeMap::new();
    for p in template_points() {
        if p.component.is_none() && p.ts < T0 + 59 * MINUTE {
            if let Some(h) = p.num("humidity") {
                groups
                    .entry((p.ts / width * width, p.device.clone()))
                    .or_default()
                    .push(h);
            }
        }
    }
    let expected: Vec<Json> = groups
        .iter()
        .map(|((start, id), hs)| json!({"$ts": at(*start), "$id": id, "max_humidity": fmax(hs)}))
        .collect();
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn top_devices_by_maximum_are_ordered_by_the_alias() {
    let mut sql = seeded();
    let text = format!(
        "SELECT TOP 3 $id, MAX(pressure) AS m FROM {TEMPLATE} GROUP BY $id ORDER BY m DESC"
    );
    // pressure is a component's telemetry: the root-level name has no values.
    assert!(query(&mut sql, &text).unwrap().is_empty(), "{text}");
    let text = format!(
        "SELECT TOP 3 $id, MAX(sensor.pressure) AS m, MIN(sensor.pressure) AS low FROM {TEMPLATE} \
         GROUP BY $id ORDER BY m DESC, $id ASC"
    );
    let mut per_device: Vec<(f64, String, f64)> = DEVICES
        .iter()
        .map(|device| {
            let values: Vec<f64> = template_points()
                .iter()
                .filter(|p| p.device == *device && p.component == Some("sensor"))
                .filter_map(|p| p.num("pressure"))
                .collect();
            let max = values.iter().cloned().fold(f64::MIN, f64::max);
            let min = values.iter().cloned().fold(f64::MAX, f64::min);
            (max, device.to_string(), min)
        })
        .collect();
    per_device.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: Vec<Json> = per_device
        .iter()
        .take(3)
        .map(|(max, id, min)| json!({"$id": id, "m": max, "low": min}))
        .collect();
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn aggregates_without_group_by_cover_every_device_of_the_template_only() {
    let mut sql = seeded();
    let text = format!("SELECT COUNT(temperature), SUM(temperature) FROM {TEMPLATE}");
    let temps: Vec<f64> = template_points()
        .iter()
        .filter(|p| p.component.is_none())
        .filter_map(|p| p.num("temperature"))
        .collect();
    let expected = vec![json!({
        "count_temperature": temps.len(),
        "sum_temperature": temps.iter().sum::<f64>(),
    })];
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
    // Nothing in range: no rows, not a row of nulls.
    let text = format!(
        "SELECT AVG(temperature) FROM {TEMPLATE} WHERE WITHIN_WINDOW({})",
        range(-100, -50)
    );
    assert_eq!(query(&mut sql, &text).unwrap(), Vec::<Json>::new());
}

#[test]
fn component_telemetry_is_read_as_component_dot_name() {
    let mut sql = seeded();
    let text =
        format!("SELECT $ts, sensor.pressure AS p FROM {TEMPLATE} WHERE $id = 'd3' AND p > 1035");
    let expected: Vec<Json> = template_points()
        .iter()
        .filter(|p| p.device == "d3" && p.component == Some("sensor"))
        .filter(|p| p.num("pressure").unwrap() > 1035.0)
        .map(|p| json!({"$ts": at(p.ts), "p": p.fields["pressure"]}))
        .collect();
    assert!(!expected.is_empty());
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn order_by_and_top_apply_to_plain_rows() {
    let mut sql = seeded();
    let text = format!(
        "SELECT TOP 5 $id, $ts, temperature FROM {TEMPLATE} WHERE WITHIN_WINDOW(PT1H) \
         ORDER BY temperature DESC, $ts DESC, $id"
    );
    let mut rows: Vec<Point> = template_points()
        .into_iter()
        .filter(|p| p.component.is_none() && p.ts >= now().unix_millis() - 60 * MINUTE)
        .collect();
    rows.sort_by(|a, b| {
        b.num("temperature")
            .unwrap()
            .total_cmp(&a.num("temperature").unwrap())
            .then(b.ts.cmp(&a.ts))
            .then(a.device.cmp(&b.device))
    });
    let expected: Vec<Json> = rows
        .iter()
        .take(5)
        .map(|p| json!({"$id": p.device, "$ts": at(p.ts), "temperature": p.fields["temperature"]}))
        .collect();
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn the_result_cap_bounds_the_answer_even_with_a_larger_top() {
    let mut sql = seeded();
    let text = format!("SELECT TOP 50 $id, temperature FROM {TEMPLATE}");
    assert_eq!(query_capped(&mut sql, &text, 7).unwrap().len(), 7);
    let text = format!("SELECT $id, temperature FROM {TEMPLATE}");
    assert_eq!(query_capped(&mut sql, &text, 7).unwrap().len(), 7);
    assert_eq!(
        query(&mut sql, &text).unwrap().len(),
        DEVICES.len() * N_POINTS as usize
    );
}

#[test]
fn property_queries_read_one_row_per_device() {
    let mut sql = seeded();
    let text = format!(
        "SELECT $id, $displayName, firmware, location, sensor.serial FROM {TEMPLATE} \
         WHERE location = 'lab' ORDER BY firmware DESC"
    );
    let expected = vec![
        json!({"$id": "d4", "$displayName": "Device 4", "firmware": "1.4", "location": "lab", "sensor.serial": "S4"}),
        json!({"$id": "d2", "$displayName": "Device 2", "firmware": "1.2", "location": "lab", "sensor.serial": "S2"}),
        json!({"$id": "d0", "$displayName": "Device 0", "firmware": "1.0", "location": "lab", "sensor.serial": "S0"}),
    ];
    assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
}

#[test]
fn queries_that_cannot_run_say_why() {
    let mut sql = seeded();
    let cases = [
        (
            format!("SELECT temperature, firmware FROM {TEMPLATE}"),
            "'firmware' is a property of the template and 'temperature' is telemetry",
        ),
        (
            format!("SELECT AVG(firmware) FROM {TEMPLATE}"),
            "aggregates apply to telemetry",
        ),
        (
            format!("SELECT firmware FROM {TEMPLATE} WHERE WITHIN_WINDOW(P1D)"),
            "WITHIN_WINDOW, GROUP BY and $ts apply to telemetry",
        ),
        (
            format!("SELECT $id, AVG(temperature) FROM {TEMPLATE} GROUP BY $id ORDER BY humidity"),
            "ORDER BY 'humidity'",
        ),
    ];
    for (text, why) in cases {
        match query(&mut sql, &text) {
            Err(RunError::Invalid { message }) => {
                assert!(message.contains(why), "{text}: {message}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let text = "SELECT temperature FROM dtmi:test:Missing;1";
    assert!(matches!(
        query(&mut sql, text),
        Err(RunError::UnknownTemplate { template }) if template == "dtmi:test:Missing;1"
    ));
}

#[test]
fn last_values_are_per_device_component_and_name() {
    let mut sql = seeded();
    sql.execute(
        "INSERT INTO last_values (device_id, component, fields, at) VALUES \
         ('d1', '', json_object('temperature', json_array(21.5, ?1)), ?1), \
         ('d1', 'sensor', json_object('pressure', json_array(1003, ?1)), ?1)",
        &[Value::Integer(T0)],
    )
    .unwrap();
    let at = Timestamp::from_unix_millis(T0);
    assert_eq!(
        last_value(&mut sql, "d1", "", "temperature").unwrap(),
        Some((json!(21.5), at))
    );
    assert_eq!(
        last_value(&mut sql, "d1", "sensor", "pressure").unwrap(),
        Some((json!(1003), at))
    );
    assert_eq!(last_value(&mut sql, "d1", "", "pressure").unwrap(), None);
    assert_eq!(last_value(&mut sql, "d2", "", "temperature").unwrap(), None);
    assert!(device_exists(&mut sql, "d1").unwrap());
    assert!(!device_exists(&mut sql, "nope").unwrap());
}

#[test]
fn history_downsamples_to_at_most_the_points_asked_for() {
    let mut sql = seeded();
    for (component, name, points) in [(None, "temperature", 7), (Some("sensor"), "pressure", 4)] {
        let (from, to) = (T0 + 3 * MINUTE, T0 + 103 * MINUTE);
        let buckets = history(
            &mut sql,
            "d4",
            component,
            name,
            Timestamp::from_unix_millis(from),
            Timestamp::from_unix_millis(to),
            points,
        )
        .unwrap();
        let width = ((to - from) + points as i64 - 1) / points as i64;
        let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for p in template_points() {
            if p.device == "d4" && p.component == component && p.ts >= from && p.ts < to {
                expected
                    .entry((p.ts - from) / width)
                    .or_default()
                    .push(p.num(name).unwrap());
            }
        }
        assert!(buckets.len() <= points as usize);
        assert_eq!(buckets.len(), expected.len(), "{name}");
        for (bucket, (index, values)) in buckets.iter().zip(&expected) {
            assert_eq!(bucket.from, at_ms(from + index * width));
            assert_eq!(bucket.to, at_ms((from + (index + 1) * width).min(to)));
            assert_eq!(bucket.count, values.len() as i64);
            assert_eq!(bucket.min.as_f64(), fmin(values).as_f64());
            assert_eq!(bucket.max.as_f64(), fmax(values).as_f64());
            assert!((bucket.avg.as_f64().unwrap() - avg(values).as_f64().unwrap()).abs() < 1e-9);
        }
    }
    let empty = history(
        &mut sql,
        "d4",
        None,
        "temperature",
        Timestamp::from_unix_millis(T0 - 10 * MINUTE),
        Timestamp::from_unix_millis(T0 - MINUTE),
        10,
    )
    .unwrap();
    assert!(empty.is_empty());
}

fn at_ms(ts: i64) -> String {
    at(ts)
}

#[test]
fn retention_deletes_old_rows_in_bounded_steps_and_keeps_the_rest() {
    let mut sql = seeded();
    let cut = Timestamp::from_unix_millis(T0 + 60 * MINUTE);
    let count = |sql: &mut RusqliteSql, condition: &str| -> i64 {
        let statement = format!(
            "SELECT (SELECT count(*) FROM telemetry WHERE {condition}) + \
             (SELECT count(*) FROM telemetry_inbox WHERE {condition})"
        );
        sql.execute(&statement, &[Value::Integer(cut.unix_millis())])
            .unwrap()
            .scalar()
            .unwrap()
            .as_integer()
            .unwrap()
    };
    let old = count(&mut sql, "enqueued_at < ?1");
    let young = count(&mut sql, "enqueued_at >= ?1");
    assert!(old > 0 && young > 0);
    let mut total = 0;
    let mut steps = 0;
    loop {
        let pruned = prune_older_than(&mut sql, cut, 50, 2).unwrap();
        assert!(pruned.rows <= 50, "{pruned:?}");
        assert!(pruned.devices_visited <= 2);
        total += pruned.rows as i64;
        steps += 1;
        if count(&mut sql, "enqueued_at < ?1") == 0 {
            break;
        }
        assert!(steps < 100, "retention makes progress");
    }
    assert_eq!(total, old);
    assert_eq!(count(&mut sql, "enqueued_at >= ?1"), young);
    // Nothing left to do: a step deletes nothing.
    assert_eq!(prune_older_than(&mut sql, cut, 50, 10).unwrap().rows, 0);
}

/// `$ts` comparisons bound the range exactly, at the millisecond.
#[test]
fn ts_comparisons_bound_the_range_exactly() {
    let mut sql = seeded();
    let pivot = T0 + 50 * MINUTE + 2_000; // d2's reading of minute 50
    type Keep = fn(i64, i64) -> bool;
    let cases: &[(&str, Keep)] = &[
        ("$ts = '{}'", |ts, pivot| ts == pivot),
        ("$ts > '{}'", |ts, pivot| ts > pivot),
        ("$ts >= '{}'", |ts, pivot| ts >= pivot),
        ("$ts < '{}'", |ts, pivot| ts < pivot),
        ("$ts <= '{}'", |ts, pivot| ts <= pivot),
        ("$ts != '{}'", |ts, pivot| ts != pivot),
    ];
    for (condition, keep) in cases {
        let condition = condition.replace("{}", &at(pivot));
        let text = format!(
            "SELECT COUNT(temperature) AS n, FIRST(status) AS first, LAST(status) AS last \
             FROM {TEMPLATE} WHERE {condition} AND $id = 'd2'"
        );
        let rows: Vec<Point> = template_points()
            .into_iter()
            .filter(|p| p.device == "d2" && p.component.is_none() && keep(p.ts, pivot))
            .collect();
        let expected = vec![json!({
            "n": rows.len(),
            "first": rows.first().unwrap().fields["status"],
            "last": rows.last().unwrap().fields["status"],
        })];
        assert_same(&query(&mut sql, &text).unwrap(), &expected, &text);
    }
}

// ---- hourly rollups: the same answers as the raw rows ----

const HOUR: i64 = rollups::HOUR_MS;
/// The rollup data set: 30 hours before `T0` (hour aligned), so rolled-up hours sit between
/// partial edges.
const R0: i64 = T0 - 30 * HOUR;

/// `seeded()` plus, per template device, a message every 7 minutes for 30 hours before `T0`
/// (compacted): temperature in halves (exact sums, so both paths agree to the bit), now and
/// then a string, a boolean or a null instead; humidity on some; a `sensor` component with
/// pressure on others. The newest hour is left in the inbox, as ingest leaves it.
fn rollup_seeded() -> RusqliteSql {
    let mut sql = seeded();
    let mut seq = 1_000_000;
    for (i, device) in DEVICES.iter().enumerate() {
        let i = i as i64;
        let mut k = 0;
        while R0 + k * 7 * MINUTE + i * 1000 < T0 {
            let ts = R0 + k * 7 * MINUTE + i * 1000 + 333;
            seq += 1;
            let temperature = match (i + k) % 11 {
                0 => json!("n/a"),
                1 => json!(true),
                2 => Json::Null,
                n if n % 2 == 0 => json!((i * 5 + k * 3) % 60),
                _ => json!(((i * 5 + k * 3) % 60) as f64 / 2.0 - 3.5),
            };
            let (component, fields) = if k % 4 == 3 {
                (Some("sensor"), json!({"pressure": 990 + (k * 7 + i) % 30}))
            } else if k % 3 == 0 {
                (
                    None,
                    json!({"temperature": temperature, "humidity": (k + i) % 40}),
                )
            } else {
                (None, json!({"temperature": temperature}))
            };
            let table = if ts >= T0 - HOUR {
                "telemetry_inbox"
            } else {
                "telemetry"
            };
            sql.execute(
                &format!(
                    "INSERT INTO {table} (seq, device_id, component, enqueued_at, body, fields) \
                     VALUES (?1, ?2, ?3, ?4, x'', ?5)"
                ),
                &[
                    Value::Integer(seq),
                    Value::Text((*device).into()),
                    component.map_or(Value::Null, |c: &str| Value::Text(c.into())),
                    Value::Integer(ts),
                    Value::Text(fields.to_string()),
                ],
            )
            .unwrap();
            k += 1;
        }
    }
    sql
}

/// Runs the tick's rollup work until nothing is left (the inbox first inspected, as the tick
/// does); `now` decides which hours are closed.
fn roll_up_all(sql: &mut RusqliteSql, now: Timestamp) {
    rollups::inspect_inbox(sql, 1_000_000).unwrap();
    // Small steps (500 rows, 3 devices of 5) until two steps in a row find nothing to do...
    let mut idle = 0;
    for _ in 0..1_000 {
        let rolled = rollups::roll_up(sql, now, 500, 3).unwrap();
        assert!(rolled.devices_visited <= 3, "{rolled:?}");
        idle = if rolled.hours == 0 { idle + 1 } else { 0 };
        if idle == 2 {
            // ...and then a step over every device agrees.
            let rolled = rollups::roll_up(sql, now, 1_000_000, 100).unwrap();
            assert!(rolled.caught_up, "{rolled:?}");
            return;
        }
    }
    panic!("rollups make progress");
}

fn run_both(sql: &mut RusqliteSql, text: &str, group: Option<&DeviceFilter>) -> (Vec<Json>, bool) {
    let parsed = Query::parse(text, &Limits::iot_central())
        .unwrap_or_else(|err| panic!("{text}: does not parse: {err}"));
    let mut answer = |rollups: bool| -> Vec<Json> {
        let options = RunOptions {
            max_results: 10_000,
            group,
            rollups,
        };
        run_with(sql, &parsed, now(), &options)
            .unwrap_or_else(|err| panic!("{text}: {err}"))
            .into_iter()
            .map(Json::Object)
            .collect()
    };
    let raw = answer(false);
    let rolled = answer(true);
    assert_eq!(rolled, raw, "{text}: rollups and raw rows disagree");
    let options = RunOptions {
        max_results: 10_000,
        group,
        rollups: true,
    };
    let (statement, _, _) = compile(sql, &parsed, now(), &options).unwrap();
    (raw, statement.contains("telemetry_rollups"))
}

/// Queries whose answers must not depend on rollups, and whether they can use them.
const ROLLUP_CASES: &[(&str, bool)] = &[
    ("SELECT $id, MAX(temperature) AS m FROM {T} WHERE WITHIN_WINDOW(P1D) GROUP BY $id ORDER BY m DESC", true),
    ("SELECT TOP 3 $id, MAX(temperature) AS m FROM {T} WHERE WITHIN_WINDOW(P1D) GROUP BY $id ORDER BY m DESC", true),
    ("SELECT $id, AVG(temperature), MIN(temperature), SUM(temperature), COUNT(temperature) FROM {T} WHERE WITHIN_WINDOW(PT40H) GROUP BY $id", true),
    ("SELECT AVG(temperature), COUNT(humidity), MAX(sensor.pressure) FROM {T}", true),
    ("SELECT $ts, AVG(temperature), COUNT(temperature), SUM(humidity) FROM {T} WHERE $id = 'd2' AND WITHIN_WINDOW(P2D) GROUP BY WINDOW(PT1H)", true),
    ("SELECT $ts, $id, MIN(sensor.pressure), MAX(sensor.pressure) FROM {T} WHERE {R} GROUP BY WINDOW(PT2H), $id ORDER BY $ts DESC, $id", true),
    ("SELECT $ts, SUM(temperature) AS s FROM {T} WHERE {R} AND $id IN ('d0', 'd3') GROUP BY WINDOW(PT3H) ORDER BY s", true),
    ("SELECT COUNT(status), MAX(temperature) FROM {T} WHERE {R}", true),
    ("SELECT $id, COUNT(humidity) FROM {T} WHERE {R} AND $displayName != 'Device 1' GROUP BY $id ORDER BY $id DESC", true),
    // Not hour-aligned windows, FIRST/LAST, and conditions on values read the raw rows.
    ("SELECT $ts, AVG(temperature) FROM {T} WHERE {R} GROUP BY WINDOW(PT30M)", false),
    ("SELECT $id, FIRST(temperature), MAX(temperature) FROM {T} WHERE {R} GROUP BY $id", false),
    ("SELECT $id, MAX(temperature) FROM {T} WHERE {R} AND temperature > 3 GROUP BY $id", false),
    ("SELECT $id, MAX(temperature) FROM {T} WHERE {R} AND $ts > '2025-11-25T12:00:00Z' GROUP BY $id", false),
];

fn rollup_cases(sql: &mut RusqliteSql, label: &str) {
    // A range with partial hours at both ends.
    let range = format!(
        "WITHIN_WINDOW('{}/{}')",
        at(R0 + 2 * HOUR + 17 * MINUTE),
        at(T0 + 25 * MINUTE)
    );
    for (text, uses_rollups) in ROLLUP_CASES {
        let text = text.replace("{T}", TEMPLATE).replace("{R}", &range);
        let (answer, used) = run_both(sql, &text, None);
        assert_eq!(used, *uses_rollups, "{label}: {text}: uses rollups");
        assert!(!answer.is_empty(), "{label}: {text}: answers something");
    }
}

#[test]
fn aggregates_over_rollups_equal_the_raw_rows() {
    let mut sql = rollup_seeded();
    // Before any rollup: the raw path either way.
    rollup_cases_without_rollups(&mut sql);
    roll_up_all(&mut sql, now());
    let state = sql
        .execute(
            "SELECT count(*), min(through), max(through) FROM telemetry_rollup_state",
            &[],
        )
        .unwrap();
    // Five devices rolled up to the hour before the inbox's oldest row.
    assert_eq!(state.rows[0][0], Value::Integer(5), "{state:?}");
    assert_eq!(state.rows[0][1], Value::Integer(T0 - HOUR));
    assert_eq!(state.rows[0][2], Value::Integer(T0 - HOUR));
    rollup_cases(&mut sql, "rolled up");
}

fn rollup_cases_without_rollups(sql: &mut RusqliteSql) {
    let range = format!(
        "WITHIN_WINDOW('{}/{}')",
        at(R0 + 2 * HOUR + 17 * MINUTE),
        at(T0 + 25 * MINUTE)
    );
    for (text, _) in ROLLUP_CASES {
        let text = text.replace("{T}", TEMPLATE).replace("{R}", &range);
        run_both(sql, &text, None);
    }
}

#[test]
fn hours_close_only_after_settling_and_once_the_inbox_holds_none_of_their_rows() {
    let mut sql = rollup_seeded();
    // Ten minutes into hour R0 + 5h, the hour before it has not settled... it has (5 min).
    let early = Timestamp::from_unix_millis(R0 + 5 * HOUR + 3 * MINUTE);
    roll_up_all(&mut sql, early);
    let through = |sql: &mut RusqliteSql| {
        sql.execute("SELECT DISTINCT through FROM telemetry_rollup_state", &[])
            .unwrap()
            .rows
            .into_iter()
            .map(|row| row[0].as_integer().unwrap())
            .collect::<Vec<_>>()
    };
    // 3 minutes after R0 + 5h the hour before has not settled yet.
    assert_eq!(through(&mut sql), vec![R0 + 4 * HOUR]);
    roll_up_all(
        &mut sql,
        Timestamp::from_unix_millis(R0 + 5 * HOUR + 6 * MINUTE),
    );
    assert_eq!(through(&mut sql), vec![R0 + 5 * HOUR]);
    // Much later: stopped by the inbox's oldest row (T0 - 1h), not by the clock.
    let later = Timestamp::from_unix_millis(T0 + 10 * HOUR);
    roll_up_all(&mut sql, later);
    assert_eq!(through(&mut sql), vec![T0 - HOUR]);
    // Caught up, a step visits no device at all.
    let idle = rollups::roll_up(&mut sql, later, 500, 3).unwrap();
    assert_eq!(
        idle,
        rollups::Rolled {
            caught_up: true,
            ..rollups::Rolled::default()
        }
    );
}

/// Inserts a late message for `device` at `ts` into the inbox with a fresh seq.
fn late_row(sql: &mut RusqliteSql, device: &str, ts: i64, temperature: f64) {
    sql.execute(
        "INSERT INTO telemetry_inbox (device_id, enqueued_at, body, fields) \
         VALUES (?1, ?2, x'', ?3)",
        &[
            Value::Text(device.into()),
            Value::Integer(ts),
            Value::Text(json!({"temperature": temperature, "humidity": 1}).to_string()),
        ],
    )
    .unwrap();
}

#[test]
fn late_rows_for_rolled_up_hours_are_never_lost() {
    let mut sql = rollup_seeded();
    roll_up_all(&mut sql, now());
    // Late rows for hours already rolled up, one of them a new maximum.
    late_row(&mut sql, "d1", R0 + 3 * HOUR + 5, 99.5);
    late_row(&mut sql, "d3", R0 + 20 * HOUR + 7, -40.0);
    // In the inbox: read raw, so answers include them already.
    rollup_cases(&mut sql, "late rows in the inbox");
    let inspected = rollups::inspect_inbox(&mut sql, 1_000_000).unwrap();
    assert_eq!(inspected.late_devices, 2, "{inspected:?}");
    assert!(!inspected.redo_all);
    // The tick compacts what it inspected: the late rows now sit in `telemetry`, and their
    // devices read raw from the late row's hour.
    telemetry::compact(&mut sql, u32::try_from(inspected.compactable).unwrap()).unwrap();
    rollup_cases(&mut sql, "late rows compacted");
    roll_up_all(&mut sql, now());
    rollup_cases(&mut sql, "late rows rolled up again");
    let (answer, _) = run_both(
        &mut sql,
        &format!("SELECT MAX(temperature) AS m, MIN(temperature) AS n FROM {TEMPLATE}"),
        None,
    );
    assert_eq!(answer, vec![json!({"m": 99.5, "n": -40.0})]);
}

#[test]
fn a_compaction_step_of_the_ingest_path_inspects_the_rows_it_moves() {
    let mut sql = rollup_seeded();
    roll_up_all(&mut sql, now());
    // A late row for an hour already rolled up, and fresh rows after it: a step moves them all.
    late_row(&mut sql, "d2", R0 + 7 * HOUR + 11, 77.5);
    late_row(&mut sql, "d1", T0 - 5, 20.0);
    let in_inbox = |sql: &mut RusqliteSql| {
        let rows = sql
            .execute("SELECT count(*) FROM telemetry_inbox", &[])
            .unwrap();
        rows.scalar().and_then(Value::as_integer).unwrap() as u64
    };
    let waiting = in_inbox(&mut sql);
    let (inspected, moved) = rollups::inspect_and_compact(&mut sql, 1_000_000, 1_000_000).unwrap();
    assert_eq!(
        (inspected.late_devices, moved),
        (1, waiting),
        "{inspected:?}"
    );
    assert!(!inspected.redo_all, "{inspected:?}");
    assert_eq!(in_inbox(&mut sql), 0);
    // The late row sent its device back: it is counted before and after the hours are redone.
    rollup_cases(&mut sql, "a late row moved by a compaction step");
    roll_up_all(&mut sql, now());
    rollup_cases(
        &mut sql,
        "a late row moved by a compaction step, rolled up again",
    );
    let (answer, _) = run_both(
        &mut sql,
        &format!("SELECT MAX(temperature) AS m FROM {TEMPLATE} WHERE $id = 'd2' GROUP BY $id"),
        None,
    );
    assert_eq!(answer, vec![json!({"m": 77.5})]);
}

#[test]
fn rows_compacted_before_a_tick_saw_them_send_every_device_back_to_redo_its_rollups() {
    let mut sql = rollup_seeded();
    roll_up_all(&mut sql, now());
    late_row(&mut sql, "d2", R0 + 7 * HOUR + 11, 77.5);
    // The ingest path compacts without looking (a burst between two ticks).
    telemetry::compact(&mut sql, 1_000_000).unwrap();
    let inspected = rollups::inspect_inbox(&mut sql, 1_000_000).unwrap();
    assert!(inspected.redo_all, "{inspected:?}");
    rollup_cases(&mut sql, "after a gap, raw");
    roll_up_all(&mut sql, now());
    rollup_cases(&mut sql, "after a gap, rolled up again");
    let (answer, _) = run_both(
        &mut sql,
        &format!("SELECT MAX(temperature) AS m FROM {TEMPLATE} WHERE $id = 'd2' GROUP BY $id"),
        None,
    );
    assert_eq!(answer, vec![json!({"m": 77.5})]);
}

#[test]
fn retention_forgets_the_rollups_of_hours_it_cut_into() {
    let mut sql = rollup_seeded();
    roll_up_all(&mut sql, now());
    let cut = Timestamp::from_unix_millis(R0 + 4 * HOUR + 20 * MINUTE);
    while prune_older_than(&mut sql, cut, 40, 2).unwrap().rows > 0 {}
    let old = sql
        .execute(
            "SELECT count(*) FROM telemetry_rollups WHERE hour < ?1",
            &[Value::Integer(R0 + 5 * HOUR)],
        )
        .unwrap();
    assert_eq!(old.scalar(), Some(&Value::Integer(0)));
    rollup_cases(&mut sql, "after retention");
}

#[test]
fn a_device_group_limits_aggregates_and_property_queries_to_its_members() {
    let mut sql = rollup_seeded();
    roll_up_all(&mut sql, now());
    // d0, d2, d4 are in the lab; x9 (another template) matches the filter but not FROM.
    let group = crate::query::parse_device_filter(
        "SELECT * FROM devices WHERE location = 'lab' OR $id = 'x9'",
    )
    .unwrap();
    let text = format!(
        "SELECT $id, MAX(temperature) AS m, COUNT(temperature) AS n FROM {TEMPLATE} \
         WHERE WITHIN_WINDOW(P2D) GROUP BY $id"
    );
    let (in_group, used) = run_both(&mut sql, &text, Some(&group));
    assert!(used);
    let (all, _) = run_both(&mut sql, &text, None);
    let lab: Vec<Json> = all
        .into_iter()
        .filter(|row| ["d0", "d2", "d4"].contains(&row["$id"].as_str().unwrap()))
        .collect();
    assert_eq!(in_group, lab);
    let raw = format!(
        "SELECT $id, FIRST(temperature) AS f FROM {TEMPLATE} WHERE WITHIN_WINDOW(P2D) GROUP BY $id"
    );
    let (rows, _) = run_both(&mut sql, &raw, Some(&group));
    assert_eq!(rows.len(), 3);
    let properties = format!("SELECT $id, location FROM {TEMPLATE}");
    let (rows, _) = run_both(&mut sql, &properties, Some(&group));
    assert_eq!(
        rows,
        vec![
            json!({"$id": "d0", "location": "lab"}),
            json!({"$id": "d2", "location": "lab"}),
            json!({"$id": "d4", "location": "lab"}),
        ]
    );
}
