//! Per-direction bandwidth limit: a token bucket whose burst is a small
//! slice of a second, so a limited stream moves at a steady pace instead of
//! in one-second gulps.

use std::time::{Duration, Instant};

/// The largest single write a limited direction makes; also the bucket's
/// burst cap, so a fast limit still moves in bounded chunks.
const MAX_BURST_BYTES: u64 = 16 * 1024;
/// Burst as a fraction of the rate: 1/20 s worth of bytes.
const BURST_DIVISOR: u64 = 20;
const TOKEN_TOLERANCE: f64 = 1e-6;

#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket: the first write after a limit is set goes at once.
    pub fn new(now: Instant) -> Self {
        TokenBucket {
            tokens: f64::INFINITY,
            refilled_at: now,
        }
    }

    pub fn burst_bytes(rate_bytes_per_s: u64) -> u64 {
        (rate_bytes_per_s / BURST_DIVISOR).clamp(1, MAX_BURST_BYTES)
    }

    /// While unlimited the bucket stays full, so a limit set later starts
    /// from a full burst rather than from credit piled up meanwhile.
    pub fn unlimited(&mut self, now: Instant) {
        self.tokens = f64::INFINITY;
        self.refilled_at = now;
    }

    /// Takes up to `wanted` bytes of credit: `Ok(n)` may write `n` bytes
    /// now (`n >= 1` when `wanted >= 1`), `Err(wait)` is how long until
    /// the next piece is allowed. `rate_bytes_per_s` must not be zero.
    pub fn take(
        &mut self,
        now: Instant,
        rate_bytes_per_s: u64,
        wanted: usize,
    ) -> Result<usize, Duration> {
        let rate = rate_bytes_per_s.max(1) as f64;
        let burst = Self::burst_bytes(rate_bytes_per_s) as f64;
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(burst);
        self.refilled_at = now;
        let need = (wanted as f64).min(burst);
        // Float refills can land a hair short of `need`; without the
        // tolerance and the rounded-up wait a writer could spin on
        // zero-length waits.
        if self.tokens + TOKEN_TOLERANCE >= need {
            self.tokens = (self.tokens - need).max(0.0);
            Ok(need as usize)
        } else {
            let wait_us = ((need - self.tokens) / rate * 1e6).ceil();
            Err(Duration::from_micros(wait_us as u64 + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a bucket on a virtual clock: returns how long moving
    /// `total` bytes in `chunk`-sized writes takes at `rate`.
    fn virtual_transfer_time(rate: u64, total: usize, chunk: usize) -> Duration {
        let start = Instant::now();
        let mut now = start;
        let mut bucket = TokenBucket::new(now);
        let mut left = total;
        let mut steps = 0;
        while left > 0 {
            steps += 1;
            assert!(steps < 1_000_000, "bucket never let the data through");
            match bucket.take(now, rate, chunk.min(left)) {
                Ok(n) => left -= n,
                Err(wait) => now += wait,
            }
        }
        now - start
    }

    #[test]
    fn a_full_bucket_lets_one_burst_through_then_paces() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(now);
        let rate = 128 * 1024;
        let burst = TokenBucket::burst_bytes(rate) as usize;
        assert_eq!(bucket.take(now, rate, 100_000), Ok(burst));
        let wait = bucket.take(now, rate, burst).unwrap_err();
        let expected = Duration::from_secs_f64(burst as f64 / rate as f64);
        assert!(
            wait.abs_diff(expected) < Duration::from_micros(10),
            "{wait:?}"
        );
        assert_eq!(bucket.take(now + wait, rate, burst), Ok(burst));
    }

    #[test]
    fn long_transfers_move_at_the_configured_rate() {
        let rate = 128 * 1024;
        let took = virtual_transfer_time(rate, 256 * 1024, 8 * 1024);
        // 2 s at the rate, less the one burst that was free.
        let burst_s = TokenBucket::burst_bytes(rate) as f64 / rate as f64;
        let expected = Duration::from_secs_f64(2.0 - burst_s);
        assert!(
            took.abs_diff(expected) < Duration::from_millis(5),
            "{took:?}"
        );
    }

    #[test]
    fn tiny_rates_still_make_progress() {
        let took = virtual_transfer_time(10, 50, 16);
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!(took <= Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn unlimited_time_earns_no_extra_credit() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        let later = start + Duration::from_secs(60);
        bucket.unlimited(later);
        let rate = 1000;
        let burst = TokenBucket::burst_bytes(rate) as usize;
        assert_eq!(bucket.take(later, rate, 10_000), Ok(burst));
        assert!(bucket.take(later, rate, 10_000).is_err());
    }
}
