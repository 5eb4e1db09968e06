//! What can go wrong when talking to a Switchyard server.
//!
//! The server answers every mistake of the caller with an RFC 9457
//! `application/problem+json` body; [`Problem`] carries it unchanged (extension
//! members included) so a CLI can print it and a test can branch on its status.

use std::fmt;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An RFC 9457 problem document as the server sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the server gave none.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// A short, human-readable summary of the kind of problem.
    #[serde(default)]
    pub title: String,
    /// The HTTP status code, repeated in the body.
    pub status: u16,
    /// What went wrong with this request in particular (the failing JSON pointer of a schema
    /// violation, the receipts that could not be acknowledged, …).
    #[serde(default)]
    pub detail: String,
    /// Extension members, e.g. `acked` on a partly failed acknowledgement.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    /// The HTTP status of the problem.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Builds a problem for an error response whose body was not problem+json, so callers
    /// see one shape whatever the server (or a proxy in front of it) sent.
    pub(crate) fn from_plain(status: StatusCode, body: &[u8]) -> Self {
        Problem {
            kind: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: String::from_utf8_lossy(body).trim().to_owned(),
            extensions: Map::new(),
        }
    }

    /// The receipts a partly failed acknowledgement did delete (extension member `acked`).
    pub fn acked(&self) -> Vec<String> {
        match self.extensions.get("acked") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.title.is_empty(), self.detail.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.title, self.detail),
            (false, true) => f.write_str(&self.title),
            (true, false) => write!(f, "{}: {}", self.status(), self.detail),
            (true, true) => write!(f, "{}", self.status()),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server understood the request and refused it (4xx) or failed (5xx).
    #[error("{0}")]
    Api(Box<Problem>),
    /// No response: connection refused, reset, timed out.
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The URL that was requested.
        url: String,
        /// What the HTTP stack reported.
        #[source]
        source: reqwest::Error,
    },
    /// A successful status with a body that is not what the contract promises.
    #[error("unexpected response from {url}: {source}")]
    Decode {
        /// The URL that was requested.
        url: String,
        /// Why the body could not be read as the expected type.
        #[source]
        source: serde_json::Error,
    },
    /// The base URL cannot carry the API's paths (e.g. `mailto:` or no host).
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend, resolver setup).
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

impl ClientError {
    /// The HTTP status of a server-side refusal; `None` when there was no response.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api(problem) => Some(problem.status()),
            _ => None,
        }
    }

    /// The problem document of a server-side refusal.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Api(problem) => Some(problem),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed: no response at all, 5xx, or
    /// 429. A 4xx other than 429 will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api(problem) => {
                let status = problem.status();
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
            }
            ClientError::Decode { .. } | ClientError::InvalidUrl { .. } | ClientError::Build(_) => {
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problem_keeps_extension_members() {
        let problem: Problem = serde_json::from_value(json!({
            "type": "https://switchyard.dev/problems/stale-receipt",
            "title": "Stale receipt",
            "status": 410,
            "detail": "receipt r2 is stale",
            "acked": ["r1"]
        }))
        .unwrap();
        assert_eq!(problem.status(), StatusCode::GONE);
        assert_eq!(problem.acked(), vec!["r1".to_owned()]);
        assert_eq!(problem.to_string(), "Stale receipt: receipt r2 is stale");
    }

    #[test]
    fn plain_error_body_becomes_a_problem_with_the_body_as_detail() {
        let problem = Problem::from_plain(StatusCode::BAD_REQUEST, b"bad things\n");
        assert_eq!(problem.title, "Bad Request");
        assert_eq!(problem.detail, "bad things");
        assert_eq!(problem.kind, "about:blank");
    }

    #[test]
    fn only_server_errors_and_throttling_are_retryable() {
        let api = |status: StatusCode| ClientError::Api(Box::new(Problem::from_plain(status, b"")));
        assert!(api(StatusCode::SERVICE_UNAVAILABLE).is_retryable());
        assert!(api(StatusCode::TOO_MANY_REQUESTS).is_retryable());
        assert!(!api(StatusCode::NOT_FOUND).is_retryable());
        assert!(!api(StatusCode::CONFLICT).is_retryable());
    }
}
