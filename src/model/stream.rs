//! Streams (Kinesis-style, sharded by partition key) and their consumer groups.

use super::{FieldError, check_range, check_tags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most shards a stream may have. Each shard is a lock and a notify in memory; 256 is far
/// more than one machine can feed.
pub const MAX_SHARDS: u32 = 256;
/// Kinesis: records up to 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis: partition keys of 1 to 256 characters.
pub const MAX_PARTITION_KEY_LEN: usize = 256;
/// Kinesis PutRecords takes at most 500 records.
pub const MAX_RECORDS_PER_PUT: usize = 500;
/// Retention bounds in hours (Kinesis: 24 h default, up to 365 days).
pub const DEFAULT_RETENTION_HOURS: u64 = 24;
pub const MAX_RETENTION_HOURS: u64 = 365 * 24;

/// `PUT /v1/streams/{stream}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSpec {
    /// Shards, fixed at creation (default 1).
    #[serde(deserialize_with = "super::whole::u32")]
    #[schema(minimum = 1, maximum = 256)]
    pub shards: u32,
    /// How long records are kept, in hours (default 24).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(minimum = 1, maximum = 8760)]
    pub retention_hours: u64,
    /// Retention in seconds; overrides `retention_hours` when set. Finer than Kinesis
    /// allows, so short-lived local streams (and tests of expiry) need not wait an hour.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::whole::option_u64"
    )]
    #[schema(minimum = 1, maximum = 31536000)]
    pub retention_s: Option<u64>,
    /// Tags, as Kinesis's: at most 50, keys of 1 to 128 characters, values of up to 256.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            shards: 1,
            retention_hours: DEFAULT_RETENTION_HOURS,
            retention_s: None,
            tags: BTreeMap::new(),
        }
    }
}

impl StreamSpec {
    /// A stream of `shards` shards with the default retention.
    pub fn new(shards: u32) -> Self {
        StreamSpec {
            shards,
            ..StreamSpec::default()
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_range(
            "shards",
            self.shards as u64,
            1,
            MAX_SHARDS as u64,
            &mut errs,
        );
        check_range(
            "retention_hours",
            self.retention_hours,
            1,
            MAX_RETENTION_HOURS,
            &mut errs,
        );
        if let Some(r) = self.retention_s {
            check_range("retention_s", r, 1, MAX_RETENTION_HOURS * 3600, &mut errs);
        }
        check_tags(&self.tags, &mut errs);
        errs
    }

    /// How long records are kept, in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.retention_s
            .unwrap_or(self.retention_hours * 3600)
            .saturating_mul(1000)
    }

    pub fn immutable_diff(&self, new: &StreamSpec) -> Option<&'static str> {
        // Resharding (split and merge) is not supported: a shard count is fixed.
        (self.shards != new.shards).then_some("shards")
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    #[default]
    TrimHorizon,
    Latest,
}

impl StartPosition {
    /// The name it has in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            StartPosition::TrimHorizon => "trim_horizon",
            StartPosition::Latest => "latest",
        }
    }
}

/// Longest lease a consumer group may configure; past it a dead member holds shards for
/// too long to call it failover.
pub const MAX_LEASE_TIMEOUT_S: u64 = 300;

/// `PUT /v1/streams/{stream}/groups/{group}` body; a group polled before it was put is
/// created with the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSpec {
    /// Where a new group starts reading each shard (default `trim_horizon`).
    pub start_position: StartPosition,
    /// A member that has not polled for this long loses its shards (default 10).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(minimum = 1, maximum = 300)]
    pub lease_timeout_s: u64,
}

impl Default for GroupSpec {
    fn default() -> Self {
        Self {
            start_position: StartPosition::TrimHorizon,
            lease_timeout_s: 10,
        }
    }
}

impl GroupSpec {
    /// A group starting at `start_position`, with the default lease timeout.
    pub fn new(start_position: StartPosition) -> Self {
        GroupSpec {
            start_position,
            ..GroupSpec::default()
        }
    }

    /// Members lose their shards `seconds` after their last poll.
    pub fn lease_timeout_s(mut self, seconds: u64) -> Self {
        self.lease_timeout_s = seconds;
        self
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_range(
            "lease_timeout_s",
            self.lease_timeout_s,
            1,
            MAX_LEASE_TIMEOUT_S,
            &mut errs,
        );
        errs
    }
}

/// A shard's name as the API shows it.
pub fn shard_id(shard: u32) -> String {
    format!("shard-{shard:04}")
}

/// Parses `shard-0003` (or plain `3`) back to an index.
pub fn parse_shard_id(s: &str) -> Option<u32> {
    s.strip_prefix("shard-").unwrap_or(s).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_print_and_parse() {
        assert_eq!(parse_shard_id("shard-0003"), Some(3));
        assert_eq!(parse_shard_id("3"), Some(3));
        assert_eq!(shard_id(12), "shard-0012");
    }
}
