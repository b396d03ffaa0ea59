//! End-to-end tests of the registry component (issue 3): IoT Central's management API as an
//! operator, a builder and an integration use it, through the real `gyre-host` running the
//! repository's own `spin.toml`. One module per area; this file holds the harness.
//!
//! [`Gyre::start`] gives each test a fresh application (temp state directory, its own internal
//! secret) that has been bootstrapped: [`Gyre::admin`] holds the administrator token that
//! `cargo xtask up` prints on first start.

mod bridge;
mod bridge_protocol;
mod c2d;
mod commands;
mod device_groups;
mod device_properties;
mod device_templates;
mod devices;
mod downlink;
mod durability;
mod enrollment_groups;
mod health;
mod ingest;
mod openapi;
mod provisioning;
mod query;
mod twin;
mod sdk;
mod sdk_operations;
mod security;

use gyre_domain::auth::BUILT_IN_ROLES;
use gyre_tests::{App, HttpResponse, TestHost};
use serde_json::{json, Value};

/// A running, bootstrapped Gyre.
pub struct Gyre {
    host: TestHost,
    admin_token: String,
    internal_secret: String,
    /// The loopback port the bridge's control API listens on (`--control-listen`); the
    /// registry reaches it through `bridge_control_url`.
    control_port: u16,
}

impl Gyre {
    /// Starts gyre-host on the repository's `spin.toml` and bootstraps the administrator token.
    pub fn start() -> Gyre {
        let manifest = repo_manifest();
        let app = App::new(&manifest);
        let internal_secret = format!("test-secret-{}-{:?}", std::process::id(), std::time::Instant::now());
        // Free a moment ago; the bridge (if a test starts one) binds it later.
        let control_port = gyre_tests::free_local_port();
        // The repository's runtime configuration, whose relative paths then land in the
        // app's state directory.
        let runtime_config = app.write_file(
            "runtime-config.toml",
            &std::fs::read_to_string(gyre_tests::repo_root().join("runtime-config.toml"))
                .expect("read runtime-config.toml"),
        );
        let host = app
            .host()
            .arg("--runtime-config-file")
            .arg(runtime_config)
            .env("SPIN_VARIABLE_INTERNAL_SECRET", &internal_secret)
            .env("SPIN_VARIABLE_BRIDGE_CONTROL_URL", &format!("http://127.0.0.1:{control_port}"))
            .start();
        let bootstrap = host.request_with_headers(
            "POST",
            "/internal/registry/bootstrap",
            &[("x-gyre-internal-secret", &internal_secret)],
            b"",
        );
        assert_eq!(bootstrap.status, 201, "bootstrap: {}", bootstrap.body);
        let admin_token = bootstrap.json()["token"].as_str().expect("a token").to_string();
        Gyre { host, admin_token, internal_secret, control_port }
    }

    /// Where the bridge's control API listens (`--control-listen`).
    pub fn control_addr(&self) -> String {
        format!("127.0.0.1:{}", self.control_port)
    }

    /// Starts `gyre-ingest-bridge` in front of this Gyre: development certificates made by its
    /// own `dev-certs` command in the app's temp dir, MQTT over TLS on 127.0.0.1:0.
    pub fn start_bridge(&self) -> bridge::TestBridge {
        bridge::TestBridge::start(self)
    }

    pub fn host(&self) -> &TestHost {
        &self.host
    }

    /// For tests that crash and restart the host (`TestHost::crash`, `TestHost::restart`).
    pub fn host_mut(&mut self) -> &mut TestHost {
        &mut self.host
    }

    pub fn internal_secret(&self) -> &str {
        &self.internal_secret
    }

    /// The application's SQLite database (label `default`), for tests that read what a
    /// component stored without an API for it yet.
    pub fn database_path(&self) -> std::path::PathBuf {
        self.host.app().state_dir().join("sqlite_db.db")
    }

    /// The ingest component's journal (see `runtime-config.toml`).
    pub fn journal_path(&self) -> std::path::PathBuf {
        self.host.app().state_dir().join("journal.db")
    }

    /// `POST /internal/compact`, as the bridge sends it after a batch: applies the journal to
    /// the default database (and compacts), so what `/internal/ingest` accepted can be read.
    pub fn apply_ingested(&self) {
        // The journal holds 64 batches at most: a few requests drain it unless devices are
        // still sending, which a test calling this must have stopped.
        for _ in 0..100 {
            let response = self.host.request_with_headers(
                "POST",
                "/internal/compact",
                &[("x-gyre-internal-secret", &self.internal_secret)],
                b"",
            );
            assert_eq!(response.status, 200, "compact: {}", response.body);
            if response.json()["applied"] == json!(0) {
                return;
            }
        }
        panic!("the ingest journal did not drain in 100 compaction requests");
    }

    /// The bootstrap administrator.
    pub fn admin(&self) -> Client<'_> {
        self.with_token(&self.admin_token.clone())
    }

    /// No `Authorization` header at all.
    pub fn anonymous(&self) -> Client<'_> {
        Client { gyre: self, token: None }
    }

    /// Any `Authorization` header value, valid or not.
    pub fn with_token(&self, token: &str) -> Client<'_> {
        Client { gyre: self, token: Some(token.to_string()) }
    }

    /// Creates an API token with a built-in role (`administrator`, `builder`, `operator`)
    /// through the REST API, as an administrator would.
    pub fn token_with_role(&self, role: &str) -> Client<'_> {
        let token = self.create_token(&format!("{role}-token"), role, None);
        self.with_token(&token)
    }

    /// `PUT /api/apiTokens/{id}` as the administrator; returns the token value.
    pub fn create_token(&self, id: &str, role: &str, expiry: Option<&str>) -> String {
        let mut body = json!({ "roles": [{ "role": role_id(role) }] });
        if let Some(expiry) = expiry {
            body["expiry"] = json!(expiry);
        }
        let response = self.admin().put(&format!("/api/apiTokens/{id}"), body);
        assert!(matches!(response.status, 200 | 201), "create token {id}: {} {}", response.status, response.body);
        response.json()["token"].as_str().expect("the token, shown once").to_string()
    }
}

/// The wall clock, Unix milliseconds: what the host stamps telemetry and tokens with.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// The id of a built-in role by its display name, case-insensitively.
pub fn role_id(name: &str) -> String {
    BUILT_IN_ROLES
        .iter()
        .find(|role| role.display_name.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no built-in role named {name}"))
        .id
        .to_string()
}

/// The repository's `spin.toml`, with component sources made absolute so it runs from a temp dir.
fn repo_manifest() -> String {
    let text = std::fs::read_to_string(gyre_tests::repo_root().join("spin.toml")).expect("read spin.toml");
    let target = gyre_tests::target_dir();
    for wasm in ["gyre_registry.wasm", "gyre_ingest.wasm"] {
        let path = target.join("wasm32-wasip2/release").join(wasm);
        assert!(path.is_file(), "{} is missing: run `cargo xtask build`", path.display());
    }
    text.replace("source = \"target/", &format!("source = \"{}/", target.display()))
}

/// A caller of the REST API with one token (or none).
pub struct Client<'a> {
    gyre: &'a Gyre,
    token: Option<String>,
}

impl Client<'_> {
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], b"")
    }

    pub fn delete(&self, path: &str) -> HttpResponse {
        self.request("DELETE", path, &[], b"")
    }

    pub fn put(&self, path: &str, body: Value) -> HttpResponse {
        self.send_json("PUT", path, "application/json", &body)
    }

    pub fn post(&self, path: &str, body: Value) -> HttpResponse {
        self.send_json("POST", path, "application/json", &body)
    }

    /// `PATCH` with `application/json`.
    pub fn patch(&self, path: &str, body: Value) -> HttpResponse {
        self.send_json("PATCH", path, "application/json", &body)
    }

    /// `PATCH` with `application/merge-patch+json`.
    pub fn patch_merge(&self, path: &str, body: Value) -> HttpResponse {
        self.send_json("PATCH", path, "application/merge-patch+json", &body)
    }

    fn send_json(&self, method: &str, path: &str, content_type: &str, body: &Value) -> HttpResponse {
        let body = serde_json::to_vec(body).expect("serialise a JSON body");
        self.request(method, path, &[("content-type", content_type)], &body)
    }

    /// Any request; the client's `Authorization` header is added to `headers`.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(token) = &self.token {
            all.push(("authorization", token));
        }
        self.gyre.host.request_with_headers(method, path, &all, body)
    }
}

/// Asserts IoT Central's error shape and returns the error code.
pub fn expect_error(response: &HttpResponse, status: u16) -> String {
    assert_eq!(response.status, status, "expected {status}, got {}: {}", response.status, response.body);
    let body = response.json();
    let error = &body["error"];
    for field in ["code", "message", "requestId", "time"] {
        assert!(error[field].is_string(), "error body lacks `{field}`: {body}");
    }
    assert_eq!(response.header("x-ms-error-code"), error["code"].as_str(), "x-ms-error-code header");
    error["code"].as_str().unwrap_or_default().to_string()
}
