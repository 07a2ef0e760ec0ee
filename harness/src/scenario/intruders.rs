//! `[intruders]`: devices that try to get at conversations they have no
//! right to (docs/scenario-format.md, "[intruders]"). The file schema, the
//! typed model and the rules live together here so the table stays one
//! self-contained piece of the scenario module.
//!
//! ```toml
//! [intruders]
//! no_token = 2       # no token at all, a made-up user_id in the query
//! expired_token = 1  # a token whose `exp` passed an hour ago
//! bad_signature = 1  # a token signed with another key
//! not_member = 2     # a valid token, for a conversation it does not grant
//! client_id = 1      # a valid token of its own, presenting a victim device's client_id
//! attempts = 4       # connects per intruder (default 3)
//! interval = "3s"    # between one intruder's connects (default 2s)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ScenarioError;
use super::file::Dur;
use super::validate::Source;
use crate::client::protocol::Protocol;

/// At most this many intruders of one kind: they are a probe, not a load.
pub const MAX_INTRUDERS_PER_KIND: u32 = 50;
/// At most this many connects per intruder.
pub const MAX_ATTEMPTS: u32 = 20;
pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// What an intruder tries. The names are the `[intruders]` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntruderKind {
    /// No token; a made-up `user_id` in the query.
    NoToken,
    /// A token for the conversation, correctly signed, expired an hour ago.
    ExpiredToken,
    /// A token for the conversation signed with a key the server does not have.
    BadSignature,
    /// A valid token of its own whose `conversations` do not include the
    /// conversation it asks for.
    NotMember,
    /// A member with a valid token of its own that presents a victim
    /// device's `client_id` (and, every other attempt, the victim's
    /// `user_id`), then acks the head: the victim's stored cursor must not
    /// move.
    ClientId,
}

impl IntruderKind {
    pub const ALL: [IntruderKind; 5] = [
        IntruderKind::NoToken,
        IntruderKind::ExpiredToken,
        IntruderKind::BadSignature,
        IntruderKind::NotMember,
        IntruderKind::ClientId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IntruderKind::NoToken => "no_token",
            IntruderKind::ExpiredToken => "expired_token",
            IntruderKind::BadSignature => "bad_signature",
            IntruderKind::NotMember => "not_member",
            IntruderKind::ClientId => "client_id",
        }
    }

    /// Whether the conversation's messages are this intruder's to read
    /// (a `client_id` intruder is a member; only the victim's cursor is
    /// off limits to it).
    pub fn may_read(self) -> bool {
        self == IntruderKind::ClientId
    }
}

/// The validated `[intruders]` table; all counts zero without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intruders {
    /// How many of each kind, in [`IntruderKind::ALL`] order.
    pub counts: [u32; 5],
    pub attempts: u32,
    pub interval: Duration,
}

impl Default for Intruders {
    fn default() -> Self {
        Intruders {
            counts: [0; 5],
            attempts: DEFAULT_ATTEMPTS,
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl Intruders {
    pub fn count(&self, kind: IntruderKind) -> u32 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }
}

/// `[intruders]` as written.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntrudersFile {
    pub no_token: Option<u32>,
    pub expired_token: Option<u32>,
    pub bad_signature: Option<u32>,
    pub not_member: Option<u32>,
    pub client_id: Option<u32>,
    pub attempts: Option<u32>,
    pub interval: Option<Dur>,
}

impl IntrudersFile {
    fn count(&self, kind: IntruderKind) -> Option<u32> {
        match kind {
            IntruderKind::NoToken => self.no_token,
            IntruderKind::ExpiredToken => self.expired_token,
            IntruderKind::BadSignature => self.bad_signature,
            IntruderKind::NotMember => self.not_member,
            IntruderKind::ClientId => self.client_id,
        }
    }
}

/// The rules: bounded counts and attempts, an interval that fits in the
/// traffic window, and the v1 protocol (intruders speak its query string).
pub(crate) fn intruders(
    source: &Source,
    file: Option<&IntrudersFile>,
    protocol: Protocol,
    traffic_window: Duration,
) -> Result<Intruders, ScenarioError> {
    let Some(written) = file else {
        return Ok(Intruders::default());
    };
    let mut counts = [0; 5];
    for kind in IntruderKind::ALL {
        if let Some(count) = written.count(kind) {
            if count > MAX_INTRUDERS_PER_KIND {
                return Err(source.fail(
                    &format!("intruders.{}", kind.name()),
                    format!("at most {MAX_INTRUDERS_PER_KIND} intruders of one kind"),
                    Some(
                        "intruders probe the server's defences; a few of each kind is enough"
                            .into(),
                    ),
                ));
            }
            counts[kind as usize] = count;
        }
    }
    let attempts = match written.attempts {
        Some(attempts) if !(1..=MAX_ATTEMPTS).contains(&attempts) => {
            return Err(source.fail(
                "intruders.attempts",
                format!("must be between 1 and {MAX_ATTEMPTS}"),
                None,
            ))
        }
        Some(attempts) => attempts,
        None => DEFAULT_ATTEMPTS,
    };
    let interval =
        match written.interval {
            Some(Dur(interval)) if interval.is_zero() => {
                return Err(source.fail("intruders.interval", "must be greater than 0s", None))
            }
            Some(Dur(interval)) if interval >= traffic_window => return Err(source.fail(
                "intruders.interval",
                "must be shorter than ramp_up + duration (intruders connect during the traffic)",
                None,
            )),
            Some(Dur(interval)) => interval,
            None => DEFAULT_INTERVAL,
        };
    if protocol != Protocol::V1 && counts.iter().any(|count| *count > 0) {
        return Err(source.fail(
            "intruders",
            format!(
                "intruders speak protocol v1's query string and tokens; the servers speak {}",
                protocol.name()
            ),
            Some("remove [intruders] for this protocol".into()),
        ));
    }
    Ok(Intruders {
        counts,
        attempts,
        interval,
    })
}

/// The table as written back by `render_scenario` (none without intruders).
pub(crate) fn render(intruders: &Intruders) -> Option<IntrudersFile> {
    if intruders.total() == 0 {
        return None;
    }
    let count = |kind: IntruderKind| Some(intruders.count(kind));
    Some(IntrudersFile {
        no_token: count(IntruderKind::NoToken),
        expired_token: count(IntruderKind::ExpiredToken),
        bad_signature: count(IntruderKind::BadSignature),
        not_member: count(IntruderKind::NotMember),
        client_id: count(IntruderKind::ClientId),
        attempts: Some(intruders.attempts),
        interval: Some(Dur(intruders.interval)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let scenario =
            parse("no_token = 2\nclient_id = 1\nattempts = 4\ninterval = \"3s\"").unwrap();
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
}
