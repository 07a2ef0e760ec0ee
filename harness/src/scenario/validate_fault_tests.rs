//! `[[faults]]` and `[expect] lost_ack`: every rule rejects with the right
//! line:column and key path, and valid faults read back as typed specs.
//! `BASE` (8 lines, duration 10s, no ramp-up, one spawned server, Redis
//! auto without persistence) comes from `validate_tests.rs`.

use std::time::Duration;

use super::validate::{assert_error, with_tail, with_top, BASE};
use crate::scenario::model::*;
use crate::scenario::parse_scenario;

fn parse(text: &str) -> Scenario {
    parse_scenario(text, "t.toml").unwrap_or_else(|err| panic!("{err}\n{text}"))
}

fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn fault(kind: FaultKind, at: Duration, duration: Duration) -> FaultSpec {
    FaultSpec { kind, at, duration }
}

#[test]
fn one_fault_of_every_kind_reads_back() {
    let tail = r#"[servers]
spawn = 3
[expect]
lost_ack = "allowed"
[[faults]]
kind = "redis_restart"
at = "1s"
duration = "500ms"
[[faults]]
kind = "redis_pause"
at = "2s"
duration = "1s"
[[faults]]
kind = "redis_wipe"
at = "4s"
duration = "1s"
[[faults]]
kind = "server_kill"
at = "1s"
duration = "2s"
server = 2
[[faults]]
kind = "server_restart"
at = "1s"
duration = "2s"
[[faults]]
kind = "latency"
at = "0s"
duration = "3s"
link = "clients"
latency = "100ms"
jitter = "20ms"
[[faults]]
kind = "latency"
at = "3s"
duration = "3s"
link = "redis"
latency = "5ms"
[[faults]]
kind = "bandwidth"
at = "6s"
duration = "2s"
link = "clients"
rate = "64KiB/s"
[[faults]]
kind = "blackhole"
at = "9s"
duration = "30s"
link = "redis"
[[faults]]
kind = "reset"
at = "9s"
link = "clients"
"#;
    let scenario = parse(&with_tail(tail));
    assert!(scenario.expect.allow_lost_ack);
    let expected = vec![
        fault(
            FaultKind::Latency {
                link: Link::Clients,
                latency: Duration::from_millis(100),
                jitter: Duration::from_millis(20),
            },
            secs(0),
            secs(3),
        ),
        fault(FaultKind::RedisRestart, secs(1), Duration::from_millis(500)),
        fault(FaultKind::ServerKill { server: 2 }, secs(1), secs(2)),
        fault(FaultKind::ServerRestart { server: 0 }, secs(1), secs(2)),
        fault(FaultKind::RedisPause, secs(2), secs(1)),
        fault(
            FaultKind::Latency {
                link: Link::Redis,
                latency: Duration::from_millis(5),
                jitter: Duration::ZERO,
            },
            secs(3),
            secs(3),
        ),
        fault(FaultKind::RedisWipe, secs(4), secs(1)),
        fault(
            FaultKind::Bandwidth {
                link: Link::Clients,
                bytes_per_s: 64 * 1024,
            },
            secs(6),
            secs(2),
        ),
        fault(
            FaultKind::Blackhole { link: Link::Redis },
            secs(9),
            secs(30),
        ),
        fault(
            FaultKind::Reset {
                link: Link::Clients,
            },
            secs(9),
            Duration::ZERO,
        ),
    ];
    assert_eq!(scenario.faults, expected);
}

#[test]
fn no_faults_and_no_lost_ack_by_default() {
    let scenario = parse(BASE);
    assert!(scenario.faults.is_empty());
    assert!(!scenario.expect.allow_lost_ack);
    let forbidden = parse(&with_tail("[expect]\nlost_ack = \"forbidden\"\n"));
    assert!(!forbidden.expect.allow_lost_ack);
    let allowed = parse(&with_tail("[expect]\nlost_ack = \"allowed\"\n"));
    assert!(allowed.expect.allow_lost_ack);
}

#[test]
fn faults_sort_by_start_keeping_file_order_for_ties() {
    let tail =
        "[[faults]]\nkind = \"blackhole\"\nat = \"5s\"\nduration = \"1s\"\nlink = \"redis\"\n\
                [[faults]]\nkind = \"redis_pause\"\nat = \"5s\"\nduration = \"1s\"\n\
                [[faults]]\nkind = \"server_kill\"\nat = \"2s\"\nduration = \"1s\"\n\
                [[faults]]\nkind = \"reset\"\nat = \"5s\"\nlink = \"clients\"\n";
    let names: Vec<_> = parse(&with_tail(tail))
        .faults
        .iter()
        .map(|fault| (fault.kind.name(), fault.at))
        .collect();
    assert_eq!(
        names,
        [
            ("server_kill", secs(2)),
            ("blackhole", secs(5)),
            ("redis_pause", secs(5)),
            ("reset", secs(5)),
        ]
    );
}

#[test]
fn faults_as_an_inline_array() {
    let tail = "faults = [ { kind = \"redis_pause\", at = \"1s\", duration = \"2s\" } ]\n";
    let scenario = parse(&with_top(tail));
    assert_eq!(
        scenario.faults,
        vec![fault(FaultKind::RedisPause, secs(1), secs(2))]
    );
    let not_a_table = "faults = [ \"redis_pause\" ]";
    assert_error(
        &with_top(not_a_table),
        1,
        12,
        "faults[0]",
        "invalid type: string \"redis_pause\", expected a table",
    );
}

#[test]
fn a_single_faults_table_gets_a_hint() {
    let err = assert_error(
        &with_tail("[faults]\nkind = \"redis_pause\"\n"),
        9,
        1,
        "faults",
        "expected an array of tables, found a table",
    );
    assert!(
        err.to_string()
            .contains("(write each entry as a [[faults]] table)"),
        "{err}"
    );
}

#[test]
fn kind_is_required_and_known() {
    assert_error(
        &with_tail("[[faults]]\nat = \"1s\"\nduration = \"1s\"\n"),
        9,
        1,
        "faults[0]",
        "missing field `kind`",
    );
    let typo = "[[faults]]\nat = \"1s\"\nknd = \"redis_pause\"\n";
    // Without a kind, the keys cannot be judged: the missing kind is named.
    assert_error(&with_tail(typo), 9, 1, "faults[0]", "missing field `kind`");
    let unknown = "[[faults]]\nkind = \"redis_kill\"\nat = \"1s\"\nduration = \"1s\"\n";
    let err = assert_error(
        &with_tail(unknown),
        10,
        8,
        "faults[0].kind",
        "unknown variant `redis_kill`",
    );
    assert!(
        err.to_string().contains(
            "expected one of `redis_restart`, `redis_pause`, `redis_wipe`, `server_kill`, \
             `server_restart`, `latency`, `bandwidth`, `blackhole`, `reset`"
        ),
        "{err}"
    );
    assert_error(
        &with_tail("[[faults]]\nkind = 3\n"),
        10,
        8,
        "faults[0].kind",
        "wanted string or table",
    );
}

#[test]
fn keys_of_another_kind_are_rejected_with_the_keys_of_this_kind() {
    let tail = "[[faults]]\nkind = \"redis_pause\"\nat = \"1s\"\nduration = \"1s\"\n\
                [[faults]]\nkind = \"server_kill\"\nat = \"3s\"\nduration = \"1s\"\n\
                [[faults]]\nkind = \"blackhole\"\nat = \"1s\"\nduration = \"1s\"\nlink = \"clients\"\n\
                latency = \"5ms\"\n";
    let err = assert_error(
        &with_tail(tail),
        22,
        1,
        "faults[2].latency",
        "does not apply to kind = \"blackhole\"",
    );
    assert!(
        err.to_string()
            .ends_with("(blackhole takes: kind, at, duration, link)"),
        "{err}"
    );
    let server_on_redis = "[[faults]]\nkind = \"redis_wipe\"\nserver = 0\n";
    let err = assert_error(
        &with_tail(server_on_redis),
        11,
        1,
        "faults[0].server",
        "does not apply to kind = \"redis_wipe\"",
    );
    assert!(
        err.to_string()
            .ends_with("(redis_wipe takes: kind, at, duration)"),
        "{err}"
    );
    let link_on_server = "[[faults]]\nkind = \"server_restart\"\nlink = \"clients\"\n";
    assert_error(
        &with_tail(link_on_server),
        11,
        1,
        "faults[0].link",
        "does not apply to kind = \"server_restart\"",
    );
    let rate_on_latency = "[[faults]]\nkind = \"latency\"\nrate = \"1KiB/s\"\n";
    assert_error(
        &with_tail(rate_on_latency),
        11,
        1,
        "faults[0].rate",
        "does not apply to kind = \"latency\"",
    );
    let typo = "[[faults]]\nkind = \"latency\"\nlnk = \"clients\"\n";
    let typo_is = "does not apply to kind = \"latency\"";
    let err = assert_error(&with_tail(typo), 11, 1, "faults[0].lnk", typo_is);
    assert!(
        err.to_string()
            .ends_with("(latency takes: kind, at, duration, link, latency, jitter)"),
        "{err}"
    );
}

#[test]
fn at_is_a_required_duration_before_traffic_ends() {
    assert_error(
        &with_tail("[[faults]]\nkind = \"redis_pause\"\nduration = \"1s\"\n"),
        9,
        1,
        "faults[0].at",
        "required key is missing",
    );
    let bare = "[[faults]]\nkind = \"redis_pause\"\nat = 3\nduration = \"1s\"\n";
    let err = assert_error(&with_tail(bare), 11, 6, "faults[0].at", "expected a string");
    assert!(
        err.to_string()
            .contains("units are mandatory: write \"3s\""),
        "{err}"
    );
    let at_end = "[[faults]]\nkind = \"redis_pause\"\nat = \"10s\"\nduration = \"1s\"\n";
    let err = assert_error(
        &with_tail(at_end),
        11,
        6,
        "faults[0].at",
        "starts at 10s, when traffic has ended (ramp_up + duration = 10s)",
    );
    assert!(err.to_string().contains("the drain comes after"), "{err}");
    // The traffic window includes the ramp-up.
    let with_ramp_up = |at: &str| {
        format!(
            "ramp_up = \"5s\"\n{BASE}[[faults]]\nkind = \"redis_pause\"\nat = \"{at}\"\n\
             duration = \"1s\"\n"
        )
    };
    assert_eq!(
        parse(&with_ramp_up("14.9s")).faults[0].at,
        Duration::from_millis(14_900)
    );
    assert_error(
        &with_ramp_up("15s"),
        12,
        6,
        "faults[0].at",
        "ramp_up + duration = 15s",
    );
    // Ending inside the drain is fine.
    let into_drain = "[[faults]]\nkind = \"redis_pause\"\nat = \"9s\"\nduration = \"1h\"\n";
    assert_eq!(parse(&with_tail(into_drain)).faults[0].duration, secs(3600));
}

#[test]
fn duration_is_required_and_positive_except_for_reset() {
    assert_error(
        &with_tail("[[faults]]\nkind = \"server_kill\"\nat = \"1s\"\n"),
        9,
        1,
        "faults[0].duration",
        "required key is missing",
    );
    let zero =
        "[[faults]]\nkind = \"blackhole\"\nat = \"1s\"\nduration = \"0s\"\nlink = \"clients\"\n";
    assert_error(
        &with_tail(zero),
        12,
        12,
        "faults[0].duration",
        "must be greater than 0s",
    );
    let reset =
        "[[faults]]\nkind = \"reset\"\nat = \"1s\"\nduration = \"1s\"\nlink = \"clients\"\n";
    let err = assert_error(
        &with_tail(reset),
        12,
        12,
        "faults[0].duration",
        "a reset is instant: its duration must be \"0s\"",
    );
    assert!(err.to_string().contains("remove duration"), "{err}");
    let explicit_zero = reset.replace("\"1s\"\nlink", "\"0s\"\nlink");
    assert_eq!(
        parse(&with_tail(&explicit_zero)).faults[0].duration,
        Duration::ZERO
    );
}

#[test]
fn server_faults_need_an_existing_spawned_server() {
    let kill = |servers: &str, server: &str| {
        with_tail(&format!(
            "{servers}[[faults]]\nkind = \"server_kill\"\nat = \"1s\"\nduration = \"1s\"\n{server}"
        ))
    };
    let err = assert_error(
        &kill("", "server = 1\n"),
        13,
        10,
        "faults[0].server",
        "there is no server 1 (servers.spawn = 1)",
    );
    assert!(err.to_string().contains("use 0..=0"), "{err}");
    let two = "[servers]\nspawn = 2\n";
    assert_eq!(
        parse(&kill(two, "server = 1\n")).faults[0].kind,
        FaultKind::ServerKill { server: 1 }
    );
    assert_error(
        &kill(two, "server = -1\n"),
        15,
        10,
        "faults[0].server",
        "invalid value: integer `-1`, expected u32",
    );
    assert_error(
        &kill(two, "server = \"1\"\n"),
        15,
        10,
        "faults[0].server",
        "invalid type: string \"1\", expected u32",
    );
    let external = "[servers]\ntargets = [\"ws://127.0.0.1:9000/ws\"]\n";
    let err = assert_error(
        &kill(external, ""),
        12,
        8,
        "faults[0].kind",
        "server faults need spawned reference servers",
    );
    assert!(err.to_string().contains("use [servers] spawn"), "{err}");
    let restart = kill(external, "").replace("server_kill", "server_restart");
    assert_error(
        &restart,
        12,
        8,
        "faults[0].kind",
        "server faults need spawned reference servers",
    );
}

#[test]
fn network_faults_need_a_known_link() {
    for kind in ["latency", "bandwidth", "blackhole", "reset"] {
        let text = with_tail(&format!(
            "[[faults]]\nkind = \"{kind}\"\nat = \"1s\"\nduration = \"1s\"\n"
        ));
        let text = if kind == "reset" {
            text.replace("duration = \"1s\"\n", "")
        } else {
            text
        };
        assert_error(&text, 9, 1, "faults[0].link", "required key is missing");
    }
    let bad =
        "[[faults]]\nkind = \"blackhole\"\nat = \"1s\"\nduration = \"1s\"\nlink = \"servers\"\n";
    let err = assert_error(
        &with_tail(bad),
        13,
        8,
        "faults[0].link",
        "unknown variant `servers`",
    );
    assert!(
        err.to_string().contains("expected `clients` or `redis`"),
        "{err}"
    );
}

#[test]
fn the_redis_link_needs_spawned_servers() {
    let tail = |link: &str| {
        format!(
            "[servers]\ntargets = [\"ws://127.0.0.1:9000/ws\"]\n[[faults]]\nkind = \"blackhole\"\n\
             at = \"1s\"\nduration = \"1s\"\nlink = \"{link}\"\n"
        )
    };
    let err = assert_error(
        &with_tail(&tail("redis")),
        15,
        8,
        "faults[0].link",
        "link = \"redis\" needs spawned servers",
    );
    assert!(
        err.to_string()
            .contains("proxies the spawned servers' Redis connection"),
        "{err}"
    );
    assert_eq!(
        parse(&with_tail(&tail("clients"))).faults[0].kind,
        FaultKind::Blackhole {
            link: Link::Clients
        }
    );
}

#[test]
fn latency_and_jitter() {
    let latency = |params: &str| {
        with_tail(&format!(
            "[[faults]]\nkind = \"latency\"\nat = \"1s\"\nduration = \"1s\"\nlink = \"clients\"\n{params}"
        ))
    };
    assert_error(
        &latency(""),
        9,
        1,
        "faults[0].latency",
        "required key is missing",
    );
    assert_error(
        &latency("latency = \"0s\"\n"),
        14,
        11,
        "faults[0].latency",
        "must be greater than 0s",
    );
    let err = assert_error(
        &latency("latency = \"50ms\"\njitter = \"51ms\"\n"),
        15,
        10,
        "faults[0].jitter",
        "is more than latency (50ms)",
    );
    assert!(err.to_string().contains("latency ± jitter"), "{err}");
    assert_eq!(
        parse(&latency("latency = \"50ms\"\njitter = \"50ms\"\n")).faults[0].kind,
        FaultKind::Latency {
            link: Link::Clients,
            latency: Duration::from_millis(50),
            jitter: Duration::from_millis(50),
        }
    );
    assert_error(
        &latency("latency = \"50ms\"\njitter = \"-1ms\"\n"),
        15,
        10,
        "faults[0].jitter",
        "\"-1ms\" must not be negative",
    );
}

#[test]
fn bandwidth_rate_is_a_positive_binary_byte_rate() {
    let bandwidth = |params: &str| {
        with_tail(&format!(
            "[[faults]]\nkind = \"bandwidth\"\nat = \"1s\"\nduration = \"1s\"\nlink = \"redis\"\n{params}"
        ))
    };
    assert_error(
        &bandwidth(""),
        9,
        1,
        "faults[0].rate",
        "required key is missing",
    );
    let err = assert_error(
        &bandwidth("rate = \"64KB/s\"\n"),
        14,
        8,
        "faults[0].rate",
        "\"64KB/s\" uses the ambiguous unit \"KB/s\"",
    );
    assert!(err.to_string().contains("write KiB/s"), "{err}");
    let err = assert_error(
        &bandwidth("rate = 1000\n"),
        14,
        8,
        "faults[0].rate",
        "expected a string",
    );
    assert!(
        err.to_string()
            .contains("units are mandatory: write \"1000B/s\""),
        "{err}"
    );
    let err = assert_error(
        &bandwidth("rate = \"0B/s\"\n"),
        14,
        8,
        "faults[0].rate",
        "must be greater than 0B/s",
    );
    assert!(err.to_string().contains("blackhole"), "{err}");
    assert_eq!(
        parse(&bandwidth("rate = \"1.5MiB/s\"\n")).faults[0].kind,
        FaultKind::Bandwidth {
            link: Link::Redis,
            bytes_per_s: 3 << 19,
        }
    );
}

#[test]
fn redis_faults_need_a_redis_the_harness_starts() {
    for kind in ["redis_restart", "redis_pause", "redis_wipe"] {
        let text = with_tail(&format!(
            "[redis]\nprovider = \"url\"\nurl = \"redis://127.0.0.1:6379\"\n[expect]\n\
             lost_ack = \"allowed\"\n[[faults]]\nkind = \"{kind}\"\nat = \"1s\"\nduration = \"1s\"\n"
        ));
        let err = assert_error(
            &text,
            15,
            8,
            "faults[0].kind",
            "redis faults need a Redis the harness starts (testcontainers or local), not a given URL",
        );
        assert!(
            err.to_string().contains("provider = \"testcontainers\""),
            "{err}"
        );
    }
    for provider in ["auto", "testcontainers", "local"] {
        let text = with_tail(&format!(
            "[redis]\nprovider = \"{provider}\"\n[[faults]]\nkind = \"redis_pause\"\n\
             at = \"1s\"\nduration = \"1s\"\n"
        ));
        assert_eq!(parse(&text).faults.len(), 1, "{provider}");
    }
}

#[test]
fn faults_on_one_target_must_not_overlap() {
    let two = |first: &str, second: &str| {
        with_tail(&format!(
            "[servers]\nspawn = 2\n[[faults]]\n{first}\n[[faults]]\n{second}\n"
        ))
    };
    // faults[1]'s header is on line 15 when `first` is three lines.
    let restart = "kind = \"redis_restart\"\nat = \"2s\"\nduration = \"3s\"";
    let pause = |at: &str| format!("kind = \"redis_pause\"\nat = \"{at}\"\nduration = \"2s\"");
    let err = assert_error(
        &two(
            &restart.replace("redis_restart", "redis_pause"),
            &pause("4s"),
        ),
        15,
        1,
        "faults[1]",
        "redis_pause from 4s to 6s overlaps faults[0] (redis_pause from 2s to 5s), both on Redis",
    );
    assert!(
        err.to_string().contains("must not overlap in time"),
        "{err}"
    );
    // Back to back is fine; an earlier start later in the file is not.
    parse(&two(&pause("0s"), &pause("2s")));
    assert_error(
        &two(&pause("4s"), &pause("3s")),
        15,
        1,
        "faults[1]",
        "redis_pause from 3s to 5s overlaps faults[0] (redis_pause from 4s to 6s)",
    );

    let kill = |server: u32| {
        format!("kind = \"server_kill\"\nat = \"1s\"\nduration = \"5s\"\nserver = {server}")
    };
    parse(&two(&kill(0), &kill(1)));
    assert_error(
        &two(&kill(1), &kill(1).replace("server_kill", "server_restart")),
        16,
        1,
        "faults[1]",
        "server_restart from 1s to 6s overlaps faults[0] (server_kill from 1s to 6s), both on server 1",
    );

    let network = |kind: &str, link: &str, extra: &str| {
        format!("kind = \"{kind}\"\nat = \"3s\"\nduration = \"2s\"\nlink = \"{link}\"{extra}")
    };
    let blackhole = network("blackhole", "clients", "");
    parse(&two(&blackhole, &network("blackhole", "redis", "")));
    assert_error(
        &two(&blackhole, &network("latency", "clients", "\nlatency = \"1ms\"")),
        16,
        1,
        "faults[1]",
        "latency from 3s to 5s overlaps faults[0] (blackhole from 3s to 5s), both on the clients link",
    );
    // Different kinds of target never clash: a Redis fault during a
    // redis-link fault, or a server fault during a clients-link fault.
    parse(&two(&network("blackhole", "redis", ""), &pause("3s")));
    parse(&two(&blackhole, &kill(0).replace("\"1s\"", "\"3s\"")));
}

#[test]
fn an_instant_reset_clashes_only_inside_another_fault() {
    let two = |first: &str, second: &str| {
        with_tail(&format!("[[faults]]\n{first}\n[[faults]]\n{second}\n"))
    };
    let reset = |at: &str| format!("kind = \"reset\"\nat = \"{at}\"\nlink = \"redis\"");
    let blackhole = "kind = \"blackhole\"\nat = \"2s\"\nduration = \"3s\"\nlink = \"redis\"";
    assert_error(
        &two(&reset("2s"), &reset("2s")),
        13,
        1,
        "faults[1]",
        "reset at 2s overlaps faults[0] (reset at 2s), both on the redis link",
    );
    parse(&two(&reset("2s"), &reset("2.001s")));
    assert_error(
        &two(blackhole, &reset("4s")),
        14,
        1,
        "faults[1]",
        "reset at 4s overlaps faults[0] (blackhole from 2s to 5s)",
    );
    assert_error(
        &two(blackhole, &reset("2s")),
        14,
        1,
        "faults[1]",
        "reset at 2s overlaps",
    );
    parse(&two(blackhole, &reset("5s")));
    parse(&two(blackhole, &reset("1.999s")));
}

#[test]
fn destroying_acked_messages_needs_lost_ack_allowed() {
    let scenario = |persistence: &str, expect: &str, kind: &str| {
        with_tail(&format!(
            "[redis]\npersistence = \"{persistence}\"\n{expect}[[faults]]\nkind = \"{kind}\"\n\
             at = \"1s\"\nduration = \"1s\"\n"
        ))
    };
    let err = assert_error(
        &scenario("aof-always", "", "redis_wipe"),
        12,
        8,
        "faults[0].kind",
        "redis_wipe deletes acked messages",
    );
    assert!(
        err.to_string().ends_with(
            "(this scenario destroys acked messages on purpose; set [expect] lost_ack = \"allowed\")"
        ),
        "{err}"
    );
    let forbidden = "[expect]\nlost_ack = \"forbidden\"\n";
    assert_error(
        &scenario("none", forbidden, "redis_restart"),
        14,
        8,
        "faults[0].kind",
        "redis_restart with redis.persistence = \"none\" loses acked messages",
    );
    let allowed = "[expect]\nlost_ack = \"allowed\"\n";
    let wiped = parse(&scenario("aof-always", allowed, "redis_wipe"));
    assert!(wiped.expect.allow_lost_ack);
    parse(&scenario("none", allowed, "redis_restart"));
    // A persisted restart and a pause keep acked messages.
    for persistence in ["aof-everysec", "aof-always"] {
        let kept = parse(&scenario(persistence, "", "redis_restart"));
        assert!(!kept.expect.allow_lost_ack);
    }
    parse(&scenario("none", "", "redis_pause"));
}

#[test]
fn lost_ack_is_allowed_or_forbidden() {
    let err = assert_error(
        &with_tail("[expect]\nlost_ack = \"sometimes\"\n"),
        10,
        12,
        "expect.lost_ack",
        "unknown variant `sometimes`",
    );
    assert!(
        err.to_string()
            .contains("expected `allowed` or `forbidden`"),
        "{err}"
    );
    assert_error(
        &with_tail("[expect]\nlost_ack = true\n"),
        10,
        12,
        "expect.lost_ack",
        "wanted string or table",
    );
}
