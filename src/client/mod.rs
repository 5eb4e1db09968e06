//! Typed HTTP client for a running Switchyard server: topics, subscriptions, queues,
//! streams and functions, plus [`StreamConsumer`] for programs that consume a stream as a
//! group member.
//!
//! This is the edge the CLI client subcommands ([`cli`]) and the end-to-end tests use; it
//! speaks only the public contract (the `/v1` HTTP API), never the server's internals. Its
//! requests and answers are the wire types ([`crate::wire`]), the same the server's
//! handlers read and write. Every refusal comes back as [`ClientError::Api`] carrying the
//! server's [`Problem`](crate::wire::Problem), so a caller can branch on the status and print the title and
//! detail.
//!
//! It does not retry: whether a retry is safe depends on the call (a publish without a
//! `dedup_id` is not idempotent), so that is the caller's decision
//! ([`ClientError::is_retryable`] helps).
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard::client::ClientError> {
//! use serde_json::json;
//! use switchyard::client::Client;
//! use switchyard::wire::{
//!     PublishRequest, QueueSpec, ReceiveRequest, SubscriptionSpec, TopicSpec,
//! };
//!
//! let client = Client::new("http://127.0.0.1:8088")?;
//! client.put_topic("orders", &TopicSpec::default()).await?;
//! client.put_queue("billing", &QueueSpec::default()).await?;
//! client
//!     .put_subscription("orders", "billing", &SubscriptionSpec::to_queue("billing"))
//!     .await?;
//! client.publish("orders", &PublishRequest::new(json!({"id": 1}))).await?;
//! for message in client.receive("billing", &ReceiveRequest::new(10).wait_s(5)).await? {
//!     client.ack("billing", &[message.receipt]).await?;
//! }
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod consumer;
mod error;
pub mod functions;
mod tail;

use std::time::Duration;

use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{
    AckRequest, AckResult, Batch, BatchResult, CheckpointRequest, GroupInfo, GroupSpec, MessageId,
    PlacedRecord, PollRequest, Position, PublishRequest, PutRecord, PutRecords, PutRecordsResult,
    QueueInfo, QueueSpec, ReceiveRequest, ReceivedMessage, ReceivedMessages, RecordPage,
    RedriveResult, SendRequest, ShardInfo, ShardList, StreamInfo, StreamList, StreamRecord,
    StreamSpec, SubscriptionInfo, SubscriptionList, SubscriptionSpec, TopicInfo, TopicSpec,
    VisibilityRequest,
};

pub use crate::wire::MAX_BATCH_ENTRIES;
pub use consumer::{BatchCheckpoint, CheckpointOutcome, StreamConsumer};
pub use error::ClientError;
pub use tail::{Tailed, TopicTail};

/// Most messages one receive may return.
pub const MAX_RECEIVE_MESSAGES: u32 = 10;

/// Longest long-poll a receive or a group poll may ask for, in seconds.
pub const MAX_WAIT_S: u32 = 20;

/// Most records one stream put may carry.
pub const MAX_PUT_RECORDS: usize = 500;

/// Most records one shard read or group poll may return.
pub const MAX_READ_RECORDS: u32 = 10_000;

/// Time allowed for a call that does not long-poll. Generous because a publish is answered
/// only once the event is durably stored, which under heavy load waits for a group commit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Time allowed on top of a receive's own `wait_s`, so a long poll is never cut short by
/// the client.
const LONG_POLL_GRACE: Duration = Duration::from_secs(30);

/// Time allowed to open a connection: the server is local, so this only bounds how long a
/// call to a server that is not there hangs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle connection is kept for the next call: less than the 30 s after which
/// the server closes a connection that sends no request, so a call never goes out on a
/// connection the server is closing at that moment (the call would fail unanswered).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to one Switchyard server. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    /// HTTP client with its keep-alive connection pool.
    http: reqwest::Client,
    /// Where the server listens, e.g. `http://127.0.0.1:8088/`; API paths are appended.
    base: Url,
    /// Sent as `Authorization: Bearer …` on every call when the server requires a token.
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8088`).
    ///
    /// Proxies from the environment are ignored for loopback addresses, which a proxy could
    /// not reach anyway.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = parse_base(base_url)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true);
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(ClientError::Build)?;
        Ok(Client {
            http,
            base,
            token: None,
        })
    }

    /// A client that uses a caller-built HTTP client (own pool size, timeouts, proxy).
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        Ok(Client {
            http,
            base: parse_base(base_url)?,
            token: None,
        })
    }

    /// Sends `Authorization: Bearer token` on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The URL of an API path given as segments; each segment is percent-encoded, so a name
    /// can never escape its place in the path.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `parse_base` refused URLs that cannot be a base, so the path is always editable.
        url.path_segments_mut()
            .expect("base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// `GET /healthz`: succeeds once the server accepts requests.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.call_unit(Method::GET, &["healthz"], None::<&()>).await
    }

    // ---- topics -------------------------------------------------------------------------

    /// Creates or updates a topic (idempotent; 409 for a change that is not allowed).
    pub async fn put_topic(&self, topic: &str, spec: &TopicSpec) -> Result<(), ClientError> {
        self.call_unit(Method::PUT, &["v1", "topics", topic], Some(spec))
            .await
    }

    /// Describes a topic.
    pub async fn get_topic(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        self.call(Method::GET, &["v1", "topics", topic], None::<&()>)
            .await
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        self.call_unit(Method::DELETE, &["v1", "topics", topic], None::<&()>)
            .await
    }

    /// Publishes one event; returns its message id once it is durably stored.
    pub async fn publish(
        &self,
        topic: &str,
        publish: &PublishRequest,
    ) -> Result<String, ClientError> {
        let response: MessageId = self
            .call(
                Method::POST,
                &["v1", "topics", topic, "publish"],
                Some(publish),
            )
            .await?;
        Ok(response.message_id)
    }

    /// Publishes up to [`MAX_BATCH_ENTRIES`] events; each entry succeeds or fails on its own,
    /// reported under its `id`.
    pub async fn publish_batch(
        &self,
        topic: &str,
        entries: &[PublishRequest],
    ) -> Result<BatchResult, ClientError> {
        let batch = Batch {
            entries: entries.to_vec(),
        };
        self.call(
            Method::POST,
            &["v1", "topics", topic, "publish-batch"],
            Some(&batch),
        )
        .await
    }

    // ---- subscriptions ------------------------------------------------------------------

    /// Creates or updates a subscription of `topic`.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        spec: &SubscriptionSpec,
    ) -> Result<(), ClientError> {
        self.call_unit(
            Method::PUT,
            &["v1", "topics", topic, "subscriptions", name],
            Some(spec),
        )
        .await
    }

    /// Describes a subscription.
    pub async fn get_subscription(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<SubscriptionInfo, ClientError> {
        self.call(
            Method::GET,
            &["v1", "topics", topic, "subscriptions", name],
            None::<&()>,
        )
        .await
    }

    /// Deletes a subscription.
    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<(), ClientError> {
        self.call_unit(
            Method::DELETE,
            &["v1", "topics", topic, "subscriptions", name],
            None::<&()>,
        )
        .await
    }

    /// Lists a topic's subscriptions.
    pub async fn list_subscriptions(
        &self,
        topic: &str,
    ) -> Result<Vec<SubscriptionInfo>, ClientError> {
        let listing: SubscriptionList = self
            .call(
                Method::GET,
                &["v1", "topics", topic, "subscriptions"],
                None::<&()>,
            )
            .await?;
        Ok(listing.subscriptions)
    }

    // ---- queues -------------------------------------------------------------------------

    /// Creates or updates a queue (idempotent; 409 for a change that is not allowed).
    pub async fn put_queue(&self, queue: &str, spec: &QueueSpec) -> Result<(), ClientError> {
        self.call_unit(Method::PUT, &["v1", "queues", queue], Some(spec))
            .await
    }

    /// Describes a queue, with approximate message counts.
    pub async fn get_queue(&self, queue: &str) -> Result<QueueInfo, ClientError> {
        self.call(Method::GET, &["v1", "queues", queue], None::<&()>)
            .await
    }

    /// Deletes a queue and its messages.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), ClientError> {
        self.call_unit(Method::DELETE, &["v1", "queues", queue], None::<&()>)
            .await
    }

    /// Sends one message straight to a queue; returns its id once it is durably stored.
    pub async fn send(&self, queue: &str, message: &SendRequest) -> Result<String, ClientError> {
        let response: MessageId = self
            .call(
                Method::POST,
                &["v1", "queues", queue, "messages"],
                Some(message),
            )
            .await?;
        Ok(response.message_id)
    }

    /// Sends several messages in one request; each entry succeeds or fails on its own,
    /// reported under its `id`.
    pub async fn send_batch(
        &self,
        queue: &str,
        entries: &[SendRequest],
    ) -> Result<BatchResult, ClientError> {
        let batch = Batch {
            entries: entries.to_vec(),
        };
        self.call(
            Method::POST,
            &["v1", "queues", queue, "messages"],
            Some(&batch),
        )
        .await
    }

    /// Receives up to `max_messages`, long-polling up to `wait_s`. An empty result is not an
    /// error.
    pub async fn receive(
        &self,
        queue: &str,
        receive: &ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let timeout = long_poll_timeout(receive.wait_s);
        let received: ReceivedMessages = self
            .call_with_timeout(
                Method::POST,
                &["v1", "queues", queue, "receive"],
                Some(receive),
                timeout,
            )
            .await?;
        Ok(received.messages)
    }

    /// Deletes received messages. If any receipt is invalid or stale the server answers with
    /// a problem (400 or 410) whose [`acked`](crate::wire::Problem::acked) lists the receipts that did succeed.
    pub async fn ack(&self, queue: &str, receipts: &[String]) -> Result<u64, ClientError> {
        let request = AckRequest {
            receipts: receipts.to_vec(),
        };
        let acked: AckResult = self
            .call(
                Method::POST,
                &["v1", "queues", queue, "ack"],
                Some(&request),
            )
            .await?;
        Ok(acked.acked)
    }

    /// Changes how long a received message stays invisible; 0 makes it visible at once.
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout_s: u64,
    ) -> Result<(), ClientError> {
        let body = VisibilityRequest {
            receipt: receipt.to_owned(),
            timeout_s,
        };
        self.call_unit(
            Method::POST,
            &["v1", "queues", queue, "visibility"],
            Some(&body),
        )
        .await
    }

    /// Deletes every message in a queue.
    pub async fn purge(&self, queue: &str) -> Result<(), ClientError> {
        self.call_unit(Method::POST, &["v1", "queues", queue, "purge"], None::<&()>)
            .await
    }

    /// Moves every message of a dead-letter queue back to the queue it came from; returns
    /// how many moved.
    pub async fn redrive(&self, dead_letter_queue: &str) -> Result<u64, ClientError> {
        let moved: RedriveResult = self
            .call(
                Method::POST,
                &["v1", "queues", dead_letter_queue, "redrive"],
                None::<&()>,
            )
            .await?;
        Ok(moved.moved)
    }

    // ---- streams ------------------------------------------------------------------------

    /// Lists the streams' names.
    pub async fn list_streams(&self) -> Result<Vec<String>, ClientError> {
        let names: StreamList = self
            .call(Method::GET, &["v1", "streams"], None::<&()>)
            .await?;
        Ok(names.streams)
    }

    /// Creates a stream or changes its retention (idempotent; 409 for another shard count,
    /// since resharding is not supported).
    pub async fn put_stream(&self, stream: &str, spec: &StreamSpec) -> Result<(), ClientError> {
        self.call_unit(Method::PUT, &["v1", "streams", stream], Some(spec))
            .await
    }

    /// Describes a stream and names its consumer groups.
    pub async fn get_stream(&self, stream: &str) -> Result<StreamInfo, ClientError> {
        self.call(Method::GET, &["v1", "streams", stream], None::<&()>)
            .await
    }

    /// Deletes a stream, its records and its groups.
    pub async fn delete_stream(&self, stream: &str) -> Result<(), ClientError> {
        self.call_unit(Method::DELETE, &["v1", "streams", stream], None::<&()>)
            .await
    }

    /// Appends up to [`MAX_PUT_RECORDS`] records; all are durable when this returns. The
    /// answer lists where each landed, in request order.
    pub async fn put_records(
        &self,
        stream: &str,
        records: &[PutRecord],
    ) -> Result<Vec<PlacedRecord>, ClientError> {
        let request = PutRecords {
            records: records.to_vec(),
        };
        let placed: PutRecordsResult = self
            .call(
                Method::POST,
                &["v1", "streams", stream, "records"],
                Some(&request),
            )
            .await?;
        Ok(placed.records)
    }

    /// Lists a stream's shards with their hash-key and sequence ranges.
    pub async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, ClientError> {
        let shards: ShardList = self
            .call(
                Method::GET,
                &["v1", "streams", stream, "shards"],
                None::<&()>,
            )
            .await?;
        Ok(shards.shards)
    }

    /// Reads up to `limit` records (1..=[`MAX_READ_RECORDS`]) of one shard from `from`,
    /// outside any consumer group. Read on from the page's `next` to follow the shard.
    pub async fn read_shard(
        &self,
        stream: &str,
        shard_id: &str,
        from: Position,
        limit: u32,
    ) -> Result<RecordPage, ClientError> {
        let mut url = self.url(&["v1", "streams", stream, "shards", shard_id, "records"]);
        url.query_pairs_mut()
            .append_pair("from", &from.to_string())
            .append_pair("limit", &limit.to_string());
        self.call_url(Method::GET, url, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// Creates a consumer group (idempotent; 409 when it exists with other settings).
    pub async fn put_group(
        &self,
        stream: &str,
        group: &str,
        spec: &GroupSpec,
    ) -> Result<(), ClientError> {
        self.call_unit(
            Method::PUT,
            &["v1", "streams", stream, "groups", group],
            Some(spec),
        )
        .await
    }

    /// Describes a consumer group: settings, lease holders and checkpoints.
    pub async fn get_group(&self, stream: &str, group: &str) -> Result<GroupInfo, ClientError> {
        self.call(
            Method::GET,
            &["v1", "streams", stream, "groups", group],
            None::<&()>,
        )
        .await
    }

    /// Polls as a member of a consumer group: renews its leases, takes its share of the
    /// shards and returns records from them, long-polling up to `wait_s`. A group polled
    /// before it was put is created with the defaults. An empty result is not an error.
    ///
    /// The server remembers how far each member has read, so records returned here are not
    /// returned to it again; [`checkpoint`](Self::checkpoint) is what survives the member.
    pub async fn poll(
        &self,
        stream: &str,
        group: &str,
        poll: &PollRequest,
    ) -> Result<Vec<StreamRecord>, ClientError> {
        let timeout = long_poll_timeout(poll.wait_s);
        let polled: RecordPage = self
            .call_with_timeout(
                Method::POST,
                &["v1", "streams", stream, "groups", group, "poll"],
                Some(poll),
                timeout,
            )
            .await?;
        Ok(polled.records)
    }

    /// Records that the group has processed a shard up to a sequence number; whoever holds
    /// the shard next resumes after it. 409 when `member` no longer holds the shard's lease.
    pub async fn checkpoint(
        &self,
        stream: &str,
        group: &str,
        checkpoint: &CheckpointRequest,
    ) -> Result<(), ClientError> {
        self.call_unit(
            Method::POST,
            &["v1", "streams", stream, "groups", group, "checkpoint"],
            Some(checkpoint),
        )
        .await
    }

    // ---- plumbing -----------------------------------------------------------------------

    async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        self.call_with_timeout(method, segments, body, REQUEST_TIMEOUT)
            .await
    }

    async fn call_with_timeout<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        self.call_url(method, self.url(segments), body, timeout)
            .await
    }

    /// A call to a full URL, for paths that carry a query string.
    async fn call_url<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let (url, bytes) = self.send_request(method, url, body, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            url: url.to_string(),
            source,
        })
    }

    /// A call whose success body, if any, carries nothing the caller needs.
    async fn call_unit<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.send_request(method, self.url(segments), body, REQUEST_TIMEOUT)
            .await
            .map(drop)
    }

    /// Sends one request; a success status yields the body, anything else a [`Problem`](crate::wire::Problem).
    async fn send_request<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<(Url, bytes::Bytes), ClientError> {
        let mut request = self.http.request(method, url.clone()).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source| ClientError::Transport {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok((url, bytes))
        } else {
            Err(ClientError::Api(Box::new(error::problem_from(
                status, &bytes,
            ))))
        }
    }
}

/// The time a long poll may take: its wait (the longest when the server picks it) and
/// the grace for the answer.
fn long_poll_timeout(wait_s: Option<u64>) -> Duration {
    Duration::from_secs(wait_s.unwrap_or(u64::from(MAX_WAIT_S))) + LONG_POLL_GRACE
}

fn parse_base(base_url: &str) -> Result<Url, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: base_url.to_owned(),
        reason,
    };
    let url = Url::parse(base_url).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("no host".to_owned()));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed, `[::1]`.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        let client = Client::new("http://127.0.0.1:8088").unwrap();
        assert_eq!(
            client.url(&["v1", "topics", "a/b c", "publish"]).as_str(),
            "http://127.0.0.1:8088/v1/topics/a%2Fb%20c/publish"
        );
    }

    #[test]
    fn base_url_path_prefix_is_kept() {
        let client = Client::new("http://localhost:9000/router/").unwrap();
        assert_eq!(
            client.url(&["healthz"]).as_str(),
            "http://localhost:9000/router/healthz"
        );
    }

    #[test]
    fn base_url_must_be_http_with_a_host() {
        assert!(matches!(
            Client::new("mailto:someone@example.com"),
            Err(ClientError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("not a url"),
            Err(ClientError::InvalidUrl { .. })
        ));
    }
}
