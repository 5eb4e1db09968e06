//! Every error answer: an RFC 9457 problem (`application/problem+json`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What went wrong, as RFC 9457 describes it. `type` names the kind of problem
/// (`/problems/not-found`, `/problems/invalid-resource`, ...), `detail` says what exactly,
/// naming the resource or field concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `/problems/KIND`: the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// An ack that was refused in part: the receipts that were acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<Vec<String>>,
}
