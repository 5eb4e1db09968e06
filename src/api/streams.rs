//! `/v1/streams`: streams, their records and shards, and consumer groups.

use super::error::{ApiJson, ApiQuery};
use super::{ApiResult, AppState, GroupPath, Problems, ShardPath, StreamPath, put_answer};
use crate::backend::StoredRecord;
use crate::error::OpError;
use crate::model::shard_id;
use crate::wire::{
    CheckpointRequest, Empty, GroupInfo, GroupShard, GroupSpec, HashKeyRange, PlacedRecord,
    PollRequest, Position, PutRecords, PutRecordsResult, ReadQuery, RecordPage, SequenceRange,
    ShardInfo, ShardList, StreamInfo, StreamList, StreamSpec,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

handlers!(
    routes,
    documented:
        list_streams, get_stream, put_stream, delete_stream, put_records, list_shards,
        read_shard, get_group, put_group, poll, checkpoint,
);

async fn stream_info(s: &AppState, name: &str) -> Result<StreamInfo, OpError> {
    let h = s.app.streams.stream(name)?;
    Ok(StreamInfo {
        name: name.to_string(),
        spec: h.spec(),
        groups: s.app.streams.group_names(name).await?,
    })
}

/// List streams.
#[utoipa::path(get, path = "/v1/streams", tag = "streams",
    responses((status = 200, description = "Every stream's name.", body = StreamList), Problems))]
async fn list_streams(State(s): State<AppState>) -> Json<StreamList> {
    Json(StreamList {
        streams: s.app.streams.names(),
    })
}

/// Get a stream.
#[utoipa::path(get, path = "/v1/streams/{stream}", tag = "streams", params(StreamPath),
    responses((status = 200, description = "The stream.", body = StreamInfo), Problems))]
async fn get_stream(
    State(s): State<AppState>,
    Path(StreamPath { stream }): Path<StreamPath>,
) -> ApiResult<Json<StreamInfo>> {
    Ok(Json(stream_info(&s, &stream).await?))
}

/// Create a stream, or change its retention (its shard count is fixed: another one is
/// refused with 409).
#[utoipa::path(put, path = "/v1/streams/{stream}", tag = "streams", params(StreamPath),
    request_body = StreamSpec,
    responses(
        (status = 200, description = "The stream, changed or as it was.", body = StreamInfo),
        (status = 201, description = "The stream, created.", body = StreamInfo),
        Problems))]
async fn put_stream(
    State(s): State<AppState>,
    Path(StreamPath { stream }): Path<StreamPath>,
    ApiJson(spec): ApiJson<StreamSpec>,
) -> ApiResult<Response> {
    let created = s.app.control.put_stream(&stream, spec).await?;
    Ok(put_answer(created, stream_info(&s, &stream).await?))
}

/// Delete a stream, its records and its groups.
#[utoipa::path(delete, path = "/v1/streams/{stream}", tag = "streams", params(StreamPath),
    responses((status = 204, description = "Deleted."), Problems))]
async fn delete_stream(
    State(s): State<AppState>,
    Path(StreamPath { stream }): Path<StreamPath>,
) -> ApiResult<StatusCode> {
    s.app.control.delete_stream(&stream).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Append up to 500 records, each to the shard its partition key hashes to.
#[utoipa::path(post, path = "/v1/streams/{stream}/records", tag = "streams",
    params(StreamPath), request_body = PutRecords,
    responses((status = 200, description = "Where each record landed, in order.",
        body = PutRecordsResult), Problems))]
async fn put_records(
    State(s): State<AppState>,
    Path(StreamPath { stream }): Path<StreamPath>,
    ApiJson(req): ApiJson<PutRecords>,
) -> ApiResult<Json<PutRecordsResult>> {
    let placed = s.app.streams.put_records(&stream, req.records).await?;
    Ok(Json(PutRecordsResult {
        records: placed
            .into_iter()
            .map(|(shard, sequence)| PlacedRecord {
                shard_id: shard_id(shard),
                sequence: sequence.to_string(),
            })
            .collect(),
    }))
}

/// List a stream's shards with their hash-key and sequence ranges.
#[utoipa::path(get, path = "/v1/streams/{stream}/shards", tag = "streams", params(StreamPath),
    responses((status = 200, description = "The shards.", body = ShardList), Problems))]
async fn list_shards(
    State(s): State<AppState>,
    Path(StreamPath { stream }): Path<StreamPath>,
) -> ApiResult<Json<ShardList>> {
    let shards = s
        .app
        .streams
        .shards(&stream)
        .await?
        .into_iter()
        .map(|shard| ShardInfo {
            shard_id: shard_id(shard.shard),
            hash_key_range: HashKeyRange {
                start: shard.hash_keys.0.to_string(),
                end: shard.hash_keys.1.to_string(),
            },
            sequence_range: SequenceRange {
                first: shard.first.to_string(),
                last: shard.last.to_string(),
            },
        })
        .collect();
    Ok(Json(ShardList { shards }))
}

/// Renders records as [`RecordPage`] would serialize, splicing `data` in as it is stored
/// when it is JSON text, else writing it as `data_base64`.
fn render_records(records: &[StoredRecord], next: Option<Position>) -> Response {
    let mut out = String::with_capacity(
        64 + records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len() + 96)
            .sum::<usize>(),
    );
    out.push_str("{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"shard_id\":\"{}\",\"sequence\":\"{}\",\"partition_key\":{},\"arrived_at\":{},",
            shard_id(r.shard),
            r.sequence,
            json!(r.partition_key),
            r.arrived_at
        ));
        match json_text(&r.data) {
            Some(text) => {
                out.push_str("\"data\":");
                out.push_str(text);
            }
            None => {
                out.push_str("\"data_base64\":\"");
                base64::engine::general_purpose::STANDARD.encode_string(&r.data, &mut out);
                out.push('"');
            }
        }
        out.push('}');
    }
    out.push(']');
    if let Some(next) = next {
        out.push_str(",\"next\":");
        out.push_str(&json!(next).to_string());
    }
    out.push('}');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// The bytes as text, when they are one JSON value.
fn json_text(data: &[u8]) -> Option<&str> {
    serde_json::from_slice::<serde::de::IgnoredAny>(data).ok()?;
    std::str::from_utf8(data).ok()
}

/// Read a page of one shard from a position.
#[utoipa::path(get, path = "/v1/streams/{stream}/shards/{shard}/records", tag = "streams",
    params(ShardPath, ReadQuery),
    responses((status = 200, description = "The records, and where the next page starts.",
        body = RecordPage), Problems))]
async fn read_shard(
    State(s): State<AppState>,
    Path(ShardPath { stream, shard }): Path<ShardPath>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> ApiResult<Response> {
    let from = q.from.as_deref().unwrap_or("trim_horizon");
    let page = s
        .app
        .streams
        .read_shard(&stream, &shard, from, q.limit)
        .await?;
    Ok(render_records(&page.records, Some(page.next)))
}

async fn group_info(s: &AppState, stream: &str, group: &str) -> Result<GroupInfo, OpError> {
    let (spec, shards) = s.app.streams.describe_group(stream, group).await?;
    Ok(GroupInfo {
        name: group.to_string(),
        spec,
        shards: shards
            .into_iter()
            .enumerate()
            .map(|(i, (lease, checkpoint))| GroupShard {
                shard_id: shard_id(i as u32),
                member: lease.map(|l| l.member),
                checkpoint: checkpoint.map(|c| c.to_string()),
            })
            .collect(),
    })
}

/// Get a consumer group: its settings, and per shard its holder and checkpoint.
#[utoipa::path(get, path = "/v1/streams/{stream}/groups/{group}", tag = "groups",
    params(GroupPath),
    responses((status = 200, description = "The group.", body = GroupInfo), Problems))]
async fn get_group(
    State(s): State<AppState>,
    Path(GroupPath { stream, group }): Path<GroupPath>,
) -> ApiResult<Json<GroupInfo>> {
    Ok(Json(group_info(&s, &stream, &group).await?))
}

/// Create a consumer group (a group polled before it was put has the defaults).
#[utoipa::path(put, path = "/v1/streams/{stream}/groups/{group}", tag = "groups",
    params(GroupPath), request_body = GroupSpec,
    responses(
        (status = 200, description = "The group, as it was.", body = GroupInfo),
        (status = 201, description = "The group, created.", body = GroupInfo),
        Problems))]
async fn put_group(
    State(s): State<AppState>,
    Path(GroupPath { stream, group }): Path<GroupPath>,
    ApiJson(spec): ApiJson<GroupSpec>,
) -> ApiResult<Response> {
    let created = s.app.streams.put_group(&stream, &group, spec).await?;
    Ok(put_answer(created, group_info(&s, &stream, &group).await?))
}

/// Poll as a group member: renews its leases, rebalances, and returns records of the
/// shards it holds, waiting up to `wait_s` for some.
#[utoipa::path(post, path = "/v1/streams/{stream}/groups/{group}/poll", tag = "groups",
    params(GroupPath), request_body = PollRequest,
    responses((status = 200, description = "The records (maybe none).", body = RecordPage),
        Problems))]
async fn poll(
    State(s): State<AppState>,
    Path(GroupPath { stream, group }): Path<GroupPath>,
    ApiJson(req): ApiJson<PollRequest>,
) -> ApiResult<Response> {
    let records = s.app.streams.poll(&stream, &group, req).await?;
    Ok(render_records(&records, None))
}

/// Record a member's progress on a shard it holds (409 without the lease).
#[utoipa::path(post, path = "/v1/streams/{stream}/groups/{group}/checkpoint", tag = "groups",
    params(GroupPath), request_body = CheckpointRequest,
    responses((status = 200, description = "Recorded.", body = Empty), Problems))]
async fn checkpoint(
    State(s): State<AppState>,
    Path(GroupPath { stream, group }): Path<GroupPath>,
    ApiJson(req): ApiJson<CheckpointRequest>,
) -> ApiResult<Json<Empty>> {
    s.app.streams.checkpoint(&stream, &group, req).await?;
    Ok(Json(Empty {}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::StreamRecord;

    #[test]
    fn records_render_as_the_wire_type_serializes() {
        let stored = StoredRecord {
            shard: 3,
            sequence: 42,
            partition_key: "key \"quoted\"".into(),
            data: br#"{"n":[1,2]}"#.to_vec(),
            arrived_at: 1_700_000_000_123,
        };
        let response = render_records(std::slice::from_ref(&stored), Some(Position::After(42)));
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        let expected = RecordPage {
            records: vec![StreamRecord {
                shard_id: "shard-0003".into(),
                sequence: "42".into(),
                partition_key: stored.partition_key.clone(),
                arrived_at: stored.arrived_at,
                data: Some(serde_json::from_slice(&stored.data).unwrap()),
                data_base64: None,
            }],
            next: Some(Position::After(42)),
        };
        assert_eq!(
            serde_json::from_slice::<RecordPage>(&body).unwrap(),
            expected
        );
        assert_eq!(
            serde_json::to_value(&expected).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        );
    }

    #[test]
    fn records_that_are_not_json_render_as_base64() {
        for data in [&b"\x00\xff not json"[..], b"{\"a\":", b"1 2", b""] {
            let stored = StoredRecord {
                shard: 0,
                sequence: 1,
                partition_key: "k".into(),
                data: data.to_vec(),
                arrived_at: 1,
            };
            let response = render_records(std::slice::from_ref(&stored), None);
            let body =
                futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                    .unwrap();
            let page: RecordPage = serde_json::from_slice(&body).unwrap();
            let record = &page.records[0];
            assert_eq!(record.data, None, "{data:?}");
            assert_eq!(record.bytes(), data, "{data:?}");
        }
    }
}
