//! Streams: records put and read, shards, and consumer groups.

use super::{GroupSpec, StreamSpec};
use crate::model::whole;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// One record of `POST /v1/streams/{stream}/records`: `data` or `data_base64`, not both
/// (the document says so with [`schema::PutRecordForms`]; [`PutRecord::into_bytes`]
/// words the error when a request does not).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRecord {
    /// Picks the shard, by its MD5, as in Kinesis.
    pub partition_key: String,
    /// The record: any JSON value, stored as its text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_raw"
    )]
    pub data: Option<Box<RawValue>>,
    /// The record as bytes of any kind, in base64: for data that is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// A decimal 128-bit hash key that picks the shard instead of the partition key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit_hash_key: Option<String>,
}

impl utoipa::PartialSchema for PutRecord {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::PutRecordForms::schema()
    }
}

impl ToSchema for PutRecord {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <schema::PutRecordForms as ToSchema>::schemas(schemas);
    }
}

/// Types that only describe the wire form of a record to put in the OpenAPI document.
mod schema {
    #![allow(dead_code)]
    use serde::Deserialize;
    use serde_json::Value;
    use utoipa::ToSchema;

    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(super) enum PutRecordForms {
        Json(JsonRecord),
        Bytes(BytesRecord),
    }

    /// A record of JSON.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct JsonRecord {
        /// Picks the shard, by its MD5, as in Kinesis.
        #[schema(min_length = 1, max_length = 256)]
        partition_key: String,
        /// The record: any JSON value, stored as its text.
        data: Value,
        /// A decimal 128-bit hash key that picks the shard instead of the partition key's.
        #[serde(default)]
        #[schema(pattern = "^[0-9]+$")]
        explicit_hash_key: Option<String>,
    }

    /// A record of bytes of any kind.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct BytesRecord {
        /// Picks the shard, by its MD5, as in Kinesis.
        #[schema(min_length = 1, max_length = 256)]
        partition_key: String,
        /// The record's bytes, in base64.
        // Canonical base64, as `topics::BASE64` (an attribute here takes a literal).
        #[schema(
            content_encoding = "base64",
            pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
        )]
        data_base64: String,
        /// A decimal 128-bit hash key that picks the shard instead of the partition key's.
        #[serde(default)]
        #[schema(pattern = "^[0-9]+$")]
        explicit_hash_key: Option<String>,
    }
}

impl PutRecord {
    /// A record placed by its partition key.
    pub fn new(partition_key: impl Into<String>, data: Value) -> Self {
        PutRecord {
            partition_key: partition_key.into(),
            data: Some(serde_json::value::to_raw_value(&data).expect("a JSON value serializes")),
            data_base64: None,
            explicit_hash_key: None,
        }
    }

    /// A record of bytes of any kind, placed by its partition key.
    pub fn bytes(partition_key: impl Into<String>, data: &[u8]) -> Self {
        PutRecord {
            partition_key: partition_key.into(),
            data: None,
            data_base64: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            explicit_hash_key: None,
        }
    }

    /// The bytes to store: `data`'s JSON text, or `data_base64` decoded; exactly one of
    /// them must be given.
    pub fn into_bytes(self) -> Result<Vec<u8>, String> {
        match (self.data, self.data_base64) {
            (Some(data), None) => Ok(String::from(Box::<str>::from(data)).into_bytes()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("data_base64 is not base64: {e}")),
            (Some(_), Some(_)) => Err("give data or data_base64, not both".into()),
            (None, None) => Err("data or data_base64 is required".into()),
        }
    }

    /// Places the record by this hash key instead of its partition key's.
    pub fn explicit_hash_key(mut self, hash_key: u128) -> Self {
        self.explicit_hash_key = Some(hash_key.to_string());
        self
    }
}

/// `POST /v1/streams/{stream}/records` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRecords {
    #[schema(min_items = 1, max_items = 500)]
    pub records: Vec<PutRecord>,
}

/// Where a put record landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlacedRecord {
    pub shard_id: String,
    /// Its sequence number in the shard, as a decimal string (as Kinesis writes them).
    pub sequence: String,
}

/// The answer to a put: each record's place, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutRecordsResult {
    pub records: Vec<PlacedRecord>,
}

/// A stream as `GET /v1/streams/{stream}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    pub name: String,
    #[serde(flatten)]
    pub spec: StreamSpec,
    /// Names of its consumer groups.
    pub groups: Vec<String>,
}

/// `GET /v1/streams`: every stream's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<String>,
}

/// A range of 128-bit hash keys, as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HashKeyRange {
    pub start: String,
    pub end: String,
}

/// The sequence numbers a shard holds: `first` is `last` + 1 when it is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SequenceRange {
    pub first: String,
    pub last: String,
}

/// One shard of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardInfo {
    pub shard_id: String,
    pub hash_key_range: HashKeyRange,
    pub sequence_range: SequenceRange,
}

/// `GET /v1/streams/{stream}/shards`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardList {
    pub shards: Vec<ShardInfo>,
}

/// A stored record as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamRecord {
    pub shard_id: String,
    /// Its sequence number in the shard, as a decimal string.
    pub sequence: String,
    pub partition_key: String,
    /// When it was appended (unix milliseconds).
    pub arrived_at: u64,
    /// The record as put, when its bytes are JSON text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<Value>)]
    pub data: Option<Value>,
    /// The record's bytes (base64), when they are not JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(content_encoding = "base64")]
    pub data_base64: Option<String>,
}

/// A field that is present, `null` included: absent is `None`, `null` is `Some(Null)`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn present_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl StreamRecord {
    /// The record's bytes, as put: `data`'s JSON text, or `data_base64` decoded.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.data, &self.data_base64) {
            (_, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("the server writes base64"),
            (Some(data), None) => data.to_string().into_bytes(),
            (None, None) => Vec::new(),
        }
    }

    /// The sequence number as a number, to compare and to count with.
    pub fn sequence_number(&self) -> u64 {
        self.sequence
            .parse()
            .expect("the server writes sequence numbers in decimal")
    }
}

/// Records read from a shard or polled by a group member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<StreamRecord>,
    /// A shard read: the position to read the next page from (`after:SEQ`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub next: Option<Position>,
}

/// A consumer group as `GET` shows it: its settings, and per shard the member holding it
/// and the last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupInfo {
    pub name: String,
    #[serde(flatten)]
    pub spec: GroupSpec,
    pub shards: Vec<GroupShard>,
}

impl GroupInfo {
    /// The shards `member` holds the lease of.
    pub fn held_by(&self, member: &str) -> Vec<&str> {
        self.shards
            .iter()
            .filter(|shard| shard.member.as_deref() == Some(member))
            .map(|shard| shard.shard_id.as_str())
            .collect()
    }
}

/// One shard of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupShard {
    pub shard_id: String,
    /// The member holding the shard's lease, if any.
    pub member: Option<String>,
    /// The last sequence checkpointed, as a decimal string.
    pub checkpoint: Option<String>,
}

/// `POST /v1/streams/{stream}/groups/{group}/poll` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Who polls: any name the member keeps while it runs.
    #[schema(min_length = 1, max_length = 256)]
    pub member: String,
    /// Most records to return (default 100).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option_usize"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_records: Option<usize>,
    /// How long to wait for records (default 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option_u64"
    )]
    #[schema(maximum = 20)]
    pub wait_s: Option<u64>,
}

impl PollRequest {
    /// A poll by `member` with the server's defaults.
    pub fn new(member: impl Into<String>) -> Self {
        PollRequest {
            member: member.into(),
            max_records: None,
            wait_s: None,
        }
    }

    /// Returns at most `max_records`.
    pub fn max_records(mut self, max_records: usize) -> Self {
        self.max_records = Some(max_records);
        self
    }

    /// Waits up to `wait_s` seconds for a first record.
    pub fn wait_s(mut self, wait_s: u64) -> Self {
        self.wait_s = Some(wait_s);
        self
    }
}

/// `POST /v1/streams/{stream}/groups/{group}/checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    /// The member holding the shard's lease.
    #[schema(min_length = 1, max_length = 256)]
    pub member: String,
    /// `shard-0003` (or `3`).
    #[schema(pattern = "^(shard-)?[0-9]+$")]
    pub shard_id: String,
    /// The last sequence processed.
    pub sequence: SequenceArg,
}

/// A sequence number written as a decimal string (as Kinesis writes them) or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SequenceArg {
    Number(#[serde(deserialize_with = "whole::u64")] u64),
    Text(String),
}

impl utoipa::PartialSchema for SequenceArg {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    // JSON's largest exact integer; sequences stay far below it.
                    .maximum(Some(9_007_199_254_740_991_i64)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]{1,19}$")),
            )
            .into()
    }
}

impl ToSchema for SequenceArg {}

/// The query of `GET /v1/streams/{stream}/shards/{shard}/records`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Where to start: `trim_horizon` (default), `latest`, `at:SEQ`, `after:SEQ` or
    /// `at_timestamp:MS`.
    #[param(
        pattern = "^(trim_horizon|latest|at:[0-9]{1,19}|after:[0-9]{1,19}|at_timestamp:[0-9]{1,15})$"
    )]
    pub from: Option<String>,
    /// Most records to return (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Where a shard read starts: `trim_horizon`, `latest`, `at:SEQ`, `after:SEQ` or
/// `at_timestamp:MS`, the form it has in the `from` query and a page's `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The oldest record retained.
    TrimHorizon,
    /// Past the newest record: only records put from now on.
    Latest,
    /// The record with this sequence number.
    At(u64),
    /// The record after this sequence number.
    After(u64),
    /// The first record appended at or after this time (unix milliseconds).
    AtTimestamp(u64),
}

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_parse_and_print() {
        for s in [
            "trim_horizon",
            "latest",
            "at:5",
            "after:0",
            "at_timestamp:1700000000000",
        ] {
            assert_eq!(s.parse::<Position>().unwrap().to_string(), s);
        }
        assert!(
            "at:x"
                .parse::<Position>()
                .unwrap_err()
                .contains("invalid sequence")
        );
        assert!("oldest".parse::<Position>().is_err());
    }

    #[test]
    fn a_position_is_written_in_its_query_form() {
        assert_eq!(
            serde_json::to_value(Position::After(3)).unwrap(),
            json!("after:3")
        );
        assert_eq!(
            serde_json::from_value::<Position>(json!("at:7")).unwrap(),
            Position::At(7)
        );
        assert!(serde_json::from_value::<Position>(json!("at:")).is_err());
    }
}
