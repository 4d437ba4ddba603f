//! The per-connection method rate limit, shaped like Meteor's `DDPRateLimiter`.
//!
//! Meteor counts calls in fixed windows that start with the first call, and refuses the
//! calls over the limit with `Meteor.Error("too-many-requests", "Error, too many
//! requests. Please slow down. You must wait N seconds before trying again.",
//! {timeToReset})`. Clients that already handle Meteor's limiter (retry after
//! `timeToReset` milliseconds) handle ours.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::error::DdpError;

/// Calls counted in the current window of one connection.
#[derive(Debug)]
pub(crate) struct RateLimit {
    limit: u32,
    interval: Duration,
    window_start: Instant,
    count: u32,
}

impl RateLimit {
    /// `limit` calls per `interval`; a zero limit allows everything.
    pub(crate) fn new(limit: u32, interval: Duration, now: Instant) -> Self {
        Self {
            limit,
            interval,
            window_start: now,
            count: 0,
        }
    }

    /// Counts a call at `now`: `Ok` to run it, or the error to answer it with.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), DdpError> {
        if self.limit == 0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= self.interval {
            self.window_start = now;
            self.count = 0;
        }
        if self.count < self.limit {
            self.count += 1;
            return Ok(());
        }
        let time_to_reset = self.interval.saturating_sub(elapsed);
        Err(too_many_requests(time_to_reset))
    }
}

/// Meteor's rate-limit error, word for word.
fn too_many_requests(time_to_reset: Duration) -> DdpError {
    let millis = u64::try_from(time_to_reset.as_millis()).unwrap_or(u64::MAX);
    let seconds = millis.div_ceil(1000);
    DdpError::new(
        "too-many-requests",
        format!(
            "Error, too many requests. Please slow down. You must wait {seconds} seconds before trying again."
        ),
    )
    .with_details(json!({ "timeToReset": millis }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_calls_over_the_limit_until_the_window_resets() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(2, Duration::from_secs(10), t0);
        assert!(limit.check(t0).is_ok());
        assert!(limit.check(t0 + Duration::from_secs(1)).is_ok());
        let refused = limit
            .check(t0 + Duration::from_millis(7_500))
            .expect_err("third call in the window");
        assert_eq!(refused.error, "too-many-requests".into());
        assert_eq!(
            refused.reason.as_deref(),
            Some(
                "Error, too many requests. Please slow down. You must wait 3 seconds before trying again."
            )
        );
        assert_eq!(refused.details, Some(json!({"timeToReset": 2500})));
        assert!(limit.check(t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(0, Duration::from_secs(1), t0);
        assert!((0..10_000).all(|_| limit.check(t0).is_ok()));
    }
}
