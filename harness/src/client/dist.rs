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
}
