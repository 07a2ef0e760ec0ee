//! `[intruders]`: devices that try to get at conversations they have no
//! right to (docs/scenario-format.md, "[intruders]"): the model, its serde
//! schema and its rules in one place.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{serde_as, FromInto};

use super::error::ScenarioError;
use super::file::{Attempts, IntruderCount, Positive};
use super::validate::Source;
use crate::client::protocol::Protocol;

/// At most this many intruders of one kind: they are a probe, not a load.
pub const MAX_INTRUDERS_PER_KIND: u32 = 50;
/// At most this many connects per intruder.
pub const MAX_ATTEMPTS: u32 = 20;
pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// What an intruder tries (the docs say what each does). The names are the
/// `[intruders]` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntruderKind {
    NoToken,
    ExpiredToken,
    BadSignature,
    NotMember,
    /// A member presenting a victim device's `client_id`: the victim's
    /// stored cursor must not move.
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
        super::variant_name(self)
    }

    /// Whether the conversation's messages are this intruder's to read
    /// (a `client_id` intruder is a member; only the victim's cursor is
    /// off limits to it).
    pub fn may_read(self) -> bool {
        self == IntruderKind::ClientId
    }
}

/// `[intruders]`; without the table, no intruders. Bounds are checked as
/// each value is read (`file.rs`), the rules across values by [`check`].
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct Intruders {
    #[serde_as(as = "FromInto<IntruderCount>")]
    pub no_token: u32,
    #[serde_as(as = "FromInto<IntruderCount>")]
    pub expired_token: u32,
    #[serde_as(as = "FromInto<IntruderCount>")]
    pub bad_signature: u32,
    #[serde_as(as = "FromInto<IntruderCount>")]
    pub not_member: u32,
    #[serde_as(as = "FromInto<IntruderCount>")]
    pub client_id: u32,
    /// Connects per intruder.
    #[serde_as(as = "FromInto<Attempts>")]
    pub attempts: u32,
    /// Between one intruder's connects.
    #[serde_as(as = "FromInto<Positive>")]
    pub interval: Duration,
}

impl Default for Intruders {
    fn default() -> Self {
        Intruders {
            no_token: 0,
            expired_token: 0,
            bad_signature: 0,
            not_member: 0,
            client_id: 0,
            attempts: DEFAULT_ATTEMPTS,
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl Intruders {
    pub fn count(&self, kind: IntruderKind) -> u32 {
        match kind {
            IntruderKind::NoToken => self.no_token,
            IntruderKind::ExpiredToken => self.expired_token,
            IntruderKind::BadSignature => self.bad_signature,
            IntruderKind::NotMember => self.not_member,
            IntruderKind::ClientId => self.client_id,
        }
    }

    pub fn total(&self) -> u32 {
        IntruderKind::ALL.map(|kind| self.count(kind)).iter().sum()
    }
}

/// The rules across values: an interval that fits in the traffic window,
/// and the v1 protocol (intruders speak its query string).
pub(crate) fn check(
    source: &Source,
    intruders: &Intruders,
    protocol: Protocol,
    traffic_window: Duration,
) -> Result<(), ScenarioError> {
    if intruders.interval >= traffic_window {
        let problem =
            "must be shorter than ramp_up + duration (intruders connect during the traffic)";
        return Err(source.fail("intruders.interval", problem, None));
    }
    if protocol != Protocol::V1 && intruders.total() > 0 {
        return Err(source.fail(
            "intruders",
            format!(
                "intruders speak protocol v1's query string and tokens; the servers speak {}",
                protocol.name()
            ),
            Some("remove [intruders] for this protocol".into()),
        ));
    }
    Ok(())
}
