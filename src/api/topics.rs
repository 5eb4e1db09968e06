//! `/v1/topics`: topics, their subscriptions, and publishing.

use super::error::{ApiJson, check_batch, failures};
use super::{ApiResult, AppState, Problems, SubscriptionPath, TopicPath, put_answer};
use crate::error::OpError;
use crate::model::{Endpoint, Kind};
use crate::wire::{
    Batch, BatchResult, BatchSuccess, MessageId, PublishRequest, SubscriptionInfo,
    SubscriptionList, SubscriptionSpec, TopicInfo, TopicList, TopicSpec,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::atomic::Ordering;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_topics))
        .routes(routes!(get_topic, put_topic, delete_topic))
        .routes(routes!(publish))
        .routes(routes!(publish_batch))
        .routes(routes!(list_subscriptions))
        .routes(routes!(
            get_subscription,
            put_subscription,
            delete_subscription
        ))
}

fn topic_info(s: &AppState, name: &str) -> Result<TopicInfo, OpError> {
    let t = s.app.control.topic(name)?;
    Ok(TopicInfo {
        name: name.to_string(),
        spec: t.spec.clone(),
        subscriptions: t.subscriptions.keys().cloned().collect(),
    })
}

/// List topics.
#[utoipa::path(get, path = "/v1/topics", tag = "topics",
    responses((status = 200, description = "Every topic's name.", body = TopicList), Problems))]
async fn list_topics(State(s): State<AppState>) -> Json<TopicList> {
    Json(TopicList {
        topics: s.app.control.topic_names(),
    })
}

/// Get a topic.
#[utoipa::path(get, path = "/v1/topics/{topic}", tag = "topics", params(TopicPath),
    responses((status = 200, description = "The topic.", body = TopicInfo), Problems))]
async fn get_topic(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
) -> ApiResult<Json<TopicInfo>> {
    Ok(Json(topic_info(&s, &topic)?))
}

/// Create a topic, or change what may change of it.
#[utoipa::path(put, path = "/v1/topics/{topic}", tag = "topics", params(TopicPath),
    request_body = TopicSpec,
    responses(
        (status = 200, description = "The topic, changed or as it was.", body = TopicInfo),
        (status = 201, description = "The topic, created.", body = TopicInfo),
        Problems))]
async fn put_topic(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
    ApiJson(spec): ApiJson<TopicSpec>,
) -> ApiResult<Response> {
    let created = s.app.control.put_topic(&topic, spec).await?;
    Ok(put_answer(created, topic_info(&s, &topic)?))
}

/// Delete a topic and its subscriptions.
#[utoipa::path(delete, path = "/v1/topics/{topic}", tag = "topics", params(TopicPath),
    responses((status = 204, description = "Deleted."), Problems))]
async fn delete_topic(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
) -> ApiResult<StatusCode> {
    s.app.control.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish a message; answered once every matching delivery is durably stored.
#[utoipa::path(post, path = "/v1/topics/{topic}/publish", tag = "topics", params(TopicPath),
    request_body = PublishRequest,
    responses((status = 200, description = "Stored.", body = MessageId), Problems))]
async fn publish(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> ApiResult<Json<MessageId>> {
    let out = s.app.publisher.publish(&topic, req).await?;
    s.metrics.published.fetch_add(1, Ordering::Relaxed);
    s.metrics
        .deliveries
        .fetch_add(out.delivered as u64, Ordering::Relaxed);
    Ok(Json(MessageId {
        message_id: out.message_id,
    }))
}

/// Publish up to 100 messages with one durable write; each entry succeeds or fails alone.
#[utoipa::path(post, path = "/v1/topics/{topic}/publish-batch", tag = "topics",
    params(TopicPath), request_body = Batch<PublishRequest>,
    responses((status = 200, description = "What became of each entry.", body = BatchResult),
        Problems))]
async fn publish_batch(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
    ApiJson(batch): ApiJson<Batch<PublishRequest>>,
) -> ApiResult<Json<BatchResult>> {
    check_batch(batch.entries.len())?;
    let results = s.app.publisher.publish_batch(&topic, batch.entries).await?;
    let mut answer = BatchResult::default();
    let mut deliveries = 0;
    for (id, result) in results {
        match result {
            Ok(o) => {
                deliveries += o.delivered as u64;
                answer.successful.push(BatchSuccess {
                    id,
                    message_id: o.message_id,
                });
            }
            Err(e) => answer.failed.push(failures(id, e)),
        }
    }
    s.metrics
        .published
        .fetch_add(answer.successful.len() as u64, Ordering::Relaxed);
    s.metrics
        .deliveries
        .fetch_add(deliveries, Ordering::Relaxed);
    Ok(Json(answer))
}

/// A subscription as the API shows it. An http endpoint's secret is shown only when
/// `reveal_secret` (in the answer to the `PUT` that created it).
fn subscription_info(
    s: &AppState,
    topic: &str,
    name: &str,
    reveal_secret: bool,
) -> Result<SubscriptionInfo, OpError> {
    let t = s.app.control.topic(topic)?;
    let mut spec = t
        .subscriptions
        .get(name)
        .cloned()
        .ok_or_else(|| OpError::not_found(Kind::Subscription, name))?;
    if !reveal_secret && let Endpoint::Http(h) = &mut spec.endpoint {
        h.secret = Some("(set; shown only when the subscription was created)".into());
    }
    Ok(SubscriptionInfo {
        name: name.to_string(),
        topic: topic.to_string(),
        spec,
    })
}

/// List a topic's subscriptions.
#[utoipa::path(get, path = "/v1/topics/{topic}/subscriptions", tag = "subscriptions",
    params(TopicPath),
    responses((status = 200, description = "The topic's subscriptions.", body = SubscriptionList),
        Problems))]
async fn list_subscriptions(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
) -> ApiResult<Json<SubscriptionList>> {
    let t = s.app.control.topic(&topic)?;
    let subscriptions = t
        .subscriptions
        .keys()
        .map(|name| subscription_info(&s, &topic, name, false))
        .collect::<Result<_, _>>()?;
    Ok(Json(SubscriptionList { subscriptions }))
}

/// Get a subscription.
#[utoipa::path(get, path = "/v1/topics/{topic}/subscriptions/{name}", tag = "subscriptions",
    params(SubscriptionPath),
    responses((status = 200, description = "The subscription.", body = SubscriptionInfo),
        Problems))]
async fn get_subscription(
    State(s): State<AppState>,
    Path(SubscriptionPath { topic, name }): Path<SubscriptionPath>,
) -> ApiResult<Json<SubscriptionInfo>> {
    Ok(Json(subscription_info(&s, &topic, &name, false)?))
}

/// Subscribe an endpoint to a topic, or change the subscription's policy and settings.
#[utoipa::path(put, path = "/v1/topics/{topic}/subscriptions/{name}", tag = "subscriptions",
    params(SubscriptionPath), request_body = SubscriptionSpec,
    responses(
        (status = 200, description = "The subscription, changed or as it was.", body = SubscriptionInfo),
        (status = 201, description = "The subscription, created (an http endpoint's secret shown this once).", body = SubscriptionInfo),
        Problems))]
async fn put_subscription(
    State(s): State<AppState>,
    Path(SubscriptionPath { topic, name }): Path<SubscriptionPath>,
    ApiJson(spec): ApiJson<SubscriptionSpec>,
) -> ApiResult<Response> {
    let created = s.app.control.put_subscription(&topic, &name, spec).await?;
    Ok(put_answer(
        created,
        subscription_info(&s, &topic, &name, created)?,
    ))
}

/// Delete a subscription; deliveries still queued for it are dropped.
#[utoipa::path(delete, path = "/v1/topics/{topic}/subscriptions/{name}", tag = "subscriptions",
    params(SubscriptionPath),
    responses((status = 204, description = "Deleted."), Problems))]
async fn delete_subscription(
    State(s): State<AppState>,
    Path(SubscriptionPath { topic, name }): Path<SubscriptionPath>,
) -> ApiResult<StatusCode> {
    s.app.control.delete_subscription(&topic, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
