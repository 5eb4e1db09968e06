//! A private `nats-server` with JetStream for the tests of the JetStream backend: started
//! on a free loopback port with its own temporary store directory, killed when dropped,
//! and able to be killed with SIGKILL and restarted on the same port and store.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The server binary, found on `PATH`.
const BINARY: &str = "nats-server";

/// Longest time from spawn to accepting connections. JetStream on an empty store starts
/// in milliseconds; recovering a store after SIGKILL takes longer, and CI machines are
/// busy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nats-server -js`, killed when dropped.
pub struct NatsServer {
    binary: String,
    port: u16,
    /// The JetStream store, kept across restarts.
    store: TempDir,
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
        let store = tempfile::Builder::new()
            .prefix("nats-store-")
            .tempdir()
            .expect("create a temporary store dir");
        let mut server = NatsServer {
            binary: binary.to_string(),
            port: free_port(),
            store,
            child: None,
        };
        server.spawn();
        server
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

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "nats-server not found: install it (e.g. `apt-get install nats-server`); \
                 the JetStream backend tests need it on PATH"
            ),
            Err(e) => panic!("cannot start {}: {e}", self.binary),
        };
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nats-server exited at start with {status} (port {})",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not accept connections within {STARTUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port nobody listens on right now (the OS's choice for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

#[test]
#[should_panic(expected = "nats-server not found: install it")]
fn a_missing_server_binary_fails_with_how_to_install_it() {
    NatsServer::start_binary("nats-server-that-does-not-exist");
}
