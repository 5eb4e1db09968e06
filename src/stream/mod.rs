//! Kinesis semantics: records appended to the shard their partition key hashes to, read
//! from any position within retention, and consumer groups whose members share the
//! shards through leases and resume from checkpoints.
//!
//! The pure parts stand alone and are tested on their own: `shard` (hashing and shard
//! ranges), `lease` (how a group shares its shards). Storage of records, leases and
//! checkpoints is the backend's; [`Streams`] puts them together: `records` (put and read)
//! and `groups` (polls, checkpoints, read cursors).

mod groups;
pub mod lease;
mod records;
mod shard;

pub use crate::model::{parse_shard_id, shard_id};
pub use groups::MAX_POLL_WAIT_S;
pub use records::{MAX_READ_RECORDS, Record, ShardPage, ShardState};
pub use shard::{hash_key, shard_for_hash, shard_range};

use crate::backend::{Backend, Stream};
use crate::error::OpError;
use crate::model::Kind;
use crate::telemetry::Telemetry;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The streams and their consumer groups, as readers and writers see them.
pub struct Streams {
    backend: Arc<Backend>,
    /// Where each group member reads each shard it holds, on this router.
    cursors: Mutex<groups::Cursors>,
    /// Cancelled at shutdown, so waiting polls answer instead of holding the drain up.
    shutdown: CancellationToken,
    /// Where each stream's puts are counted.
    telemetry: Arc<Telemetry>,
}

impl Streams {
    pub fn new(
        backend: Arc<Backend>,
        shutdown: CancellationToken,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            backend,
            cursors: Mutex::default(),
            shutdown,
            telemetry,
        }
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Result<Stream, OpError> {
        self.backend
            .stream(name)
            .ok_or_else(|| OpError::not_found(Kind::Stream, name))
    }

    /// Names of every stream, sorted.
    pub fn names(&self) -> Vec<String> {
        self.backend.stream_names()
    }
}
