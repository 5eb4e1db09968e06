//! What one function may use: time, memory, concurrency, and per-invocation
//! budgets for what a guest hands back to the host (publishes, log lines).
//!
//! Every bound is here, named, with the reason for its value. The memory cap
//! is enforced by [`MemoryCap`], a wasmtime resource limiter installed in each
//! invocation's store; the deadline by epoch interruption (see `engine`).

use std::collections::BTreeMap;
use std::time::Duration;

use wasmtime::ResourceLimiter;

/// A function's default deadline (the API's `timeout_ms` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Longest deadline a function may ask for: as Lambda, 15 minutes. A longer
/// job is not an event handler.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A function's default memory cap (the API's `memory_mb` default).
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;
/// Smallest memory cap: a Rust guest's stack and data alone need about 1 MiB.
pub const MIN_MEMORY_BYTES: usize = 2 << 20;
/// A function's default number of concurrent invocations: twice the cores of
/// a small machine keeps it busy while a guest waits in a host call.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Most concurrent invocations one function may ask for. The runtime's
/// instance pool bounds the total across functions as well.
pub const MAX_CONCURRENCY: usize = 1000;

/// Largest batch passed to `handle-batch`: Kinesis' largest batch for Lambda
/// (10,000) would be lowered into guest memory at once; 1,000 events of a few
/// KiB stay well inside the default memory cap.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Publishes one invocation may buffer. Enough for a batch of
/// [`MAX_BATCH_EVENTS`] that publishes one event per item.
pub const MAX_PUBLISHES_PER_INVOCATION: usize = MAX_BATCH_EVENTS;
/// Largest single publish (body, topic, ids and attributes): SNS's message
/// size limit, 256 KiB.
pub const MAX_PUBLISH_BYTES: usize = 256 << 10;
/// Bytes of publishes one invocation may buffer in host memory.
pub const MAX_PUBLISH_BYTES_PER_INVOCATION: usize = 16 << 20;

/// Log lines kept per invocation; later ones are counted and dropped.
pub const MAX_LOG_LINES_PER_INVOCATION: usize = 1000;
/// Longest log line kept; longer ones are truncated at a character boundary.
pub const MAX_LOG_LINE_BYTES: usize = 8 << 10;

/// Most `env` entries a function may have.
pub const MAX_CONFIG_ENTRIES: usize = 256;
/// Most bytes of `env` keys and values together (Lambda allows 4 KiB; we are
/// generous, but bounded, since every invocation can read them).
pub const MAX_CONFIG_BYTES: usize = 64 << 10;

/// The limits of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionLimits {
    /// Wall-clock deadline of one invocation (single event or batch).
    pub timeout: Duration,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_bytes: usize,
    /// Invocations of this function running at once; more wait for a permit.
    pub concurrency: usize,
}

impl Default for FunctionLimits {
    fn default() -> Self {
        FunctionLimits {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl FunctionLimits {
    /// The limits as the functions API states them (`timeout_ms`,
    /// `memory_mb`, `concurrency`); out-of-range values saturate and are then
    /// refused by the load's validation.
    pub fn from_api(timeout_ms: u64, memory_mb: u64, concurrency: usize) -> FunctionLimits {
        FunctionLimits {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: usize::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            concurrency,
        }
    }

    /// Checks the limits against the runtime's maximum memory per instance;
    /// every problem is reported, not only the first.
    pub(crate) fn validate(&self, max_memory_bytes: usize) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            problems.push(format!(
                "timeout must be between 1 ms and {} s, not {} ms",
                MAX_TIMEOUT.as_secs(),
                self.timeout.as_millis()
            ));
        }
        if self.memory_bytes < MIN_MEMORY_BYTES || self.memory_bytes > max_memory_bytes {
            problems.push(format!(
                "memory must be between {} MiB and {} MiB, not {} bytes",
                MIN_MEMORY_BYTES >> 20,
                max_memory_bytes >> 20,
                self.memory_bytes
            ));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            problems.push(format!(
                "concurrency must be between 1 and {MAX_CONCURRENCY}, not {}",
                self.concurrency
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Checks a function's `env` against [`MAX_CONFIG_ENTRIES`] and
/// [`MAX_CONFIG_BYTES`].
pub(crate) fn validate_config(config: &BTreeMap<String, String>) -> Result<(), String> {
    let bytes: usize = config
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if config.len() > MAX_CONFIG_ENTRIES {
        return Err(format!(
            "{} entries, at most {MAX_CONFIG_ENTRIES}",
            config.len()
        ));
    }
    if bytes > MAX_CONFIG_BYTES {
        return Err(format!("{bytes} bytes, at most {MAX_CONFIG_BYTES}"));
    }
    Ok(())
}

/// The error a guest's store raises when the guest grows its memory past the
/// cap; the invocation reports it as [`InvokeError::OutOfMemory`](super::InvokeError).
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit_bytes} bytes exceeded (asked for {desired_bytes})")]
pub(crate) struct MemoryLimitExceeded {
    pub limit_bytes: usize,
    pub desired_bytes: usize,
}

/// Resource limiter of one invocation's store: caps linear memory at the
/// function's limit. Growing past it traps at once (rather than failing the
/// `memory.grow`), so the failure is reported precisely as out of memory
/// instead of whatever the guest's allocator does on failure.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    pub limit_bytes: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit_bytes: self.limit_bytes,
                desired_bytes: desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the instance pool's per-table element limit.
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_MEMORY: usize = 256 << 20;

    #[test]
    fn api_limits_convert_to_bytes_and_durations() {
        let limits = FunctionLimits::from_api(1500, 64, 3);
        assert_eq!(limits.timeout, Duration::from_millis(1500));
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.concurrency, 3);
        assert!(
            FunctionLimits::from_api(1, u64::MAX, 1)
                .validate(MAX_MEMORY)
                .is_err()
        );
    }

    #[test]
    fn default_limits_are_valid() {
        assert_eq!(FunctionLimits::default().validate(MAX_MEMORY), Ok(()));
    }

    #[test]
    fn every_invalid_limit_is_reported_at_once() {
        let limits = FunctionLimits {
            timeout: Duration::ZERO,
            memory_bytes: MAX_MEMORY + 1,
            concurrency: 0,
        };
        let problems = limits.validate(MAX_MEMORY).unwrap_err();
        assert!(problems.contains("timeout"), "{problems}");
        assert!(problems.contains("memory"), "{problems}");
        assert!(problems.contains("concurrency"), "{problems}");
    }

    #[test]
    fn memory_cap_refuses_growth_past_the_limit_only() {
        let mut cap = MemoryCap {
            limit_bytes: 4 << 20,
        };
        assert!(cap.memory_growing(0, 4 << 20, None).unwrap());
        let error = cap
            .memory_growing(4 << 20, (4 << 20) + 65536, None)
            .unwrap_err();
        assert!(error.is::<MemoryLimitExceeded>());
    }

    #[test]
    fn oversized_config_is_refused() {
        let mut config = BTreeMap::new();
        config.insert("k".to_string(), "v".repeat(MAX_CONFIG_BYTES));
        assert!(validate_config(&config).is_err());
        config.clear();
        config.insert("k".to_string(), "v".to_string());
        assert_eq!(validate_config(&config), Ok(()));
    }
}
