//! The `/ws` query string: `user_id`, `conversation_id`, optional
//! `client_id`, `last_id`, `epoch`.
//!
//! Validation lives here so the server rejects exactly what the harness
//! considers malformed, and the error names the offending parameter.

use std::collections::HashMap;

use uuid::Uuid;

use crate::StreamId;

/// Longest epoch string accepted; epochs are short random tokens, so a long
/// one is a client bug, not data worth storing.
pub const MAX_EPOCH_LEN: usize = 128;

/// Validated connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub client_id: Option<Uuid>,
    pub last_id: Option<StreamId>,
    pub epoch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("missing query parameter `{0}`")]
    Missing(&'static str),
    #[error("query parameter `{name}` must be a hyphenated UUID, got {value:?}")]
    NotUuid { name: &'static str, value: String },
    #[error("query parameter `last_id` must be a stream id <ms>-<seq>, got {0:?}")]
    BadLastId(String),
    #[error("query parameter `epoch` must be 1 to {MAX_EPOCH_LEN} printable ASCII characters, got {0:?}")]
    BadEpoch(String),
    #[error("query parameter `{0}` is given more than once")]
    Repeated(String),
    #[error("query string is not valid URL encoding: {0}")]
    BadEncoding(String),
}

impl QueryError {
    /// The parameter the error is about, for the JSON error body.
    pub fn parameter(&self) -> &str {
        match self {
            QueryError::Missing(name) | QueryError::NotUuid { name, .. } => name,
            QueryError::BadLastId(_) => "last_id",
            QueryError::BadEpoch(_) => "epoch",
            QueryError::Repeated(name) => name,
            QueryError::BadEncoding(_) => "query",
        }
    }
}

fn parse_uuid(name: &'static str, value: &str) -> Result<Uuid, QueryError> {
    crate::parse_hyphenated_uuid(value).ok_or_else(|| QueryError::NotUuid {
        name,
        value: value.to_string(),
    })
}

/// Splits a raw query string into percent-decoded `(key, value)` pairs,
/// the `application/x-www-form-urlencoded` way (`+` is a space), but
/// strictly: a `%` not followed by two hex digits, or bytes that do not
/// decode to UTF-8, are an error instead of being passed through or
/// replaced.
pub fn decode_query(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(key)?, decode_component(value)?))
        })
        .collect()
}

fn decode_component(text: &str) -> Result<String, QueryError> {
    let bad = |why: String| QueryError::BadEncoding(why);
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.bytes();
    while let Some(byte) = rest.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [rest.next(), rest.next()];
                let digit = |d: Option<u8>| d.and_then(|d| (d as char).to_digit(16));
                match (digit(hex[0]), digit(hex[1])) {
                    (Some(high), Some(low)) => bytes.push((high * 16 + low) as u8),
                    _ => {
                        let seen: String = hex.iter().flatten().map(|&b| b as char).collect();
                        return Err(bad(format!(
                            "`%` must be followed by two hex digits, got {:?} in {text:?}",
                            format!("%{seen}")
                        )));
                    }
                }
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| bad(format!("{text:?} does not percent-decode to UTF-8")))
}

impl ConnectParams {
    /// Validates already percent-decoded `(key, value)` pairs. Unknown keys
    /// are ignored (forward compatibility, e.g. a later `token`).
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, QueryError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (key, value) in pairs {
            let known = matches!(
                key,
                "user_id" | "conversation_id" | "client_id" | "last_id" | "epoch"
            );
            if known && seen.insert(key, value).is_some() {
                return Err(QueryError::Repeated(key.to_string()));
            }
        }
        let required = |name: &'static str| -> Result<Uuid, QueryError> {
            let value = seen.get(name).ok_or(QueryError::Missing(name))?;
            parse_uuid(name, value)
        };
        let user_id = required("user_id")?;
        let conversation_id = required("conversation_id")?;
        let client_id = seen
            .get("client_id")
            .map(|value| parse_uuid("client_id", value))
            .transpose()?;
        let last_id = seen
            .get("last_id")
            .map(|value| {
                value
                    .parse::<StreamId>()
                    .map_err(|_| QueryError::BadLastId(value.to_string()))
            })
            .transpose()?;
        let epoch = seen
            .get("epoch")
            .map(|value| {
                let ok = !value.is_empty()
                    && value.len() <= MAX_EPOCH_LEN
                    && value.bytes().all(|b| b.is_ascii_graphic());
                if ok {
                    Ok(value.to_string())
                } else {
                    Err(QueryError::BadEpoch(value.to_string()))
                }
            })
            .transpose()?;
        Ok(ConnectParams {
            user_id,
            conversation_id,
            client_id,
            last_id,
            epoch,
        })
    }

    /// The query string a client sends for these parameters (values are
    /// URL-safe by construction: UUIDs, ids and printable epochs are
    /// percent-encoded where needed).
    pub fn to_query(&self) -> String {
        let mut query = format!(
            "user_id={}&conversation_id={}",
            self.user_id, self.conversation_id
        );
        if let Some(client_id) = self.client_id {
            query.push_str(&format!("&client_id={client_id}"));
        }
        if let Some(last_id) = self.last_id {
            query.push_str(&format!("&last_id={last_id}"));
        }
        if let Some(epoch) = &self.epoch {
            query.push_str("&epoch=");
            for byte in epoch.bytes() {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                    query.push(byte as char);
                } else {
                    query.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    const CONV: &str = "0b1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";

    #[test]
    fn accepts_minimal_and_full() {
        let params =
            ConnectParams::from_pairs([("user_id", USER), ("conversation_id", CONV)]).unwrap();
        assert_eq!(params.client_id, None);
        let full = ConnectParams::from_pairs([
            ("user_id", USER),
            ("conversation_id", CONV),
            ("client_id", USER),
            ("last_id", "12-3"),
            ("epoch", "abc"),
            ("token", "ignored"),
        ])
        .unwrap();
        assert_eq!(full.last_id, Some(StreamId::new(12, 3)));
        let round = ConnectParams::from_pairs(
            full.to_query()
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(round, ConnectParams { ..full });
    }

    #[test]
    fn decodes_strictly() {
        let pairs = decode_query("a=x%20y+z&b=%7E&c&&d=").unwrap();
        let expected = [("a", "x y z"), ("b", "~"), ("c", ""), ("d", "")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        for bad in ["user_id=%G1", "a=%", "a=%4", "%zz=1", "a=%FF"] {
            let err = decode_query(bad).unwrap_err();
            assert_eq!(err.parameter(), "query", "{bad}: {err}");
        }
        assert!(decode_query("a=%4")
            .unwrap_err()
            .to_string()
            .contains("two hex digits"));
    }

    #[test]
    fn one_uuid_spelling() {
        let upper = USER.to_uppercase();
        let braced = format!("{{{USER}}}");
        let urn = format!("urn:uuid:{USER}");
        let simple = USER.replace('-', "");
        for (value, ok) in [
            (USER, true),
            (upper.as_str(), true),
            (braced.as_str(), false),
            (urn.as_str(), false),
            (simple.as_str(), false),
        ] {
            let parsed = ConnectParams::from_pairs([("user_id", value), ("conversation_id", CONV)]);
            assert_eq!(parsed.is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn names_the_bad_parameter() {
        let err = ConnectParams::from_pairs([("conversation_id", CONV)]).unwrap_err();
        assert_eq!(err.parameter(), "user_id");
        let err = ConnectParams::from_pairs([("user_id", "nope"), ("conversation_id", CONV)])
            .unwrap_err();
        assert_eq!(err.parameter(), "user_id");
        let err = ConnectParams::from_pairs([
            ("user_id", USER),
            ("conversation_id", CONV),
            ("last_id", "5"),
        ])
        .map(|p| p.last_id);
        assert_eq!(err, Ok(Some(StreamId::new(5, 0))));
        let err = ConnectParams::from_pairs([
            ("user_id", USER),
            ("conversation_id", CONV),
            ("last_id", "x-1"),
        ])
        .unwrap_err();
        assert_eq!(err.parameter(), "last_id");
        let simple = USER.replace('-', "");
        let err =
            ConnectParams::from_pairs([("user_id", USER), ("conversation_id", simple.as_str())])
                .unwrap_err();
        assert_eq!(err.parameter(), "conversation_id");
        let err = ConnectParams::from_pairs([
            ("user_id", USER),
            ("user_id", USER),
            ("conversation_id", CONV),
        ])
        .unwrap_err();
        assert_eq!(err.parameter(), "user_id");
        let err = ConnectParams::from_pairs([
            ("user_id", USER),
            ("conversation_id", CONV),
            ("epoch", ""),
        ])
        .unwrap_err();
        assert_eq!(err.parameter(), "epoch");
    }
}
