//! Kinesis Data Streams over its JSON 1.1 protocol (`application/x-amz-json-1.1`) and its
//! CBOR protocol (`application/x-amz-cbor-1.1`, what the Java SDKs send by default), both
//! with `X-Amz-Target: Kinesis_20131202.ACTION`: streams, their shards and records,
//! answered by [`crate::stream`] and [`crate::control`].
//!
//! How Kinesis maps onto Switchyard's streams:
//! - a stream's ARN is `arn:aws:kinesis:REGION:000000000000:stream/NAME`; a request may
//!   name a stream by either;
//! - shard `N` is `shardId-00000000000N` here and `shard-000N` in `/v1`; a record's
//!   sequence number is the same decimal number in both;
//! - a record's data is bytes of any kind. `/v1` shows them as `data` when they are JSON
//!   text and as `data_base64` otherwise; a record put through `/v1` with `data` reads
//!   back here as its JSON text;
//! - a shard iterator names the shard, the next sequence to read and when it was issued;
//!   it expires five minutes after that, as Kinesis's do;
//! - the shard count is fixed at creation: resharding calls are refused with
//!   `LimitExceededException`, naming why.
//!
//! The two protocols carry the same members; they differ in how blobs (base64 text, or
//! CBOR byte strings) and timestamps (seconds as a JSON number, or CBOR tag 1 around
//! milliseconds, as the Java SDKs write and read them) are written, which [`Blob`] and
//! [`Timestamp`] follow by asking the serializer whether it is human-readable.

use super::{ACCOUNT_ID, Context, Door};
use crate::backend::Stream;
use crate::error::OpError;
use crate::model::arn::{Arn, stream_arn};
use crate::model::{Kind, MAX_RECORDS_PER_PUT, MAX_SHARDS, StreamSpec};
use crate::stream::{MAX_READ_RECORDS, Record, ShardState};
use crate::wire::Position;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// How long a shard iterator may be used after it was issued, as in Kinesis.
const ITERATOR_LIFETIME_MS: u64 = 300_000;

/// Retention Kinesis allows, in hours.
const MIN_RETENTION_HOURS: u64 = 24;
const MAX_RETENTION_HOURS: u64 = 8760;

/// Shards of a stream created in on-demand mode, as Kinesis starts one.
const ON_DEMAND_SHARDS: u32 = 4;

/// `ListStreams` answers this many names unless asked for fewer, as Kinesis.
const DEFAULT_LIST_STREAMS: usize = 100;

/// Which encoding a request came in, and so its answer goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Json,
    Cbor,
}

impl Protocol {
    pub(super) fn of(headers: &HeaderMap) -> Protocol {
        let cbor = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-amz-cbor"));
        if cbor { Protocol::Cbor } else { Protocol::Json }
    }

    fn content_type(self) -> &'static str {
        match self {
            Protocol::Json => "application/x-amz-json-1.1",
            Protocol::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    /// Reads a request; an empty body is an empty map.
    fn decode<T: DeserializeOwned>(self, body: &[u8]) -> Result<T, KinesisError> {
        let read = match self {
            Protocol::Json if body.is_empty() => serde_json::from_slice(b"{}"),
            Protocol::Json => serde_json::from_slice(body),
            Protocol::Cbor if body.is_empty() => {
                return ciborium::from_reader(&[0xa0u8][..])
                    .map_err(|e| KinesisError::serialization(e.to_string()));
            }
            Protocol::Cbor => {
                return ciborium::from_reader(body)
                    .map_err(|e| KinesisError::serialization(e.to_string()));
            }
        };
        read.map_err(|e| KinesisError::serialization(e.to_string()))
    }

    fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            Protocol::Json => serde_json::to_vec(value).expect("plain data always serializes"),
            Protocol::Cbor => {
                let mut out = Vec::new();
                ciborium::into_writer(value, &mut out).expect("plain data always serializes");
                out
            }
        }
    }
}

/// A Kinesis error: its code (the `__type`), status and message.
#[derive(Debug)]
pub struct KinesisError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

type KinesisResult<T> = Result<T, KinesisError>;

impl KinesisError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        KinesisError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    fn serialization(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "SerializationException", message)
    }

    fn stream_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            format!("Stream {name} under account {ACCOUNT_ID} not found."),
        )
    }

    fn shard_not_found(name: &str, shard: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            format!("Shard {shard} in stream {name} under account {ACCOUNT_ID} does not exist"),
        )
    }

    fn limit(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "LimitExceededException", message)
    }

    /// A member the request must carry.
    fn missing(member: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(member)
        ))
    }

    pub(super) fn signature(e: &super::sigv4::SigError) -> Self {
        Self::new(StatusCode::FORBIDDEN, e.code(), e.to_string())
    }

    pub(super) fn unknown_operation(target: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} names no Kinesis operation this server offers"),
        )
    }

    /// The error as `protocol` sends it: `{"__type", "message"}` in its encoding, the
    /// code also in `x-amzn-ErrorType` (which the Java SDKs read first).
    pub(super) fn into_response(self, protocol: Protocol) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "Kinesis request failed");
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "__type")]
            code: &'a str,
            message: &'a str,
        }
        let body = protocol.encode(&Body {
            code: self.code,
            message: &self.message,
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, protocol.content_type())],
            body,
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        response
    }
}

impl From<OpError> for KinesisError {
    fn from(e: OpError) -> Self {
        let message = e.to_string();
        match e {
            OpError::NotFound {
                kind: Kind::Stream,
                name,
            } => KinesisError::stream_not_found(&name),
            OpError::NotFound { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                message,
            ),
            OpError::Conflict(_) => {
                Self::new(StatusCode::BAD_REQUEST, "ResourceInUseException", message)
            }
            OpError::Storage(s) if s.is_retryable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                s.to_string(),
            ),
            OpError::Storage(s) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                s.to_string(),
            ),
            OpError::InvalidSpec { .. } | OpError::TooLarge { .. } => {
                KinesisError::validation(message)
            }
            _ => KinesisError::invalid_argument(message),
        }
    }
}

/// `StreamName` → `streamName`, as Kinesis names a member in its validation messages.
fn lower_first(member: &str) -> String {
    let mut chars = member.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Bytes: base64 text in JSON, a byte string in CBOR.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blob(Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            STANDARD
                .decode(text)
                .map(Blob)
                .map_err(|e| serde::de::Error::custom(format!("a blob is not base64: {e}")))
        } else {
            serde_bytes::ByteBuf::deserialize(d).map(|b| Blob(b.into_vec()))
        }
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

/// A point in time, held in unix milliseconds: seconds (a JSON number, fractions for the
/// milliseconds) in JSON; CBOR tag 1 around integer milliseconds in CBOR, which is what
/// the Java SDKs write and read (not the seconds the CBOR standard gives tag 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timestamp(u64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let seconds = f64::deserialize(d)?;
            if !(0.0..=1e13).contains(&seconds) {
                return Err(serde::de::Error::custom(format!(
                    "a timestamp of {seconds} seconds since 1970 is out of range"
                )));
            }
            Ok(Timestamp((seconds * 1000.0).round() as u64))
        } else {
            // Typed reads step over the tag.
            u64::deserialize(d).map(Timestamp)
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_f64(self.0 as f64 / 1000.0)
        } else {
            ciborium::tag::Required::<u64, 1>(self.0).serialize(s)
        }
    }
}

/// The stream a request names, by `StreamName` or `StreamARN`.
fn stream_name(name: Option<String>, arn: Option<String>) -> KinesisResult<String> {
    match (name, arn) {
        (Some(name), _) => Ok(name),
        (None, Some(arn)) => Arn::resource_of(&arn, "kinesis")
            .and_then(|r| r.strip_prefix("stream/"))
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .map(str::to_string)
            .ok_or_else(|| {
                KinesisError::invalid_argument(format!(
                    "StreamARN {arn:?} is not a Kinesis stream's ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
                ))
            }),
        (None, None) => Err(KinesisError::invalid_argument(
            "the request names no stream: give StreamName or StreamARN",
        )),
    }
}

/// What a pagination token or a shard iterator carries, made opaque as URL-safe base64.
fn token(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// The text a token carries; `None` when it is not one this server wrote.
fn untoken(token: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()
}

/// `shardId-000000000003`, Kinesis's name for shard 3.
fn kinesis_shard_id(shard: u32) -> String {
    format!("shardId-{shard:012}")
}

/// A shard's index from its Kinesis name (`shardId-000000000003`); as Kinesis, only the
/// number after the first `-` counts, and a bare number is accepted too.
fn parse_kinesis_shard_id(id: &str) -> Option<u32> {
    let number = id.split_once('-').map_or(id, |(_, n)| n);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// Where a reader is: a shard and the next sequence to read, issued at a time so that it
/// expires. Written as URL-safe base64 of `ISSUED/SHARD/NEXT/STREAM`, the stream last so
/// that its name may hold any character.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShardIterator {
    stream: String,
    shard: u32,
    next: u64,
    issued_ms: u64,
}

impl ShardIterator {
    fn encode(&self) -> String {
        token(&format!(
            "{}/{}/{}/{}",
            self.issued_ms, self.shard, self.next, self.stream
        ))
    }

    fn decode(text: &str) -> Option<ShardIterator> {
        let raw = untoken(text)?;
        let mut parts = raw.splitn(4, '/');
        let issued_ms = parts.next()?.parse().ok()?;
        let shard = parts.next()?.parse().ok()?;
        let next = parts.next()?.parse().ok()?;
        let stream = parts.next().filter(|s| !s.is_empty())?.to_string();
        Some(ShardIterator {
            stream,
            shard,
            next,
            issued_ms,
        })
    }

    /// Whether it may still be used at `now_ms`; Kinesis's message when not.
    fn check_fresh(&self, now_ms: u64) -> KinesisResult<()> {
        if now_ms.saturating_sub(self.issued_ms) <= ITERATOR_LIFETIME_MS {
            return Ok(());
        }
        Err(KinesisError::new(
            StatusCode::BAD_REQUEST,
            "ExpiredIteratorException",
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_LIFETIME_MS} milliseconds.",
                crate::time::rfc3339_ms(self.issued_ms),
                crate::time::rfc3339_ms(now_ms)
            ),
        ))
    }
}

/// The JSON or CBOR answer of a successful call.
pub(super) async fn serve(
    s: &Door<'_>,
    cx: &Context,
    protocol: Protocol,
    action: &str,
    body: &[u8],
) -> Response {
    let answer = match action {
        "CreateStream" => create_stream(s, protocol.decode(body)).await,
        "DeleteStream" => delete_stream(s, protocol.decode(body)).await,
        "ListStreams" => list_streams(s, cx, protocol.decode(body)),
        "DescribeStream" => describe_stream(s, cx, protocol.decode(body)).await,
        "DescribeStreamSummary" => describe_stream_summary(s, cx, protocol.decode(body)),
        "ListShards" => list_shards(s, protocol.decode(body)).await,
        "PutRecord" => put_record(s, protocol.decode(body)).await,
        "PutRecords" => put_records(s, protocol.decode(body)).await,
        "GetShardIterator" => get_shard_iterator(s, protocol.decode(body)).await,
        "GetRecords" => get_records(s, protocol.decode(body)).await,
        "IncreaseStreamRetentionPeriod" => {
            change_retention(s, protocol.decode(body), Change::Increase).await
        }
        "DecreaseStreamRetentionPeriod" => {
            change_retention(s, protocol.decode(body), Change::Decrease).await
        }
        "AddTagsToStream" => add_tags(s, protocol.decode(body)).await,
        "RemoveTagsFromStream" => remove_tags(s, protocol.decode(body)).await,
        "ListTagsForStream" => list_tags(s, protocol.decode(body)),
        "UpdateShardCount" | "SplitShard" | "MergeShards" => {
            refuse_resharding(s, action, protocol.decode(body))
        }
        _ => Err(KinesisError::unknown_operation(&format!(
            "Kinesis_20131202.{action}"
        ))),
    };
    match answer {
        Ok(Answer(encode)) => (
            [(header::CONTENT_TYPE, protocol.content_type())],
            encode(protocol),
        )
            .into_response(),
        Err(e) => e.into_response(protocol),
    }
}

/// A call's output, encoded once the protocol is known.
struct Answer(Box<dyn FnOnce(Protocol) -> Vec<u8> + Send>);

impl Answer {
    fn of<T: Serialize + Send + 'static>(value: T) -> KinesisResult<Answer> {
        Ok(Answer(Box::new(move |p| p.encode(&value))))
    }

    /// The empty output of a call that answers nothing.
    fn empty() -> KinesisResult<Answer> {
        #[derive(Serialize)]
        struct Empty {}
        Answer::of(Empty {})
    }
}

/// What every call naming a stream carries. Each input names these members itself
/// rather than through `#[serde(flatten)]`: a flattened struct is read through serde's
/// buffered content, which takes a CBOR tag (a timestamp) for an enum and refuses it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

impl StreamInput {
    fn name(self) -> KinesisResult<String> {
        stream_name(self.stream_name, self.stream_arn)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStreamInput {
    stream_name: Option<String>,
    shard_count: Option<u32>,
    stream_mode_details: Option<StreamModeDetails>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StreamModeDetails {
    stream_mode: String,
}

impl StreamModeDetails {
    fn provisioned() -> Self {
        StreamModeDetails {
            stream_mode: "PROVISIONED".into(),
        }
    }
}

async fn create_stream(
    s: &Door<'_>,
    input: KinesisResult<CreateStreamInput>,
) -> KinesisResult<Answer> {
    let input = input?;
    let name = input
        .stream_name
        .ok_or_else(|| KinesisError::missing("StreamName"))?;
    let mode = input
        .stream_mode_details
        .map_or("PROVISIONED".to_string(), |m| m.stream_mode);
    let shards = match (mode.as_str(), input.shard_count) {
        ("PROVISIONED", Some(n)) => n,
        ("PROVISIONED", None) => {
            return Err(KinesisError::invalid_argument(
                "ShardCount is required for a stream in PROVISIONED mode",
            ));
        }
        ("ON_DEMAND", None) => ON_DEMAND_SHARDS,
        ("ON_DEMAND", Some(_)) => {
            return Err(KinesisError::invalid_argument(
                "ShardCount must not be given for a stream in ON_DEMAND mode",
            ));
        }
        (other, _) => {
            return Err(KinesisError::validation(format!(
                "1 validation error detected: Value '{other}' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [ON_DEMAND, PROVISIONED]"
            )));
        }
    };
    if shards == 0 {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{shards}' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )));
    }
    if shards > MAX_SHARDS {
        return Err(KinesisError::limit(format!(
            "a stream here has at most {MAX_SHARDS} shards; {shards} were asked for"
        )));
    }
    if s.app.streams.stream(&name).is_ok() {
        return Err(KinesisError::new(
            StatusCode::BAD_REQUEST,
            "ResourceInUseException",
            format!("Stream {name} under account {ACCOUNT_ID} already exists."),
        ));
    }
    let spec = StreamSpec {
        tags: input.tags.unwrap_or_default(),
        ..StreamSpec::new(shards)
    };
    s.app.control.put_stream(&name, spec).await?;
    Answer::empty()
}

async fn delete_stream(s: &Door<'_>, input: KinesisResult<StreamInput>) -> KinesisResult<Answer> {
    let name = input?.name()?;
    s.app.control.delete_stream(&name).await?;
    Answer::empty()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsInput {
    limit: Option<usize>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StreamSummary {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_status: &'static str,
    stream_mode_details: StreamModeDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_creation_timestamp: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsOutput {
    stream_names: Vec<String>,
    has_more_streams: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    stream_summaries: Vec<StreamSummary>,
}

fn list_streams(
    s: &Door<'_>,
    cx: &Context,
    input: KinesisResult<ListStreamsInput>,
) -> KinesisResult<Answer> {
    let input = input?;
    let limit = input.limit.unwrap_or(DEFAULT_LIST_STREAMS);
    if !(1..=10_000).contains(&limit) {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
        )));
    }
    let after = match input.next_token {
        Some(next) => Some(untoken(&next).ok_or_else(|| {
            KinesisError::invalid_argument(format!("NextToken {next:?} is not valid"))
        })?),
        None => input.exclusive_start_stream_name,
    };
    let names = s.app.streams.names();
    let rest: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_deref().is_none_or(|a| n.as_str() > a))
        .collect();
    let more = rest.len() > limit;
    let page: Vec<String> = rest.into_iter().take(limit).collect();
    let next_token = more.then(|| page.last().map(|last| token(last))).flatten();
    let stream_summaries = page
        .iter()
        .map(|name| StreamSummary {
            stream_name: name.clone(),
            stream_arn: stream_arn(&cx.region, name),
            stream_status: "ACTIVE",
            stream_mode_details: StreamModeDetails::provisioned(),
            stream_creation_timestamp: s.app.streams.stream(name).ok().and_then(|h| created(&h)),
        })
        .collect();
    Answer::of(ListStreamsOutput {
        stream_names: page,
        has_more_streams: more,
        next_token,
        stream_summaries,
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct HashKeyRange {
    starting_hash_key: String,
    ending_hash_key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SequenceNumberRange {
    starting_sequence_number: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Shard {
    shard_id: String,
    hash_key_range: HashKeyRange,
    sequence_number_range: SequenceNumberRange,
}

impl From<ShardState> for Shard {
    fn from(shard: ShardState) -> Self {
        Shard {
            shard_id: kinesis_shard_id(shard.shard),
            hash_key_range: HashKeyRange {
                starting_hash_key: shard.hash_keys.0.to_string(),
                ending_hash_key: shard.hash_keys.1.to_string(),
            },
            sequence_number_range: SequenceNumberRange {
                starting_sequence_number: shard.first.to_string(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EnhancedMetrics {
    shard_level_metrics: Vec<String>,
}

/// How a stream is described: by `DescribeStream` with its shards, by
/// `DescribeStreamSummary` with their count.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StreamDescription {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_status: &'static str,
    stream_mode_details: StreamModeDetails,
    retention_period_hours: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_creation_timestamp: Option<Timestamp>,
    enhanced_monitoring: Vec<EnhancedMetrics>,
    encryption_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<Vec<Shard>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_more_shards: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_shard_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer_count: Option<u32>,
}

/// When a stream was created, when its storage knows.
fn created(stream: &Stream) -> Option<Timestamp> {
    Some(stream.created_at())
        .filter(|&at| at > 0)
        .map(Timestamp)
}

impl StreamDescription {
    fn of(cx: &Context, stream: &Stream) -> Self {
        let name = stream.name();
        StreamDescription {
            stream_name: name.to_string(),
            stream_arn: stream_arn(&cx.region, name),
            stream_status: "ACTIVE",
            stream_mode_details: StreamModeDetails::provisioned(),
            retention_period_hours: retention_hours(&stream.spec()),
            stream_creation_timestamp: created(stream),
            enhanced_monitoring: vec![EnhancedMetrics {
                shard_level_metrics: Vec::new(),
            }],
            encryption_type: "NONE",
            shards: None,
            has_more_shards: None,
            open_shard_count: None,
            consumer_count: None,
        }
    }
}

/// A stream's retention in whole hours, as Kinesis reports it.
fn retention_hours(spec: &StreamSpec) -> u64 {
    spec.retention_ms() / 3_600_000
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    limit: Option<usize>,
    exclusive_start_shard_id: Option<String>,
}

async fn describe_stream(
    s: &Door<'_>,
    cx: &Context,
    input: KinesisResult<DescribeStreamInput>,
) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let stream = s.app.streams.stream(&name)?;
    let limit = input.limit.unwrap_or(100).clamp(1, 10_000);
    let after = input.exclusive_start_shard_id.as_deref().map(|id| {
        parse_kinesis_shard_id(id)
            .map(i64::from)
            .unwrap_or(i64::MAX)
    });
    let shards: Vec<ShardState> = s
        .app
        .streams
        .shards(&name)
        .await?
        .into_iter()
        .filter(|sh| after.is_none_or(|a| i64::from(sh.shard) > a))
        .collect();
    let more = shards.len() > limit;
    let mut description = StreamDescription::of(cx, &stream);
    description.shards = Some(shards.into_iter().take(limit).map(Shard::from).collect());
    description.has_more_shards = Some(more);
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        stream_description: StreamDescription,
    }
    Answer::of(Output {
        stream_description: description,
    })
}

fn describe_stream_summary(
    s: &Door<'_>,
    cx: &Context,
    input: KinesisResult<StreamInput>,
) -> KinesisResult<Answer> {
    let name = input?.name()?;
    let stream = s.app.streams.stream(&name)?;
    let mut description = StreamDescription::of(cx, &stream);
    description.open_shard_count = Some(stream.shard_count());
    description.consumer_count = Some(0);
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        stream_description_summary: StreamDescription,
    }
    Answer::of(Output {
        stream_description_summary: description,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<usize>,
}

async fn list_shards(s: &Door<'_>, input: KinesisResult<ListShardsInput>) -> KinesisResult<Answer> {
    let input = input?;
    // A token carries the stream and the last shard answered: `SHARD/STREAM`.
    let (name, after) = match input.next_token {
        Some(token) => {
            if input.stream_name.is_some() {
                return Err(KinesisError::invalid_argument(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            let invalid =
                || KinesisError::invalid_argument(format!("NextToken {token:?} is not valid"));
            let raw = untoken(&token).ok_or_else(invalid)?;
            let (shard, stream) = raw.split_once('/').ok_or_else(invalid)?;
            (
                stream.to_string(),
                Some(shard.parse::<u32>().map_err(|_| invalid())?),
            )
        }
        None => {
            let name = stream_name(input.stream_name, input.stream_arn).map_err(|_| {
                KinesisError::invalid_argument("Either NextToken or StreamName should be provided.")
            })?;
            let after = match input.exclusive_start_shard_id {
                Some(id) => Some(parse_kinesis_shard_id(&id).ok_or_else(|| {
                    KinesisError::invalid_argument(format!(
                        "ExclusiveStartShardId {id:?} is not a shard id"
                    ))
                })?),
                None => None,
            };
            (name, after)
        }
    };
    let limit = input.max_results.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 10000"
        )));
    }
    let rest: Vec<ShardState> = s
        .app
        .streams
        .shards(&name)
        .await?
        .into_iter()
        .filter(|sh| after.is_none_or(|a| sh.shard > a))
        .collect();
    // More to come: the token names the last shard of this page.
    let next_token =
        (rest.len() > limit).then(|| token(&format!("{}/{name}", rest[limit - 1].shard)));
    let page: Vec<Shard> = rest.into_iter().take(limit).map(Shard::from).collect();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        shards: Vec<Shard>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
    }
    Answer::of(Output {
        shards: page,
        next_token,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordInput {
    data: Option<Blob>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

impl RecordInput {
    fn into_record(self, at: &str) -> KinesisResult<Record> {
        let data = self
            .data
            .ok_or_else(|| KinesisError::missing(&format!("{at}Data")))?;
        let partition_key = self
            .partition_key
            .ok_or_else(|| KinesisError::missing(&format!("{at}PartitionKey")))?;
        if let Some(key) = &self.explicit_hash_key {
            check_explicit_hash_key(key)?;
        }
        Ok(Record {
            partition_key,
            explicit_hash_key: self.explicit_hash_key,
            data: data.0,
        })
    }
}

/// An explicit hash key is a decimal number from 0 to 2^128 - 1.
fn check_explicit_hash_key(key: &str) -> KinesisResult<()> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{key}' at 'explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})"
        )));
    }
    if key.parse::<u128>().is_err() {
        return Err(KinesisError::invalid_argument(format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {key}"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    data: Option<Blob>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PlacedRecord {
    shard_id: String,
    sequence_number: String,
}

impl PlacedRecord {
    fn of((shard, sequence): (u32, u64)) -> Self {
        PlacedRecord {
            shard_id: kinesis_shard_id(shard),
            sequence_number: sequence.to_string(),
        }
    }
}

async fn put_record(s: &Door<'_>, input: KinesisResult<PutRecordInput>) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let record = RecordInput {
        data: input.data,
        partition_key: input.partition_key,
        explicit_hash_key: input.explicit_hash_key,
    }
    .into_record("")?;
    let placed = s.app.streams.put(&name, vec![record]).await?;
    let placed = placed
        .into_iter()
        .next()
        .expect("a put of one record places one");
    Answer::of(PlacedRecord::of(placed))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    records: Option<Vec<RecordInput>>,
}

async fn put_records(s: &Door<'_>, input: KinesisResult<PutRecordsInput>) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let records = input
        .records
        .ok_or_else(|| KinesisError::missing("Records"))?;
    if records.is_empty() || records.len() > MAX_RECORDS_PER_PUT {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: Member must have length between 1 and {MAX_RECORDS_PER_PUT}",
            records.len()
        )));
    }
    let records = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.into_record(&format!("Records.{}.member.", i + 1)))
        .collect::<KinesisResult<Vec<_>>>()?;
    // A put is stored whole or not at all, so no record fails on its own: the partial
    // failures of Kinesis (throughput exceeded) do not happen here.
    let placed = s.app.streams.put(&name, records).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        failed_record_count: u32,
        records: Vec<PlacedRecord>,
    }
    Answer::of(Output {
        failed_record_count: 0,
        records: placed.into_iter().map(PlacedRecord::of).collect(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetShardIteratorInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_id: Option<String>,
    shard_iterator_type: Option<String>,
    starting_sequence_number: Option<String>,
    timestamp: Option<Timestamp>,
}

async fn get_shard_iterator(
    s: &Door<'_>,
    input: KinesisResult<GetShardIteratorInput>,
) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let shard_id = input
        .shard_id
        .ok_or_else(|| KinesisError::missing("ShardId"))?;
    let kind = input
        .shard_iterator_type
        .ok_or_else(|| KinesisError::missing("ShardIteratorType"))?;
    let stream = s.app.streams.stream(&name)?;
    let shard = parse_kinesis_shard_id(&shard_id)
        .filter(|&n| n < stream.shard_count())
        .ok_or_else(|| KinesisError::shard_not_found(&name, &shard_id))?;
    let sequence = |given: Option<String>| -> KinesisResult<u64> {
        let given = given.ok_or_else(|| {
            KinesisError::invalid_argument(format!(
                "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and no StartingSequenceNumber."
            ))
        })?;
        given.parse().map_err(|_| {
            KinesisError::invalid_argument(format!(
                "StartingSequenceNumber {given} used in GetShardIterator on shard {shard_id} in stream {name} under account {ACCOUNT_ID} is invalid."
            ))
        })
    };
    let no_sequence = |given: &Option<String>| -> KinesisResult<()> {
        match given {
            None => Ok(()),
            Some(_) => Err(KinesisError::invalid_argument(format!(
                "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and also a StartingSequenceNumber."
            ))),
        }
    };
    let now = crate::time::now_ms();
    let position = match kind.as_str() {
        "TRIM_HORIZON" => {
            no_sequence(&input.starting_sequence_number)?;
            Position::TrimHorizon
        }
        "LATEST" => {
            no_sequence(&input.starting_sequence_number)?;
            Position::Latest
        }
        "AT_SEQUENCE_NUMBER" => Position::At(sequence(input.starting_sequence_number)?),
        "AFTER_SEQUENCE_NUMBER" => Position::After(sequence(input.starting_sequence_number)?),
        "AT_TIMESTAMP" => {
            let Timestamp(at) = input.timestamp.ok_or_else(|| {
                KinesisError::invalid_argument(
                    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                )
            })?;
            if at > now {
                return Err(KinesisError::invalid_argument(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {at}, currentTimestampInMillis: {now}"
                )));
            }
            Position::AtTimestamp(at)
        }
        other => {
            return Err(KinesisError::validation(format!(
                "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, LATEST, TRIM_HORIZON]"
            )));
        }
    };
    let next = match s.app.streams.start(&name, shard, position).await {
        Ok(next) => next,
        // A position that has passed retention reads from the oldest record kept.
        Err(OpError::Expired(_)) => {
            s.app
                .streams
                .start(&name, shard, Position::TrimHorizon)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let iterator = ShardIterator {
        stream: name,
        shard,
        next,
        issued_ms: now,
    };
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        shard_iterator: String,
    }
    Answer::of(Output {
        shard_iterator: iterator.encode(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecordsInput {
    shard_iterator: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RecordOutput {
    sequence_number: String,
    approximate_arrival_timestamp: Timestamp,
    data: Blob,
    partition_key: String,
}

async fn get_records(s: &Door<'_>, input: KinesisResult<GetRecordsInput>) -> KinesisResult<Answer> {
    let input = input?;
    let text = input
        .shard_iterator
        .ok_or_else(|| KinesisError::missing("ShardIterator"))?;
    let limit = input.limit.unwrap_or(MAX_READ_RECORDS);
    if !(1..=MAX_READ_RECORDS).contains(&limit) {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {MAX_READ_RECORDS}"
        )));
    }
    let iterator = ShardIterator::decode(&text)
        .ok_or_else(|| KinesisError::invalid_argument("Invalid ShardIterator."))?;
    let now = crate::time::now_ms();
    iterator.check_fresh(now)?;
    let (records, last) = s
        .app
        .streams
        .read_from(&iterator.stream, iterator.shard, iterator.next, limit)
        .await
        .map_err(|e| match e {
            OpError::NotFound { .. } => {
                KinesisError::shard_not_found(&iterator.stream, &kinesis_shard_id(iterator.shard))
            }
            other => other.into(),
        })?;
    let next = records.last().map_or(iterator.next, |r| r.sequence + 1);
    let millis_behind_latest = match records.last() {
        Some(r) if r.sequence < last => now.saturating_sub(r.arrived_at),
        _ => 0,
    };
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        records: Vec<RecordOutput>,
        next_shard_iterator: String,
        millis_behind_latest: u64,
    }
    Answer::of(Output {
        records: records
            .into_iter()
            .map(|r| RecordOutput {
                sequence_number: r.sequence.to_string(),
                approximate_arrival_timestamp: Timestamp(r.arrived_at),
                data: Blob(r.data),
                partition_key: r.partition_key,
            })
            .collect(),
        next_shard_iterator: ShardIterator {
            next,
            issued_ms: now,
            ..iterator
        }
        .encode(),
        millis_behind_latest,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    retention_period_hours: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Increase,
    Decrease,
}

async fn change_retention(
    s: &Door<'_>,
    input: KinesisResult<RetentionInput>,
    change: Change,
) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let hours = input
        .retention_period_hours
        .ok_or_else(|| KinesisError::missing("RetentionPeriodHours"))?;
    let spec = s.app.streams.stream(&name)?.spec();
    if hours < MIN_RETENTION_HOURS {
        return Err(KinesisError::invalid_argument(format!(
            "Minimum allowed retention period is {MIN_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
        )));
    }
    if hours > MAX_RETENTION_HOURS {
        return Err(KinesisError::invalid_argument(format!(
            "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
        )));
    }
    let current = retention_hours(&spec);
    match change {
        Change::Increase if hours < current => {
            return Err(KinesisError::invalid_argument(format!(
                "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
            )));
        }
        Change::Decrease if hours > current => {
            return Err(KinesisError::invalid_argument(format!(
                "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
            )));
        }
        _ => {}
    }
    let spec = StreamSpec {
        retention_hours: hours,
        retention_s: None,
        ..spec
    };
    s.app.control.put_stream(&name, spec).await?;
    Answer::empty()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

async fn add_tags(s: &Door<'_>, input: KinesisResult<AddTagsInput>) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let tags = input.tags.ok_or_else(|| KinesisError::missing("Tags"))?;
    let mut spec = s.app.streams.stream(&name)?.spec();
    spec.tags.extend(tags);
    s.app
        .control
        .put_stream(&name, spec)
        .await
        .map_err(invalid_tags)?;
    Answer::empty()
}

/// A spec refused for its tags is Kinesis's `InvalidArgumentException`.
fn invalid_tags(e: OpError) -> KinesisError {
    match e {
        OpError::InvalidSpec { .. } => KinesisError::invalid_argument(e.to_string()),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tag_keys: Option<Vec<String>>,
}

async fn remove_tags(s: &Door<'_>, input: KinesisResult<RemoveTagsInput>) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let keys = input
        .tag_keys
        .ok_or_else(|| KinesisError::missing("TagKeys"))?;
    let mut spec = s.app.streams.stream(&name)?.spec();
    let before = spec.tags.len();
    for key in &keys {
        spec.tags.remove(key);
    }
    if spec.tags.len() != before {
        s.app
            .control
            .put_stream(&name, spec)
            .await
            .map_err(invalid_tags)?;
    }
    Answer::empty()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    exclusive_start_tag_key: Option<String>,
    limit: Option<usize>,
}

fn list_tags(s: &Door<'_>, input: KinesisResult<ListTagsInput>) -> KinesisResult<Answer> {
    let input = input?;
    let name = stream_name(input.stream_name, input.stream_arn)?;
    let spec = s.app.streams.stream(&name)?.spec();
    let limit = input.limit.unwrap_or(50).clamp(1, 50);
    let after = input.exclusive_start_tag_key;
    let rest: Vec<(String, String)> = spec
        .tags
        .into_iter()
        .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tag {
        key: String,
        value: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        tags: Vec<Tag>,
        has_more_tags: bool,
    }
    Answer::of(Output {
        has_more_tags: rest.len() > limit,
        tags: rest
            .into_iter()
            .take(limit)
            .map(|(key, value)| Tag { key, value })
            .collect(),
    })
}

/// Resharding is refused: a stream's shard count is fixed when it is created.
fn refuse_resharding(
    s: &Door<'_>,
    action: &str,
    input: KinesisResult<StreamInput>,
) -> KinesisResult<Answer> {
    let name = input?.name()?;
    let shards = s.app.streams.stream(&name)?.shard_count();
    Err(KinesisError::limit(format!(
        "{action} refused: stream {name} keeps the {shards} shards it was created with, as every stream here does (resharding is not supported); create a new stream with the shard count you need"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_are_kinesis_names() {
        assert_eq!(kinesis_shard_id(3), "shardId-000000000003");
        assert_eq!(parse_kinesis_shard_id("shardId-000000000003"), Some(3));
        assert_eq!(parse_kinesis_shard_id("7"), Some(7));
        assert_eq!(parse_kinesis_shard_id("shardId-"), None);
        assert_eq!(parse_kinesis_shard_id("shardId-x1"), None);
    }

    #[test]
    fn an_iterator_reads_back_and_expires_after_five_minutes() {
        let it = ShardIterator {
            stream: "a/b.c".into(),
            shard: 2,
            next: 41,
            issued_ms: 1_000_000,
        };
        let text = it.encode();
        assert_eq!(ShardIterator::decode(&text), Some(it.clone()));
        assert!(it.check_fresh(1_000_000 + ITERATOR_LIFETIME_MS).is_ok());
        let expired = it
            .check_fresh(1_000_001 + ITERATOR_LIFETIME_MS)
            .unwrap_err();
        assert_eq!(expired.code, "ExpiredIteratorException");
        for garbage in ["", "!!", "MTIz", &URL_SAFE_NO_PAD.encode("1/2/3/")] {
            assert_eq!(ShardIterator::decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn blobs_and_timestamps_follow_the_protocol() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct R {
            data: Blob,
            at: Timestamp,
        }
        let r = R {
            data: Blob(vec![0, 0xff, b'a']),
            at: Timestamp(1_506_440_188_749),
        };
        let json = Protocol::Json.encode(&r);
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"Data":"AP9h","At":1506440188.749}"#
        );
        assert_eq!(Protocol::Json.decode::<R>(&json).unwrap(), r);
        let cbor = Protocol::Cbor.encode(&r);
        // The data a byte string; the time tag 1 (0xc1) around integer milliseconds.
        let at = [0xc1, 0x1b, 0, 0, 0x01, 0x5e, 0xbe, 0xd5, 0x13, 0x4d];
        assert!(cbor.windows(4).any(|w| w == [0x43, 0, 0xff, b'a']));
        assert!(cbor.windows(at.len()).any(|w| w == at), "{cbor:02x?}");
        assert_eq!(Protocol::Cbor.decode::<R>(&cbor).unwrap(), r);
    }

    #[test]
    fn a_stream_is_named_by_name_or_arn() {
        assert_eq!(stream_name(Some("s".into()), None).unwrap(), "s");
        let arn = stream_arn("eu-west-1", "clicks");
        assert_eq!(stream_name(None, Some(arn)).unwrap(), "clicks");
        for bad in [
            "arn:aws:sqs:r:0:q",
            "arn:aws:kinesis:r:0:stream/",
            "nonsense",
        ] {
            assert!(stream_name(None, Some(bad.into())).is_err(), "{bad}");
        }
        assert!(stream_name(None, None).is_err());
    }
}
