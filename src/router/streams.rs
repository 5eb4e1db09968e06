//! Kinesis semantics over HTTP: put records, read a shard from any position, and consumer
//! groups that share shards through leases and resume from checkpoints.

use super::{Router, RouterError};
use crate::backend::{Delivery, NewRecord, Stored, StoredRecord, Stream};
use crate::model::{FieldError, GroupSpec, Kind, StreamSpec, validate_name};
use crate::stream::group::Lease;
use crate::stream::{self, Position};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::Duration;

/// Most records one shard read or one group poll returns (Kinesis GetRecords: 10,000).
pub const MAX_READ_RECORDS: usize = 10_000;
/// Longest a group poll waits for records; kept under the shortest lease timeout's reach
/// by re-polling (which renews the leases) while waiting.
pub const MAX_POLL_WAIT_S: u64 = 20;
/// How often a waiting poll looks again on a backend shared with other routers, whose
/// appends this process is not told about.
const SHARED_RECHECK: Duration = Duration::from_millis(100);

/// Per (stream, group): each shard's reader on this router and the last sequence handed
/// to it. Only read positions: progress that must survive is the backend's checkpoints.
pub(super) type Cursors = HashMap<(String, String), HashMap<u32, (String, u64)>>;

/// One record of `POST /v1/streams/{stream}/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRecord {
    pub partition_key: String,
    pub data: Box<RawValue>,
    /// Decimal 128-bit hash key that overrides the partition key's hash.
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
}

/// `POST /v1/streams/{stream}/groups/{group}/poll` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    pub member: String,
    #[serde(default)]
    pub max_records: Option<usize>,
    #[serde(default)]
    pub wait_s: Option<u64>,
}

/// `POST /v1/streams/{stream}/groups/{group}/checkpoint` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    pub member: String,
    pub shard_id: String,
    pub sequence: SequenceArg,
}

/// A sequence number written as a JSON string (as Kinesis does) or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SequenceArg {
    Number(u64),
    Text(String),
}

impl SequenceArg {
    fn value(&self) -> Result<u64, RouterError> {
        match self {
            SequenceArg::Number(n) => Ok(*n),
            SequenceArg::Text(s) => s
                .parse()
                .map_err(|_| RouterError::Invalid(format!("invalid sequence number {s:?}"))),
        }
    }
}

/// A page of one shard.
pub struct ShardPage {
    pub records: Vec<StoredRecord>,
    /// Position to read the next page from.
    pub next: Position,
}

impl Router {
    pub fn stream(&self, name: &str) -> Result<Stream, RouterError> {
        self.backend
            .stream(name)
            .ok_or_else(|| RouterError::not_found(Kind::Stream, name))
    }

    /// Creates a stream or updates its retention; `Ok(true)` when it was created.
    pub async fn put_stream(&self, name: &str, spec: StreamSpec) -> Result<bool, RouterError> {
        validate_name(Kind::Stream, name).map_err(RouterError::Invalid)?;
        let existing = self.backend.stream(name);
        if let Some(h) = &existing {
            let old = h.spec();
            if let Some(field) = old.immutable_diff(&spec) {
                return Err(RouterError::Conflict(format!(
                    "stream {name:?} exists with a different {field}; resharding is not supported, delete and recreate the stream"
                )));
            }
            if old == spec {
                return Ok(false);
            }
        }
        let errors = spec.validate();
        if !errors.is_empty() {
            return Err(RouterError::InvalidSpec {
                kind: Kind::Stream,
                name: name.into(),
                errors,
            });
        }
        self.backend.put_stream(name, spec).await?;
        Ok(existing.is_none())
    }

    pub async fn delete_stream(&self, name: &str) -> Result<(), RouterError> {
        if !self.backend.delete_stream(name).await? {
            return Err(RouterError::not_found(Kind::Stream, name));
        }
        Ok(())
    }

    fn shard(&self, h: &Stream, shard_id: &str) -> Result<u32, RouterError> {
        stream::parse_shard_id(shard_id)
            .filter(|&s| s < h.shard_count())
            .ok_or_else(|| RouterError::NotFound {
                kind: Kind::Shard,
                name: format!("{shard_id} of stream {}", h.name()),
            })
    }

    /// Appends records; each lands on the shard its partition key hashes to, and all are
    /// durable when this returns. Returns (shard, sequence) per record.
    pub async fn put_records(
        &self,
        name: &str,
        records: Vec<PutRecord>,
    ) -> Result<Vec<(u32, u64)>, RouterError> {
        let h = self.stream(name)?;
        if records.is_empty() || records.len() > crate::model::MAX_RECORDS_PER_PUT {
            return Err(RouterError::Invalid(format!(
                "a put holds 1 to {} records, got {}",
                crate::model::MAX_RECORDS_PER_PUT,
                records.len()
            )));
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let pk_len = r.partition_key.chars().count();
            if pk_len == 0 || pk_len > crate::model::MAX_PARTITION_KEY_LEN {
                return Err(RouterError::Invalid(format!(
                    "records[{i}].partition_key must be 1 to {} characters",
                    crate::model::MAX_PARTITION_KEY_LEN
                )));
            }
            let size = r.data.get().len() + r.partition_key.len();
            if size > crate::model::MAX_RECORD_BYTES {
                return Err(RouterError::TooLarge {
                    kind: Kind::Stream,
                    name: format!("{name} (records[{i}])"),
                    size,
                    max: crate::model::MAX_RECORD_BYTES,
                });
            }
            let hash = match &r.explicit_hash_key {
                Some(k) => k.parse::<u128>().map_err(|_| {
                    RouterError::Invalid(format!(
                        "records[{i}].explicit_hash_key {k:?} is not a decimal number from 0 to 2^128-1"
                    ))
                })?,
                None => stream::hash_key(&r.partition_key),
            };
            let shard = stream::shard_for_hash(hash, h.shard_count());
            deliveries.push(Delivery::Stream(
                h.clone(),
                shard,
                NewRecord {
                    partition_key: r.partition_key,
                    explicit_hash_key: r.explicit_hash_key.and(Some(hash)),
                    data: r.data.get().as_bytes().to_vec(),
                },
            ));
        }
        let stored = self.backend.store(deliveries).await?;
        Ok(stored
            .into_iter()
            .filter_map(|s| match s {
                Stored::Stream { shard, sequence } => Some((shard, sequence)),
                Stored::Queue(_) => None,
            })
            .collect())
    }

    /// Resolves a position to the first sequence to read, refusing positions past the
    /// shard's end or before its trim horizon rather than answering an empty page.
    async fn start_of(&self, h: &Stream, shard: u32, pos: Position) -> Result<u64, RouterError> {
        let (first, end) = self.backend.bounds(h, shard).await?;
        let sid = stream::shard_id(shard);
        let beyond = |s: u64| {
            RouterError::Invalid(format!(
                "sequence {s} is beyond the end of {sid} (its last sequence is {end})"
            ))
        };
        let expired = |s: u64| {
            RouterError::Expired(format!(
                "sequence {s} of {sid} has passed retention; the oldest available is {first} (read from trim_horizon)"
            ))
        };
        match pos {
            Position::TrimHorizon => Ok(first),
            Position::Latest => Ok(end + 1),
            Position::At(s) => {
                if s == 0 || s > end {
                    Err(beyond(s))
                } else if s < first {
                    Err(expired(s))
                } else {
                    Ok(s)
                }
            }
            Position::After(s) => {
                if s > end {
                    Err(beyond(s))
                } else if s + 1 < first {
                    Err(expired(s))
                } else {
                    Ok(s + 1)
                }
            }
            Position::AtTimestamp(ts) => Ok(self.backend.sequence_at(h, shard, ts).await?),
        }
    }

    /// Reads one page of a shard.
    pub async fn read_shard(
        &self,
        name: &str,
        shard_id: &str,
        from: &str,
        limit: Option<usize>,
    ) -> Result<ShardPage, RouterError> {
        let h = self.stream(name)?;
        let shard = self.shard(&h, shard_id)?;
        let pos = Position::parse(from).map_err(RouterError::Invalid)?;
        let limit = limit.unwrap_or(1000);
        if !(1..=MAX_READ_RECORDS).contains(&limit) {
            return Err(RouterError::Invalid(format!(
                "limit must be between 1 and {MAX_READ_RECORDS}, got {limit}"
            )));
        }
        let start = self.start_of(&h, shard, pos).await?;
        let records = self.backend.read_shard(&h, shard, start, limit).await?;
        let next = match records.last() {
            Some(r) => Position::After(r.sequence),
            None => Position::After(start - 1),
        };
        Ok(ShardPage { records, next })
    }

    /// Creates or checks a consumer group; `Ok(true)` when it was created.
    pub async fn put_group(
        &self,
        name: &str,
        group: &str,
        spec: GroupSpec,
    ) -> Result<bool, RouterError> {
        validate_name(Kind::Group, group).map_err(RouterError::Invalid)?;
        let h = self.stream(name)?;
        if let Some(g) = self.backend.find_group(&h, group).await? {
            if g.spec != spec {
                return Err(RouterError::Conflict(format!(
                    "consumer group {group:?} exists with other settings; delete the stream's group first"
                )));
            }
            return Ok(false);
        }
        let errors = spec.validate();
        if !errors.is_empty() {
            return Err(RouterError::InvalidSpec {
                kind: Kind::Group,
                name: group.into(),
                errors,
            });
        }
        let (_, created) = self.backend.group(&h, group, Some(spec)).await?;
        Ok(created)
    }

    /// A member's poll: renews its leases, rebalances, and returns records from the shards
    /// it holds, waiting up to `wait_s` for some to arrive.
    pub async fn poll(
        &self,
        name: &str,
        group: &str,
        req: PollRequest,
    ) -> Result<Vec<StoredRecord>, RouterError> {
        validate_name(Kind::Group, group).map_err(RouterError::Invalid)?;
        if req.member.is_empty() || req.member.len() > 256 {
            return Err(RouterError::Invalid(
                "member must be 1 to 256 characters".into(),
            ));
        }
        let max = req.max_records.unwrap_or(100);
        if !(1..=MAX_READ_RECORDS).contains(&max) {
            return Err(RouterError::Invalid(format!(
                "max_records must be between 1 and {MAX_READ_RECORDS}, got {max}"
            )));
        }
        let wait_s = req.wait_s.unwrap_or(0);
        if wait_s > MAX_POLL_WAIT_S {
            return Err(RouterError::Invalid(format!(
                "wait_s must be between 0 and {MAX_POLL_WAIT_S}, got {wait_s}"
            )));
        }
        let h = self.stream(name)?;
        let (g, _) = self.backend.group(&h, group, None).await?;
        // Waiting re-polls at least twice per lease timeout so the member keeps its leases.
        let mut renew = Duration::from_millis(g.spec.lease_timeout_s * 1000 / 2)
            .max(Duration::from_millis(100));
        if self.backend.is_shared() {
            // Appends through other routers are not signalled here.
            renew = renew.min(SHARED_RECHECK);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_s);
        let key = (name.to_string(), group.to_string());
        let member = &req.member;
        loop {
            let arrived = h.arrivals().notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let a = self.backend.heartbeat(&h, group, member).await?;
            let fresh: Vec<u32> = {
                let cursors = self.cursors.lock().expect("never poisoned");
                let gc = cursors.get(&key);
                a.held
                    .iter()
                    .copied()
                    .filter(|s| {
                        a.acquired.contains(s)
                            || gc.and_then(|c| c.get(s)).is_none_or(|(m, _)| m != member)
                    })
                    .collect()
            };
            // Shards new to this member (or to this router, when the member polled another
            // one before) resume after their checkpoint.
            let checkpoints = if fresh.is_empty() {
                Vec::new()
            } else {
                self.backend.checkpoints(&h, group).await?
            };
            let plan: Vec<(u32, u64)> = {
                let mut cursors = self.cursors.lock().expect("never poisoned");
                let gc = cursors.entry(key.clone()).or_default();
                for &s in &fresh {
                    let resume = checkpoints
                        .get(s as usize)
                        .copied()
                        .flatten()
                        .unwrap_or(g.start_after[s as usize]);
                    gc.insert(s, (member.clone(), resume));
                }
                gc.retain(|s, (m, _)| m != member || a.held.contains(s));
                a.held
                    .iter()
                    .filter_map(|s| gc.get(s).map(|(_, seq)| (*s, *seq)))
                    .collect()
            };
            let mut out = Vec::new();
            let mut advanced = Vec::new();
            let shards_held = plan.len();
            for (i, (shard, after)) in plan.into_iter().enumerate() {
                if out.len() >= max {
                    break;
                }
                // Share the batch fairly so one busy shard does not starve the others.
                let share = (max - out.len()).div_ceil(shards_held - i);
                // A cursor behind the trim horizon resumes at the oldest record still kept
                // (the backend's read starts there).
                let recs = self.backend.read_shard(&h, shard, after + 1, share).await?;
                if let Some(last) = recs.last() {
                    advanced.push((shard, last.sequence));
                }
                out.extend(recs);
            }
            if !advanced.is_empty() {
                let mut cursors = self.cursors.lock().expect("never poisoned");
                let gc = cursors.entry(key.clone()).or_default();
                for (shard, seq) in advanced {
                    // Only if the member still reads the shard: a rebalance may have moved
                    // it meanwhile, and then the new holder's cursor rules.
                    if let Some((m, at)) = gc.get_mut(&shard)
                        && m == member
                    {
                        *at = seq;
                    }
                }
            }
            let now_i = tokio::time::Instant::now();
            if !out.is_empty()
                || now_i >= deadline
                || h.is_deleted()
                || self.shutdown.is_cancelled()
            {
                return Ok(out);
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline.min(now_i + renew)) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// Records that `member` has processed `shard` up to `sequence`.
    pub async fn checkpoint(
        &self,
        name: &str,
        group: &str,
        req: CheckpointRequest,
    ) -> Result<(), RouterError> {
        let h = self.stream(name)?;
        if self.backend.find_group(&h, group).await?.is_none() {
            return Err(RouterError::NotFound {
                kind: Kind::Group,
                name: format!("{group} of stream {name}"),
            });
        }
        let shard = self.shard(&h, &req.shard_id)?;
        let seq = req.sequence.value()?;
        let (_, end) = self.backend.bounds(&h, shard).await?;
        if seq > end {
            return Err(RouterError::Invalid(format!(
                "sequence {seq} is beyond the end of {} (its last sequence is {end})",
                req.shard_id
            )));
        }
        if !self
            .backend
            .checkpoint(&h, group, &req.member, shard, seq)
            .await?
        {
            return Err(RouterError::Conflict(format!(
                "member {:?} does not hold a lease on {}; poll first, or another member has taken it over",
                req.member, req.shard_id
            )));
        }
        Ok(())
    }

    /// Moves a member's read position on a shard back to just after `after_seq`, so its
    /// next poll reads those records again (a function source retrying from a failure).
    pub fn rewind(&self, name: &str, group: &str, member: &str, shard: u32, after_seq: u64) {
        let mut cursors = self.cursors.lock().expect("never poisoned");
        if let Some((m, at)) = cursors
            .get_mut(&(name.to_string(), group.to_string()))
            .and_then(|gc| gc.get_mut(&shard))
            && m == member
        {
            *at = after_seq;
        }
    }

    /// A group's settings, and every shard's lease holder and checkpoint.
    pub async fn describe_group(
        &self,
        name: &str,
        group: &str,
    ) -> Result<(GroupSpec, Vec<(Option<Lease>, Option<u64>)>), RouterError> {
        let h = self.stream(name)?;
        let Some(g) = self.backend.find_group(&h, group).await? else {
            return Err(RouterError::NotFound {
                kind: Kind::Group,
                name: format!("{group} of stream {name}"),
            });
        };
        let leases = self.backend.leases(&h, group).await?;
        let checkpoints = self.backend.checkpoints(&h, group).await?;
        Ok((g.spec, leases.into_iter().zip(checkpoints).collect()))
    }

    /// A stream's groups.
    pub async fn group_names(&self, name: &str) -> Result<Vec<String>, RouterError> {
        let h = self.stream(name)?;
        Ok(self.backend.group_names(&h).await?)
    }

    /// Checks a stream reference of a subscription.
    pub(super) fn check_stream_endpoint(&self, stream: &str, errors: &mut Vec<FieldError>) {
        if self.backend.stream(stream).is_none() {
            errors.push(FieldError::new(
                "endpoint.stream",
                format!("stream {stream:?} does not exist"),
            ));
        }
    }
}
