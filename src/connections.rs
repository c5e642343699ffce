//! Connection budgets shared by the listeners, so strangers cannot pin the server's
//! resources: a server-wide cap kept below the process's file-descriptor limit (past it, new
//! connections are refused at accept and `/ready` says not ready, instead of every accept
//! failing with EMFILE while `/health` looks fine), and a per-address cap per service.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Descriptors kept free of client connections for the store, listeners, files and logs.
const RESERVED_DESCRIPTORS: usize = 256;

/// Open client connections across every listener, at most `max`.
#[derive(Debug)]
pub struct ConnectionBudget {
    open: AtomicUsize,
    max: usize,
}

/// One connection's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    budget: Arc<ConnectionBudget>,
}

impl ConnectionBudget {
    /// A budget of `max` connections; 0 means the descriptor limit less a reserve.
    pub fn new(max: usize) -> ConnectionBudget {
        let max = if max == 0 {
            descriptor_limit()
                .saturating_sub(RESERVED_DESCRIPTORS)
                .max(64)
        } else {
            max
        };
        ConnectionBudget {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// A place for a new connection, or `None` when the budget is spent.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionPermit {
            budget: self.clone(),
        })
    }

    /// Whether no new connection would be accepted now.
    pub fn is_exhausted(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.max
    }

    /// The cap in force.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Simultaneous connections per source address for one service.
#[derive(Debug)]
pub struct PerAddressLimit {
    open: DashMap<IpAddr, u32>,
    max: u32,
}

/// A connection counted against its address, released when dropped.
#[derive(Debug)]
pub struct AddressPermit {
    limit: Arc<PerAddressLimit>,
    ip: IpAddr,
}

impl PerAddressLimit {
    pub fn new(max: u32) -> PerAddressLimit {
        PerAddressLimit {
            open: DashMap::new(),
            max,
        }
    }

    /// Counts a connection from `ip`, or `None` when that address has `max` open.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressPermit> {
        let mut count = self.open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressPermit {
            limit: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        if let dashmap::mapref::entry::Entry::Occupied(mut entry) = self.limit.open.entry(self.ip) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

/// The soft limit on open files of this process (`/proc/self/limits`), or 1024 when unknown.
fn descriptor_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_max_and_frees_on_drop() {
        let budget = Arc::new(ConnectionBudget::new(2));
        let first = budget.try_acquire().unwrap();
        let _second = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        assert!(budget.is_exhausted());
        drop(first);
        assert!(!budget.is_exhausted());
        assert!(budget.try_acquire().is_some());
    }

    #[test]
    fn automatic_budget_stays_below_the_descriptor_limit() {
        let budget = ConnectionBudget::new(0);
        assert!(budget.max() < descriptor_limit().max(64 + RESERVED_DESCRIPTORS));
        assert!(budget.max() >= 64);
    }

    #[test]
    fn addresses_are_counted_separately() {
        let limit = Arc::new(PerAddressLimit::new(1));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none());
        assert!(limit.try_acquire(b).is_some());
        drop(held);
        assert!(limit.try_acquire(a).is_some());
        assert!(
            limit.open.get(&b).is_none(),
            "released addresses are forgotten"
        );
    }
}
