//! `/v1/queues`: queues, and sending, receiving and acknowledging their messages.

use super::error::{ApiJson, ApiQuery, Problem, check_batch, failures, parse_json, receipt_status};
use super::{ApiResult, AppState, Problems, QueuePath, put_answer};
use crate::backend::Received;
use crate::error::OpError;
use crate::wire::{
    AckRequest, AckResult, Batch, BatchResult, BatchSuccess, Empty, MAX_BATCH_ENTRIES, MessageId,
    PageQuery, PurgeResult, QueueInfo, QueueList, QueueSpec, ReceiveRequest, ReceivedMessages,
    RedriveResult, SendRequest, VisibilityRequest,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::atomic::Ordering;

handlers!(
    routes,
    documented:
        list_queues, get_queue, put_queue, delete_queue, send, receive, ack, visibility,
        purge, redrive,
);

async fn queue_info(s: &AppState, name: &str) -> Result<QueueInfo, OpError> {
    let h = s.app.queues.queue(name)?;
    let c = s.app.queues.counts(name).await?;
    Ok(QueueInfo {
        name: name.to_string(),
        spec: h.spec(),
        approximate_visible: c.visible,
        approximate_in_flight: c.in_flight,
        approximate_delayed: c.delayed,
    })
}

/// List queues, by name: all of them, or a page of them.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", params(PageQuery),
    responses((status = 200, description = "Queues' names.", body = QueueList), Problems))]
async fn list_queues(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<QueueList>> {
    let (queues, next) = super::page::names(s.app.queues.names(), &q)?;
    Ok(Json(QueueList { queues, next }))
}

/// Get a queue with approximate counts of its messages.
#[utoipa::path(get, path = "/v1/queues/{queue}", tag = "queues", params(QueuePath),
    responses((status = 200, description = "The queue.", body = QueueInfo), Problems))]
async fn get_queue(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
) -> ApiResult<Json<QueueInfo>> {
    Ok(Json(queue_info(&s, &queue).await?))
}

/// Create a queue, or change what may change of it.
#[utoipa::path(put, path = "/v1/queues/{queue}", tag = "queues", params(QueuePath),
    request_body = QueueSpec,
    responses(
        (status = 200, description = "The queue, changed or as it was.", body = QueueInfo),
        (status = 201, description = "The queue, created.", body = QueueInfo),
        Problems))]
async fn put_queue(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
    ApiJson(spec): ApiJson<QueueSpec>,
) -> ApiResult<Response> {
    let created = s.app.control.put_queue(&queue, spec).await?;
    Ok(put_answer(created, queue_info(&s, &queue).await?))
}

/// Delete a queue and its messages.
#[utoipa::path(delete, path = "/v1/queues/{queue}", tag = "queues", params(QueuePath),
    responses((status = 204, description = "Deleted."), Problems))]
async fn delete_queue(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
) -> ApiResult<StatusCode> {
    s.app.control.delete_queue(&queue).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A send body: one message, or `{"entries": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SendBody {
    One(SendRequest),
    Batch(Batch<SendRequest>),
}

/// Send one message (answered with its id) or a batch of up to 100 (answered entry by
/// entry), stored with one durable write.
#[utoipa::path(post, path = "/v1/queues/{queue}/messages", tag = "queues", params(QueuePath),
    request_body(content = inline(SendBody)),
    responses(
        (status = 200, description = "One message: its id; a batch: what became of each entry.",
            body = inline(SentBody)),
        Problems))]
async fn send(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> ApiResult<Response> {
    // Parsed in two steps so a malformed single message reports its own error rather than
    // serde's "did not match any variant".
    let is_batch = serde_json::from_str::<serde_json::Value>(body.get())
        .ok()
        .is_some_and(|v| v.get("entries").is_some());
    if !is_batch {
        let req: SendRequest = parse_json(body.get().as_bytes())?;
        let (_, result) = s
            .app
            .queues
            .send(&queue, vec![req])
            .await?
            .pop()
            .expect("one entry in, one result out");
        return Ok(Json(MessageId {
            message_id: result?.message_id,
        })
        .into_response());
    }
    let batch: Batch<SendRequest> = parse_json(body.get().as_bytes())?;
    check_batch(batch.entries.len())?;
    let mut answer = BatchResult::default();
    for (id, result) in s.app.queues.send(&queue, batch.entries).await? {
        match result {
            Ok(sent) => answer.successful.push(BatchSuccess {
                id,
                message_id: sent.message_id,
            }),
            Err(e) => answer.failed.push(failures(id, e)),
        }
    }
    Ok(Json(answer).into_response())
}

/// What a send answers: a message id for one message, entry results for a batch.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SentBody {
    One(MessageId),
    Batch(BatchResult),
}

/// Receives up to ten messages, long polling up to `wait_s` for the first.
#[utoipa::path(post, path = "/v1/queues/{queue}/receive", tag = "queues", params(QueuePath),
    request_body(content = Option<ReceiveRequest>,
        description = "Empty for every default, as SQS's ReceiveMessage without parameters."),
    responses((status = 200, description = "The messages received (maybe none).",
        body = ReceivedMessages), Problems))]
async fn receive(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
    body: Bytes,
) -> ApiResult<Response> {
    // No body, or `null`, is every default.
    let req: ReceiveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReceiveRequest::default()
    } else {
        parse_json::<Option<ReceiveRequest>>(&body)?.unwrap_or_default()
    };
    let msgs = s.app.queues.receive(&queue, req).await?;
    s.metrics
        .received
        .fetch_add(msgs.len() as u64, Ordering::Relaxed);
    Ok(render_received(&msgs))
}

/// Renders received messages as [`ReceivedMessages`] would serialize, splicing payload and
/// attributes (stored as JSON text) in as they are: parsing them back into values only
/// to write them out again would cost a receive about as much as the rest of it.
fn render_received(msgs: &[Received]) -> Response {
    let mut out = String::with_capacity(
        32 + msgs
            .iter()
            .map(|m| m.payload.len() + m.attributes.len() + 200)
            .sum::<usize>(),
    );
    out.push_str("{\"messages\":[");
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"message_id\":");
        out.push_str(&json!(m.message_id).to_string());
        out.push_str(",\"receipt\":");
        out.push_str(&json!(m.receipt).to_string());
        out.push_str(",\"message\":");
        out.push_str(std::str::from_utf8(&m.payload).unwrap_or("null"));
        out.push_str(",\"attributes\":");
        out.push_str(std::str::from_utf8(&m.attributes).unwrap_or("{}"));
        out.push_str(&format!(
            ",\"receive_count\":{},\"sent_at\":{}}}",
            m.receive_count,
            json!(crate::time::rfc3339_ms(m.sent_at))
        ));
    }
    out.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// Acknowledge (delete) received messages. When some receipts are refused, the problem
/// lists in `acked` those that were accepted.
#[utoipa::path(post, path = "/v1/queues/{queue}/ack", tag = "queues", params(QueuePath),
    request_body = AckRequest,
    responses((status = 200, description = "Every receipt accepted.", body = AckResult),
        Problems))]
async fn ack(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
    ApiJson(req): ApiJson<AckRequest>,
) -> ApiResult<Json<AckResult>> {
    if req.receipts.is_empty() || req.receipts.len() > MAX_BATCH_ENTRIES {
        return Err(Problem::bad_request(format!(
            "receipts must hold 1 to {MAX_BATCH_ENTRIES} receipts"
        )));
    }
    let verdicts = s.app.queues.ack(&queue, &req.receipts).await?;
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for (r, v) in req.receipts.iter().zip(verdicts) {
        match v {
            Ok(()) => acked.push(r.clone()),
            Err(e) => failed.push(e),
        }
    }
    s.metrics
        .acked
        .fetch_add(acked.len() as u64, Ordering::Relaxed);
    let Some(first) = failed.first() else {
        return Ok(Json(AckResult {
            acked: acked.len() as u64,
        }));
    };
    let (status, kind) = receipt_status(first);
    let detail = failed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(Problem {
        acked: Some(acked),
        ..Problem::new(status, kind, detail)
    })
}

/// Change how long a received message stays hidden; 0 makes it visible at once.
#[utoipa::path(post, path = "/v1/queues/{queue}/visibility", tag = "queues",
    params(QueuePath), request_body = VisibilityRequest,
    responses((status = 200, description = "Changed.", body = Empty), Problems))]
async fn visibility(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
    ApiJson(req): ApiJson<VisibilityRequest>,
) -> ApiResult<Json<Empty>> {
    s.app
        .queues
        .change_visibility(&queue, &req.receipt, req.timeout_s)
        .await?;
    Ok(Json(Empty {}))
}

/// Delete every message of a queue.
#[utoipa::path(post, path = "/v1/queues/{queue}/purge", tag = "queues", params(QueuePath),
    responses((status = 200, description = "How many were deleted.", body = PurgeResult),
        Problems))]
async fn purge(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
) -> ApiResult<Json<PurgeResult>> {
    let purged = s.app.queues.purge(&queue).await?;
    Ok(Json(PurgeResult { purged }))
}

/// Move a dead-letter queue's messages back to the queues they came from.
#[utoipa::path(post, path = "/v1/queues/{queue}/redrive", tag = "queues", params(QueuePath),
    responses((status = 200, description = "How many moved.", body = RedriveResult), Problems))]
async fn redrive(
    State(s): State<AppState>,
    Path(QueuePath { queue }): Path<QueuePath>,
) -> ApiResult<Json<RedriveResult>> {
    let moved = s.app.queues.redrive(&queue).await?;
    Ok(Json(RedriveResult { moved }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ReceivedMessage;

    #[test]
    fn received_messages_render_as_the_wire_type_serializes() {
        let received = Received {
            message_id: "m-1".into(),
            receipt: "1-2-3".into(),
            payload: br#"{"order":"o-1","note":"a \"quoted\" word"}"#.to_vec(),
            attributes: br#"{"k":{"Type":"String","Value":"v"}}"#.to_vec(),
            receive_count: 2,
            sent_at: 1_700_000_000_123,
            first_received_at: Some(1_700_000_000_456),
            dedup_id: None,
            sequence: 2,
            group: None,
            origin: None,
        };
        let response = render_received(std::slice::from_ref(&received));
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        let parsed: ReceivedMessages = serde_json::from_slice(&body).unwrap();
        let expected = ReceivedMessages {
            messages: vec![ReceivedMessage {
                message_id: "m-1".into(),
                receipt: "1-2-3".into(),
                message: serde_json::from_slice(&received.payload).unwrap(),
                attributes: serde_json::from_slice(&received.attributes).unwrap(),
                receive_count: 2,
                sent_at: crate::time::rfc3339_ms(received.sent_at),
            }],
        };
        assert_eq!(parsed, expected);
        assert_eq!(
            serde_json::to_value(&expected).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        );
    }
}
