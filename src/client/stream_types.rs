//! Request and response bodies of the stream API: streams, shards, records, positions and
//! consumer groups. Sequence numbers travel as decimal strings (as Kinesis writes them) and
//! are parsed into [`Sequence`] so callers compare them as numbers, never as text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A record's position within its shard: increasing, never reused, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence(u64);

impl Sequence {
    /// The sequence number `n`.
    pub const fn new(n: u64) -> Self {
        Sequence(n)
    }

    /// The number itself.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for Sequence {
    fn from(n: u64) -> Self {
        Sequence(n)
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Sequence {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse()
            .map(Sequence)
            .map_err(|_| format!("{text:?} is not a sequence number (a decimal integer)"))
    }
}

impl Serialize for Sequence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sequence {
    /// Accepts the decimal string the server writes, and a bare number as well.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(u64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ok(Sequence(n)),
            Repr::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Where a shard read starts: the `from` query parameter, and the `next` of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// The oldest record still retained.
    TrimHorizon,
    /// Just past the newest record: only records put from now on.
    Latest,
    /// The record with this sequence number.
    At(Sequence),
    /// The record after this sequence number.
    After(Sequence),
    /// The first record that arrived at or after this time (unix milliseconds).
    AtTimestamp(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::TrimHorizon => f.write_str("trim_horizon"),
            Position::Latest => f.write_str("latest"),
            Position::At(sequence) => write!(f, "at:{sequence}"),
            Position::After(sequence) => write!(f, "after:{sequence}"),
            Position::AtTimestamp(ms) => write!(f, "at_timestamp:{ms}"),
        }
    }
}

impl FromStr for Position {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "trim_horizon" => return Ok(Position::TrimHorizon),
            "latest" => return Ok(Position::Latest),
            _ => {}
        }
        let parsed = match text.split_once(':') {
            Some(("at", sequence)) => sequence.parse().map(Position::At),
            Some(("after", sequence)) => sequence.parse().map(Position::After),
            Some(("at_timestamp", ms)) => ms
                .parse()
                .map(Position::AtTimestamp)
                .map_err(|_| format!("{ms:?} is not a time in unix milliseconds")),
            _ => Err(String::new()),
        };
        parsed.map_err(|reason| {
            let expected = "expected trim_horizon, latest, at:SEQ, after:SEQ or at_timestamp:MS";
            if reason.is_empty() {
                format!("{text:?}: {expected}")
            } else {
                format!("{text:?}: {reason}; {expected}")
            }
        })
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `PUT /v1/streams/{stream}` body; also what `GET` returns (plus server-added members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSpec {
    /// Number of shards (1..=256); fixed once the stream exists.
    pub shards: u32,
    /// How long records are kept, in hours.
    #[serde(default = "StreamSpec::default_retention_hours")]
    pub retention_hours: u64,
    /// Retention in seconds; overrides `retention_hours` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_s: Option<u64>,
}

impl StreamSpec {
    fn default_retention_hours() -> u64 {
        24
    }

    /// A stream of `shards` shards with the default retention (24 hours).
    pub fn new(shards: u32) -> Self {
        StreamSpec {
            shards,
            retention_hours: Self::default_retention_hours(),
            retention_s: None,
        }
    }

    /// Keeps records for `seconds` instead of whole hours.
    pub fn retention_s(mut self, seconds: u64) -> Self {
        self.retention_s = Some(seconds);
        self
    }
}

impl Default for StreamSpec {
    /// One shard, 24 hours: the server's defaults.
    fn default() -> Self {
        StreamSpec::new(1)
    }
}

/// A stream as `GET /v1/streams/{stream}` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream's name, when the server includes it.
    #[serde(default)]
    pub name: Option<String>,
    /// Its configuration.
    #[serde(flatten)]
    pub spec: StreamSpec,
    /// Its consumer groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One record of `POST /v1/streams/{stream}/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutRecord {
    /// Chooses the shard (by its MD5 hash) and orders records: records with one key keep
    /// their order. 1 to 256 characters.
    pub partition_key: String,
    /// The record: any JSON value.
    pub data: Value,
    /// Decimal 128-bit hash key that chooses the shard instead of the partition key's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit_hash_key: Option<String>,
}

impl PutRecord {
    /// A record placed by its partition key.
    pub fn new(partition_key: impl Into<String>, data: Value) -> Self {
        PutRecord {
            partition_key: partition_key.into(),
            data,
            explicit_hash_key: None,
        }
    }

    /// Places the record by this hash key (decimal, 0..2^128) instead.
    pub fn explicit_hash_key(mut self, hash_key: u128) -> Self {
        self.explicit_hash_key = Some(hash_key.to_string());
        self
    }
}

/// Where a put record landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRecordResult {
    /// Its shard, e.g. `shard-0000`.
    pub shard_id: String,
    /// Its sequence number within the shard.
    pub sequence: Sequence,
}

/// An inclusive range of 128-bit hash keys, written in decimal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashKeyRange {
    /// Lowest hash key of the shard.
    pub start: String,
    /// Highest hash key of the shard.
    pub end: String,
}

/// The sequence numbers a shard holds: `first` is its trim horizon, `last` its newest
/// record (`last` < `first` when it holds none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceRange {
    /// Oldest retained sequence number.
    pub first: Sequence,
    /// Newest sequence number (0 before the first put).
    pub last: Sequence,
}

/// One shard as `GET /v1/streams/{stream}/shards` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Its id, e.g. `shard-0000`.
    pub shard_id: String,
    /// The hash keys it owns.
    pub hash_key_range: HashKeyRange,
    /// The records it holds.
    pub sequence_range: SequenceRange,
}

/// A record as a shard read or a group poll returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Its shard.
    pub shard_id: String,
    /// Its sequence number within the shard.
    pub sequence: Sequence,
    /// The partition key it was put with.
    pub partition_key: String,
    /// When the server stored it, unix milliseconds.
    pub arrived_at: u64,
    /// The record as it was put.
    pub data: Value,
}

/// One page of a shard read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPage {
    /// The records, oldest first; empty at the end of the shard.
    #[serde(default)]
    pub records: Vec<StreamRecord>,
    /// Where the next page starts: after the last record returned.
    pub next: Position,
}

/// Where a new consumer group starts reading the shards it has no checkpoint for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    TrimHorizon,
    /// Only records put after the group was created.
    Latest,
}

/// `PUT /v1/streams/{stream}/groups/{group}` body; the defaults are the server's, which a
/// group polled before it was put gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Where reading starts on shards without a checkpoint.
    #[serde(default)]
    pub start_position: StartPosition,
    /// Seconds after its last poll that a member loses its leases (1..=300).
    #[serde(default = "GroupSpec::default_lease_timeout_s")]
    pub lease_timeout_s: u64,
}

impl GroupSpec {
    fn default_lease_timeout_s() -> u64 {
        10
    }

    /// Starts at `start_position`, default lease timeout (10 s).
    pub fn new(start_position: StartPosition) -> Self {
        GroupSpec {
            start_position,
            lease_timeout_s: Self::default_lease_timeout_s(),
        }
    }

    /// Members lose their leases `seconds` after their last poll.
    pub fn lease_timeout_s(mut self, seconds: u64) -> Self {
        self.lease_timeout_s = seconds;
        self
    }
}

impl Default for GroupSpec {
    fn default() -> Self {
        GroupSpec::new(StartPosition::TrimHorizon)
    }
}

/// A consumer group as `GET /v1/streams/{stream}/groups/{group}` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's name, when the server includes it.
    #[serde(default)]
    pub name: Option<String>,
    /// Its configuration.
    #[serde(flatten)]
    pub spec: GroupSpec,
    /// Every shard of the stream, with its lease holder and checkpoint.
    #[serde(default)]
    pub shards: Vec<GroupShard>,
}

impl GroupInfo {
    /// The shards `member` holds a lease on.
    pub fn held_by(&self, member: &str) -> Vec<&str> {
        self.shards
            .iter()
            .filter(|shard| shard.member.as_deref() == Some(member))
            .map(|shard| shard.shard_id.as_str())
            .collect()
    }
}

/// One shard of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupShard {
    /// The shard.
    pub shard_id: String,
    /// The member holding its lease, if any.
    #[serde(default)]
    pub member: Option<String>,
    /// The last sequence number the group has processed on it.
    #[serde(default)]
    pub checkpoint: Option<Sequence>,
}

/// `POST /v1/streams/{stream}/groups/{group}/poll` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRecords {
    /// Who is polling: the lease holder name, 1 to 256 characters.
    pub member: String,
    /// Most records to return (1..=10,000), shared fairly across the member's shards.
    pub max_records: u32,
    /// Long-poll: seconds to wait for a first record (0..=20). The server keeps the
    /// member's leases alive while it waits.
    pub wait_s: u32,
}

impl PollRecords {
    /// Up to 100 records for `member`, without waiting.
    pub fn new(member: impl Into<String>) -> Self {
        PollRecords {
            member: member.into(),
            max_records: 100,
            wait_s: 0,
        }
    }

    /// Returns at most `max_records`.
    pub fn max_records(mut self, max_records: u32) -> Self {
        self.max_records = max_records;
        self
    }

    /// Waits up to `wait_s` seconds for a first record.
    pub fn wait_s(mut self, wait_s: u32) -> Self {
        self.wait_s = wait_s;
        self
    }
}

/// `POST /v1/streams/{stream}/groups/{group}/checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The member holding the shard's lease.
    pub member: String,
    /// The shard.
    pub shard_id: String,
    /// The last sequence number processed; the group resumes after it.
    pub sequence: Sequence,
}

/// `{"records":[…]}`: the answer to a put or a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Records<T> {
    pub records: Vec<T>,
}

/// `{"shards":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct Shards {
    #[serde(default)]
    pub shards: Vec<ShardInfo>,
}

/// `{"streams":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct StreamNames {
    #[serde(default)]
    pub streams: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_round_trip_through_their_query_form() {
        for (text, position) in [
            ("trim_horizon", Position::TrimHorizon),
            ("latest", Position::Latest),
            ("at:7", Position::At(Sequence::new(7))),
            ("after:12", Position::After(Sequence::new(12))),
            (
                "at_timestamp:1700000000000",
                Position::AtTimestamp(1_700_000_000_000),
            ),
        ] {
            assert_eq!(text.parse::<Position>().unwrap(), position);
            assert_eq!(position.to_string(), text);
        }
    }

    #[test]
    fn malformed_positions_are_refused_with_the_accepted_forms() {
        for text in ["", "start", "at:", "after:x", "at_timestamp:-1", "at:1.5"] {
            let error = text.parse::<Position>().unwrap_err();
            assert!(error.contains("trim_horizon, latest"), "{text}: {error}");
        }
    }

    #[test]
    fn sequences_are_written_as_strings_and_read_from_strings_or_numbers() {
        assert_eq!(serde_json::to_value(Sequence::new(5)).unwrap(), json!("5"));
        assert_eq!(
            serde_json::from_value::<Sequence>(json!("18446744073709551615")).unwrap(),
            Sequence::new(u64::MAX)
        );
        assert_eq!(
            serde_json::from_value::<Sequence>(json!(3)).unwrap(),
            Sequence::new(3)
        );
        assert!(serde_json::from_value::<Sequence>(json!("x")).is_err());
        // Numeric order, not text order.
        assert!(Sequence::new(9) < Sequence::new(10));
    }

    #[test]
    fn records_and_pages_read_the_server_shapes() {
        let page: ShardPage = serde_json::from_value(json!({
            "records": [{
                "shard_id": "shard-0001",
                "sequence": "3",
                "partition_key": "user-1",
                "arrived_at": 1_700_000_000_000_u64,
                "data": {"n": 1}
            }],
            "next": "after:3"
        }))
        .unwrap();
        assert_eq!(page.records[0].sequence, Sequence::new(3));
        assert_eq!(page.records[0].data, json!({"n": 1}));
        assert_eq!(page.next, Position::After(Sequence::new(3)));
    }

    #[test]
    fn group_info_lists_leases_and_checkpoints() {
        let info: GroupInfo = serde_json::from_value(json!({
            "name": "g",
            "start_position": "latest",
            "lease_timeout_s": 5,
            "shards": [
                {"shard_id": "shard-0000", "member": "a", "checkpoint": "4"},
                {"shard_id": "shard-0001", "member": null, "checkpoint": null},
                {"shard_id": "shard-0002", "member": "a", "checkpoint": null}
            ]
        }))
        .unwrap();
        assert_eq!(
            info.spec,
            GroupSpec::new(StartPosition::Latest).lease_timeout_s(5)
        );
        assert_eq!(info.held_by("a"), ["shard-0000", "shard-0002"]);
        assert_eq!(info.shards[0].checkpoint, Some(Sequence::new(4)));
    }

    #[test]
    fn put_record_sends_the_hash_key_only_when_given() {
        assert_eq!(
            serde_json::to_value(PutRecord::new("k", json!(1))).unwrap(),
            json!({"partition_key": "k", "data": 1})
        );
        assert_eq!(
            serde_json::to_value(PutRecord::new("k", json!(1)).explicit_hash_key(42)).unwrap(),
            json!({"partition_key": "k", "data": 1, "explicit_hash_key": "42"})
        );
    }

    #[test]
    fn stream_spec_defaults_match_the_server() {
        assert_eq!(
            serde_json::to_value(StreamSpec::default()).unwrap(),
            json!({"shards": 1, "retention_hours": 24})
        );
        assert_eq!(
            serde_json::to_value(GroupSpec::default()).unwrap(),
            json!({"start_position": "trim_horizon", "lease_timeout_s": 10})
        );
    }
}
