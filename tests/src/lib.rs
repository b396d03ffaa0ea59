//! Harness for the black-box conformance tests of gyre-host.
//!
//! - [`App`]: a fresh temporary directory holding a `spin.toml` (and whatever other files a test
//!   writes there). Its state directory is `<dir>/.spin`, so a second host started on the same
//!   `App` sees the first one's data.
//! - [`HostCommand`] → [`TestHost`]: spawns `target/release/gyre-host` on `127.0.0.1:0`, waits
//!   for Spin's `Serving http://...` line, and kills the process on drop.
//!   [`TestHost::crash`] and [`TestHost::restart`] kill it with SIGKILL and bring it back on the
//!   same address and state directory.
//!   [`HostCommand::start_expecting_failure`] captures a refused start instead.
//! - [`HttpResponse`]: what the blocking client observed, with `json()` for the probe's answers.
//! - [`Upstream`]: a tiny HTTP/1.1 server on `127.0.0.1:0`, the third party of outbound tests.
//!
//! The harness never builds anything: the tests run against the release binary and the
//! wasm32-wasip2 components that `cargo xtask build` produces, and say so when they are missing.
//! It never sleeps for a fixed time either: every wait polls against a deadline.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a host may take from spawn to `Serving http://...` (it compiles the components).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request may take before the client gives up; above every deadline under test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The guest components a manifest can name as `source = "@<name>.wasm"`, and their crates.
const COMPONENTS: &[(&str, &str)] = &[
    ("@probe.wasm", "gyre_test_probe.wasm"),
    ("@unsupported.wasm", "gyre_test_unsupported.wasm"),
    ("@hello.wasm", "gyre_test_hello.wasm"),
];

/// The workspace root: the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, `<repo>/target` otherwise. Every path
/// to a built artefact goes through here.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// `<target>/release/gyre-host`; panics with the command to run when it has not been built.
pub fn host_binary() -> PathBuf {
    let binary = target_dir().join("release").join("gyre-host");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo xtask build` (or `cargo build --release -p gyre-host`)",
        binary.display()
    );
    binary
}

/// `<target>/wasm32-wasip2/release/<file_name>`; panics with the command to run when missing.
pub fn component_wasm(file_name: &str) -> PathBuf {
    let wasm = target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(file_name);
    assert!(
        wasm.is_file(),
        "{} is missing: run `cargo xtask build` (or `cargo build --release --target wasm32-wasip2 \
         -p gyre-test-probe -p gyre-test-unsupported -p gyre-test-hello`)",
        wasm.display()
    );
    wasm
}

/// Percent-encodes `raw` for use as one query-string value.
pub fn query_escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(byte as char)
            }
            _ => escaped.push_str(&format!("%{byte:02X}")),
        }
    }
    escaped
}

/// A port on 127.0.0.1 that was free a moment ago (for flags that cannot take port 0).
pub fn free_local_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A temporary application directory: `spin.toml`, its state directory and any extra files.
/// Cheap to clone; the directory is removed when the last clone (and host) is gone.
#[derive(Clone)]
pub struct App {
    dir: Arc<tempfile::TempDir>,
}

impl App {
    /// Writes `manifest_toml` as `<tmp>/spin.toml`, replacing each `"@probe.wasm"`,
    /// `"@unsupported.wasm"` and `"@hello.wasm"` with the absolute path of the built component.
    pub fn new(manifest_toml: &str) -> App {
        let dir = tempfile::Builder::new()
            .prefix("gyre-conformance-")
            .tempdir()
            .expect("create a temp dir");
        let mut manifest = manifest_toml.to_owned();
        for (placeholder, file_name) in COMPONENTS {
            if manifest.contains(placeholder) {
                let wasm = component_wasm(file_name);
                manifest = manifest.replace(placeholder, &wasm.display().to_string());
            }
        }
        std::fs::write(dir.path().join("spin.toml"), manifest).expect("write spin.toml");
        App { dir: Arc::new(dir) }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir().join("spin.toml")
    }

    /// The state directory the harness passes with `--state-dir` by default.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(".spin")
    }

    /// Writes `<tmp>/<name>` and returns its absolute path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, contents).expect("write a file into the app dir");
        path
    }

    /// A command to start gyre-host on this app; see [`HostCommand`] for the defaults.
    pub fn host(&self) -> HostCommand {
        HostCommand {
            app: self.clone(),
            listen: "127.0.0.1:0".to_owned(),
            state_dir: Some(self.state_dir()),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }
}

/// How to spawn gyre-host: `gyre-host <manifest> --listen 127.0.0.1:0 --state-dir <tmp>/.spin`
/// plus the extra arguments and environment a test adds. `SPIN_VARIABLE_*` variables of the
/// test process are not inherited, so only the ones a test sets are seen.
#[derive(Clone)]
pub struct HostCommand {
    app: App,
    listen: String,
    state_dir: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
}

impl HostCommand {
    pub fn arg(mut self, arg: impl Into<OsString>) -> HostCommand {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> HostCommand {
        self.envs.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn listen(mut self, addr: &str) -> HostCommand {
        self.listen = addr.to_owned();
        self
    }

    pub fn state_dir(mut self, dir: &Path) -> HostCommand {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// Leaves `--state-dir` out, so the host uses its default (`<manifest dir>/.spin`).
    pub fn default_state_dir(mut self) -> HostCommand {
        self.state_dir = None;
        self
    }

    /// Spawns the host and waits for `Serving http://...`; panics with the host's stderr if it
    /// exits or stays silent instead.
    pub fn start(self) -> TestHost {
        let command = self.clone();
        let mut running = self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        let base_url = loop {
            if let Some(line) = running
                .stdout
                .find(|line| line.starts_with("Serving http://"))
            {
                break line.trim_start_matches("Serving ").trim().to_owned();
            }
            if let Some(status) = running.child.try_wait().expect("poll gyre-host") {
                let (stdout, stderr) = running.finish_output();
                panic!("gyre-host exited with {status} before serving\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
            }
            if Instant::now() > deadline {
                let _ = running.child.kill(); // already failing; the panic below explains why
                let (stdout, stderr) = running.finish_output();
                panic!("gyre-host printed no `Serving` line within {START_TIMEOUT:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
            }
            running.stdout.wait_for_change(Duration::from_millis(50));
        };
        TestHost {
            running,
            base_url,
            agent: http_agent(),
            command,
        }
    }

    /// Spawns the host expecting it to refuse to start; panics if it serves instead.
    pub fn start_expecting_failure(self) -> FailedStart {
        let mut running = self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = running.child.try_wait().expect("poll gyre-host") {
                let (stdout, stderr) = running.finish_output();
                return FailedStart {
                    status,
                    stdout,
                    stderr,
                };
            }
            if running
                .stdout
                .find(|line| line.starts_with("Serving http://"))
                .is_some()
                || Instant::now() > deadline
            {
                let _ = running.child.kill(); // the panic below is the failure being reported
                let _ = running.child.wait();
                let (stdout, stderr) = running.finish_output();
                panic!("gyre-host should have refused to start, but it did not exit\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
            }
            running.stdout.wait_for_change(Duration::from_millis(50));
        }
    }

    fn spawn(self) -> Running {
        let mut command = Command::new(host_binary());
        command
            .arg(self.app.manifest_path())
            .arg("--listen")
            .arg(&self.listen);
        if let Some(state_dir) = &self.state_dir {
            command.arg("--state-dir").arg(state_dir);
        }
        command.args(&self.args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                command.env_remove(name);
            }
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        command
            .current_dir(self.app.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn gyre-host");
        let stdout = Lines::default();
        let stderr = Lines::default();
        let readers = vec![
            collect_lines(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect_lines(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
            app: self.app,
        }
    }
}

/// What a refused start left behind.
#[derive(Debug)]
pub struct FailedStart {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running gyre-host. Dropping it kills the process.
pub struct TestHost {
    running: Running,
    base_url: String,
    agent: ureq::Agent,
    /// How it was started, for [`TestHost::restart`].
    command: HostCommand,
}

impl TestHost {
    /// Starts gyre-host with the harness defaults on a fresh [`App`] holding `manifest_toml`.
    pub fn start(manifest_toml: &str) -> TestHost {
        App::new(manifest_toml).host().start()
    }

    /// `http://127.0.0.1:<port>`, as printed on the `Serving` line.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base_url, path_and_query)
    }

    pub fn app(&self) -> &App {
        &self.running.app
    }

    pub fn get(&self, path_and_query: &str) -> HttpResponse {
        self.request("GET", path_and_query, b"")
    }

    pub fn post(&self, path_and_query: &str, body: impl AsRef<[u8]>) -> HttpResponse {
        self.request("POST", path_and_query, body.as_ref())
    }

    /// A request with extra headers (`Authorization`, `Content-Type`, `If-Match`...).
    pub fn request_with_headers(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        send_with_headers(&self.agent, method, &self.url(path_and_query), headers, body)
    }

    pub fn request(&self, method: &str, path_and_query: &str, body: &[u8]) -> HttpResponse {
        send(&self.agent, method, &self.url(path_and_query), body)
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.running.stdout.snapshot()
    }

    pub fn stderr(&self) -> String {
        self.running.stderr.snapshot().join("\n")
    }

    /// Waits until a stdout line satisfies `predicate`, or panics after `timeout`.
    pub fn wait_for_stdout(&self, timeout: Duration, predicate: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.running.stdout.find(&predicate) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no matching stdout line within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout().join("\n"),
                self.stderr()
            );
            self.running
                .stdout
                .wait_for_change(Duration::from_millis(50));
        }
    }

    /// The URL of the `Metrics at http://.../metrics` line.
    pub fn metrics_url(&self) -> String {
        let line = self.wait_for_stdout(Duration::from_secs(10), |line| {
            line.starts_with("Metrics at ")
        });
        line.trim_start_matches("Metrics at ").trim().to_owned()
    }

    /// GETs an absolute URL with the same client (e.g. the metrics endpoint).
    pub fn get_absolute(&self, url: &str) -> HttpResponse {
        send(&self.agent, "GET", url, b"")
    }

    pub fn pid(&self) -> u32 {
        self.running.child.id()
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.running.child.try_wait().expect("poll gyre-host") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gyre-host did not exit within 15s of SIGTERM"
            );
            self.running
                .stdout
                .wait_for_change(Duration::from_millis(50));
        }
    }

    /// Kills the process abruptly (SIGKILL) and waits for it, as a crash would.
    pub fn kill(mut self) {
        self.running.kill_and_wait();
    }

    /// Kills the process abruptly (SIGKILL), as a crash would, and keeps this handle so
    /// [`TestHost::restart`] can bring the same application back. Requests fail until then.
    /// (Not a power cut: what the process wrote is still flushed by the kernel.)
    pub fn crash(&mut self) {
        self.running.kill_and_wait();
    }

    /// Starts the host again, after [`TestHost::crash`], with the same command, environment and
    /// state directory, on the same address (clients such as the bridge keep their URL). Kills
    /// the current process first if it is still running.
    pub fn restart(&mut self) {
        self.running.kill_and_wait();
        let addr = self
            .base_url
            .strip_prefix("http://")
            .expect("the Serving line names an http:// address")
            .to_owned();
        let restarted = self.command.clone().listen(&addr).start();
        assert_eq!(
            restarted.base_url, self.base_url,
            "the restarted host serves elsewhere"
        );
        *self = restarted;
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.running.kill_and_wait();
    }
}

/// The spawned process with its output being collected by two reader threads.
struct Running {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
    app: App,
}

impl Running {
    /// After the child has exited: waits for both pipes to reach EOF and returns their text.
    fn finish_output(&mut self) -> (String, String) {
        for reader in self.readers.drain(..) {
            let _ = reader.join(); // a panicking reader only loses output, already partial
        }
        (
            self.stdout.snapshot().join("\n"),
            self.stderr.snapshot().join("\n"),
        )
    }

    fn kill_and_wait(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // it may exit on its own in between; either way it is gone
        }
        let _ = self.child.wait();
    }
}

/// Lines read from a pipe so far, with a condition variable signalled on each new line.
#[derive(Clone, Default)]
struct Lines {
    shared: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Lines {
    fn push(&self, line: String) {
        let (lines, changed) = &*self.shared;
        lines.lock().expect("lines lock").push(line);
        changed.notify_all();
    }

    fn snapshot(&self) -> Vec<String> {
        self.shared.0.lock().expect("lines lock").clone()
    }

    fn find(&self, predicate: impl Fn(&str) -> bool) -> Option<String> {
        self.shared
            .0
            .lock()
            .expect("lines lock")
            .iter()
            .find(|line| predicate(line))
            .cloned()
    }

    /// Blocks until a new line arrives or `at_most` passes (the caller re-checks either way).
    fn wait_for_change(&self, at_most: Duration) {
        let (lines, changed) = &*self.shared;
        let guard = lines.lock().expect("lines lock");
        let _ = changed.wait_timeout(guard, at_most).expect("lines lock");
    }
}

fn collect_lines(pipe: impl Read + Send + 'static, lines: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || read_lines(pipe, &lines))
}

fn read_lines(pipe: impl Read, lines: &Lines) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        lines.push(
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        );
        line.clear();
    }
}

/// A blocking HTTP client that reports 4xx/5xx as responses and ignores proxy settings.
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

fn send(agent: &ureq::Agent, method: &str, url: &str, body: &[u8]) -> HttpResponse {
    send_with_headers(agent, method, url, &[], body)
}

fn send_with_headers(agent: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(body.to_vec()).expect("a valid request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|error| panic!("{method} {url} failed at the transport level: {error}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|error| panic!("{method} {url}: reading the body failed: {error}"));
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A response as the client observed it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON; panics showing status and body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "expected a JSON body ({error}), got {} {:?}",
                self.status, self.body
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1:0 answering every request with 200 and a fixed body,
/// recording each request line. Stops on drop.
pub struct Upstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start(body: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream on 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (requests, stopping, body) = (requests.clone(), stopping.clone(), body.to_owned());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let (requests, body) = (requests.clone(), body.clone());
                        std::thread::spawn(move || answer(stream, &requests, &body));
                    }
                }
            })
        };
        Upstream {
            addr,
            requests,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines received so far, e.g. `GET /path HTTP/1.1`.
    pub fn received(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag; failure means it is gone already.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn answer(mut stream: TcpStream, requests: &Mutex<Vec<String>>, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return; // the wake-up connection from Drop, or a client that gave up
    }
    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut request_body = vec![0; content_length];
    let _ = reader.read_exact(&mut request_body); // the body is not inspected
    requests
        .lock()
        .expect("requests lock")
        .push(request_line.trim_end().to_owned());
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}
