//! Errors of the runtime, one enum per stage: loading a component
//! ([`LoadError`]) and running one invocation ([`InvokeError`]).
//!
//! A failed invocation is not an error of the runtime: it is an outcome,
//! carried as a value in [`Invocation`](super::Invocation), and it tells the
//! caller whether a retry can help ([`InvokeError::is_retryable`]).

use std::time::Duration;

/// Why a component could not be loaded as a function.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The limits asked for are outside what this runtime allows.
    #[error("function {function}: invalid limits: {reason}")]
    InvalidLimits { function: String, reason: String },
    /// The `env` of the function is too large.
    #[error("function {function}: invalid config: {reason}")]
    InvalidConfig { function: String, reason: String },
    /// The bytes are not a WebAssembly component (for example a core module).
    #[error("function {function}: not a WebAssembly component: {reason}")]
    NotAComponent { function: String, reason: String },
    /// The component is invalid WebAssembly or uses a feature the engine lacks.
    #[error("function {function}: cannot compile the component: {reason}")]
    Compile { function: String, reason: String },
    /// The component imports something the runtime does not provide.
    #[error("function {function}: unsupported import `{import}`: {reason}")]
    UnsupportedImport {
        function: String,
        import: String,
        reason: String,
    },
    /// An allowed interface is imported with functions or types that do not
    /// match what the runtime provides (for example a newer minor version
    /// using a function this host lacks).
    #[error("function {function}: imports do not match what the runtime provides: {reason}")]
    IncompatibleImports { function: String, reason: String },
    /// The component does not export the `switchyard:handler` world.
    #[error(
        "function {function}: not a switchyard:handler component (it must export `handle` and `handle-batch`): {reason}"
    )]
    NotAHandler { function: String, reason: String },
    /// The component needs more than the function's limits allow before it
    /// runs at all (its initial memory exceeds the memory cap).
    #[error("function {function}: too large for its limits: {reason}")]
    TooLarge { function: String, reason: String },
}

/// Why an invocation failed. Every variant is a failed attempt of the event
/// (or batch), never a failure of the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The handler returned an error.
    #[error("handler error ({}): {message}", if *.retryable { "retryable" } else { "fatal" })]
    Handler { retryable: bool, message: String },
    /// The guest trapped: a panic, `unreachable`, a stack overflow, an
    /// out-of-bounds access, …
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest ran past its deadline and was stopped.
    #[error("deadline of {} ms exceeded", .0.as_millis())]
    Timeout(Duration),
    /// The guest tried to grow its memory past the function's limit.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    OutOfMemory { limit_bytes: usize },
    /// The guest called `wasi:cli/exit`.
    #[error("guest exited with status {0}")]
    Exit(i32),
    /// The component could not be instantiated.
    #[error("cannot instantiate the component: {0}")]
    Instantiate(String),
    /// The batch result names an event that is not in the batch.
    #[error("invalid batch result: {0}")]
    InvalidBatchResult(String),
    /// The batch holds more events than the runtime passes to a guest at once.
    #[error("batch of {len} events exceeds the limit of {max}")]
    BatchTooLarge { len: usize, max: usize },
}

impl InvokeError {
    /// The kind of failure, as `/metrics` labels it.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Handler { .. } => "handler",
            InvokeError::Trap(_) => "trap",
            InvokeError::Timeout(_) => "timeout",
            InvokeError::OutOfMemory { .. } => "out_of_memory",
            InvokeError::Exit(_) => "exit",
            InvokeError::Instantiate(_) => "instantiate",
            InvokeError::InvalidBatchResult(_) => "invalid_batch_result",
            InvokeError::BatchTooLarge { .. } => "batch_too_large",
        }
    }

    /// Whether delivering the same event again may succeed. Only a handler's
    /// own fatal verdict and a batch that can never fit are final; traps,
    /// timeouts and memory exhaustion may depend on the moment, and the
    /// delivery queue's maximum attempts bound the retries anyway.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Handler { retryable, .. } => *retryable,
            InvokeError::BatchTooLarge { .. } => false,
            InvokeError::Trap(_)
            | InvokeError::Timeout(_)
            | InvokeError::OutOfMemory { .. }
            | InvokeError::Exit(_)
            | InvokeError::Instantiate(_)
            | InvokeError::InvalidBatchResult(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fatal_handler_errors_and_oversized_batches_are_final() {
        let fatal = InvokeError::Handler {
            retryable: false,
            message: "poison".into(),
        };
        let retryable = InvokeError::Handler {
            retryable: true,
            message: "busy".into(),
        };
        assert!(!fatal.is_retryable());
        assert!(
            !InvokeError::BatchTooLarge {
                len: 2000,
                max: 1000
            }
            .is_retryable()
        );
        assert!(retryable.is_retryable());
        assert!(InvokeError::Trap("unreachable".into()).is_retryable());
        assert!(InvokeError::Timeout(Duration::from_millis(5)).is_retryable());
        assert!(InvokeError::OutOfMemory { limit_bytes: 1 }.is_retryable());
    }

    #[test]
    fn handler_error_message_says_whether_it_is_retryable() {
        let fatal = InvokeError::Handler {
            retryable: false,
            message: "poison".into(),
        };
        assert_eq!(fatal.to_string(), "handler error (fatal): poison");
    }
}
