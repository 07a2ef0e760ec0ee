//! Sampling the scenario's random quantities from the run's seeded RNG.

use std::time::Duration;

use rand::Rng;

use crate::scenario::DurationDist;

/// Draws one duration. Exponential uses inverse-transform sampling so no
/// extra distribution crate is needed; capped at 100 means so one unlucky
/// draw cannot stall a bounded run.
pub fn sample_duration(dist: &DurationDist, rng: &mut impl Rng) -> Duration {
    match dist {
        DurationDist::Fixed { value } => *value,
        DurationDist::Uniform { min, max } => {
            if max <= min {
                *min
            } else {
                let span = (*max - *min).as_secs_f64();
                *min + Duration::from_secs_f64(rng.random::<f64>() * span)
            }
        }
        DurationDist::Exponential { mean } => exponential(mean.as_secs_f64(), rng),
    }
}

/// Exponential with the given mean (seconds), capped at 100 x mean.
pub fn exponential(mean_s: f64, rng: &mut impl Rng) -> Duration {
    // 1 - u is in (0, 1], so ln never sees 0.
    let u: f64 = rng.random();
    let draw = -mean_s * (1.0 - u).ln();
    Duration::from_secs_f64(draw.min(mean_s * 100.0).max(0.0))
}

/// Window over which the devices that are offline when the drain begins
/// come back (each at a uniform point of it, or sooner when its own
/// offline time ends first). All at once, they were a reconnect herd of
/// the harness's own making (~10% of the sockets within a few
/// milliseconds) that saturated the box and set the run's recovery p99
/// (docs/performance.md, "Recovery p99: the drain's reconnect herd").
/// At churn-1k this is ~175 returns a second, twice the churn's rate.
pub const DRAIN_RETURN_SPREAD: Duration = Duration::from_secs(1);

/// The spread a run uses: `DRAIN_RETURN_SPREAD`, but at most a quarter of
/// the scenario's drain timeout, so a short drain (`drain_timeout` may be
/// any positive duration) never times out on devices still away.
pub fn drain_return_spread(drain_timeout: Duration) -> Duration {
    DRAIN_RETURN_SPREAD.min(drain_timeout / 4)
}

/// How long a device that was offline when the drain began still stays
/// away: what is `left` of its own offline time, but no longer than a
/// uniform draw within `spread`, so the returns are spread instead of a
/// herd in the drain's first milliseconds.
pub fn drain_return_delay(left: Duration, spread: Duration, rng: &mut impl Rng) -> Duration {
    left.min(spread.mul_f64(rng.random_range(0.0..1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn exponential_mean_is_close() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| exponential(0.5, &mut rng).as_secs_f64())
            .sum();
        let mean = total / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn uniform_stays_in_bounds() {
        let mut rng = StdRng::seed_from_u64(1);
        let dist = DurationDist::Uniform {
            min: Duration::from_secs(2),
            max: Duration::from_secs(3),
        };
        for _ in 0..1000 {
            let d = sample_duration(&dist, &mut rng);
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(3));
        }
    }

    /// The drain's returns are spread over the window, not all at its
    /// start (they were: every offline device reconnected at once).
    #[test]
    fn offline_devices_return_spread_over_the_drain_window() {
        let seed = 7;
        println!("seed {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let delays: Vec<Duration> = (0..1000)
            .map(|_| drain_return_delay(Duration::from_secs(30), DRAIN_RETURN_SPREAD, &mut rng))
            .collect();
        assert!(
            delays.iter().all(|d| *d < DRAIN_RETURN_SPREAD),
            "{delays:?}"
        );
        let mut tenths = [0usize; 10];
        for delay in &delays {
            tenths[(delay.as_secs_f64() / DRAIN_RETURN_SPREAD.as_secs_f64() * 10.0) as usize] += 1;
        }
        // Uniform: ~100 per tenth of the window (binomial sd ~9.5).
        assert!(
            tenths.iter().all(|n| (60..=140).contains(n)),
            "returns per tenth of the window: {tenths:?}"
        );
    }

    /// A device whose offline time ends within the window returns then,
    /// not later: the drain never keeps a device away longer than churn.
    #[test]
    fn a_device_due_back_sooner_keeps_its_own_time() {
        let mut rng = StdRng::seed_from_u64(11);
        let left = Duration::from_millis(40);
        let delays: Vec<Duration> = (0..200)
            .map(|_| drain_return_delay(left, DRAIN_RETURN_SPREAD, &mut rng))
            .collect();
        assert!(delays.iter().all(|d| *d <= left), "{delays:?}");
        assert!(
            delays.iter().filter(|d| **d == left).count() > 150,
            "most draws exceed 40 ms of a 1 s window"
        );
        assert_eq!(
            drain_return_delay(Duration::ZERO, DRAIN_RETURN_SPREAD, &mut rng),
            Duration::ZERO
        );
    }

    /// A short drain shrinks the spread: every device is back within a
    /// quarter of the drain timeout, never after it.
    #[test]
    fn a_short_drain_timeout_bounds_the_spread() {
        assert_eq!(
            drain_return_spread(Duration::from_secs(60)),
            DRAIN_RETURN_SPREAD
        );
        let spread = drain_return_spread(Duration::from_millis(500));
        assert_eq!(spread, Duration::from_millis(125));
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..200)
            .map(|_| drain_return_delay(Duration::from_secs(30), spread, &mut rng))
            .all(|d| d < spread));
    }
}
