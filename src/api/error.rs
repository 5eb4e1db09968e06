//! Errors as HTTP answers: every failure becomes an RFC 9457 `application/problem+json`
//! body, with a 4xx status for whatever the caller got wrong. This is the one place that
//! maps router errors to statuses.

use crate::backend::{ReceiptError, StorageError};
use crate::error::OpError;
use crate::wire::{BatchFailure, MAX_BATCH_ENTRIES};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// An error answer.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// Short slug naming the kind of problem; becomes the `type` URI.
    pub kind: &'static str,
    pub detail: String,
    /// An ack refused in part: the receipts that were acknowledged.
    pub acked: Option<Vec<String>>,
    /// Seconds after which asking again may succeed (`Retry-After`), for a refusal that
    /// will pass by itself.
    pub retry_after_s: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            acked: None,
            retry_after_s: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = crate::wire::Problem {
            kind: format!("/problems/{}", self.kind),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            acked: self.acked,
        };
        if self.status.is_server_error() {
            tracing::error!(status = body.status, detail = %body.detail, "request failed");
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).expect("a problem serializes"),
        )
            .into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// Refuses a batch of no entries or of more than [`MAX_BATCH_ENTRIES`].
pub fn check_batch(n: usize) -> Result<(), Problem> {
    if n == 0 || n > MAX_BATCH_ENTRIES {
        return Err(Problem::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH_ENTRIES} entries, got {n}"
        )));
    }
    Ok(())
}

/// A refused batch entry, with the status a request of that entry alone would get.
pub fn failures(id: String, e: OpError) -> BatchFailure {
    let p = Problem::from(e);
    BatchFailure {
        id,
        status: p.status.as_u16(),
        detail: p.detail,
    }
}

impl From<OpError> for Problem {
    fn from(e: OpError) -> Self {
        let detail = e.to_string();
        let (status, kind) = match &e {
            OpError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            OpError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid-request"),
            OpError::InvalidSpec { .. } => (StatusCode::BAD_REQUEST, "invalid-resource"),
            OpError::Attribute(_) => (StatusCode::BAD_REQUEST, "invalid-attribute"),
            OpError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            OpError::Expired(_) => (StatusCode::GONE, "expired"),
            OpError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "message-too-large"),
            OpError::SchemaViolation { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "schema-violation")
            }
            OpError::FunctionLoading { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "function-loading")
            }
            OpError::FunctionFailed { .. } => (StatusCode::CONFLICT, "function-failed"),
            OpError::Receipt(r) => receipt_status(r),
            OpError::Storage(e) => storage_status(e),
        };
        let retry_after_s = matches!(e, OpError::FunctionLoading { .. }).then_some(1);
        Problem {
            retry_after_s,
            ..Problem::new(status, kind, detail)
        }
    }
}

/// A storage failure: 503 for what may pass (the caller can retry), 507 for a full disk
/// (retry once space is freed), 404 or 409 for a
/// resource deleted or changed meanwhile, 500 for what retrying cannot mend.
fn storage_status(e: &StorageError) -> (StatusCode, &'static str) {
    match e {
        StorageError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable"),
        StorageError::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "disk-full"),
        StorageError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
        StorageError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        StorageError::Corrupt(_) | StorageError::Refused(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "storage-failed")
        }
    }
}

pub fn receipt_status(r: &ReceiptError) -> (StatusCode, &'static str) {
    match r {
        ReceiptError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid-receipt"),
        ReceiptError::Expired(_) => (StatusCode::GONE, "expired-receipt"),
    }
}

/// A query string, with what cannot be read of it answered as a problem naming it.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(q) = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::bad_request(format!("invalid query: {e}")))?;
        Ok(ApiQuery(q))
    }
}

/// A JSON body, parsed whatever the `Content-Type`, with parse errors (position and the
/// offending field included) and size limits answered as problems.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request-too-large",
                    format!(
                        "request body is larger than {} bytes",
                        super::MAX_BODY_BYTES
                    ),
                )
            } else {
                Problem::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(Problem::bad_request(
                "the request needs a JSON body".to_string(),
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body; the error names the offending field's path, e.g.
/// `invalid JSON body at delivery_policy.backoff: unknown variant ...`.
///
/// Every body is an object. serde would also read a struct from an array of its members
/// in order (`[10, 20]` as `{"max_messages": 10, "wait_s": 20}`), which the document
/// does not allow and nobody means, so a top-level array is refused here.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "invalid JSON body: expected an object, found an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // A syntax error before any key was read leaves only unknown segments (`?`):
        // naming them would say nothing.
        let unknown = path.split('.').all(|s| s.is_empty() || s == "?");
        let detail = if unknown {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body at {path}: {}", e.inner())
        };
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", detail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_struct_is_not_read_from_an_array() {
        #[derive(Debug, serde::Deserialize)]
        struct Receive {
            #[allow(dead_code)]
            max_messages: Option<u32>,
        }
        let problem = parse_json::<Receive>(b" [null]").unwrap_err();
        assert_eq!(problem.status, StatusCode::BAD_REQUEST);
        assert!(
            problem.detail.contains("expected an object"),
            "{}",
            problem.detail
        );
        assert!(parse_json::<Receive>(br#"{"max_messages": 3}"#).is_ok());
    }

    #[test]
    fn a_syntax_error_names_its_position_and_no_unknown_path() {
        let problem = parse_json::<serde_json::Value>(br#"{"message": {"a":1},"#).unwrap_err();
        let detail = &problem.detail;
        assert!(
            detail.starts_with("invalid JSON body: EOF while parsing"),
            "{detail}"
        );
        assert!(detail.contains("line 1 column 20"), "{detail}");
    }

    #[test]
    fn a_type_error_names_the_field_path() {
        #[derive(Debug, serde::Deserialize)]
        struct Policy {
            #[allow(dead_code)]
            num_retries: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Sub {
            #[allow(dead_code)]
            delivery_policy: Policy,
        }
        let problem =
            parse_json::<Sub>(br#"{"delivery_policy": {"num_retries": -1}}"#).unwrap_err();
        assert!(
            problem
                .detail
                .starts_with("invalid JSON body at delivery_policy.num_retries: "),
            "{}",
            problem.detail
        );
    }
}
