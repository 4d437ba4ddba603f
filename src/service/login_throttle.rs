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

use exosphere_ddp::{AddressGroup, DdpError};
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
    /// Addresses and accounts with failures remembered at once (each); while every slot is
    /// in use, failures of further addresses or accounts are not counted (logging in is
    /// never refused because of other clients' failures).
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
    /// token named one) may be tried, or the refusal to answer. Only an address or account
    /// with failures counted can be refused, and looking remembers nothing.
    pub fn admit(&self, address: Option<IpAddr>, account: Option<&str>) -> Result<(), DdpError> {
        let now = Instant::now();
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let check = |budget: Option<&exosphere_ddp::RateLimit>| match budget {
            Some(budget) => budget.clone().check(now),
            None => Ok(()),
        };
        if let Some(address) = address.filter(|_| self.limits.per_address > 0) {
            check(counts.addresses.get(&AddressGroup::from(address)))?;
        }
        if let Some(account) = account.filter(|_| self.limits.per_account > 0) {
            check(counts.accounts.get(&account.to_owned()))?;
        }
        Ok(())
    }

    /// Counts one failed login from `address` for `account`. A failure of a key that finds
    /// its table full is not counted (see [`LoginLimits::max_keys`]).
    pub fn fail(&self, address: Option<IpAddr>, account: Option<&str>) {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        // Over the limit, a failure still counts as the limit: the refusal is the answer.
        if let Some(address) = address.filter(|_| self.limits.per_address > 0)
            && let Some(budget) = counts.addresses.budget(AddressGroup::from(address), now)
        {
            let _ = budget.check(now);
        }
        if let Some(account) = account.filter(|_| self.limits.per_account > 0)
            && let Some(budget) = counts.accounts.budget(account.to_owned(), now)
        {
            let _ = budget.check(now);
        }
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
    fn a_full_table_refuses_no_login_and_stops_counting_new_failures() {
        let throttle = throttle(1, 0);
        for last in 1..=10 {
            throttle.fail(v4(last), None);
        }
        assert!(throttle.admit(v4(1), None).is_err(), "remembered: refused");
        // Logins from addresses without failures go on, the table full or not.
        for last in 11..=50 {
            assert!(throttle.admit(v4(last), None).is_ok());
        }
        throttle.fail(v4(11), None);
        assert!(
            throttle.admit(v4(11), None).is_ok(),
            "a failure the full table could not count"
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
