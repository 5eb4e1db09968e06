//! [`StreamConsumer`]: one member of a stream's consumer group, for programs.
//!
//! The loop a consumer runs is poll → process → checkpoint: [`StreamConsumer::next_batch`]
//! polls as the member (which also renews its leases and takes its share of the shards),
//! the program processes the records, and [`StreamConsumer::checkpoint_batch`] records the
//! last processed sequence of each shard. A member that stops polling loses its leases
//! after the group's lease timeout; another member then resumes each of its shards after
//! the last checkpoint, so every record is processed at least once.
//!
//! Losing a lease before a checkpoint is an outcome, not an error
//! ([`CheckpointOutcome::LeaseLost`]): the records past the last checkpoint will be
//! delivered to the shard's new holder, and the program carries on with the shards it
//! still holds. It does not retry failed calls; see [`ClientError::is_retryable`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard::client::ClientError> {
//! use switchyard::client::{Client, StreamConsumer};
//! use switchyard::wire::GroupSpec;
//!
//! let client = Client::new("http://127.0.0.1:8088")?;
//! let consumer = StreamConsumer::new(client, "clicks", "billing", "worker-1");
//! consumer.create_group(&GroupSpec::default()).await?;
//! loop {
//!     let records = consumer.next_batch().await?;
//!     for record in &records {
//!         let data = record.bytes();
//!         println!("{} {} {}", record.shard_id, record.sequence, String::from_utf8_lossy(&data));
//!     }
//!     consumer.checkpoint_batch(&records).await?;
//! }
//! # }
//! ```

use std::collections::BTreeMap;

use reqwest::StatusCode;

use super::{Client, ClientError, MAX_WAIT_S};
use crate::wire::{
    CheckpointRequest, GroupInfo, GroupSpec, PollRequest, SequenceArg, StreamRecord,
};

/// Records per poll unless told otherwise: the server's own default.
const DEFAULT_MAX_RECORDS: usize = 100;

/// Whether a checkpoint was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Stored: the shard's next holder resumes after it.
    Saved,
    /// The member no longer holds the shard's lease (it stopped polling for longer than
    /// the lease timeout, or the group rebalanced); the new holder resumes after the
    /// previous checkpoint and sees these records again.
    LeaseLost,
}

/// What [`StreamConsumer::checkpoint_batch`] stored, per shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCheckpoint {
    /// Shards checkpointed, with the sequence stored.
    pub saved: Vec<(String, u64)>,
    /// Shards whose lease was lost first, with the sequence that was not stored.
    pub lease_lost: Vec<(String, u64)>,
}

impl BatchCheckpoint {
    /// Whether every shard of the batch was checkpointed.
    pub fn all_saved(&self) -> bool {
        self.lease_lost.is_empty()
    }
}

/// One member of a consumer group of one stream. Cheap to clone; clones act as the same
/// member.
#[derive(Debug, Clone)]
pub struct StreamConsumer {
    /// Connection to the server.
    client: Client,
    /// The stream consumed.
    stream: String,
    /// The consumer group this member belongs to.
    group: String,
    /// The poll sent by [`next_batch`](Self::next_batch): member name, batch size, wait.
    poll: PollRequest,
}

impl StreamConsumer {
    /// Member `member` of `group` on `stream`: up to 100 records per batch, long-polling up
    /// to 20 seconds for them.
    pub fn new(
        client: Client,
        stream: impl Into<String>,
        group: impl Into<String>,
        member: impl Into<String>,
    ) -> Self {
        StreamConsumer {
            client,
            stream: stream.into(),
            group: group.into(),
            poll: PollRequest::new(member)
                .max_records(DEFAULT_MAX_RECORDS)
                .wait_s(u64::from(MAX_WAIT_S)),
        }
    }

    /// Returns at most `max_records` per batch (1..=10,000).
    pub fn max_records(mut self, max_records: u32) -> Self {
        self.poll = self.poll.max_records(max_records as usize);
        self
    }

    /// Waits up to `wait_s` seconds (0..=20) for a batch; 0 returns at once.
    pub fn wait_s(mut self, wait_s: u32) -> Self {
        self.poll = self.poll.wait_s(u64::from(wait_s));
        self
    }

    /// This member's name.
    pub fn member(&self) -> &str {
        &self.poll.member
    }

    /// The stream consumed.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the group with `spec` unless it exists; `Ok(true)` when this call created
    /// it. An existing group keeps its settings whatever `spec` says: the start position
    /// only matters to a new group. Without this, the first poll creates the group with
    /// the defaults (from the oldest record, 10 s leases).
    pub async fn create_group(&self, spec: &GroupSpec) -> Result<bool, ClientError> {
        match self.client.get_group(&self.stream, &self.group).await {
            Ok(_) => return Ok(false),
            Err(error) if error.status() == Some(StatusCode::NOT_FOUND) => {}
            Err(error) => return Err(error),
        }
        match self.client.put_group(&self.stream, &self.group, spec).await {
            Ok(()) => Ok(true),
            // Another member created it meanwhile, with other settings.
            Err(error) if error.status() == Some(StatusCode::CONFLICT) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Polls for the next batch from the shards this member holds (renewing its leases).
    /// Empty when nothing arrived within the wait. Call it at least once per lease timeout
    /// to keep the shards.
    pub async fn next_batch(&self) -> Result<Vec<StreamRecord>, ClientError> {
        self.client
            .poll(&self.stream, &self.group, &self.poll)
            .await
    }

    /// As [`next_batch`](Self::next_batch), returning at most `limit` records (for a caller
    /// that wants an exact number: records returned to a member are not returned to it
    /// again, so asking for more than it will process would skip them until failover).
    pub async fn next_batch_up_to(&self, limit: u32) -> Result<Vec<StreamRecord>, ClientError> {
        let most = self.poll.max_records.unwrap_or(DEFAULT_MAX_RECORDS);
        let poll = self
            .poll
            .clone()
            .max_records((limit as usize).clamp(1, most));
        self.client.poll(&self.stream, &self.group, &poll).await
    }

    /// Records that the group has processed `record`'s shard up to and including `record`.
    pub async fn checkpoint(
        &self,
        record: &StreamRecord,
    ) -> Result<CheckpointOutcome, ClientError> {
        self.checkpoint_at(&record.shard_id, record.sequence_number())
            .await
    }

    /// Checkpoints the last record of each shard in `records` (a batch as
    /// [`next_batch`](Self::next_batch) returned it). Call it once the whole batch is
    /// processed.
    pub async fn checkpoint_batch(
        &self,
        records: &[StreamRecord],
    ) -> Result<BatchCheckpoint, ClientError> {
        let mut outcome = BatchCheckpoint::default();
        for (shard_id, sequence) in last_per_shard(records) {
            match self.checkpoint_at(shard_id, sequence).await? {
                CheckpointOutcome::Saved => outcome.saved.push((shard_id.to_owned(), sequence)),
                CheckpointOutcome::LeaseLost => {
                    outcome.lease_lost.push((shard_id.to_owned(), sequence));
                }
            }
        }
        Ok(outcome)
    }

    /// The group's leases and checkpoints as they stand.
    pub async fn describe_group(&self) -> Result<GroupInfo, ClientError> {
        self.client.get_group(&self.stream, &self.group).await
    }

    async fn checkpoint_at(
        &self,
        shard_id: &str,
        sequence: u64,
    ) -> Result<CheckpointOutcome, ClientError> {
        let checkpoint = CheckpointRequest {
            member: self.poll.member.clone(),
            shard_id: shard_id.to_owned(),
            sequence: SequenceArg::Text(sequence.to_string()),
        };
        match self
            .client
            .checkpoint(&self.stream, &self.group, &checkpoint)
            .await
        {
            Ok(()) => Ok(CheckpointOutcome::Saved),
            Err(error) if error.status() == Some(StatusCode::CONFLICT) => {
                Ok(CheckpointOutcome::LeaseLost)
            }
            Err(error) => Err(error),
        }
    }
}

/// The highest sequence of each shard among `records`, by shard id.
pub(crate) fn last_per_shard(records: &[StreamRecord]) -> BTreeMap<&str, u64> {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for record in records {
        let sequence = record.sequence_number();
        let entry = last.entry(&record.shard_id).or_insert(sequence);
        *entry = (*entry).max(sequence);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(shard: &str, sequence: u64) -> StreamRecord {
        StreamRecord {
            shard_id: shard.to_owned(),
            sequence: sequence.to_string(),
            partition_key: "k".to_owned(),
            arrived_at: 0,
            data: Some(json!(null)),
            data_base64: None,
        }
    }

    #[test]
    fn a_batch_checkpoints_the_highest_sequence_of_each_shard() {
        let batch = [
            record("shard-0001", 9),
            record("shard-0000", 3),
            record("shard-0001", 10),
            record("shard-0000", 4),
        ];
        let last = last_per_shard(&batch);
        assert_eq!(
            last.into_iter().collect::<Vec<_>>(),
            [("shard-0000", 4), ("shard-0001", 10)]
        );
        assert!(last_per_shard(&[]).is_empty());
    }

    #[test]
    fn a_consumer_long_polls_by_default() {
        let client = Client::new("http://127.0.0.1:8088").unwrap();
        let consumer = StreamConsumer::new(client, "s", "g", "m").max_records(7);
        assert_eq!(
            consumer.poll,
            PollRequest::new("m")
                .max_records(7)
                .wait_s(u64::from(MAX_WAIT_S))
        );
        assert_eq!(
            (consumer.stream(), consumer.group(), consumer.member()),
            ("s", "g", "m")
        );
    }
}
