//! AWS Signature Version 4, checked: a server started with `--token` serves the AWS
//! protocols only to requests signed with access key [`ACCESS_KEY`] and the token as the
//! secret key, as the SDKs sign them (`Authorization: AWS4-HMAC-SHA256 …`).
//!
//! The canonical request is rebuilt from the request as received: method, path, query,
//! the headers the client signed, and the body's SHA-256.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The access key id that goes with the server's token.
pub const ACCESS_KEY: &str = "switchyard";

/// Why a request's signature is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error(
        "this server requires AWS requests signed with SigV4 (access key {ACCESS_KEY:?}, the server's token as the secret key)"
    )]
    Missing,
    #[error("the Authorization header is not a SigV4 header: {0}")]
    Malformed(&'static str),
    #[error("access key {0:?} is unknown here: sign with access key {ACCESS_KEY:?}")]
    UnknownKey(String),
    #[error(
        "the request signature we calculated does not match the signature you provided: sign with the server's token as the secret key"
    )]
    Mismatch,
    /// Its `X-Amz-Date` is more than [`MAX_SKEW_MS`] from the server's clock, as AWS
    /// refuses: a signed request cannot be replayed later.
    #[error("signature expired: X-Amz-Date {0} is more than 15 minutes from the server's time")]
    Expired(String),
}

impl SigError {
    /// The error code AWS answers it with, the same in every protocol.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationToken",
            SigError::Malformed(_) => "IncompleteSignature",
            SigError::UnknownKey(_) => "InvalidClientTokenId",
            SigError::Mismatch => "SignatureDoesNotMatch",
            SigError::Expired(_) => "RequestExpired",
        }
    }
}

/// How far a request's `X-Amz-Date` may be from the server's clock, as in AWS.
pub const MAX_SKEW_MS: u64 = 15 * 60 * 1000;

/// Unix milliseconds of an `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
fn amz_date_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// A request as the signature covers it.
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a axum::http::HeaderMap,
    pub body: &'a [u8],
}

/// The parts of a SigV4 `Authorization` header.
struct Authorization<'a> {
    access_key: &'a str,
    /// `DATE/REGION/SERVICE/aws4_request`.
    scope: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(header: &str) -> Result<Authorization<'_>, SigError> {
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or(SigError::Malformed(
            "it does not start with AWS4-HMAC-SHA256",
        ))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or(SigError::Malformed("it has no Credential"))?;
    let (access_key, scope) = credential
        .split_once('/')
        .ok_or(SigError::Malformed("its Credential has no scope"))?;
    if scope.split('/').count() != 4 || !scope.ends_with("/aws4_request") {
        return Err(SigError::Malformed(
            "its scope is not DATE/REGION/SERVICE/aws4_request",
        ));
    }
    Ok(Authorization {
        access_key,
        scope,
        signed_headers: signed
            .ok_or(SigError::Malformed("it has no SignedHeaders"))?
            .split(';')
            .collect(),
        signature: signature.ok_or(SigError::Malformed("it has no Signature"))?,
    })
}

/// Checks `request`'s signature against `secret`.
pub fn verify(request: &Signed<'_>, secret: &str, now_ms: u64) -> Result<(), SigError> {
    let header = request
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(SigError::Missing)?;
    let auth = parse(header)?;
    if auth.access_key != ACCESS_KEY {
        return Err(SigError::UnknownKey(auth.access_key.to_string()));
    }
    let date_time = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(SigError::Malformed("the request has no X-Amz-Date"))?;
    let canonical = canonical_request(request, &auth.signed_headers)?;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{}\n{}",
        auth.scope,
        crate::hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut parts = auth.scope.split('/');
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in parts.by_ref().take(3) {
        key = hmac(&key, part.as_bytes());
    }
    key = hmac(&key, b"aws4_request");
    let expected = crate::hex(&hmac(&key, string_to_sign.as_bytes()));
    // The signature is a function of the secret: compared in constant time.
    let same = crate::same_secret(auth.signature.as_bytes(), expected.as_bytes());
    if !same {
        return Err(SigError::Mismatch);
    }
    let at =
        amz_date_ms(date_time).ok_or(SigError::Malformed("X-Amz-Date is not YYYYMMDDTHHMMSSZ"))?;
    if at.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(SigError::Expired(date_time.to_string()));
    }
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn canonical_request(request: &Signed<'_>, signed_headers: &[&str]) -> Result<String, SigError> {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<&str> = request
            .headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(SigError::Malformed("a signed header is missing"));
        }
        let value = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(",");
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let payload = request
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| crate::hex(&Sha256::digest(request.body)));
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload}",
        request.method,
        canonical_path(request.path),
        canonical_query(request.query),
        signed_headers.join(";"),
    ))
}

/// The path as the SDKs sign it outside S3: each segment URI-encoded once more.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The query's parameters sorted by name then value, each URI-encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode(k)), uri_encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encoding as SigV4 defines it: everything but `A-Za-z0-9-_.~`.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes percent-encoding (and `+` for a space, as forms write it).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    /// AWS's own worked example ("get-vanilla" of the SigV4 test suite): key
    /// AKIDEXAMPLE, secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY.
    fn vanilla(signature: &str, key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential={key}/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={signature}"
            ))
            .unwrap(),
        );
        h
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SIGNATURE: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    /// The example's `X-Amz-Date`, 2015-08-30T12:36:00Z.
    const EXAMPLE_MS: u64 = 1_440_938_160_000;

    fn get<'a>(headers: &'a HeaderMap) -> Signed<'a> {
        Signed {
            method: "GET",
            path: "/",
            query: "",
            headers,
            body: b"",
        }
    }

    #[test]
    fn the_aws_test_suite_signature_verifies() {
        // Checked with the example's own access key, which `verify` only accepts as
        // `switchyard`; the computation is the same.
        let h = vanilla(SIGNATURE, "AKIDEXAMPLE");
        let auth = parse(h["authorization"].to_str().unwrap()).unwrap();
        let canonical = canonical_request(&get(&h), &auth.signed_headers).unwrap();
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let h = vanilla(SIGNATURE, ACCESS_KEY);
        assert_eq!(verify(&get(&h), SECRET, EXAMPLE_MS), Ok(()));
    }

    #[test]
    fn a_wrong_secret_key_or_signature_is_refused() {
        let h = vanilla(SIGNATURE, ACCESS_KEY);
        assert_eq!(
            verify(&get(&h), "another secret", EXAMPLE_MS),
            Err(SigError::Mismatch)
        );
        let tampered = SIGNATURE.replace('5', "6");
        let h = vanilla(&tampered, ACCESS_KEY);
        assert_eq!(
            verify(&get(&h), SECRET, EXAMPLE_MS),
            Err(SigError::Mismatch)
        );
        let h = vanilla(SIGNATURE, "AKIDEXAMPLE");
        assert!(matches!(
            verify(&get(&h), SECRET, EXAMPLE_MS),
            Err(SigError::UnknownKey(_))
        ));
        assert_eq!(
            verify(&get(&HeaderMap::new()), SECRET, EXAMPLE_MS),
            Err(SigError::Missing)
        );
    }

    #[test]
    fn a_request_signed_more_than_15_minutes_away_is_refused() {
        let h = vanilla(SIGNATURE, ACCESS_KEY);
        for now in [EXAMPLE_MS - MAX_SKEW_MS, EXAMPLE_MS + MAX_SKEW_MS] {
            assert_eq!(verify(&get(&h), SECRET, now), Ok(()));
        }
        for now in [
            EXAMPLE_MS - MAX_SKEW_MS - 1000,
            EXAMPLE_MS + MAX_SKEW_MS + 1000,
        ] {
            assert_eq!(
                verify(&get(&h), SECRET, now),
                Err(SigError::Expired("20150830T123600Z".into()))
            );
        }
        assert_eq!(amz_date_ms("20150830T123600Z"), Some(EXAMPLE_MS));
        for bad in [
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "20150830T123600",
            "",
        ] {
            assert_eq!(amz_date_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn queries_are_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a%20b+c&x"), "k=a%20b%20c&x=");
        assert_eq!(
            canonical_path("/2015-03-31/functions/f:1"),
            "/2015-03-31/functions/f%3A1"
        );
    }
}
