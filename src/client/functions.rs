//! Functions through the client: register, describe, delete and invoke, and the
//! `switchyard invoke` subcommand, the way to try a handler on one event.

use super::cli::ConnectArgs;
use super::{Client, ClientError};
use crate::wire::{FunctionInfo, FunctionSpec, InvokeRequest, InvokeResult};
use reqwest::Method;
use serde_json::Value;
use std::process::ExitCode;

impl Client {
    /// Registers a function or replaces it.
    pub async fn put_function(
        &self,
        name: &str,
        spec: &FunctionSpec,
    ) -> Result<FunctionInfo, ClientError> {
        self.call(Method::PUT, &["v1", "functions", name], Some(spec))
            .await
    }

    pub async fn get_function(&self, name: &str) -> Result<FunctionInfo, ClientError> {
        self.call(Method::GET, &["v1", "functions", name], None::<&()>)
            .await
    }

    pub async fn delete_function(&self, name: &str) -> Result<(), ClientError> {
        self.call_unit(Method::DELETE, &["v1", "functions", name], None::<&()>)
            .await
    }

    /// Runs a function on one event, routing nothing it publishes.
    pub async fn invoke(
        &self,
        name: &str,
        event: &InvokeRequest,
    ) -> Result<InvokeResult, ClientError> {
        self.call(
            Method::POST,
            &["v1", "functions", name, "invoke"],
            Some(event),
        )
        .await
    }
}

/// `switchyard invoke FUNCTION --message JSON [--attributes JSON]`.
#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function to run.
    pub function: String,
    /// The event's message (JSON).
    #[arg(long)]
    pub message: String,
    /// Attributes: {"Name": "value"} or the SNS form.
    #[arg(long)]
    pub attributes: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Prints the invocation's result as JSON; exit 0 when the handler succeeded, 1 when it
/// failed or the server refused, 2 for bad input.
pub async fn run_invoke(args: InvokeArgs) -> ExitCode {
    let parse = |what: &str, text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| format!("--{what} is not valid JSON: {e}"))
    };
    let (message, attributes) = match (
        parse("message", &args.message),
        args.attributes
            .as_deref()
            .map(|a| parse("attributes", a))
            .transpose(),
    ) {
        (Ok(m), Ok(a)) => (m, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match args.connect.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let event = InvokeRequest {
        message,
        attributes,
    };
    match client.invoke(&args.function, &event).await {
        Ok(result) => {
            // Through a `Value`, whose members print sorted by name.
            let printed = serde_json::to_value(&result).expect("an invoke result serializes");
            println!(
                "{}",
                serde_json::to_string_pretty(&printed).expect("JSON values serialize")
            );
            if result.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
