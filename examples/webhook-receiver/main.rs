//! A webhook receiver that verifies Switchyard's signatures before trusting an event.
//!
//! Run, with the secret the subscription's creating `PUT` answered
//! (`endpoint.http.secret`):
//!
//! ```sh
//! cargo run --example webhook_receiver -- --listen 127.0.0.1:9000 --secret 3f9c…
//! ```
//!
//! Every request must carry `x-switchyard-timestamp` (unix seconds) and
//! `x-switchyard-signature: v1=HEX`, where HEX is the HMAC-SHA256 keyed with the secret (as
//! text) of `TIMESTAMP + "." + BODY`. A request whose signature does not match, or whose
//! timestamp is more than five minutes away from now (a replay), gets 401; a verified one
//! is printed as a JSON line and answered 200, which tells Switchyard it was delivered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How far a signed timestamp may be from the receiver's clock. Past it a captured request
/// cannot be replayed; five minutes allows for clock skew and a retried delivery's queueing
/// (each attempt is signed afresh, with its own timestamp).
const TOLERANCE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Parser)]
#[command(about = "Receive Switchyard webhooks and verify their signatures")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The subscription's signing secret, as the creating PUT showed it.
    #[arg(long, env = "SWITCHYARD_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Rejection {
    /// A signing header is missing or not text.
    MissingHeader(&'static str),
    /// The timestamp is not a number of seconds.
    BadTimestamp,
    /// The timestamp is further from now than [`TOLERANCE`].
    Stale { age_s: i64 },
    /// The signature is not `v1=` followed by 64 hex digits.
    MalformedSignature,
    /// The signature does not match the body and timestamp.
    Mismatch,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::MissingHeader(name) => write!(f, "missing header {name}"),
            Rejection::BadTimestamp => f.write_str("x-switchyard-timestamp is not unix seconds"),
            Rejection::Stale { age_s } => write!(f, "timestamp is {age_s} s from now"),
            Rejection::MalformedSignature => f.write_str("x-switchyard-signature is not v1=HEX"),
            Rejection::Mismatch => f.write_str("signature does not match"),
        }
    }
}

/// Checks a request's signature: the timestamp first (cheap, and a replay of an old
/// request is refused even with a valid signature), then the HMAC in constant time.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8], now_s: i64) -> Result<(), Rejection> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(Rejection::MissingHeader(name))
    };
    let timestamp = header("x-switchyard-timestamp")?;
    let signature = header("x-switchyard-signature")?;
    let signed_at: i64 = timestamp.parse().map_err(|_| Rejection::BadTimestamp)?;
    let age_s = now_s - signed_at;
    if age_s.unsigned_abs() > TOLERANCE.as_secs() {
        return Err(Rejection::Stale { age_s });
    }
    let expected = signature
        .strip_prefix("v1=")
        .and_then(decode_hex)
        .ok_or(Rejection::MalformedSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // `verify_slice` compares in constant time, so timing does not leak the signature.
    mac.verify_slice(&expected).map_err(|_| Rejection::Mismatch)
}

/// Lowercase or uppercase hex to bytes; `None` for anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |byte: u8| char::from(byte).to_digit(16);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok())
        .collect()
}

fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

async fn receive(
    State(secret): State<Arc<[u8]>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if let Err(rejection) = verify(&secret, &headers, &body, unix_now()) {
        eprintln!("refused: {rejection}");
        return (StatusCode::UNAUTHORIZED, format!("{rejection}\n"));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let event: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let line = json!({
        "message_id": header("x-switchyard-message-id"),
        "topic": header("x-switchyard-topic"),
        "subscription": header("x-switchyard-subscription"),
        "attempt": header("x-switchyard-attempt"),
        "event": event,
    });
    println!("{line}");
    (StatusCode::OK, String::new())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret: Arc<[u8]> = Arc::from(args.secret.as_bytes());
    let app = axum::Router::new().fallback(receive).with_state(secret);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    eprintln!("verifying webhooks on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serve")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn signed(timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-switchyard-timestamp",
            timestamp.to_string().parse().unwrap(),
        );
        headers.insert(
            "x-switchyard-signature",
            format!("v1={hex}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_fresh_correct_signature_verifies() {
        let body = br#"{"type":"Notification"}"#;
        assert_eq!(verify(SECRET, &signed(NOW - 10, body), body, NOW), Ok(()));
    }

    #[test]
    fn another_body_or_secret_does_not_verify() {
        let headers = signed(NOW, b"{}");
        assert_eq!(
            verify(SECRET, &headers, b"{ }", NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify(b"other", &headers, b"{}", NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn timestamps_older_or_newer_than_five_minutes_are_refused() {
        let body = b"{}";
        assert!(verify(SECRET, &signed(NOW - 300, body), body, NOW).is_ok());
        assert_eq!(
            verify(SECRET, &signed(NOW - 301, body), body, NOW),
            Err(Rejection::Stale { age_s: 301 })
        );
        assert_eq!(
            verify(SECRET, &signed(NOW + 301, body), body, NOW),
            Err(Rejection::Stale { age_s: -301 })
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let body = b"{}";
        assert_eq!(
            verify(SECRET, &HeaderMap::new(), body, NOW),
            Err(Rejection::MissingHeader("x-switchyard-timestamp"))
        );
        let mut headers = signed(NOW, body);
        headers.insert("x-switchyard-signature", "v2=00".parse().unwrap());
        assert_eq!(
            verify(SECRET, &headers, body, NOW),
            Err(Rejection::MalformedSignature)
        );
        headers.insert("x-switchyard-signature", "v1=zz".parse().unwrap());
        assert_eq!(
            verify(SECRET, &headers, body, NOW),
            Err(Rejection::MalformedSignature)
        );
        headers.insert("x-switchyard-timestamp", "yesterday".parse().unwrap());
        assert_eq!(
            verify(SECRET, &headers, body, NOW),
            Err(Rejection::BadTimestamp)
        );
    }

    #[test]
    fn hex_decodes_both_cases_and_refuses_odd_lengths() {
        assert_eq!(decode_hex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("é"), None);
        assert_eq!(decode_hex("+f"), None);
    }
}
