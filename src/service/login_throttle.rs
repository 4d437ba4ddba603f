//! Failed logins, limited per client address and per account, so tokens cannot be guessed
//! at speed from one address and one account's stale tokens cannot be replayed without
//! end.
//!
//! Each failed login (an unknown, revoked or expired token) is charged to its address
//! (grouped as [`AddressGroup`] groups them: IPv6 per /64) and, when the token names one,
//! to its account. While either has used up its failures for the current window, logins
//! from that address or for that account are refused with Meteor's `too-many-requests`
//! error (with `timeToReset`), even with a good token, until the window is over.
//! Successful logins charge nothing.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use exosphere_ddp::{AddressGroup, DdpError, too_many_requests};
use tokio::time::Instant;

use super::budgets::KeyedBudgets;

/// How many failed logins are allowed, per address and per account, in each window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins one client address may make per [`interval`](Self::interval); 0
    /// turns the limit off.
    pub per_address: u32,
    /// Failed logins with one account's tokens per interval; 0 turns the limit off.
    pub per_account: u32,
    /// The window both are counted in.
    pub interval: Duration,
    /// Addresses and accounts remembered at once (each); while every slot is in use,
    /// logins from further addresses or for further accounts are refused.
    pub max_keys: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_address: 20,
            per_account: 10,
            interval: Duration::from_secs(600),
            max_keys: 100_000,
        }
    }
}

/// The failures counted so far in the current windows.
pub struct LoginThrottle {
    limits: LoginLimits,
    counts: Mutex<Counts>,
}

/// The per-address and per-account budgets.
struct Counts {
    addresses: KeyedBudgets<AddressGroup>,
    accounts: KeyedBudgets<String>,
}

impl LoginThrottle {
    /// Budgets that start empty.
    pub fn new(limits: LoginLimits) -> Self {
        let counts = Counts {
            addresses: KeyedBudgets::new(limits.per_address, limits.interval, limits.max_keys),
            accounts: KeyedBudgets::new(limits.per_account, limits.interval, limits.max_keys),
        };
        LoginThrottle {
            limits,
            counts: Mutex::new(counts),
        }
    }

    /// `Ok` when a login from `address` (and for the account with id `account`, once the
    /// token named one) may be tried, or the refusal to answer, charging nothing.
    pub fn admit(&self, address: Option<IpAddr>, account: Option<&str>) -> Result<(), DdpError> {
        self.visit(address, account, |budget, now| budget.clone().check(now))
    }

    /// Counts one failed login from `address` for `account`.
    pub fn fail(&self, address: Option<IpAddr>, account: Option<&str>) {
        // Over the limit, a failure still counts as the limit: the refusal is the answer.
        let _ = self.visit(address, account, |budget, now| budget.check(now));
    }

    /// Applies `f` to the address's and the account's budgets (those whose limit is on);
    /// the first refusal is returned. A key that finds the table full is refused.
    fn visit(
        &self,
        address: Option<IpAddr>,
        account: Option<&str>,
        mut f: impl FnMut(&mut exosphere_ddp::RateLimit, Instant) -> Result<(), DdpError>,
    ) -> Result<(), DdpError> {
        let now = Instant::now();
        let full = || too_many_requests(self.limits.interval);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcome = Ok(());
        if let Some(address) = address.filter(|_| self.limits.per_address > 0) {
            let budget = counts.addresses.budget(AddressGroup::from(address), now);
            outcome = outcome.and(budget.map_or_else(|| Err(full()), |budget| f(budget, now)));
        }
        if let Some(account) = account.filter(|_| self.limits.per_account > 0) {
            let budget = counts.accounts.budget(account.to_owned(), now);
            outcome = outcome.and(budget.map_or_else(|| Err(full()), |budget| f(budget, now)));
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn throttle(per_address: u32, per_account: u32) -> LoginThrottle {
        LoginThrottle::new(LoginLimits {
            per_address,
            per_account,
            interval: Duration::from_secs(3600),
            max_keys: 10,
        })
    }

    #[test]
    fn an_address_is_refused_once_its_failures_are_used_up() {
        let throttle = throttle(2, 0);
        for _ in 0..2 {
            assert!(throttle.admit(v4(1), None).is_ok());
            throttle.fail(v4(1), None);
        }
        let refused = throttle.admit(v4(1), None).unwrap_err();
        assert_eq!(refused.error, "too-many-requests".into());
        assert!(throttle.admit(v4(2), None).is_ok(), "other addresses go on");
    }

    #[test]
    fn an_account_is_refused_from_every_address_once_its_failures_are_used_up() {
        let throttle = throttle(0, 2);
        throttle.fail(v4(1), Some("u1"));
        throttle.fail(v4(2), Some("u1"));
        assert!(throttle.admit(v4(3), Some("u1")).is_err());
        assert!(throttle.admit(v4(3), Some("u2")).is_ok());
        assert!(
            throttle.admit(v4(3), None).is_ok(),
            "the address limit is off"
        );
    }

    #[test]
    fn admitting_charges_nothing() {
        let throttle = throttle(1, 1);
        for _ in 0..5 {
            assert!(throttle.admit(v4(1), Some("u1")).is_ok());
        }
    }
}
