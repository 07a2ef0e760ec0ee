//! A live progress line while running: quiet when stdout is not a
//! terminal (CI logs stay readable), read from the relaxed counters only.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::ClientContext;

pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(ctx: Arc<ClientContext>, wanted: bool, sockets: u64) -> Progress {
        if !wanted || !std::io::stdout().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
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
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let c = &ctx.counters;
                shown.set_message(format!(
                    "online {}/{sockets} | connects {} | sent {} | acked {} | delivered {} | drained {}",
                    c.sockets_online.load(Ordering::Relaxed),
                    c.connects.load(Ordering::Relaxed),
                    c.sends.load(Ordering::Relaxed),
                    c.acks.load(Ordering::Relaxed),
                    c.deliveries.load(Ordering::Relaxed),
                    c.drained.load(Ordering::Relaxed),
                ));
                shown.tick();
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    pub fn set_phase(&self, phase: &'static str) {
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
