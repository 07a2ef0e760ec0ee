//! Who may open a socket, checked before the WebSocket upgrade (so a
//! refused request writes nothing anywhere). docs/security.md,
//! "Authentication and membership", is the contract; in short:
//!
//! - the token is a JWT in `Authorization: Bearer <jwt>` or in the `token`
//!   query parameter (browsers cannot set headers on a WebSocket), not both;
//! - `sub` is the user id (a hyphenated UUID). Stored cursors are keyed by
//!   it and every send's `sender_id` is it: the `user_id` query parameter
//!   may be left out, and when given it must equal `sub` (403 otherwise);
//! - `conversations` (an array of conversation ids) is the membership: a
//!   socket for any other conversation is refused with 403;
//! - `exp` is required and `nbf` honoured, both with `--jwt-leeway`;
//! - HS256 with `--jwt-secret`, or RS256/ES256 with `--jwt-public-key`.
//!
//! Without a key the server refuses to start, unless `--insecure-no-auth`
//! (development only) lets anyone be anyone, as the seed did.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use recovery_protocol::{parse_hyphenated_uuid, ConnectParams};
use serde::Deserialize;
use uuid::Uuid;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
pub const MIN_SECRET_BYTES: usize = 32;

/// Authentication flags (flattened into [`crate::Config`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthConfig {
    /// HS256 secret that signs client tokens (at least 32 bytes). Prefer the
    /// environment variable: a command line is visible to other local users.
    #[arg(long, env = "SERVER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key that verifies client tokens instead of a secret: an
    /// RSA key (tokens signed RS256) or an EC P-256 key (ES256).
    #[arg(
        long,
        env = "SERVER_JWT_PUBLIC_KEY",
        value_name = "PEM_FILE",
        conflicts_with = "jwt_secret"
    )]
    pub jwt_public_key: Option<PathBuf>,

    /// Clock skew tolerated when checking a token's `exp` and `nbf`.
    #[arg(long, env = "SERVER_JWT_LEEWAY", default_value = "30s", value_parser = crate::config::parse_duration)]
    pub jwt_leeway: Duration,

    /// Accept only tokens whose `iss` is this (any issuer when unset).
    #[arg(long, env = "SERVER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accept only tokens whose `aud` includes this. When unset, a token
    /// that names an audience is refused (it was meant for someone else).
    #[arg(long, env = "SERVER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// DEVELOPMENT ONLY: no authentication. Anyone who can reach the port
    /// reads and writes every conversation as any user (`user_id` is taken
    /// from the query string). Never expose such a server.
    #[arg(long, env = "SERVER_INSECURE_NO_AUTH", conflicts_with_all = ["jwt_secret", "jwt_public_key"])]
    pub insecure_no_auth: bool,
}

/// Why the server will not start with the given authentication flags.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "refusing to start without authentication: pass --jwt-secret (or SERVER_JWT_SECRET) \
             or --jwt-public-key, or --insecure-no-auth for local development only \
             (then anyone can read and write every conversation)"
    )]
    NoKey,
    #[error("--jwt-secret is {len} bytes; HS256 needs at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)")]
    ShortSecret { len: usize },
    #[error("cannot read --jwt-public-key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--jwt-public-key {path} is neither an RSA nor an EC public key in PEM form")]
    BadKey { path: PathBuf },
}

/// A request refused before the upgrade: 401 (who are you?) or 403 (not
/// allowed), with a JSON body `{ "error": <message>, "reason": <code> }`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `expired`, `not_member`.
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn unauthorized(reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason,
            message: message.into(),
        }
    }

    fn forbidden(reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "reason": self.reason });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: tell the client which scheme to use.
            let challenge = if self.reason == "missing_token" {
                HeaderValue::from_static("Bearer")
            } else {
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The claims the server reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    conversations: Option<Vec<String>>,
}

/// Who a request is, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `--insecure-no-auth`: whoever the query string says.
    Anyone,
    User {
        user_id: Uuid,
        conversations: HashSet<Uuid>,
    },
}

impl Identity {
    /// The query pairs with `user_id` filled in from the token when the
    /// client left it out.
    pub fn fill_user_id(&self, mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        if let Identity::User { user_id, .. } = self {
            if !pairs.iter().any(|(key, _)| key == "user_id") {
                pairs.push(("user_id".to_string(), user_id.to_string()));
            }
        }
        pairs
    }

    /// 403 unless these parameters are this identity's to use.
    pub fn authorize(&self, params: &ConnectParams) -> Result<(), Refusal> {
        let Identity::User {
            user_id,
            conversations,
        } = self
        else {
            return Ok(());
        };
        if params.user_id != *user_id {
            return Err(Refusal::forbidden(
                "user_mismatch",
                format!(
                    "query parameter `user_id` {} is not the token's subject {user_id}; leave it out or make it match",
                    params.user_id
                ),
            ));
        }
        if !conversations.contains(&params.conversation_id) {
            return Err(Refusal::forbidden(
                "not_member",
                format!(
                    "user {user_id} is not a member of conversation {} (not in the token's `conversations` claim)",
                    params.conversation_id
                ),
            ));
        }
        Ok(())
    }
}

/// Checks tokens. Built once at start; cheap to share.
pub struct Authenticator {
    verifier: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.verifier {
            None => f.write_str("Authenticator(insecure)"),
            Some((_, validation)) => write!(f, "Authenticator({:?})", validation.algorithms),
        }
    }
}

impl Authenticator {
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, AuthConfigError> {
        if config.insecure_no_auth {
            return Ok(Authenticator { verifier: None });
        }
        let (key, algorithm) = match (&config.jwt_secret, &config.jwt_public_key) {
            (Some(secret), _) => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(AuthConfigError::ShortSecret { len: secret.len() });
                }
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadKey {
                    path: path.clone(),
                    source,
                })?;
                match DecodingKey::from_rsa_pem(&pem) {
                    Ok(key) => (key, Algorithm::RS256),
                    Err(_) => match DecodingKey::from_ec_pem(&pem) {
                        Ok(key) => (key, Algorithm::ES256),
                        Err(_) => return Err(AuthConfigError::BadKey { path: path.clone() }),
                    },
                }
            }
            (None, None) => return Err(AuthConfigError::NoKey),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = config.jwt_leeway.as_secs_f64().ceil() as u64;
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
        }
        if let Some(audience) = &config.jwt_audience {
            validation.set_audience(&[audience]);
        }
        Ok(Authenticator {
            verifier: Some((key, validation)),
        })
    }

    pub fn is_insecure(&self) -> bool {
        self.verifier.is_none()
    }

    /// 401 unless the request carries a valid token. `pairs` is the
    /// strictly decoded query string (a repeated `token` is refused).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        pairs: &[(String, String)],
    ) -> Result<Identity, Refusal> {
        let Some((key, validation)) = &self.verifier else {
            return Ok(Identity::Anyone);
        };
        let token = find_token(headers, pairs)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|err| token_refusal(err.kind()))?;
        let claims = data.claims;
        let user_id = parse_hyphenated_uuid(&claims.sub).ok_or_else(|| {
            Refusal::unauthorized(
                "bad_claims",
                format!(
                    "the token's `sub` must be the user id as a hyphenated UUID, got {:?}",
                    claims.sub
                ),
            )
        })?;
        let conversations = claims
            .conversations
            .unwrap_or_default()
            .iter()
            .map(|text| {
                parse_hyphenated_uuid(text).ok_or_else(|| {
                    Refusal::unauthorized(
                        "bad_claims",
                        format!(
                            "the token's `conversations` must be hyphenated UUIDs, got {text:?}"
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Identity::User {
            user_id,
            conversations,
        })
    }
}

/// The one token of a request: the `Authorization: Bearer` header or the
/// `token` query parameter. Two tokens would leave it unclear which one
/// decides, so that is refused too.
fn find_token<'a>(
    headers: &'a HeaderMap,
    pairs: &'a [(String, String)],
) -> Result<&'a str, Refusal> {
    let malformed = |message: &str| Refusal::unauthorized("malformed_token", message);
    let mut from_query = pairs.iter().filter(|(key, _)| key == "token");
    let query_token = from_query.next().map(|(_, value)| value.as_str());
    if from_query.next().is_some() {
        return Err(malformed("query parameter `token` is given more than once"));
    }
    let mut from_header = headers.get_all(header::AUTHORIZATION).iter();
    let header_token = match (from_header.next(), from_header.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(malformed("more than one Authorization header")),
        (Some(value), None) => {
            let value = value
                .to_str()
                .map_err(|_| malformed("the Authorization header is not ASCII"))?;
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(malformed(
                    "the Authorization header must be `Bearer <token>`",
                ));
            }
            Some(token.trim())
        }
    };
    match (header_token, query_token) {
        (Some(_), Some(_)) => Err(malformed(
            "a token both in the Authorization header and in the query string; send one",
        )),
        (Some(token), None) | (None, Some(token)) if token.is_empty() => {
            Err(malformed("the token is empty"))
        }
        (Some(token), None) | (None, Some(token)) => Ok(token),
        (None, None) => Err(Refusal::unauthorized(
            "missing_token",
            "authentication required: send `Authorization: Bearer <jwt>` or the `token` query parameter",
        )),
    }
}

/// The 401 for a token `jsonwebtoken` refused. Never echoes the token.
fn token_refusal(kind: &ErrorKind) -> Refusal {
    let (reason, message) = match kind {
        ErrorKind::ExpiredSignature => ("expired", "the token has expired (`exp`)".to_string()),
        ErrorKind::ImmatureSignature => (
            "not_yet_valid",
            "the token is not valid yet (`nbf`)".to_string(),
        ),
        ErrorKind::InvalidSignature => (
            "bad_signature",
            "the token's signature does not verify with the server's key".to_string(),
        ),
        ErrorKind::InvalidAlgorithm => (
            "bad_algorithm",
            "the token is signed with an algorithm this server does not accept".to_string(),
        ),
        ErrorKind::InvalidIssuer => (
            "bad_issuer",
            "the token's `iss` is not accepted".to_string(),
        ),
        ErrorKind::InvalidAudience => (
            "bad_audience",
            "the token's `aud` does not name this server".to_string(),
        ),
        ErrorKind::MissingRequiredClaim(claim) => {
            ("bad_claims", format!("the token has no `{claim}` claim"))
        }
        ErrorKind::Json(err) => (
            "bad_claims",
            format!("the token's claims are malformed: {err}"),
        ),
        _ => (
            "malformed_token",
            "the token is not a well-formed JWT".to_string(),
        ),
    };
    Refusal::unauthorized(reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const USER: &str = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    const CONV: &str = "0b1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";

    fn now_s() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn auth(extra: &[&str]) -> Result<Authenticator, AuthConfigError> {
        let args = ["server"].iter().chain(extra);
        let config = crate::Config::try_parse_from(args).unwrap();
        Authenticator::from_config(&config.auth)
    }

    fn sign(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({ "sub": USER, "exp": now_s() + 600, "conversations": [CONV] })
    }

    #[test]
    fn refuses_to_start_without_a_key() {
        let err = auth(&[]).unwrap_err().to_string();
        assert!(
            err.contains("--jwt-secret") && err.contains("--insecure-no-auth"),
            "{err}"
        );
        let err = auth(&["--jwt-secret", "short"]).unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
        assert!(auth(&["--insecure-no-auth"]).unwrap().is_insecure());
        assert!(crate::Config::try_parse_from([
            "server",
            "--insecure-no-auth",
            "--jwt-secret",
            SECRET
        ])
        .is_err());
    }

    #[test]
    fn a_good_token_names_the_user_and_conversations() {
        let auth = auth(&["--jwt-secret", SECRET]).unwrap();
        let token = sign(good_claims(), SECRET);
        let identity = auth.authenticate(&bearer(&token), &[]).unwrap();
        let user: Uuid = USER.parse().unwrap();
        let conversation: Uuid = CONV.parse().unwrap();
        assert_eq!(
            identity,
            Identity::User {
                user_id: user,
                conversations: [conversation].into()
            }
        );
        // Same through the query string.
        let pairs = [("token".to_string(), token)];
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), &pairs).unwrap(),
            identity
        );
    }

    #[test]
    fn bad_tokens_get_a_named_reason() {
        let auth = auth(&["--jwt-secret", SECRET, "--jwt-leeway", "5s"]).unwrap();
        let reason = |headers: HeaderMap, pairs: &[(String, String)]| {
            let refusal = auth.authenticate(&headers, pairs).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
            refusal.reason
        };
        assert_eq!(reason(HeaderMap::new(), &[]), "missing_token");
        let other_key = sign(good_claims(), "another-secret-another-secret-123");
        assert_eq!(reason(bearer(&other_key), &[]), "bad_signature");
        let mut claims = good_claims();
        claims["exp"] = (now_s() - 60).into();
        assert_eq!(
            reason(bearer(&sign(claims.clone(), SECRET)), &[]),
            "expired"
        );
        // Within the leeway: still accepted.
        claims["exp"] = (now_s() - 2).into();
        assert!(auth
            .authenticate(&bearer(&sign(claims, SECRET)), &[])
            .is_ok());
        let mut claims = good_claims();
        claims["nbf"] = (now_s() + 60).into();
        assert_eq!(reason(bearer(&sign(claims, SECRET)), &[]), "not_yet_valid");
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove("exp");
        assert_eq!(reason(bearer(&sign(claims, SECRET)), &[]), "bad_claims");
        let mut claims = good_claims();
        claims["sub"] = "alice".into();
        assert_eq!(reason(bearer(&sign(claims, SECRET)), &[]), "bad_claims");
        assert_eq!(reason(bearer("not.a.jwt"), &[]), "malformed_token");
        let token = sign(good_claims(), SECRET);
        let twice = [
            ("token".to_string(), token.clone()),
            ("token".to_string(), token.clone()),
        ];
        assert_eq!(reason(HeaderMap::new(), &twice), "malformed_token");
        let both = [("token".to_string(), token.clone())];
        assert_eq!(reason(bearer(&token), &both), "malformed_token");
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert_eq!(reason(basic, &[]), "malformed_token");
        let mut claims = good_claims();
        claims["aud"] = "someone-else".into();
        assert_eq!(reason(bearer(&sign(claims, SECRET)), &[]), "bad_audience");
    }

    #[test]
    fn an_ec_public_key_verifies_es256_tokens() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("public.pem");
        std::fs::write(&path, pair.public_key_pem()).unwrap();
        let verifier = auth(&["--jwt-public-key", path.to_str().unwrap()]).unwrap();
        let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let token = encode(&Header::new(Algorithm::ES256), &good_claims(), &signing).unwrap();
        assert!(verifier.authenticate(&bearer(&token), &[]).is_ok());
        // An HS256 token "signed" with the public key bytes is refused.
        let confused = encode(
            &Header::default(),
            &good_claims(),
            &EncodingKey::from_secret(pair.public_key_pem().as_bytes()),
        )
        .unwrap();
        let refusal = verifier.authenticate(&bearer(&confused), &[]).unwrap_err();
        assert_eq!(refusal.reason, "bad_algorithm");
        // Not a key at all.
        std::fs::write(&path, "hello").unwrap();
        let err = auth(&["--jwt-public-key", path.to_str().unwrap()]).unwrap_err();
        assert!(matches!(err, AuthConfigError::BadKey { .. }), "{err}");
    }

    #[test]
    fn membership_and_subject_are_enforced() {
        let user: Uuid = USER.parse().unwrap();
        let conversation: Uuid = CONV.parse().unwrap();
        let identity = Identity::User {
            user_id: user,
            conversations: [conversation].into(),
        };
        let pairs = identity.fill_user_id(vec![("conversation_id".into(), CONV.into())]);
        let params =
            ConnectParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(params.user_id, user);
        assert!(identity.authorize(&params).is_ok());
        let other = ConnectParams {
            user_id: Uuid::new_v4(),
            ..params.clone()
        };
        assert_eq!(
            identity.authorize(&other).unwrap_err().reason,
            "user_mismatch"
        );
        let elsewhere = ConnectParams {
            conversation_id: Uuid::new_v4(),
            ..params.clone()
        };
        let refusal = identity.authorize(&elsewhere).unwrap_err();
        assert_eq!(
            (refusal.status, refusal.reason),
            (StatusCode::FORBIDDEN, "not_member")
        );
        assert!(Identity::Anyone.authorize(&other).is_ok());
    }
}
