//! Where a subscription delivers: a queue, a stream, an HTTP endpoint or a function.

use super::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use utoipa::ToSchema;

/// Where a subscription delivers. Written as `{"queue":"q"}` or
/// `{"stream":"s","partition_key":"/json/pointer"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EndpointRepr", into = "EndpointRepr")]
pub enum Endpoint {
    Queue(String),
    Stream {
        stream: String,
        /// JSON pointer into the message naming the partition key; the message id when
        /// absent or when the pointer finds nothing.
        partition_key: Option<String>,
    },
    Http(HttpEndpoint),
    /// A WebAssembly function, by name.
    Function(String),
}

/// How an HTTP endpoint receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HttpFormat {
    /// The JSON envelope (or, with raw delivery, the message itself).
    #[default]
    Envelope,
    /// CloudEvents 1.0 binary mode: `ce-*` headers, the message as the body.
    Cloudevents,
    /// CloudEvents 1.0 structured mode: `application/cloudevents+json`.
    CloudeventsStructured,
}

/// Default time an endpoint has to answer (SNS: 15 s; local endpoints answer faster).
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 5_000;
/// Longest an endpoint may take to answer before the attempt counts as failed.
pub const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;
/// Default and largest number of requests in flight to one endpoint.
pub const DEFAULT_HTTP_CONCURRENCY: u32 = 16;
pub const MAX_HTTP_CONCURRENCY: u32 = 256;

/// `{"http": {...}}`: a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpoint {
    /// An `http` or `https` URL with a host.
    pub url: String,
    /// Extra request headers, e.g. an API key of the receiver.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long the endpoint has to answer (default 5000).
    #[serde(
        default = "default_http_timeout_ms",
        deserialize_with = "super::whole::u64"
    )]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: u64,
    /// Requests in flight at once (default 16).
    #[serde(
        default = "default_http_concurrency",
        deserialize_with = "super::whole::u32"
    )]
    #[schema(minimum = 1, maximum = 256)]
    pub max_concurrency: u32,
    /// What the endpoint receives.
    #[serde(default)]
    pub format: HttpFormat,
    /// Key of the `x-switchyard-signature` HMAC. Generated when not given; shown once, in
    /// the answer to the `PUT` that created the subscription.
    #[serde(default)]
    #[schema(min_length = 16, max_length = 256)]
    pub secret: Option<String>,
}

fn default_http_timeout_ms() -> u64 {
    DEFAULT_HTTP_TIMEOUT_MS
}

fn default_http_concurrency() -> u32 {
    DEFAULT_HTTP_CONCURRENCY
}

impl HttpEndpoint {
    pub fn validate(&self, errs: &mut Vec<FieldError>) {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => errs.push(FieldError::new(
                "endpoint.http.url",
                format!(
                    "{:?} must be an http or https URL with a host, not {:?}",
                    self.url,
                    u.scheme()
                ),
            )),
            Err(e) => errs.push(FieldError::new(
                "endpoint.http.url",
                format!("{:?} is not a URL: {e}", self.url),
            )),
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                errs.push(FieldError::new(
                    format!("endpoint.http.headers.{k}"),
                    "not a valid HTTP header",
                ));
            }
        }
        if !(1..=MAX_HTTP_TIMEOUT_MS).contains(&self.timeout_ms) {
            errs.push(FieldError::new(
                "endpoint.http.timeout_ms",
                format!("must be between 1 and {MAX_HTTP_TIMEOUT_MS}"),
            ));
        }
        if !(1..=MAX_HTTP_CONCURRENCY).contains(&self.max_concurrency) {
            errs.push(FieldError::new(
                "endpoint.http.max_concurrency",
                format!("must be between 1 and {MAX_HTTP_CONCURRENCY}"),
            ));
        }
        if let Some(s) = &self.secret
            && !(16..=256).contains(&s.len())
        {
            errs.push(FieldError::new(
                "endpoint.http.secret",
                "must be 16 to 256 characters",
            ));
        }
    }
}

/// The wire form of [`Endpoint`]: one object with exactly one kind key.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EndpointRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function: Option<String>,
}

impl TryFrom<EndpointRepr> for Endpoint {
    type Error = String;

    fn try_from(r: EndpointRepr) -> Result<Self, String> {
        match (r.queue, r.stream, r.http, r.function) {
            (Some(q), None, None, None) => {
                if r.partition_key.is_some() {
                    return Err("partition_key goes with a stream endpoint, not a queue".into());
                }
                Ok(Endpoint::Queue(q))
            }
            (None, Some(stream), None, None) => Ok(Endpoint::Stream {
                stream,
                partition_key: r.partition_key,
            }),
            (None, None, Some(h), None) => {
                if r.partition_key.is_some() {
                    return Err("partition_key goes with a stream endpoint, not http".into());
                }
                Ok(Endpoint::Http(h))
            }
            (None, None, None, Some(f)) => {
                if r.partition_key.is_some() {
                    return Err("partition_key goes with a stream endpoint, not a function".into());
                }
                Ok(Endpoint::Function(f))
            }
            _ => Err(
                r#"an endpoint names exactly one of "queue", "stream", "http" or "function""#
                    .into(),
            ),
        }
    }
}

impl From<Endpoint> for EndpointRepr {
    fn from(e: Endpoint) -> Self {
        match e {
            Endpoint::Queue(q) => EndpointRepr {
                queue: Some(q),
                ..Default::default()
            },
            Endpoint::Stream {
                stream,
                partition_key,
            } => EndpointRepr {
                stream: Some(stream),
                partition_key,
                ..Default::default()
            },
            Endpoint::Http(h) => EndpointRepr {
                http: Some(h),
                ..Default::default()
            },
            Endpoint::Function(f) => EndpointRepr {
                function: Some(f),
                ..Default::default()
            },
        }
    }
}

/// The schema of [`Endpoint`]'s wire form: one object naming exactly one kind of endpoint
/// (serde reads it through `EndpointRepr`, which words the error when it does not).
impl utoipa::PartialSchema for Endpoint {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::EndpointKinds::schema()
    }
}

impl ToSchema for Endpoint {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <schema::EndpointKinds as ToSchema>::schemas(schemas);
    }
}

/// Types that only describe the wire form of an endpoint in the OpenAPI document.
mod schema {
    #![allow(dead_code)]
    use super::HttpEndpoint;
    use serde::Deserialize;
    use utoipa::ToSchema;

    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub(super) enum EndpointKinds {
        Queue(QueueEndpoint),
        Stream(StreamEndpoint),
        Http(HttpEndpointWrapper),
        Function(FunctionEndpoint),
    }

    /// Deliveries stored in a queue.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct QueueEndpoint {
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        queue: String,
    }

    /// Deliveries appended to a stream.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct StreamEndpoint {
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        stream: String,
        /// JSON pointer into the message naming the partition key; the message id when
        /// absent or when the pointer finds nothing.
        #[serde(default)]
        #[schema(pattern = "^(/.*)?$")]
        partition_key: Option<String>,
    }

    /// Deliveries sent to a webhook.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(as = HttpEndpointKind)]
    pub(super) struct HttpEndpointWrapper {
        http: HttpEndpoint,
    }

    /// Deliveries handed to a WebAssembly function.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct FunctionEndpoint {
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        function: String,
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// unique-local, unspecified, multicast or documentation ranges).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg & 0xfe00) == 0xfc00
                || (seg & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "100.64.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
