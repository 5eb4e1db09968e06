//! Every error answer: an RFC 9457 problem (`application/problem+json`).

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::fmt;
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

impl Problem {
    /// The HTTP status, as a status code.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// `title: detail`, or whichever of the two there is.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.title.is_empty(), self.detail.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.title, self.detail),
            (false, true) => f.write_str(&self.title),
            (true, false) => write!(f, "{}: {}", self.status_code(), self.detail),
            (true, true) => write!(f, "{}", self.status_code()),
        }
    }
}
