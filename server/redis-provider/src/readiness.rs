//! Bounded checks that a Redis really answers and is new enough.

use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;

use crate::error::ProviderError;

/// How long a freshly started server gets to answer PING.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const CHECK_IO_TIMEOUT: Duration = Duration::from_secs(1);
/// The server relies on exclusive XRANGE bounds `(` and XTRIM MINID.
const MINIMUM_VERSION: (u32, u32) = (6, 2);

async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CHECK_IO_TIMEOUT))
        .set_response_timeout(Some(CHECK_IO_TIMEOUT));
    // The outer timeout also covers handshakes the config timeouts miss.
    match tokio::time::timeout(
        CHECK_IO_TIMEOUT * 2,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(connection) => connection.map_err(|error| error.to_string()),
        Err(_) => Err(format!(
            "connecting took longer than {:?}",
            CHECK_IO_TIMEOUT * 2
        )),
    }
}

/// One PING on a fresh connection, bounded in time.
pub(crate) async fn ping_once(url: &str) -> Result<(), String> {
    let mut connection = connect(url).await?;
    let reply = tokio::time::timeout(
        CHECK_IO_TIMEOUT,
        redis::cmd("PING").query_async::<String>(&mut connection),
    )
    .await
    .map_err(|_| format!("no PING answer within {CHECK_IO_TIMEOUT:?}"))?
    .map_err(|error| error.to_string())?;
    if reply == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {reply:?} instead of PONG"))
    }
}

/// Polls PING until it answers or `timeout` passes. `still_alive` is asked
/// between polls so a crashed child fails fast with its own error.
pub(crate) async fn wait_for_ping(
    url: &str,
    timeout: Duration,
    mut still_alive: impl FnMut() -> Result<(), ProviderError>,
) -> Result<(), ProviderError> {
    let started = Instant::now();
    let max_polls = (timeout.as_millis() / POLL_INTERVAL.as_millis()).max(1) + 1;
    let mut last_error = String::from("no attempt made");
    for _ in 0..max_polls {
        still_alive()?;
        match ping_once(url).await {
            Ok(()) => return Ok(()),
            Err(error) => last_error = error,
        }
        if started.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(ProviderError::NotReady {
        url: url.to_string(),
        waited: started.elapsed(),
        last_error,
    })
}

/// Reads `redis_version` from INFO server and fails unless it is 6.2+.
/// Returns the version text for descriptions.
pub(crate) async fn check_version(url: &str) -> Result<String, ProviderError> {
    let unknown = |reason: String| ProviderError::VersionUnknown {
        url: url.to_string(),
        reason,
    };
    let mut connection = connect(url).await.map_err(unknown)?;
    let info = tokio::time::timeout(
        CHECK_IO_TIMEOUT,
        redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut connection),
    )
    .await
    .map_err(|_| unknown(format!("no INFO answer within {CHECK_IO_TIMEOUT:?}")))?
    .map_err(|error| unknown(error.to_string()))?;
    let version = version_from_info(&info).map_err(unknown)?;
    if version_at_least(&version, MINIMUM_VERSION).map_err(unknown)? {
        Ok(version)
    } else {
        Err(ProviderError::VersionTooOld {
            url: url.to_string(),
            found: version,
        })
    }
}

/// Number of keys in the selected database, bounded in time.
pub(crate) async fn key_count(url: &str) -> Result<u64, String> {
    let mut connection = connect(url).await?;
    tokio::time::timeout(
        CHECK_IO_TIMEOUT,
        redis::cmd("DBSIZE").query_async::<u64>(&mut connection),
    )
    .await
    .map_err(|_| format!("no DBSIZE answer within {CHECK_IO_TIMEOUT:?}"))?
    .map_err(|error| error.to_string())
}

fn version_from_info(info: &str) -> Result<String, String> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))
        .map(|version| version.trim().to_string())
        .ok_or_else(|| "INFO server has no redis_version line".to_string())
}

fn version_at_least(version: &str, minimum: (u32, u32)) -> Result<bool, String> {
    let mut parts = version.split('.');
    let mut number = |what: &str| -> Result<u32, String> {
        parts
            .next()
            .and_then(|part| part.parse().ok())
            .ok_or_else(|| format!("redis_version {version:?} has no numeric {what} part"))
    };
    let major = number("major")?;
    let minor = number("minor")?;
    Ok((major, minor) >= minimum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_the_info_text() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(version_from_info(info), Ok("7.0.15".to_string()));
        assert!(version_from_info("# Server\r\nuptime:3\r\n").is_err());
    }

    #[test]
    fn versions_below_6_2_are_too_old() {
        assert_eq!(version_at_least("6.2.0", (6, 2)), Ok(true));
        assert_eq!(version_at_least("7.0.15", (6, 2)), Ok(true));
        assert_eq!(version_at_least("10.0.0", (6, 2)), Ok(true));
        assert_eq!(version_at_least("6.0.16", (6, 2)), Ok(false));
        assert_eq!(version_at_least("5.0.14", (6, 2)), Ok(false));
    }

    #[test]
    fn unparsable_versions_are_errors() {
        assert!(version_at_least("seven", (6, 2)).is_err());
        assert!(version_at_least("7", (6, 2)).is_err());
    }
}
