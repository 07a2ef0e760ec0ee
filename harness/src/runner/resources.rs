//! What the run cost, for the summary: the harness's own CPU and memory
//! (the harness must never be the bottleneck, and this is how a reader can
//! tell), and the spawned servers' (CPU per delivery, memory per socket),
//! read from `/proc` while they run.

use std::collections::HashMap;
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

/// CPU time and resident memory of another process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    pub cpu: Duration,
    pub rss_bytes: u64,
}

pub fn process_usage(pid: u32) -> Option<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// `utime` and `stime` (fields 14 and 15, in clock ticks) and `rss`
/// (field 24, in pages); the command name (field 2) may hold spaces and
/// parentheses, so fields are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<ProcessUsage> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|ticks| *ticks > 0)?;
    // SAFETY: as above.
    let page_bytes = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let ticks = field(14)? + field(15)?;
    Some(ProcessUsage {
        cpu: Duration::from_micros(ticks * 1_000_000 / ticks_per_s),
        rss_bytes: field(24)? * page_bytes,
    })
}

/// The spawned server processes' cost over a run, sampled periodically:
/// a server killed by a fault keeps the CPU of its last sample (at most
/// one sampling interval is missed per kill).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCost {
    cpu_by_pid: HashMap<u32, Duration>,
    /// Sum of the servers' RSS at the latest sample.
    pub rss_bytes_now: u64,
    /// Largest sum of the servers' RSS seen.
    pub peak_rss_bytes: u64,
    /// Processes seen (restarts count again).
    pub processes: u32,
}

impl ServerCost {
    /// One sample of every server process running now.
    pub fn sample(&mut self, pids: &[u32]) {
        let mut rss_sum = 0;
        for pid in pids {
            let Some(usage) = process_usage(*pid) else {
                continue;
            };
            if self.cpu_by_pid.insert(*pid, usage.cpu).is_none() {
                self.processes += 1;
            }
            rss_sum += usage.rss_bytes;
        }
        self.rss_bytes_now = rss_sum;
        self.peak_rss_bytes = self.peak_rss_bytes.max(rss_sum);
    }

    pub fn cpu(&self) -> Duration {
        self.cpu_by_pid.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_tricky_command_name() {
        // Fields 14/15 = 250/150 ticks, field 24 = 1000 pages.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[14 - 3] = "250".into();
        fields[15 - 3] = "150".into();
        fields[24 - 3] = "1000".into();
        let stat = format!("4242 (a) b (c)) {}", fields.join(" "));
        let usage = parse_stat(&stat).expect("parses");
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        assert_eq!(usage.cpu, Duration::from_micros(400 * 1_000_000 / ticks));
        assert_eq!(usage.rss_bytes, 1000 * page);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn samples_a_child_process_and_keeps_the_cpu_of_one_that_ended() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("sh runs");
        let pid = child.id();
        let mut cost = ServerCost::default();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while cost.cpu().is_zero() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            cost.sample(&[pid]);
        }
        assert!(cost.cpu() > Duration::ZERO, "{cost:?}");
        assert!(cost.peak_rss_bytes > 0);
        let cpu = cost.cpu();
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        cost.sample(&[]);
        assert_eq!(
            (cost.cpu(), cost.processes, cost.rss_bytes_now),
            (cpu, 1, 0)
        );
    }

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
