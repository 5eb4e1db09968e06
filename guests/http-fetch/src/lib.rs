//! Example handler: an outbound HTTP call per event. For each event it GETs the URL in
//! its `url` config value (with the event's id in an `x-event-id` header) and fails the
//! event, to be retried, unless the answer is 2xx. The URL's host must be in the
//! function's `allowed_hosts`.

use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each, http, logf};

struct HttpFetch;

impl Guest for HttpFetch {
    fn handle(event: Event) -> Result<(), Error> {
        let url =
            config("url").ok_or_else(|| Error::Fatal("no `url` in the function's env".into()))?;
        let answer = http::get(&url, &[("x-event-id", &event.id)])
            .map_err(|e| Error::Retryable(format!("GET {e}")))?;
        if !answer.is_success() {
            return Err(Error::Retryable(format!(
                "GET {url} answered {}",
                answer.status
            )));
        }
        logf!(
            Debug,
            "GET {url}: {}, {} bytes",
            answer.status,
            answer.body.len()
        );
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(HttpFetch);
