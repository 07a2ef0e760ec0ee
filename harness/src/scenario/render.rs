//! [`Scenario`] -> canonical TOML: every key written out (defaults too),
//! values in canonical units. A run writes this next to its report as the
//! exact scenario it played (with the seed it picked), so the run can be
//! repeated with `harness run <that file>`. Parsing the output gives back
//! an equal `Scenario` for every scenario the parser accepts.

use std::fmt::Write;

use super::model::*;
use super::units::{format_duration, format_percentile, format_rate, format_size};

pub fn render_scenario(scenario: &Scenario) -> String {
    let mut out = String::new();
    render_top(&mut out, scenario);
    render_redis(&mut out, &scenario.redis);
    render_servers(&mut out, &scenario.servers);
    render_population(&mut out, &scenario.population);
    render_traffic(&mut out, &scenario.traffic);
    render_churn(&mut out, &scenario.churn);
    render_thresholds(&mut out, &scenario.thresholds);
    render_expect(&mut out, &scenario.expect);
    out
}

/// `writeln!` into a `String`, whose `fmt::Result` is always `Ok`.
macro_rules! emit {
    ($out:expr, $($arg:tt)*) => {
        // Writing to a String never returns an error.
        let _ = writeln!($out, $($arg)*);
    };
}

fn render_top(out: &mut String, scenario: &Scenario) {
    emit!(out, "# Canonical form of the scenario, as run.");
    emit!(out, "name = {}", quote(&scenario.name));
    if let Some(seed) = scenario.seed {
        emit!(out, "seed = {seed}");
    }
    emit!(
        out,
        "duration = {}",
        quote(&format_duration(scenario.duration))
    );
    emit!(
        out,
        "ramp_up = {}",
        quote(&format_duration(scenario.ramp_up))
    );
    emit!(
        out,
        "drain_timeout = {}",
        quote(&format_duration(scenario.drain_timeout))
    );
}

fn render_redis(out: &mut String, redis: &RedisSpec) {
    let provider = match redis.provider {
        RedisProviderChoice::Auto => "auto",
        RedisProviderChoice::Testcontainers => "testcontainers",
        RedisProviderChoice::Local => "local",
        RedisProviderChoice::Url => "url",
    };
    let persistence = match redis.persistence {
        Persistence::None => "none",
        Persistence::AofEverysec => "aof-everysec",
        Persistence::AofAlways => "aof-always",
    };
    emit!(out, "\n[redis]");
    emit!(out, "provider = {}", quote(provider));
    if let Some(url) = &redis.url {
        emit!(out, "url = {}", quote(url));
    }
    if let Some(image) = &redis.image {
        emit!(out, "image = {}", quote(image));
    }
    emit!(out, "persistence = {}", quote(persistence));
}

fn render_servers(out: &mut String, servers: &ServersSpec) {
    emit!(out, "\n[servers]");
    match servers {
        ServersSpec::Spawn {
            count,
            sync_interval,
            heartbeat_interval,
            extra_args,
        } => {
            emit!(out, "spawn = {count}");
            emit!(
                out,
                "sync_interval = {}",
                quote(&format_duration(*sync_interval))
            );
            emit!(
                out,
                "heartbeat_interval = {}",
                quote(&format_duration(*heartbeat_interval))
            );
            emit!(out, "extra_args = {}", string_array(extra_args));
        }
        ServersSpec::External { targets } => {
            emit!(out, "targets = {}", string_array(targets));
        }
    }
}

fn render_population(out: &mut String, population: &Population) {
    emit!(out, "\n[population]");
    emit!(out, "users = {}", population.users);
    emit!(out, "devices_per_user = {}", population.devices_per_user);
    emit!(out, "conversations = {}", population.conversations);
    emit!(
        out,
        "members_per_conversation = {}",
        population.members_per_conversation
    );
}

fn render_traffic(out: &mut String, traffic: &Traffic) {
    emit!(out, "\n[traffic]");
    emit!(
        out,
        "send_rate = {}",
        quote(&format_rate(traffic.send_rate_per_s))
    );
    emit!(
        out,
        "body_size = {}",
        quote(&format_size(traffic.body_bytes))
    );
}

fn render_churn(out: &mut String, churn: &Churn) {
    emit!(out, "\n[churn]");
    emit!(out, "enabled = {}", churn.enabled);
    emit!(out, "online = {}", dist(&churn.online));
    emit!(out, "offline = {}", dist(&churn.offline));
    emit!(out, "abrupt_share = {}", float(churn.abrupt_share));
    emit!(out, "reset_share = {}", float(churn.reset_share));
    emit!(
        out,
        "client_cursor_share = {}",
        float(churn.client_cursor_share)
    );
}

fn render_thresholds(out: &mut String, thresholds: &Thresholds) {
    emit!(out, "\n[thresholds]");
    if let Some(rate) = thresholds.min_delivery_rate_per_s {
        emit!(out, "min_delivery_rate = {}", quote(&format_rate(rate)));
    }
    if thresholds.latency.is_empty() {
        emit!(out, "latency = []");
        return;
    }
    emit!(out, "latency = [");
    for threshold in &thresholds.latency {
        emit!(
            out,
            "  {{ metric = {}, percentile = {}, max = {} }},",
            quote(threshold.metric.name()),
            quote(&format_percentile(threshold.percentile.0)),
            quote(&format_duration(threshold.max)),
        );
    }
    emit!(out, "]");
}

fn render_expect(out: &mut String, expect: &Expectations) {
    let redelivery = if expect.allow_stored_cursor_redelivery {
        "allowed"
    } else {
        "forbidden"
    };
    emit!(out, "\n[expect]");
    emit!(out, "no_loss = {}", expect.no_loss);
    emit!(out, "no_duplicates = {}", expect.no_duplicates);
    emit!(out, "order = {}", expect.order);
    emit!(out, "stored_cursor_redelivery = {}", quote(redelivery));
}

fn dist(dist: &DurationDist) -> String {
    let duration = |value| quote(&format_duration(value));
    match dist {
        DurationDist::Fixed { value } => {
            format!("{{ dist = \"fixed\", value = {} }}", duration(*value))
        }
        DurationDist::Uniform { min, max } => format!(
            "{{ dist = \"uniform\", min = {}, max = {} }}",
            duration(*min),
            duration(*max)
        ),
        DurationDist::Exponential { mean } => {
            format!("{{ dist = \"exponential\", mean = {} }}", duration(*mean))
        }
    }
}

/// `Debug` keeps a decimal point (`1.0`, not `1`) and is the shortest text
/// that reads back to the same `f64`; exponents (`1e-7`) are valid TOML.
fn float(value: f64) -> String {
    format!("{value:?}")
}

fn string_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quote(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML basic string: quotes, backslashes and control characters
/// escaped, everything else literal (TOML files are UTF-8).
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                // Writing to a String never returns an error.
                let _ = write!(quoted, "\\u{:04X}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
