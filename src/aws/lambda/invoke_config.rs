//! Lambda's event invoke configs (`/2019-09-25/functions/NAME/event-invoke-config`): how
//! often and how long a function's asynchronous invocations are tried, and where the
//! record of each goes once it succeeded or was given up. A function's config is the
//! `asynchronous` settings of its spec, which `/v1` shows and changes too.

use super::{
    Context, DestinationConfig, Door, LambdaError, LambdaResult, OnDestination, destination,
    function_name, json,
};
use crate::model::arn::function_arn;
use crate::model::{
    AsyncSpec, DEFAULT_FUNCTION_RETRIES, Destination, MAX_EVENT_AGE_S, MIN_EVENT_AGE_S,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// A function's event invoke config, as Lambda answers it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Config {
    function_arn: String,
    maximum_retry_attempts: u32,
    maximum_event_age_in_seconds: u64,
    destination_config: DestinationConfig,
}

/// What `PutFunctionEventInvokeConfig` and `UpdateFunctionEventInvokeConfig` take.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Input {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationConfig>,
}

/// `PUT` (put: what is not given is the default), `POST` (update: what is not given is
/// kept), `GET` and `DELETE` of a function's config.
pub(super) async fn serve(
    s: &Door<'_>,
    cx: &Context,
    method: &str,
    given: &str,
    query: &str,
    body: &[u8],
) -> LambdaResult<Response> {
    let name = function_name(given)?;
    latest_only(query)?;
    match method {
        "GET" => {
            let a = current(s, cx, name)?.ok_or_else(|| no_config(cx, name))?;
            Ok(json(StatusCode::OK, &config_of(cx, name, &a)))
        }
        "PUT" | "POST" => {
            let input: Input = serde_json::from_slice(body).map_err(|e| {
                LambdaError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    format!("the request body is not an event invoke config: {e}"),
                )
            })?;
            let change = Change::checked(&input, method == "PUT")?;
            let a = s
                .app
                .control
                .change_function(name, |spec| {
                    let a = change.applied_to(spec.asynchronous.take());
                    spec.asynchronous = Some(a.clone());
                    Ok(a)
                })
                .await
                .map_err(|e| LambdaError::from_op(cx, e))?;
            Ok(json(StatusCode::OK, &config_of(cx, name, &a)))
        }
        "DELETE" => {
            let had = s
                .app
                .control
                .change_function(name, |spec| Ok(spec.asynchronous.take().is_some()))
                .await
                .map_err(|e| LambdaError::from_op(cx, e))?;
            if !had {
                return Err(no_config(cx, name));
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        other => Err(LambdaError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnknownOperationException",
            format!("{other} is not an operation on an event invoke config"),
        )),
    }
}

/// `ListFunctionEventInvokeConfigs`: the function's config, when it has one (a function
/// has no versions or aliases to have more).
pub(super) fn list(s: &Door<'_>, cx: &Context, given: &str) -> LambdaResult<Response> {
    let name = function_name(given)?;
    let configs: Vec<Config> = current(s, cx, name)?
        .map(|a| config_of(cx, name, &a))
        .into_iter()
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        function_event_invoke_configs: Vec<Config>,
    }
    Ok(json(
        StatusCode::OK,
        &Output {
            function_event_invoke_configs: configs,
        },
    ))
}

/// The function's settings of asynchronous invocations, `None` when it has none.
fn current(s: &Door<'_>, cx: &Context, name: &str) -> LambdaResult<Option<AsyncSpec>> {
    let spec = s
        .app
        .control
        .function_spec(name)
        .ok_or_else(|| LambdaError::function_not_found(cx, name))?;
    Ok(spec.asynchronous)
}

/// A function has only `$LATEST`.
fn latest_only(query: &str) -> LambdaResult<()> {
    let qualifier = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "Qualifier")
        .map(|(_, v)| v.into_owned());
    match qualifier.as_deref() {
        None | Some("$LATEST") => Ok(()),
        Some(q) => Err(LambdaError::invalid(format!(
            "Qualifier {q:?}: functions here have no versions or aliases; use $LATEST"
        ))),
    }
}

fn no_config(cx: &Context, name: &str) -> LambdaError {
    LambdaError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!(
            "The function {}:$LATEST doesn't have an EventInvokeConfig",
            function_arn(&cx.region, name)
        ),
    )
}

/// What a put or an update sets, checked as Lambda checks it; `None` where it keeps what
/// the function has.
struct Change {
    replace: bool,
    retries: Option<u32>,
    age_s: Option<u64>,
    on_success: Option<Option<Destination>>,
    on_failure: Option<Option<Destination>>,
}

impl Change {
    /// A put (`replace`) sets everything, the defaults where `input` is silent; an update
    /// sets what `input` gives. A destination given without an ARN is removed.
    fn checked(input: &Input, replace: bool) -> LambdaResult<Change> {
        let retries = input
            .maximum_retry_attempts
            .map(|n| {
                let max = i64::from(DEFAULT_FUNCTION_RETRIES);
                u32::try_from(n).ok().filter(|_| n <= max).ok_or_else(|| {
                    LambdaError::invalid(format!(
                        "MaximumRetryAttempts {n} is not between 0 and {max}"
                    ))
                })
            })
            .transpose()?;
        let age_s = input
            .maximum_event_age_in_seconds
            .map(|n| {
                let (min, max) = (MIN_EVENT_AGE_S, MAX_EVENT_AGE_S);
                u64::try_from(n)
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        LambdaError::invalid(format!(
                            "MaximumEventAgeInSeconds {n} is not between {min} and {max}"
                        ))
                    })
            })
            .transpose()?;
        let config = input.destination_config.clone().unwrap_or_default();
        let given = |to: Option<OnDestination>, field| {
            (replace || to.is_some())
                .then(|| destination(to.as_ref(), field))
                .transpose()
        };
        Ok(Change {
            replace,
            retries,
            age_s,
            on_success: given(config.on_success, "OnSuccess")?,
            on_failure: given(config.on_failure, "OnFailure")?,
        })
    }

    /// The settings `current` becomes.
    fn applied_to(&self, current: Option<AsyncSpec>) -> AsyncSpec {
        let mut a = match current {
            Some(a) if !self.replace => a,
            _ => AsyncSpec::default(),
        };
        a.max_retries = self.retries.unwrap_or(a.max_retries);
        a.max_event_age_s = self.age_s.unwrap_or(a.max_event_age_s);
        if let Some(to) = &self.on_success {
            a.on_success = to.clone();
        }
        if let Some(to) = &self.on_failure {
            a.on_failure = to.clone();
        }
        a
    }
}

fn config_of(cx: &Context, name: &str, a: &AsyncSpec) -> Config {
    let of = |to: &Option<Destination>| {
        to.as_ref()
            .map(|d| OnDestination::of(cx, d))
            .unwrap_or_default()
    };
    Config {
        function_arn: format!("{}:$LATEST", function_arn(&cx.region, name)),
        maximum_retry_attempts: a.max_retries,
        maximum_event_age_in_seconds: a.max_event_age_s,
        destination_config: DestinationConfig {
            on_success: Some(of(&a.on_success)),
            on_failure: Some(of(&a.on_failure)),
        },
    }
}
