//! Test guest: tries to leave its sandbox and reports what happened.
//!
//! It tries to read a file, list the root directory, open a TCP connection,
//! resolve a host name and read the environment. Each attempt becomes one log
//! line `<what>: denied (<error>)` or `<what>: ALLOWED`. The handler fails
//! (fatally) if anything was allowed, so a test sees an escape at a glance.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use switchyard_guest::{BatchResult, Error, Event, Guest, Level, handle_each, log};

struct Escape;

impl Guest for Escape {
    fn handle(_event: Event) -> Result<(), Error> {
        let attempts = [
            (
                "file",
                attempt(|| {
                    let mut text = String::new();
                    std::fs::File::open("/etc/passwd")?.read_to_string(&mut text)?;
                    Ok(())
                }),
            ),
            ("directory", attempt(|| std::fs::read_dir("/").map(drop))),
            (
                "socket",
                attempt(|| TcpStream::connect("127.0.0.1:80").map(drop)),
            ),
            (
                "dns",
                attempt(|| "localhost:80".to_socket_addrs().map(drop)),
            ),
            (
                "env",
                if std::env::vars().next().is_some() {
                    None
                } else {
                    Some("no variables".to_string())
                },
            ),
        ];
        let mut escaped = Vec::new();
        for (what, outcome) in attempts {
            match outcome {
                Some(error) => log(Level::Info, &format!("{what}: denied ({error})")),
                None => {
                    log(Level::Error, &format!("{what}: ALLOWED"));
                    escaped.push(what);
                }
            }
        }
        if escaped.is_empty() {
            Ok(())
        } else {
            Err(Error::Fatal(format!(
                "escaped the sandbox: {}",
                escaped.join(", ")
            )))
        }
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

/// `None` when the attempt succeeded, else the error it met.
fn attempt(try_it: impl FnOnce() -> std::io::Result<()>) -> Option<String> {
    try_it().err().map(|error| error.to_string())
}

switchyard_guest::export!(Escape);
