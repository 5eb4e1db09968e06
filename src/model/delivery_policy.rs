//! Retry schedules for endpoints that can fail: SNS-style delivery policies.
//!
//! A policy says how many retries follow the first attempt and how the delay between them
//! grows from `min_delay_s` to `max_delay_s`. Pure: the delay for a retry depends only on
//! the policy, the attempt number and a jitter draw passed in.

use super::FieldError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// Most retries a policy may ask for (SNS allows 100 for HTTP endpoints).
pub const MAX_RETRIES: u32 = 100;
/// Longest delay between two attempts (SNS: 3,600 s).
pub const MAX_DELAY_S: u64 = 3600;
/// Longest time from the first attempt to the last, whatever the retries say: 14 days, the
/// longest a message may stay in a queue.
pub const MAX_TOTAL_S: u64 = 14 * 24 * 3600;

/// How delays grow between `min_delay_s` and `max_delay_s` over the retries, with `t`
/// running from 0 (first retry) to 1 (last):
/// - `linear`: `min + (max - min) * t`
/// - `arithmetic`: `min + (max - min) * t²` (slow start, then faster)
/// - `geometric`: `min * (max / min)^t` (a constant factor per retry)
/// - `exponential`: `min * 2^(retry - 1)`, capped at `max`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    #[default]
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

/// A subscription's `delivery_policy`. Defaults are SNS's for HTTP endpoints: three
/// retries, twenty seconds apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryPolicy {
    /// Retries after the first attempt (default 3).
    #[serde(deserialize_with = "super::whole::u32")]
    #[schema(maximum = 100)]
    pub num_retries: u32,
    /// Delay before the first retry (default 20).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(minimum = 1, maximum = 3600)]
    pub min_delay_s: u64,
    /// Longest delay between retries, at least `min_delay_s` (default 20).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(minimum = 1, maximum = 3600)]
    pub max_delay_s: u64,
    /// How delays grow from `min_delay_s` to `max_delay_s`.
    pub backoff: Backoff,
    /// Fraction (0 to 1) of each delay drawn at random and subtracted, so retries of many
    /// messages that failed together spread out.
    #[schema(minimum = 0, maximum = 1)]
    pub jitter: f64,
    /// No attempt starts later than this after the message was published (default 3600).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(minimum = 1, maximum = 1209600)]
    pub max_total_s: u64,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            num_retries: 3,
            min_delay_s: 20,
            max_delay_s: 20,
            backoff: Backoff::Linear,
            jitter: 0.0,
            max_total_s: 3600,
        }
    }
}

impl DeliveryPolicy {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut check = |field: &str, ok: bool, msg: String| {
            if !ok {
                errs.push(FieldError::new(format!("delivery_policy.{field}"), msg));
            }
        };
        check(
            "num_retries",
            self.num_retries <= MAX_RETRIES,
            format!("must be between 0 and {MAX_RETRIES}"),
        );
        check(
            "min_delay_s",
            (1..=MAX_DELAY_S).contains(&self.min_delay_s),
            format!("must be between 1 and {MAX_DELAY_S}"),
        );
        check(
            "max_delay_s",
            (self.min_delay_s..=MAX_DELAY_S).contains(&self.max_delay_s),
            format!("must be between min_delay_s and {MAX_DELAY_S}"),
        );
        check(
            "jitter",
            (0.0..=1.0).contains(&self.jitter),
            "must be between 0 and 1".into(),
        );
        check(
            "max_total_s",
            (1..=MAX_TOTAL_S).contains(&self.max_total_s),
            format!("must be between 1 and {MAX_TOTAL_S}"),
        );
        errs
    }

    /// The delay before retry number `retry` (1-based), without jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let (min, max) = (self.min_delay_s as f64, self.max_delay_s as f64);
        let n = self.num_retries.max(1);
        let t = if n == 1 {
            0.0
        } else {
            (retry.clamp(1, n) - 1) as f64 / (n - 1) as f64
        };
        let s = match self.backoff {
            Backoff::Linear => min + (max - min) * t,
            Backoff::Arithmetic => min + (max - min) * t * t,
            Backoff::Geometric => min * (max / min).powf(t),
            Backoff::Exponential => {
                (min * 2f64.powi(retry.saturating_sub(1).min(62) as i32)).min(max)
            }
        };
        Duration::from_secs_f64(s.clamp(min, max))
    }

    /// What to do after attempt number `attempt` (1-based) failed, `elapsed` after the
    /// message was published: the delay before the next attempt, or `None` when the
    /// attempts are used up. `draw` is a uniform random number in [0, 1) for the jitter.
    pub fn next_delay(&self, attempt: u32, elapsed: Duration, draw: f64) -> Option<Duration> {
        if attempt > self.num_retries {
            return None;
        }
        let base = self.base_delay(attempt);
        let delay = base.mul_f64(1.0 - self.jitter * draw.clamp(0.0, 1.0));
        if elapsed + delay > Duration::from_secs(self.max_total_s) {
            return None;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(n: u32, min: u64, max: u64, backoff: Backoff) -> DeliveryPolicy {
        DeliveryPolicy {
            num_retries: n,
            min_delay_s: min,
            max_delay_s: max,
            backoff,
            jitter: 0.0,
            max_total_s: MAX_TOTAL_S,
        }
    }

    fn secs(p: &DeliveryPolicy) -> Vec<f64> {
        (1..=p.num_retries)
            .map(|r| (p.base_delay(r).as_secs_f64() * 100.0).round() / 100.0)
            .collect()
    }

    #[test]
    fn default_is_sns_three_retries_twenty_seconds_apart() {
        let p = DeliveryPolicy::default();
        assert_eq!(secs(&p), [20.0, 20.0, 20.0]);
        assert_eq!(
            p.next_delay(3, Duration::ZERO, 0.0),
            Some(Duration::from_secs(20))
        );
        assert_eq!(p.next_delay(4, Duration::ZERO, 0.0), None);
    }

    #[test]
    fn each_backoff_grows_from_min_to_max() {
        assert_eq!(
            secs(&policy(5, 1, 9, Backoff::Linear)),
            [1.0, 3.0, 5.0, 7.0, 9.0]
        );
        assert_eq!(
            secs(&policy(5, 1, 9, Backoff::Arithmetic)),
            [1.0, 1.5, 3.0, 5.5, 9.0]
        );
        assert_eq!(
            secs(&policy(3, 1, 16, Backoff::Geometric)),
            [1.0, 4.0, 16.0]
        );
        assert_eq!(
            secs(&policy(6, 1, 10, Backoff::Exponential)),
            [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        );
    }

    #[test]
    fn jitter_only_shortens_and_the_total_cap_stops_retries() {
        let mut p = policy(3, 10, 10, Backoff::Linear);
        p.jitter = 0.5;
        assert_eq!(p.next_delay(1, Duration::ZERO, 0.999).unwrap().as_secs(), 5);
        assert_eq!(p.next_delay(1, Duration::ZERO, 0.0).unwrap().as_secs(), 10);
        p.max_total_s = 15;
        assert!(p.next_delay(2, Duration::from_secs(10), 0.0).is_none());
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let p = DeliveryPolicy {
            min_delay_s: 30,
            max_delay_s: 10,
            jitter: 2.0,
            ..DeliveryPolicy::default()
        };
        let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["delivery_policy.max_delay_s", "delivery_policy.jitter"]
        );
    }
}
