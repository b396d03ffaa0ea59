//! The conformance probe: one Spin HTTP component whose behaviour is chosen by the request's
//! `op` query parameter, so the test suite can mount it under many ids and routes and exercise
//! every host capability through it.
//!
//! Every op answers JSON. Success is 200. A capability error the host reported through its WIT
//! interface is 422 with `{"error": "<Spin's variant name>", "detail": ...}`, so a test can tell a
//! guest-visible error (422) from a host failure (500). Ops:
//!
//! | op        | query parameters                  | body                          |
//! |-----------|-----------------------------------|-------------------------------|
//! | `echo`    | (default op)                      | any; only its length reported |
//! | `kv`      | `label`, `action`, `key`          | the value for `action=set`    |
//! | `sql`     | `label`                           | `{"sql": "...", "params": []}`|
//! | `insert`  | `label`, `value`                  | BEGIN; INSERT; COMMIT         |
//! | `counter` | `label`                           | BEGIN IMMEDIATE read-modify-write |
//! | `var`     | `name`                            |                               |
//! | `fetch`   | `url`, `method`                   | forwarded                     |
//! | `static`  |                                   | increments a guest static     |
//! | `loop`    | `hold` (optional label)           | never returns                 |
//! | `panic`   | `hold` (optional label)           | traps                         |
//! | `work`    |                                   | one KV set + one SQLite insert|
//!
//! It deliberately holds no logic worth testing natively: it is only the guest half of the e2e
//! tests in `tests/conformance`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value as Json};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{key_value, sqlite, variables};

#[spin_sdk::http_component]
async fn handle(req: Request) -> Response {
    let query = parse_query(req.query());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let op = param("op").unwrap_or_else(|| "echo".to_owned());
    let outcome = match op.as_str() {
        "echo" => Ok(echo(&req)),
        "kv" => kv(&req, &param),
        "sql" => sql(&req, &param),
        "insert" => insert(&param),
        "counter" => counter(&param),
        "var" => var(&param),
        "fetch" => return fetch(&req, &param).await,
        "static" => Ok(static_counter()),
        "loop" => {
            hold_write_lock(param("hold"));
            spin_forever()
        }
        "panic" => {
            hold_write_lock(param("hold"));
            panic!("the probe was asked to trap")
        }
        "work" => trivial_work(),
        other => return json_response(400, json!({ "error": format!("unknown op {other}") })),
    };
    match outcome {
        Ok(body) => json_response(200, body),
        Err(failure) => json_response(422, failure),
    }
}

/// A guest-visible capability error: `{"error": variant, "detail": message}`.
type Failure = Json;

fn echo(req: &Request) -> Json {
    let headers: serde_json::Map<String, Json> = req
        .headers()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                Json::String(value.as_str().unwrap_or("<non-utf8>").to_owned()),
            )
        })
        .collect();
    json!({
        "method": req.method().to_string(),
        "uri": req.uri(),
        "path": req.path(),
        "query": req.query(),
        "headers": headers,
        "body_len": req.body().len(),
    })
}

fn kv(req: &Request, param: &dyn Fn(&str) -> Option<String>) -> Result<Json, Failure> {
    let label = param("label").unwrap_or_else(|| "default".to_owned());
    let key = param("key").unwrap_or_default();
    let store = key_value::Store::open(&label).map_err(kv_failure)?;
    let action = param("action").unwrap_or_else(|| "get".to_owned());
    match action.as_str() {
        "get" => {
            let value = store.get(&key).map_err(kv_failure)?;
            Ok(json!({ "value": value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()) }))
        }
        "set" => {
            store.set(&key, req.body()).map_err(kv_failure)?;
            Ok(json!({ "ok": true }))
        }
        "delete" => {
            store.delete(&key).map_err(kv_failure)?;
            Ok(json!({ "ok": true }))
        }
        "exists" => Ok(json!({ "exists": store.exists(&key).map_err(kv_failure)? })),
        "keys" => {
            let mut keys = store.get_keys().map_err(kv_failure)?;
            keys.sort();
            Ok(json!({ "keys": keys }))
        }
        other => {
            Err(json!({ "error": "bad-request", "detail": format!("unknown kv action {other}") }))
        }
    }
}

fn kv_failure(error: key_value::Error) -> Failure {
    let (variant, detail) = match error {
        key_value::Error::StoreTableFull => ("store-table-full", String::new()),
        key_value::Error::NoSuchStore => ("no-such-store", String::new()),
        key_value::Error::AccessDenied => ("access-denied", String::new()),
        key_value::Error::Other(message) => ("other", message),
    };
    json!({ "error": variant, "detail": detail })
}

fn sql(req: &Request, param: &dyn Fn(&str) -> Option<String>) -> Result<Json, Failure> {
    let label = param("label").unwrap_or_else(|| "default".to_owned());
    let command: Json = serde_json::from_slice(req.body())
        .map_err(|e| json!({ "error": "bad-request", "detail": e.to_string() }))?;
    let statement = command["sql"].as_str().unwrap_or_default();
    let params: Vec<sqlite::Value> = command["params"]
        .as_array()
        .map(|values| values.iter().map(to_sqlite_value).collect())
        .unwrap_or_default();
    let connection = sqlite::Connection::open(&label).map_err(sqlite_failure)?;
    let result = connection
        .execute(statement, &params)
        .map_err(sqlite_failure)?;
    let rows: Vec<Json> = result
        .rows
        .iter()
        .map(|row| Json::Array(row.values.iter().map(from_sqlite_value).collect()))
        .collect();
    Ok(json!({ "columns": result.columns, "rows": rows }))
}

fn to_sqlite_value(value: &Json) -> sqlite::Value {
    match value {
        Json::Null => sqlite::Value::Null,
        Json::Bool(b) => sqlite::Value::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => sqlite::Value::Integer(i),
            None => sqlite::Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => sqlite::Value::Text(s.clone()),
        // `{"blob": [1, 2, 3]}` is a blob; any other structure is passed as its JSON text.
        Json::Object(map) if map.contains_key("blob") => sqlite::Value::Blob(
            map["blob"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect(),
        ),
        other => sqlite::Value::Text(other.to_string()),
    }
}

fn from_sqlite_value(value: &sqlite::Value) -> Json {
    match value {
        sqlite::Value::Integer(i) => json!(i),
        sqlite::Value::Real(r) => json!(r),
        sqlite::Value::Text(s) => json!(s),
        sqlite::Value::Blob(bytes) => json!({ "blob": bytes }),
        sqlite::Value::Null => Json::Null,
    }
}

fn sqlite_failure(error: sqlite::Error) -> Failure {
    let (variant, detail) = match error {
        sqlite::Error::NoSuchDatabase => ("no-such-database", String::new()),
        sqlite::Error::AccessDenied => ("access-denied", String::new()),
        sqlite::Error::InvalidConnection => ("invalid-connection", String::new()),
        sqlite::Error::DatabaseFull => ("database-full", String::new()),
        sqlite::Error::Io(message) => ("io", message),
    };
    json!({ "error": variant, "detail": detail })
}

/// Runs `statements` in order on one connection; on the first failure rolls back (best effort,
/// the failure being reported is the interesting one) and reports it.
fn transaction(
    connection: &sqlite::Connection,
    statements: &[(&str, Vec<sqlite::Value>)],
) -> Result<Vec<sqlite::QueryResult>, Failure> {
    let mut results = Vec::new();
    for (statement, params) in statements {
        match connection.execute(statement, params) {
            Ok(result) => results.push(result),
            Err(error) => {
                let _ = connection.execute("ROLLBACK", &[]); // the original error matters more
                return Err(sqlite_failure(error));
            }
        }
    }
    Ok(results)
}

fn insert(param: &dyn Fn(&str) -> Option<String>) -> Result<Json, Failure> {
    let label = param("label").unwrap_or_else(|| "default".to_owned());
    let value = param("value").unwrap_or_default();
    let connection = sqlite::Connection::open(&label).map_err(sqlite_failure)?;
    connection
        .execute(
            "CREATE TABLE IF NOT EXISTS probe_rows (id INTEGER PRIMARY KEY, value TEXT NOT NULL)",
            &[],
        )
        .map_err(sqlite_failure)?;
    transaction(
        &connection,
        &[
            ("BEGIN", vec![]),
            (
                "INSERT INTO probe_rows (value) VALUES (?)",
                vec![sqlite::Value::Text(value)],
            ),
            ("COMMIT", vec![]),
        ],
    )?;
    Ok(json!({ "ok": true }))
}

fn counter(param: &dyn Fn(&str) -> Option<String>) -> Result<Json, Failure> {
    let label = param("label").unwrap_or_else(|| "default".to_owned());
    let connection = sqlite::Connection::open(&label).map_err(sqlite_failure)?;
    connection
        .execute("CREATE TABLE IF NOT EXISTS probe_counter (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)", &[])
        .map_err(sqlite_failure)?;
    let begin = transaction(
        &connection,
        &[
            ("BEGIN IMMEDIATE", vec![]),
            ("SELECT n FROM probe_counter WHERE id = 1", vec![]),
        ],
    )?;
    let current = begin[1]
        .rows
        .first()
        .and_then(|row| row.get::<i64>(0))
        .unwrap_or(0);
    let next = current + 1;
    transaction(
        &connection,
        &[
            (
                "INSERT INTO probe_counter (id, n) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET n = excluded.n",
                vec![sqlite::Value::Integer(next)],
            ),
            ("COMMIT", vec![]),
        ],
    )?;
    Ok(json!({ "n": next }))
}

fn var(param: &dyn Fn(&str) -> Option<String>) -> Result<Json, Failure> {
    let name = param("name").unwrap_or_default();
    match variables::get(&name) {
        Ok(value) => Ok(json!({ "value": value })),
        Err(variables::Error::InvalidName(detail)) => {
            Err(json!({ "error": "invalid-name", "detail": detail }))
        }
        Err(variables::Error::Undefined(detail)) => {
            Err(json!({ "error": "undefined", "detail": detail }))
        }
        Err(variables::Error::Provider(detail)) => {
            Err(json!({ "error": "provider", "detail": detail }))
        }
        Err(variables::Error::Other(detail)) => Err(json!({ "error": "other", "detail": detail })),
    }
}

/// Outbound HTTP: answers 200 with the upstream's status and body, or 422 with the wasi-http
/// `error-code` (its Rust variant name, e.g. `HttpRequestDenied`).
async fn fetch(req: &Request, param: &dyn Fn(&str) -> Option<String>) -> Response {
    let url = param("url").unwrap_or_default();
    let method = match param("method").as_deref() {
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        _ => Method::Get,
    };
    let outgoing = Request::builder()
        .method(method)
        .uri(url)
        .body(req.body().to_vec())
        .build();
    let sent: Result<Response, spin_sdk::http::SendError> = spin_sdk::http::send(outgoing).await;
    match sent {
        Ok(response) => json_response(
            200,
            json!({
                "status": *response.status(),
                "body": String::from_utf8_lossy(response.body()),
            }),
        ),
        Err(spin_sdk::http::SendError::Http(code)) => {
            let debug = format!("{code:?}");
            // `ErrorCode::HttpRequestDenied` or `ErrorCode::DnsError(..)` → the bare variant name.
            let variant = debug
                .trim_start_matches("ErrorCode::")
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned();
            json_response(422, json!({ "error": variant, "detail": debug }))
        }
        Err(other) => json_response(
            422,
            json!({ "error": "other", "detail": other.to_string() }),
        ),
    }
}

/// Instances are fresh per request, so this answers 1 every time on a conforming host.
fn static_counter() -> Json {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    json!({ "calls": CALLS.fetch_add(1, Ordering::SeqCst) + 1 })
}

/// With `hold=<label>`, opens that database and leaves a `BEGIN IMMEDIATE` transaction open, so
/// a test can check that the host releases the write lock of an instance it interrupts or that
/// traps. Failing to take the lock is reported by trapping, which the test sees as well.
fn hold_write_lock(label: Option<String>) {
    if let Some(label) = label {
        let connection = sqlite::Connection::open(&label).expect("open the database to hold");
        connection
            .execute("BEGIN IMMEDIATE", &[])
            .expect("take the write lock");
        std::mem::forget(connection); // keep the transaction open until the instance dies
    }
}

/// Never returns: only the host's per-request deadline ends it.
fn spin_forever() -> ! {
    let mut spins: u64 = 0;
    loop {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}

/// The benchmark's unit of work: one KV write and one SQLite insert on the default stores.
fn trivial_work() -> Result<Json, Failure> {
    let store = key_value::Store::open_default().map_err(kv_failure)?;
    store.set("last-work", b"done").map_err(kv_failure)?;
    let connection = sqlite::Connection::open_default().map_err(sqlite_failure)?;
    connection
        .execute(
            "CREATE TABLE IF NOT EXISTS probe_work (id INTEGER PRIMARY KEY, at TEXT NOT NULL)",
            &[],
        )
        .map_err(sqlite_failure)?;
    connection
        .execute("INSERT INTO probe_work (at) VALUES ('now')", &[])
        .map_err(sqlite_failure)?;
    Ok(json!({ "ok": true }))
}

fn json_response(status: u16, body: Json) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

/// `a=1&b=x%2Fy` → `[("a", "1"), ("b", "x/y")]`; `+` is a space, as in forms.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let escaped = match (bytes[idx], bytes.get(idx + 1), bytes.get(idx + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_value(hi)
                .zip(hex_value(lo))
                .map(|(hi, lo)| hi * 16 + lo),
            _ => None,
        };
        match (escaped, bytes[idx]) {
            (Some(byte), _) => {
                decoded.push(byte);
                idx += 3;
                continue;
            }
            (None, b'+') => decoded.push(b' '),
            (None, byte) => decoded.push(byte),
        }
        idx += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}
