//! Rendering reads back to the same scenario (proptest over valid scenarios).
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

use crate::scenario::model::*;
use crate::scenario::parse_scenario;
use crate::scenario::render::render_scenario;
use crate::scenario::validate::{DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SYNC_INTERVAL};

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
    (provider, url, image, persistence).prop_map(|(provider, url, image, persistence)| RedisSpec {
        provider,
        url: (provider == RedisProviderChoice::Url).then_some(url),
        image,
        persistence,
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
                command: None,
            }
        });
    let command = (
        1u32..8,
        vec("[a-z{}/ _.-]{1,12}", 1..5),
        prop_oneof![
            Just(ReadyProbe::Tcp),
            "/[a-z]{0,8}".prop_map(|path| ReadyProbe::Http { path })
        ],
        duration(1),
    )
        .prop_map(|(count, argv, ready, ready_timeout)| {
            let argv = std::iter::once("server".to_string())
                .chain(argv.into_iter().map(|arg| arg.replace(['{', '}'], "")))
                .chain(["{port}".to_string(), "{redis_url}".to_string()])
                .collect();
            ServersSpec::Spawn {
                count,
                sync_interval: DEFAULT_SYNC_INTERVAL,
                heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
                extra_args: Vec::new(),
                command: Some(ServerCommand {
                    argv,
                    url: "ws://127.0.0.1:{port}/socket.io/".into(),
                    ready,
                    ready_timeout,
                }),
            }
        });
    let external =
        proptest::collection::btree_set("wss?://[a-z0-9.]{1,10}:[0-9]{1,5}/[a-z\"\\\\]{0,5}", 1..4)
            .prop_map(|targets| ServersSpec::External {
                targets: targets.into_iter().collect(),
            });
    prop_oneof![spawn, external, command]
}

fn population() -> impl Strategy<Value = Population> {
    (1u32..5000, 1u32..10, 1u32..1000).prop_flat_map(|(users, devices_per_user, conversations)| {
        (1..=users).prop_map(move |members_per_conversation| Population {
            users,
            devices_per_user,
            conversations,
            members_per_conversation,
        })
    })
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
            |(enabled, online, offline, abrupt_share, reset_share, client_cursor_share)| Churn {
                enabled,
                online,
                offline,
                abrupt_share,
                reset_share,
                client_cursor_share,
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
    let traffic = (1e-6f64..1e9, 1u32..=65536).prop_map(|(send_rate_per_s, body_bytes)| Traffic {
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
    let stage = (
        duration(1),
        proptest::option::of(0.0f64..1e9),
        proptest::option::of(0.0f64..=1.0),
    );
    (
        top,
        sections,
        vec(fault_candidate(), 0..8),
        vec(stage, 0..4),
    )
        .prop_map(
            |(
                (name, seed, duration, ramp_up, drain_timeout),
                (redis, servers, population, traffic, churn, thresholds, expect),
                candidates,
                stage_candidates,
            )| {
                // Stages must end by the time traffic does: keep those that fit.
                let traffic_end = ramp_up.saturating_add(duration);
                let mut stages_end = Duration::ZERO;
                let stages = stage_candidates
                    .into_iter()
                    .filter_map(|(duration, send_rate_per_s, online_share)| {
                        let end = stages_end.checked_add(duration)?;
                        (end <= traffic_end).then(|| {
                            stages_end = end;
                            Stage {
                                duration,
                                send_rate_per_s,
                                online_share,
                            }
                        })
                    })
                    .collect();
                let scenario = Scenario {
                    faults: Vec::new(),
                    intruders: Default::default(),
                    stages,
                    name,
                    seed,
                    duration,
                    ramp_up,
                    drain_timeout,
                    redis,
                    servers,
                    protocol: crate::client::protocol::Protocol::V1,
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
        0usize..10,
        any::<u64>(),
        fault_duration,
        any::<u32>(),
        any::<bool>(),
        prop_oneof![short, duration(1)],
        any::<u64>(),
        bytes_per_s,
    )
        .prop_map(
            |(kind, at_nanos, duration, server, redis_link, latency, jitter_nanos, bytes_per_s)| {
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
            (8, _) => FaultKind::Reset { link },
            _ => FaultKind::ReconnectStorm {
                share: ((candidate.jitter_nanos % 1000) + 1) as f64 / 1000.0,
                drop: [StormDrop::Close, StormDrop::Abrupt, StormDrop::Reset]
                    [candidate.server as usize % 3],
            },
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
    assert_eq!(kinds_seen.len(), 10, "{kinds_seen:?}");
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
