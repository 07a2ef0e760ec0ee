//! Shipped scenarios and the docs' examples parse; defaults; round trips.
use std::time::Duration;

use std::path::Path;

use crate::scenario::render::render_scenario;
use crate::scenario::*;

fn scenarios_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn toml_files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_shipped_scenario_parses() {
    let mut paths = toml_files_in(&scenarios_dir());
    for dir in ["flaws", "peers"] {
        let more = toml_files_in(&scenarios_dir().join(dir));
        assert!(!more.is_empty(), "scenarios/{dir} has no scenarios");
        paths.extend(more);
    }
    let names: Vec<_> = paths
        .iter()
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["smoke", "churn-1k", "multi-device", "stored-cursor"] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing: {names:?}"
        );
    }
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} must open with a comment",
            path.display()
        );
        let scenario = load_scenario(path).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            Some(scenario.name.as_str()),
            path.file_stem().and_then(|stem| stem.to_str()),
            "name should match the file name"
        );
        let rendered = render_scenario(&scenario);
        let again =
            parse_scenario(&rendered, "rendered").unwrap_or_else(|err| panic!("{err}\n{rendered}"));
        assert_eq!(again, scenario, "{}", path.display());
    }
}

#[test]
fn shipped_scenarios_have_the_promised_shape() {
    let load = |name: &str| load_scenario(&scenarios_dir().join(format!("{name}.toml"))).unwrap();
    let smoke = load("smoke");
    assert!((30..=80).contains(&smoke.population.total_sockets()));
    assert!(smoke.duration + smoke.ramp_up <= Duration::from_secs(20));
    assert!(smoke.churn.enabled && smoke.churn.abrupt_share > 0.0);
    assert!(smoke.churn.client_cursor_share > 0.0 && smoke.churn.client_cursor_share < 1.0);

    let big = load("churn-1k");
    assert!(big.population.total_sockets() >= 1000);
    assert!(big.duration >= Duration::from_secs(120));
    assert!(big.churn.abrupt_share > 0.0 && big.churn.reset_share > 0.0);
    assert!(matches!(big.servers, ServersSpec::Spawn { count: 2, .. }));
    assert!(big
        .thresholds
        .latency
        .iter()
        .any(|t| t.metric == LatencyMetric::LiveDelivery && t.percentile == Percentile(99.0)));

    let multi = load("multi-device");
    assert_eq!(multi.population.devices_per_user, 3);
    assert_eq!(multi.churn.client_cursor_share, 1.0);
    assert!(multi.churn.enabled);

    let stored = load("stored-cursor");
    assert_eq!(stored.churn.client_cursor_share, 0.0);
    assert!(stored.expect.allow_stored_cursor_redelivery && stored.expect.no_loss);
}

#[test]
fn full_example_in_the_format_docs_parses() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scenario-format.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    let example = docs
        .split("## Full example")
        .nth(1)
        .expect("section present");
    let toml = example
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block");
    let scenario = parse_scenario(toml, "docs example").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(scenario.name, "example");
    assert_eq!(scenario.thresholds.latency.len(), 1);
    assert_eq!(
        scenario.faults,
        vec![FaultSpec {
            kind: FaultKind::ServerKill { server: 1 },
            at: Duration::from_secs(8),
            duration: Duration::from_secs(2),
        }]
    );
}

/// Every `toml` block of the `[[faults]]` docs section, appended to a
/// valid scenario, parses: the documented syntax is the implemented one.
#[test]
fn fault_examples_in_the_format_docs_parse() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scenario-format.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    let section = docs
        .split("### `[[faults]]`")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("faults section present");
    let base = "name = \"d\"\nduration = \"20s\"\n[servers]\nspawn = 2\n[population]\n\
                users = 2\nconversations = 1\nmembers_per_conversation = 2\n[traffic]\n\
                send_rate = \"5/s\"\n";
    let mut kinds = std::collections::BTreeSet::new();
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "{blocks:?}");
    for block in blocks {
        let text = format!("{base}{block}");
        let scenario =
            parse_scenario(&text, "docs example").unwrap_or_else(|err| panic!("{err}\n{block}"));
        assert!(!scenario.faults.is_empty(), "{block}");
        kinds.extend(scenario.faults.iter().map(|fault| fault.kind.name()));
    }
    assert_eq!(kinds.len(), 10, "every kind has an example: {kinds:?}");
}

/// The `[[stages]]` example in the docs parses into the stages it describes.
#[test]
fn stages_example_in_the_format_docs_parses() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scenario-format.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    let block = docs
        .split("### `[[stages]]`")
        .nth(1)
        .and_then(|rest| rest.split("```toml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the stages section");
    let base = "name = \"d\"\nduration = \"2m\"\n[population]\nusers = 2\nconversations = 1\n\
                members_per_conversation = 2\n";
    let scenario = parse_scenario(&format!("{base}{block}"), "docs example")
        .unwrap_or_else(|err| panic!("{err}\n{block}"));
    assert_eq!(scenario.traffic.send_rate_per_s, 50.0);
    let shape: Vec<_> = scenario
        .stages
        .iter()
        .map(|stage| {
            (
                stage.duration.as_secs(),
                stage.send_rate_per_s,
                stage.online_share,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (30, Some(400.0), None),
            (60, None, None),
            (10, None, Some(0.5)),
            (5, None, Some(1.0)),
        ]
    );
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let err = load_scenario(Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(matches!(err, ScenarioError::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/x.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn toml_syntax_errors_have_a_position() {
    let err = parse_scenario("name = \"a\"\nduration = \n", "x.toml").unwrap_err();
    assert_eq!(err.position(), Some((2, 12)), "{err}");
    assert!(
        err.to_string().starts_with("x.toml:2:12: invalid TOML:"),
        "{err}"
    );
}

#[test]
fn minimal_file_gets_every_default() {
    let text = "name = \"m\"\nduration = \"10s\"\n[population]\nusers = 3\nconversations = 1\n\
                members_per_conversation = 2\n[traffic]\nsend_rate = \"4/s\"\n";
    let scenario = parse_scenario(text, "m.toml").unwrap();
    let expected = Scenario {
        faults: Vec::new(),
        intruders: Default::default(),
        name: "m".into(),
        seed: None,
        duration: Duration::from_secs(10),
        ramp_up: Duration::ZERO,
        drain_timeout: Duration::from_secs(60),
        redis: RedisSpec {
            provider: RedisProviderChoice::Auto,
            url: None,
            image: None,
            persistence: Persistence::None,
        },
        servers: ServersSpec::Spawn {
            count: 1,
            sync_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            extra_args: vec![],
            command: None,
        },
        protocol: crate::client::protocol::Protocol::V1,
        population: Population {
            users: 3,
            devices_per_user: 1,
            conversations: 1,
            members_per_conversation: 2,
        },
        traffic: Traffic {
            send_rate_per_s: 4.0,
            body_bytes: 64,
        },
        stages: Vec::new(),
        churn: Churn {
            enabled: false,
            online: DurationDist::Exponential {
                mean: Duration::from_secs(10),
            },
            offline: DurationDist::Exponential {
                mean: Duration::from_secs(2),
            },
            abrupt_share: 0.0,
            reset_share: 0.0,
            client_cursor_share: 1.0,
        },
        thresholds: Thresholds::default(),
        expect: Expectations {
            allow_lost_ack: false,
            no_loss: true,
            no_duplicates: true,
            order: true,
            allow_stored_cursor_redelivery: true,
        },
    };
    assert_eq!(scenario, expected);
}

#[test]
fn full_file_reads_every_key() {
    let text = r#"
name = "full.run_1"
seed = 18446744073709551615
duration = "2m"
ramp_up = "1.5s"
drain_timeout = "45s"
[redis]
provider = "url"
url = "redis://127.0.0.1:6390/2"
image = "redis:7.4"
persistence = "aof-always"
[servers]
targets = ["ws://127.0.0.1:9000/ws", "wss://localhost:9443/ws"]
[population]
users = 10
devices_per_user = 3
conversations = 5
members_per_conversation = 10
[traffic]
send_rate = "1200/min"
body_size = "1KiB"
[churn]
online = { dist = "fixed", value = "3s" }
[churn.offline]
dist = "uniform"
min = "0s"
max = "500ms"
[thresholds]
min_delivery_rate = "0.5/s"
latency = [
  { metric = "ack", percentile = "max", max = "1s" },
  { metric = "recovery", percentile = "p99.9", max = "2s" },
]
[expect]
order = false
stored_cursor_redelivery = "forbidden"
lost_ack = "allowed"
[[faults]]
kind = "bandwidth"
at = "1m"
duration = "10s"
link = "clients"
rate = "1MiB/s"
"#;
    let scenario = parse_scenario(text, "full.toml").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(scenario.seed, Some(u64::MAX));
    assert_eq!(scenario.duration, Duration::from_secs(120));
    assert_eq!(scenario.ramp_up, Duration::from_millis(1500));
    assert_eq!(scenario.redis.provider, RedisProviderChoice::Url);
    assert_eq!(
        scenario.redis.url.as_deref(),
        Some("redis://127.0.0.1:6390/2")
    );
    assert_eq!(scenario.redis.image.as_deref(), Some("redis:7.4"));
    assert_eq!(scenario.redis.persistence, Persistence::AofAlways);
    assert_eq!(
        scenario.servers,
        ServersSpec::External {
            targets: vec![
                "ws://127.0.0.1:9000/ws".into(),
                "wss://localhost:9443/ws".into()
            ]
        }
    );
    assert_eq!(scenario.population.total_sockets(), 150);
    assert_eq!(scenario.traffic.send_rate_per_s, 20.0);
    assert_eq!(scenario.traffic.body_bytes, 1024);
    assert!(scenario.churn.enabled);
    assert_eq!(
        scenario.churn.online,
        DurationDist::Fixed {
            value: Duration::from_secs(3)
        }
    );
    assert_eq!(
        scenario.churn.offline,
        DurationDist::Uniform {
            min: Duration::ZERO,
            max: Duration::from_millis(500)
        }
    );
    assert_eq!(scenario.thresholds.min_delivery_rate_per_s, Some(0.5));
    assert_eq!(
        scenario.thresholds.latency,
        vec![
            LatencyThreshold {
                metric: LatencyMetric::Ack,
                percentile: Percentile(100.0),
                max: Duration::from_secs(1),
            },
            LatencyThreshold {
                metric: LatencyMetric::Recovery,
                percentile: Percentile(99.9),
                max: Duration::from_secs(2),
            },
        ]
    );
    assert!(!scenario.expect.order && scenario.expect.no_loss);
    assert!(!scenario.expect.allow_stored_cursor_redelivery);
    assert!(scenario.expect.allow_lost_ack);
    assert_eq!(
        scenario.faults,
        vec![FaultSpec {
            kind: FaultKind::Bandwidth {
                link: Link::Clients,
                bytes_per_s: 1 << 20,
            },
            at: Duration::from_secs(60),
            duration: Duration::from_secs(10),
        }]
    );

    let rendered = render_scenario(&scenario);
    assert_eq!(
        parse_scenario(&rendered, "rendered").unwrap(),
        scenario,
        "{rendered}"
    );
}
