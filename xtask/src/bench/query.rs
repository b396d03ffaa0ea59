//! `cargo xtask bench query`: telemetry reads over 10 million points from 1,000 devices (issue
//! 6's "Measure"), on the repository's own `spin.toml`.
//!
//! Steps, all in a fresh temporary directory, removed afterwards:
//! 1. start gyre-host, migrate and bootstrap the administrator token, stop (as `bench registry`);
//! 2. start it again with `--sqlite @seed.sql`: a template, `N_DEVICES` devices and
//!    `POINTS_PER_DEVICE` readings each, `INTERVAL_MS` apart and ending at seeding time, written
//!    in `telemetry`'s key order (as compaction leaves them), plus each device's last known
//!    value;
//! 3. call `POST /internal/tick` until the hourly rollups have caught up (as the bridge's tick
//!    would, one bounded step a call), reporting how long that took;
//! 4. check each case answers 200 with rows, then load each with gyre-loadgen: one connection
//!    by default (`--connections` to change), so p50/p99 are a single client's latency.
//!
//! The cases are the issue's: (a) last known value, (b) one device, one day, 5-minute averages,
//! (c) every device of the template, last hour, average per device, (d) top 10 devices by
//! maximum over a day; targets (a) < 2 ms, (b) < 20 ms, (c) and (d) < 500 ms, at p99.

use std::time::Instant;

use anyhow::{bail, Context};

use super::{
    app_manifest, http_request, measure, print_table, sql_text, start_gyre_host, stop, unix_millis,
    Load, Measurement, ScratchDir,
};
use crate::bootstrap;
use crate::build;
use crate::flags::BenchFlags;
use crate::project::Project;

const N_DEVICES: u32 = 1_000;
const POINTS_PER_DEVICE: u32 = 10_000;
/// 10,000 readings 10 s apart: a little over a day per device.
const INTERVAL_MS: u64 = 10_000;
const TEMPLATE_ID: &str = "dtmi:bench:queryThermostat;1";
const CAPABILITY_MODEL: &str = r#"{"@id":"dtmi:bench:queryThermostat;1","@type":"Interface","@context":"dtmi:dtdl:context;2","contents":[{"@type":"Telemetry","name":"temperature","schema":"double"}]}"#;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    /// The query, for `POST /api/query`.
    query: Option<&'static str>,
    target_p99_ms: f64,
}

const CASES: &[Case] = &[
    Case {
        name: "(a) last known value",
        method: "GET",
        path: "/api/devices/qdev-0500/telemetry/temperature",
        query: None,
        target_p99_ms: 2.0,
    },
    Case {
        name: "(b) one device, 1 day, 5-min averages",
        method: "POST",
        path: "/api/query",
        query: Some(
            "SELECT $ts, AVG(temperature) FROM dtmi:bench:queryThermostat;1 \
             WHERE $id = 'qdev-0500' AND WITHIN_WINDOW(P1D) GROUP BY WINDOW(PT5M)",
        ),
        target_p99_ms: 20.0,
    },
    Case {
        name: "(c) all devices, last hour, avg per device",
        method: "POST",
        path: "/api/query",
        query: Some(
            "SELECT $id, AVG(temperature) FROM dtmi:bench:queryThermostat;1 \
             WHERE WITHIN_WINDOW(PT1H) GROUP BY $id",
        ),
        target_p99_ms: 500.0,
    },
    Case {
        name: "(d) top 10 by max over a day",
        method: "POST",
        path: "/api/query",
        query: Some(
            "SELECT TOP 10 $id, MAX(temperature) AS m FROM dtmi:bench:queryThermostat;1 \
             WHERE WITHIN_WINDOW(P1D) GROUP BY $id ORDER BY m DESC",
        ),
        target_p99_ms: 500.0,
    },
];

pub fn run(project: &Project, bench_flags: &BenchFlags) -> anyhow::Result<()> {
    build::components(project, build::APP_COMPONENTS)?;
    build::native(project)?;

    let scratch = ScratchDir::create("query")?;
    let manifest = scratch.path.join("spin.toml");
    std::fs::write(&manifest, app_manifest(project)?)
        .with_context(|| format!("writing {}", manifest.display()))?;
    let state_dir = scratch.path.join("state");
    let secret = bootstrap::internal_secret(&state_dir)?;
    let start_host = |log_name: &str, seed: Option<&std::path::Path>| {
        start_gyre_host(project, &scratch.path.join(log_name), |command| {
            command
                .arg(&manifest)
                .arg("--state-dir")
                .arg(&state_dir)
                .env("SPIN_VARIABLE_INTERNAL_SECRET", &secret);
            if let Some(seed) = seed {
                command.arg("--sqlite").arg(format!("@{}", seed.display()));
            }
        })
    };

    // 1. Schema and administrator.
    let token = {
        let (mut host, addr) = start_host("gyre-host-bootstrap.log", None)?;
        let (status, body) = bootstrap::post(addr, "/internal/registry/bootstrap", &secret)?;
        if status != 201 {
            bail!("POST /internal/registry/bootstrap answered {status}: {body}");
        }
        let token = bootstrap::json_string_field(&body, "token")
            .with_context(|| format!("the bootstrap answer has no token: {body}"))?;
        stop(&mut host)?;
        token
    };

    // 2. Telemetry.
    let seed = scratch.path.join("seed.sql");
    std::fs::write(&seed, seed_sql(unix_millis()))
        .with_context(|| format!("writing {}", seed.display()))?;
    let seeding = Instant::now();
    let (mut host, addr) = start_host("gyre-host.log", Some(&seed))?;
    eprintln!(
        "xtask: {} points from {N_DEVICES} devices seeded and gyre-host serving in {:.1} s",
        u64::from(N_DEVICES) * u64::from(POINTS_PER_DEVICE),
        seeding.elapsed().as_secs_f64()
    );

    // 3. Hourly rollups, built as in production: by the ingest tick, one bounded step a call.
    let rolling = Instant::now();
    let mut ticks = 0u32;
    loop {
        let (status, body) = bootstrap::post(addr, "/internal/tick", &secret)?;
        if status != 200 {
            bail!("POST /internal/tick answered {status}: {body}");
        }
        ticks += 1;
        if body.contains("\"caughtUp\":true") {
            break;
        }
        if ticks > 10_000 {
            bail!("the rollups did not catch up in {ticks} ticks: {body}");
        }
    }
    eprintln!(
        "xtask: hourly rollups built by {ticks} ticks in {:.1} s",
        rolling.elapsed().as_secs_f64()
    );

    // 4. Measurements.
    let authorization = format!("Authorization: {token}");
    let headers = [
        authorization.clone(),
        "Content-Type: application/json".to_owned(),
    ];
    let bodies: Vec<String> = CASES
        .iter()
        .map(|case| case.query.map(query_body).unwrap_or_default())
        .collect();
    for (case, body) in CASES.iter().zip(&bodies) {
        let started = Instant::now();
        let (status, answer) = http_request(addr, case.method, case.path, &headers, body)?;
        let shown: String = answer.chars().take(300).collect();
        if status != 200 || !(answer.contains("\"value\"") || answer.contains("\"results\":[{")) {
            bail!("{} {} answered {status}: {shown}", case.method, case.path);
        }
        eprintln!(
            "xtask: {}: {:.1} ms once, answer {} bytes: {shown}",
            case.name,
            started.elapsed().as_secs_f64() * 1000.0,
            answer.len()
        );
    }
    let connections = match bench_flags.connections.as_slice() {
        [] => 1,
        _ => bench_flags.http_connections()?,
    };
    let mut rows: Vec<(String, Measurement)> = Vec::new();
    for (case, body) in CASES.iter().zip(&bodies) {
        let url = format!("http://{addr}{}", case.path);
        let load = Load {
            headers: &headers,
            connections,
            method: case.method,
            body,
            ..Load::closed_loop(&url, bench_flags)?
        };
        let summary = measure(project, bench_flags, case.name, &load)?;
        rows.push((case.name.to_string(), summary));
    }
    stop(&mut host)?;

    println!();
    println!(
        "bench query: {} points, {N_DEVICES} devices, {connections} connection(s), {:?} per run \
         after {:?} warm-up, median of {} run(s), {} CPU(s)",
        u64::from(N_DEVICES) * u64::from(POINTS_PER_DEVICE),
        bench_flags.duration_or(super::DEFAULT_DURATION),
        bench_flags.warmup_or(super::DEFAULT_WARMUP),
        bench_flags.repeat,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    print_table(&rows);
    for ((_, summary), case) in rows.iter().zip(CASES) {
        let met = summary.p99_ms < case.target_p99_ms && summary.errors == 0.0;
        println!(
            "target: {} p99 < {} ms: {:.3} ms, {}",
            case.name,
            case.target_p99_ms,
            summary.p99_ms,
            if met { "met" } else { "MISSED" }
        );
    }
    if rows
        .iter()
        .any(|(_, summary)| summary.errors > 0.0 || summary.non_2xx > 0.0)
    {
        eprintln!("xtask: some runs had errors or non-2xx answers; their numbers are suspect");
    }
    Ok(())
}

/// `{"query": "..."}`; the queries hold no `"` or `\`.
fn query_body(query: &'static str) -> String {
    format!("{{\"query\":\"{query}\"}}")
}

/// The seed: template, devices `qdev-0000`..., readings in key order ending at `now_millis`,
/// and last known values, in one transaction. Temperatures cycle through 0.0..99.9.
fn seed_sql(now_millis: u64) -> String {
    let last_device = N_DEVICES - 1;
    let last_point = POINTS_PER_DEVICE - 1;
    let first_at = now_millis - u64::from(last_point) * INTERVAL_MS;
    let template = sql_text(TEMPLATE_ID);
    let model = sql_text(CAPABILITY_MODEL);
    let value = "((i * 7 + j * 13) % 1000) / 10.0";
    format!(
        "BEGIN;\n\
         INSERT INTO device_templates \
         (id, etag, display_name, description, types, capability_model, created_at, updated_at) \
         VALUES ({template}, '\"0\"', 'Bench thermostat', NULL, \
         '[\"ModelDefinition\",\"DeviceModel\"]', {model}, {now_millis}, {now_millis});\n\
         WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < {last_device}) \
         INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, simulated, \
         created_at, updated_at) \
         SELECT printf('qdev-%04d', i), '\"0\"', printf('Query device %04d', i), {template}, \
         1, 1, 0, {now_millis}, {now_millis} FROM d;\n\
         WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < {last_device}), \
         k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < {last_point}) \
         INSERT INTO telemetry (device_id, enqueued_at, seq, body, fields) \
         SELECT printf('qdev-%04d', i), {first_at} + j * {INTERVAL_MS}, \
         i * {POINTS_PER_DEVICE} + j + 1, \
         CAST(json_object('temperature', {value}) AS BLOB), \
         json_object('temperature', {value}) FROM d, k ORDER BY 1, 2;\n\
         WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < {last_device}) \
         INSERT INTO last_values (device_id, component, fields, at) \
         SELECT printf('qdev-%04d', i), '', json_object('temperature', \
         json_array(((i * 7 + {last_point} * 13) % 1000) / 10.0, {now_millis})), \
         {now_millis} FROM d;\n\
         COMMIT;\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_writes_ten_million_points_in_key_order_in_one_transaction() {
        let sql = seed_sql(1_800_000_000_000);
        assert!(sql.starts_with("BEGIN;\n") && sql.ends_with("COMMIT;\n"));
        assert_eq!(
            u64::from(N_DEVICES) * u64::from(POINTS_PER_DEVICE),
            10_000_000
        );
        assert!(sql.contains("WHERE i < 999"));
        assert!(sql.contains("WHERE j < 9999"));
        assert!(sql.contains("ORDER BY 1, 2"));
        // The newest reading is at seeding time, so "the last day" holds data.
        assert!(sql.contains(&format!(
            "{} + j * 10000",
            1_800_000_000_000_u64 - 9_999 * 10_000
        )));
    }

    #[test]
    fn the_query_bodies_are_json() {
        for case in CASES {
            if let Some(query) = case.query {
                assert!(!query.contains('"') && !query.contains('\\'));
                assert!(query_body(query).starts_with("{\"query\":\"SELECT"));
            }
        }
    }
}
