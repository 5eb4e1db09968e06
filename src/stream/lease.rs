//! Consumer-group leases: which member reads which shard.
//!
//! Every poll is a heartbeat. Members that have not polled within the lease timeout are
//! dead and their leases lapse. Shards are balanced across live members (each holds
//! `shards / members`, some one more), sticking to current holders so a rebalance moves
//! as few shards as possible. A shard changes hands only once its holder has released it
//! (on its next poll) or its lease has expired, so two members never read one shard at
//! once.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub member: String,
    pub expires_at: u64,
}

/// What a poll changed for the polling member.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Shards the member holds after this poll.
    pub held: Vec<u32>,
    /// Shards it did not hold before: reading resumes after their checkpoint.
    pub acquired: Vec<u32>,
}

/// Serializable so a shared backend can keep the whole table in one record and change it
/// only with revision-checked writes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Leases {
    lease_timeout_ms: u64,
    /// Member -> last poll (unix ms).
    members: BTreeMap<String, u64>,
    shards: Vec<Option<Lease>>,
}

impl Leases {
    pub fn new(shards: u32, lease_timeout_ms: u64) -> Self {
        Self {
            lease_timeout_ms,
            members: BTreeMap::new(),
            shards: vec![None; shards as usize],
        }
    }

    fn live(&self, now: u64) -> Vec<&str> {
        self.members
            .iter()
            .filter(|&(_, &seen)| seen + self.lease_timeout_ms > now)
            .map(|(m, _)| m.as_str())
            .collect()
    }

    fn valid(&self, shard: usize, now: u64) -> Option<&Lease> {
        self.shards[shard].as_ref().filter(|l| l.expires_at > now)
    }

    /// Whether `member` holds a current lease on `shard`.
    pub fn holds(&self, member: &str, shard: u32, now: u64) -> bool {
        self.valid(shard as usize, now)
            .is_some_and(|l| l.member == member)
    }

    /// The balanced owner of every shard, starting from the current valid leases.
    fn desired(&self, now: u64) -> Vec<Option<String>> {
        let live = self.live(now);
        let n = self.shards.len();
        if live.is_empty() {
            return vec![None; n];
        }
        let mut owner: Vec<Option<usize>> = (0..n)
            .map(|s| {
                self.valid(s, now)
                    .and_then(|l| live.iter().position(|m| *m == l.member))
            })
            .collect();
        let mut count = vec![0usize; live.len()];
        for o in owner.iter().flatten() {
            count[*o] += 1;
        }
        // Members holding the most get the spare slots, so fewer shards move.
        let mut order: Vec<usize> = (0..live.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(count[i]), i));
        let mut target = vec![n / live.len(); live.len()];
        for &i in order.iter().take(n % live.len()) {
            target[i] += 1;
        }
        for s in (0..n).rev() {
            if let Some(o) = owner[s]
                && count[o] > target[o]
            {
                count[o] -= 1;
                owner[s] = None;
            }
        }
        for slot in owner.iter_mut() {
            if slot.is_none()
                && let Some(i) = (0..live.len()).find(|&i| count[i] < target[i])
            {
                count[i] += 1;
                *slot = Some(i);
            }
        }
        owner
            .into_iter()
            .map(|o| o.map(|i| live[i].to_string()))
            .collect()
    }

    /// A poll by `member` at `now`: renews it, releases what it should give up and takes
    /// what is free for it.
    pub fn heartbeat(&mut self, member: &str, now: u64) -> Assignment {
        self.members.insert(member.to_string(), now);
        let dead: Vec<String> = self
            .members
            .iter()
            .filter(|&(_, &seen)| seen + self.lease_timeout_ms <= now)
            .map(|(m, _)| m.clone())
            .collect();
        for m in dead {
            self.members.remove(&m);
        }
        let desired = self.desired(now);
        let mut out = Assignment::default();
        let expires_at = now + self.lease_timeout_ms;
        for (s, want) in desired.iter().enumerate() {
            let mine = want.as_deref() == Some(member);
            let current = self.valid(s, now).map(|l| l.member.clone());
            match (mine, current.as_deref()) {
                (true, Some(m)) if m == member => {
                    self.shards[s] = Some(Lease {
                        member: member.to_string(),
                        expires_at,
                    });
                    out.held.push(s as u32);
                }
                (true, None) => {
                    self.shards[s] = Some(Lease {
                        member: member.to_string(),
                        expires_at,
                    });
                    out.held.push(s as u32);
                    out.acquired.push(s as u32);
                }
                // Still held by someone else: wait for them to release it or lapse.
                (true, Some(_)) => {}
                (false, Some(m)) if m == member => self.shards[s] = None,
                (false, _) => {}
            }
        }
        out
    }

    /// The table as storage keeps it (storage does not read it).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serializes")
    }

    /// The table storage kept, or a new one for a group that has none yet (or whose
    /// table was written for another shard count or lease timeout, which a recreated
    /// group may have).
    pub fn decode(
        stored: Option<&[u8]>,
        shards: u32,
        lease_timeout_ms: u64,
    ) -> Result<Self, String> {
        let Some(bytes) = stored else {
            return Ok(Leases::new(shards, lease_timeout_ms));
        };
        let table: Leases =
            serde_json::from_slice(bytes).map_err(|e| format!("lease table: {e}"))?;
        if table.shards.len() != shards as usize || table.lease_timeout_ms != lease_timeout_ms {
            return Ok(Leases::new(shards, lease_timeout_ms));
        }
        Ok(table)
    }

    /// Leases as they stand (for the API's description of a group).
    pub fn snapshot(&self, now: u64) -> Vec<Option<Lease>> {
        (0..self.shards.len())
            .map(|s| self.valid(s, now).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1000;

    #[test]
    fn a_lone_member_takes_every_shard() {
        let mut l = Leases::new(4, T);
        let a = l.heartbeat("a", 0);
        assert_eq!(a.held, [0, 1, 2, 3]);
        assert_eq!(a.acquired, [0, 1, 2, 3]);
        assert!(l.heartbeat("a", 10).acquired.is_empty());
    }

    #[test]
    fn a_second_member_gets_half_once_the_first_releases() {
        let mut l = Leases::new(4, T);
        l.heartbeat("a", 0);
        // b joins: nothing is free yet.
        assert!(l.heartbeat("b", 1).held.is_empty());
        // a polls and gives up its surplus...
        assert_eq!(l.heartbeat("a", 2).held.len(), 2);
        // ...which b then takes.
        let b = l.heartbeat("b", 3);
        assert_eq!(b.held.len(), 2);
        let a = l.heartbeat("a", 4);
        let mut all: Vec<u32> = a.held.iter().chain(&b.held).copied().collect();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3]);
    }

    #[test]
    fn a_dead_members_shards_move_after_the_lease_timeout() {
        let mut l = Leases::new(4, T);
        l.heartbeat("a", 0);
        l.heartbeat("b", 1);
        l.heartbeat("a", 2);
        l.heartbeat("b", 3);
        // a stops polling. Before its lease lapses b cannot take a's shards.
        assert_eq!(l.heartbeat("b", 500).held.len(), 2);
        let b = l.heartbeat("b", 1003);
        assert_eq!(b.held, [0, 1, 2, 3]);
        assert_eq!(b.acquired.len(), 2);
    }

    #[test]
    fn three_members_share_four_shards_two_one_one() {
        let mut l = Leases::new(4, T);
        for t in 0..6 {
            for m in ["a", "b", "c"] {
                l.heartbeat(m, t * 3 + (m.as_bytes()[0] - b'a') as u64);
            }
        }
        let mut sizes: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|m| (0..4).filter(|&s| l.holds(m, s, 20)).count())
            .collect();
        sizes.sort();
        assert_eq!(sizes, [1, 1, 2]);
    }

    #[test]
    fn no_shard_is_ever_held_by_two_members() {
        let mut l = Leases::new(5, T);
        let members = ["a", "b", "c"];
        for t in 0..200u64 {
            let m = members[(t * 7 % 3) as usize];
            // c dies at t=100.
            if m == "c" && t > 100 {
                continue;
            }
            l.heartbeat(m, t * 20);
            for s in 0..5 {
                let holders = members.iter().filter(|m| l.holds(m, s, t * 20)).count();
                assert!(holders <= 1);
            }
        }
        let now = 199 * 20;
        assert!((0..5).all(|s| !l.holds("c", s, now)));
    }
}
