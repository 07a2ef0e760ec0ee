//! Progress while running, read from relaxed counters only. On a terminal
//! a live spinner line; otherwise (CI logs, `| cat`) one plain line every
//! [`PLAIN_EVERY`], as k6 does when not interactive. `--quiet` silences
//! both.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::ClientContext;

/// How often a plain progress line is printed when stdout is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
const LIVE_TICK: Duration = Duration::from_millis(250);

pub struct Progress {
    bar: Option<ProgressBar>,
    phase: Arc<Mutex<&'static str>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

/// Counter values at one moment, to turn totals into rates.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    at_us: u64,
    sends: u64,
    deliveries: u64,
}

impl Progress {
    pub fn start(ctx: Arc<ClientContext>, wanted: bool, sockets: u64) -> Progress {
        let phase = Arc::new(Mutex::new("running"));
        if !wanted {
            return Progress {
                bar: None,
                phase,
                ticker: None,
            };
        }
        if !std::io::stdout().is_terminal() {
            let shown_phase = phase.clone();
            let ticker = tokio::spawn(async move {
                let mut tick = tokio::time::interval(PLAIN_EVERY);
                // On a starved runtime, late ticks must not fire back to back
                // (two lines at the same second, the second with zero rates).
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate: nothing to say yet
                let mut last = Reading::default();
                loop {
                    tick.tick().await;
                    let now = read(&ctx);
                    let phase = *shown_phase.lock().unwrap_or_else(|p| p.into_inner());
                    println!("{}", plain_line(&ctx, phase, sockets, &last, &now));
                    last = now;
                }
            });
            return Progress {
                bar: None,
                phase,
                ticker: Some(ticker),
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix("running");
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                shown.set_message(live_message(&ctx, sockets));
                shown.tick();
            }
        });
        Progress {
            bar: Some(bar),
            phase,
            ticker: Some(ticker),
        }
    }

    pub fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
        if let Some(bar) = &self.bar {
            bar.set_prefix(phase);
        }
    }

    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn read(ctx: &ClientContext) -> Reading {
    Reading {
        at_us: ctx.clock.now_us(),
        sends: ctx.counters.sends.load(Ordering::Relaxed),
        deliveries: ctx.counters.deliveries.load(Ordering::Relaxed),
    }
}

fn ack_p99(ctx: &ClientContext) -> String {
    ctx.live
        .ack
        .snapshot(&[])
        .p99_us
        .map_or_else(|| "-".to_string(), |us| format!("{:.1}ms", us as f64 / 1e3))
}

fn live_message(ctx: &ClientContext, sockets: u64) -> String {
    let c = &ctx.counters;
    format!(
        "online {}/{sockets} | connects {} | sent {} | acked {} | delivered {} | ack p99 {} | repeats on a socket {} | faults active {} | drained {}",
        c.sockets_online.load(Ordering::Relaxed),
        c.connects.load(Ordering::Relaxed),
        c.sends.load(Ordering::Relaxed),
        c.acks.load(Ordering::Relaxed),
        c.deliveries.load(Ordering::Relaxed),
        ack_p99(ctx),
        ctx.live.anomalies_seen(),
        ctx.live.faults_active.load(Ordering::Relaxed),
        c.drained.load(Ordering::Relaxed),
    )
}

/// One self-contained line for logs: rates since the previous line.
fn plain_line(
    ctx: &ClientContext,
    phase: &str,
    sockets: u64,
    last: &Reading,
    now: &Reading,
) -> String {
    let seconds = (now.at_us.saturating_sub(last.at_us) as f64 / 1e6).max(1e-3);
    let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
    let c = &ctx.counters;
    format!(
        "progress {:>6.1}s {phase}: online {}/{sockets}, sends {:.1}/s, deliveries {:.1}/s, ack p99 so far {}, anomalies seen live {} (repeats on a socket; full check at the end), sends skipped {}, faults active {}",
        now.at_us as f64 / 1e6,
        c.sockets_online.load(Ordering::Relaxed),
        rate(now.sends, last.sends),
        rate(now.deliveries, last.deliveries),
        ack_p99(ctx),
        ctx.live.anomalies_seen(),
        c.sends_skipped.load(Ordering::Relaxed),
        ctx.live.faults_active.load(Ordering::Relaxed),
    )
}
