//! Consumer groups: members share a stream's shards through leases (see `lease`), read
//! them in polls that wait for records, and checkpoint their progress so that a shard
//! that changes hands resumes after its last checkpoint.

use super::Streams;
use super::lease::{Assignment, Lease, Leases};
use super::records::MAX_READ_RECORDS;
use crate::backend::{GroupInfo, StorageError, StoredRecord, Stream};
use crate::deliver::FeedError;
use crate::error::OpError;
use crate::model::{GroupSpec, Kind, StartPosition, validate_name};
use crate::wire::{CheckpointRequest, PollRequest, SequenceArg};
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

/// The number a sequence argument names.
fn sequence_value(arg: &SequenceArg) -> Result<u64, OpError> {
    match arg {
        SequenceArg::Number(n) => Ok(*n),
        SequenceArg::Text(s) => s
            .parse()
            .map_err(|_| OpError::Invalid(format!("invalid sequence number {s:?}"))),
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
        let errors = spec.validate();
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Group,
                name: group.into(),
                errors,
            });
        }
        let h = self.stream(name)?;
        if let Some(g) = self.backend.find_group(&h, group).await? {
            if g.spec != spec {
                return Err(OpError::Conflict(format!(
                    "consumer group {group:?} exists with other settings (lease_timeout_s {}, \
                     start_position {}); a group's settings are fixed when it is created",
                    g.spec.lease_timeout_s,
                    g.spec.start_position.as_str()
                )));
            }
            return Ok(false);
        }
        let (_, created) = self.create_group(&h, group, spec).await?;
        Ok(created)
    }

    /// Creates a group with `spec`, unless one exists: a new group reads each shard from
    /// its start, or after the records it holds now (`latest`).
    async fn create_group(
        &self,
        h: &Stream,
        group: &str,
        spec: GroupSpec,
    ) -> Result<(GroupInfo, bool), OpError> {
        let mut start_after = Vec::with_capacity(h.shard_count() as usize);
        for shard in 0..h.shard_count() {
            start_after.push(match spec.start_position {
                StartPosition::TrimHorizon => 0,
                StartPosition::Latest => self.backend.bounds(h, shard).await?.1,
            });
        }
        let info = GroupInfo { spec, start_after };
        Ok(self.backend.create_group(h, group, info).await?)
    }

    /// A group's settings; a group polled before it was put is created with the defaults.
    async fn open_group(&self, h: &Stream, group: &str) -> Result<GroupInfo, OpError> {
        match self.backend.find_group(h, group).await? {
            Some(g) => Ok(g),
            None => Ok(self.create_group(h, group, GroupSpec::default()).await?.0),
        }
    }

    /// A poll by `member` as the group's lease table sees it: renews its leases, releases
    /// what it should give up and takes what is free for it.
    async fn heartbeat(
        &self,
        h: &Stream,
        group: &str,
        g: &GroupInfo,
        member: &str,
    ) -> Result<Assignment, OpError> {
        let (shards, timeout_ms) = (h.shard_count(), g.spec.lease_timeout_s * 1000);
        let (assignment, _version) = self
            .backend
            .update_leases(h, group, |stored| {
                let mut table = Leases::decode(stored, shards, timeout_ms)?;
                let assignment = table.heartbeat(member, self.backend.clock().now_ms());
                Ok((table.encode(), assignment))
            })
            .await?;
        Ok(assignment)
    }

    /// The group's lease table as it stands.
    async fn leases(&self, h: &Stream, group: &str, g: &GroupInfo) -> Result<Leases, OpError> {
        let stored = self.backend.read_leases(h, group).await?;
        Leases::decode(
            stored.as_deref(),
            h.shard_count(),
            g.spec.lease_timeout_s * 1000,
        )
        .map_err(|e| OpError::Storage(StorageError::Corrupt(e)))
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
        self.poll_within(name, group, &req.member, max, Duration::from_secs(wait_s))
            .await
    }

    /// [`Self::poll`] with its request checked, waiting up to `wait`.
    async fn poll_within(
        &self,
        name: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, OpError> {
        let h = self.stream(name)?;
        let g = self.open_group(&h, group).await?;
        // Waiting re-polls at least twice per lease timeout so the member keeps its leases.
        let mut renew = Duration::from_millis(g.spec.lease_timeout_s * 1000 / 2)
            .max(Duration::from_millis(100));
        if self.backend.is_shared() {
            // Appends through other routers are not signalled here.
            renew = renew.min(SHARED_RECHECK);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let key = (name.to_string(), group.to_string());
        let member = &member.to_string();
        loop {
            let arrived = h.arrivals().notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let a = self.heartbeat(&h, group, &g, member).await?;
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
            // one before) resume after their checkpoint. On a shared backend the member may
            // also have polled and checkpointed through another router since it last
            // polled here: what it checkpointed is never handed out again.
            let shared = self.backend.is_shared();
            let checkpoints = if fresh.is_empty() && !shared {
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
                if shared {
                    for (s, (m, at)) in gc.iter_mut() {
                        if let Some(cp) = checkpoints.get(*s as usize).copied().flatten()
                            && m == member
                        {
                            *at = (*at).max(cp);
                        }
                    }
                }
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
        let Some(g) = self.backend.find_group(&h, group).await? else {
            return Err(OpError::NotFound {
                kind: Kind::Group,
                name: format!("{group} of stream {name}"),
            });
        };
        let shard = self.shard(&h, &req.shard_id)?;
        let seq = sequence_value(&req.sequence)?;
        let (_, end) = self.backend.bounds(&h, shard).await?;
        if seq > end {
            return Err(OpError::Invalid(format!(
                "sequence {seq} is beyond the end of {} (its last sequence is {end})",
                req.shard_id
            )));
        }
        // Only the holder checkpoints. Its lease may lapse between this look and the write;
        // the checkpoint then records progress the holder did make, and the new holder,
        // which reads from where it took over, checkpoints after it.
        if !self.leases(&h, group, &g).await?.holds(
            &req.member,
            shard,
            self.backend.clock().now_ms(),
        ) {
            return Err(OpError::Conflict(format!(
                "member {:?} does not hold a lease on {}; poll first, or another member has taken it over",
                req.member, req.shard_id
            )));
        }
        self.backend.put_checkpoint(&h, group, shard, seq).await?;
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
        let leases = self
            .leases(&h, group, &g)
            .await?
            .snapshot(self.backend.clock().now_ms());
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
        let wait = wait.min(Duration::from_secs(MAX_POLL_WAIT_S));
        Ok(self
            .poll_within(
                stream,
                group,
                member,
                max_records.clamp(1, MAX_READ_RECORDS),
                wait,
            )
            .await?)
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
