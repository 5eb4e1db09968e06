//! The server harness shared by the end-to-end benches (`load`, `streams`, `webhooks`):
//! each starts the real `switchyard` binary on loopback with a fresh temporary data dir and
//! measures it as a user of the HTTP API would.
//!
//! Here are the pieces they have in common: the entry point that skips the bench under
//! `cargo test`, settings from the environment, locating the server binary, starting and
//! stopping the server, reading its RSS and CPU time from `/proc`, the pooled HTTP client
//! and the final table of results.
//!
//! Each bench includes this file with `#[path = "common/mod.rs"] mod common;`; cargo does
//! not build it as a bench of its own because it lives in a subdirectory.

// Not every bench uses every helper.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use switchyard::client::Client;

pub mod pace;

/// Longest the server may take to listen, and then to answer `/healthz`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the bench `name`: `run` on a one-thread runtime, so that the server gets the other
/// core. `cargo test --all-targets` runs benches without `--bench`; then nothing is run, so
/// as not to load the machine.
pub fn main<F>(name: &str, run: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("{name}: skipped (run with `cargo bench --bench {name}`)");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the load generator runtime");
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The setting `name` from the environment (`_` allowed as a digit separator), or `default`
/// when it is unset or does not parse.
pub fn env_var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The server binary to measure: `SWITCHYARD_BIN`, else the one cargo built.
pub fn server_binary() -> PathBuf {
    std::env::var_os("SWITCHYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchyard")))
}

/// A keep-alive pool sized for `connections`, no proxy (loopback only), for a bench to
/// refine before building.
pub fn http_client_builder(connections: usize) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
}

/// A keep-alive pool sized for `connections`, no proxy (loopback only).
pub fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    http_client_builder(connections)
        .build()
        .context("build the HTTP client")
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// One row of the final table.
struct Row {
    what: String,
    result: String,
}

/// The results of a bench: each shown as it is measured, and all in a table at the end.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    pub fn row(&mut self, what: String, result: String) {
        eprintln!("  {what}: {result}");
        self.rows.push(Row { what, result });
    }

    pub fn print(&self, title: &str) {
        let width = self
            .rows
            .iter()
            .map(|row| row.what.len())
            .max()
            .unwrap_or(0);
        println!();
        println!("{title}");
        println!("{:width$}  result", "measurement");
        println!("{}  {}", "-".repeat(width), "-".repeat(40));
        for row in &self.rows {
            println!("{:width$}  {}", row.what, row.result);
        }
    }
}

/// How a bench starts its server.
pub struct Launch {
    /// Prefix of the temporary data dir's name.
    pub data_dir_prefix: &'static str,
    /// `RUST_LOG` for the server unless the environment sets one.
    pub log_level: &'static str,
    /// How to wait for `/healthz`.
    pub health_poll: HealthPoll,
}

/// How to poll `/healthz` while the server starts.
pub enum HealthPoll {
    /// A fixed pause between attempts; [`START_TIMEOUT`] counts from the `listening on`
    /// line.
    Every(Duration),
    /// A pause of 1 ms more after each failed attempt, at most 20 ms, so that a fast start
    /// is timed closely; [`START_TIMEOUT`] counts from the spawn.
    Ramp,
}

/// The server under test: a child process on a fresh temporary data dir, killed on drop.
pub struct Server {
    child: Child,
    pub base_url: String,
    /// From the spawn until `/healthz` answered 200.
    pub started_in: Duration,
    /// When the process was spawned.
    spawned_at: Instant,
    /// Kept so the data dir lives as long as the server (taken by a restart).
    data_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Spawns `binary` with `serve --listen 127.0.0.1:0`, reads the address from its
    /// `listening on ADDR` line and returns once `/healthz`, asked with `health`, answers 200.
    pub async fn start(
        binary: &Path,
        launch: &Launch,
        health: reqwest::Client,
    ) -> anyhow::Result<Server> {
        Server::start_with(binary, launch, health, &[]).await
    }

    /// As [`Server::start`], with further `serve` arguments.
    pub async fn start_with(
        binary: &Path,
        launch: &Launch,
        health: reqwest::Client,
        args: &[std::ffi::OsString],
    ) -> anyhow::Result<Server> {
        let data_dir = tempfile::Builder::new()
            .prefix(launch.data_dir_prefix)
            .tempdir()
            .context("create a data dir")?;
        Server::start_in(binary, launch, health, args, data_dir).await
    }

    /// Kills the server (as a crash would) and starts it again on the same data dir, with
    /// `serve` arguments `args`.
    pub async fn restart(
        mut self,
        binary: &Path,
        launch: &Launch,
        health: reqwest::Client,
        args: &[std::ffi::OsString],
    ) -> anyhow::Result<Server> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data_dir = self.data_dir.take().context("a server has its data dir")?;
        Server::start_in(binary, launch, health, args, data_dir).await
    }

    async fn start_in(
        binary: &Path,
        launch: &Launch,
        health: reqwest::Client,
        args: &[std::ffi::OsString],
        data_dir: tempfile::TempDir,
    ) -> anyhow::Result<Server> {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("SWITCHYARD_TOKEN");
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", launch.log_level);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.trim().strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        let mut server = Server {
            child,
            base_url: String::new(),
            started_in: Duration::ZERO,
            spawned_at: started,
            data_dir: Some(data_dir),
        };
        let address = tokio::time::timeout(START_TIMEOUT, rx)
            .await
            .context("no `listening on` line in time")?
            .context("server exited before listening")?;
        server.base_url = format!("http://{address}");
        let client = Client::with_http(&server.base_url, health)?;
        let healthy_by = match launch.health_poll {
            HealthPoll::Every(_) => Instant::now(),
            HealthPoll::Ramp => started,
        } + START_TIMEOUT;
        let mut attempts = 0_u32;
        while client.healthz().await.is_err() {
            ensure!(
                Instant::now() < healthy_by,
                "server not healthy within {START_TIMEOUT:?}"
            );
            let pause = match launch.health_poll {
                HealthPoll::Every(pause) => pause,
                HealthPoll::Ramp => {
                    attempts += 1;
                    Duration::from_millis(u64::from(attempts.min(20)))
                }
            };
            tokio::time::sleep(pause).await;
        }
        server.started_in = started.elapsed();
        Ok(server)
    }

    /// Waits until `/readyz` answers 200 (every function's component loaded), polling
    /// every millisecond; returns the time from the spawn.
    pub async fn ready_after(&self, within: Duration) -> anyhow::Result<Duration> {
        let http = http_client(1)?;
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + within;
        loop {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(self.spawned_at.elapsed());
            }
            ensure!(
                Instant::now() < deadline,
                "server not ready within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir
            .as_ref()
            .expect("a running server has its data dir")
            .path()
    }

    /// File descriptors the server holds open, from `/proc/PID/fd`.
    pub fn open_files(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .context("read /proc/PID/fd")?
            .count())
    }

    /// Resident set size from `/proc/PID/status`, in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        self.status_mb("VmRSS")
    }

    /// The largest resident set size the process has had so far, in MB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        self.status_mb("VmHWM")
    }

    fn status_mb(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("read /proc/PID/status")?;
        let kib: f64 = status
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| *key == field)
            .and_then(|(_, value)| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{field} missing"))?;
        Ok(kib / 1_024.0)
    }

    /// CPU time the server process has used so far (user + system), from `/proc`.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("read /proc/PID/stat")?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("malformed /proc/PID/stat")?
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .ok()
            .filter(|&hz| hz > 0)
            .unwrap_or(100);
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
