//! Example handler: an outbound HTTP call per event. For each event it GETs the URL in
//! its `url` config value (with the event's id in an `x-event-id` header) and fails the
//! event, to be retried, unless the answer is 2xx. The URL's host must be in the
//! function's `allowed_hosts`.

use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each, logf};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct HttpFetch;

impl Guest for HttpFetch {
    fn handle(event: Event) -> Result<(), Error> {
        let url = config("url").ok_or_else(|| Error::Fatal("no `url` in the function's env".into()))?;
        let (status, bytes) = get(&url, &event.id).map_err(Error::Retryable)?;
        if !(200..300).contains(&status) {
            return Err(Error::Retryable(format!("GET {url} answered {status}")));
        }
        logf!(Debug, "GET {url}: {status}, {bytes} bytes");
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

/// GETs `url`; returns the status and how many body bytes came back.
fn get(url: &str, event_id: &str) -> Result<(u16, usize), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("{url} is not an http(s) URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    headers
        .append("x-event-id", event_id.as_bytes())
        .map_err(|e| format!("header: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let set = request
        .set_scheme(Some(&scheme))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)));
    set.map_err(|()| format!("{url} is not a valid request target"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| refused(url, e))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("the response never came")?
        .map_err(|()| "the response was already taken")?
        .map_err(|e| refused(url, e))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = 0;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes += chunk.len(),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let code = wasi::http::types::http_error_code(&e);
                return Err(match code {
                    Some(code) => refused(url, code),
                    None => format!("reading the answer of {url}: {}", e.to_debug_string()),
                });
            }
        }
    }
    Ok((status, bytes))
}

fn refused(url: &str, code: ErrorCode) -> String {
    format!("GET {url} failed: {code:?}")
}

switchyard_guest::export!(HttpFetch);
