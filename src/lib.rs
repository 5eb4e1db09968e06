//! Switchyard: a local-first event router. Topics take events and fan them out, through
//! SNS filter policies, to SQS-style queues, Kinesis-style streams, webhooks and
//! WebAssembly functions; the same code runs on an embedded store or on NATS JetStream.
//!
//! # An event's way
//!
//! ```text
//!  doors            api/ (HTTP /v1, bodies in wire/)   config (TOML at start)   client/ (CLI)
//!                          |                                 |
//!                          v                                 v
//!  operations       publish/  check -> match -> fan out      control/ (resources,
//!                      |          (filter crate)             other routers' changes)
//!                      | one durable write of every matched delivery
//!                      v
//!  semantics        queue/ (SQS)        stream/ (Kinesis)
//!                      |                   |
//!  storage          backend/  embedded/ (write-ahead log + fjall)  |  jetstream/
//!                      |
//!  delivery         deliver/  webhook and function workers, function sources
//!                      |
//!  sandbox          runtime/  wasmtime components of the `switchyard:handler` world
//! ```
//!
//! A publish is checked against its topic (size, FIFO fields, JSON Schema), matched
//! against the topic's subscriptions, and every delivery it matched (a queue message, a
//! stream record, a webhook or function delivery) is stored in one durable write before
//! the publish is answered. Queue and stream semantics are decided above storage;
//! storage offers verbs. Webhook and function deliveries wait in internal delivery
//! queues, from which `deliver` hands them to the HTTP client or the runtime, retrying per
//! the subscription's delivery policy.
//!
//! # Modules
//!
//! - [`api`], [`wire`]: the HTTP API's handlers and its bodies (the OpenAPI document is
//!   generated from both); [`aws`]: the AWS wire protocols, on the same listener; [`config`]: the config file; [`server`]: a running server;
//!   [`client`]: the typed client and the CLI's client verbs; [`ui`]: the web console.
//! - [`app`]: the operations wired together over one backend, what every door calls.
//! - [`control`]: create, change, list and delete resources; follow other routers.
//! - [`publish`]: the publish pipeline; [`batch`]: batch answers; [`policy_test`]: trying
//!   filter policies.
//! - [`queue`]: SQS semantics; [`stream`]: Kinesis semantics.
//! - [`backend`]: storage verbs over the embedded store or JetStream.
//! - [`deliver`]: delivery workers and function sources; [`runtime`]: the wasmtime sandbox.
//! - [`telemetry`]: every resource's counters and histograms, and their exposition on
//!   `/metrics`.
//! - [`model`]: the resources as plain data, shared by every layer; [`error`]: what an
//!   operation answers instead of a result; [`time`]: timestamps as text; `priority`:
//!   the CPU priority of background threads.
//! - [`filter`] (the `switchyard-filter` crate): SNS filter policies compiled into one
//!   matcher per topic.
pub mod api;
pub mod app;
pub mod aws;
pub mod backend;
pub mod batch;
pub mod client;
pub mod config;
pub mod control;
pub mod deliver;
pub mod error;
pub mod model;
pub mod policy_test;
pub(crate) mod priority;
pub mod publish;
pub mod queue;
pub mod runtime;
pub mod server;
pub mod stream;
pub mod telemetry;
pub mod time;
pub mod ui;
pub mod wire;

pub use switchyard_filter as filter;

/// 32 random bytes in hex, from the OS: webhook signing secrets, subscription
/// confirmation tokens.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex(&bytes)
}

/// Whether `given` equals the secret `expected`, in time that depends on neither: both
/// are hashed first, so not even the secret's length shows in how long a wrong guess
/// takes.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given)
        .as_slice()
        .ct_eq(Sha256::digest(expected).as_slice())
        .into()
}

/// Lowercase hex of `bytes`: content hashes, dedup ids, signing secrets and signatures.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
