//! Shared helpers: run the real `switchyard` binary on port 0 with a temporary data
//! directory, talk to it through the typed client, and wait for conditions with a deadline
//! instead of sleeping.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use switchyard::client::{Client, ClientError};
use switchyard::wire::{
    Problem, QueueSpec, ReceiveRequest, ReceivedMessage, SubscriptionSpec, TopicSpec,
};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The binary under test, built by cargo for this test target.
const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// Longest time from spawn to the `listening on` line. The server listens before its
/// functions load, and a debug build opening a fresh store on a loaded two-core machine
/// takes well under a second; the margin is for CI.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest time from listening to ready (`/readyz`: every function's component loaded).
/// Compiling components is the one slow part of a start, and the one that the rest of the
/// suite, running beside it on two cores, slows most: the bound is for a saturated
/// machine, and a server that does not get there is reported with what it was doing.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest time a SIGTERM'd server may take to drain and exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a client subcommand may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// First poll interval of [`eventually`]; it doubles up to [`MAX_POLL_INTERVAL`].
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(10);
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How much of the server's log a failing test prints.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// A running server, killed when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`, changing on every restart.
    pub base_url: String,
    /// Client for `base_url`.
    pub client: Client,
    /// Raw HTTP client for requests the typed client cannot express (malformed JSON).
    pub http: reqwest::Client,
    /// The data directory, kept across restarts.
    data_dir: TempDir,
    /// Holds the config file and the server's stderr log.
    scratch: TempDir,
    /// `--config` argument, when the test gave a config.
    config_path: Option<PathBuf>,
    /// The current process; `None` after a kill until the next restart.
    child: Option<Child>,
    /// Further `serve` arguments, kept across restarts.
    extra_args: Vec<String>,
    /// Whether a start waits for `/readyz`.
    wait_ready: bool,
    /// Further environment variables of the server process, kept across restarts.
    extra_env: Vec<(String, String)>,
}

/// Starts the server with an optional config file (TOML text) and waits until it is
/// ready: listening, with every function loaded.
pub async fn spawn_server(config: Option<&str>) -> TestServer {
    spawn_server_with_args(config, &[]).await
}

/// As [`spawn_server`], with further `serve` arguments.
pub async fn spawn_server_with_args(config: Option<&str>, args: &[&str]) -> TestServer {
    Launch::new(config, args).spawn().await
}

/// How a test server starts, for tests that watch a start more closely than
/// [`spawn_server`] does.
pub struct Launch {
    config: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wait_ready: bool,
    shared_cache: bool,
    data_parent: Option<PathBuf>,
}

impl Launch {
    pub fn new(config: Option<&str>, args: &[&str]) -> Launch {
        Launch {
            config: config.map(str::to_owned),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            wait_ready: true,
            shared_cache: true,
            data_parent: None,
        }
    }

    /// Puts the data directory inside `parent` (a filesystem the test made), instead of
    /// the system's temporary directory.
    pub fn data_in(mut self, parent: &Path) -> Launch {
        self.data_parent = Some(parent.to_path_buf());
        self
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Returns as soon as the server listens, without waiting for its functions.
    pub fn listening_only(mut self) -> Launch {
        self.wait_ready = false;
        self
    }

    /// Compiles components afresh in the data directory's own cache, instead of taking
    /// them from the cache the suite's servers share.
    pub fn cold_cache(mut self) -> Launch {
        self.shared_cache = false;
        self
    }

    pub async fn spawn(self) -> TestServer {
        spawn(self).await
    }
}

/// The compiled-component cache every test server shares, so the suite compiles each
/// guest once rather than once per server (entries are keyed by the component and the
/// engine, and written atomically, so servers may share it).
fn shared_compiled_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compiled-components")
}

async fn spawn(launch: Launch) -> TestServer {
    let Launch {
        config,
        mut args,
        env,
        wait_ready,
        shared_cache,
        data_parent,
    } = launch;
    if shared_cache {
        args.push("--compiled-cache".into());
        args.push(shared_compiled_cache().to_string_lossy().into_owned());
    }
    let data_dir = tempfile::Builder::new()
        .prefix("switchyard-data-")
        .tempdir_in(data_parent.unwrap_or_else(std::env::temp_dir))
        .expect("create a temporary data dir");
    let scratch = tempfile::Builder::new()
        .prefix("switchyard-test-")
        .tempdir()
        .expect("create a temporary dir");
    let config_path = config.map(|text| {
        let path = scratch.path().join("switchyard.toml");
        std::fs::write(&path, text).expect("write the config file");
        path
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(switchyard::client::POOL_IDLE_TIMEOUT)
        .build()
        .expect("build an HTTP client");
    let mut server = TestServer {
        base_url: String::new(),
        client: Client::new("http://127.0.0.1:1").expect("placeholder URL is valid"),
        http,
        data_dir,
        scratch,
        config_path,
        child: None,
        extra_args: args,
        wait_ready,
        extra_env: env,
    };
    server.start().await;
    server
}

impl TestServer {
    /// The data directory the server runs on.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// `base_url` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A sample from `/metrics`, named with its labels if it has any; `None` when the
    /// server does not answer. A sample the server does not export fails the test.
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
        Some(value.unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}")))
    }

    /// Kills the server with SIGKILL: no drain, no flush, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if the process was already reaped, which `take` rules out.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to drain and exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let pid = pid_of(&child);
        signal(pid, libc::SIGTERM);
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, rx).await {
            Ok(status) => status
                .expect("waiter thread sends")
                .expect("wait for the server"),
            Err(_) => {
                // The waiter thread still owns the child and reaps it once it dies.
                signal(pid, libc::SIGKILL);
                panic!(
                    "server did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Restarts on the same data dir and config: stops the server gracefully if it is still
    /// running (use [`kill9`](Self::kill9) first for a crash), then starts it again. The
    /// port changes; `base_url` and `client` follow.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop().await;
            assert!(status.success(), "server exited with {status} on SIGTERM");
        }
        self.start().await;
    }

    /// Sends `body` as JSON (none for `Value::Null`) and returns the status and the JSON
    /// answer (`Value::Null` when empty); for resources the typed client has no call for.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request reaches the server");
        let status = res.status();
        let text = res.text().await.expect("read the body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {text}"))
        };
        (status, v)
    }

    /// As [`TestServer::json`], asserting a 2xx answer.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let (status, v) = self.json(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Sends a raw request; for bodies the typed client cannot produce.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> RawResponse {
        let response = self
            .http
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("send a raw request");
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.expect("read the response body");
        RawResponse {
            status,
            content_type,
            body,
        }
    }

    /// Runs a client subcommand of the binary against this server (`--url` added), feeding
    /// `stdin`; panics if it runs past [`CLI_TIMEOUT`].
    pub async fn cli(&self, args: &[&str], stdin: &str) -> Output {
        self.cli_with_env(args, stdin, &[]).await
    }

    /// As [`TestServer::cli`], with further environment variables.
    pub async fn cli_with_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .arg("--url")
            .arg(&self.base_url)
            .env_remove("SWITCHYARD_TOKEN")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the switchyard binary");
        let pid = pid_of(&child);
        let mut input = child.stdin.take().expect("stdin is piped");
        let stdin = stdin.to_owned();
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            // Closing stdin after writing is what ends a `--lines` run.
            let _ = input.write_all(stdin.as_bytes());
            drop(input);
            let _ = tx.send(child.wait_with_output());
        });
        match tokio::time::timeout(CLI_TIMEOUT, rx).await {
            Ok(output) => output
                .expect("waiter thread sends")
                .expect("wait for the CLI"),
            Err(_) => {
                signal(pid, libc::SIGKILL);
                panic!("`switchyard {}` ran past {CLI_TIMEOUT:?}", args.join(" "));
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.scratch.path().join("server.log")
    }

    pub fn log_tail(&self) -> String {
        let Ok(mut file) = File::open(self.log_path()) else {
            return "(no server log)".to_owned();
        };
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)));
        let mut tail = String::new();
        let _ = file.read_to_string(&mut tail);
        format!("--- server log (last {LOG_TAIL_BYTES} bytes) ---\n{tail}")
    }

    async fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let mut command = server_command(self.data_dir.path(), self.config_path.as_deref());
        command.args(&self.extra_args);
        command.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        command.stdout(Stdio::piped()).stderr(log);
        let mut child = command.spawn().expect("spawn the switchyard binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let listening = read_listening_line(stdout);
        let address = match tokio::time::timeout(STARTUP_TIMEOUT, listening).await {
            Ok(Ok(address)) => address,
            Ok(Err(stdout)) => {
                let status = child.wait().expect("wait for the server");
                panic!(
                    "server exited with {status} before listening; stdout: {stdout:?}\n{}",
                    self.log_tail()
                );
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server printed no `listening on` line within {STARTUP_TIMEOUT:?}\n{}",
                    self.log_tail()
                );
            }
        };
        self.base_url = format!("http://{address}");
        self.client = Client::new(&self.base_url).expect("server address is a valid URL");
        self.child = Some(child);
        if self.wait_ready {
            self.wait_until_ready().await;
        }
    }

    /// Waits until `/readyz` answers 200: every function's component has loaded. Panics
    /// after [`READY_TIMEOUT`] with the last answer (which functions are loading, which
    /// failed and why) and the server's log.
    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut interval = FIRST_POLL_INTERVAL;
        loop {
            let last = match self.http.get(self.url("/readyz")).send().await {
                Ok(r) if r.status() == StatusCode::OK => return,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => format!("no answer: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "server not ready within {READY_TIMEOUT:?}; /readyz said {last}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A failed start already put the log in its panic message.
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("{}", self.log_tail());
        }
        self.kill9();
    }
}

/// A response read without the typed client.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type` header, empty if none.
    pub content_type: String,
    /// The body as text.
    pub body: String,
}

impl RawResponse {
    /// Asserts an RFC 9457 problem with `status` and returns it.
    pub fn problem(&self, status: StatusCode) -> Problem {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "content type {:?} is not application/problem+json; body: {}",
            self.content_type,
            self.body
        );
        let problem: Problem = serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("body is not a problem ({error}): {}", self.body));
        assert_eq!(problem.status, status.as_u16(), "status member differs");
        assert!(!problem.title.is_empty(), "problem has no title");
        problem
    }
}

/// The command line of a server on port 0.
fn server_command(data_dir: &Path, config: Option<&Path>) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        // A token in the developer's environment must not turn on auth in tests.
        .env_remove("SWITCHYARD_TOKEN")
        .env_remove("SWITCHYARD_URL")
        // Plain text: the log is read by people in a failing test's output.
        .env("NO_COLOR", "1");
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
}

/// Reads stdout on a thread until `listening on ADDR`, then keeps draining it so the
/// server never blocks on a full pipe. Resolves to the address, or to what stdout held if
/// the server closed it first.
async fn read_listening_line(stdout: std::process::ChildStdout) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = String::new();
        let mut tx = Some(tx);
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(address) = line.trim().strip_prefix("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(Ok(address.trim().to_owned()));
            } else if tx.is_some() {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(Err(seen));
        }
    });
    rx.await
        .unwrap_or_else(|_| Err("stdout reader stopped".to_owned()))
}

fn pid_of(child: &Child) -> libc::pid_t {
    libc::pid_t::try_from(child.id()).expect("pid fits pid_t")
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our own child and
    // not yet reaped (its waiter is still blocked), so it cannot name another process.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}) failed");
}

/// Runs the server with `config` and expects it to refuse to start: returns its exit
/// status and stderr. Panics if it starts listening instead.
pub async fn run_server_expecting_exit(config: &str) -> (ExitStatus, String) {
    run_expecting_exit(Some(config), &[]).await
}

/// As [`run_server_expecting_exit`], with an optional config and further `serve`
/// arguments.
pub async fn run_expecting_exit(config: Option<&str>, args: &[&str]) -> (ExitStatus, String) {
    let data_dir = tempfile::tempdir().expect("create a temporary data dir");
    let scratch = tempfile::tempdir().expect("create a temporary dir");
    let config_path = config.map(|config| {
        let path = scratch.path().join("switchyard.toml");
        std::fs::write(&path, config).expect("write the config file");
        path
    });
    let mut command = server_command(data_dir.path(), config_path.as_deref());
    command.args(args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn the switchyard binary");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    match tokio::time::timeout(STARTUP_TIMEOUT, read_listening_line(stdout)).await {
        Ok(Err(_closed)) => {}
        Ok(Ok(address)) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server started on {address} although its config or arguments are invalid");
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server neither listened nor exited within {STARTUP_TIMEOUT:?}");
        }
    }
    let status = child.wait().expect("wait for the server");
    let stderr = stderr_reader.join().expect("stderr reader does not panic");
    (status, stderr)
}

/// Polls `condition` until it yields `Some`, backing off from 10 ms to 200 ms between
/// polls; panics naming `what` if `within` passes first.
/// Returns once the wall clock has passed `unix_ms`, for tests that need a moment
/// strictly between two events.
pub async fn clock_past(unix_ms: u64) {
    loop {
        let now = switchyard::time::now_ms();
        if now > unix_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(unix_ms + 1 - now)).await;
    }
}

pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut interval = FIRST_POLL_INTERVAL;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(MAX_POLL_INTERVAL);
    }
}

/// Receives (without acknowledging) until `count` messages have arrived; panics after
/// `within`. Messages stay in flight for the queue's visibility timeout, so none is
/// returned twice unless that is shorter than the wait.
pub async fn receive_count(
    client: &Client,
    queue: &str,
    count: usize,
    within: Duration,
) -> Vec<ReceivedMessage> {
    let mut received = Vec::with_capacity(count);
    let deadline = Instant::now() + within;
    while received.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "received {} of {count} messages from {queue} within {within:?}",
            received.len()
        );
        let wait_s = left.as_secs().min(1);
        let batch = client
            .receive(queue, &ReceiveRequest::new(10).wait_s(wait_s))
            .await
            .unwrap_or_else(|error| panic!("receive from {queue}: {error}"));
        received.extend(batch);
    }
    received
}

/// Receives and acknowledges everything in `queue` until two receives in a row (each
/// long-polling one second) come back empty; at most `max` messages, so a queue that
/// keeps filling cannot hold the test forever.
/// Creates `topic` and one queue per subscription, subscribed with the given spec.
pub async fn topic_with_queues(
    client: &Client,
    topic: &str,
    subscriptions: &[(&str, SubscriptionSpec)],
) {
    client
        .put_topic(topic, &TopicSpec::default())
        .await
        .unwrap();
    for (name, spec) in subscriptions {
        client.put_queue(name, &QueueSpec::default()).await.unwrap();
        client.put_subscription(topic, name, spec).await.unwrap();
    }
}

pub async fn drain(client: &Client, queue: &str, max: usize) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 {
        assert!(all.len() <= max, "{queue} held more than {max} messages");
        let batch = client
            .receive(queue, &ReceiveRequest::new(10).wait_s(1))
            .await
            .unwrap_or_else(|error| panic!("receive from {queue}: {error}"));
        if batch.is_empty() {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        let receipts: Vec<String> = batch.iter().map(|m| m.receipt.clone()).collect();
        client
            .ack(queue, &receipts)
            .await
            .unwrap_or_else(|error| panic!("ack on {queue}: {error}"));
        all.extend(batch);
    }
    all
}

/// Asserts that a call was refused with `status` and returns the problem.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, status: StatusCode) -> Problem {
    match result {
        Ok(value) => panic!("expected {status}, got success: {value:?}"),
        Err(ClientError::Api(problem)) => {
            assert_eq!(
                problem.status_code(),
                status,
                "unexpected problem: {problem:?}"
            );
            *problem
        }
        Err(other) => panic!("expected {status}, got {other}"),
    }
}

/// The published message inside a received envelope (panics if it is not one).
pub fn envelope_message(message: &ReceivedMessage) -> Value {
    message
        .notification()
        .unwrap_or_else(|error| panic!("not a notification envelope ({error}): {message:?}"))
        .message
}

/// A program from the test suite's Python environment (`tests/requirements.txt`), which
/// `scripts/test.sh` installs and names in `SWITCHYARD_TEST_VENV`. A test that needs one
/// fails without it: a skipped check would pass for a check that never ran.
pub fn python_tool(name: &str) -> PathBuf {
    venv_tool("", "tests/requirements.txt", name)
}

/// A program of the test environment holding an older boto3, which speaks SQS's query
/// protocol (scripts/test.sh makes it beside the main one).
pub fn query_protocol_python() -> PathBuf {
    venv_tool("-query", "tests/requirements-query-protocol.txt", "python")
}

fn venv_tool(suffix: &str, requirements: &str, name: &str) -> PathBuf {
    let venv = std::env::var_os("SWITCHYARD_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"));
    let mut venv = venv.into_os_string();
    venv.push(suffix);
    let venv = PathBuf::from(venv);
    let tool = venv.join("bin").join(name);
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/test.sh, which installs {requirements} in {}",
        tool.display(),
        venv.display()
    );
    tool
}
