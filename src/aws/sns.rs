//! SNS over its query protocol (form-encoded requests, XML answers): topics, their
//! subscriptions and publishing, answered by [`crate::control`] and
//! [`crate::publish`].
//!
//! How SNS maps onto Switchyard's topics:
//! - a topic ARN is `arn:aws:sns:REGION:000000000000:NAME`; only its name is read;
//! - a subscription made here is named by a new UUID and its ARN is the topic's ARN
//!   followed by `:NAME`. Protocol `sqs` subscribes the queue the endpoint's ARN names
//!   and delivers SNS's notification to it ([`Notification::Sns`]), or with
//!   `RawMessageDelivery` the message itself with its attributes as message attributes;
//!   protocol `lambda` subscribes the function the ARN names;
//! - a published `Message` is text. A JSON object or array is stored as that JSON, so
//!   `/v1` subscribers and body-scoped filter policies see its fields; any other text is
//!   stored as a JSON string. Either way an SNS notification's `Message` is the text as
//!   it was published, byte for byte.
//!
//! - protocols `http` and `https` wait for their endpoint's confirmation
//!   ([`crate::control::PendingSubscription`]): the endpoint is sent SNS's
//!   `SubscriptionConfirmation` with a token and a `SubscribeURL` on this server, and once
//!   confirmed receives SNS's notifications with its `x-amz-sns-*` headers.
//!
//! Not served yet, and answered with an error that says so: `email`, `sms` and mobile
//! subscriptions, topic policies and data protection.

use super::query::{Form, Xml, error_response};
use super::{Context, Door};
use crate::control::ConfirmationRequest;
use crate::error::OpError;
use crate::model::arn::{self, Arn};
use crate::model::{
    Endpoint, FilterScope, HttpEndpoint, Kind, Notification, SubscriptionSpec, TopicSpec,
};
use crate::wire::{MessageStructure, PublishRequest};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;

const NAMESPACE: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// SNS batches hold at most ten entries.
const MAX_BATCH: usize = 10;

/// `ListTopics` and the `ListSubscriptions` calls answer this many per page, as SNS.
const TOPICS_PAGE: usize = 100;
const SUBSCRIPTIONS_PAGE: usize = 100;

/// An SNS error as the query protocol sends it.
#[derive(Debug)]
pub struct SnsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl SnsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        SnsError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            format!("Invalid parameter: {message}"),
        )
    }

    fn missing(parameter: &str) -> Self {
        Self::invalid(format!("{parameter} is required"))
    }

    fn not_found(message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::invalid(format!("{what} is not supported by this server"))
    }

    pub(super) fn signature(e: &super::sigv4::SigError) -> Self {
        Self::new(StatusCode::FORBIDDEN, e.code(), e.to_string())
    }

    pub(super) fn into_response_xml(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "SNS request failed");
        }
        let body = error_response(
            NAMESPACE,
            !self.status.is_server_error(),
            self.code,
            &self.message,
            &request_id(),
        );
        (self.status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
    }
}

impl From<OpError> for SnsError {
    fn from(e: OpError) -> Self {
        let message = e.to_string();
        match e {
            OpError::NotFound {
                kind: Kind::Topic, ..
            } => SnsError::not_found("Topic does not exist"),
            OpError::NotFound {
                kind: Kind::Subscription,
                ..
            } => SnsError::not_found("Subscription does not exist"),
            OpError::Storage(s) if s.is_retryable() => SnsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                s.to_string(),
            ),
            OpError::Storage(s) => SnsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                s.to_string(),
            ),
            OpError::TooLarge { .. } => SnsError::invalid(format!("Message too long: {message}")),
            _ => SnsError::invalid(message),
        }
    }
}

type SnsResult = Result<Xml, SnsError>;

fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Answers one SNS query-protocol request.
pub(super) async fn query(s: &Door<'_>, cx: &Context, form: &Form) -> Response {
    let action = form.get("Action").unwrap_or_default();
    match run(s, cx, action, form).await {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "text/xml")],
            xml.finish(action, &request_id()),
        )
            .into_response(),
        Err(e) => e.into_response_xml(),
    }
}

async fn run(s: &Door<'_>, cx: &Context, action: &str, form: &Form) -> SnsResult {
    match action {
        "CreateTopic" => create_topic(s, cx, form).await,
        "DeleteTopic" => delete_topic(s, form).await,
        "ListTopics" => list_topics(s, cx, form),
        "GetTopicAttributes" => get_topic_attributes(s, cx, form),
        "SetTopicAttributes" => set_topic_attributes(s, form).await,
        "Subscribe" => subscribe(s, cx, form).await,
        "Unsubscribe" => unsubscribe(s, cx, form).await,
        "ConfirmSubscription" => confirm_subscription(s, cx, form).await,
        "ListSubscriptions" => list_subscriptions(s, cx, form, None),
        "ListSubscriptionsByTopic" => {
            let topic = topic_name(form.get("TopicArn"))?;
            s.app.control.topic(topic)?;
            list_subscriptions(s, cx, form, Some(topic))
        }
        "GetSubscriptionAttributes" => get_subscription_attributes(s, cx, form),
        "SetSubscriptionAttributes" => set_subscription_attributes(s, form).await,
        "TagResource" => tag_resource(s, form).await,
        "UntagResource" => untag_resource(s, form).await,
        "ListTagsForResource" => list_tags(s, form),
        "Publish" => publish(s, form).await,
        "PublishBatch" => publish_batch(s, form).await,
        "" => Err(SnsError::missing("Action")),
        _ => Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("SNS action {action:?} is not supported by this server"),
        )),
    }
}

/// The topic a `TopicArn` names.
fn topic_name(arn: Option<&str>) -> Result<&str, SnsError> {
    topic_of(arn, "TopicArn")
}

/// The topic the ARN in parameter `param` names.
fn topic_of<'a>(arn: Option<&'a str>, param: &str) -> Result<&'a str, SnsError> {
    let arn = arn.ok_or_else(|| SnsError::missing(param))?;
    Arn::resource_of(arn, "sns")
        .filter(|r| !r.contains(':'))
        .ok_or_else(|| SnsError::invalid(format!("{param} {arn:?} is not a topic ARN")))
}

/// The topic and subscription a `SubscriptionArn` names.
fn subscription_of(arn: Option<&str>) -> Result<(&str, &str), SnsError> {
    let arn = arn.ok_or_else(|| SnsError::missing("SubscriptionArn"))?;
    Arn::resource_of(arn, "sns")
        .and_then(|r| r.split_once(':'))
        .filter(|(t, s)| !t.is_empty() && !s.is_empty())
        .ok_or_else(|| {
            SnsError::invalid(format!("SubscriptionArn {arn:?} is not a subscription ARN"))
        })
}

fn boolean(name: &str, value: &str) -> Result<bool, SnsError> {
    match value {
        "true" | "True" => Ok(true),
        "false" | "False" => Ok(false),
        _ => Err(SnsError::invalid(format!(
            "{name}: {value:?} is not true or false"
        ))),
    }
}

/// Applies one topic attribute to a spec.
fn apply_topic_attribute(spec: &mut TopicSpec, name: &str, value: &str) -> Result<(), SnsError> {
    match name {
        "FifoTopic" => spec.fifo = boolean(name, value)?,
        "ContentBasedDeduplication" => spec.content_based_dedup = boolean(name, value)?,
        "DisplayName" => spec.display_name = (!value.is_empty()).then(|| value.to_string()),
        "Policy"
        | "DeliveryPolicy"
        | "KmsMasterKeyId"
        | "SignatureVersion"
        | "TracingConfig"
        | "ArchivePolicy"
        | "DataProtectionPolicy"
        | "FifoThroughputScope" => {
            return Err(SnsError::unsupported(format!("topic attribute {name}")));
        }
        _ => {
            return Err(SnsError::invalid(format!(
                "Attributes Reason: Unknown attribute {name}"
            )));
        }
    }
    Ok(())
}

async fn create_topic(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let name = form.get("Name").ok_or_else(|| SnsError::missing("Name"))?;
    let mut spec = TopicSpec::default();
    for (k, v) in form.map("Attributes.entry", "key", "value") {
        apply_topic_attribute(&mut spec, &k, &v)?;
    }
    spec.tags = tags(form)?;
    // CreateTopic of an existing topic answers its ARN and changes nothing, as SNS: a
    // topic made through `/v1` keeps its schema.
    match s.app.control.topic(name) {
        Ok(t) => {
            if t.spec.fifo != spec.fifo || t.spec.content_based_dedup != spec.content_based_dedup {
                return Err(SnsError::invalid(
                    "Topic already exists with different attributes",
                ));
            }
        }
        Err(_) => {
            s.app.control.put_topic(name, spec).await?;
        }
    }
    let mut xml = Xml::response("CreateTopic", NAMESPACE);
    xml.text("TopicArn", &arn::topic_arn(&cx.region, name));
    Ok(xml)
}

/// The `Tags.member.N` of a request.
fn tags(form: &Form) -> Result<std::collections::BTreeMap<String, String>, SnsError> {
    form.structures("Tags.member")
        .iter()
        .map(|t| {
            let key = t
                .get("Key")
                .ok_or_else(|| SnsError::missing("Tags.member.N.Key"))?;
            Ok((
                key.to_string(),
                t.get("Value").unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The topic a tagging call's `ResourceArn` names.
fn tagged_topic<'a>(s: &Door<'_>, form: &'a Form) -> Result<(&'a str, TopicSpec), SnsError> {
    let name = topic_of(form.get("ResourceArn"), "ResourceArn")?;
    let topic = s.app.control.topic(name).map_err(|_| {
        SnsError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Resource does not exist",
        )
    })?;
    Ok((name, topic.spec.clone()))
}

async fn tag_resource(s: &Door<'_>, form: &Form) -> SnsResult {
    let (name, mut spec) = tagged_topic(s, form)?;
    spec.tags.extend(tags(form)?);
    if spec.tags.len() > crate::model::MAX_TAGS {
        return Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "TagLimitExceeded",
            format!(
                "Could not complete request: tag quota of per resource exceeded ({})",
                crate::model::MAX_TAGS
            ),
        ));
    }
    s.app.control.put_topic(name, spec).await?;
    Ok(Xml::response("TagResource", NAMESPACE))
}

async fn untag_resource(s: &Door<'_>, form: &Form) -> SnsResult {
    let (name, mut spec) = tagged_topic(s, form)?;
    for key in form.structures("TagKeys.member") {
        if let Some(key) = key.get("") {
            spec.tags.remove(key);
        }
    }
    s.app.control.put_topic(name, spec).await?;
    Ok(Xml::response("UntagResource", NAMESPACE))
}

fn list_tags(s: &Door<'_>, form: &Form) -> SnsResult {
    let (_, spec) = tagged_topic(s, form)?;
    let mut xml = Xml::response("ListTagsForResource", NAMESPACE);
    xml.open("Tags");
    for (key, value) in &spec.tags {
        xml.open("member")
            .text("Key", key)
            .text("Value", value)
            .close("member");
    }
    xml.close("Tags");
    Ok(xml)
}

async fn delete_topic(s: &Door<'_>, form: &Form) -> SnsResult {
    let name = topic_name(form.get("TopicArn"))?;
    // Deleting a topic that does not exist succeeds, as in SNS.
    match s.app.control.delete_topic(name).await {
        Ok(()) | Err(OpError::NotFound { .. }) => Ok(Xml::response("DeleteTopic", NAMESPACE)),
        Err(e) => Err(e.into()),
    }
}

/// A page's start: the `NextToken` a previous page gave (an index into the sorted list).
fn page_start(form: &Form) -> Result<usize, SnsError> {
    match form.get("NextToken") {
        None | Some("") => Ok(0),
        Some(t) => t.parse().map_err(|_| {
            SnsError::invalid(format!("NextToken {t:?} is not a token this server gave"))
        }),
    }
}

fn list_topics(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let start = page_start(form)?;
    let names = s.app.control.topic_names();
    let mut xml = Xml::response("ListTopics", NAMESPACE);
    xml.open("Topics");
    for name in names.iter().skip(start).take(TOPICS_PAGE) {
        xml.open("member")
            .text("TopicArn", &arn::topic_arn(&cx.region, name))
            .close("member");
    }
    xml.close("Topics");
    if names.len() > start + TOPICS_PAGE {
        xml.text("NextToken", &(start + TOPICS_PAGE).to_string());
    }
    Ok(xml)
}

fn get_topic_attributes(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let name = topic_name(form.get("TopicArn"))?;
    let t = s.app.control.topic(name)?;
    let mut attrs: Vec<(&str, String)> = vec![
        ("TopicArn", arn::topic_arn(&cx.region, name)),
        ("Owner", arn::ACCOUNT_ID.to_string()),
        (
            "DisplayName",
            t.spec.display_name.clone().unwrap_or_default(),
        ),
        ("SubscriptionsConfirmed", t.subscriptions.len().to_string()),
        ("SubscriptionsPending", "0".into()),
        ("SubscriptionsDeleted", "0".into()),
    ];
    if t.spec.fifo {
        attrs.push(("FifoTopic", "true".into()));
        attrs.push((
            "ContentBasedDeduplication",
            t.spec.content_based_dedup.to_string(),
        ));
    }
    let mut xml = Xml::response("GetTopicAttributes", NAMESPACE);
    xml.entries("Attributes", attrs.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(xml)
}

async fn set_topic_attributes(s: &Door<'_>, form: &Form) -> SnsResult {
    let name = topic_name(form.get("TopicArn"))?;
    let attribute = form
        .get("AttributeName")
        .ok_or_else(|| SnsError::missing("AttributeName"))?;
    let value = form.get("AttributeValue").unwrap_or_default();
    let t = s.app.control.topic(name)?;
    let mut spec = t.spec.clone();
    if attribute == "FifoTopic" {
        return Err(SnsError::invalid(
            "AttributeName: FifoTopic cannot change once the topic exists",
        ));
    }
    apply_topic_attribute(&mut spec, attribute, value)?;
    s.app.control.put_topic(name, spec).await?;
    Ok(Xml::response("SetTopicAttributes", NAMESPACE))
}

/// Protocol and endpoint of a subscription as SNS lists them.
fn protocol_and_endpoint(cx: &Context, endpoint: &Endpoint) -> (&'static str, String) {
    match endpoint {
        Endpoint::Queue(q) => ("sqs", arn::queue_arn(&cx.region, q)),
        Endpoint::Function(f) => ("lambda", arn::function_arn(&cx.region, f)),
        Endpoint::Http(h) if h.url.starts_with("https:") => ("https", h.url.clone()),
        Endpoint::Http(h) => ("http", h.url.clone()),
        Endpoint::Stream { stream, .. } => ("kinesis", arn::stream_arn(&cx.region, stream)),
    }
}

/// The region a subscription's ARN is in: its notification's for SNS subscriptions,
/// else the request's.
fn subscription_region<'a>(cx: &'a Context, spec: &'a SubscriptionSpec) -> &'a str {
    match &spec.notification {
        Notification::Sns { region, .. } => region,
        Notification::Switchyard => &cx.region,
    }
}

/// Applies one subscription attribute to a spec.
fn apply_subscription_attribute(
    spec: &mut SubscriptionSpec,
    name: &str,
    value: &str,
) -> Result<(), SnsError> {
    match name {
        "FilterPolicy" => {
            spec.filter_policy = if value.trim().is_empty() {
                None
            } else {
                let policy: Value = serde_json::from_str(value).map_err(|e| {
                    SnsError::invalid(format!("Filter policy: not valid JSON: {e}"))
                })?;
                (policy != json!({})).then_some(policy)
            };
        }
        "FilterPolicyScope" => {
            spec.filter_policy_scope = match value {
                "MessageAttributes" => FilterScope::MessageAttributes,
                "MessageBody" => FilterScope::MessageBody,
                _ => {
                    return Err(SnsError::invalid(format!(
                        "FilterPolicyScope: {value:?} is not MessageAttributes or MessageBody"
                    )));
                }
            }
        }
        "RawMessageDelivery" => spec.raw_message_delivery = boolean(name, value)?,
        "RedrivePolicy" => {
            spec.dead_letter_queue = if value.trim().is_empty() {
                None
            } else {
                let policy: Value = serde_json::from_str(value).map_err(|e| {
                    SnsError::invalid(format!("RedrivePolicy: not valid JSON: {e}"))
                })?;
                let target = policy["deadLetterTargetArn"].as_str().ok_or_else(|| {
                    SnsError::invalid("RedrivePolicy: deadLetterTargetArn is required")
                })?;
                let queue = Arn::resource_of(target, "sqs").ok_or_else(|| {
                    SnsError::invalid(format!(
                        "RedrivePolicy: deadLetterTargetArn {target:?} is not an SQS queue ARN"
                    ))
                })?;
                Some(queue.to_string())
            };
        }
        "DeliveryPolicy" | "SubscriptionRoleArn" | "ReplayPolicy" => {
            return Err(SnsError::unsupported(format!(
                "subscription attribute {name}"
            )));
        }
        _ => {
            return Err(SnsError::invalid(format!(
                "AttributeName: unknown subscription attribute {name}"
            )));
        }
    }
    Ok(())
}

async fn subscribe(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let topic = topic_name(form.get("TopicArn"))?;
    let protocol = form
        .get("Protocol")
        .ok_or_else(|| SnsError::missing("Protocol"))?;
    let target = form
        .get("Endpoint")
        .ok_or_else(|| SnsError::missing("Endpoint"))?;
    let (endpoint, notification) = match protocol {
        "sqs" => {
            let queue = Arn::resource_of(target, "sqs").ok_or_else(|| {
                SnsError::invalid(format!("SQS endpoint ARN {target:?} is not a queue ARN"))
            })?;
            (
                Endpoint::Queue(queue.to_string()),
                Notification::Sns {
                    region: cx.region.clone(),
                    base_url: None,
                },
            )
        }
        "lambda" => {
            let function = Arn::resource_of(target, "lambda")
                .and_then(|r| r.strip_prefix("function:"))
                .map(|f| f.split(':').next().unwrap_or(f))
                .ok_or_else(|| {
                    SnsError::invalid(format!(
                        "Lambda endpoint ARN {target:?} is not a function ARN"
                    ))
                })?;
            (
                Endpoint::Function(function.to_string()),
                Notification::Switchyard,
            )
        }
        "http" | "https" => {
            if !target.starts_with(&format!("{protocol}://")) {
                return Err(SnsError::invalid(format!(
                    "Endpoint {target:?} is not an {protocol} URL"
                )));
            }
            let endpoint: HttpEndpoint = serde_json::from_value(json!({ "url": target }))
                .expect("a URL alone is an endpoint");
            (
                Endpoint::Http(endpoint),
                Notification::Sns {
                    region: cx.region.clone(),
                    base_url: Some(format!("http://{}", cx.host)),
                },
            )
        }
        "email" | "email-json" | "sms" | "application" | "firehose" => {
            return Err(SnsError::unsupported(format!("Protocol {protocol}")));
        }
        _ => {
            return Err(SnsError::invalid(format!(
                "Protocol {protocol:?} is not an SNS protocol"
            )));
        }
    };
    let mut spec = SubscriptionSpec {
        endpoint,
        notification,
        ..SubscriptionSpec::to_queue("")
    };
    for (k, v) in form.map("Attributes.entry", "key", "value") {
        apply_subscription_attribute(&mut spec, &k, &v)?;
    }
    let t = s.app.control.topic(topic)?;
    // Subscribing the same endpoint again answers the subscription it has, as SNS does;
    // with other attributes, SNS refuses. Where the server was reached does not count.
    let all = t.subscriptions.all();
    let existing = all.iter().find(|(_, sub)| {
        sub.endpoint == spec.endpoint && same_form(&sub.notification, &spec.notification)
    });
    if let Endpoint::Http(_) = &spec.endpoint
        && existing.is_none()
    {
        return subscribe_pending(s, cx, form, topic, spec).await;
    }
    let name = match existing {
        Some((name, sub)) if same_subscription(sub, &spec) => name.clone(),
        Some(_) => {
            return Err(SnsError::invalid(
                "Subscription already exists with different attributes",
            ));
        }
        None => {
            let name = uuid::Uuid::now_v7().to_string();
            s.app
                .control
                .put_subscription(topic, &name, spec.clone())
                .await?;
            name
        }
    };
    let mut xml = Xml::response("Subscribe", NAMESPACE);
    xml.text(
        "SubscriptionArn",
        &arn::subscription_arn(subscription_region(cx, &spec), topic, &name),
    );
    Ok(xml)
}

/// Whether two notification forms are the same but for where the server was reached.
fn same_form(a: &Notification, b: &Notification) -> bool {
    match (a, b) {
        (Notification::Sns { region: x, .. }, Notification::Sns { region: y, .. }) => x == y,
        _ => a == b,
    }
}

fn same_subscription(a: &SubscriptionSpec, b: &SubscriptionSpec) -> bool {
    same_form(&a.notification, &b.notification)
        && SubscriptionSpec {
            notification: b.notification.clone(),
            ..a.clone()
        } == *b
}

/// An `http` or `https` subscription: it waits for its endpoint to confirm it. The
/// endpoint is sent SNS's `SubscriptionConfirmation` with a token and a `SubscribeURL`
/// on this server; the same endpoint subscribed again is sent its token again.
async fn subscribe_pending(
    s: &Door<'_>,
    cx: &Context,
    form: &Form,
    topic: &str,
    spec: SubscriptionSpec,
) -> SnsResult {
    let pending = s.app.control.pending_subscriptions(topic)?;
    let (name, token) = match pending
        .into_iter()
        .find(|(_, p)| p.spec.endpoint == spec.endpoint)
    {
        Some((name, p)) if same_subscription(&p.spec, &spec) => (name, p.token),
        Some(_) => {
            return Err(SnsError::invalid(
                "Subscription already exists with different attributes",
            ));
        }
        None => (uuid::Uuid::now_v7().to_string(), crate::random_secret()),
    };
    let region = subscription_region(cx, &spec).to_string();
    let topic_arn = arn::topic_arn(&region, topic);
    let message = format!(
        "You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
    );
    let request = token_request(
        cx,
        "SubscriptionConfirmation",
        &topic_arn,
        None,
        &token,
        message,
    );
    s.app
        .control
        .put_pending_subscription(topic, &name, spec, token, request)
        .await?;
    let answer = if form.get("ReturnSubscriptionArn") == Some("true") {
        arn::subscription_arn(&region, topic, &name)
    } else {
        "pending confirmation".to_string()
    };
    let mut xml = Xml::response("Subscribe", NAMESPACE);
    xml.text("SubscriptionArn", &answer);
    Ok(xml)
}

/// What tells an endpoint a token that confirms its subscription (`kind`
/// `SubscriptionConfirmation`) or restores it (`UnsubscribeConfirmation`): SNS's message,
/// whose `SubscribeURL` is the `ConfirmSubscription` call on this server.
fn token_request(
    cx: &Context,
    kind: &str,
    topic_arn: &str,
    subscription_arn: Option<&str>,
    token: &str,
    message: String,
) -> ConfirmationRequest {
    let message_id = uuid::Uuid::now_v7().to_string();
    let subscribe_url = format!(
        "http://{}/?Action=ConfirmSubscription&TopicArn={}&Token={}",
        cx.host,
        url_encoded(topic_arn),
        url_encoded(token)
    );
    let body = json!({
        "Type": kind,
        "MessageId": message_id,
        "Token": token,
        "TopicArn": topic_arn,
        "Message": message,
        "SubscribeURL": subscribe_url,
        "Timestamp": crate::time::rfc3339_ms(crate::time::now_ms()),
    });
    let mut headers = vec![
        ("content-type".into(), "text/plain; charset=UTF-8".into()),
        ("x-amz-sns-message-type".into(), kind.into()),
        ("x-amz-sns-message-id".into(), message_id),
        ("x-amz-sns-topic-arn".into(), topic_arn.into()),
    ];
    if let Some(arn) = subscription_arn {
        headers.push(("x-amz-sns-subscription-arn".into(), arn.into()));
    }
    ConfirmationRequest {
        headers,
        body: body.to_string().into_bytes(),
    }
}

fn url_encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Confirms a subscription with the token its endpoint was sent: by the action, or by
/// the endpoint visiting its `SubscribeURL`.
async fn confirm_subscription(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let topic = topic_name(form.get("TopicArn"))?;
    let token = form
        .get("Token")
        .ok_or_else(|| SnsError::missing("Token"))?;
    let name = match s.app.control.confirm_subscription(topic, token).await {
        Ok(name) => name,
        Err(OpError::Invalid(_)) => return Err(SnsError::invalid("Invalid token")),
        Err(e) => return Err(e.into()),
    };
    let t = s.app.control.topic(topic)?;
    let region = t
        .subscriptions
        .get(&name)
        .as_ref()
        .map_or(cx.region.as_str(), |spec| subscription_region(cx, spec))
        .to_string();
    let mut xml = Xml::response("ConfirmSubscription", NAMESPACE);
    xml.text(
        "SubscriptionArn",
        &arn::subscription_arn(&region, topic, &name),
    );
    Ok(xml)
}

async fn unsubscribe(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let (topic, name) = subscription_of(form.get("SubscriptionArn"))?;
    let spec = s
        .app
        .control
        .topic(topic)
        .ok()
        .and_then(|t| t.subscriptions.get(name));
    if let Some(SubscriptionSpec {
        endpoint: Endpoint::Http(_),
        notification: Notification::Sns { region, .. },
        ..
    }) = &spec
    {
        // As SNS, the endpoint is told, with a token that restores the subscription.
        let topic_arn = arn::topic_arn(region, topic);
        let subscription_arn = arn::subscription_arn(region, topic, name);
        let message = format!(
            "You have chosen to deactivate subscription {subscription_arn}.\nTo cancel this operation and restore the subscription, visit the SubscribeURL included in this message."
        );
        let token = crate::random_secret();
        let request = token_request(
            cx,
            "UnsubscribeConfirmation",
            &topic_arn,
            Some(&subscription_arn),
            &token,
            message,
        );
        s.app
            .control
            .unsubscribe_restorably(topic, name, token, request)
            .await?;
        return Ok(Xml::response("Unsubscribe", NAMESPACE));
    }
    match s.app.control.delete_subscription(topic, name).await {
        Ok(()) => {
            // A confirmed subscription's token confirms nothing any more.
            s.app.control.drop_pending_subscription(topic, name).await?;
            Ok(Xml::response("Unsubscribe", NAMESPACE))
        }
        Err(OpError::NotFound { .. }) => {
            if s.app.control.drop_pending_subscription(topic, name).await? {
                Ok(Xml::response("Unsubscribe", NAMESPACE))
            } else {
                Err(SnsError::not_found("Subscription does not exist"))
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn list_subscriptions(s: &Door<'_>, cx: &Context, form: &Form, only: Option<&str>) -> SnsResult {
    let start = page_start(form)?;
    let topics = match only {
        Some(t) => vec![t.to_string()],
        None => s.app.control.topic_names(),
    };
    let action = if only.is_some() {
        "ListSubscriptionsByTopic"
    } else {
        "ListSubscriptions"
    };
    let mut xml = Xml::response(action, NAMESPACE);
    xml.open("Subscriptions");
    let mut seen = 0;
    for topic in &topics {
        let Ok(t) = s.app.control.topic(topic) else {
            continue;
        };
        for (name, sub) in &t.subscriptions.all() {
            seen += 1;
            if seen <= start || seen > start + SUBSCRIPTIONS_PAGE {
                continue;
            }
            let region = subscription_region(cx, sub);
            let (protocol, endpoint) = protocol_and_endpoint(cx, &sub.endpoint);
            xml.open("member")
                .text(
                    "SubscriptionArn",
                    &arn::subscription_arn(region, topic, name),
                )
                .text("Owner", arn::ACCOUNT_ID)
                .text("Protocol", protocol)
                .text("Endpoint", &endpoint)
                .text("TopicArn", &arn::topic_arn(region, topic))
                .close("member");
        }
        for (_, pending) in s.app.control.pending_subscriptions(topic)? {
            seen += 1;
            if seen <= start || seen > start + SUBSCRIPTIONS_PAGE {
                continue;
            }
            let region = subscription_region(cx, &pending.spec);
            let (protocol, endpoint) = protocol_and_endpoint(cx, &pending.spec.endpoint);
            xml.open("member")
                .text("SubscriptionArn", "PendingConfirmation")
                .text("Owner", arn::ACCOUNT_ID)
                .text("Protocol", protocol)
                .text("Endpoint", &endpoint)
                .text("TopicArn", &arn::topic_arn(region, topic))
                .close("member");
        }
    }
    xml.close("Subscriptions");
    if seen > start + SUBSCRIPTIONS_PAGE {
        xml.text("NextToken", &(start + SUBSCRIPTIONS_PAGE).to_string());
    }
    Ok(xml)
}

/// A subscription by its ARN.
fn find_subscription(
    s: &Door<'_>,
    form: &Form,
) -> Result<(String, String, SubscriptionSpec), SnsError> {
    let (topic, name) = subscription_of(form.get("SubscriptionArn"))?;
    let t = s
        .app
        .control
        .topic(topic)
        .map_err(|_| SnsError::not_found("Subscription does not exist"))?;
    let spec = t
        .subscriptions
        .get(name)
        .ok_or_else(|| SnsError::not_found("Subscription does not exist"))?;
    Ok((topic.to_string(), name.to_string(), spec))
}

/// A subscription by its ARN, or one still waiting for confirmation (`true`).
fn find_any_subscription(
    s: &Door<'_>,
    form: &Form,
) -> Result<(String, String, SubscriptionSpec, bool), SnsError> {
    match find_subscription(s, form) {
        Ok((topic, name, spec)) => Ok((topic, name, spec, false)),
        Err(not_found) => {
            let (topic, name) = subscription_of(form.get("SubscriptionArn"))?;
            s.app
                .control
                .pending_subscriptions(topic)
                .ok()
                .and_then(|p| p.into_iter().find(|(n, _)| n == name))
                .map(|(_, p)| (topic.to_string(), name.to_string(), p.spec, true))
                .ok_or(not_found)
        }
    }
}

fn get_subscription_attributes(s: &Door<'_>, cx: &Context, form: &Form) -> SnsResult {
    let (topic, name, spec, pending) = find_any_subscription(s, form)?;
    let region = subscription_region(cx, &spec);
    let (protocol, endpoint) = protocol_and_endpoint(cx, &spec.endpoint);
    let mut attrs: Vec<(&str, String)> = vec![
        (
            "SubscriptionArn",
            arn::subscription_arn(region, &topic, &name),
        ),
        ("TopicArn", arn::topic_arn(region, &topic)),
        ("Owner", arn::ACCOUNT_ID.into()),
        ("Protocol", protocol.into()),
        ("Endpoint", endpoint),
        ("RawMessageDelivery", spec.raw_message_delivery.to_string()),
        ("ConfirmationWasAuthenticated", (!pending).to_string()),
        ("PendingConfirmation", pending.to_string()),
    ];
    if let Some(policy) = &spec.filter_policy {
        attrs.push(("FilterPolicy", policy.to_string()));
        let scope = switchyard_filter::Scope::from(spec.filter_policy_scope);
        attrs.push(("FilterPolicyScope", scope.as_str().into()));
    }
    if let Some(dlq) = &spec.dead_letter_queue {
        attrs.push((
            "RedrivePolicy",
            json!({"deadLetterTargetArn": arn::queue_arn(region, dlq)}).to_string(),
        ));
    }
    let mut xml = Xml::response("GetSubscriptionAttributes", NAMESPACE);
    xml.entries("Attributes", attrs.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(xml)
}

async fn set_subscription_attributes(s: &Door<'_>, form: &Form) -> SnsResult {
    let (topic, name, mut spec) = find_subscription(s, form)?;
    let attribute = form
        .get("AttributeName")
        .ok_or_else(|| SnsError::missing("AttributeName"))?;
    let value = form.get("AttributeValue").unwrap_or_default();
    apply_subscription_attribute(&mut spec, attribute, value)?;
    s.app.control.put_subscription(&topic, &name, spec).await?;
    Ok(Xml::response("SetSubscriptionAttributes", NAMESPACE))
}

/// A publish (or batch entry) as the publish operation takes it.
fn publish_request(form: &Form) -> Result<PublishRequest, SnsError> {
    let text = form
        .get("Message")
        .ok_or_else(|| SnsError::missing("Message"))?;
    if text.is_empty() {
        return Err(SnsError::invalid("Empty message"));
    }
    let message_structure = match form.get("MessageStructure") {
        None => None,
        Some("json") => Some(MessageStructure::Json),
        Some(other) => {
            return Err(SnsError::invalid(format!(
                "MessageStructure {other:?}: the only structure is \"json\""
            )));
        }
    };
    let message = match message_structure {
        // The structure's texts are read by the publish, which names what is wrong.
        Some(MessageStructure::Json) => serde_json::value::RawValue::from_string(text.to_string())
            .map_err(|_| {
                SnsError::invalid("Message Structure - JSON message body failed to parse")
            })?,
        None => crate::wire::message_of_text(text),
    };
    let mut attributes = Map::new();
    for (name, value) in form.structure_map("MessageAttributes.entry") {
        let data_type = value.get("DataType").ok_or_else(|| {
            SnsError::invalid(format!(
                "The message attribute '{name}' must contain non-empty message attribute type."
            ))
        })?;
        let field = if data_type.starts_with("Binary") {
            "BinaryValue"
        } else {
            "StringValue"
        };
        let v = value.get(field).ok_or_else(|| {
            SnsError::invalid(format!(
                "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{data_type}'."
            ))
        })?;
        attributes.insert(name, json!({"Type": data_type, "Value": v}));
    }
    Ok(PublishRequest {
        message,
        attributes: (!attributes.is_empty()).then_some(Value::Object(attributes)),
        group_id: form.get("MessageGroupId").map(str::to_string),
        dedup_id: form.get("MessageDeduplicationId").map(str::to_string),
        id: None,
        subject: form.get("Subject").map(str::to_string),
        message_structure,
    })
}

async fn publish(s: &Door<'_>, form: &Form) -> SnsResult {
    let arn = form.get("TopicArn").or_else(|| form.get("TargetArn"));
    if arn.is_none() && form.get("PhoneNumber").is_some() {
        return Err(SnsError::unsupported("Publishing to a PhoneNumber"));
    }
    let topic = topic_name(arn)?;
    let request = publish_request(form)?;
    let outcome = s.app.publisher.publish(topic, request).await?;
    s.metrics.published.fetch_add(1, Ordering::Relaxed);
    s.metrics
        .deliveries
        .fetch_add(outcome.delivered as u64, Ordering::Relaxed);
    let mut xml = Xml::response("Publish", NAMESPACE);
    xml.text("MessageId", &outcome.message_id);
    Ok(xml)
}

async fn publish_batch(s: &Door<'_>, form: &Form) -> SnsResult {
    let topic = topic_name(form.get("TopicArn"))?;
    let entries = form.structures("PublishBatchRequestEntries.member");
    if entries.is_empty() {
        return Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "EmptyBatchRequest",
            "The batch request doesn't contain any entries.",
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "TooManyEntriesInBatchRequest",
            format!(
                "The batch request contains more entries than permissible ({} > {MAX_BATCH}).",
                entries.len()
            ),
        ));
    }
    let mut ids = Vec::with_capacity(entries.len());
    for entry in &entries {
        let id = entry
            .get("Id")
            .ok_or_else(|| SnsError::missing("PublishBatchRequestEntries.member.N.Id"))?;
        if ids.contains(&id) {
            return Err(SnsError::new(
                StatusCode::BAD_REQUEST,
                "BatchEntryIdsNotDistinct",
                format!("Two or more batch entries in the request have the same Id {id:?}."),
            ));
        }
        ids.push(id);
    }
    // Entries the door refuses never reach the publish; the rest go in one write.
    let mut failed = Vec::new();
    let mut accepted = Vec::new();
    for (entry, id) in entries.iter().zip(&ids) {
        match publish_request(entry) {
            Ok(mut request) => {
                request.id = Some(id.to_string());
                accepted.push(request);
            }
            Err(e) => failed.push((id.to_string(), e.code, e.message)),
        }
    }
    let results = if accepted.is_empty() {
        Vec::new()
    } else {
        s.app.publisher.publish_batch(topic, accepted).await?
    };
    let mut xml = Xml::response("PublishBatch", NAMESPACE);
    xml.open("Successful");
    for (id, result) in &results {
        if let Ok(outcome) = result {
            s.metrics.published.fetch_add(1, Ordering::Relaxed);
            s.metrics
                .deliveries
                .fetch_add(outcome.delivered as u64, Ordering::Relaxed);
            xml.open("member")
                .text("Id", id)
                .text("MessageId", &outcome.message_id)
                .close("member");
        }
    }
    xml.close("Successful");
    for (id, result) in results {
        if let Err(e) = result {
            let e = SnsError::from(e);
            failed.push((id, e.code, e.message));
        }
    }
    xml.open("Failed");
    for (id, code, message) in &failed {
        xml.open("member")
            .text("Id", id)
            .text("Code", code)
            .text("Message", message)
            .text("SenderFault", "true")
            .close("member");
    }
    xml.close("Failed");
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_topic_and_subscription() {
        assert_eq!(
            topic_name(Some("arn:aws:sns:us-east-1:000000000000:orders")).unwrap(),
            "orders"
        );
        for bad in [
            "arn:aws:sqs:us-east-1:000000000000:orders",
            "arn:aws:sns:us-east-1:000000000000:orders:sub",
            "orders",
        ] {
            assert!(topic_name(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            subscription_of(Some("arn:aws:sns:us-east-1:000000000000:orders:abc")).unwrap(),
            ("orders", "abc")
        );
        assert!(subscription_of(Some("arn:aws:sns:us-east-1:000000000000:orders")).is_err());
    }
}
