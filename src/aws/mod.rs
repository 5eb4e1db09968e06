//! The AWS front door: AWS's own wire protocols on the listener that serves `/v1`, so
//! programs written against the AWS SDKs, and the AWS CLI, work unchanged with
//! `AWS_ENDPOINT_URL` pointing at Switchyard. A request is recognised by its
//! `X-Amz-Target` header (the JSON protocols) or by a form-encoded body (the query
//! protocol); it is answered by the same operations (`queue`, `control`, `publish`)
//! that `/v1` calls, never by a copy of them.
//!
//! Served so far: SQS over its JSON protocol ([`sqs`]) and its query protocol
//! ([`sqs_query`]), SNS over the query protocol ([`sns`]), Kinesis over its JSON and
//! CBOR protocols ([`kinesis`]), and Lambda over its REST protocol ([`lambda`]).
//!
//! Without `--token` any SigV4 signature is accepted, as by every local emulator, and
//! only the region is read from its credential scope. With `--token`, a request must be
//! signed with access key `switchyard` and the token as the secret key ([`sigv4`]).

mod kinesis;
mod lambda;
mod query;
pub mod sigv4;
mod sns;
mod sqs;
mod sqs_query;

use crate::app::{App, Metrics};
use axum::http::{HeaderMap, header};
use axum::response::Response;

pub use crate::model::arn::{ACCOUNT_ID, DEFAULT_REGION};

/// What every AWS handler needs to know of its request besides its body.
#[derive(Debug, Clone)]
pub struct Context {
    /// `Host` as the client sent it: queue URLs are built on it, so they lead back here.
    pub host: String,
    /// From the SigV4 credential scope, for ARNs.
    pub region: String,
}

impl Context {
    fn of(headers: &HeaderMap) -> Context {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let region = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(credential_region)
            .unwrap_or(DEFAULT_REGION)
            .to_string();
        Context { host, region }
    }
}

/// The region of a SigV4 `Authorization` header: `… Credential=KEY/DATE/REGION/SERVICE/aws4_request, …`.
fn credential_region(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    let region = scope.split('/').nth(2)?;
    (!region.is_empty()).then_some(region)
}

pub use lambda::is_lambda_path;

/// Whether a request is meant for the AWS door.
pub fn is_aws_request(headers: &HeaderMap) -> bool {
    headers.contains_key("x-amz-target") || is_form(headers)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
}

/// Whether a path is a queue URL's: `/ACCOUNT/NAME`, the account all digits.
fn queue_path(path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(account), Some(name), None)
            if !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
    )
}

/// The service of a SigV4 credential scope (`…/REGION/SERVICE/aws4_request`).
fn credential_service(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3)
}

/// Which service a query-protocol request is for: its credential scope says, else its
/// `Version` (each service has its own).
fn query_service<'a>(headers: &'a HeaderMap, form: &'a query::Form) -> Option<&'a str> {
    let scoped = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential_service);
    scoped.or(match form.get("Version") {
        Some("2010-03-31") => Some("sns"),
        Some("2012-11-05") => Some("sqs"),
        _ => None,
    })
}

/// What the door answers with: the operations, the counters every door shares, and
/// whether the server requires a token.
pub struct Door<'a> {
    pub app: &'a App,
    pub metrics: &'a Metrics,
    /// The server's token: the secret key requests must be signed with.
    pub token: Option<&'a str>,
}

impl Door<'_> {
    /// Whether a request may be served: always without a token; with one, only when it is
    /// signed with it.
    fn check_signature(&self, request: &sigv4::Signed<'_>) -> Result<(), sigv4::SigError> {
        match self.token {
            None => Ok(()),
            Some(token) => sigv4::verify(request, token, crate::time::now_ms()),
        }
    }

    /// A request with an `X-Amz-Target` or a form, routed to the service it names once
    /// its signature is checked (with a token).
    pub async fn dispatch(&self, request: &sigv4::Signed<'_>) -> Response {
        let headers = request.headers;
        if !headers.contains_key("x-amz-target") {
            return self.dispatch_query(request).await;
        }
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let cx = Context::of(headers);
        match target.split_once('.') {
            Some(("AmazonSQS", action)) => {
                if let Err(e) = self.check_signature(request) {
                    return sqs::SqsError::signature(&e).into_response_json();
                }
                sqs::json(self, &cx, action, request.body).await
            }
            Some(("Kinesis_20131202", action)) => {
                let protocol = kinesis::Protocol::of(headers);
                if let Err(e) = self.check_signature(request) {
                    return kinesis::KinesisError::signature(&e).into_response(protocol);
                }
                kinesis::serve(self, &cx, protocol, action, request.body).await
            }
            _ => sqs::SqsError::unknown_target(target).into_response_json(),
        }
    }

    /// A Lambda request: a REST path [`is_lambda_path`] accepts.
    pub async fn dispatch_lambda(&self, request: &sigv4::Signed<'_>) -> Response {
        if let Err(e) = self.check_signature(request) {
            return lambda::LambdaError::signature(&e).into_response();
        }
        let cx = Context::of(request.headers);
        let lambda_request = lambda::Request {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        lambda::serve(self, &cx, lambda_request).await
    }

    /// A `GET` of one of the links SNS hands out: a `SubscribeURL`
    /// (`?Action=ConfirmSubscription&TopicArn=…&Token=…`), which its token authenticates,
    /// or an `UnsubscribeURL` (`?Action=Unsubscribe&SubscriptionArn=…`), which with
    /// `--token` must be signed like any request. `None` for any other `GET`.
    pub async fn dispatch_link(&self, request: &sigv4::Signed<'_>) -> Option<Response> {
        let form = query::Form::parse(request.query.as_bytes());
        let cx = Context::of(request.headers);
        match form.get("Action") {
            Some("ConfirmSubscription") => {}
            Some("Unsubscribe") => {
                if let Err(e) = self.check_signature(request) {
                    return Some(sns::SnsError::signature(&e).into_response_xml());
                }
            }
            _ => return None,
        }
        Some(sns::query(self, &cx, &form).await)
    }

    /// A query-protocol request: form-encoded, answered in XML.
    async fn dispatch_query(&self, request: &sigv4::Signed<'_>) -> Response {
        let form = query::Form::parse(request.body);
        let cx = Context::of(request.headers);
        match query_service(request.headers, &form) {
            Some("sns") => {
                if let Err(e) = self.check_signature(request) {
                    return sns::SnsError::signature(&e).into_response_xml();
                }
                sns::query(self, &cx, &form).await
            }
            Some("sqs") => {
                if let Err(e) = self.check_signature(request) {
                    return sqs_query::error_xml(sqs::SqsError::signature(&e));
                }
                // Older SDKs POST a queue's requests to the queue's URL.
                let queue_url =
                    queue_path(request.path).then(|| format!("http://{}{}", cx.host, request.path));
                sqs_query::query(self, &cx, &form, queue_url).await
            }
            Some(service) => query::unsupported_service(service),
            None => query::unsupported_service("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{credential_region, credential_service, queue_path};

    #[test]
    fn a_queue_path_is_an_account_and_a_name() {
        assert!(queue_path("/000000000000/jobs"));
        assert!(!queue_path("/"));
        assert!(!queue_path("/v1/topics"));
        assert!(!queue_path("/000000000000/jobs/x"));
        assert!(!queue_path("/000000000000/"));
    }

    #[test]
    fn the_region_comes_from_the_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20261206/eu-west-1/sqs/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(credential_region(auth), Some("eu-west-1"));
        assert_eq!(credential_region("Bearer x"), None);
        assert_eq!(credential_service(auth), Some("sqs"));
        assert_eq!(
            credential_region("AWS4-HMAC-SHA256 Credential=AKID/20261206//sqs/aws4_request"),
            None
        );
    }
}
