//! `[intruders]`: read, rendered back, and bad tables named by key.
use std::time::Duration;

use crate::scenario::intruders::*;
use crate::scenario::ScenarioError;
use crate::scenario::{parse_scenario, render_scenario};

const BASE: &str = r#"
name = "t"
duration = "20s"
[population]
users = 4
conversations = 2
members_per_conversation = 2
[traffic]
send_rate = "5/s"
"#;

fn parse(table: &str) -> Result<crate::scenario::Scenario, ScenarioError> {
    parse_scenario(&format!("{BASE}\n[intruders]\n{table}"), "t.toml")
}

#[test]
fn counts_attempts_and_interval_are_read_and_rendered_back() {
    let scenario = parse("no_token = 2\nclient_id = 1\nattempts = 4\ninterval = \"3s\"").unwrap();
    let intruders = &scenario.intruders;
    assert_eq!(intruders.count(IntruderKind::NoToken), 2);
    assert_eq!(intruders.count(IntruderKind::ClientId), 1);
    assert_eq!(intruders.count(IntruderKind::NotMember), 0);
    assert_eq!(
        (intruders.attempts, intruders.interval),
        (4, Duration::from_secs(3))
    );
    let again = parse_scenario(&render_scenario(&scenario), "rendered.toml").unwrap();
    assert_eq!(again, scenario);
    let none = parse_scenario(BASE, "t.toml").unwrap();
    assert_eq!(none.intruders, Intruders::default());
    assert!(!render_scenario(&none).contains("[intruders]"));
}

#[test]
fn bad_tables_name_the_key() {
    let err = parse("no_token = 51").unwrap_err().to_string();
    assert!(
        err.contains("intruders.no_token") && err.contains("at most 50"),
        "{err}"
    );
    let err = parse("attempts = 0").unwrap_err().to_string();
    assert!(err.contains("intruders.attempts"), "{err}");
    let err = parse("interval = \"20s\"").unwrap_err().to_string();
    assert!(
        err.contains("intruders.interval") && err.contains("shorter"),
        "{err}"
    );
    let err = parse("interval = \"0s\"").unwrap_err().to_string();
    assert!(err.contains("greater than 0s"), "{err}");
    let err = parse("wrong_user = 1").unwrap_err().to_string();
    assert!(err.contains("wrong_user"), "{err}");
    let err = parse("no_token = -1").unwrap_err().to_string();
    assert!(err.contains("intruders.no_token"), "{err}");
}

/// A table that only changes the pacing still renders back (it used to be
/// dropped when no intruder was counted).
#[test]
fn a_table_without_counts_round_trips() {
    let scenario = parse("attempts = 4").unwrap();
    let again = parse_scenario(&render_scenario(&scenario), "rendered.toml").unwrap();
    assert_eq!(again.intruders.attempts, 4);
}
