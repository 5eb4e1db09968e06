//! Consumer groups: members share a stream's shards through leases (see `lease`), read
//! them in polls that wait for records, and checkpoint their progress so that a shard
//! that changes hands resumes after its last checkpoint.

use super::Streams;
use super::lease::Lease;
use super::records::MAX_READ_RECORDS;
use crate::backend::StoredRecord;
use crate::deliver::FeedError;
use crate::error::OpError;
use crate::model::{GroupSpec, Kind, StartPosition, validate_name};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Longest a group poll waits for records; kept under the shortest lease timeout's reach
/// by re-polling (which renews the leases) while waiting.
pub const MAX_POLL_WAIT_S: u64 = 20;
/// How often a waiting poll looks again on a backend shared with other routers, whose
/// appends this process is not told about.
const SHARED_RECHECK: Duration = Duration::from_millis(100);

/// Per (stream, group): each shard's reader on this router and the last sequence handed
/// to it. Only read positions: progress that must survive is the backend's checkpoints.
pub(super) type Cursors = HashMap<(String, String), HashMap<u32, (String, u64)>>;

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
    fn value(&self) -> Result<u64, OpError> {
        match self {
            SequenceArg::Number(n) => Ok(*n),
            SequenceArg::Text(s) => s
                .parse()
                .map_err(|_| OpError::Invalid(format!("invalid sequence number {s:?}"))),
        }
    }
}

impl Streams {
    /// Creates or checks a consumer group; `Ok(true)` when it was created.
    pub async fn put_group(
        &self,
        name: &str,
        group: &str,
        spec: GroupSpec,
    ) -> Result<bool, OpError> {
        validate_name(Kind::Group, group).map_err(OpError::Invalid)?;
        let h = self.stream(name)?;
        if let Some(g) = self.backend.find_group(&h, group).await? {
            if g.spec != spec {
                return Err(OpError::Conflict(format!(
                    "consumer group {group:?} exists with other settings; delete the stream's group first"
                )));
            }
            return Ok(false);
        }
        let errors = spec.validate();
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
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
    ) -> Result<Vec<StoredRecord>, OpError> {
        validate_name(Kind::Group, group).map_err(OpError::Invalid)?;
        if req.member.is_empty() || req.member.len() > 256 {
            return Err(OpError::Invalid(
                "member must be 1 to 256 characters".into(),
            ));
        }
        let max = req.max_records.unwrap_or(100);
        if !(1..=MAX_READ_RECORDS).contains(&max) {
            return Err(OpError::Invalid(format!(
                "max_records must be between 1 and {MAX_READ_RECORDS}, got {max}"
            )));
        }
        let wait_s = req.wait_s.unwrap_or(0);
        if wait_s > MAX_POLL_WAIT_S {
            return Err(OpError::Invalid(format!(
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
    ) -> Result<(), OpError> {
        let h = self.stream(name)?;
        if self.backend.find_group(&h, group).await?.is_none() {
            return Err(OpError::NotFound {
                kind: Kind::Group,
                name: format!("{group} of stream {name}"),
            });
        }
        let shard = self.shard(&h, &req.shard_id)?;
        let seq = req.sequence.value()?;
        let (_, end) = self.backend.bounds(&h, shard).await?;
        if seq > end {
            return Err(OpError::Invalid(format!(
                "sequence {seq} is beyond the end of {} (its last sequence is {end})",
                req.shard_id
            )));
        }
        if !self
            .backend
            .checkpoint(&h, group, &req.member, shard, seq)
            .await?
        {
            return Err(OpError::Conflict(format!(
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
    ) -> Result<(GroupSpec, Vec<(Option<Lease>, Option<u64>)>), OpError> {
        let h = self.stream(name)?;
        let Some(g) = self.backend.find_group(&h, group).await? else {
            return Err(OpError::NotFound {
                kind: Kind::Group,
                name: format!("{group} of stream {name}"),
            });
        };
        let leases = self.backend.leases(&h, group).await?;
        let checkpoints = self.backend.checkpoints(&h, group).await?;
        Ok((g.spec, leases.into_iter().zip(checkpoints).collect()))
    }

    /// A stream's groups.
    pub async fn group_names(&self, name: &str) -> Result<Vec<String>, OpError> {
        let h = self.stream(name)?;
        Ok(self.backend.group_names(&h).await?)
    }
}

/// What a function's stream source does through the group semantics here.
#[async_trait::async_trait]
impl crate::deliver::GroupFeed for Streams {
    fn has_stream(&self, stream: &str) -> bool {
        self.stream(stream).is_ok()
    }

    async fn join(&self, stream: &str, group: &str, start: StartPosition) -> Result<(), FeedError> {
        let spec = GroupSpec {
            start_position: start,
            ..GroupSpec::default()
        };
        match self.put_group(stream, group, spec).await {
            // A group that exists keeps its own settings.
            Ok(_) | Err(OpError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn poll(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        max_records: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, FeedError> {
        let req = PollRequest {
            member: member.to_string(),
            max_records: Some(max_records),
            wait_s: Some(wait.as_secs().min(MAX_POLL_WAIT_S)),
        };
        Ok(Streams::poll(self, stream, group, req).await?)
    }

    async fn checkpoint(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<(), FeedError> {
        let req = CheckpointRequest {
            member: member.to_string(),
            shard_id: crate::model::shard_id(shard),
            sequence: SequenceArg::Number(sequence),
        };
        Ok(Streams::checkpoint(self, stream, group, req).await?)
    }

    fn rewind(&self, stream: &str, group: &str, member: &str, shard: u32, after: u64) {
        Streams::rewind(self, stream, group, member, shard, after)
    }
}
