//! `recordAppPackages` (spec §7.1), the stats server's one method, and the limits on how
//! much its callers may write.
//!
//! Anyone may report usage: the `meteor` tool reports anonymously, and counts are per app
//! id, which the caller makes up. So the volume, not the caller, is what is bounded: every
//! call is charged its package entries (at least one) against a budget per client address
//! and a budget for the whole server, each per interval ([`UsageRates`]). A call over
//! either budget is refused with Meteor's `too-many-requests` error and records nothing;
//! the tool swallows stats errors (spec §7.1 step 5), and an app's next report lists the
//! same packages again, so a refused report loses little. What a report may contain is
//! bounded by [`UsageLimits`], and which of its packages count is the recorder's rule
//! (only versions the catalog holds, unless configured otherwise).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use exosphere_catalog::StoreError;
use exosphere_catalog::usage::{AppReport, RecordError, Recorder, UsageLimits};
use exosphere_ddp::ejson::{Ejson, EjsonMap};
use exosphere_ddp::{
    AddressGroup, DdpError, MethodContext, RateLimit, Reply, random_id, too_many_requests,
};
use tokio::time::Instant;

use super::budgets::KeyedBudgets;
use super::tx::disk_refusal;

/// How much package usage callers may report: package entries per interval, per client
/// address and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRates {
    /// Package entries one client address may report per [`interval`](Self::interval)
    /// (grouped as [`AddressGroup`] groups them: IPv6 per /64); 0 turns the limit off.
    pub per_address: u32,
    /// Package entries all callers together may report per interval; 0 turns it off.
    pub global: u32,
    /// The window both budgets are counted in.
    pub interval: Duration,
    /// Client addresses whose budgets are remembered at once. When it is full, budgets
    /// whose window is over are forgotten (at most once a second); while every slot holds
    /// a budget in use, calls from further addresses are refused, so a caller with many
    /// addresses cannot grow the server's memory.
    pub max_addresses: usize,
}

impl Default for UsageRates {
    fn default() -> Self {
        UsageRates {
            per_address: 20_000,
            global: 200_000,
            interval: Duration::from_secs(60),
            max_addresses: 100_000,
        }
    }
}

/// The budgets of [`UsageRates`], as counted so far.
pub struct UsageThrottle {
    rates: UsageRates,
    budgets: Mutex<Budgets>,
}

/// Counters of the current windows.
struct Budgets {
    global: RateLimit,
    per_address: KeyedBudgets<AddressGroup>,
}

impl UsageThrottle {
    /// Budgets that start empty.
    pub fn new(rates: UsageRates) -> Self {
        let global = RateLimit::new(rates.global, rates.interval, Instant::now());
        let per_address = KeyedBudgets::new(rates.per_address, rates.interval, rates.max_addresses);
        UsageThrottle {
            rates,
            budgets: Mutex::new(Budgets {
                global,
                per_address,
            }),
        }
    }

    /// Charges a call of `entries` package entries from `address` (unknown for a
    /// transport that does not say): `Ok` to record it, or the refusal to answer with,
    /// charging nothing.
    pub fn charge(&self, address: Option<IpAddr>, entries: usize) -> Result<(), DdpError> {
        let cost = u32::try_from(entries).unwrap_or(u32::MAX).max(1);
        let now = Instant::now();
        let mut budgets = self
            .budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Budgets {
            global,
            per_address,
        } = &mut *budgets;
        let own = match address.filter(|_| self.rates.per_address > 0) {
            None => None,
            Some(address) => {
                let addresses = per_address.len();
                let Some(budget) = per_address.budget(AddressGroup::from(address), now) else {
                    tracing::warn!(
                        addresses,
                        "refused a usage report: too many client addresses report at once"
                    );
                    return Err(too_many_requests(self.rates.interval));
                };
                Some(budget)
            }
        };
        // Check the address's budget on a copy, so a call the global budget refuses
        // charges neither.
        if let Some(budget) = own {
            let mut trial = budget.clone();
            trial.charge(now, cost)?;
            global.charge(now, cost)?;
            *budget = trial;
        } else {
            global.charge(now, cost)?;
        }
        Ok(())
    }
}

/// What `recordAppPackages` needs: the group-commit recorder, the report limits and the
/// rate budgets.
pub struct UsageRecording {
    /// Writes reports many per transaction and answers each once it is committed.
    pub recorder: Recorder,
    /// Bounds on one report.
    pub limits: UsageLimits,
    /// Bounds on how much all reports together may write.
    pub throttle: UsageThrottle,
}

impl UsageRecording {
    /// `recordAppPackages(appId, packages, details)` (spec §7.1): validates the report,
    /// charges it to the caller's address and the server's budget, records it on today's
    /// UTC day, and answers once it is committed, with a `newSessionId` when `details`
    /// carried no `sessionId`.
    ///
    /// Anonymous and logged-in callers are recorded alike: the report counts per app. No
    /// address or detail of the caller is kept beyond the current rate window.
    pub async fn record_app_packages(
        &self,
        ctx: &MethodContext,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        let mut params = params.into_iter();
        let (app_id, packages) = (params.next(), params.next());
        let (Some(app_id), Some(packages)) = (app_id, packages) else {
            return Err(DdpError::bad_request(
                "recordAppPackages expects (appId, packages, details)",
            ));
        };
        let has_session = match params.next() {
            None | Some(Ejson::Null) => false,
            Some(Ejson::Object(details)) => {
                matches!(details.get("sessionId"), Some(Ejson::String(id)) if !id.is_empty())
            }
            Some(_) => return Err(DdpError::bad_request("details must be an object")),
        };
        let entries = match &packages {
            Ejson::Array(entries) => entries.len(),
            _ => 0,
        };
        let report = AppReport::from_params(app_id, packages, &self.limits)
            .map_err(|error| DdpError::bad_request(error.to_string()))?;
        let address = ctx.session.remote_addr.map(|addr| addr.ip());
        if let Err(refusal) = self.throttle.charge(address, entries) {
            tracing::info!(entries, "refused a usage report over its rate budget");
            return Err(refusal);
        }
        let today = chrono::Utc::now().date_naive();
        match self.recorder.record(today, report).await {
            Ok(()) => {}
            Err(RecordError::Store(error)) if matches!(*error, StoreError::Busy) => {
                return Err(DdpError::new(503, "The stats database is busy; try again"));
            }
            Err(RecordError::Store(error)) => {
                return Err(disk_refusal(&error).unwrap_or_else(|| {
                    tracing::error!(%error, "recordAppPackages failed");
                    DdpError::internal()
                }));
            }
            Err(error) => {
                tracing::error!(%error, "recordAppPackages failed");
                return Err(DdpError::internal());
            }
        }
        let mut result = EjsonMap::new();
        if !has_session {
            result.insert("newSessionId".to_owned(), Ejson::String(random_id()));
        }
        Ok(Reply::Value(Ejson::Object(result)))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn rates(per_address: u32, global: u32, max_addresses: usize) -> UsageRates {
        UsageRates {
            per_address,
            global,
            interval: Duration::from_secs(3600),
            max_addresses,
        }
    }

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn each_address_has_its_own_budget_and_all_share_the_global_one() {
        let throttle = UsageThrottle::new(rates(100, 250, 10));
        assert!(throttle.charge(v4(1), 100).is_ok());
        let refused = throttle.charge(v4(1), 1).unwrap_err();
        assert_eq!(refused.error, "too-many-requests".into());
        assert!(throttle.charge(v4(2), 100).is_ok());
        // 200 of 250 used: a third address gets only what is left of the global budget,
        // and a refused call charges its address nothing.
        assert!(throttle.charge(v4(3), 60).is_err());
        assert!(throttle.charge(v4(3), 50).is_ok());
        assert!(throttle.charge(v4(4), 1).is_err());
    }

    #[test]
    fn ipv6_addresses_share_a_budget_per_64_and_mapped_ipv4_counts_as_ipv4() {
        let throttle = UsageThrottle::new(rates(10, 0, 10));
        let host = |last: u16| {
            Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 1, 0, 0, 0, last,
            )))
        };
        assert!(throttle.charge(host(1), 10).is_ok());
        assert!(throttle.charge(host(2), 1).is_err(), "same /64");
        let other = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1)));
        assert!(throttle.charge(other, 10).is_ok());
        assert!(throttle.charge(v4(9), 10).is_ok());
        let mapped = Some(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped()));
        assert!(throttle.charge(mapped, 1).is_err(), "the same IPv4 client");
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let throttle = UsageThrottle::new(rates(10, 0, 2));
        assert!(throttle.charge(v4(1), 1).is_ok());
        assert!(throttle.charge(v4(2), 1).is_ok());
        assert!(throttle.charge(v4(3), 1).is_err(), "both slots are in use");
        assert!(throttle.charge(v4(1), 1).is_ok(), "known addresses go on");
        assert!(
            throttle.charge(None, 1).is_ok(),
            "no address: only the global budget"
        );
    }

    #[test]
    fn zero_turns_a_budget_off() {
        let throttle = UsageThrottle::new(rates(0, 0, 1));
        assert!((0..1000).all(|i| throttle.charge(v4((i % 200) as u8), 5000).is_ok()));
    }
}
