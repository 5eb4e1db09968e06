//! Outbound HTTP: a function may import `wasi:http/outgoing-handler`, and every request
//! it sends passes here first. A request goes out only to a host the function's
//! `allowed_hosts` names (none by default), and under `--deny-private-endpoints` only to
//! public addresses; it may take no longer than what is left of the invocation's
//! deadline, and its response body no more than [`MAX_RESPONSE_BYTES`]. A refusal
//! reaches the guest as the `wasi:http` error code that says why, and the invocation's
//! log and the server's log say it in words, with the function's name.

use super::logs::SharedLogs;
use super::types::{Level, LogSource};
use crate::model::{AllowedHosts, hosts};
use bytes::Bytes;
use http::uri::{Authority, Scheme, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use std::time::Instant;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Largest response body a guest may read from one request.
pub const MAX_RESPONSE_BYTES: u64 = 8 << 20;

/// The outbound side of one invocation's store.
pub(crate) struct Outbound {
    function: Arc<str>,
    allowed: AllowedHosts,
    deny_private: bool,
    /// When the invocation must end; no request outlives it.
    deadline: Instant,
    /// The invocation's log, where refusals are told.
    pub(crate) logs: SharedLogs,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let refusal = Refusal {
            function: self.function.clone(),
            logs: self.logs.clone(),
        };
        let checked = self.check(request.uri());
        let (deny_private, deadline) = (self.deny_private, self.deadline);
        Box::new(async move {
            let (scheme, host, port) =
                checked.map_err(|why| refusal.refuse(why, Error::HttpRequestDenied))?;
            let mut request = request;
            if deny_private {
                let addr = public_address(&host, port)
                    .await
                    .map_err(|(why, code)| refusal.refuse(why, code))?;
                // Plain HTTP connects to the address just checked, so a name cannot
                // resolve to a private one at connect time; over TLS the certificate
                // must name the host, which a private server posing as it lacks.
                if scheme == Scheme::HTTP {
                    pin_address(&mut request, addr);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(refusal.refuse(
                    "the invocation's deadline has passed".into(),
                    Error::ConnectionTimeout,
                ));
            }
            let options = within(options, left);
            let sent = tokio::time::timeout(
                left,
                wasmtime_wasi_http::default_send_request(request, Some(options)),
            )
            .await;
            let (response, io) = match sent {
                Ok(r) => r?,
                Err(_) => {
                    return Err(refusal.refuse(
                        format!("no answer from {host} within the {left:?} left of the invocation"),
                        Error::HttpResponseTimeout,
                    ));
                }
            };
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_RESPONSE_BYTES) {
                return Err(refusal.too_large(&host));
            }
            let response = response.map(|body| {
                Capped {
                    inner: body.boxed_unsync(),
                    left: MAX_RESPONSE_BYTES,
                    host,
                    refusal,
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

impl Outbound {
    /// For an invocation of `function` that may call out to `allowed` until `deadline`.
    pub(crate) fn new(
        function: Arc<str>,
        allowed: AllowedHosts,
        deny_private: bool,
        deadline: Instant,
    ) -> Outbound {
        Outbound {
            function,
            allowed,
            deny_private,
            deadline,
            logs: SharedLogs::default(),
        }
    }

    /// For a store that may call nothing.
    #[cfg(test)]
    pub(crate) fn none(function: Arc<str>) -> Outbound {
        Outbound::new(function, AllowedHosts::default(), true, Instant::now())
    }

    /// The scheme, host and port of `uri` if `allowed_hosts` lets the request out.
    fn check(&self, uri: &Uri) -> Result<(Scheme, String, u16), String> {
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let authority = uri
            .authority()
            .ok_or_else(|| format!("the request to {uri} names no host"))?;
        let host = authority.host().to_string();
        let port = authority
            .port_u16()
            .unwrap_or_else(|| hosts::default_port(scheme.as_str()));
        if self.allowed.allows(scheme.as_str(), &host, port) {
            Ok((scheme, host, port))
        } else {
            Err(format!(
                "{scheme}://{host}:{port} is not in the function's allowed_hosts"
            ))
        }
    }
}

/// What a refused request leaves behind: a line in the invocation's log and one in the
/// server's, both naming the function.
struct Refusal {
    function: Arc<str>,
    logs: SharedLogs,
}

impl Refusal {
    fn refuse(&self, why: String, code: Error) -> Error {
        tracing::warn!(function = %self.function, "outbound request refused: {why}");
        self.logs.lock().push(
            Level::Warn,
            LogSource::Host,
            format!("outbound request refused: {why}"),
        );
        code
    }

    fn too_large(&self, host: &str) -> Error {
        self.refuse(
            format!("the answer from {host} is larger than {MAX_RESPONSE_BYTES} bytes"),
            Error::HttpResponseBodySize(Some(MAX_RESPONSE_BYTES)),
        )
    }
}

/// The address to connect to for `host`, if every address it has is public: a name with
/// one private address among others is refused, as the connection could use that one.
async fn public_address(host: &str, port: u16) -> Result<SocketAddr, (String, Error)> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| {
                (
                    format!("{host} could not be resolved: {e}"),
                    Error::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    },
                )
            })?
            .collect(),
    };
    if let Some(private) = addrs.iter().find(|a| !crate::model::is_public(a.ip())) {
        return Err((
            format!(
                "{host} resolves to the private address {}, refused under --deny-private-endpoints",
                private.ip()
            ),
            Error::DestinationIpProhibited,
        ));
    }
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| (format!("{host} has no address"), Error::DestinationNotFound))
}

/// Points `request` at `addr`; its `Host` header keeps the name.
fn pin_address(request: &mut http::Request<WasiBody>, addr: SocketAddr) {
    let mut parts = request.uri().clone().into_parts();
    if let Ok(authority) = Authority::try_from(addr.to_string()) {
        parts.authority = Some(authority);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// The guest's timeouts, none longer than what is left of the invocation.
fn within(options: Option<RequestOptions>, left: Duration) -> RequestOptions {
    let o = options.unwrap_or_default();
    let cap = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
    RequestOptions {
        connect_timeout: cap(o.connect_timeout),
        first_byte_timeout: cap(o.first_byte_timeout),
        between_bytes_timeout: cap(o.between_bytes_timeout),
    }
}

/// A response body that fails once it exceeds [`MAX_RESPONSE_BYTES`].
struct Capped {
    inner: WasiBody,
    left: u64,
    host: String,
    refusal: Refusal,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            let n = data.len() as u64;
            if n > self.left {
                self.left = 0;
                return Poll::Ready(Some(Err(self.refusal.too_large(&self.host))));
            }
            self.left -= n;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_never_outlast_the_invocation() {
        let left = Duration::from_millis(300);
        let o = within(
            Some(RequestOptions {
                connect_timeout: Some(Duration::from_millis(100)),
                first_byte_timeout: Some(Duration::from_secs(60)),
                between_bytes_timeout: None,
            }),
            left,
        );
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(100)));
        assert_eq!(o.first_byte_timeout, Some(left));
        assert_eq!(o.between_bytes_timeout, Some(left));
    }
}
