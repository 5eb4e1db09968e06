//! Kinesis semantics as pure functions: which shard a partition key lands on, how a read
//! position is written, and how a consumer group shares shards among its members.
//!
//! Storage of records and group state is the backend's; everything here is deterministic
//! and tested on its own.

pub mod group;

use md5::{Digest, Md5};
use std::fmt;

/// The 128-bit hash of a partition key, as Kinesis computes it (MD5, big-endian).
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The shard owning `hash` when the key space is split into `shards` equal contiguous
/// ranges, as a new Kinesis stream is: `floor(hash * shards / 2^128)`.
pub fn shard_for_hash(hash: u128, shards: u32) -> u32 {
    debug_assert!(shards > 0);
    let n = shards as u128;
    // 128x8-bit multiply, high part: (hash * n) >> 128 without a 256-bit type.
    let hi = (hash >> 64) * n;
    let lo = (hash & u64::MAX as u128) * n;
    ((hi + (lo >> 64)) >> 64) as u32
}

/// First and last hash key of a shard's range: the smallest key with
/// `shard_for_hash(key) == shard` is `ceil(shard * 2^128 / shards)`.
pub fn shard_range(shard: u32, shards: u32) -> (u128, u128) {
    let start = |i: u32| -> u128 {
        let n = shards as u128;
        // 2^128 = q * n + r + 1
        let (q, r) = (u128::MAX / n, u128::MAX % n);
        let i = i as u128;
        i * q + (i * (r + 1)).div_ceil(n)
    };
    let end = if shard + 1 == shards {
        u128::MAX
    } else {
        start(shard + 1) - 1
    };
    (start(shard), end)
}

/// A shard's name as the API shows it.
pub fn shard_id(shard: u32) -> String {
    format!("shard-{shard:04}")
}

/// Parses `shard-0003` (or plain `3`) back to an index.
pub fn parse_shard_id(s: &str) -> Option<u32> {
    s.strip_prefix("shard-").unwrap_or(s).parse().ok()
}

/// Where to start reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    TrimHorizon,
    Latest,
    At(u64),
    After(u64),
    AtTimestamp(u64),
}

impl Position {
    pub fn parse(s: &str) -> Result<Self, String> {
        let seq = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("invalid sequence number {v:?} in position {s:?}"))
        };
        match s {
            "trim_horizon" => Ok(Position::TrimHorizon),
            "latest" => Ok(Position::Latest),
            _ => match s.split_once(':') {
                Some(("at", v)) => Ok(Position::At(seq(v)?)),
                Some(("after", v)) => Ok(Position::After(seq(v)?)),
                Some(("at_timestamp", v)) => v.parse().map(Position::AtTimestamp).map_err(|_| {
                    format!("invalid timestamp {v:?} in position {s:?}: unix milliseconds expected")
                }),
                _ => Err(format!(
                    "invalid position {s:?}: use trim_horizon, latest, at:SEQ, after:SEQ or at_timestamp:MS"
                )),
            },
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::TrimHorizon => f.write_str("trim_horizon"),
            Position::Latest => f.write_str("latest"),
            Position::At(s) => write!(f, "at:{s}"),
            Position::After(s) => write!(f, "after:{s}"),
            Position::AtTimestamp(t) => write!(f, "at_timestamp:{t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_hash_space_into_contiguous_ranges() {
        for n in [1, 2, 3, 4, 7, 256] {
            let mut next = 0u128;
            for s in 0..n {
                let (a, b) = shard_range(s, n);
                assert_eq!(a, next);
                assert_eq!(shard_for_hash(a, n), s);
                assert_eq!(shard_for_hash(b, n), s);
                next = b.wrapping_add(1);
            }
            assert_eq!(shard_range(n - 1, n).1, u128::MAX);
        }
    }

    #[test]
    fn partition_keys_hash_as_kinesis_does() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        assert_eq!(shard_for_hash(hash_key(""), 2), 1);
        assert_eq!(
            shard_for_hash(hash_key("a"), 4),
            shard_for_hash(hash_key("a"), 4)
        );
    }

    #[test]
    fn positions_parse_and_print() {
        for s in [
            "trim_horizon",
            "latest",
            "at:5",
            "after:0",
            "at_timestamp:1700000000000",
        ] {
            assert_eq!(Position::parse(s).unwrap().to_string(), s);
        }
        assert!(
            Position::parse("at:x")
                .unwrap_err()
                .contains("invalid sequence")
        );
        assert!(Position::parse("oldest").is_err());
        assert_eq!(parse_shard_id("shard-0003"), Some(3));
        assert_eq!(shard_id(12), "shard-0012");
    }
}
