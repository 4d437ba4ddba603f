//! Rate limits shaped like Meteor's `DDPRateLimiter`: the per-connection method limit, and
//! any limit a service keeps of its own (per client address, server-wide).
//!
//! Meteor counts calls in fixed windows that start with the first call, and refuses the
//! calls over the limit with `Meteor.Error("too-many-requests", "Error, too many
//! requests. Please slow down. You must wait N seconds before trying again.",
//! {timeToReset})`. Clients that already handle Meteor's limiter (retry after
//! `timeToReset` milliseconds) handle ours. A leaf: it knows only [`DdpError`].

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::error::DdpError;

/// What was counted in the current window of one limit: calls, or any other unit a
/// service charges (e.g. rows a call writes).
#[derive(Debug, Clone)]
pub struct RateLimit {
    limit: u32,
    interval: Duration,
    window_start: Instant,
    count: u32,
}

impl RateLimit {
    /// `limit` units per `interval`; a zero limit allows everything.
    pub fn new(limit: u32, interval: Duration, now: Instant) -> Self {
        Self {
            limit,
            interval,
            window_start: now,
            count: 0,
        }
    }

    /// Counts a call at `now`: `Ok` to run it, or the error to answer it with.
    pub fn check(&mut self, now: Instant) -> Result<(), DdpError> {
        self.charge(now, 1)
    }

    /// Counts `cost` units at `now` (more than the whole limit counts as the limit, so a
    /// costly call still passes in a fresh window): `Ok` when they fit in the window, or
    /// the error to answer with, counting nothing.
    pub fn charge(&mut self, now: Instant, cost: u32) -> Result<(), DdpError> {
        if self.limit == 0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= self.interval {
            self.window_start = now;
            self.count = 0;
        }
        let cost = cost.clamp(1, self.limit);
        if self.count.saturating_add(cost) <= self.limit {
            self.count += cost;
            return Ok(());
        }
        let time_to_reset = self.interval.saturating_sub(elapsed);
        Err(too_many_requests(time_to_reset))
    }

    /// Whether the window this limit counted in is over at `now`, so forgetting the
    /// limit loses nothing: a caller keeping many limits (one per address) drops these.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.count == 0 || now.saturating_duration_since(self.window_start) >= self.interval
    }
}

/// Meteor's rate-limit error, word for word: what a client over any limit is answered,
/// with the time until it may try again.
pub fn too_many_requests(time_to_reset: Duration) -> DdpError {
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
    fn costs_count_against_the_same_window_and_a_refused_cost_counts_nothing() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(10, Duration::from_secs(10), t0);
        assert!(limit.is_idle(t0), "nothing counted yet");
        assert!(limit.charge(t0, 6).is_ok());
        assert!(!limit.is_idle(t0));
        assert!(limit.charge(t0, 5).is_err(), "6 + 5 is over 10");
        assert!(limit.charge(t0, 4).is_ok(), "the refused 5 counted nothing");
        assert!(limit.check(t0).is_err());
        // A cost above the whole limit passes alone in a fresh window.
        let later = t0 + Duration::from_secs(10);
        assert!(limit.is_idle(later));
        assert!(limit.charge(later, 1000).is_ok());
        assert!(limit.check(later).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(0, Duration::from_secs(1), t0);
        assert!((0..10_000).all(|_| limit.check(t0).is_ok()));
    }
}
