//! Subscriptions: a topic's link to an endpoint, with a filter policy.

use super::{DeliveryPolicy, Endpoint, FieldError, HttpFormat, Kind, validate_name};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// `PUT /v1/topics/{topic}/subscriptions/{name}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Where matching events go.
    pub endpoint: Endpoint,
    /// An SNS filter policy; every event matches without one.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter_policy: Option<serde_json::Value>,
    /// What the filter policy looks at.
    #[serde(default)]
    pub filter_policy_scope: FilterScope,
    /// Deliver the message itself instead of the envelope.
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// The envelope's form: Switchyard's own, or the notification SNS delivers.
    #[serde(default)]
    pub notification: Notification,
    /// Queue that receives deliveries this subscription cannot make (its queue was
    /// deleted), as SNS's subscription redrive policy.
    #[serde(default)]
    #[schema(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    pub dead_letter_queue: Option<String>,
    /// Retry policy for endpoints that can fail transiently (HTTP); queue and stream
    /// endpoints store every delivery at once and take none.
    #[serde(default)]
    pub delivery_policy: Option<DeliveryPolicy>,
}

/// Checks a filter policy for the given scope; the error names the offending key and rule.
pub fn parse_policy(
    policy: &serde_json::Value,
    scope: FilterScope,
) -> Result<switchyard_filter::Policy, String> {
    switchyard_filter::Policy::parse_scoped(policy, scope.into()).map_err(|e| e.to_string())
}

impl From<FilterScope> for switchyard_filter::Scope {
    fn from(scope: FilterScope) -> Self {
        match scope {
            FilterScope::MessageAttributes => switchyard_filter::Scope::MessageAttributes,
            FilterScope::MessageBody => switchyard_filter::Scope::MessageBody,
        }
    }
}

/// Which part of a message a filter policy looks at (SNS `FilterPolicyScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
pub enum FilterScope {
    #[default]
    MessageAttributes,
    MessageBody,
}

/// The envelope a queue or stream subscription receives when raw delivery is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Notification {
    /// Switchyard's envelope: `type`, `message_id`, `topic`, `message` (the JSON as
    /// published), `attributes`, `published_at`, `subscription`.
    #[default]
    Switchyard,
    /// The notification SNS delivers to an SQS queue: `Type`, `MessageId`, `TopicArn`
    /// (in `region`), `Subject`, `Message` (a string: a published JSON string's text,
    /// else the JSON itself), `Timestamp`, `MessageAttributes`. What subscriptions made
    /// through SNS's API receive.
    Sns {
        /// The region of the topic's ARN.
        region: String,
        /// Where this server is reached (`http://HOST`), for the `UnsubscribeURL` a
        /// notification to an http endpoint carries; none when not known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_url: Option<String>,
    },
}

impl SubscriptionSpec {
    /// Every event, in its envelope, to the queue `queue`.
    pub fn to_queue(queue: impl Into<String>) -> Self {
        SubscriptionSpec {
            endpoint: Endpoint::Queue(queue.into()),
            filter_policy: None,
            filter_policy_scope: FilterScope::MessageAttributes,
            raw_message_delivery: false,
            notification: Notification::Switchyard,
            dead_letter_queue: None,
            delivery_policy: None,
        }
    }

    /// Only the events `policy` matches in `scope`.
    pub fn filter(mut self, scope: FilterScope, policy: serde_json::Value) -> Self {
        self.filter_policy_scope = scope;
        self.filter_policy = Some(policy);
        self
    }

    /// Delivers the message itself instead of the envelope.
    pub fn raw(mut self) -> Self {
        self.raw_message_delivery = true;
        self
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match &self.endpoint {
            Endpoint::Queue(q) => {
                if let Err(e) = validate_name(Kind::Queue, q) {
                    errs.push(FieldError::new("endpoint.queue", e));
                }
            }
            Endpoint::Http(h) => h.validate(&mut errs),
            Endpoint::Function(f) => {
                if let Err(e) = validate_name(Kind::Function, f) {
                    errs.push(FieldError::new("endpoint.function", e));
                }
            }
            Endpoint::Stream {
                stream,
                partition_key,
            } => {
                if let Err(e) = validate_name(Kind::Stream, stream) {
                    errs.push(FieldError::new("endpoint.stream", e));
                }
                if let Some(p) = partition_key
                    && !(p.is_empty() || p.starts_with('/'))
                {
                    errs.push(FieldError::new(
                        "endpoint.partition_key",
                        format!("{p:?} is not a JSON pointer (it must start with '/')"),
                    ));
                }
            }
        }
        if let Some(policy) = &self.filter_policy
            && let Err(e) = parse_policy(policy, self.filter_policy_scope)
        {
            errs.push(FieldError::new("filter_policy", e));
        }
        if let Some(q) = &self.dead_letter_queue
            && let Err(e) = validate_name(Kind::Queue, q)
        {
            errs.push(FieldError::new("dead_letter_queue", e));
        }
        if let (Notification::Sns { region, .. }, _) = (&self.notification, &self.endpoint) {
            match &self.endpoint {
                Endpoint::Function(_) => errs.push(FieldError::new(
                    "notification",
                    "SNS notifications are made for queue, stream and http endpoints; function endpoints get Switchyard's event",
                )),
                Endpoint::Http(h) if h.format != HttpFormat::Envelope => {
                    errs.push(FieldError::new(
                        "notification",
                        "an http endpoint with SNS notifications sends them in SNS's own form; leave its format unset",
                    ))
                }
                _ => {}
            }
            if region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                errs.push(FieldError::new(
                    "notification.sns.region",
                    format!("{region:?} is not a region name (letters, digits and '-')"),
                ));
            }
        }
        match (&self.endpoint, &self.delivery_policy) {
            (Endpoint::Http(_) | Endpoint::Function(_), Some(p)) => errs.extend(p.validate()),
            (Endpoint::Queue(_) | Endpoint::Stream { .. }, Some(_)) => errs.push(FieldError::new(
                "delivery_policy",
                "queue and stream endpoints store every delivery at once; delivery policies are for endpoints that can fail (http)",
            )),
            _ => {}
        }
        errs
    }

    pub fn immutable_diff(&self, new: &SubscriptionSpec) -> Option<&'static str> {
        (self.endpoint != new.endpoint).then_some("endpoint")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_serializes_as_api_md_says() {
        let s: SubscriptionSpec =
            serde_json::from_str(r#"{"endpoint":{"queue":"q"},"raw_message_delivery":true}"#)
                .unwrap();
        assert_eq!(s.endpoint, Endpoint::Queue("q".into()));
        assert_eq!(s.filter_policy_scope, FilterScope::MessageAttributes);
        assert!(
            serde_json::from_str::<SubscriptionSpec>(r#"{"endpoint":{"queue":"q"},"x":1}"#)
                .is_err()
        );
    }
}

/// The notification SNS delivers when raw delivery is off ([`Notification::Sns`]): to a
/// queue as a message's body, to an http endpoint as the request's body. The signature
/// fields SNS adds are left out: they are signed with AWS's key, which no local server
/// has.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsNotification<'a> {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub message_id: &'a str,
    pub topic_arn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    pub message: &'a str,
    pub timestamp: &'a str,
    #[serde(rename = "UnsubscribeURL", skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_attributes: Option<&'a RawValue>,
}

/// The URL that ends a subscription made through SNS's API, served at `base_url`.
pub fn unsubscribe_url(base_url: &str, subscription_arn: &str) -> String {
    format!(
        "{base_url}/?Action=Unsubscribe&SubscriptionArn={}",
        form_urlencoded::byte_serialize(subscription_arn.as_bytes()).collect::<String>()
    )
}

/// The text a stored message stands for: a JSON string's contents, any other JSON as
/// itself (a published text is stored as a JSON string unless it is a JSON object or
/// array).
pub fn text_of_message(message: &RawValue) -> std::borrow::Cow<'_, str> {
    match serde_json::from_str::<String>(message.get()) {
        Ok(text) => std::borrow::Cow::Owned(text),
        Err(_) => std::borrow::Cow::Borrowed(message.get()),
    }
}
