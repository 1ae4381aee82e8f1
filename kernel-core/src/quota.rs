//! [`Quota`]: a bound on memory the kernel holds on behalf of users.
//!
//! Every allocation a user request makes can fail (`try_reserve`, fallible
//! constructors): that keeps a failed allocation from panicking the kernel.
//! A quota keeps users from getting that far: what a subsystem holds for
//! its users (ring requests waiting in an engine, the RAM file system's
//! bytes) is charged before it is allocated and refused past the limit, so
//! the heap keeps room for the kernel's own allocations, which cannot fail
//! gracefully.
//!
//! Charges are in bytes of the objects held, without the slack of a
//! collection's amortized growth (at most as much again). The counter is
//! one atomic word: charging is a compare-and-swap loop, never a lock.

use abi::errno::{Errno, ENOMEM};
use core::sync::atomic::{AtomicUsize, Ordering};

/// A bounded byte counter.
#[derive(Debug)]
pub struct Quota {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Quota {
    /// A quota of `limit` bytes, none used.
    pub const fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Changes the limit. Charges already made stay (the quota may be over
    /// its new limit until they are returned).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes`, or fails with `err` (nothing charged) if that would
    /// pass the limit.
    pub fn try_charge_or(&self, bytes: usize, err: Errno) -> Result<(), Errno> {
        let limit = self.limit();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let new = used.checked_add(bytes).filter(|&n| n <= limit).ok_or(err)?;
            match self
                .used
                .compare_exchange_weak(used, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Charges as much as there is room for, between `min` and `max` bytes
    /// (`max >= min`), and returns how much; `err` (nothing charged) if not
    /// even `min` fits.
    pub fn try_charge_between(&self, min: usize, max: usize, err: Errno) -> Result<usize, Errno> {
        let limit = self.limit();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let room = limit.saturating_sub(used);
            if room < min {
                return Err(err);
            }
            let take = max.max(min).min(room);
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(take),
                Err(now) => used = now,
            }
        }
    }

    /// Charges `bytes`, or fails with `ENOMEM`.
    pub fn try_charge(&self, bytes: usize) -> Result<(), Errno> {
        self.try_charge_or(bytes, ENOMEM)
    }

    /// Returns `bytes` charged earlier. Returning more than is charged
    /// leaves the counter at zero (a bug in the caller, never an underflow).
    pub fn uncharge(&self, bytes: usize) {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let new = used.saturating_sub(bytes);
            match self
                .used
                .compare_exchange_weak(used, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => used = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::errno::ENOSPC;

    #[test]
    fn charges_up_to_the_limit() {
        let q = Quota::new(100);
        assert_eq!(q.try_charge(60), Ok(()));
        assert_eq!(q.try_charge(41), Err(ENOMEM));
        assert_eq!(q.try_charge_or(41, ENOSPC), Err(ENOSPC));
        assert_eq!(q.used(), 60, "a refused charge takes nothing");
        assert_eq!(q.try_charge(40), Ok(()));
        assert_eq!(q.try_charge(0), Ok(()));
        assert_eq!(q.try_charge(1), Err(ENOMEM));
        q.uncharge(100);
        assert_eq!(q.used(), 0);
        q.uncharge(5);
        assert_eq!(q.used(), 0, "no underflow");
        assert_eq!(q.try_charge(usize::MAX), Err(ENOMEM));
        q.set_limit(usize::MAX);
        assert_eq!(q.try_charge(usize::MAX), Ok(()));
        assert_eq!(q.try_charge(1), Err(ENOMEM), "no overflow");
        assert_eq!(q.limit(), usize::MAX);
    }

    #[test]
    fn charges_what_fits_between_bounds() {
        let q = Quota::new(100);
        assert_eq!(q.try_charge_between(10, 60, ENOSPC), Ok(60));
        assert_eq!(q.try_charge_between(10, 60, ENOSPC), Ok(40));
        assert_eq!(q.try_charge_between(1, 60, ENOSPC), Err(ENOSPC));
        q.uncharge(30);
        assert_eq!(q.try_charge_between(31, 40, ENOSPC), Err(ENOSPC));
        assert_eq!(q.try_charge_between(30, 30, ENOSPC), Ok(30));
        assert_eq!(q.used(), 100);
    }
}
