//! The HTTP API's bodies as Rust types: the one definition that the handlers answer with,
//! the client sends and reads, and the OpenAPI document is generated from.
//!
//! Requests are read strictly: a member the type does not name is refused, and integer
//! members take `8` and `8.0` alike, as JSON Schema counts both as integers. The resources'
//! `PUT` bodies are the model's specs ([`crate::model`]), which the config file and the
//! stored metadata share. Files follow the resources: `topics` (topics, publishes,
//! subscriptions), `queues`, `streams`, `functions`, `server` (health, policies), and
//! `problem` (every error answer).

mod functions;
mod problem;
mod queues;
mod server;
mod streams;
mod topics;

pub use crate::model::{
    Backoff, DeliveryPolicy, Endpoint, FilterScope, FunctionSpec, GroupSpec, HttpEndpoint,
    HttpFormat, QueueSpec, RedrivePolicy, SourceSpec, StartPosition, StreamSpec, SubscriptionSpec,
    TopicSpec,
};
pub use functions::*;
pub use problem::*;
pub use queues::*;
pub use server::*;
pub use streams::*;
pub use topics::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most entries one page of a list holds.
pub const MAX_PAGE: u32 = 1000;

/// The query of a list (`GET /v1/topics`, `/v1/queues`, a topic's subscriptions,
/// `/v1/subscriptions`): at most `limit` entries, from where the page a `next` token came
/// with ended. Without `limit`, every entry in one answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most entries in the answer, 1 to 1000; every entry when absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` token of the page before, to go on from where it ended.
    pub next: Option<String>,
}

/// Largest batch of a publish-batch, a batch send or an ack: SNS's and SQS's 10, widened
/// to 100 so a local producer can move more per request.
pub const MAX_BATCH_ENTRIES: usize = 100;

/// `{"entries": [...]}`: the body of a batch publish or send; each entry may carry an `id`
/// that its result is reported under.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch<T> {
    #[schema(min_items = 1, max_items = 100)]
    pub entries: Vec<T>,
}

/// `{"message_id": ...}`: the answer to a publish or a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageId {
    /// The message's id, or the original's when it was a FIFO duplicate.
    pub message_id: String,
}

/// The answer to a batch publish or send: which entries were stored, which refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    /// Stored entries.
    pub successful: Vec<BatchSuccess>,
    /// Refused entries, each with the status a single request would have got.
    pub failed: Vec<BatchFailure>,
}

/// A stored batch entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchSuccess {
    /// The entry's `id` from the request, or its position in the batch.
    pub id: String,
    /// The id the server gave the message.
    pub message_id: String,
}

/// A refused batch entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchFailure {
    /// The entry's `id` from the request, or its position in the batch.
    pub id: String,
    /// The HTTP status a single request with this entry would have got.
    pub status: u16,
    /// Why the entry was refused.
    pub detail: String,
}

/// `{}`: the answer of a call that has nothing to report but its success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}
