//! Telemetry queries (issue 6) through the real host: an operator asks what the devices of a
//! template did, as IoT Central's query API, last-known-value and (our) history routes answer
//! it. Telemetry arrives through `/internal/ingest`, the bridge's own path, with enqueued times
//! chosen by the test; a larger data set is written straight into the database file. Every
//! expected answer is computed here from the same points.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::ingest::base64;
use crate::{expect_error, now_millis, Client, Gyre};

const THERMOSTAT: &str = "dtmi:test:queryThermostat;1";
const MINUTE: i64 = 60_000;

fn rfc3339(millis: i64) -> String {
    gyre_domain::time::Timestamp::from_unix_millis(millis).to_rfc3339()
}

/// A thermostat: `temperature` and `humidity` telemetry, a reported `firmware`, a cloud
/// `location`, and a `sensor` component with `pressure` telemetry.
fn publish_thermostat(builder: &Client<'_>) {
    let body = json!({
        "@type": ["ModelDefinition", "DeviceModel"],
        "displayName": "Thermostat",
        "capabilityModel": {
            "@context": ["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"],
            "@id": THERMOSTAT,
            "@type": "Interface",
            "contents": [
                { "@type": "Telemetry", "name": "temperature", "schema": "double" },
                { "@type": "Telemetry", "name": "humidity", "schema": "double" },
                { "@type": "Property", "name": "firmware", "schema": "string" },
                { "@type": ["Property", "Cloud"], "name": "location", "schema": "string" },
                { "@type": "Component", "name": "sensor", "schema": {
                    "@id": "dtmi:test:querySensor;1",
                    "@type": "Interface",
                    "contents": [
                        { "@type": "Telemetry", "name": "pressure", "schema": "double" }
                    ]
                } }
            ]
        }
    });
    let response = builder.put(&format!("/api/deviceTemplates/{THERMOSTAT}"), body);
    assert_eq!(response.status, 200, "publish: {}", response.body);
}

/// One message the test sends: device, enqueued time, component, JSON body.
#[derive(Clone, Debug)]
struct Sent {
    device: String,
    at: i64,
    component: Option<&'static str>,
    body: Value,
}

impl Sent {
    fn num(&self, name: &str) -> Option<f64> {
        self.body.get(name).and_then(Value::as_f64)
    }
}

fn ingest(gyre: &Gyre, batch_id: &str, messages: &[Sent]) {
    let messages: Vec<Value> = messages
        .iter()
        .map(|sent| {
            let mut message = json!({
                "deviceId": sent.device,
                "enqueuedAt": sent.at,
                "body": base64(sent.body.to_string().as_bytes()),
            });
            if let Some(component) = sent.component {
                message["systemProperties"] = json!({ "$.sub": component });
            }
            message
        })
        .collect();
    let body = json!({ "batchId": batch_id, "messages": messages }).to_string();
    let response = gyre.host().request_with_headers(
        "POST",
        "/internal/ingest",
        &[
            ("x-gyre-internal-secret", gyre.internal_secret()),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "ingest: {}", response.body);
    // As the bridge does after each batch: the journal is applied, so the batch can be read.
    gyre.apply_ingested();
}

/// Three thermostats (`t1`..`t3`) that sent a reading every minute for the last hour (the
/// newest a minute ago), a sensor reading every ten minutes, and a device on no template that
/// sent the same field. Returns the Gyre, the messages of the template's devices, and `now`.
fn fleet() -> (Gyre, Vec<Sent>, i64) {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let admin = gyre.admin();
    for (i, id) in ["t1", "t2", "t3"].iter().enumerate() {
        let response = admin.put(
            &format!("/api/devices/{id}"),
            json!({ "displayName": format!("Thermostat {}", i + 1), "template": THERMOSTAT }),
        );
        assert_eq!(response.status, 200, "create {id}: {}", response.body);
    }
    let response = admin.put("/api/devices/loose", json!({ "displayName": "Loose" }));
    assert_eq!(response.status, 200, "create loose: {}", response.body);
    let now = now_millis();
    let mut sent = Vec::new();
    for (i, id) in ["t1", "t2", "t3"].iter().enumerate() {
        let i = i as i64;
        for k in 1..=60 {
            let at = now - k * MINUTE;
            let mut body = json!({ "temperature": 15 + (i * 7 + k * 3) % 20 });
            if k % 2 == 0 {
                body["humidity"] = json!(40.5 + (k % 9) as f64);
            }
            sent.push(Sent {
                device: id.to_string(),
                at,
                component: None,
                body,
            });
            if k % 10 == 0 {
                sent.push(Sent {
                    device: id.to_string(),
                    at: at + 1,
                    component: Some("sensor"),
                    body: json!({ "pressure": 990 + i * 5 + k / 10 }),
                });
            }
        }
    }
    let loose: Vec<Sent> = (1..=5)
        .map(|k| Sent {
            device: "loose".into(),
            at: now - k * MINUTE,
            component: None,
            body: json!({ "temperature": 1000 }),
        })
        .collect();
    ingest(&gyre, "query-fleet-1", &sent[..sent.len() / 2]);
    ingest(&gyre, "query-fleet-2", &sent[sent.len() / 2..]);
    ingest(&gyre, "query-fleet-3", &loose);
    sent.sort_by_key(|s| s.at);
    (gyre, sent, now)
}

fn run(client: &Client<'_>, query: &str) -> Vec<Value> {
    let response = client.post(
        "/api/query?api-version=2022-10-31-preview",
        json!({ "query": query }),
    );
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.json()["results"]
        .as_array()
        .expect("results")
        .clone()
}

fn assert_rows_close(actual: &[Value], expected: &[Value], label: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{label}: {actual:#?} vs {expected:#?}"
    );
    for (a, e) in actual.iter().zip(expected) {
        for (key, e_value) in e.as_object().unwrap() {
            let a_value = &a[key];
            match (a_value.as_f64(), e_value.as_f64()) {
                (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{label}: {key}: {x} vs {y}"),
                _ => assert_eq!(a_value, e_value, "{label}: {key}"),
            }
        }
        assert_eq!(
            a.as_object().unwrap().len(),
            e.as_object().unwrap().len(),
            "{label}: {a}"
        );
    }
}

#[test]
fn an_operator_compares_devices_over_the_last_half_hour() {
    let (gyre, sent, now) = fleet();
    let operator = gyre.token_with_role("operator");
    let rows = run(
        &operator,
        &format!(
            "SELECT $id, AVG(temperature) AS avg, MAX(temperature), COUNT(humidity) FROM {THERMOSTAT} \
             WHERE WITHIN_WINDOW(PT30M) GROUP BY $id ORDER BY avg DESC"
        ),
    );
    // The query ran a moment after `now`: the window starts a little later than now - 30 min,
    // so the reading at exactly now - 30 min may fall out. Readings are whole minutes apart,
    // and the test is far quicker than a minute, so the cut is between two readings.
    let start = now - 30 * MINUTE;
    let mut expected: Vec<(f64, Value)> = ["t1", "t2", "t3"]
        .iter()
        .map(|id| {
            let mine: Vec<&Sent> = sent
                .iter()
                .filter(|s| s.device == *id && s.component.is_none() && s.at > start)
                .collect();
            let temps: Vec<f64> = mine.iter().filter_map(|s| s.num("temperature")).collect();
            let avg = temps.iter().sum::<f64>() / temps.len() as f64;
            let max = temps.iter().cloned().fold(f64::MIN, f64::max);
            let humidity = mine.iter().filter(|s| s.num("humidity").is_some()).count();
            (
                avg,
                json!({"$id": id, "avg": avg, "max_temperature": max, "count_humidity": humidity}),
            )
        })
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    let expected: Vec<Value> = expected.into_iter().map(|(_, row)| row).collect();
    assert_rows_close(&rows, &expected, "per device");
}

#[test]
fn one_device_over_an_explicit_range_in_ten_minute_windows() {
    let (gyre, sent, now) = fleet();
    let admin = gyre.admin();
    let (from, to) = (now - 45 * MINUTE - 30_000, now - 5 * MINUTE - 30_000);
    let query = format!(
        "SELECT $ts, AVG(temperature), MIN(temperature), FIRST(temperature), LAST(temperature) \
         FROM {THERMOSTAT} WHERE $id = 't2' AND WITHIN_WINDOW('{}/{}') GROUP BY WINDOW(PT10M)",
        rfc3339(from),
        rfc3339(to)
    );
    let width = 10 * MINUTE;
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for s in &sent {
        if s.device == "t2" && s.component.is_none() && s.at >= from && s.at < to {
            buckets
                .entry(s.at / width * width)
                .or_default()
                .push(s.num("temperature").unwrap());
        }
    }
    let expected: Vec<Value> = buckets
        .iter()
        .map(|(start, temps)| {
            json!({
                "$ts": rfc3339(*start),
                "avg_temperature": temps.iter().sum::<f64>() / temps.len() as f64,
                "min_temperature": temps.iter().cloned().fold(f64::MAX, f64::min),
                "first_temperature": temps[0],
                "last_temperature": temps[temps.len() - 1],
            })
        })
        .collect();
    assert_rows_close(&run(&admin, &query), &expected, &query);

    // The raw readings of the same range, filtered and limited.
    let query = format!(
        "SELECT TOP 4 $id, $ts, temperature AS t, humidity FROM {THERMOSTAT} \
         WHERE $id IN ['t1', 't3'] AND t >= 25 AND WITHIN_WINDOW('{}/{}') ORDER BY $ts DESC, $id",
        rfc3339(from),
        rfc3339(to)
    );
    let mut raw: Vec<&Sent> = sent
        .iter()
        .filter(|s| (s.device == "t1" || s.device == "t3") && s.component.is_none())
        .filter(|s| s.at >= from && s.at < to && s.num("temperature").unwrap() >= 25.0)
        .collect();
    raw.sort_by(|a, b| b.at.cmp(&a.at).then(a.device.cmp(&b.device)));
    let expected: Vec<Value> = raw
        .iter()
        .take(4)
        .map(|s| {
            json!({
                "$id": s.device,
                "$ts": rfc3339(s.at),
                "t": s.body["temperature"],
                "humidity": s.body.get("humidity").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    assert_rows_close(&run(&admin, &query), &expected, &query);
}

#[test]
fn the_top_devices_by_a_component_reading_and_their_properties() {
    let (gyre, sent, _now) = fleet();
    let admin = gyre.admin();
    let rows = run(
        &admin,
        &format!(
            "SELECT TOP 2 $id, MAX(sensor.pressure) AS peak FROM {THERMOSTAT} GROUP BY $id \
             ORDER BY peak DESC"
        ),
    );
    let peak = |id: &str| {
        sent.iter()
            .filter(|s| s.device == id && s.component == Some("sensor"))
            .filter_map(|s| s.num("pressure"))
            .fold(f64::MIN, f64::max)
    };
    assert_rows_close(
        &rows,
        &[
            json!({"$id": "t3", "peak": peak("t3")}),
            json!({"$id": "t2", "peak": peak("t2")}),
        ],
        "top 2",
    );

    // Cloud properties are queried per device, from the registry's own rows.
    let response = admin.patch("/api/devices/t2/properties", json!({ "location": "lab" }));
    assert!(
        response.status < 300,
        "set location: {} {}",
        response.status,
        response.body
    );
    let rows = run(
        &admin,
        &format!("SELECT $id, $displayName, location FROM {THERMOSTAT} WHERE location = 'lab'"),
    );
    assert_eq!(
        rows,
        vec![json!({"$id": "t2", "$displayName": "Thermostat 2", "location": "lab"})]
    );
}

#[test]
fn last_known_values_answer_as_iot_central() {
    let (gyre, sent, _now) = fleet();
    let operator = gyre.token_with_role("operator");
    let newest = |device: &str, component: Option<&str>, name: &str| {
        sent.iter()
            .rev()
            .find(|s| s.device == device && s.component == component && s.body.get(name).is_some())
            .unwrap()
    };
    let response = operator.get("/api/devices/t1/telemetry/temperature?api-version=2022-07-31");
    assert_eq!(response.status, 200, "{}", response.body);
    let s = newest("t1", None, "temperature");
    assert_eq!(
        response.json(),
        json!({"value": s.body["temperature"], "timestamp": rfc3339(s.at)})
    );

    let response = operator.get("/api/devices/t3/components/sensor/telemetry/pressure");
    assert_eq!(response.status, 200, "{}", response.body);
    let s = newest("t3", Some("sensor"), "pressure");
    assert_eq!(
        response.json(),
        json!({"value": s.body["pressure"], "timestamp": rfc3339(s.at)})
    );

    for path in [
        "/api/devices/t1/telemetry/pressure",
        "/api/devices/t1/components/sensor/telemetry/temperature",
        "/api/devices/nobody/telemetry/temperature",
    ] {
        assert_eq!(expect_error(&operator.get(path), 404), "NotFound", "{path}");
    }
}

#[test]
fn history_is_downsampled_for_a_chart() {
    let (gyre, sent, now) = fleet();
    let operator = gyre.token_with_role("operator");
    let (from, to) = (now - 60 * MINUTE, now);
    let path = format!(
        "/api/devices/t1/telemetry/temperature/history?from={}&to={}&points=6",
        rfc3339(from),
        rfc3339(to)
    );
    let response = operator.get(&path);
    assert_eq!(response.status, 200, "{}", response.body);
    let buckets = response.json()["value"].as_array().unwrap().clone();
    let width = 10 * MINUTE;
    let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for s in &sent {
        if s.device == "t1" && s.component.is_none() && s.at >= from && s.at < to {
            expected
                .entry((s.at - from) / width)
                .or_default()
                .push(s.num("temperature").unwrap());
        }
    }
    let expected: Vec<Value> = expected
        .iter()
        .map(|(index, temps)| {
            json!({
                "from": rfc3339(from + index * width),
                "to": rfc3339(from + (index + 1) * width),
                "count": temps.len(),
                "min": temps.iter().cloned().fold(f64::MAX, f64::min),
                "max": temps.iter().cloned().fold(f64::MIN, f64::max),
                "avg": temps.iter().sum::<f64>() / temps.len() as f64,
            })
        })
        .collect();
    assert_rows_close(&buckets, &expected, &path);

    let response =
        operator.get("/api/devices/t1/components/sensor/telemetry/pressure/history?points=1");
    assert_eq!(response.status, 200, "{}", response.body);
    let value = response.json()["value"].clone();
    assert_eq!(value.as_array().unwrap().len(), 1, "{value}");
    assert_eq!(value[0]["count"], 6);

    for bad in [
        "points=0",
        "points=many",
        "from=yesterday",
        "from=2030-01-01T00:00:00Z",
    ] {
        let path = format!("/api/devices/t1/telemetry/temperature/history?{bad}");
        assert_eq!(
            expect_error(&operator.get(&path), 400),
            "BadRequest",
            "{bad}"
        );
    }
    let path = "/api/devices/nobody/telemetry/temperature/history";
    assert_eq!(expect_error(&operator.get(path), 404), "NotFound");
}

#[test]
fn a_query_that_cannot_run_says_where_and_why() {
    let (gyre, _sent, _now) = fleet();
    let admin = gyre.admin();
    let cases = [
        (
            format!("SELECT temperature FROM {THERMOSTAT} WHERE temperature >"),
            "at 71:",
        ),
        (format!("SELECT temperature, FROM {THERMOSTAT}"), "at 20:"),
        (
            format!(
                "SELECT {} FROM {THERMOSTAT}",
                vec!["temperature"; 40].join(", ")
            ),
            "350",
        ),
        (
            format!("SELECT temperature, firmware FROM {THERMOSTAT}"),
            "not both",
        ),
        (
            "SELECT temperature FROM dtmi:test:nothing;1".to_owned(),
            "no device template",
        ),
        (
            format!(
                "SELECT $id, AVG(temperature) FROM {THERMOSTAT} GROUP BY $id ORDER BY humidity"
            ),
            "ORDER BY",
        ),
    ];
    for (query, why) in cases {
        let response = admin.post("/api/query", json!({ "query": query }));
        assert_eq!(expect_error(&response, 400), "BadRequest", "{query}");
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(why), "{query}: {message}");
    }
    for body in [json!({}), json!({"query": 7}), json!("SELECT")] {
        expect_error(&admin.post("/api/query", body), 400);
    }
    expect_error(&admin.get("/api/query"), 405);
    // Without a valid token, nothing is read.
    let query = json!({ "query": format!("SELECT temperature FROM {THERMOSTAT}") });
    expect_error(&gyre.anonymous().post("/api/query", query.clone()), 401);
    expect_error(
        &gyre
            .with_token("SharedAccessSignature sr=x&sig=y&se=1&skn=z")
            .post("/api/query", query),
        401,
    );
    expect_error(
        &gyre
            .anonymous()
            .get("/api/devices/t1/telemetry/temperature"),
        401,
    );
    expect_error(
        &gyre
            .anonymous()
            .get("/api/devices/t1/telemetry/temperature/history"),
        401,
    );
}

#[test]
fn the_tick_deletes_telemetry_past_retention() {
    let (gyre, _sent, now) = fleet();
    let old: Vec<Sent> = (0..3)
        .map(|k| Sent {
            device: "t1".into(),
            at: now - 31 * 24 * 60 * MINUTE - k * MINUTE,
            component: None,
            body: json!({ "temperature": -40 }),
        })
        .collect();
    ingest(&gyre, "query-old", &old);
    let admin = gyre.admin();
    let coldest = format!("SELECT MIN(temperature) AS low, COUNT(temperature) AS n FROM {THERMOSTAT} WHERE $id = 't1'");
    assert_eq!(run(&admin, &coldest)[0]["low"], -40);
    let tick = gyre.host().request_with_headers(
        "POST",
        "/internal/tick",
        &[("x-gyre-internal-secret", gyre.internal_secret())],
        b"",
    );
    assert_eq!(tick.status, 200, "{}", tick.body);
    assert_eq!(tick.json()["prunedTelemetry"], 3, "{}", tick.body);
    let rows = run(&admin, &coldest);
    assert_eq!(rows[0]["n"], 60, "{rows:?}");
    assert!(rows[0]["low"].as_f64().unwrap() > -40.0);
}

/// `devices` thermostats `bulk-0000`.. with `points` readings each, `spacing` apart from
/// `start`, written straight into the database (the ingest path is tested elsewhere; this is
/// volume). Reading `k` of device `d` is [`bulk_value`].
fn seed_bulk(gyre: &Gyre, start: i64, devices: i64, points: i64, spacing: i64) {
    let mut db = rusqlite::Connection::open(gyre.database_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut device = tx
            .prepare(
                "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
                 simulated, created_at, updated_at) VALUES (?1, 'e', ?1, ?2, 1, 1, 0, 0, 0)",
            )
            .unwrap();
        let mut insert = tx
            .prepare(
                "INSERT INTO telemetry (device_id, enqueued_at, seq, body, fields) \
                 VALUES (?1, ?2, ?3, x'', ?4)",
            )
            .unwrap();
        for d in 0..devices {
            let id = bulk_id(d);
            device.execute(rusqlite::params![id, THERMOSTAT]).unwrap();
            for k in 0..points {
                insert
                    .execute(rusqlite::params![
                        id,
                        start + k * spacing,
                        d * points + k,
                        format!("{{\"temperature\":{}}}", bulk_value(d, k))
                    ])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn bulk_id(d: i64) -> String {
    format!("bulk-{d:04}")
}

fn bulk_value(d: i64, k: i64) -> f64 {
    ((d * 31 + k * 17) % 97) as f64
}

/// The rollup test's smaller fleet: 200 devices, a day of five-minute readings.
fn seed_bulk_day(gyre: &Gyre, day_start: i64) {
    seed_bulk(gyre, day_start, 200, 288, 5 * MINUTE);
}

/// A fleet of two thousand thermostats with a day of readings every 90 seconds each (1.92
/// million points), written straight into the database: the cross-device aggregates agree with
/// the same sums done here.
#[test]
fn aggregates_across_a_fleet_of_thousands_agree_with_the_data() {
    const DEVICES: i64 = 2_000;
    const POINTS: i64 = 960;
    const SPACING: i64 = 90 * 1000;
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let now = now_millis();
    let day_start = now - POINTS * SPACING;
    seed_bulk(&gyre, day_start, DEVICES, POINTS, SPACING);
    let admin = gyre.admin();
    // Top 10 by maximum over the day.
    let rows = run(
        &admin,
        &format!(
            "SELECT TOP 10 $id, MAX(temperature) AS m, SUM(temperature) AS s FROM {THERMOSTAT} \
             WHERE WITHIN_WINDOW(P1D) GROUP BY $id ORDER BY m DESC, s DESC"
        ),
    );
    let mut per_device: Vec<(f64, f64, String)> = (0..DEVICES)
        .map(|d| {
            // The reading at exactly a day ago is out: the query's day ends a moment later.
            let values: Vec<f64> = (1..POINTS).map(|k| bulk_value(d, k)).collect();
            let max = values.iter().cloned().fold(f64::MIN, f64::max);
            (max, values.iter().sum(), bulk_id(d))
        })
        .collect();
    per_device.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then(a.2.cmp(&b.2))
    });
    let expected: Vec<Value> = per_device
        .iter()
        .take(10)
        .map(|(m, s, id)| json!({"$id": id, "m": m, "s": s}))
        .collect();
    assert_rows_close(&rows, &expected, "top 10");
    // The fleet's hourly average over the last six hours.
    let from = now - 6 * 60 * MINUTE;
    let rows = run(
        &admin,
        &format!(
            "SELECT $ts, AVG(temperature) AS avg, COUNT(temperature) AS n FROM {THERMOSTAT} \
             WHERE WITHIN_WINDOW('{}/{}') GROUP BY WINDOW(PT1H)",
            rfc3339(from),
            rfc3339(now)
        ),
    );
    let hour = 60 * MINUTE;
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for d in 0..DEVICES {
        for k in 0..POINTS {
            let at = day_start + k * SPACING;
            if at >= from && at < now {
                buckets
                    .entry(at / hour * hour)
                    .or_default()
                    .push(bulk_value(d, k));
            }
        }
    }
    let expected: Vec<Value> = buckets
        .iter()
        .map(|(start, values)| {
            json!({"$ts": rfc3339(*start), "avg": values.iter().sum::<f64>() / values.len() as f64, "n": values.len()})
        })
        .collect();
    assert_rows_close(&rows, &expected, "hourly");
}

fn tick(gyre: &Gyre) -> Value {
    let tick = gyre.host().request_with_headers(
        "POST",
        "/internal/tick",
        &[("x-gyre-internal-secret", gyre.internal_secret())],
        b"",
    );
    assert_eq!(tick.status, 200, "{}", tick.body);
    tick.json()
}

/// The tick rolls closed hours up in bounded steps; the answers stay what the raw rows say,
/// before, during and after, and a late message for an hour already rolled up counts at once.
#[test]
fn hourly_rollups_built_by_the_tick_change_no_answer() {
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let now = now_millis();
    seed_bulk_day(&gyre, now - 24 * 60 * MINUTE);
    let admin = gyre.admin();
    let queries = [
        format!(
            "SELECT TOP 10 $id, MAX(temperature) AS m, SUM(temperature) AS s FROM {THERMOSTAT} \
             WHERE WITHIN_WINDOW(P1D) GROUP BY $id ORDER BY m DESC, s DESC"
        ),
        format!(
            "SELECT $ts, AVG(temperature) AS avg, MIN(temperature) AS low, \
             COUNT(temperature) AS n FROM {THERMOSTAT} WHERE WITHIN_WINDOW(PT20H) \
             GROUP BY WINDOW(PT2H)"
        ),
        format!(
            "SELECT $id, AVG(temperature) AS avg FROM {THERMOSTAT} WHERE $id IN \
             ('bulk-0007', 'bulk-0150') AND WITHIN_WINDOW(P1D) GROUP BY $id"
        ),
    ];
    let raw: Vec<Vec<Value>> = queries.iter().map(|q| run(&admin, q)).collect();
    let mut ticks = 0;
    loop {
        let body = tick(&gyre);
        ticks += 1;
        // Midway too, the answers are those of the raw rows.
        if ticks == 3 {
            for (query, expected) in queries.iter().zip(&raw) {
                assert_rows_close(&run(&admin, query), expected, "while rolling up");
            }
        }
        if body["rolledUp"]["caughtUp"] == true {
            break;
        }
        assert!(ticks < 500, "the rollups catch up: {body}");
    }
    assert!(
        ticks > 3,
        "a day of 200 devices takes several bounded steps"
    );
    for (query, expected) in queries.iter().zip(&raw) {
        assert_rows_close(&run(&admin, query), expected, "rolled up");
    }
    // A late message, ten hours old, for a device whose hours are rolled up.
    ingest(
        &gyre,
        "query-late-1",
        &[Sent {
            device: "bulk-0007".into(),
            at: now - 10 * 60 * MINUTE + 1234,
            component: None,
            body: json!({ "temperature": 500 }),
        }],
    );
    let hottest = format!(
        "SELECT $id, MAX(temperature) AS m FROM {THERMOSTAT} WHERE WITHIN_WINDOW(P1D) \
         GROUP BY $id ORDER BY m DESC"
    );
    assert_eq!(
        run(&admin, &hottest)[0],
        json!({"$id": "bulk-0007", "m": 500})
    );
    let body = tick(&gyre);
    assert_eq!(body["inspected"]["lateDevices"], 1, "{body}");
    for _ in 0..10 {
        assert_eq!(
            run(&admin, &hottest)[0],
            json!({"$id": "bulk-0007", "m": 500})
        );
        if tick(&gyre)["rolledUp"]["caughtUp"] == true {
            break;
        }
    }
    assert_eq!(
        run(&admin, &hottest)[0],
        json!({"$id": "bulk-0007", "m": 500})
    );
}

/// An operator limits a query to a device group (Gyre's `"group"` beside the query): only
/// the template's devices that match the group's filter now are read.
#[test]
fn a_query_can_be_limited_to_a_device_group() {
    let (gyre, sent, _now) = fleet();
    let admin = gyre.admin();
    let response = admin.put(
        "/api/deviceGroups/north",
        json!({ "displayName": "North", "filter": "SELECT * FROM devices WHERE $id IN ('t1', 't3', 'loose')" }),
    );
    assert_eq!(response.status, 200, "create group: {}", response.body);
    let query = format!(
        "SELECT $id, MAX(temperature) AS m, COUNT(temperature) AS n FROM {THERMOSTAT} \
         WHERE WITHIN_WINDOW(PT2H) GROUP BY $id"
    );
    let response = admin.post(
        "/api/query?api-version=2022-10-31-preview",
        json!({ "query": query, "group": "north" }),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let expected: Vec<Value> = ["t1", "t3"]
        .iter()
        .map(|id| {
            let values: Vec<f64> = sent
                .iter()
                .filter(|s| s.device == *id && s.component.is_none())
                .filter_map(|s| s.num("temperature"))
                .collect();
            json!({"$id": id, "m": values.iter().cloned().fold(f64::MIN, f64::max), "n": values.len()})
        })
        .collect();
    assert_rows_close(
        response.json()["results"].as_array().unwrap(),
        &expected,
        "group north",
    );
    // Property queries too.
    let response = admin.post(
        "/api/query?api-version=2022-10-31-preview",
        json!({ "query": format!("SELECT $id, $displayName FROM {THERMOSTAT}"), "group": "north" }),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json()["results"],
        json!([
            {"$id": "t1", "$displayName": "Thermostat 1"},
            {"$id": "t3", "$displayName": "Thermostat 3"}
        ])
    );
    for missing in ["south", "not a group id"] {
        let response = admin.post(
            "/api/query?api-version=2022-10-31-preview",
            json!({ "query": query, "group": missing }),
        );
        expect_error(&response, 400);
        assert!(
            response.body.contains("no device group"),
            "{}",
            response.body
        );
    }
}
