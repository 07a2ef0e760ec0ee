//! Bytes of live messages queued for sockets: a bound per socket (checked
//! by the fan-out against the socket's own counter) and one for the whole
//! process (this budget). A message that does not fit is not queued: the
//! socket is marked lagged and re-reads it from Redis in bounded pages.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
    /// Highest `used` ever seen: what tests and operators check the limit by.
    peak: AtomicUsize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Reserves `bytes` if they fit under the limit.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            });
        match reserved {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    pub fn release(&self, bytes: usize) {
        // Saturating: a release never exceeds what was reserved, but a
        // wrap-around would turn a bookkeeping slip into "budget full".
        let _ = self // Err only when it would go below 0, which it cannot
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_reserves_past_the_limit() {
        let budget = ByteBudget::new(100);
        assert!(budget.try_reserve(60));
        assert!(!budget.try_reserve(41));
        assert!(budget.try_reserve(40));
        budget.release(60);
        assert_eq!(budget.used(), 40);
        assert_eq!(budget.peak(), 100);
    }
}
