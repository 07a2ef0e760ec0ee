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

/// Redis's own CPU and memory counters, read with `INFO`: the same
/// whichever way Redis runs (a container, a local process, a URL on
/// another machine), where `/proc` would only see the local ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisInfoSample {
    /// `used_cpu_sys + used_cpu_user` since the Redis process started.
    pub cpu: Duration,
    /// `used_memory_rss`.
    pub rss_bytes: u64,
}

/// The two counters out of an `INFO cpu memory` reply (`key:value` lines).
pub fn parse_redis_info(text: &str) -> Option<RedisInfoSample> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.trim_end().strip_prefix(key)?.strip_prefix(':'))
    };
    let seconds = |key: &str| {
        value(key)?
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    let cpu = seconds("used_cpu_sys")? + seconds("used_cpu_user")?;
    Some(RedisInfoSample {
        cpu: Duration::from_secs_f64(cpu),
        rss_bytes: value("used_memory_rss")?.parse().ok()?,
    })
}

/// Redis's cost over a run, from periodic `INFO` samples: CPU counts from
/// the first sample on, and a counter that went down means Redis
/// restarted (a fault), whose new process counts from zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisCost {
    last_cpu: Option<Duration>,
    cpu: Duration,
    pub rss_bytes_now: u64,
    pub peak_rss_bytes: u64,
    pub restarts_seen: u32,
}

impl RedisCost {
    pub fn observe(&mut self, sample: RedisInfoSample) {
        match self.last_cpu {
            None => {}
            Some(last) if sample.cpu >= last => self.cpu += sample.cpu - last,
            Some(_) => {
                self.restarts_seen += 1;
                self.cpu += sample.cpu;
            }
        }
        self.last_cpu = Some(sample.cpu);
        self.rss_bytes_now = sample.rss_bytes;
        self.peak_rss_bytes = self.peak_rss_bytes.max(sample.rss_bytes);
    }

    /// CPU since the first sample; `None` before two samples.
    pub fn cpu(&self) -> Duration {
        self.cpu
    }

    pub fn sampled(&self) -> bool {
        self.last_cpu.is_some()
    }
}

/// One connection that reads Redis's `INFO`, each read bounded by a short
/// timeout: a paused or restarting Redis (a fault) costs one missed
/// sample, never a stalled run.
pub struct RedisInfoReader {
    connection: redis::aio::MultiplexedConnection,
}

const REDIS_INFO_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisInfoReader {
    pub async fn connect(url: &str) -> Result<RedisInfoReader, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_INFO_TIMEOUT * 3))
            .set_response_timeout(Some(REDIS_INFO_TIMEOUT));
        let connection = redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(RedisInfoReader { connection })
    }

    /// `None` when Redis did not answer in time or the reply lacked the
    /// counters (a server that renames them).
    pub async fn sample(&mut self) -> Option<RedisInfoSample> {
        let reply: Result<String, _> = redis::cmd("INFO")
            .arg("cpu")
            .arg("memory")
            .query_async(&mut self.connection)
            .await;
        match reply {
            Ok(text) => parse_redis_info(&text),
            Err(err) => {
                tracing::debug!(%err, "Redis INFO sample missed");
                None
            }
        }
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

    #[test]
    fn reads_redis_cpu_and_memory_and_survives_a_restart() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.0\r\n# Memory\r\nused_memory:100\r\n\
                    used_memory_rss:4096000\r\nused_memory_rss_human:3.91M\r\n";
        let sample = parse_redis_info(info).expect("parses");
        assert_eq!(sample.cpu, Duration::from_millis(3_750));
        assert_eq!(sample.rss_bytes, 4_096_000);
        assert_eq!(parse_redis_info("used_cpu_sys:1\r\n"), None);
        assert_eq!(
            parse_redis_info("used_cpu_sys:-1\nused_cpu_user:1\nused_memory_rss:1"),
            None
        );

        let at = |cpu_ms, rss_bytes| RedisInfoSample {
            cpu: Duration::from_millis(cpu_ms),
            rss_bytes,
        };
        let mut cost = RedisCost::default();
        cost.observe(at(10_000, 5));
        assert_eq!((cost.cpu(), cost.sampled()), (Duration::ZERO, true));
        cost.observe(at(10_400, 9));
        // Restarted: the new process's 100 ms count in full.
        cost.observe(at(100, 3));
        cost.observe(at(250, 4));
        assert_eq!(cost.cpu(), Duration::from_millis(400 + 100 + 150));
        assert_eq!(
            (cost.restarts_seen, cost.rss_bytes_now, cost.peak_rss_bytes),
            (1, 4, 9)
        );
    }
}
