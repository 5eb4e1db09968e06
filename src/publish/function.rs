//! What a function published, published: a guest's `publish` calls are held until its
//! invocation succeeds, then go through the same pipeline as any publish.

use super::Publisher;
use crate::control::Control;
use crate::error::OpError;
use crate::runtime::{Attribute, AttributeValue, Body, Invocation, Publish};
use crate::wire::PublishRequest;
use base64::Engine;
use serde_json::{Value, json};

#[async_trait::async_trait]
impl crate::deliver::Outbox for Publisher {
    /// A publish that fails (unknown topic, schema) is logged and dropped: the invocation
    /// itself succeeded and is not repeated.
    async fn publish(&self, function: &str, published: Vec<Publish>) {
        for p in published {
            let req = match publish_request(&p) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(function, topic = %p.topic, error = %e, "function publish dropped");
                    continue;
                }
            };
            if let Err(e) = Publisher::publish(self, &p.topic, req).await {
                tracing::error!(function, topic = %p.topic, error = %e, "function publish refused");
            }
        }
    }

    async fn publish_json(
        &self,
        topic: &str,
        message: String,
    ) -> Result<(), crate::deliver::FeedError> {
        let req = PublishRequest {
            message: serde_json::value::RawValue::from_string(message)?,
            attributes: None,
            group_id: None,
            dedup_id: None,
            id: None,
            subject: None,
            message_structure: None,
        };
        Publisher::publish(self, topic, req).await?;
        Ok(())
    }
}

impl Publisher {
    /// Runs a function on one event of `body` as an invocation that counts: what the
    /// handler published is published once it succeeded. The invocation is returned with
    /// its outcome and logs (its publishes taken).
    pub async fn invoke(
        &self,
        control: &Control,
        function: &str,
        body: Body,
    ) -> Result<Invocation, OpError> {
        let mut inv = control.invoke_body(function, body, Vec::new()).await?;
        let published = std::mem::take(&mut inv.published);
        crate::deliver::Outbox::publish(self, function, published).await;
        Ok(inv)
    }
}

/// A guest's publish as the API would have received it.
fn publish_request(p: &Publish) -> Result<PublishRequest, String> {
    let text = match &p.body {
        Body::Text(t) => t.clone(),
        Body::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| "a binary body is not JSON")?,
    };
    // Topics carry JSON: a text that is not JSON travels as a JSON string.
    let message = match serde_json::value::RawValue::from_string(text.clone()) {
        Ok(raw) => raw,
        Err(_) => serde_json::value::to_raw_value(&text).map_err(|e| e.to_string())?,
    };
    Ok(PublishRequest {
        message,
        attributes: Some(sns_attributes(&p.attributes)),
        group_id: p.group_id.clone(),
        dedup_id: p.dedup_id.clone(),
        id: None,
        subject: None,
        message_structure: None,
    })
}

/// A guest's attributes in the API's SNS form.
pub fn sns_attributes(attrs: &[Attribute]) -> Value {
    let mut m = serde_json::Map::new();
    for a in attrs {
        let (t, v) = match &a.value {
            AttributeValue::String(s) => ("String", s.clone()),
            AttributeValue::Number(n) => ("Number", n.clone()),
            AttributeValue::StringArray(items) => ("String.Array", json!(items).to_string()),
            AttributeValue::Binary(b) => (
                "Binary",
                base64::engine::general_purpose::STANDARD.encode(b),
            ),
        };
        m.insert(a.name.clone(), json!({"Type": t, "Value": v}));
    }
    Value::Object(m)
}
