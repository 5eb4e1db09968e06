//! A small blocking HTTP client over `wasi:http/outgoing-handler`, for handlers that
//! call out. The host lets a request out only to the hosts the function's
//! `allowed_hosts` names; a refusal comes back as an error naming its `wasi:http` code.

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

/// An answer: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// GETs `url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    send(Method::Get, url, headers, None)
}

/// POSTs `body` to `url` with `headers`.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
    send(Method::Post, url, headers, Some(body))
}

/// Sends one request and reads the whole answer.
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("{url} is not an http(s) URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&method)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)))
        .map_err(|()| format!("{url} is not a valid request target"))?;
    let outgoing = request.body().map_err(|()| "the request body was taken")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| failed(url, e))?;
    if let Some(bytes) = body {
        let stream = outgoing
            .write()
            .map_err(|()| "the request body stream was taken")?;
        // The host takes at most 4096 bytes per blocking write.
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending to {url}: {e:?}"))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| failed(url, e))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("the response never came")?
        .map_err(|()| "the response was already taken")?
        .map_err(|e| failed(url, e))?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "no body")?;
    let stream = incoming.stream().map_err(|()| "no body stream")?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match wasi::http::types::http_error_code(&e) {
                    Some(code) => failed(url, code),
                    None => format!("reading the answer of {url}: {}", e.to_debug_string()),
                });
            }
        }
    }
    Ok(Response { status, body })
}

fn failed(url: &str, code: ErrorCode) -> String {
    format!("{url} failed: {code:?}")
}
