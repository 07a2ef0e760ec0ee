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

/// Resident memory now (Linux `/proc/self/statm`), if readable.
pub fn current_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page_size)
        .ok()
        .map(|page| resident_pages * page)
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
        let now = current_rss_bytes().expect("/proc/self/statm on Linux");
        assert!(now > 1024 * 1024 && now <= usage.peak_rss_bytes.max(now));
    }
}
