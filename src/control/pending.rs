//! Subscriptions that wait for their endpoint to confirm them, as SNS's `http` and
//! `https` subscriptions do: the endpoint is sent a token, and only a subscriber that
//! received it can turn the subscription into a real one. Until then nothing is
//! delivered to it.
//!
//! A pending subscription is a metadata record `pend/TOPIC/NAME` holding its spec and
//! token; confirming it puts the subscription and marks the record confirmed, so that
//! confirming again with the same token answers the same subscription.
//!
//! An http subscription that is unsubscribed leaves such a record too, unlisted: its
//! endpoint is sent a new token with which the subscription can be restored, as SNS's
//! `UnsubscribeConfirmation` offers.

use super::Control;
use crate::backend::StorageError;
use crate::error::OpError;
use crate::model::{Endpoint, FieldError, Kind, SubscriptionSpec, validate_name};
use serde::{Deserialize, Serialize};

const PENDING: &str = "pend/";

fn pending_key(topic: &str, name: &str) -> String {
    format!("{PENDING}{topic}/{name}")
}

/// A subscription waiting for its endpoint's confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSubscription {
    pub spec: SubscriptionSpec,
    /// What the endpoint was sent, and a confirmation must give back.
    pub token: String,
    /// Confirmed already: the subscription exists.
    pub confirmed: bool,
    /// Unsubscribed: the token restores it, and it is not listed as waiting.
    #[serde(default)]
    pub unsubscribed: bool,
}

/// The request that asks an endpoint to confirm: its headers and body.
pub struct ConfirmationRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Control {
    /// Records a subscription to an http endpoint that waits for confirmation, and sends
    /// the endpoint `request`. The spec is checked as a put checks it.
    pub async fn put_pending_subscription(
        &self,
        topic: &str,
        name: &str,
        spec: SubscriptionSpec,
        token: String,
        request: ConfirmationRequest,
    ) -> Result<(), OpError> {
        validate_name(Kind::Subscription, name).map_err(OpError::Invalid)?;
        self.topics.find(topic)?;
        let Endpoint::Http(endpoint) = &spec.endpoint else {
            return Err(OpError::Invalid(
                "only http endpoints confirm their subscriptions".into(),
            ));
        };
        let mut errors = spec.validate();
        errors.extend(self.private_endpoint_error(&spec).await);
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Subscription,
                name: name.into(),
                errors,
            });
        }
        let endpoint = endpoint.clone();
        let record = PendingSubscription {
            spec,
            token,
            confirmed: false,
            unsubscribed: false,
        };
        self.send_pending(topic, name, &record, endpoint, request)
            .await
    }

    /// Deletes an http subscription, keeping what restores it under `token`, and sends
    /// its endpoint `request` (which tells it the token). Not found when the topic has no
    /// such subscription.
    pub async fn unsubscribe_restorably(
        &self,
        topic: &str,
        name: &str,
        token: String,
        request: ConfirmationRequest,
    ) -> Result<(), OpError> {
        let spec = self
            .topics
            .find(topic)?
            .subscriptions
            .get(name)
            .ok_or_else(|| OpError::not_found(Kind::Subscription, name))?;
        let Endpoint::Http(endpoint) = &spec.endpoint else {
            return Err(OpError::Invalid(
                "only http subscriptions are restored by a token".into(),
            ));
        };
        let endpoint = endpoint.clone();
        self.delete_subscription(topic, name).await?;
        let record = PendingSubscription {
            spec,
            token,
            confirmed: false,
            unsubscribed: true,
        };
        self.send_pending(topic, name, &record, endpoint, request)
            .await
    }

    /// Stores `record` and sends the endpoint `request` once it is stored.
    async fn send_pending(
        &self,
        topic: &str,
        name: &str,
        record: &PendingSubscription,
        endpoint: crate::model::HttpEndpoint,
        request: ConfirmationRequest,
    ) -> Result<(), OpError> {
        self.backend
            .put_meta(
                &pending_key(topic, name),
                serde_json::to_vec(record).expect("plain data serializes"),
            )
            .await?;
        self.workers
            .send_once(endpoint, request.headers, request.body);
        Ok(())
    }

    /// A topic's subscriptions that wait for confirmation (confirmed ones left out).
    pub fn pending_subscriptions(
        &self,
        topic: &str,
    ) -> Result<Vec<(String, PendingSubscription)>, OpError> {
        Ok(self
            .pending_records(topic)?
            .into_iter()
            .filter(|(_, p)| !p.confirmed && !p.unsubscribed)
            .collect())
    }

    fn pending_records(&self, topic: &str) -> Result<Vec<(String, PendingSubscription)>, OpError> {
        let mut out = Vec::new();
        for (name, raw) in self.backend.list_meta(&format!("{PENDING}{topic}/"))? {
            let record: PendingSubscription = serde_json::from_slice(&raw).map_err(|e| {
                StorageError::Corrupt(format!("pending subscription {name:?} is unreadable: {e}"))
            })?;
            out.push((name, record));
        }
        Ok(out)
    }

    /// Confirms the subscription of `topic` that was sent `token`: puts it (once) and
    /// answers its name. An unknown token is [`OpError::Invalid`].
    pub async fn confirm_subscription(&self, topic: &str, token: &str) -> Result<String, OpError> {
        self.topics.find(topic)?;
        let Some((name, record)) = self
            .pending_records(topic)?
            .into_iter()
            .find(|(_, p)| crate::same_secret(token.as_bytes(), p.token.as_bytes()))
        else {
            return Err(OpError::Invalid(format!(
                "no subscription of topic {topic:?} waits for this token"
            )));
        };
        if !record.confirmed {
            self.put_subscription(topic, &name, record.spec.clone())
                .await?;
            let confirmed = PendingSubscription {
                confirmed: true,
                unsubscribed: false,
                ..record
            };
            self.backend
                .put_meta(
                    &pending_key(topic, &name),
                    serde_json::to_vec(&confirmed).expect("plain data serializes"),
                )
                .await?;
        }
        Ok(name)
    }

    /// Forgets a subscription's confirmation record; `true` when there was one that was
    /// still waiting (so the subscription itself does not exist).
    pub async fn drop_pending_subscription(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<bool, OpError> {
        let waiting = self
            .pending_records(topic)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| !p.confirmed && !p.unsubscribed);
        if waiting.is_some() {
            self.backend.delete_meta(&pending_key(topic, name)).await?;
        }
        Ok(waiting == Some(true))
    }

    /// Why an http endpoint may not be subscribed on this server, when it may not: a
    /// private or loopback address (or a name resolving to one) while those are refused.
    pub(super) async fn private_endpoint_error(
        &self,
        spec: &SubscriptionSpec,
    ) -> Option<FieldError> {
        let (Endpoint::Http(h), Some(lookup)) = (&spec.endpoint, &self.deny_private) else {
            return None;
        };
        crate::deliver::http::private_address_of(&h.url, lookup.as_ref())
            .await
            .map(|why| FieldError::new("endpoint.http.url", why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stored_before_unsubscribing_was_kept_reads_as_not_unsubscribed() {
        let stored = br#"{"spec":{"endpoint":{"http":{"url":"http://127.0.0.1:9/"}}},"token":"t","confirmed":false}"#;
        let record: PendingSubscription = serde_json::from_slice(stored).unwrap();
        assert!(!record.unsubscribed && !record.confirmed);
        assert_eq!(record.token, "t");
    }
}
