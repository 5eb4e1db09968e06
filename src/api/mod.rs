//! The HTTP API (`/v1`, JSON): thin handlers that parse a request into a wire type, call
//! the operations and answer with a wire type.
//!
//! Each handler carries its OpenAPI description (`#[utoipa::path]`), and the routes are
//! registered together with their descriptions, so the document served at
//! `/openapi.json` lists exactly the routes there are, with the wire types' schemas.
//! [`app`] builds the whole `axum::Router`, so tests drive it without a socket. Errors
//! are rendered by [`error::Problem`], the one place that maps them to statuses.
//!
//! Files follow the resources: `topics` (topics, subscriptions, publishes), `queues`,
//! `streams`, `functions`, `server` (health, readiness, metrics, policy tests).

/// Declares a file's routes once, by their handlers. `$routes()` routes each handler on
/// the path and methods its `#[utoipa::path]` description names, without building the
/// description: the server serves these, and does not build the whole document at each
/// start. `$documented()` registers the same handlers with their descriptions, for the
/// document.
macro_rules! handlers {
    ($routes:ident, $documented:ident: $($handler:ident),+ $(,)?) => {
        pub(super) fn $routes() -> axum::Router<$crate::api::AppState> {
            let routes = axum::Router::new();
            $(let routes = pastey::paste!(
                $crate::api::route::<[<__path_ $handler>], _, _>(routes, $handler)
            );)+
            routes
        }

        pub(super) fn $documented() -> utoipa_axum::router::OpenApiRouter<$crate::api::AppState> {
            utoipa_axum::router::OpenApiRouter::new()
                $(.routes(utoipa_axum::routes!($handler)))+
        }
    };
}

pub mod error;
mod functions;
pub mod listen;
mod metrics;
mod openapi;
mod page;
mod queues;
mod server;
mod streams;
mod topics;

#[cfg(test)]
pub(crate) mod tests;

use crate::app::{App, Metrics};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router as Routes};
use error::Problem;
use openapi::Problems;
pub use openapi::openapi;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;

/// Largest request body: a full batch of 100 messages at the 256 KiB limit fits.
pub const MAX_BODY_BYTES: usize = 100 * 256 * 1024 + 64 * 1024;

/// What every handler shares. One `Arc`, because axum clones the state for each request
/// and each layer it passes.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub app: Arc<App>,
    pub metrics: Metrics,
    /// When set, every `/v1` call needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Whether `/metrics` needs the token too.
    pub token_on_metrics: bool,
    /// The OpenAPI document, serialized on its first request: building it allocates far
    /// more than it keeps, and a server that is never asked for it should not pay that.
    openapi: std::sync::OnceLock<bytes::Bytes>,
}

impl AppState {
    /// The state of a server that requires `token` on `/v1` (and on `/metrics` when
    /// `token_on_metrics` is set).
    pub fn new(app: Arc<App>, token: Option<String>, token_on_metrics: bool) -> Self {
        Self(Arc::new(Shared {
            app,
            metrics: Metrics::default(),
            token_on_metrics: token_on_metrics && token.is_some(),
            token,
            openapi: std::sync::OnceLock::new(),
        }))
    }
}

impl Shared {
    /// The served OpenAPI document.
    pub fn openapi_document(&self) -> bytes::Bytes {
        self.openapi
            .get_or_init(|| {
                serde_json::to_vec_pretty(&openapi())
                    .expect("the OpenAPI document serializes")
                    .into()
            })
            .clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

type ApiResult<T> = Result<T, Problem>;

/// The `/v1` routes, each with its OpenAPI description.
fn v1_documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(topics::documented())
        .merge(queues::documented())
        .merge(streams::documented())
        .merge(functions::documented())
        .merge(server::v1_documented())
}

/// Routes `handler` on the path and methods its OpenAPI description `P` names.
fn route<P, H, T>(routes: Routes<AppState>, handler: H) -> Routes<AppState>
where
    P: utoipa::Path,
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    use utoipa_axum::PathItemExt;
    let methods = P::methods()
        .iter()
        .fold(axum::routing::MethodRouter::new(), |methods, method| {
            methods.on(method.to_method_filter(), handler.clone())
        });
    routes.route(&P::path(), methods)
}

/// The whole HTTP API over `state`.
pub fn app(state: AppState) -> Routes {
    let v1 = topics::routes()
        .merge(queues::routes())
        .merge(streams::routes())
        .merge(functions::routes())
        .merge(server::v1_routes());
    // Without a token there is nothing to check, and no layer to pass through.
    let v1 = if state.token.is_some() {
        v1.route_layer(middleware::from_fn_with_state(state.clone(), authorize))
    } else {
        v1
    };
    v1.merge(server::routes())
        .merge(crate::ui::routes())
        // The AWS protocols post to the root; anything else there is no route.
        .route("/", axum::routing::post(aws).get(aws))
        // A queue's URL: older SQS clients POST that queue's requests to it. Any other
        // request to a path of this shape is no route, as without it.
        .route("/{account}/{queue}", axum::routing::any(aws))
        // Lambda's REST paths.
        .route("/2015-03-31/{*rest}", axum::routing::any(aws))
        .route("/2019-09-25/{*rest}", axum::routing::any(aws))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "no-such-route", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method",
            )
        })
        .layer(middleware::map_response_with_state(
            state.clone(),
            count_errors,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The AWS door's paths: Lambda's REST paths, the links SNS hands out (a `GET` of the
/// root), and the requests of the other protocols (a `POST` to the root or to a queue's
/// URL). Anything else on these paths is no route.
async fn aws(
    state: State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let door = crate::aws::Door {
        app: &state.app,
        metrics: &state.metrics,
        token: state.token.as_deref(),
    };
    let request = crate::aws::sigv4::Signed {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &headers,
        body: &body,
    };
    let answer = if crate::aws::is_lambda_path(request.path) {
        Some(door.dispatch_lambda(&request).await)
    } else if method == axum::http::Method::GET {
        door.dispatch_link(&request).await
    } else if method == axum::http::Method::POST && crate::aws::is_aws_request(&headers) {
        Some(door.dispatch(&request).await)
    } else {
        None
    };
    answer.unwrap_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "no-such-route", "no such route").into_response()
    })
}

async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match s.refusal(req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

impl Shared {
    /// The 401 for a request without the server's token, when it has one.
    fn refusal(&self, headers: &axum::http::HeaderMap) -> Option<Response> {
        let token = self.token.as_ref()?;
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| crate::same_secret(t.as_bytes(), token.as_bytes()));
        (!ok).then(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs Authorization: Bearer TOKEN",
            )
            .into_response()
        })
    }
}

async fn count_errors(State(s): State<AppState>, res: Response) -> Response {
    if res.status().is_client_error() {
        s.metrics.client_errors.fetch_add(1, Ordering::Relaxed);
    }
    res
}

/// The answer to a `PUT`: 201 when it created the resource, 200 otherwise, with the
/// resource as it now stands.
fn put_answer<T: serde::Serialize>(created: bool, body: T) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// `{topic}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TopicPath {
    /// Topic name: letters, digits, `-` and `_`, optionally ending in `.fifo`.
    #[param(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    topic: String,
}

/// `{topic}/subscriptions/{name}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SubscriptionPath {
    /// Topic name.
    #[param(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    topic: String,
    /// Subscription name.
    #[param(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    name: String,
}

/// `{queue}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct QueuePath {
    /// Queue name: letters, digits, `-` and `_`, optionally ending in `.fifo`.
    #[param(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    queue: String,
}

/// `{stream}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct StreamPath {
    /// Stream name: letters, digits, `-`, `_` and `.` (not dots alone).
    #[param(
        pattern = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 128
    )]
    stream: String,
}

/// `{stream}/shards/{shard}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ShardPath {
    /// Stream name: letters, digits, `-`, `_` and `.` (not dots alone).
    #[param(
        pattern = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 128
    )]
    stream: String,
    /// `shard-0003` (or `3`).
    #[param(pattern = "^(shard-)?[0-9]+$")]
    shard: String,
}

/// `{stream}/groups/{group}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct GroupPath {
    /// Stream name: letters, digits, `-`, `_` and `.` (not dots alone).
    #[param(
        pattern = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 128
    )]
    stream: String,
    /// Consumer group name.
    #[param(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    group: String,
}

/// `{function}`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct FunctionPath {
    /// Function name.
    #[param(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    function: String,
}
