//! A private `nats-server` with JetStream for the tests of the JetStream backend: started
//! on a free loopback port (below the OS's range for port 0, see [`free_port`]) with its
//! own temporary store directory, killed when dropped, and able to be killed with SIGKILL
//! and restarted on the same port and store. [`NatsCluster`] starts three of them joined
//! in one JetStream cluster by routes, each able to be killed, restarted, paused and
//! resumed on its own.
//!
//! A port that was free when chosen may be taken before the server binds it (tests run in
//! parallel, and each binds loopback ports), and then another process answers on it: the
//! server is started with a name of its own and is ready once its log says so and a
//! connection's greeting carries that name. Had a test's router reached another test's server instead, the two
//! tests would share their queues.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tempfile::TempDir;

/// The server binary, found on `PATH`.
const BINARY: &str = "nats-server";

/// Longest time from spawn to accepting connections. JetStream on an empty store starts
/// in milliseconds; recovering a store after SIGKILL takes longer, and CI machines are
/// busy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Ports tried before a first start gives up: each failure is another process taking
/// the chosen port first.
const PORT_ATTEMPTS: usize = 5;

/// A running `nats-server -js`, killed when dropped.
pub struct NatsServer {
    binary: String,
    /// What the server calls itself in its greeting (`server_name`).
    name: String,
    port: u16,
    /// The JetStream store, kept across restarts.
    store: TempDir,
    /// Further arguments: a cluster node's cluster port and routes.
    extra: Vec<String>,
    /// One message each time the server's log says it learned of a new JetStream
    /// metadata leader (a cluster node only).
    leader_news: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections. Panics, saying how to
    /// install it, when `nats-server` is not on `PATH`: the JetStream tests fail rather
    /// than skip.
    pub fn start() -> Self {
        Self::start_binary(BINARY)
    }

    pub fn start_binary(binary: &str) -> Self {
        Self::start_at(binary, free_port())
    }

    /// Starts the server on `port`, or on another free port if a different process
    /// answers there.
    fn start_at(binary: &str, port: u16) -> Self {
        let mut server = Self::unstarted(binary, port, Vec::new());
        for attempt in 1..=PORT_ATTEMPTS {
            match server.spawn() {
                Ok(()) => return server,
                Err(e) if attempt < PORT_ATTEMPTS => {
                    server.kill9();
                    eprintln!("nats-server: {e}; trying another port");
                    server.port = free_port();
                }
                Err(e) => panic!("{e} ({PORT_ATTEMPTS} ports tried)"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// A server with its own store and name, not yet running.
    fn unstarted(binary: &str, port: u16, extra: Vec<String>) -> Self {
        let (store, name) = named_temp_dir("nats-store-");
        NatsServer {
            binary: binary.to_string(),
            name,
            port,
            store,
            extra,
            leader_news: tokio::sync::Mutex::new(tokio::sync::mpsc::unbounded_channel().1),
            child: None,
        }
    }

    /// What the server calls itself (its `server_name`, which JetStream reports as a
    /// stream's leader or replica).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process runs (it has not been killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `nats://127.0.0.1:PORT`, the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server stops answering and takes part in nothing, as if cut off by a
    /// network partition, until [`NatsServer::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`NatsServer::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the server is running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with the pid of our own child, which has not been reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "signal {signal} to nats-server {pid}");
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn() {
            panic!("{e} on restart");
        }
    }

    /// Starts the server on `self.port` and waits until it is the one answering there.
    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port,
                "-n",
                &self.name,
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "nats-server not found: install it (e.g. `apt-get install nats-server`); \
                 the JetStream backend tests need it on PATH"
            ),
            Err(e) => panic!("cannot start {}: {e}", self.binary),
        };
        let mut child = child;
        let (ready, leader_news) = follow_log(child.stderr.take().expect("stderr is piped"));
        self.leader_news = tokio::sync::Mutex::new(leader_news);
        self.child = Some(child);
        match ready.recv_timeout(STARTUP_TIMEOUT) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "nats-server was not ready within {STARTUP_TIMEOUT:?}"
                ));
            }
            // Its log ended before it was ready: it exited (a port taken, a bad store).
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                return Err(format!(
                    "nats-server exited at start with {status:?} (port {})",
                    self.port
                ));
            }
        }
        match greeting_name(self.port) {
            Some(name) if name == self.name => Ok(()),
            other => Err(format!(
                "port {} answers as {other:?}, not as this test's server",
                self.port
            )),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Nodes of a [`NatsCluster`]: the fewest with which JetStream keeps three replicas and
/// survives the loss of one.
pub const CLUSTER_NODES: usize = 3;

/// Three `nats-server -js` processes joined in one JetStream cluster on loopback, each
/// with its own client port, cluster port and store.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    /// Holds the cluster's name, unique while it exists.
    _name: TempDir,
}

impl NatsCluster {
    /// Starts the nodes and waits until JetStream answers on every one (a meta leader is
    /// elected). Ports taken by another process meanwhile are replaced, all at once since
    /// each node's routes name the others' cluster ports.
    pub async fn start() -> Self {
        let (name_dir, cluster_name) = named_temp_dir("nats-cluster-");
        for attempt in 1..=PORT_ATTEMPTS {
            let ports: Vec<(u16, u16)> = (0..CLUSTER_NODES)
                .map(|_| (free_port(), free_port()))
                .collect();
            let route = |c: u16| format!("nats://127.0.0.1:{c}");
            let mut nodes: Vec<NatsServer> = ports
                .iter()
                .map(|&(port, cport)| {
                    let routes: Vec<String> = ports
                        .iter()
                        .filter(|&&(_, other)| other != cport)
                        .map(|&(_, other)| route(other))
                        .collect();
                    let extra = vec![
                        "--cluster_name".to_string(),
                        cluster_name.clone(),
                        "--cluster".to_string(),
                        route(cport),
                        "--routes".to_string(),
                        routes.join(","),
                    ];
                    NatsServer::unstarted(BINARY, port, extra)
                })
                .collect();
            let started = nodes.iter_mut().try_for_each(|n| n.spawn());
            match started {
                Ok(()) => {
                    let cluster = NatsCluster {
                        nodes,
                        _name: name_dir,
                    };
                    for i in 0..CLUSTER_NODES {
                        cluster.jetstream_ready(i).await;
                    }
                    return cluster;
                }
                Err(e) if attempt < PORT_ATTEMPTS => {
                    eprintln!("nats cluster: {e}; trying other ports");
                }
                Err(e) => panic!("{e} ({PORT_ATTEMPTS} sets of ports tried)"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Every node's URL, comma-separated: what a router is given.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node is called {name:?}"))
    }

    /// Waits until node `i` answers JetStream API requests, which a clustered server does
    /// only once it knows the cluster's metadata leader: asked again each time its log
    /// says it learned of one.
    pub async fn jetstream_ready(&self, i: usize) {
        let node = &self.nodes[i];
        let url = node.url();
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let client = async_nats::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let mut leader_news = node.leader_news.lock().await;
        loop {
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                client.request("$JS.API.INFO", "".into()),
            )
            .await;
            if let Ok(Ok(m)) = answer {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                if v.get("error").is_none() && v.get("type").is_some() {
                    return;
                }
            }
            // A leader already known may take a moment to be followed: ask again after
            // the next news, or after a short while without any.
            let wait = (deadline - tokio::time::Instant::now().min(deadline))
                .min(Duration::from_millis(500));
            let _ = tokio::time::timeout(wait, leader_news.recv()).await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "JetStream on {url} did not become ready within {STARTUP_TIMEOUT:?}"
            );
        }
    }
}

/// A fresh temporary directory and its name, unique on this machine while it exists.
fn named_temp_dir(prefix: &str) -> (TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary dir");
    let name = dir
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a temporary dir has a UTF-8 name")
        .to_string();
    (dir, name)
}

/// Reads the server's log on a thread, to its end so the server never blocks writing it:
/// sends once on the first channel when the server says it is ready (the channel closes
/// without a message if the log ends first), and on the second each time it learns of a
/// new JetStream metadata leader.
fn follow_log(
    log: std::process::ChildStderr,
) -> (mpsc::Receiver<()>, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (ready, ready_rx) = mpsc::channel();
    let (leader, leader_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines() {
            let Ok(line) = line else { break };
            if line.ends_with("Server is ready") {
                let _ = ready.send(());
            }
            if line.contains("Self is new JetStream cluster metadata leader")
                || line.contains("JetStream cluster new metadata leader")
            {
                let _ = leader.send(());
            }
        }
    });
    (ready_rx, leader_rx)
}

/// The `server_name` of the NATS server greeting on `port` (`""` for anything else that
/// answers there), or `None` when nothing accepts a connection yet.
fn greeting_name(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("a timeout above zero is accepted");
    let mut line = String::new();
    if BufReader::new(stream).read_line(&mut line).is_err() {
        return Some(String::new());
    }
    let info = line
        .strip_prefix("INFO ")
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json.trim()).ok());
    Some(
        info.and_then(|i| i["server_name"].as_str().map(str::to_string))
            .unwrap_or_default(),
    )
}

/// A port nobody listens on right now, below the range the OS hands out for port 0:
/// every test's HTTP server binds port 0, and a port from that range, released here,
/// could be handed to one of them (or to a server restarting on it) before this test's
/// server binds it.
fn free_port() -> u16 {
    let os_choice = || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port()
    };
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FROM: u16 = 10_000;
    if low <= FROM + 1_000 {
        return os_choice();
    }
    for _ in 0..1_000 {
        // The random low bits of a UUIDv7.
        let pick = FROM + (uuid::Uuid::now_v7().as_u128() as u64 % u64::from(low - FROM)) as u16;
        if TcpListener::bind(("127.0.0.1", pick)).is_ok() {
            return pick;
        }
    }
    os_choice()
}

#[test]
fn a_port_another_server_answers_on_is_not_taken_for_ours() {
    let first = NatsServer::start();
    let second = NatsServer::start_at(BINARY, first.port);
    assert_ne!(second.port, first.port);
    assert_eq!(greeting_name(second.port), Some(second.name.clone()));
    assert_eq!(greeting_name(first.port), Some(first.name.clone()));
}

#[test]
#[should_panic(expected = "nats-server not found: install it")]
fn a_missing_server_binary_fails_with_how_to_install_it() {
    NatsServer::start_binary("nats-server-that-does-not-exist");
}
