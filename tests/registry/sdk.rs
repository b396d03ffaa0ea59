//! The official device SDKs end to end (issue 4): devices written with Microsoft's Python SDK
//! (`azure-iot-device`) and Node SDKs (`azure-iot-device-mqtt`, `azure-iot-provisioning-device-mqtt`)
//! connect to Gyre changing only their host name and trusted CA, as a device built for Azure IoT
//! Central would.
//!
//! Each test is a user story told once and run for both SDKs at the same time (one thread per
//! SDK, against one Gyre and one bridge): an operator prepares the application through the REST
//! API, a device provisions, connects and sends telemetry, the operator sees it. The device is a
//! script (`tests/sdk/device.py`, `tests/sdk/device.js`) that obeys one JSON command per line and
//! answers each (see the scripts); [`SdkDevice`] runs it, so the test decides what happens
//! between two steps (an approval, a token renewal) and asserts on every answer.
//!
//! The SDKs are installed by `cargo xtask test` (from `tests/sdk/requirements.txt` and
//! `tests/sdk/package-lock.json`, under `target/sdk/`), which passes their locations in
//! `GYRE_SDK_PYTHONPATH` and `GYRE_SDK_NODE_PATH`; a plain `cargo test` finds them in `target/sdk/`
//! once `cargo xtask test` has run. `python3` and `node` come from `PATH`.
//!
//! What the stored telemetry looks like is read from the database directly (no query API yet).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gyre_domain::store::telemetry::{properties_json, STORED_BODY};
use rusqlite::{Connection as Database, OpenFlags};
use serde_json::{json, Value};

use crate::bridge::{TestBridge, HOST};
use crate::device_templates::{publish_thermostat, THERMOSTAT};
use crate::{Client, Gyre};

/// How long a device script may take to answer one command. Above the SDKs' own 30 s DPS
/// timeouts, so a hung SDK is reported by the SDK when it can be.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the bridge may keep an answer of the registry cached (5 s), plus slack: an
/// approval or a block reaches the bridge within this.
const REGISTRY_CACHE_SLACK: Duration = Duration::from_secs(15);

/// The component the tests' IoT Plug and Play messages name (`$.sub`).
const COMPONENT: &str = "thermostat1";

/// An official device SDK.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Sdk {
    Python,
    Node,
}

impl Sdk {
    /// A short name for device ids and messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sdk::Python => "python",
            Sdk::Node => "node",
        }
    }

    /// Whether `answer` is how this SDK reports a connection to `endpoint` refused with
    /// CONNACK 5 ("not authorized"): Python raises `CredentialError` for both; Node's hub client
    /// fails with `UnauthorizedError`, its provisioning client with mqtt.js's bare error
    /// (`code: 5`).
    fn is_refusal(self, endpoint: Endpoint, answer: &Value) -> bool {
        if answer["ok"] != false {
            return false;
        }
        match (self, endpoint) {
            (Sdk::Python, _) => answer["error"] == "CredentialError",
            (Sdk::Node, Endpoint::Hub) => answer["error"] == "UnauthorizedError",
            (Sdk::Node, Endpoint::Dps) => {
                answer["error"] == "Error"
                    && answer["code"] == 5
                    && answer["message"] == "Connection refused: Not authorized"
            }
        }
    }
}

/// What a device connects to: the hub, or the provisioning service (same bridge, same port).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Endpoint {
    Hub,
    Dps,
}

/// Runs `story` once per SDK, at the same time: the two SDKs' devices share the application
/// and the bridge, as devices of different makers do. A panic in either fails the test.
pub(crate) fn for_each_sdk(story: impl Fn(Sdk) + Sync) {
    std::thread::scope(|scope| {
        let story = &story;
        for sdk in [Sdk::Python, Sdk::Node] {
            std::thread::Builder::new()
                .name(sdk.name().to_owned())
                .spawn_scoped(scope, move || story(sdk))
                .expect("spawn a thread per SDK");
        }
    });
}

#[test]
fn a_device_created_by_an_operator_connects_with_each_sdk_sends_telemetry_and_renews_its_token() {
    // Arrange: a thermostat template, and one device per SDK created by an operator.
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let operator = gyre.token_with_role("operator");
    let bridge = gyre.start_bridge();

    for_each_sdk(|sdk| {
        let device_id = format!("{}-thermostat", sdk.name());
        let created = operator.put(
            &format!("/api/devices/{device_id}"),
            json!({"displayName": device_id, "template": THERMOSTAT}),
        );
        assert_eq!(created.status, 200, "{}", created.body);
        let key = device_primary_key(&operator, &device_id);

        // Act: the device connects with its connection string, sends, and keeps its
        // connection while the SDK renews the token.
        let mut device = SdkDevice::start(sdk, &bridge);
        device.connect(json!({
            "hostName": HOST, "deviceId": device_id, "key": key,
            "modelId": THERMOSTAT, "renewTokenAfterSeconds": 3,
        }));
        send_thermostat_telemetry(&mut device);
        wait_for_connections(&gyre, &device_id, 2, &device);
        device.send_json(r#"{"temperature": 23.5}"#);
        device.disconnect();

        // Assert: everything the SDK had acknowledged is stored, as sent.
        assert_thermostat_telemetry(&gyre, &device_id, sdk);
        let shown = operator.get(&format!("/api/devices/{device_id}"));
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert_eq!(shown.json()["provisioned"], true, "{}", shown.body);
    });
}

#[test]
fn a_device_provisions_through_an_enrollment_group_with_each_sdk_and_its_telemetry_is_stored() {
    // Arrange: a builder publishes the thermostat; an operator creates an auto-approving
    // symmetric-key enrollment group and hands its key and the id scope to the device maker.
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let group_key = create_enrollment_group(&gyre, "thermostats", true);
    let operator = gyre.token_with_role("operator");
    let id_scope = id_scope(&operator);
    let bridge = gyre.start_bridge();

    for_each_sdk(|sdk| {
        let registration_id = format!("{}-sensor-1", sdk.name());
        let mut device = SdkDevice::start(sdk, &bridge);

        // Act: provision (the device derives its key from the group key), connect to the
        // assigned hub, send, keep the connection through a token renewal, send again.
        let registered = device.provision(&id_scope, &registration_id, &group_key);
        device.expect_ok(&registered);
        assert_eq!(registered["status"], "assigned", "{registered}");
        assert_eq!(registered["assignedHub"], HOST, "{registered}");
        assert_eq!(
            registered["deviceId"],
            registration_id.as_str(),
            "{registered}"
        );
        device.connect(json!({"modelId": THERMOSTAT, "renewTokenAfterSeconds": 3}));
        send_thermostat_telemetry(&mut device);
        wait_for_connections(&gyre, &registration_id, 2, &device);
        device.send_json(r#"{"temperature": 23.5}"#);
        device.disconnect();

        // Assert: the operator sees a provisioned device with the announced model's template,
        // and its telemetry is stored (once applied, as the bridge has it done after a batch).
        gyre.apply_ingested();
        let shown = operator.get(&format!("/api/devices/{registration_id}"));
        assert_eq!(shown.status, 200, "{}", shown.body);
        let shown = shown.json();
        assert_eq!(shown["provisioned"], true, "{shown}");
        assert_eq!(shown["enabled"], true, "{shown}");
        assert_eq!(shown["template"], THERMOSTAT, "{shown}");
        assert_thermostat_telemetry(&gyre, &registration_id, sdk);
    });
}

#[test]
fn a_device_of_a_group_without_auto_approve_connects_once_an_operator_approves_it() {
    // Arrange: an enrollment group whose devices wait for an operator's approval.
    let gyre = Gyre::start();
    publish_thermostat(&gyre.token_with_role("builder"));
    let group_key = create_enrollment_group(&gyre, "needs-approval", false);
    let operator = gyre.token_with_role("operator");
    let id_scope = id_scope(&operator);
    let bridge = gyre.start_bridge();

    for_each_sdk(|sdk| {
        let registration_id = format!("{}-sensor-2", sdk.name());
        let device_path = format!("/api/devices/{registration_id}");
        let mut device = SdkDevice::start(sdk, &bridge);

        // Act 1: the device registers; it is assigned, but waits for approval.
        let registered = device.provision(&id_scope, &registration_id, &group_key);
        device.expect_ok(&registered);
        assert_eq!(registered["status"], "assigned", "{registered}");
        let waiting = operator.get(&device_path);
        assert_eq!(waiting.status, 200, "{}", waiting.body);
        let waiting = waiting.json();
        assert_eq!(waiting["enabled"], false, "{waiting}");
        assert_eq!(waiting["provisioned"], false, "{waiting}");

        // Assert 1: the hub refuses it (CONNACK 5) for as long as it waits.
        device.connect_refused(json!({}));

        // Act 2: the operator approves it; the device retries until the bridge sees it.
        let approved = operator.patch(&device_path, json!({"enabled": true}));
        assert_eq!(approved.status, 200, "{}", approved.body);
        device.connect_until_accepted(json!({"modelId": THERMOSTAT}));
        device.send_json(r#"{"temperature": 20.5}"#);
        device.disconnect();

        // Assert 2: approved, provisioned, and its message stored.
        gyre.apply_ingested();
        let shown = operator.get(&device_path).json();
        assert_eq!(shown["enabled"], true, "{shown}");
        assert_eq!(shown["provisioned"], true, "{shown}");
        let stored = stored_messages(&gyre, &registration_id);
        let bodies: Vec<&[u8]> = stored.iter().map(|m| m.body.as_slice()).collect();
        assert_eq!(
            bodies,
            [br#"{"temperature": 20.5}"#.as_slice()],
            "{}",
            sdk.name()
        );
    });
}

#[test]
fn a_device_with_a_wrong_key_is_refused_by_the_hub_and_by_provisioning() {
    // Arrange: a device the operator created, and an enrollment group.
    let gyre = Gyre::start();
    let operator = gyre.token_with_role("operator");
    let group_key = create_enrollment_group(&gyre, "thermostats", true);
    let id_scope = id_scope(&operator);
    let bridge = gyre.start_bridge();
    // A well-formed key that belongs to nothing in this application.
    let wrong_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert_ne!(group_key, wrong_key);

    for_each_sdk(|sdk| {
        let device_id = format!("{}-known", sdk.name());
        let created = operator.put(&format!("/api/devices/{device_id}"), json!({}));
        assert_eq!(created.status, 200, "{}", created.body);
        let mut device = SdkDevice::start(sdk, &bridge);

        // Act and assert: the hub refuses the known device with the wrong key...
        device.connect_refused(json!({"hostName": HOST, "deviceId": device_id, "key": wrong_key}));

        // ...and provisioning refuses a key derived from the wrong group key, creating nothing.
        let stranger = format!("{}-stranger", sdk.name());
        let refused = device.provision(&id_scope, &stranger, wrong_key);
        device.expect_refused(Endpoint::Dps, &refused);
        let absent = operator.get(&format!("/api/devices/{stranger}"));
        assert_eq!(absent.status, 404, "{}", absent.body);
        assert_eq!(connections(&gyre, &device_id), 0);
        assert_eq!(connections(&gyre, &stranger), 0);
    });
}

// ---- the operator's side ----

/// `GET /api/devices/{id}/credentials` → `symmetricKey.primaryKey`.
pub(crate) fn device_primary_key(operator: &Client<'_>, device_id: &str) -> String {
    let credentials = operator.get(&format!("/api/devices/{device_id}/credentials"));
    assert_eq!(credentials.status, 200, "{}", credentials.body);
    credentials.json()["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a primary key")
        .to_owned()
}

/// Creates a symmetric-key enrollment group as an administrator; returns its primary key.
fn create_enrollment_group(gyre: &Gyre, id: &str, auto_approve: bool) -> String {
    let created = gyre.admin().put(
        &format!("/api/enrollmentGroups/{id}"),
        json!({"displayName": id, "type": "iot", "autoApprove": auto_approve}),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    created.json()["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a generated primary key")
        .to_owned()
}

/// The application's DPS id scope, as an operator reads it: from any device's credentials
/// (here a throwaway device, deleted again).
fn id_scope(operator: &Client<'_>) -> String {
    let path = "/api/devices/id-scope-reader";
    let created = operator.put(path, json!({}));
    assert_eq!(created.status, 200, "{}", created.body);
    let credentials = operator.get(&format!("{path}/credentials"));
    assert_eq!(credentials.status, 200, "{}", credentials.body);
    let deleted = operator.delete(path);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    credentials.json()["idScope"]
        .as_str()
        .expect("an id scope")
        .to_owned()
}

// ---- the telemetry the devices send, and what must be stored ----

/// Sends the four messages [`assert_thermostat_telemetry`] expects: plain JSON, JSON for a
/// component, JSON with application properties (characters that need percent-encoding in the
/// topic), and a body that is not JSON.
fn send_thermostat_telemetry(device: &mut SdkDevice) {
    device.send_json(r#"{"temperature": 21.5}"#);
    device.send(json!({"body": r#"{"temperature": 22.0}"#, "json": true, "component": COMPONENT}));
    device.send(json!({
        "body": r#"{"temperature": 22.5}"#, "json": true,
        "properties": {"alert": "high temp", "a/b": "x&y=z"},
    }));
    device.send(json!({"body": "raw reading: 0x2A"}));
}

/// What [`send_thermostat_telemetry`] and then one `{"temperature": 23.5}` leave in the store.
fn assert_thermostat_telemetry(gyre: &Gyre, device_id: &str, sdk: Sdk) {
    let stored = stored_messages(gyre, device_id);
    let bodies: Vec<String> = stored
        .iter()
        .map(|message| String::from_utf8_lossy(&message.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        [
            r#"{"temperature": 21.5}"#,
            r#"{"temperature": 22.0}"#,
            r#"{"temperature": 22.5}"#,
            "raw reading: 0x2A",
            r#"{"temperature": 23.5}"#,
        ],
        "{} device {device_id}",
        sdk.name()
    );
    let context = |index: usize| {
        format!(
            "{} device {device_id}, message {index}: {:?}",
            sdk.name(),
            stored[index]
        )
    };

    // JSON messages: content type and encoding kept, top-level fields read; the thermostat
    // models `temperature` on its root Interface only.
    for index in [0, 1, 2, 4] {
        let system = &stored[index].properties["system"];
        assert_eq!(system["$.ct"], "application/json", "{}", context(index));
        assert_eq!(system["$.ce"], "utf-8", "{}", context(index));
        assert!(
            stored[index]
                .fields
                .as_ref()
                .is_some_and(|f| f.get("temperature").is_some()),
            "{}",
            context(index)
        );
    }
    assert_eq!(stored[0].component, None, "{}", context(0));
    assert_eq!(stored[0].unmodeled, None, "{}", context(0));

    // The component message: `$.sub` became the component, and the root model has no
    // `thermostat1` component, so its field is unmodeled (but kept).
    assert_eq!(
        stored[1].component.as_deref(),
        Some(COMPONENT),
        "{}",
        context(1)
    );
    assert_eq!(
        stored[1].unmodeled,
        Some(json!(["temperature"])),
        "{}",
        context(1)
    );

    // Application properties, decoded (Python sends them sorted, Node in insertion order).
    let mut application: Vec<(String, String)> = stored[2].properties["application"]
        .as_array()
        .unwrap_or_else(|| panic!("application properties: {}", context(2)))
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    application.sort();
    assert_eq!(
        application,
        [
            ("a/b".to_owned(), "x&y=z".to_owned()),
            ("alert".to_owned(), "high temp".to_owned())
        ],
        "{}",
        context(2)
    );

    // The body that is not JSON: stored as sent, no fields.
    assert_eq!(stored[3].fields, None, "{}", context(3));
}

/// One stored message, as read from the database.
#[derive(Debug)]
struct StoredMessage {
    component: Option<String>,
    /// `{"system": {..}, "application": [[name, value], ..]}`, `Null` when there were none.
    properties: Value,
    body: Vec<u8>,
    fields: Option<Value>,
    unmodeled: Option<Value>,
}

/// The state database, once what the devices sent is applied (see `Gyre::apply_ingested`).
fn open_database(gyre: &Gyre) -> Database {
    gyre.apply_ingested();
    Database::open_with_flags(gyre.database_path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the state database")
}

/// `device_id`'s messages in the order they were enqueued, from the inbox and the compacted
/// table together (the ingest component may have moved some).
fn stored_messages(gyre: &Gyre, device_id: &str) -> Vec<StoredMessage> {
    let db = open_database(gyre);
    let mut statement = db
        .prepare(&format!(
            "SELECT component, properties, {STORED_BODY}, fields, unmodeled, enqueued_at, seq \
             FROM telemetry_inbox WHERE device_id = ?1 \
             UNION ALL SELECT component, properties, {STORED_BODY}, fields, unmodeled, \
             enqueued_at, seq FROM telemetry WHERE device_id = ?1 ORDER BY enqueued_at, seq"
        ))
        .expect("prepare the telemetry query");
    let json_column = |text: Option<String>| {
        text.map(|text| serde_json::from_str::<Value>(&text).expect("a JSON column"))
    };
    statement
        .query_map([device_id], |row| {
            Ok(StoredMessage {
                component: row.get(0)?,
                properties: row
                    .get::<_, Option<String>>(1)?
                    .map(|column| properties_json(&column).expect("a properties column"))
                    .unwrap_or(Value::Null),
                body: row.get(2)?,
                fields: json_column(row.get(3)?),
                unmodeled: json_column(row.get(4)?),
            })
        })
        .expect("query telemetry")
        .map(|row| row.expect("a telemetry row"))
        .collect()
}

/// How many times the bridge reported `device_id` connected.
fn connections(gyre: &Gyre, device_id: &str) -> u64 {
    open_database(gyre)
        .query_row(
            "SELECT count(*) FROM connectivity WHERE device_id = ?1 AND kind = 'connected'",
            [device_id],
            |row| row.get(0),
        )
        .expect("count connections")
}

/// Waits until the bridge reported `device_id` connected `n` times: the device stayed
/// connected, so the connections after the first are the SDK's reconnections with a renewed
/// token. Connectivity events are not acknowledged to the device, hence the polling.
fn wait_for_connections(gyre: &Gyre, device_id: &str, n: u64, device: &SdkDevice) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = connections(gyre, device_id);
        if seen >= n {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{} device {device_id}: {seen} connection(s) seen after 20s, expected {n} (a token \
                 renewal); the SDK said:\n{}",
                device.sdk.name(),
                device.stderr_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- the device: an SDK script obeying commands ----

/// A device script (`tests/sdk/device.py` or `device.js`) run with its SDK, killed on drop.
pub(crate) struct SdkDevice {
    sdk: Sdk,
    child: Child,
    stdin: ChildStdin,
    /// The script's stdout, one line per item, read by a thread so that waits can time out.
    answers: mpsc::Receiver<String>,
    /// Everything the script and its SDK wrote to stderr, for failure messages.
    stderr: Arc<Mutex<String>>,
}

impl SdkDevice {
    /// Starts the script for `sdk`, pointed at `bridge` (its port and development CA).
    pub(crate) fn start(sdk: Sdk, bridge: &TestBridge) -> SdkDevice {
        let scripts = gyre_tests::repo_root().join("tests").join("sdk");
        let mut command = match sdk {
            Sdk::Python => {
                let mut command = Command::new("python3");
                command
                    .arg(scripts.join("device.py"))
                    .env("PYTHONPATH", python_packages())
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1");
                command
            }
            Sdk::Node => {
                let mut command = Command::new("node");
                command
                    .arg(scripts.join("device.js"))
                    .env("NODE_PATH", node_modules())
                    .env("NODE_EXTRA_CA_CERTS", bridge.ca_path());
                command
            }
        };
        let mut child = command
            .env("GYRE_MQTT_PORT", bridge.addr().port().to_string())
            .env("GYRE_CA_PEM", bridge.ca_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("could not start the {} device script: {err}", sdk.name())
            });
        let stdin = child.stdin.take().expect("piped stdin");
        let (sender, answers) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        SdkDevice {
            sdk,
            child,
            stdin,
            answers,
            stderr,
        }
    }

    /// Sends one command and returns the script's answer (`{"op", "ok", ...}`). A script that
    /// exits or stays silent for [`ANSWER_TIMEOUT`] fails the test with its stderr.
    pub(crate) fn request(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        if let Err(err) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            self.fail(&format!("could not send {command}: {err}"));
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(line) => match serde_json::from_str::<Value>(&line) {
                    Ok(answer) if answer.get("op").is_some() => return answer,
                    // Not an answer: something in the SDK printed to stdout; keep it for the record.
                    _ => self
                        .stderr
                        .lock()
                        .unwrap()
                        .push_str(&format!("(stdout) {line}\n")),
                },
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no answer to {command} within {ANSWER_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("the script exited while answering {command}"))
                }
            }
        }
    }

    /// `provision` through the bridge (as DPS) at [`HOST`], announcing the thermostat model;
    /// the answer, successful or not.
    fn provision(&mut self, id_scope: &str, registration_id: &str, group_key: &str) -> Value {
        self.request(json!({
            "op": "provision", "host": HOST, "idScope": id_scope,
            "registrationId": registration_id, "groupKey": group_key, "modelId": THERMOSTAT,
        }))
    }

    /// `connect` with `options` (see the scripts), which must succeed.
    pub(crate) fn connect(&mut self, options: Value) {
        let answer = self.request(command("connect", options));
        self.expect_ok(&answer);
    }

    /// `connect` with `options`, which the hub must refuse (CONNACK 5).
    fn connect_refused(&mut self, options: Value) {
        let answer = self.request(command("connect", options));
        self.expect_refused(Endpoint::Hub, &answer);
    }

    /// Retries `connect` while the hub refuses the device (an approval takes up to the bridge's
    /// registry cache time to be seen), until accepted.
    fn connect_until_accepted(&mut self, options: Value) {
        let deadline = Instant::now() + REGISTRY_CACHE_SLACK;
        loop {
            let answer = self.request(command("connect", options.clone()));
            if answer["ok"] == true {
                return;
            }
            if !self.sdk.is_refusal(Endpoint::Hub, &answer) || Instant::now() > deadline {
                self.fail(&format!(
                    "connect still failed after {REGISTRY_CACHE_SLACK:?}: {answer}"
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends one telemetry message (`body`, and `json`, `component`, `properties` as the
    /// scripts take them); returns once the SDK saw it acknowledged.
    fn send(&mut self, message: Value) {
        let answer = self.request(command("send", message));
        self.expect_ok(&answer);
    }

    /// One JSON telemetry message (`$.ct` and `$.ce` set, as IoT Central expects).
    fn send_json(&mut self, body: &str) {
        self.send(json!({"body": body, "json": true}));
    }

    pub(crate) fn disconnect(&mut self) {
        let answer = self.request(json!({"op": "disconnect"}));
        self.expect_ok(&answer);
    }

    pub(crate) fn expect_ok(&self, answer: &Value) {
        if answer["ok"] != true {
            self.fail(&format!("expected success, got {answer}"));
        }
    }

    /// The answer of a connection `endpoint` refused with CONNACK 5, as this SDK reports it.
    fn expect_refused(&self, endpoint: Endpoint, answer: &Value) {
        if !self.sdk.is_refusal(endpoint, answer) {
            self.fail(&format!(
                "expected the {endpoint:?} to refuse the device, got {answer}"
            ));
        }
    }

    /// The end of what the script wrote to stderr.
    fn stderr_tail(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        let start = stderr.len().saturating_sub(6000);
        let start = (start..stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(0);
        stderr[start..].to_owned()
    }

    pub(crate) fn fail(&self, what: &str) -> ! {
        // Give the stderr reader a moment to catch up with the script's last words.
        std::thread::sleep(Duration::from_millis(100));
        panic!(
            "{} device: {what}\n--- its stderr ---\n{}",
            self.sdk.name(),
            self.stderr_tail()
        );
    }
}

impl Drop for SdkDevice {
    fn drop(&mut self) {
        let _ = self.child.kill(); // it may have exited already; either way it is gone
        let _ = self.child.wait();
    }
}

/// `{"op": op, ..options}`.
pub(crate) fn command(op: &str, options: Value) -> Value {
    let mut command = options;
    command["op"] = json!(op);
    command
}

/// Where `cargo xtask test` installed the Python SDK (`pip install --target`).
fn python_packages() -> PathBuf {
    installed(
        "GYRE_SDK_PYTHONPATH",
        &["sdk", "python"],
        "azure",
        "the Python device SDK",
    )
}

/// Where `cargo xtask test` installed the Node SDKs (`npm ci`).
fn node_modules() -> PathBuf {
    installed(
        "GYRE_SDK_NODE_PATH",
        &["sdk", "node", "node_modules"],
        "azure-iot-device",
        "the Node device SDKs",
    )
}

/// `$variable`, else `target/<default>`; panics with the remedy when `marker` is not in it.
fn installed(variable: &str, default: &[&str], marker: &str, what: &str) -> PathBuf {
    let dir = match std::env::var_os(variable) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default
            .iter()
            .fold(gyre_tests::target_dir(), |dir, part| dir.join(part)),
    };
    assert!(
        dir.join(marker).exists(),
        "{what} is not installed in {} ({variable}): run `cargo xtask test`, which installs it",
        dir.display()
    );
    dir
}
