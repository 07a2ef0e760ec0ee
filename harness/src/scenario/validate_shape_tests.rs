//! `[[stages]]` and `reconnect_storm`: the load shape reads back as typed
//! values, and each rule rejects with the right line:column and key path.
//! `BASE` (8 lines, duration 10s, no ramp-up) comes from `validate_tests.rs`.

use std::time::Duration;

use super::validate::{assert_error, with_tail, BASE};
use crate::scenario::model::*;
use crate::scenario::parse_scenario;

fn parse(text: &str) -> Scenario {
    parse_scenario(text, "t.toml").unwrap_or_else(|err| panic!("{err}\n{text}"))
}

#[test]
fn stages_read_back_with_holds_left_as_none() {
    let scenario = parse(&with_tail(
        r#"[[stages]]
duration = "2s"
send_rate = "50/s"
[[stages]]
duration = "3s"
[[stages]]
duration = "1s"
send_rate = "0/s"
online = 0.5
"#,
    ));
    let stage = |seconds, send_rate_per_s, online_share| Stage {
        duration: Duration::from_secs(seconds),
        send_rate_per_s,
        online_share,
    };
    assert_eq!(
        scenario.stages,
        vec![
            stage(2, Some(50.0), None),
            stage(3, None, None),
            stage(1, Some(0.0), Some(0.5)),
        ]
    );
}

#[test]
fn stages_must_end_by_the_end_of_traffic() {
    let text = with_tail(
        r#"[[stages]]
duration = "6s"
[[stages]]
duration = "5s"
"#,
    );
    let err = assert_error(
        &text,
        12,
        1,
        "stages[1].duration",
        "this stage ends at 11s, after traffic ends (ramp_up + duration = 10s)",
    );
    assert!(err.to_string().contains("back to back"), "{err}");
}

#[test]
fn stage_keys_are_checked() {
    assert_error(
        &with_tail("[[stages]]\nduration = \"1s\"\nonline = 1.5\n"),
        11,
        10,
        "stages[0].online",
        "1.5 is not a share between 0 and 1",
    );
    assert_error(
        &with_tail("[[stages]]\nduration = \"1s\"\nrate = \"5/s\"\n"),
        11,
        1,
        "stages[0].rate",
        "unknown field `rate`, expected one of `duration`, `send_rate`, `online`",
    );
    assert_error(
        &with_tail("[[stages]]\nsend_rate = \"5/s\"\n"),
        9,
        1,
        "stages[0]",
        "missing field `duration`",
    );
}

#[test]
fn a_storm_reads_back_with_defaults() {
    let scenario = parse(&with_tail(
        r#"[[faults]]
kind = "reconnect_storm"
at = "3s"
[[faults]]
kind = "reconnect_storm"
at = "5s"
duration = "2s"
share = 0.25
drop = "close"
"#,
    ));
    let storm = |at, duration, share, drop| FaultSpec {
        kind: FaultKind::ReconnectStorm { share, drop },
        at: Duration::from_secs(at),
        duration: Duration::from_secs(duration),
    };
    assert_eq!(
        scenario.faults,
        vec![
            storm(3, 0, 1.0, StormDrop::Abrupt),
            storm(5, 2, 0.25, StormDrop::Close),
        ]
    );
}

#[test]
fn storm_rules() {
    let storm = |keys: &str| {
        with_tail(&format!(
            "[[faults]]\nkind = \"reconnect_storm\"\nat = \"1s\"\n{keys}"
        ))
    };
    assert_error(
        &storm("share = 0.0\n"),
        12,
        9,
        "faults[0].share",
        "a storm that drops no socket does nothing",
    );
    assert_error(
        &storm("drop = \"gently\"\n"),
        12,
        8,
        "faults[0].drop",
        "unknown variant `gently`, expected one of `close`, `abrupt`, `reset`",
    );
    assert_error(
        &storm("link = \"clients\"\n"),
        12,
        1,
        "faults[0].link",
        "does not apply to kind = \"reconnect_storm\"",
    );
    // Two storms on the clients at once would blur which one a reconnect belongs to.
    let text = format!(
        "{BASE}[[faults]]\nkind = \"reconnect_storm\"\nat = \"1s\"\nduration = \"3s\"\n\
         [[faults]]\nkind = \"reconnect_storm\"\nat = \"2s\"\n"
    );
    assert_error(
        &text,
        13,
        1,
        "faults[1]",
        "reconnect_storm at 2s overlaps faults[0] (reconnect_storm from 1s to 4s), both on the clients",
    );
}
