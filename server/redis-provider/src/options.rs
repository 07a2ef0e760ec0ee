//! What the caller asks for: which provider, which image, which persistence.

use std::fmt;

/// Environment variable naming the container image (`name:tag`) to run.
pub const REDIS_IMAGE_ENV: &str = "REDIS_IMAGE";
/// Environment variable holding the URL of an already running Redis.
pub const REDIS_URL_ENV: &str = "REDIS_URL";
/// Image used when neither the options nor `REDIS_IMAGE` name one. 7.2 because
/// the server needs 6.2+ (exclusive XRANGE bounds, XTRIM MINID).
pub const DEFAULT_IMAGE: &str = "redis:7.2";

/// Which way a running Redis was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// A Docker container managed through testcontainers.
    Testcontainers,
    /// A `redis-server` child process found on `PATH`.
    Local,
    /// An externally managed Redis reached by URL; never started or stopped by us.
    Url,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Testcontainers => "testcontainers",
            ProviderKind::Local => "local redis-server",
            ProviderKind::Url => "REDIS_URL",
        })
    }
}

/// Which provider to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Preference {
    /// Testcontainers if Docker answers, else a local `redis-server`, else `REDIS_URL`.
    #[default]
    Auto,
    /// Only testcontainers; fails when Docker is unavailable (no silent fallback).
    Testcontainers,
    /// Only a local `redis-server` from `PATH`.
    Local,
    /// Only an existing server: the given URL, or `REDIS_URL` when `None`.
    Url(Option<String>),
}

/// How durably Redis keeps data, which decides what survives `stop`/`start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// No RDB snapshots, no AOF: a stopped server comes back empty.
    #[default]
    None,
    /// AOF fsynced once per second: a crash may lose up to a second of writes.
    AofEverysec,
    /// AOF fsynced on every write: a graceful stop or crash loses nothing acknowledged.
    AofAlways,
}

impl Persistence {
    /// `redis-server` arguments that set this persistence. RDB snapshots are
    /// always disabled (`--save ""`) so that what survives a restart depends
    /// only on the AOF setting, identically for every provider kind.
    pub fn server_args(self) -> Vec<String> {
        let mut args: Vec<String> = vec!["--save".into(), String::new()];
        match self {
            Persistence::None => args.extend(["--appendonly".into(), "no".into()]),
            Persistence::AofEverysec => {
                args.extend(["--appendonly", "yes", "--appendfsync", "everysec"].map(String::from))
            }
            Persistence::AofAlways => {
                args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from))
            }
        }
        args
    }
}

impl fmt::Display for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Persistence::None => "no persistence",
            Persistence::AofEverysec => "AOF everysec",
            Persistence::AofAlways => "AOF always",
        })
    }
}

/// Everything `start_redis` needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderOptions {
    pub preference: Preference,
    /// Container image as `name:tag`; `None` means [`default_image`].
    pub image: Option<String>,
    pub persistence: Persistence,
}

/// The image to run when the options name none: `REDIS_IMAGE` if set and
/// non-empty, else `redis:7.2`.
pub fn default_image() -> String {
    match std::env::var(REDIS_IMAGE_ENV) {
        Ok(image) if !image.trim().is_empty() => image.trim().to_string(),
        _ => DEFAULT_IMAGE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_args_always_disable_rdb_snapshots() {
        for persistence in [
            Persistence::None,
            Persistence::AofEverysec,
            Persistence::AofAlways,
        ] {
            let args = persistence.server_args();
            assert_eq!(&args[..2], &["--save".to_string(), String::new()]);
        }
    }

    #[test]
    fn persistence_args_select_the_fsync_policy() {
        assert_eq!(
            Persistence::None.server_args()[2..],
            ["--appendonly", "no"].map(String::from)
        );
        assert_eq!(
            Persistence::AofEverysec.server_args()[2..],
            ["--appendonly", "yes", "--appendfsync", "everysec"].map(String::from)
        );
        assert_eq!(
            Persistence::AofAlways.server_args()[2..],
            ["--appendonly", "yes", "--appendfsync", "always"].map(String::from)
        );
    }

    #[test]
    fn default_options_are_auto_without_persistence() {
        let options = ProviderOptions::default();
        assert_eq!(options.preference, Preference::Auto);
        assert_eq!(options.image, None);
        assert_eq!(options.persistence, Persistence::None);
    }
}
