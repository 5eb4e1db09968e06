//! What can go wrong when talking to a Switchyard server.
//!
//! The server answers every mistake of the caller with an RFC 9457
//! `application/problem+json` body, which [`ClientError::Api`] carries as the wire's
//! [`Problem`], so a CLI can print it and a test can branch on its status.

use reqwest::StatusCode;

use crate::wire::Problem;

/// Reads an error answer as a problem; a body that is not one (from a proxy in front of the
/// server, say) becomes the detail of a problem of the answer's status, so callers see one
/// shape whatever answered.
pub(crate) fn problem_from(status: StatusCode, body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: String::from_utf8_lossy(body).trim().to_owned(),
        acked: None,
    })
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
            ClientError::Api(problem) => Some(problem.status_code()),
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
                let status = problem.status_code();
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
    fn a_problem_answer_is_read_with_its_acked_receipts() {
        let body = json!({
            "type": "/problems/expired",
            "title": "Gone",
            "status": 410,
            "detail": "receipt r2 is stale",
            "acked": ["r1"]
        });
        let problem = problem_from(StatusCode::GONE, body.to_string().as_bytes());
        assert_eq!(problem.status_code(), StatusCode::GONE);
        assert_eq!(problem.acked, Some(vec!["r1".to_owned()]));
        assert_eq!(problem.to_string(), "Gone: receipt r2 is stale");
    }

    #[test]
    fn plain_error_body_becomes_a_problem_with_the_body_as_detail() {
        let problem = problem_from(StatusCode::BAD_REQUEST, b"bad things\n");
        assert_eq!(problem.title, "Bad Request");
        assert_eq!(problem.detail, "bad things");
        assert_eq!(problem.kind, "about:blank");
        assert_eq!(problem.to_string(), "Bad Request: bad things");
    }

    #[test]
    fn only_server_errors_and_throttling_are_retryable() {
        let api = |status: StatusCode| ClientError::Api(Box::new(problem_from(status, b"")));
        assert!(api(StatusCode::SERVICE_UNAVAILABLE).is_retryable());
        assert!(api(StatusCode::TOO_MANY_REQUESTS).is_retryable());
        assert!(!api(StatusCode::NOT_FOUND).is_retryable());
        assert!(!api(StatusCode::CONFLICT).is_retryable());
    }
}
