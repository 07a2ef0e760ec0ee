use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::Position;
use uuid::Uuid;

use super::*;
use crate::checker::{AnomalyExample, AnomalyKind};
use crate::report::analysis::analyze;
use crate::report::analysis::tests::handmade_history;
use crate::scenario::{
    Churn, DurationDist, Expectations, Persistence, Population, RedisProviderChoice, RedisSpec,
    Thresholds, Traffic,
};

pub(crate) fn sample_scenario() -> Scenario {
    Scenario {
        faults: Vec::new(),
        intruders: Default::default(),
        name: "smoke <&> \"quoted\"".into(),
        seed: Some(42),
        duration: Duration::from_secs(60),
        ramp_up: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(30),
        redis: RedisSpec {
            provider: RedisProviderChoice::Auto,
            url: None,
            image: None,
            persistence: Persistence::None,
        },
        servers: ServersSpec::Spawn {
            count: 2,
            sync_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(10),
            extra_args: vec![],
            command: None,
        },
        protocol: crate::client::protocol::Protocol::V1,
        population: Population {
            users: 10,
            devices_per_user: 2,
            conversations: 3,
            members_per_conversation: 4,
        },
        traffic: Traffic {
            send_rate_per_s: 50.0,
            body_bytes: 64,
        },
        stages: Vec::new(),
        churn: Churn {
            enabled: true,
            online: DurationDist::Fixed {
                value: Duration::from_secs(5),
            },
            offline: DurationDist::Exponential {
                mean: Duration::from_secs(1),
            },
            abrupt_share: 0.5,
            reset_share: 0.1,
            client_cursor_share: 0.5,
        },
        thresholds: Thresholds::default(),
        expect: Expectations {
            allow_lost_ack: false,
            no_loss: true,
            no_duplicates: true,
            order: true,
            allow_stored_cursor_redelivery: true,
        },
    }
}

pub(crate) fn sample_facts() -> RunFacts {
    RunFacts {
        scenario: sample_scenario(),
        seed: 42,
        started_at_unix_ms: 1_700_000_000_000,
        wall_duration: Duration::from_secs(4),
        harness_cpu: Duration::from_secs(2),
        harness_peak_rss_bytes: 40 * 1024 * 1024,
        harness_rss_at_traffic_end_bytes: Some(20 * 1024 * 1024),
        peak_sockets: 20,
        drain_complete: true,
        redis_description: "local redis-server 7.2 <none>".into(),
        targets: vec![
            "ws://127.0.0.1:4001/ws".into(),
            "ws://127.0.0.1:4002/ws".into(),
        ],
        stragglers: vec![],
        sends_skipped: SendsSkipped {
            scheduled: 600,
            skipped: 12,
            no_socket_online: 10,
            queue_full: 2,
        },
        server_cost: Some(ServerResourcesInput {
            processes: 3,
            cpu: Duration::from_secs(1),
            peak_rss_bytes: 30 * 1024 * 1024,
            rss_at_traffic_end_bytes: Some(10 * 1024 * 1024),
        }),
        redis_cost: Some(RedisResourcesInput {
            cpu: Duration::from_millis(500),
            peak_rss_bytes: 8 * 1024 * 1024,
            rss_at_traffic_end_bytes: Some(6 * 1024 * 1024),
            restarts_seen: 1,
        }),
        intruders: None,
    }
}

pub(crate) fn sample_example(detail: &str) -> AnomalyExample {
    AnomalyExample {
        device: Some(1),
        user_id: Some(Uuid::from_u128(7)),
        client_id: Some(Uuid::from_u128(8)),
        conversation: 0,
        conversation_id: Uuid::from_u128(9),
        socket: Some(1),
        ids: vec![Position::new(1_700_000_000_001, 0)],
        client_msg_id: Some(Uuid::from_u128(2)),
        at_us: Some(2_001_000),
        detail: detail.into(),
    }
}

pub(crate) fn sample_check(verdict: Verdict) -> CheckOutcome {
    let mut anomalies = BTreeMap::new();
    if verdict == Verdict::Invalid {
        anomalies.insert(
            AnomalyKind::Lost,
            AnomalyReport {
                kind: AnomalyKind::Lost,
                violation: true,
                count: 3,
                examples: (0..3)
                    .map(|n| {
                        sample_example(&format!("lost #{n}: <script>alert(1)</script> | pipe"))
                    })
                    .collect(),
            },
        );
    }
    CheckOutcome {
        verdict,
        log_source: LogOrigin::Redis,
        anomalies,
        unknown_reasons: if verdict == Verdict::Unknown {
            vec!["drain timed out".into()]
        } else {
            vec![]
        },
        stats: CheckStats::default(),
    }
}

fn threshold(passed: bool) -> ThresholdResult {
    ThresholdResult {
        description: "live_delivery p99 <= 250 ms".into(),
        limit: "250 ms".into(),
        observed: "12.0 ms".into(),
        passed,
    }
}

pub(crate) fn sample_summary(verdict: Verdict, threshold_met: bool) -> Summary {
    let analysis = analyze(&handmade_history());
    build_summary(
        &sample_facts(),
        &analysis,
        &sample_check(verdict),
        &[threshold(true), threshold(threshold_met)],
    )
}

#[test]
fn exit_codes_follow_verdict_then_thresholds() {
    assert_eq!(sample_summary(Verdict::Valid, true).exit_code, EXIT_VALID);
    assert_eq!(
        sample_summary(Verdict::Valid, false).exit_code,
        EXIT_THRESHOLD_OR_UNKNOWN
    );
    assert_eq!(
        sample_summary(Verdict::Unknown, true).exit_code,
        EXIT_THRESHOLD_OR_UNKNOWN
    );
    assert_eq!(
        sample_summary(Verdict::Invalid, true).exit_code,
        EXIT_INVALID
    );
    // An invariant violation outranks a missed threshold.
    assert_eq!(
        sample_summary(Verdict::Invalid, false).exit_code,
        EXIT_INVALID
    );

    let mut summary = sample_summary(Verdict::Valid, true);
    summary.thresholds[1].passed = false;
    assert_eq!(exit_code(&summary), EXIT_THRESHOLD_OR_UNKNOWN);
}

#[test]
fn summary_carries_facts_analysis_and_check() {
    let summary = sample_summary(Verdict::Invalid, true);
    assert_eq!(summary.schema, SUMMARY_SCHEMA);
    assert_eq!(summary.seed, 42);
    assert_eq!(summary.started_at, "2023-11-14T22:13:20.000Z");
    assert_eq!(summary.harness.cpu_percent_of_one_core, 50.0);
    assert_eq!(summary.harness.rss_bytes_per_socket, Some(2 * 1024 * 1024));
    assert_eq!(
        summary.harness.rss_bytes_per_socket_at_traffic_end,
        Some(1024 * 1024)
    );
    assert_eq!(summary.anomalies.len(), 1);
    assert_eq!(summary.anomalies[0].count, 3);
    assert_eq!(summary.latency.len(), LatencyMetric::ALL.len());
    assert_eq!(
        summary.latency[&LatencyMetric::LiveDelivery].max_us,
        Some(1_800)
    );
    assert_eq!(summary.totals.deliveries_replayed, 1);
    // CPU per delivery and memory per socket, of the harness and the servers.
    let deliveries = summary.totals.deliveries() as f64;
    assert!(deliveries > 0.0);
    assert_eq!(summary.harness.cpu_us_per_delivery, Some(2e6 / deliveries));
    let servers = summary.servers.as_ref().expect("server cost");
    assert_eq!(servers.cpu_us_per_delivery, Some(1e6 / deliveries));
    assert_eq!(servers.cpu_percent_of_one_core, 25.0);
    assert_eq!(
        servers.rss_bytes_per_socket_at_traffic_end,
        Some(512 * 1024)
    );
    assert_eq!(servers.processes, 3);
    // Redis's, from its INFO counters.
    let redis = summary.redis_cost.as_ref().expect("Redis cost");
    assert_eq!(redis.cpu_us_per_delivery, Some(0.5e6 / deliveries));
    assert_eq!(redis.cpu_percent_of_one_core, 12.5);
    assert_eq!(
        redis.rss_bytes_per_socket_at_traffic_end,
        Some(6 * 1024 * 1024 / 20)
    );
    assert_eq!(redis.restarts_seen, 1);
    assert_eq!(summary.run.sockets_when_all_online, 24);
    assert_eq!(summary.run.servers_spawned, 2);
    assert_eq!(summary.thresholds_passed(), 2);
}

#[test]
fn summary_json_round_trips_with_named_metric_keys() {
    let summary = sample_summary(Verdict::Invalid, false);
    let json = serde_json::to_string_pretty(&summary).unwrap();
    assert!(
        json.contains("\"schema\": \"recovery-harness/summary/v1\""),
        "{json}"
    );
    assert!(json.contains("\"live_delivery\": {"), "{json}");
    assert!(json.contains("\"verdict\": \"invalid\""), "{json}");
    let back: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, summary);
}

#[test]
fn zero_wall_time_and_no_sockets_stay_valid_json() {
    let mut facts = sample_facts();
    facts.wall_duration = Duration::ZERO;
    facts.peak_sockets = 0;
    let analysis = analyze(&handmade_history());
    let summary = build_summary(&facts, &analysis, &sample_check(Verdict::Valid), &[]);
    assert_eq!(summary.harness.cpu_percent_of_one_core, 0.0);
    assert_eq!(summary.harness.rss_bytes_per_socket, None);
    let json = serde_json::to_string(&summary).unwrap();
    assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), summary);
}

/// A valid run with one Redis restart (see `faults::tests::fault_history`).
pub(crate) fn fault_summary() -> Summary {
    let analysis = analyze(&crate::report::faults::tests::fault_history());
    build_summary(
        &sample_facts(),
        &analysis,
        &sample_check(Verdict::Valid),
        &[],
    )
}

#[test]
fn summary_json_round_trips_with_faults() {
    let mut summary = fault_summary();
    assert_eq!(summary.faults.len(), 1);
    // A second, unrecovered fault shows null, not an omitted field.
    let mut unrecovered = summary.faults[0].clone();
    unrecovered.recovery_s = None;
    unrecovered.error = Some("docker stop timed out".into());
    summary.faults.push(unrecovered);
    let json = serde_json::to_string_pretty(&summary).unwrap();
    for field in [
        "\"faults\": [",
        "\"kind\": \"redis_restart\"",
        "\"reconnects_caused\": 4",
        "\"recovery_s\": 3.0",
        "\"recovery_s\": null",
        "\"messages_acked\": 2",
        "\"unavailable_send_errors\": 1",
        "\"error\": \"docker stop timed out\"",
        "\"epoch_changed\": 0",
    ] {
        assert!(json.contains(field), "missing {field}: {json}");
    }
    let back: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, summary);
}

#[test]
fn summary_written_before_faults_existed_still_loads() {
    let summary = sample_summary(Verdict::Valid, true);
    let mut value = serde_json::to_value(&summary).unwrap();
    let removed = value.as_object_mut().unwrap().remove("faults");
    assert_eq!(removed, Some(serde_json::json!([])));
    let back: Summary = serde_json::from_value(value).unwrap();
    assert_eq!(back, summary);
}
