//! `/v1/topics`: topics, their subscriptions, and publishing.

use super::error::{ApiJson, ApiQuery, Problem, check_batch, failures};
use super::page::{self, page};
use super::{ApiResult, AppState, Problems, SubscriptionPath, TopicPath, put_answer};
use crate::error::OpError;
use crate::model::{Endpoint, Kind};
use crate::wire::{
    Batch, BatchResult, BatchSuccess, MessageId, PageQuery, PublishRequest, SubscriptionInfo,
    SubscriptionList, SubscriptionSpec, TailQuery, TopicInfo, TopicList, TopicSpec,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::sync::atomic::Ordering;

handlers!(
    routes,
    documented:
        list_topics, get_topic, put_topic, delete_topic, publish, publish_batch, tail,
        list_subscriptions, list_all_subscriptions, get_subscription, put_subscription,
        delete_subscription,
);

fn topic_info(s: &AppState, name: &str) -> Result<TopicInfo, OpError> {
    let t = s.app.control.topic(name)?;
    Ok(TopicInfo {
        name: name.to_string(),
        spec: t.spec.clone(),
        subscriptions: t.subscriptions.names(),
    })
}

/// List topics, by name: all of them, or a page of them.
#[utoipa::path(get, path = "/v1/topics", tag = "topics", params(PageQuery),
    responses((status = 200, description = "Topics' names.", body = TopicList), Problems))]
async fn list_topics(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<TopicList>> {
    let (topics, next) = page::names(s.app.control.topic_names(), &q)?;
    Ok(Json(TopicList { topics, next }))
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
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<PublishRequest>,
) -> ApiResult<Json<MessageId>> {
    carry_trace(trace_headers(&headers), &mut req);
    let out = s.app.publisher.publish(&topic, req).await?;
    s.metrics.published.fetch_add(1, Ordering::Relaxed);
    s.metrics
        .deliveries
        .fetch_add(out.delivered as u64, Ordering::Relaxed);
    Ok(Json(MessageId {
        message_id: out.message_id,
    }))
}

/// The publisher's W3C trace context: its `traceparent` header and the `tracestate`
/// beside it. A malformed one is ignored, as the recommendation says.
fn trace_headers(headers: &HeaderMap) -> Option<(&str, Option<&str>)> {
    use crate::telemetry::trace::{TRACEPARENT, TRACESTATE, valid_traceparent, valid_tracestate};
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let parent = header(TRACEPARENT).filter(|v| valid_traceparent(v))?;
    Some((parent, header(TRACESTATE).filter(|v| valid_tracestate(v))))
}

/// Adds the publisher's trace context to the message's attributes unless it carries its
/// own, so that every delivery of the message carries it on.
fn carry_trace(trace: Option<(&str, Option<&str>)>, req: &mut PublishRequest) {
    use crate::telemetry::trace::{TRACEPARENT, TRACESTATE};
    let Some((parent, state)) = trace else {
        return;
    };
    if req
        .attributes
        .as_ref()
        .is_none_or(serde_json::Value::is_null)
    {
        req.attributes = Some(serde_json::Value::Object(Default::default()));
    }
    let attributes = req.attributes.as_mut().expect("set above");
    // Attributes of another shape are refused by the publish, with the reason.
    let Some(map) = attributes.as_object_mut() else {
        return;
    };
    if map.contains_key(TRACEPARENT) {
        return;
    }
    map.insert(TRACEPARENT.into(), parent.into());
    if let Some(state) = state {
        map.insert(TRACESTATE.into(), state.into());
    }
}

/// Follow a topic live, as server-sent events: an `event: message` per publish stored from
/// now on (a `TailedEvent`, with the subscriptions it was delivered to), optionally only
/// those a filter policy matches. A follower that reads too slowly loses the oldest
/// events it has not read and gets an `event: dropped` with their count; publishing never
/// waits for it. The stream ends when the topic is deleted or the server stops.
#[utoipa::path(get, path = "/v1/topics/{topic}/tail", tag = "topics",
    params(TopicPath, TailQuery),
    responses((status = 200, description = "The topic's events as they are published.",
        content_type = "text/event-stream", body = crate::wire::TailedEvent), Problems))]
async fn tail(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let filter = tail_filter(&q)?;
    let events = s.app.publisher.watch(&topic)?;
    let stop = s.app.shutdown.clone();
    let stream = futures::stream::unfold(events, move |mut events| {
        let (stop, filter) = (stop.clone(), filter.clone());
        async move {
            loop {
                let next = tokio::select! {
                    next = events.recv() => next,
                    _ = stop.cancelled() => return None,
                };
                let event = match next {
                    Ok(e) => {
                        let wanted = filter.as_deref().is_none_or(|(policy, scope)| {
                            policy.matches(*scope, e.body.get().as_bytes(), &e.attributes)
                        });
                        if !wanted {
                            continue;
                        }
                        Event::default().event("message").data(&e.json)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Event::default()
                        .event("dropped")
                        .data(format!("{{\"dropped\":{n}}}")),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok(event), events));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A tail's filter policy, compiled once for all its events.
fn tail_filter(
    q: &TailQuery,
) -> Result<Option<std::sync::Arc<(switchyard_filter::Policy, switchyard_filter::Scope)>>, Problem>
{
    let scope = crate::policy_test::parse_scope(
        q.filter_policy_scope
            .as_deref()
            .unwrap_or("MessageAttributes"),
    )
    .map_err(Problem::bad_request)?;
    let Some(text) = &q.filter_policy else {
        return Ok(None);
    };
    let invalid = |e: String| Problem::new(StatusCode::BAD_REQUEST, "invalid-filter-policy", e);
    let policy: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("filter_policy is not JSON: {e}")))?;
    let policy = switchyard_filter::Policy::parse_scoped(&policy, scope)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Some(std::sync::Arc::new((policy, scope))))
}

/// Publish up to 100 messages with one durable write; each entry succeeds or fails alone.
#[utoipa::path(post, path = "/v1/topics/{topic}/publish-batch", tag = "topics",
    params(TopicPath), request_body = Batch<PublishRequest>,
    responses((status = 200, description = "What became of each entry.", body = BatchResult),
        Problems))]
async fn publish_batch(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
    headers: HeaderMap,
    ApiJson(mut batch): ApiJson<Batch<PublishRequest>>,
) -> ApiResult<Json<BatchResult>> {
    check_batch(batch.entries.len())?;
    let trace = trace_headers(&headers);
    batch
        .entries
        .iter_mut()
        .for_each(|req| carry_trace(trace, req));
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
    let spec = t
        .subscriptions
        .get(name)
        .ok_or_else(|| OpError::not_found(Kind::Subscription, name))?;
    if reveal_secret {
        return Ok(SubscriptionInfo {
            name: name.to_string(),
            topic: topic.to_string(),
            spec,
        });
    }
    Ok(shown(topic, name.to_string(), spec))
}

/// A subscription as `GET` shows it: an http endpoint's secret hidden.
fn shown(topic: &str, name: String, mut spec: SubscriptionSpec) -> SubscriptionInfo {
    if let Endpoint::Http(h) = &mut spec.endpoint {
        h.secret = Some("(set; shown only when the subscription was created)".into());
    }
    SubscriptionInfo {
        name,
        topic: topic.to_string(),
        spec,
    }
}

/// List a topic's subscriptions, by name: all of them, or a page of them.
#[utoipa::path(get, path = "/v1/topics/{topic}/subscriptions", tag = "subscriptions",
    params(TopicPath, PageQuery),
    responses((status = 200, description = "The topic's subscriptions.", body = SubscriptionList),
        Problems))]
async fn list_subscriptions(
    State(s): State<AppState>,
    Path(TopicPath { topic }): Path<TopicPath>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<SubscriptionList>> {
    let t = s.app.control.topic(&topic)?;
    let all = t.subscriptions.all().into_iter().map(|(name, spec)| {
        let info = shown(&topic, name.clone(), spec);
        (name, info)
    });
    let (subscriptions, next) = page(all, &q)?;
    Ok(Json(SubscriptionList {
        subscriptions,
        next,
    }))
}

/// List every topic's subscriptions, by topic and then name (SNS's ListSubscriptions): the
/// whole topology in one call, or a page of it.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(PageQuery),
    responses((status = 200, description = "Subscriptions.", body = SubscriptionList),
        Problems))]
async fn list_all_subscriptions(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<SubscriptionList>> {
    let topics = s.app.control.topic_names();
    // Topics wholly before the page's start are passed over without reading them.
    let from = q.next.as_deref().map(|next| {
        next.split(page::SUBSCRIPTION_KEY_SEPARATOR)
            .next()
            .unwrap_or_default()
    });
    let all = topics
        .into_iter()
        .filter(|topic| from.is_none_or(|f| topic.as_str() >= f))
        // A topic deleted meanwhile has no subscriptions left to list.
        .filter_map(|topic| Some((s.app.control.topic(&topic).ok()?, topic)))
        .flat_map(|(t, topic)| {
            t.subscriptions.all().into_iter().map(move |(name, spec)| {
                let key = page::subscription_key(&topic, &name);
                (key, shown(&topic, name, spec))
            })
        });
    let (subscriptions, next) = page(all, &q)?;
    Ok(Json(SubscriptionList {
        subscriptions,
        next,
    }))
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
