//! Tokens for the simulated devices (docs/security.md, "Authentication and
//! membership"): one JWT per user, `sub` = the user id, `conversations` =
//! the conversations the user's devices join, expiring well after the run.
//!
//! Where they come from ([`Credentials`]):
//! - spawned reference servers get a fresh random secret per run, and the
//!   harness signs with it (HS256);
//! - an external `--target` takes `--jwt-secret` (the server's HS256
//!   secret), or `--token-command CMD`, run once per user as
//!   `sh -c 'CMD "$@"' CMD USER_ID CONVERSATION_ID...`, whose standard
//!   output is the token (for servers whose keys the harness must not hold);
//! - without either, devices connect without a token (a server with
//!   `--insecure-no-auth`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use uuid::Uuid;

/// How long one `--token-command` call may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A device's token. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(Arc<str>);

impl Bearer {
    pub fn new(token: &str) -> Bearer {
        Bearer(Arc::from(token))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(..)")
    }
}

/// Where the devices' tokens come from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No token at all.
    #[default]
    None,
    /// HS256 secret shared with the server.
    Secret(String),
    /// A shell command that prints a user's token.
    Command(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Secret(_) => f.write_str("Secret(..)"),
            Credentials::Command(command) => write!(f, "Command({command:?})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("--token-command {command:?} could not run: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("--token-command {command:?} for user {user} failed ({status}): {stderr}")]
    Failed {
        command: String,
        user: Uuid,
        status: String,
        stderr: String,
    },
    #[error(
        "--token-command {command:?} for user {user} did not finish within {COMMAND_TIMEOUT:?}"
    )]
    Timeout { command: String, user: Uuid },
    #[error(
        "--token-command {command:?} for user {user} printed no token (one line of ASCII expected)"
    )]
    NoToken { command: String, user: Uuid },
}

/// 32 random bytes, hex: a fresh HS256 secret for the servers of one run.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HS256 token for `user`, member of `conversations`, valid for `valid_for`.
pub fn mint(
    secret: &str,
    user: Uuid,
    conversations: &[Uuid],
    valid_for: Duration,
) -> Result<String, TokenError> {
    let now = unix_s();
    let claims = serde_json::json!({
        "sub": user,
        "conversations": conversations,
        "iat": now,
        "exp": now + valid_for.as_secs().max(1),
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// An HS256 token like [`mint`]'s whose `exp` passed `ago` ago (for the
/// `expired_token` intruders: a former member's token).
pub fn mint_expired(
    secret: &str,
    user: Uuid,
    conversations: &[Uuid],
    ago: Duration,
) -> Result<String, TokenError> {
    let exp = unix_s().saturating_sub(ago.as_secs().max(1));
    let claims = serde_json::json!({
        "sub": user,
        "conversations": conversations,
        "iat": exp.saturating_sub(3600),
        "exp": exp,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// One token per user of `memberships` (user -> conversations), or none
/// when there are no credentials.
pub async fn tokens_for(
    credentials: &Credentials,
    memberships: &BTreeMap<Uuid, Vec<Uuid>>,
    valid_for: Duration,
) -> Result<BTreeMap<Uuid, Bearer>, TokenError> {
    let mut tokens = BTreeMap::new();
    for (&user, conversations) in memberships {
        let token = match credentials {
            Credentials::None => return Ok(BTreeMap::new()),
            Credentials::Secret(secret) => mint(secret, user, conversations, valid_for)?,
            Credentials::Command(command) => run_command(command, user, conversations).await?,
        };
        tokens.insert(user, Bearer::new(&token));
    }
    Ok(tokens)
}

async fn run_command(
    command: &str,
    user: Uuid,
    conversations: &[Uuid],
) -> Result<String, TokenError> {
    let mut process = tokio::process::Command::new("sh");
    process
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg(command)
        .arg(user.to_string())
        .args(conversations.iter().map(Uuid::to_string))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, process.output())
        .await
        .map_err(|_| TokenError::Timeout {
            command: command.to_string(),
            user,
        })?
        .map_err(|source| TokenError::Spawn {
            command: command.to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(TokenError::Failed {
            command: command.to_string(),
            user,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let token = String::from_utf8(output.stdout)
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    token.ok_or_else(|| TokenError::NoToken {
        command: command.to_string(),
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_carry_the_user_and_conversations() {
        let secret = random_secret();
        assert_eq!(secret.len(), 64);
        let (user, conversation) = (Uuid::new_v4(), Uuid::new_v4());
        let token = mint(&secret, user, &[conversation], Duration::from_secs(60)).unwrap();
        let mut validation = jsonwebtoken::Validation::default();
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], user.to_string());
        assert_eq!(claims["conversations"][0], conversation.to_string());
        assert!(format!("{:?}", Bearer::new(&token)).contains(".."));
    }

    #[tokio::test]
    async fn a_token_command_gets_the_user_and_conversations() {
        let (user, conversation) = (Uuid::new_v4(), Uuid::new_v4());
        let memberships = BTreeMap::from([(user, vec![conversation])]);
        let echo = Credentials::Command("printf 'tok-%s-%s\\n'".into());
        let tokens = tokens_for(&echo, &memberships, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(tokens[&user].as_str(), format!("tok-{user}-{conversation}"));
        let failing = Credentials::Command("echo nope >&2; exit 3".into());
        let err = tokens_for(&failing, &memberships, Duration::from_secs(60))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains(&user.to_string()),
            "{err}"
        );
        let silent = Credentials::Command("true".into());
        let err = tokens_for(&silent, &memberships, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(err, TokenError::NoToken { .. }), "{err}");
    }
}
