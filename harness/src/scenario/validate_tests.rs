//! Every validation rule: the file is rejected, and the message points at
//! the right line:column and key path. Kept apart from `validate.rs` only
//! for file length.

use crate::scenario::model::*;
use crate::scenario::parse_scenario;
use crate::scenario::ScenarioError;

/// A valid scenario of 8 lines; tests append tables at line 9 onward.
pub(super) const BASE: &str = "name = \"t\"
duration = \"10s\"
[population]
users = 4
conversations = 2
members_per_conversation = 3
[traffic]
send_rate = \"5/s\"
";

/// `BASE` preceded by `first_line` (so a top-level key lands on line 1).
pub(super) fn with_top(first_line: &str) -> String {
    format!("{first_line}\n{BASE}")
}

/// `BASE` followed by `tail` (whose first line is line 9).
pub(super) fn with_tail(tail: &str) -> String {
    format!("{BASE}{tail}")
}

#[track_caller]
pub(super) fn assert_error(
    text: &str,
    line: usize,
    column: usize,
    key: &str,
    needle: &str,
) -> ScenarioError {
    let err = parse_scenario(text, "t.toml").expect_err("the scenario should be rejected");
    let shown = err.to_string();
    assert_eq!(err.position(), Some((line, column)), "{shown}");
    assert_eq!(err.key(), Some(key), "{shown}");
    let prefix = if key.is_empty() {
        format!("t.toml:{line}:{column}: ")
    } else {
        format!("t.toml:{line}:{column}: {key}: ")
    };
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
    assert!(
        shown.contains(needle),
        "{shown:?} should contain {needle:?}"
    );
    err
}

#[test]
fn base_is_valid() {
    parse_scenario(BASE, "t.toml").unwrap();
    parse_scenario(&with_top("seed = 1"), "t.toml").unwrap();
}

#[test]
fn unknown_top_level_key() {
    let err = assert_error(
        &with_top("nmae = \"x\""),
        1,
        1,
        "nmae",
        "unknown field `nmae`",
    );
    assert!(
        err.to_string()
            .contains("expected one of `name`, `seed`, `duration`,"),
        "{err}"
    );
}

#[test]
fn unknown_key_in_a_header_table() {
    let text = BASE.replace("users = 4", "users = 4\nuser = 3");
    assert_error(&text, 5, 1, "population.user", "unknown field `user`");
}

#[test]
fn unknown_key_in_an_inline_table() {
    let err = assert_error(
        &with_tail("[churn]\nonline = { dist = \"uniform\", min = \"1s\", mx = \"2s\" }\n"),
        10,
        42,
        "churn.online.mx",
        "",
    );
    assert_eq!(
        err.to_string(),
        "t.toml:10:42: churn.online.mx: does not apply to dist = \"uniform\" (uniform takes: min, max)"
    );
}

#[test]
fn unknown_key_in_an_array_element() {
    let tail = "[thresholds]\nlatency = [ { metric = \"ack\", percentile = \"p99\", max = \"1s\", typo = 1 } ]\n";
    assert_error(
        &with_tail(tail),
        10,
        63,
        "thresholds.latency[0].typo",
        "unknown field `typo`",
    );
}

#[test]
fn toml_syntax_error() {
    assert_error(&with_top("name2 = "), 1, 9, "", "invalid TOML");
}

#[test]
fn missing_required_keys_and_tables() {
    assert_error(
        &BASE.replace("duration = \"10s\"\n", ""),
        1,
        1,
        "",
        "missing field `duration`",
    );
    assert_error(
        &BASE.replace("name = \"t\"\n", ""),
        1,
        1,
        "",
        "missing field `name`",
    );
    assert_error(
        &BASE.replace("users = 4\n", ""),
        3,
        1,
        "population",
        "missing field `users`",
    );
    let no_traffic = BASE.replace("[traffic]\nsend_rate = \"5/s\"\n", "");
    assert_error(
        &no_traffic,
        1,
        1,
        "traffic",
        "required table [traffic] is missing",
    );
    let no_rate = BASE.replace("send_rate = \"5/s\"\n", "");
    assert_error(&no_rate, 7, 1, "traffic", "missing field `send_rate`");
}

#[test]
fn wrong_value_types() {
    let text = BASE.replace("users = 4", "users = \"4\"");
    assert_error(
        &text,
        4,
        9,
        "population.users",
        "invalid type: string \"4\", expected u32",
    );
    assert_error(
        &with_top("seed = \"7\""),
        1,
        8,
        "seed",
        "invalid type: string \"7\", expected u64",
    );
    assert_error(
        &with_top("churn = 5"),
        1,
        9,
        "churn",
        "invalid type: integer `5`, expected a table",
    );
    assert_error(
        &with_tail("[expect]\norder = \"yes\"\n"),
        10,
        9,
        "expect.order",
        "invalid type: string \"yes\", expected a boolean",
    );
    let args = "[servers]\nextra_args = [\"--x\", 3]\n";
    assert_error(
        &with_tail(args),
        10,
        22,
        "servers.extra_args[1]",
        "invalid type: integer `3`, expected a string",
    );
    let latency = "[thresholds]\nlatency = [ \"p99\" ]\n";
    assert_error(
        &with_tail(latency),
        10,
        13,
        "thresholds.latency[0]",
        "expected a table",
    );
}

#[test]
fn bare_numbers_need_units() {
    let text = BASE.replace("duration = \"10s\"", "duration = 10");
    let err = assert_error(
        &text,
        2,
        12,
        "duration",
        "expected a string, found the number 10",
    );
    assert!(err.to_string().contains("write \"10s\""), "{err}");
    let text = BASE.replace("send_rate = \"5/s\"", "send_rate = \"5\"");
    let err = assert_error(&text, 8, 13, "traffic.send_rate", "\"5\" has no unit");
    assert!(err.to_string().contains("e.g. \"5/s\""), "{err}");
}

#[test]
fn bad_units() {
    let text = BASE.replace("duration = \"10s\"", "duration = \"10x\"");
    assert_error(&text, 2, 12, "duration", "unknown unit \"x\"");
    let err = assert_error(
        &with_tail("body_size = \"2KB\"\n"),
        9,
        13,
        "traffic.body_size",
        "ambiguous",
    );
    assert!(err.to_string().contains("KiB"), "{err}");
}

#[test]
fn zero_durations_where_not_allowed() {
    assert_error(
        &BASE.replace("\"10s\"", "\"0s\""),
        2,
        12,
        "duration",
        "must be greater than 0s",
    );
    assert_error(
        &with_top("drain_timeout = \"0ms\""),
        1,
        17,
        "drain_timeout",
        "greater than 0s",
    );
    let sync = "[servers]\nsync_interval = \"0s\"\n";
    assert_error(
        &with_tail(sync),
        10,
        17,
        "servers.sync_interval",
        "greater than 0s",
    );
    let online = "[churn]\nonline = { dist = \"fixed\", value = \"0s\" }\n";
    assert_error(
        &with_tail(online),
        10,
        36,
        "churn.online.value",
        "greater than 0s",
    );
    let mean = "[churn]\noffline = { dist = \"exponential\", mean = \"0s\" }\n";
    assert_error(
        &with_tail(mean),
        10,
        42,
        "churn.offline.mean",
        "greater than 0s",
    );
    let latency =
        "[thresholds]\nlatency = [ { metric = \"ack\", percentile = \"p50\", max = \"0s\" } ]\n";
    assert_error(
        &with_tail(latency),
        10,
        57,
        "thresholds.latency[0].max",
        "greater than 0s",
    );
}

#[test]
fn zero_offline_time_is_allowed() {
    let tail = "[churn]\noffline = { dist = \"fixed\", value = \"0s\" }\n";
    let scenario = parse_scenario(&with_tail(tail), "t.toml").unwrap();
    assert_eq!(
        scenario.churn.offline,
        DurationDist::Fixed {
            value: std::time::Duration::ZERO
        }
    );
}

#[test]
fn counts_must_be_positive() {
    let zero = BASE.replace("conversations = 2", "conversations = 0");
    assert_error(
        &zero,
        5,
        17,
        "population.conversations",
        "must be at least 1",
    );
    let negative = BASE.replace("users = 4", "users = -1");
    assert_error(
        &negative,
        4,
        9,
        "population.users",
        "invalid value: integer `-1`, expected u32",
    );
    let devices = BASE.replace("users = 4", "users = 4\ndevices_per_user = 0");
    assert_error(
        &devices,
        5,
        20,
        "population.devices_per_user",
        "must be at least 1",
    );
    assert_error(
        &with_tail("[servers]\nspawn = 0\n"),
        10,
        9,
        "servers.spawn",
        "must be at least 1",
    );
    let huge = BASE.replace("users = 4", "users = 4294967296");
    let too_large = "invalid value: integer `4294967296`, expected u32";
    assert_error(&huge, 4, 9, "population.users", too_large);
    let negative = "invalid value: integer `-3`, expected u64";
    assert_error(&with_top("seed = -3"), 1, 8, "seed", negative);
}

#[test]
fn more_members_than_users() {
    let text = BASE.replace(
        "members_per_conversation = 3",
        "members_per_conversation = 5",
    );
    assert_error(
        &text,
        6,
        28,
        "population.members_per_conversation",
        "5 is more than users (4)",
    );
}

#[test]
fn shares_must_be_between_zero_and_one() {
    let over = "[churn]\nabrupt_share = 1.5\n";
    assert_error(
        &with_tail(over),
        10,
        16,
        "churn.abrupt_share",
        "1.5 is not a share between 0 and 1",
    );
    let under = "[churn]\nreset_share = -0.1\n";
    assert_error(
        &with_tail(under),
        10,
        15,
        "churn.reset_share",
        "not a share",
    );
    let nan = "[churn]\nclient_cursor_share = nan\n";
    assert_error(
        &with_tail(nan),
        10,
        23,
        "churn.client_cursor_share",
        "NaN is not a share between 0 and 1",
    );
    let whole = "[churn]\nclient_cursor_share = 1\n";
    let scenario = parse_scenario(&with_tail(whole), "t.toml").unwrap();
    assert_eq!(scenario.churn.client_cursor_share, 1.0);
}

#[test]
fn distributions() {
    let min_over_max = "[churn]\nonline = { dist = \"uniform\", min = \"5s\", max = \"2s\" }\n";
    let err = assert_error(
        &with_tail(min_over_max),
        10,
        48,
        "churn.online.max",
        "is less than min",
    );
    assert!(err.to_string().contains("min <= max"), "{err}");
    let foreign =
        "[churn]\nonline = { dist = \"uniform\", min = \"1s\", max = \"2s\", mean = \"1s\" }\n";
    let err = assert_error(
        &with_tail(foreign),
        10,
        54,
        "churn.online.mean",
        "does not apply to dist = \"uniform\"",
    );
    assert!(err.to_string().contains("uniform takes: min, max"), "{err}");
    let kind = "[churn]\nonline = { dist = \"normal\", mean = \"1s\" }\n";
    assert_error(
        &with_tail(kind),
        10,
        19,
        "churn.online.dist",
        "unknown variant `normal`",
    );
    let no_kind = "[churn]\nonline = { mean = \"1s\" }\n";
    assert_error(
        &with_tail(no_kind),
        10,
        10,
        "churn.online",
        "missing field `dist`",
    );
    let no_param = "[churn]\nonline = { dist = \"uniform\", min = \"1s\" }\n";
    assert_error(
        &with_tail(no_param),
        10,
        10,
        "churn.online.max",
        "required key is missing",
    );
}

#[test]
fn percentiles_and_metrics() {
    let line = |metric: &str, percentile: &str| {
        format!("[thresholds]\nlatency = [ {{ metric = \"{metric}\", percentile = \"{percentile}\", max = \"1s\" }} ]\n")
    };
    let pos = "thresholds.latency[0].percentile";
    assert_error(
        &with_tail(&line("ack", "p0")),
        10,
        44,
        pos,
        "must be above 0 and at most 100",
    );
    assert_error(
        &with_tail(&line("ack", "p100.1")),
        10,
        44,
        pos,
        "at most 100",
    );
    assert_error(
        &with_tail(&line("ack", "99")),
        10,
        44,
        pos,
        "plain decimal number",
    );
    let metric = "thresholds.latency[0].metric";
    let err = assert_error(
        &with_tail(&line("latency", "p99")),
        10,
        24,
        metric,
        "unknown variant `latency`",
    );
    assert!(err
        .to_string()
        .contains("`live_delivery`, `ack`, `connect_to_hello`, `recovery`, `replay_staleness`"));
    let twice =
        "[thresholds]\nlatency = [\n { metric = \"ack\", percentile = \"p99\", max = \"1s\" },\n \
                 { metric = \"ack\", percentile = \"p99\", max = \"2s\" },\n]\n";
    assert_error(
        &with_tail(twice),
        12,
        2,
        "thresholds.latency[1]",
        "repeats the metric and percentile of thresholds.latency[0]",
    );
    let rate = "[thresholds]\nmin_delivery_rate = \"0/s\"\n";
    assert_error(
        &with_tail(rate),
        10,
        21,
        "thresholds.min_delivery_rate",
        "greater than 0/s",
    );
}

#[test]
fn servers_spawn_or_targets() {
    let both = "[servers]\nspawn = 2\ntargets = [\"ws://127.0.0.1:9000/ws\"]\n";
    assert_error(
        &with_tail(both),
        11,
        1,
        "servers.targets",
        "cannot be combined with spawn",
    );
    let spawn_only =
        "[servers]\ntargets = [\"ws://127.0.0.1:9000/ws\"]\nheartbeat_interval = \"5s\"\n";
    assert_error(
        &with_tail(spawn_only),
        11,
        1,
        "servers.heartbeat_interval",
        "only applies to spawned servers",
    );
    let http = "[servers]\ntargets = [\"ws://a:1/ws\", \"http://127.0.0.1:9000/ws\"]\n";
    assert_error(
        &with_tail(http),
        10,
        27,
        "servers.targets[1]",
        "is not a WebSocket URL",
    );
    let no_host = "[servers]\ntargets = [\"ws:///ws\"]\n";
    assert_error(
        &with_tail(no_host),
        10,
        12,
        "servers.targets[0]",
        "is not a WebSocket URL",
    );
    let empty = "[servers]\ntargets = []\n";
    assert_error(
        &with_tail(empty),
        10,
        11,
        "servers.targets",
        "at least one server",
    );
    let twice = "[servers]\ntargets = [\"ws://a:1/ws\", \"ws://a:1/ws\"]\n";
    assert_error(
        &with_tail(twice),
        10,
        27,
        "servers.targets[1]",
        "listed twice",
    );
}

#[test]
fn servers_protocol() {
    use crate::client::protocol::Protocol;
    let default = parse_scenario(BASE, "t.toml").unwrap();
    assert_eq!(default.protocol, Protocol::V1);
    let named = parse_scenario(&with_tail("[servers]\nprotocol = \"v1\"\n"), "t.toml").unwrap();
    assert_eq!(named.protocol, Protocol::V1);
    let err = assert_error(
        &with_tail("[servers]\nprotocol = \"mqtt\"\n"),
        10,
        12,
        "servers.protocol",
        "unknown variant `mqtt`",
    );
    assert!(err.to_string().contains("v1"), "{err}");
}

#[test]
fn redis_provider_and_url() {
    let no_url = "[redis]\nprovider = \"url\"\n";
    assert_error(
        &with_tail(no_url),
        10,
        12,
        "redis.url",
        "required when provider = \"url\"",
    );
    let stray_url = "[redis]\nurl = \"redis://127.0.0.1:6379\"\n";
    assert_error(
        &with_tail(stray_url),
        10,
        7,
        "redis.url",
        "only used with provider = \"url\"",
    );
    let scheme = "[redis]\nprovider = \"url\"\nurl = \"http://127.0.0.1:6379\"\n";
    assert_error(&with_tail(scheme), 11, 7, "redis.url", "is not a Redis URL");
    let provider = "[redis]\nprovider = \"docker\"\n";
    let err = assert_error(
        &with_tail(provider),
        10,
        12,
        "redis.provider",
        "unknown variant `docker`",
    );
    assert!(
        err.to_string()
            .contains("`auto`, `testcontainers`, `local`, `url`"),
        "{err}"
    );
    let persistence = "[redis]\npersistence = \"aof\"\n";
    assert_error(
        &with_tail(persistence),
        10,
        15,
        "redis.persistence",
        "unknown variant `aof`",
    );
    let image = "[redis]\nimage = \"\"\n";
    assert_error(
        &with_tail(image),
        10,
        9,
        "redis.image",
        "not a container image name",
    );
}

#[test]
fn names_must_be_safe_directory_names() {
    let empty = BASE.replace("name = \"t\"", "name = \"\"");
    assert_error(&empty, 1, 8, "name", "must not be empty");
    let slash = BASE.replace("name = \"t\"", "name = \"a/b\"");
    assert_error(&slash, 1, 8, "name", "contains '/', which is not safe");
    let space = BASE.replace("name = \"t\"", "name = \"my run\"");
    assert_error(&space, 1, 8, "name", "contains ' '");
    let dots = BASE.replace("name = \"t\"", "name = \"..\"");
    assert_error(&dots, 1, 8, "name", "not a usable directory name");
    let long = BASE.replace("name = \"t\"", &format!("name = \"{}\"", "a".repeat(101)));
    assert_error(&long, 1, 8, "name", "longer than 100");
}

#[test]
fn traffic_values() {
    let zero_rate = BASE.replace("\"5/s\"", "\"0/s\"");
    assert_error(&zero_rate, 8, 13, "traffic.send_rate", "greater than 0/s");
    assert_error(
        &with_tail("body_size = \"0B\"\n"),
        9,
        13,
        "traffic.body_size",
        "at least 1B",
    );
    let big = "body_size = \"65537B\"\n";
    assert_error(&with_tail(big), 9, 13, "traffic.body_size", "at most 64KiB");
    let max = parse_scenario(&with_tail("body_size = \"64KiB\"\n"), "t.toml").unwrap();
    assert_eq!(max.traffic.body_bytes, 65536);
}

#[test]
fn expect_values() {
    let bad = "[expect]\nstored_cursor_redelivery = \"sometimes\"\n";
    let err = assert_error(
        &with_tail(bad),
        10,
        28,
        "expect.stored_cursor_redelivery",
        "unknown variant `sometimes`",
    );
    assert!(
        err.to_string().contains("`allowed` or `forbidden`"),
        "{err}"
    );
    let unknown = "[expect]\nno_gaps = true\n";
    assert_error(
        &with_tail(unknown),
        10,
        1,
        "expect.no_gaps",
        "unknown field `no_gaps`",
    );
}

/// The grammar of the server's flags (`--state-ttl 30d`) and scenario
/// files is one (`recovery-units`): days and decimals are accepted.
#[test]
fn durations_take_days_like_the_server_flags() {
    let days = parse_scenario(&with_top("drain_timeout = \"30d\""), "t.toml").unwrap();
    assert_eq!(
        days.drain_timeout,
        std::time::Duration::from_secs(30 * 86_400)
    );
    let decimal = parse_scenario(&with_top("ramp_up = \"1.5d\""), "t.toml").unwrap();
    assert_eq!(decimal.ramp_up, std::time::Duration::from_secs(36 * 3600));
}
