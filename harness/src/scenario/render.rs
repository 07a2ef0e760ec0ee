//! [`Scenario`] -> canonical TOML: every key written out (defaults too),
//! values in canonical units. A run writes this next to its report as the
//! exact scenario it played (with the seed it picked), so the run can be
//! repeated with `harness run <that file>`. Parsing the output gives back
//! an equal `Scenario` for every scenario the parser accepts.

use std::fmt::Write;

use super::model::*;
use super::units::{
    format_byte_rate, format_duration, format_percentile, format_rate, format_size,
};

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
    render_faults(&mut out, &scenario.faults);
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
    let lost_ack = if expect.allow_lost_ack {
        "allowed"
    } else {
        "forbidden"
    };
    emit!(out, "lost_ack = {}", quote(lost_ack));
}

fn render_faults(out: &mut String, faults: &[FaultSpec]) {
    let duration = |value| quote(&format_duration(value));
    let link = |link: &Link| match link {
        Link::Clients => quote("clients"),
        Link::Redis => quote("redis"),
    };
    for fault in faults {
        emit!(out, "\n[[faults]]");
        emit!(out, "kind = {}", quote(fault.kind.name()));
        emit!(out, "at = {}", duration(fault.at));
        emit!(out, "duration = {}", duration(fault.duration));
        match &fault.kind {
            FaultKind::RedisRestart | FaultKind::RedisPause | FaultKind::RedisWipe => {}
            FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
                emit!(out, "server = {server}");
            }
            FaultKind::Latency {
                link: on,
                latency,
                jitter,
            } => {
                emit!(out, "link = {}", link(on));
                emit!(out, "latency = {}", duration(*latency));
                emit!(out, "jitter = {}", duration(*jitter));
            }
            FaultKind::Bandwidth {
                link: on,
                bytes_per_s,
            } => {
                emit!(out, "link = {}", link(on));
                emit!(out, "rate = {}", quote(&format_byte_rate(*bytes_per_s)));
            }
            FaultKind::Blackhole { link: on } | FaultKind::Reset { link: on } => {
                emit!(out, "link = {}", link(on));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::scenario::parse::parse_scenario;

    fn duration(min_nanos: u64) -> impl Strategy<Value = Duration> {
        prop_oneof![
            (min_nanos.max(1).div_ceil(1_000_000_000)..100_000).prop_map(Duration::from_secs),
            (min_nanos..=u64::MAX).prop_map(Duration::from_nanos),
        ]
    }

    fn dist(min_nanos: u64) -> impl Strategy<Value = DurationDist> {
        prop_oneof![
            duration(min_nanos).prop_map(|value| DurationDist::Fixed { value }),
            (duration(min_nanos), duration(min_nanos)).prop_map(|(a, b)| DurationDist::Uniform {
                min: a.min(b),
                max: a.max(b),
            }),
            duration(1).prop_map(|mean| DurationDist::Exponential { mean }),
        ]
    }

    fn redis() -> impl Strategy<Value = RedisSpec> {
        let persistence = prop_oneof![
            Just(Persistence::None),
            Just(Persistence::AofEverysec),
            Just(Persistence::AofAlways),
        ];
        let provider = prop_oneof![
            Just(RedisProviderChoice::Auto),
            Just(RedisProviderChoice::Testcontainers),
            Just(RedisProviderChoice::Local),
            Just(RedisProviderChoice::Url),
        ];
        // Any suffix, to exercise quoting of quotes, backslashes and
        // control characters.
        let url = any::<String>().prop_map(|rest| format!("redis://{rest}"));
        let image = proptest::option::of("[a-z0-9./-]{1,12}:[a-z0-9.]{1,6}");
        (provider, url, image, persistence).prop_map(|(provider, url, image, persistence)| {
            RedisSpec {
                provider,
                url: (provider == RedisProviderChoice::Url).then_some(url),
                image,
                persistence,
            }
        })
    }

    fn servers() -> impl Strategy<Value = ServersSpec> {
        let spawn = (
            1u32..64,
            duration(1),
            duration(1),
            vec(any::<String>(), 0..4),
        )
            .prop_map(|(count, sync_interval, heartbeat_interval, extra_args)| {
                ServersSpec::Spawn {
                    count,
                    sync_interval,
                    heartbeat_interval,
                    extra_args,
                }
            });
        let external = proptest::collection::btree_set(
            "wss?://[a-z0-9.]{1,10}:[0-9]{1,5}/[a-z\"\\\\]{0,5}",
            1..4,
        )
        .prop_map(|targets| ServersSpec::External {
            targets: targets.into_iter().collect(),
        });
        prop_oneof![spawn, external]
    }

    fn population() -> impl Strategy<Value = Population> {
        (1u32..5000, 1u32..10, 1u32..1000).prop_flat_map(
            |(users, devices_per_user, conversations)| {
                (1..=users).prop_map(move |members_per_conversation| Population {
                    users,
                    devices_per_user,
                    conversations,
                    members_per_conversation,
                })
            },
        )
    }

    fn churn() -> impl Strategy<Value = Churn> {
        (
            any::<bool>(),
            dist(1),
            dist(0),
            0.0f64..=1.0,
            0.0f64..=1.0,
            0.0f64..=1.0,
        )
            .prop_map(
                |(enabled, online, offline, abrupt_share, reset_share, client_cursor_share)| {
                    Churn {
                        enabled,
                        online,
                        offline,
                        abrupt_share,
                        reset_share,
                        client_cursor_share,
                    }
                },
            )
    }

    fn thresholds() -> impl Strategy<Value = Thresholds> {
        let percentile = prop_oneof![Just(100.0), 1e-3f64..100.0, (1u32..100).prop_map(f64::from)];
        let threshold = (0..LatencyMetric::ALL.len(), percentile, duration(1)).prop_map(
            |(metric, percentile, max)| LatencyThreshold {
                metric: LatencyMetric::ALL[metric],
                percentile: Percentile(percentile),
                max,
            },
        );
        (vec(threshold, 0..6), proptest::option::of(1e-6f64..1e9)).prop_map(
            |(mut latency, min_delivery_rate_per_s)| {
                // The parser rejects a repeated (metric, percentile) pair.
                let mut seen = Vec::new();
                latency.retain(|t| {
                    let fresh = !seen.contains(&(t.metric, t.percentile.0.to_bits()));
                    seen.push((t.metric, t.percentile.0.to_bits()));
                    fresh
                });
                Thresholds {
                    latency,
                    min_delivery_rate_per_s,
                }
            },
        )
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        let name =
            "[A-Za-z0-9._-]{1,40}".prop_filter("not . or ..", |name| name != "." && name != "..");
        let top = (
            name,
            any::<Option<u64>>(),
            duration(1),
            duration(0),
            duration(1),
        );
        let traffic =
            (1e-6f64..1e9, 1u32..=65536).prop_map(|(send_rate_per_s, body_bytes)| Traffic {
                send_rate_per_s,
                body_bytes,
            });
        let expect = any::<[bool; 5]>().prop_map(
            |[no_loss, no_duplicates, order, redelivery, allow_lost_ack]| Expectations {
                allow_lost_ack,
                no_loss,
                no_duplicates,
                order,
                allow_stored_cursor_redelivery: redelivery,
            },
        );
        let sections = (
            redis(),
            servers(),
            population(),
            traffic,
            churn(),
            thresholds(),
            expect,
        );
        (top, sections, vec(fault_candidate(), 0..8)).prop_map(
            |(
                (name, seed, duration, ramp_up, drain_timeout),
                (redis, servers, population, traffic, churn, thresholds, expect),
                candidates,
            )| {
                let scenario = Scenario {
                    faults: Vec::new(),
                    name,
                    seed,
                    duration,
                    ramp_up,
                    drain_timeout,
                    redis,
                    servers,
                    population,
                    traffic,
                    churn,
                    thresholds,
                    expect,
                };
                with_valid_faults(scenario, candidates)
            },
        )
    }

    /// Raw material for one fault; [`with_valid_faults`] bends it into a
    /// fault the parser accepts for the scenario at hand.
    #[derive(Debug, Clone)]
    struct FaultCandidate {
        kind: usize,
        at_nanos: u64,
        duration: Duration,
        server: u32,
        redis_link: bool,
        latency: Duration,
        jitter_nanos: u64,
        bytes_per_s: u64,
    }

    fn fault_candidate() -> impl Strategy<Value = FaultCandidate> {
        let short = (1u64..60_000).prop_map(Duration::from_millis);
        let fault_duration = prop_oneof![short.clone(), duration(1)];
        let bytes_per_s = prop_oneof![1u64..=u64::MAX, (1u64..1 << 20).prop_map(|k| k << 10)];
        (
            0usize..9,
            any::<u64>(),
            fault_duration,
            any::<u32>(),
            any::<bool>(),
            prop_oneof![short, duration(1)],
            any::<u64>(),
            bytes_per_s,
        )
            .prop_map(
                |(
                    kind,
                    at_nanos,
                    duration,
                    server,
                    redis_link,
                    latency,
                    jitter_nanos,
                    bytes_per_s,
                )| {
                    FaultCandidate {
                        kind,
                        at_nanos,
                        duration,
                        server,
                        redis_link,
                        latency,
                        jitter_nanos,
                        bytes_per_s,
                    }
                },
            )
    }

    /// Keeps the candidates that can be valid in `scenario` (adjusted to
    /// its servers and traffic window), sorted by start, dropping any that
    /// would overlap an earlier one on the same target; allows lost acks
    /// when a kept fault destroys data, as the parser demands.
    fn with_valid_faults(mut scenario: Scenario, candidates: Vec<FaultCandidate>) -> Scenario {
        let traffic_end = (scenario.ramp_up + scenario.duration).as_nanos();
        // `at` must read back, so it stays within u64 nanoseconds.
        let at_limit = traffic_end.min(u128::from(u64::MAX) + 1);
        let spawned = match &scenario.servers {
            ServersSpec::Spawn { count, .. } => Some(*count),
            ServersSpec::External { .. } => None,
        };
        let redis_is_given = scenario.redis.provider == RedisProviderChoice::Url;
        let mut faults: Vec<(FaultSpec, String)> = Vec::new();
        for candidate in candidates {
            let link = if candidate.redis_link && spawned.is_some() {
                Link::Redis
            } else {
                Link::Clients
            };
            let server = spawned.map(|count| candidate.server % count);
            let jitter = candidate.jitter_nanos as u128 % (candidate.latency.as_nanos() + 1);
            let kind = match (candidate.kind, server) {
                (0..=2, _) if redis_is_given => continue,
                (0, _) => FaultKind::RedisRestart,
                (1, _) => FaultKind::RedisPause,
                (2, _) => FaultKind::RedisWipe,
                (3 | 4, None) => continue,
                (3, Some(server)) => FaultKind::ServerKill { server },
                (4, Some(server)) => FaultKind::ServerRestart { server },
                (5, _) => FaultKind::Latency {
                    link,
                    latency: candidate.latency,
                    jitter: Duration::from_nanos(jitter as u64),
                },
                (6, _) => FaultKind::Bandwidth {
                    link,
                    bytes_per_s: candidate.bytes_per_s,
                },
                (7, _) => FaultKind::Blackhole { link },
                _ => FaultKind::Reset { link },
            };
            let target = match &kind {
                FaultKind::RedisRestart | FaultKind::RedisPause | FaultKind::RedisWipe => {
                    "redis".to_string()
                }
                FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
                    format!("server {server}")
                }
                other => format!("{:?}", other.link()),
            };
            let duration = if matches!(kind, FaultKind::Reset { .. }) {
                Duration::ZERO
            } else {
                candidate.duration
            };
            let at = Duration::from_nanos((u128::from(candidate.at_nanos) % at_limit) as u64);
            faults.push((FaultSpec { kind, at, duration }, target));
        }
        faults.sort_by_key(|(fault, _)| fault.at);
        let window = |fault: &FaultSpec| {
            let length = fault.duration.max(Duration::from_nanos(1));
            (fault.at, fault.at.saturating_add(length))
        };
        let mut kept: Vec<(FaultSpec, String)> = Vec::new();
        for (fault, target) in faults {
            let (start, end) = window(&fault);
            let clash = kept.iter().any(|(other, other_target)| {
                let (other_start, other_end) = window(other);
                *other_target == target && start < other_end && other_start < end
            });
            if !clash {
                kept.push((fault, target));
            }
        }
        let destroys = kept.iter().any(|(fault, _)| match fault.kind {
            FaultKind::RedisWipe => true,
            FaultKind::RedisRestart => scenario.redis.persistence == Persistence::None,
            _ => false,
        });
        scenario.expect.allow_lost_ack |= destroys;
        scenario.faults = kept.into_iter().map(|(fault, _)| fault).collect();
        scenario
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rendered_scenario_parses_back_to_the_same(scenario in scenario()) {
            let rendered = render_scenario(&scenario);
            let parsed = parse_scenario(&rendered, "rendered.toml");
            prop_assert!(parsed.is_ok(), "{}\n{}", parsed.unwrap_err(), rendered);
            prop_assert_eq!(parsed.unwrap(), scenario);
        }
    }

    /// Guards the round-trip property against a generator that quietly
    /// stopped producing faults (or some kind of them).
    #[test]
    fn generated_scenarios_carry_every_kind_of_fault() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;

        let mut runner = TestRunner::deterministic();
        let strategy = scenario();
        let mut kinds_seen = std::collections::BTreeSet::new();
        let mut lost_ack_allowed = 0;
        for _ in 0..300 {
            let scenario = strategy.new_tree(&mut runner).unwrap().current();
            for fault in &scenario.faults {
                kinds_seen.insert(fault.kind.name());
            }
            lost_ack_allowed += usize::from(scenario.expect.allow_lost_ack);
        }
        assert_eq!(kinds_seen.len(), 9, "{kinds_seen:?}");
        assert!(lost_ack_allowed > 0);
    }

    #[test]
    fn faults_render_with_every_key() {
        let mut scenario = parse_scenario(
            "name = \"f\"\nduration = \"10s\"\n[population]\nusers = 2\nconversations = 1\n\
             members_per_conversation = 2\n[traffic]\nsend_rate = \"1/s\"\n",
            "f.toml",
        )
        .unwrap();
        scenario.faults = vec![
            FaultSpec {
                kind: FaultKind::Latency {
                    link: Link::Redis,
                    latency: Duration::from_millis(80),
                    jitter: Duration::ZERO,
                },
                at: Duration::from_secs(2),
                duration: Duration::from_millis(1500),
            },
            FaultSpec {
                kind: FaultKind::Reset {
                    link: Link::Clients,
                },
                at: Duration::from_secs(3),
                duration: Duration::ZERO,
            },
        ];
        scenario.expect.allow_lost_ack = true;
        let rendered = render_scenario(&scenario);
        assert!(rendered.contains("lost_ack = \"allowed\"\n"), "{rendered}");
        let faults = rendered.split_once("\n[[faults]]\n").unwrap().1;
        assert_eq!(
            faults,
            "kind = \"latency\"\nat = \"2s\"\nduration = \"1500ms\"\nlink = \"redis\"\n\
             latency = \"80ms\"\njitter = \"0s\"\n\n[[faults]]\nkind = \"reset\"\nat = \"3s\"\n\
             duration = \"0s\"\nlink = \"clients\"\n"
        );
        assert_eq!(parse_scenario(&rendered, "r.toml").unwrap(), scenario);
    }

    #[test]
    fn quoting_escapes_what_toml_requires() {
        assert_eq!(quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
