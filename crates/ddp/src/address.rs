//! Caps on what one client address may hold at once (DDP sessions here, TCP connections in
//! the server binary), so that one client cannot take every slot of a server-wide limit.
//!
//! A leaf. Addresses are grouped as a client controls them: an IPv4 address is one client,
//! and so is an IPv6 /64 (one subnet is what a single host or household usually gets, and it
//! holds more addresses than any cap). An IPv4-mapped IPv6 address counts as its IPv4 one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The group an address counts in: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressGroup {
    /// One IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for AddressGroup {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6(u64::try_from(u128::from(v6) >> 64).unwrap_or(u64::MAX)),
            },
        }
    }
}

/// How many slots each address group holds, under a cap per group.
#[derive(Debug)]
pub struct PerAddress {
    limit: usize,
    held: Mutex<HashMap<AddressGroup, usize>>,
}

impl PerAddress {
    /// A counter allowing `limit` slots per address group; zero means no cap.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: Mutex::default(),
        })
    }

    /// Takes a slot for `address`, or `None` when its group holds `limit` already. The
    /// slot is given back when the returned guard is dropped.
    pub fn take(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let group = AddressGroup::from(address);
        let mut held = self.lock();
        let count = held.entry(group).or_insert(0);
        if self.limit != 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counter: Arc::clone(self),
            group,
        })
    }

    /// How many slots `address`'s group holds (for tests: the server itself only takes
    /// and gives back).
    #[cfg(test)]
    fn held(&self, address: IpAddr) -> usize {
        self.lock()
            .get(&AddressGroup::from(address))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddressGroup, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One slot of an address group (see [`PerAddress::take`]).
#[derive(Debug)]
pub struct AddressSlot {
    counter: Arc<PerAddress>,
    group: AddressGroup,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.counter.lock();
        if let Some(count) = held.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                // Only groups holding slots are kept: the map stays as small as the clients.
                held.remove(&self.group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddressGroup::from(ip("2001:db8:1:2::1")),
            AddressGroup::from(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            AddressGroup::from(ip("2001:db8:1:2::1")),
            AddressGroup::from(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddressGroup::from(ip("::ffff:10.0.0.1")),
            AddressGroup::from(ip("10.0.0.1"))
        );
        assert_ne!(
            AddressGroup::from(ip("10.0.0.1")),
            AddressGroup::from(ip("10.0.0.2"))
        );
    }

    #[test]
    fn a_group_holds_at_most_the_limit_until_slots_are_given_back() {
        let counter = PerAddress::new(2);
        let a = ip("10.0.0.1");
        let first = counter.take(a).expect("first");
        let _second = counter.take(a).expect("second");
        assert!(counter.take(a).is_none(), "third refused");
        assert!(counter.take(ip("10.0.0.2")).is_some(), "others unaffected");
        drop(first);
        assert_eq!(counter.held(a), 1);
        assert!(counter.take(a).is_some(), "a slot is free again");
    }

    #[test]
    fn zero_means_no_cap_and_empty_groups_are_forgotten() {
        let counter = PerAddress::new(0);
        let slots: Vec<_> = (0..100)
            .map(|_| counter.take(ip("::1")).expect("no cap"))
            .collect();
        assert_eq!(counter.held(ip("::1")), 100);
        drop(slots);
        assert!(counter.lock().is_empty());
    }
}
