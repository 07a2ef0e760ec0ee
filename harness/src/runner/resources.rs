//! The harness's own cost, for the summary: the harness must never be the
//! bottleneck, and this is how a reader can tell.

use std::time::Duration;

pub struct Usage {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
}

/// User + system CPU time and peak resident memory of this process.
pub fn harness_usage() -> Usage {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    if !ok {
        return Usage {
            cpu: Duration::ZERO,
            peak_rss_bytes: 0,
        };
    }
    let to_duration = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec.max(0) as u64)
            + Duration::from_micros(tv.tv_usec.max(0) as u64)
    };
    Usage {
        cpu: to_duration(usage.ru_utime) + to_duration(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        peak_rss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_some_cpu_and_memory() {
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let usage = harness_usage();
        assert!(usage.peak_rss_bytes > 1024 * 1024);
        assert!(usage.cpu > Duration::ZERO);
    }
}
