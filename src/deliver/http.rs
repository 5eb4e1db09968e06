//! One webhook attempt: build the request in the subscription's format, sign it, send it,
//! and classify the answer as delivered, worth retrying, or failed for good.
//!
//! Signing: `x-switchyard-signature: v1=HEX` is the HMAC-SHA256, keyed with the
//! subscription's secret, of `TIMESTAMP.BODY`, where TIMESTAMP is the value of
//! `x-switchyard-timestamp` (unix seconds) and BODY the exact request body. A receiver
//! recomputes it, compares in constant time, and rejects stale timestamps.

use crate::model::{HttpEndpoint, HttpFormat, SnsNotification, is_public};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest `Retry-After` honoured; a longer one is capped so a misbehaving endpoint cannot
/// park a message past its policy's reach.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The stored form of a delivery: the envelope the publish path wrote. It names no
/// subscription (the worker knows its own, see [`super::with_subscription`]) unless it
/// was stored before that was so.
#[derive(Debug, Deserialize)]
pub struct Notification<'a> {
    pub message_id: &'a str,
    pub topic: &'a str,
    #[serde(default)]
    pub subscription: &'a str,
    #[serde(borrow)]
    pub message: &'a RawValue,
    #[serde(borrow)]
    pub attributes: &'a RawValue,
    pub published_at: &'a str,
    #[serde(default)]
    pub subject: Option<&'a str>,
}

/// What an SNS notification to an http endpoint names: the ARNs, and where to unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsArns {
    pub topic: String,
    pub subscription: String,
    /// Where the subscriber can end the subscription, when this server's address is known.
    pub unsubscribe_url: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt (timeouts, refused connections, 408, 429, 5xx); the
    /// endpoint may have said when.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx, redirects, a URL that is not allowed).
    Failed {
        reason: String,
    },
}

/// The request an attempt sends.
pub struct Request {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sets a header, leaving out one that is not valid HTTP (an endpoint's own headers are
/// checked when it is subscribed; the rest are made here).
pub fn put_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(k), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(k, v);
    }
}

/// Builds the request body and headers for `n` in the endpoint's format.
pub fn build(
    endpoint: &HttpEndpoint,
    raw: bool,
    stored: &[u8],
    n: &Notification<'_>,
    attempt: u32,
    now_unix_s: u64,
) -> Request {
    let mut headers = HeaderMap::new();
    let mut put = |k: &str, v: &str| put_header(&mut headers, k, v);
    for (k, v) in &endpoint.headers {
        put(k, v);
    }
    put("x-switchyard-message-id", n.message_id);
    put("x-switchyard-topic", n.topic);
    put("x-switchyard-subscription", n.subscription);
    put("x-switchyard-attempt", &attempt.to_string());
    // Only the formats that carry attributes as headers need them parsed.
    let attr_headers = |put: &mut dyn FnMut(&str, &str)| {
        let attrs: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(n.attributes.get()).unwrap_or_default();
        for (name, a) in &attrs {
            if let Some(v) = a.get("Value").and_then(|v| v.as_str()) {
                put(
                    &format!("x-switchyard-attr-{}", name.to_ascii_lowercase()),
                    v,
                );
            }
        }
    };
    let body = match endpoint.format {
        HttpFormat::Envelope if raw => {
            attr_headers(&mut put);
            put("content-type", "application/json");
            n.message.get().as_bytes().to_vec()
        }
        HttpFormat::Envelope => {
            put("content-type", "application/json");
            stored.to_vec()
        }
        HttpFormat::Cloudevents => {
            attr_headers(&mut put);
            put("content-type", "application/json");
            put("ce-specversion", "1.0");
            put("ce-id", n.message_id);
            put("ce-source", &format!("/switchyard/topics/{}", n.topic));
            put("ce-type", "switchyard.message");
            put("ce-time", n.published_at);
            put("ce-subject", n.subscription);
            n.message.get().as_bytes().to_vec()
        }
        HttpFormat::CloudeventsStructured => {
            put("content-type", "application/cloudevents+json");
            serde_json::to_vec(&serde_json::json!({
                "specversion": "1.0",
                "id": n.message_id,
                "source": format!("/switchyard/topics/{}", n.topic),
                "type": "switchyard.message",
                "time": n.published_at,
                "subject": n.subscription,
                "datacontenttype": "application/json",
                "data": n.message,
                "switchyardattributes": n.attributes,
            }))
            .expect("JSON values serialize")
        }
    };
    if let Some(secret) = &endpoint.secret {
        let ts = now_unix_s.to_string();
        put("x-switchyard-timestamp", &ts);
        put(
            "x-switchyard-signature",
            &format!("v1={}", sign(secret, &ts, &body)),
        );
    }
    Request { headers, body }
}

/// The request SNS sends an http endpoint for `n`: its notification (or with raw
/// delivery the message itself) as `text/plain`, with SNS's `x-amz-sns-*` headers.
pub fn build_sns(
    endpoint: &HttpEndpoint,
    raw: bool,
    n: &Notification<'_>,
    arns: &SnsArns,
) -> Request {
    let mut headers = HeaderMap::new();
    let mut put = |k: &str, v: &str| put_header(&mut headers, k, v);
    for (k, v) in &endpoint.headers {
        put(k, v);
    }
    put("content-type", "text/plain; charset=UTF-8");
    put("x-amz-sns-message-type", "Notification");
    put("x-amz-sns-message-id", n.message_id);
    put("x-amz-sns-topic-arn", &arns.topic);
    put("x-amz-sns-subscription-arn", &arns.subscription);
    let message = crate::model::text_of_message(n.message);
    let body = if raw {
        put("x-amz-sns-rawdelivery", "true");
        message.as_bytes().to_vec()
    } else {
        let attributes = (n.attributes.get() != "{}").then_some(n.attributes);
        serde_json::to_vec(&SnsNotification {
            kind: "Notification",
            message_id: n.message_id,
            topic_arn: &arns.topic,
            subject: n.subject,
            message: &message,
            timestamp: n.published_at,
            unsubscribe_url: arns.unsubscribe_url.as_deref(),
            message_attributes: attributes,
        })
        .expect("a notification serializes")
    };
    Request { headers, body }
}

/// HMAC-SHA256 of `TIMESTAMP.BODY`, hex-encoded.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    crate::hex(&mac.finalize().into_bytes())
}

/// Sends one attempt and classifies the answer.
/// `url` is `endpoint.url` parsed, when it parses.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &HttpEndpoint,
    url: Option<&reqwest::Url>,
    req: Request,
    deny_private: bool,
) -> Outcome {
    if deny_private
        && let Some(ip) = url.and_then(|u| {
            u.host_str()
                .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        })
        && !is_public(ip)
    {
        return Outcome::Failed {
            reason: format!(
                "{ip} is a private or loopback address, which this server does not deliver to"
            ),
        };
    }
    let builder = match url {
        Some(u) => client.post(u.clone()),
        None => client.post(&endpoint.url),
    };
    let res = builder
        .headers(req.headers)
        .body(req.body)
        .timeout(Duration::from_millis(endpoint.timeout_ms))
        .send()
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            let reason = if e.is_timeout() {
                format!("no answer within {} ms", endpoint.timeout_ms)
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(&e))
            } else {
                format!("request failed: {}", root_cause(&e))
            };
            return Outcome::Retry {
                reason,
                retry_after: None,
            };
        }
    };
    classify(res.status().as_u16(), res.headers().get(RETRY_AFTER))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Maps a status to an outcome: 2xx delivered; 408, 429 and 5xx retried (429 and 503
/// honouring `Retry-After` in seconds); redirects and other 4xx failed for good.
pub fn classify(status: u16, retry_after: Option<&HeaderValue>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: format!("endpoint answered {status}"),
            retry_after: if matches!(status, 429 | 503) {
                retry_after
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
            } else {
                None
            },
        },
        300..=399 => Outcome::Failed {
            reason: format!("endpoint answered {status} (redirects are not followed)"),
        },
        _ => Outcome::Failed {
            reason: format!("endpoint answered {status}"),
        },
    }
}

/// Resolves host names to addresses: the system's resolver, or one a test controls.
pub trait Lookup: Send + Sync + std::fmt::Debug {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver.
#[derive(Debug)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_string();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// A DNS resolver for webhook delivery that drops private and loopback addresses, so a
/// host name cannot smuggle a request into the internal network: it is asked at every
/// connection, so a name that resolved to a public address when it was subscribed and
/// to a private one now (DNS rebinding) is refused now.
struct PublicOnly(Arc<dyn Lookup>);

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.0.lookup(name.as_str());
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = lookup
                .await?
                .into_iter()
                .filter(|ip| is_public(*ip))
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(
                    format!("{host} resolves only to private or loopback addresses").into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why `url` may not be subscribed on a server that refuses private addresses: its host
/// is one, or resolves to one now. A name that does not resolve now is left to the check
/// at delivery, which [`PublicOnly`] makes at every connection.
pub async fn private_address_of(url: &str, lookup: &dyn Lookup) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.trim_matches(['[', ']']);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return (!is_public(ip)).then(|| {
            format!("{ip} is a private or loopback address, which this server does not deliver to")
        });
    }
    let ips = lookup.lookup(host).await.ok()?;
    let ip = ips.into_iter().find(|ip| !is_public(*ip))?;
    Some(format!(
        "{host} resolves to {ip}, a private or loopback address, which this server does not \
         deliver to"
    ))
}

/// The HTTP client for webhook delivery: pooled keep-alive connections, no redirects,
/// optionally refusing private addresses (resolving names with `lookup`).
pub fn client(deny_private: bool, lookup: Arc<dyn Lookup>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        // A proxy from the environment would connect on the server's behalf, around the
        // address check, and a loopback webhook must not go through one either.
        .no_proxy()
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
    if deny_private {
        b = b.dns_resolver(Arc::new(PublicOnly(lookup)));
    }
    b.build()
        .expect("a reqwest client with these settings always builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sns_subscription_gets_snss_notification_and_headers() {
        let stored = br#"{"type":"Notification","message_id":"m-1","topic":"t","message":"hi \"you\"","attributes":{"k":{"Type":"String","Value":"v"}},"published_at":"2026-12-06T00:00:00.000Z","subject":"s"}"#;
        let n: Notification<'_> = serde_json::from_slice(stored).unwrap();
        let endpoint: HttpEndpoint =
            serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9/"})).unwrap();
        let arns = SnsArns {
            topic: "arn:aws:sns:r:0:t".into(),
            subscription: "arn:aws:sns:r:0:t:s-1".into(),
            unsubscribe_url: Some("http://h/?Action=Unsubscribe".into()),
        };
        let req = build_sns(&endpoint, false, &n, &arns);
        let header = |k: &str| req.headers.get(k).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("x-amz-sns-message-type"), "Notification");
        assert_eq!(header("x-amz-sns-message-id"), "m-1");
        assert_eq!(
            header("x-amz-sns-subscription-arn"),
            "arn:aws:sns:r:0:t:s-1"
        );
        assert_eq!(header("content-type"), "text/plain; charset=UTF-8");
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["Message"], "hi \"you\"");
        assert_eq!(body["Subject"], "s");
        assert_eq!(body["TopicArn"], "arn:aws:sns:r:0:t");
        assert_eq!(body["UnsubscribeURL"], "http://h/?Action=Unsubscribe");
        assert_eq!(body["MessageAttributes"]["k"]["Value"], "v");
        let raw = build_sns(&endpoint, true, &n, &arns);
        assert_eq!(raw.body, b"hi \"you\"");
        assert_eq!(raw.headers.get("x-amz-sns-rawdelivery").unwrap(), "true");
    }

    #[test]
    fn statuses_are_classified_as_sns_does() {
        assert_eq!(classify(204, None), Outcome::Delivered);
        assert!(matches!(classify(500, None), Outcome::Retry { .. }));
        assert!(matches!(classify(408, None), Outcome::Retry { .. }));
        assert!(matches!(classify(400, None), Outcome::Failed { .. }));
        assert!(matches!(classify(301, None), Outcome::Failed { .. }));
        let ra = HeaderValue::from_static("7");
        assert_eq!(
            classify(429, Some(&ra)),
            Outcome::Retry {
                reason: "endpoint answered 429".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        // Retry-After on a 500 is not a promise the endpoint makes.
        assert!(matches!(
            classify(500, Some(&ra)),
            Outcome::Retry {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check against an independently computed value.
        let sig = sign("key", "1700000000", b"{}");
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, sign("key", "1700000000", b"{}"));
        assert_ne!(sig, sign("key", "1700000001", b"{}"));
        assert_ne!(sig, sign("other", "1700000000", b"{}"));
    }
}
