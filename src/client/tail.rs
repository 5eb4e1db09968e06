//! Following a topic live: the server-sent events of `GET /v1/topics/{topic}/tail`, read
//! as they arrive.

use super::{Client, ClientError, error};
use crate::wire::TailedEvent;
use reqwest::{Method, Url};

/// What a topic's tail hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Tailed {
    /// A message published to the topic, with the subscriptions it was delivered to.
    Event(Box<TailedEvent>),
    /// This many events were published while the reader was too slow to take them.
    Dropped(u64),
}

/// A topic's live tail; [`TopicTail::next`] waits for the next event.
pub struct TopicTail {
    url: Url,
    response: reqwest::Response,
    /// Received bytes not yet making up a whole event.
    pending: Vec<u8>,
}

impl Client {
    /// Follows `topic` from now on, only the events `filter_policy` (an SNS filter policy
    /// in `scope`, `MessageAttributes` by default) matches when one is given.
    pub async fn tail_topic(
        &self,
        topic: &str,
        filter_policy: Option<&serde_json::Value>,
        scope: Option<&str>,
    ) -> Result<TopicTail, ClientError> {
        let mut url = self.url(&["v1", "topics", topic, "tail"]);
        if let Some(policy) = filter_policy {
            url.query_pairs_mut()
                .append_pair("filter_policy", &policy.to_string());
        }
        if let Some(scope) = scope {
            url.query_pairs_mut()
                .append_pair("filter_policy_scope", scope);
        }
        let mut request = self.http.request(Method::GET, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let transport = |source| ClientError::Transport {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(transport)?;
            return Err(ClientError::Api(Box::new(error::problem_from(
                status, &bytes,
            ))));
        }
        Ok(TopicTail {
            url,
            response,
            pending: Vec::new(),
        })
    }
}

impl TopicTail {
    /// The next event; `None` once the server ended the tail (the topic was deleted, or
    /// the server stopped).
    pub async fn next(&mut self) -> Result<Option<Tailed>, ClientError> {
        loop {
            while let Some(end) = find(&self.pending, b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                if let Some(item) = self.parse(&block)? {
                    return Ok(Some(item));
                }
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| ClientError::Transport {
                    url: self.url.to_string(),
                    source,
                })?;
            match chunk {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// One server-sent event; `None` for a keep-alive comment or an event of a kind this
    /// client does not know.
    fn parse(&self, block: &[u8]) -> Result<Option<Tailed>, ClientError> {
        let text = String::from_utf8_lossy(block);
        let (mut kind, mut data) = ("message", String::new());
        for line in text.lines() {
            if let Some(k) = line.strip_prefix("event:") {
                kind = k.trim();
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if data.is_empty() {
            return Ok(None);
        }
        let decode = |source| ClientError::Decode {
            url: self.url.to_string(),
            source,
        };
        Ok(match kind {
            "message" => Some(Tailed::Event(Box::new(
                serde_json::from_str(&data).map_err(decode)?,
            ))),
            "dropped" => {
                let v: serde_json::Value = serde_json::from_str(&data).map_err(decode)?;
                Some(Tailed::Dropped(v["dropped"].as_u64().unwrap_or(0)))
            }
            _ => None,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}
