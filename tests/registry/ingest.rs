//! The ingest component (issue 4): the bridge posts a batch of device messages and
//! connectivity events to `/internal/ingest`; Gyre stores it once, however often it is retried.
//! There is no telemetry API yet, so the tests read the database file the host writes.

use gyre_domain::ingest::binary::{self, BINARY_CONTENT_TYPE};
use gyre_domain::ingest::IngestBatch;
use gyre_domain::store::telemetry::{properties_json, STORED_BODY};
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::{expect_error, Gyre};

fn post_batch(gyre: &Gyre, secret: &str, body: &[u8]) -> gyre_tests::HttpResponse {
    post_batch_as(gyre, secret, "application/json", body)
}

fn post_batch_as(
    gyre: &Gyre,
    secret: &str,
    content_type: &str,
    body: &[u8],
) -> gyre_tests::HttpResponse {
    gyre.host().request_with_headers(
        "POST",
        "/internal/ingest",
        &[
            ("x-gyre-internal-secret", secret),
            ("content-type", content_type),
        ],
        body,
    )
}

/// Standard base64 with padding, as the ingest contract carries bodies.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Rows in `table`.
pub(crate) fn count(db: &Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

/// All stored messages (inbox and compacted), oldest first: (device, component, body, fields).
fn stored(db: &Connection) -> Vec<(String, Option<String>, Vec<u8>, Option<String>)> {
    let mut statement = db
        .prepare(&format!(
            "SELECT device_id, component, {STORED_BODY}, fields, enqueued_at, seq FROM telemetry \
             UNION ALL SELECT device_id, component, {STORED_BODY}, fields, enqueued_at, seq \
             FROM telemetry_inbox ORDER BY enqueued_at, seq"
        ))
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_batch_is_stored_once_and_a_replay_is_a_duplicate() {
    let gyre = Gyre::start();
    let created = gyre.admin().put(
        "/api/devices/thermostat-1",
        json!({"displayName": "Thermostat 1"}),
    );
    assert!(matches!(created.status, 200 | 201), "{}", created.body);
    assert_eq!(created.json()["provisioned"], json!(false));

    let raw = [0xde_u8, 0xad, 0xbe, 0xef, 0x00];
    let batch = json!({
        "batchId": "3f1c-batch-1",
        "messages": [
            {"deviceId": "thermostat-1", "enqueuedAt": 1_000, "body": base64(br#"{"temp": 21.5}"#)},
            {"deviceId": "thermostat-1", "enqueuedAt": 1_001, "systemProperties": {"$.sub": "sensor"},
             "body": base64(br#"{"humidity": 40}"#)},
            {"deviceId": "thermostat-1", "enqueuedAt": 1_002,
             "systemProperties": {"$.ct": "application/octet-stream"},
             "applicationProperties": [["kind", "raw"]], "body": base64(&raw)},
            {"deviceId": "not-registered", "enqueuedAt": 1_003, "body": base64(b"{}")}
        ],
        "events": [{"deviceId": "thermostat-1", "kind": "connected", "at": 999}]
    });
    let body = serde_json::to_vec(&batch).unwrap();
    let first = post_batch(&gyre, gyre.internal_secret(), &body);
    assert_eq!(first.status, 200, "{}", first.body);
    // Accepted means durable in the journal; the answer asks the bridge to have it applied.
    assert_eq!(
        first.json(),
        json!({"batchId": "3f1c-batch-1", "nMessages": 4, "nEvents": 1, "duplicate": false,
               "compactionDue": true})
    );
    let journal = Connection::open(gyre.journal_path()).unwrap();
    assert_eq!(count(&journal, "journal"), 1);
    let duplicate = json!({"batchId": "3f1c-batch-1", "nMessages": 0, "nEvents": 0,
                           "duplicate": true, "compactionDue": false});
    let replay = post_batch(&gyre, gyre.internal_secret(), &body);
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.json(), duplicate, "a replay before the batch is applied");

    let db = Connection::open(gyre.database_path()).unwrap();
    assert_eq!(count(&db, "ingest_batches"), 0, "not applied yet");
    gyre.apply_ingested();
    assert_eq!(count(&journal, "journal"), 0, "applied, then forgotten by the journal");
    let replay = post_batch(&gyre, gyre.internal_secret(), &body);
    assert_eq!(replay.json(), duplicate, "a replay after the batch was applied");
    assert_eq!(count(&journal, "journal"), 0);
    let rows = stored(&db);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        rows[0]
            .3
            .as_deref()
            .map(|f| serde_json::from_str::<Value>(f).unwrap()),
        Some(json!({"temp": 21.5}))
    );
    assert_eq!(rows[1].1.as_deref(), Some("sensor"));
    assert_eq!(
        rows[2].2,
        raw.to_vec(),
        "a non-JSON body is kept as raw bytes"
    );
    assert_eq!(rows[2].3, None);
    assert_eq!(rows[3].0, "not-registered");
    assert_eq!(count(&db, "connectivity"), 1);
    assert_eq!(count(&db, "ingest_batches"), 1);
    let temp: String = db
        .query_row(
            "SELECT j.value -> 0 FROM last_values l, json_each(l.fields) j \
             WHERE l.device_id = 'thermostat-1' AND l.component = '' AND j.key = 'temp'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(temp, "21.5");

    let device = gyre.admin().get("/api/devices/thermostat-1");
    assert_eq!(device.json()["provisioned"], json!(true), "{}", device.body);
    assert_eq!(
        gyre.admin().get("/api/devices/not-registered").status,
        404,
        "unknown ids create no device"
    );
}

#[test]
fn a_batch_in_the_bridges_binary_form_is_stored_as_its_json_form_is() {
    let gyre = Gyre::start();
    let raw = [0xde_u8, 0xad, 0x00, 0xff];
    let batch: IngestBatch = serde_json::from_value(json!({
        "batchId": "binary-1",
        "messages": [
            {"deviceId": "d1", "enqueuedAt": 1_000, "systemProperties": {"$.sub": "sensor"},
             "body": base64(br#"{"temp": 21.5}"#)},
            {"deviceId": "d1", "moduleId": "m1", "enqueuedAt": 1_001,
             "systemProperties": {"$.ct": "application/octet-stream"},
             "applicationProperties": [["kind", "raw"], ["kind", "é&="]], "body": base64(&raw)}
        ],
        "events": [{"deviceId": "d1", "kind": "disconnected", "at": 999}]
    }))
    .unwrap();
    let encoded = binary::encode(&batch);
    let secret = gyre.internal_secret();

    // Malformed binary batches first: each is refused with IoT Central's error shape.
    let mut trailing = encoded.clone();
    trailing.push(0);
    let malformed: [&[u8]; 4] = [&encoded[..encoded.len() - 1], &trailing, b"GIB9\0\0\0", b""];
    for bad in malformed {
        expect_error(&post_batch_as(&gyre, secret, BINARY_CONTENT_TYPE, bad), 400);
    }
    let db = Connection::open(gyre.database_path()).unwrap();
    assert_eq!(count(&db, "ingest_batches"), 0);

    let response = post_batch_as(&gyre, secret, BINARY_CONTENT_TYPE, &encoded);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json(),
        json!({"batchId": "binary-1", "nMessages": 2, "nEvents": 1, "duplicate": false,
               "compactionDue": true})
    );
    gyre.apply_ingested();
    let rows = stored(&db);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].1.as_deref(), Some("sensor"));
    assert_eq!(
        rows[0]
            .3
            .as_deref()
            .map(|f| serde_json::from_str::<Value>(f).unwrap()),
        Some(json!({"temp": 21.5}))
    );
    assert_eq!(rows[1].2, raw.to_vec());
    let properties: String = db
        .query_row(
            "SELECT properties FROM telemetry_inbox WHERE module_id = 'm1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        properties_json(&properties),
        Some(json!({"system": {"$.ct": "application/octet-stream"},
                    "application": [["kind", "raw"], ["kind", "é&="]]}))
    );
    assert_eq!(count(&db, "connectivity"), 1);

    // The same batch id again, as JSON this time: one batch, whatever its form.
    let replay = post_batch(&gyre, secret, &serde_json::to_vec(&batch).unwrap());
    assert_eq!(replay.json()["duplicate"], json!(true), "{}", replay.body);
}

#[test]
fn a_wrong_secret_or_an_api_token_is_refused() {
    let gyre = Gyre::start();
    let body = serde_json::to_vec(&json!({"batchId": "b", "messages": []})).unwrap();
    expect_error(&post_batch(&gyre, "not-the-secret", &body), 401);
    let with_token = gyre.admin().request(
        "POST",
        "/internal/ingest",
        &[("content-type", "application/json")],
        &body,
    );
    expect_error(&with_token, 401);
    let db = Connection::open(gyre.database_path()).unwrap();
    assert_eq!(count(&db, "ingest_batches"), 0);
}

#[test]
fn malformed_batches_are_refused_and_change_nothing() {
    let gyre = Gyre::start();
    let secret = gyre.internal_secret();
    let good = json!({"deviceId": "d1", "enqueuedAt": 1, "body": base64(b"{\"t\":1}")});
    let cases: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        serde_json::to_vec(&json!({"messages": [good]})).unwrap(),
        serde_json::to_vec(&json!({"batchId": "b1", "messages": [good], "extra": 1})).unwrap(),
        serde_json::to_vec(&json!({"batchId": "b1", "messages": [{"deviceId": "d1", "enqueuedAt": "soon", "body": ""}]})).unwrap(),
        serde_json::to_vec(&json!({"batchId": "b1", "messages": [good, {"deviceId": "d1", "enqueuedAt": 2, "body": "not base64!"}]})).unwrap(),
        serde_json::to_vec(&json!({"batchId": "", "messages": [good]})).unwrap(),
        serde_json::to_vec(&json!({"batchId": "b1", "messages": [{"deviceId": "x'); DROP TABLE devices;--".repeat(10), "enqueuedAt": 1, "body": ""}]})).unwrap(),
    ];
    for body in cases {
        let response = post_batch(&gyre, secret, &body);
        expect_error(&response, 400);
    }
    let wrong_type = gyre.host().request_with_headers(
        "POST",
        "/internal/ingest",
        &[
            ("x-gyre-internal-secret", secret),
            ("content-type", "text/plain"),
        ],
        b"{}",
    );
    expect_error(&wrong_type, 415);
    let db = Connection::open(gyre.database_path()).unwrap();
    for table in [
        "ingest_batches",
        "telemetry_inbox",
        "telemetry",
        "connectivity",
        "last_values",
    ] {
        assert_eq!(count(&db, table), 0, "{table}");
    }
    assert_eq!(count(&db, "devices"), 0);
}

/// An empty `POST` to one of the bridge's internal endpoints, with `secret`.
fn post_internal(gyre: &Gyre, path: &str, secret: &str) -> gyre_tests::HttpResponse {
    gyre.host()
        .request_with_headers("POST", path, &[("x-gyre-internal-secret", secret)], b"")
}

/// `POST /internal/compact`, as the bridge sends it when a batch's answer says `compactionDue`.
fn compact(gyre: &Gyre, secret: &str) -> gyre_tests::HttpResponse {
    post_internal(gyre, "/internal/compact", secret)
}

#[test]
fn a_large_backlog_is_compacted_on_request_without_losing_or_duplicating_a_message() {
    let gyre = Gyre::start();
    let secret = gyre.internal_secret().to_owned();
    let mut due = Vec::new();
    for (b, n) in [(0, 100), (1, 16_400), (2, 16_300)] {
        let messages: Vec<Value> = (0..n)
            .map(|i| json!({"deviceId": format!("d{}", i % 7), "enqueuedAt": b * 100_000 + i, "body": ""}))
            .collect();
        let body =
            serde_json::to_vec(&json!({"batchId": format!("big-{b}"), "messages": messages}))
                .unwrap();
        let response = post_batch(&gyre, &secret, &body);
        assert_eq!(response.status, 200, "{}", response.body);
        due.push(response.json()["compactionDue"].clone());
    }
    // A batch is appended to the journal and answers without touching the default database;
    // its answer asks for the compaction request that applies it.
    assert_eq!(due, vec![json!(true), json!(true), json!(true)]);
    let journal = Connection::open(gyre.journal_path()).unwrap();
    assert_eq!(count(&journal, "journal"), 3);
    let db = Connection::open(gyre.database_path()).unwrap();
    assert_eq!(count(&db, "telemetry_inbox"), 0);

    expect_error(&compact(&gyre, "not-the-secret"), 401);
    assert_eq!(count(&journal, "journal"), 3, "a refused request did nothing");

    // The request applies the journal (32,800 rows into the inbox), then moves whole steps
    // (16,384 rows) while a whole step waits; the rest waits for the tick.
    let compacted = compact(&gyre, &secret);
    assert_eq!(compacted.status, 200, "{}", compacted.body);
    assert_eq!(
        compacted.json(),
        json!({"applied": 32_800, "compacted": 32_768, "steps": 2})
    );
    assert_eq!(count(&journal, "journal"), 0);
    assert_eq!(count(&db, "telemetry"), 32_768);
    assert_eq!(count(&db, "telemetry_inbox"), 32);
    let distinct: i64 = db
        .query_row(
            "SELECT count(*) FROM (SELECT seq FROM telemetry UNION SELECT seq FROM telemetry_inbox)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(distinct, 32_800);
    assert_eq!(
        compact(&gyre, &secret).json(),
        json!({"applied": 0, "compacted": 0, "steps": 0})
    );
}

/// `POST /internal/tick`, as the bridge sends it every second.
fn tick(gyre: &Gyre, secret: &str) -> gyre_tests::HttpResponse {
    post_internal(gyre, "/internal/tick", secret)
}

#[test]
fn the_tick_compacts_what_a_quiet_application_received_and_needs_the_secret() {
    let gyre = Gyre::start();
    let secret = gyre.internal_secret().to_owned();
    // Recent, so that retention (30 days) leaves them to compaction.
    let now = crate::now_millis();
    let messages: Vec<Value> = (0..3)
        .map(|n| {
            json!({"deviceId": "quiet-1", "enqueuedAt": now + n,
                   "body": base64(format!("{{\"n\":{n}}}").as_bytes())})
        })
        .collect();
    let body = serde_json::to_vec(&json!({"batchId": "quiet", "messages": messages})).unwrap();
    assert_eq!(post_batch(&gyre, &secret, &body).status, 200);
    let journal = Connection::open(gyre.journal_path()).unwrap();
    assert_eq!(count(&journal, "journal"), 1, "the batch waits in the journal");
    let db = Connection::open(gyre.database_path()).unwrap();

    expect_error(&tick(&gyre, "not-the-secret"), 401);
    expect_error(
        &gyre.admin().request("POST", "/internal/tick", &[], b""),
        401,
    );
    assert_eq!(count(&journal, "journal"), 1, "a refused tick did nothing");

    // The tick applies the journal (a lost compaction request only delays a batch to the
    // next tick), then compacts what it applied.
    let ticked = tick(&gyre, &secret);
    assert_eq!(ticked.status, 200, "{}", ticked.body);
    assert_eq!(ticked.json()["applied"], 3);
    assert_eq!(ticked.json()["compacted"], 3);
    assert_eq!(count(&journal, "journal"), 0);
    assert_eq!(
        (count(&db, "telemetry_inbox"), count(&db, "telemetry")),
        (0, 3)
    );
    assert_eq!(stored(&db).len(), 3, "compaction moves, never loses");
    // Batch ids are kept for an hour, so a retry of this batch is still a duplicate.
    assert_eq!(ticked.json()["prunedBatchIds"], 0);
    assert_eq!(post_batch(&gyre, &secret, &body).json()["duplicate"], true);
    let quiet = tick(&gyre, &secret).json();
    assert_eq!((&quiet["applied"], &quiet["compacted"]), (&json!(0), &json!(0)));
}

/// The journal is bounded: with 64 batches waiting to be applied, a new batch waits for room
/// and, when none comes within 5 s, is refused with 503 (the bridge retries it, and its
/// messages stay unacknowledged meanwhile). Once the journal is applied, it is accepted.
#[test]
fn a_full_journal_holds_new_batches_back_until_it_is_applied() {
    let gyre = Gyre::start();
    let secret = gyre.internal_secret().to_owned();
    let batch = |n: usize| {
        serde_json::to_vec(&json!({"batchId": format!("held-{n}"), "messages": [
            {"deviceId": "d1", "enqueuedAt": n, "body": base64(b"{\"n\":1}")}
        ]}))
        .unwrap()
    };
    for n in 0..64 {
        let response = post_batch(&gyre, &secret, &batch(n));
        assert_eq!(response.status, 200, "batch {n}: {}", response.body);
    }
    let started = std::time::Instant::now();
    let refused = post_batch(&gyre, &secret, &batch(64));
    expect_error(&refused, 503);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "the batch waited for room before it was refused ({:?})",
        started.elapsed()
    );
    let journal = Connection::open(gyre.journal_path()).unwrap();
    assert_eq!(count(&journal, "journal"), 64, "the refused batch was not kept");

    gyre.apply_ingested();
    let accepted = post_batch(&gyre, &secret, &batch(64));
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    gyre.apply_ingested();
    let db = Connection::open(gyre.database_path()).unwrap();
    assert_eq!(count(&db, "telemetry_inbox") + count(&db, "telemetry"), 65);
    assert_eq!(count(&db, "ingest_batches"), 65);
}
