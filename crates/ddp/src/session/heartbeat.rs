//! Server-side DDP heartbeats (spec §1.2).
//!
//! Like Meteor's server, ping only after `interval` without any inbound frame, and give
//! up if nothing at all arrives within `timeout` after that ping (any frame counts as the
//! answer). `pre1` sessions and a zero interval have no heartbeat. Pure timing logic, so
//! it is tested without sockets or sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// What is due when the heartbeat's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// The client has been silent for the interval: send a ping.
    Ping,
    /// The client stayed silent after the ping: close the session.
    TimedOut,
}

/// The heartbeat state of one session.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    last_activity: Instant,
    ping_sent: Option<Instant>,
    enabled: bool,
}

impl Heartbeat {
    pub(crate) fn new(now: Instant, interval: Duration, timeout: Duration, enabled: bool) -> Self {
        Self {
            interval,
            timeout,
            last_activity: now,
            ping_sent: None,
            enabled: enabled && !interval.is_zero(),
        }
    }

    /// Whether heartbeats run at all for this session.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// When [`expire`](Self::expire) is next due.
    pub(crate) fn deadline(&self) -> Instant {
        match self.ping_sent {
            None => saturating_add(self.last_activity, self.interval),
            Some(sent) => saturating_add(sent, self.timeout),
        }
    }

    /// An inbound frame arrived.
    pub(crate) fn activity(&mut self, now: Instant) {
        self.last_activity = now;
        self.ping_sent = None;
    }

    /// The deadline passed: ping, or time out if a ping is already unanswered.
    pub(crate) fn expire(&mut self, now: Instant) -> Beat {
        if self.ping_sent.is_some() {
            Beat::TimedOut
        } else {
            self.ping_sent = Some(now);
            Beat::Ping
        }
    }
}

/// `start + duration`, or a far-future instant where that would overflow.
fn saturating_add(start: Instant, duration: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    start.checked_add(duration).unwrap_or_else(|| start + FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn pings_after_silence_then_times_out() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, 30 * SECOND, 300 * SECOND, true);
        assert!(hb.enabled());
        assert_eq!(hb.deadline(), t0 + 30 * SECOND);
        assert_eq!(hb.expire(t0 + 30 * SECOND), Beat::Ping);
        assert_eq!(hb.deadline(), t0 + 330 * SECOND);
        assert_eq!(hb.expire(t0 + 330 * SECOND), Beat::TimedOut);
    }

    #[test]
    fn any_activity_resets() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, 30 * SECOND, 300 * SECOND, true);
        hb.activity(t0 + 10 * SECOND);
        assert_eq!(hb.deadline(), t0 + 40 * SECOND);
        assert_eq!(hb.expire(t0 + 40 * SECOND), Beat::Ping);
        hb.activity(t0 + 41 * SECOND);
        assert_eq!(hb.deadline(), t0 + 71 * SECOND);
        assert_eq!(hb.expire(t0 + 71 * SECOND), Beat::Ping);
    }

    #[test]
    fn disabled_for_pre1_or_zero_interval() {
        let t0 = Instant::now();
        assert!(!Heartbeat::new(t0, 30 * SECOND, SECOND, false).enabled());
        assert!(!Heartbeat::new(t0, Duration::ZERO, SECOND, true).enabled());
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let t0 = Instant::now();
        let hb = Heartbeat::new(t0, Duration::MAX, Duration::MAX, true);
        assert!(hb.deadline() > t0);
    }
}
