//! The JSON shapes Infisical sends and the mapping of its error answers to
//! [`InfisicalError`]. Nothing here quotes a response body that could hold a secret.

use reqwest::StatusCode;
use serde::Deserialize;

use super::error::{InfisicalError, Result};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenResponse {
    pub(super) access_token: String,
    pub(super) expires_in: u64,
    #[serde(rename = "accessTokenMaxTTL")]
    pub(super) access_token_max_ttl: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSecret {
    #[serde(default)]
    pub(super) id: String,
    pub(super) secret_key: String,
    pub(super) secret_value: String,
    pub(super) version: i64,
    #[serde(default)]
    pub(super) secret_path: Option<String>,
    #[serde(default)]
    pub(super) secret_comment: Option<String>,
    #[serde(default)]
    pub(super) secret_value_hidden: bool,
}

#[derive(Deserialize)]
pub(super) struct SecretEnvelope {
    pub(super) secret: RawSecret,
}

#[derive(Deserialize)]
pub(super) struct SecretsEnvelope {
    pub(super) secrets: Vec<RawSecret>,
}

#[derive(Deserialize)]
pub(super) struct RawFolder {
    pub(super) id: String,
    pub(super) name: String,
}

#[derive(Deserialize)]
pub(super) struct FolderEnvelope {
    pub(super) folder: RawFolder,
}

#[derive(Deserialize)]
pub(super) struct FoldersEnvelope {
    pub(super) folders: Vec<RawFolder>,
}

#[derive(Deserialize, Default)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) message: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) error: Option<serde_json::Value>,
}

impl ErrorBody {
    pub(super) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The server's `message`, shortened. Infisical messages name resources and rules, never
    /// values; zod validation arrays are reduced to their field paths and messages.
    pub(super) fn message(&self) -> String {
        let text = match &self.message {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    let path = i.get("path").map(|p| p.to_string()).unwrap_or_default();
                    let msg = i
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("invalid");
                    format!("{path}: {msg}")
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::from("no message"),
        };
        truncate(text, 200)
    }

    pub(super) fn error_name(&self) -> &str {
        match &self.error {
            Some(serde_json::Value::String(s)) => s,
            _ => "",
        }
    }
}

pub(super) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    // serde_json's error text can quote input; only its position and category are kept.
    serde_json::from_slice(body).map_err(|e| {
        InfisicalError::InvalidResponse(format!(
            "malformed JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Overwrites every string in a JSON value that held a secret before it is dropped.
pub(super) fn zeroize_json(value: serde_json::Value) {
    use zeroize::Zeroize;
    match value {
        serde_json::Value::String(mut s) => s.zeroize(),
        serde_json::Value::Array(items) => items.into_iter().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.into_iter().for_each(|(_, v)| zeroize_json(v)),
        _ => {}
    }
}

pub(super) fn is_already_exists(body: &[u8]) -> bool {
    ErrorBody::parse(body)
        .message()
        .to_ascii_lowercase()
        .contains("already exist")
}

/// What Infisical's 404 messages start with when the thing asked for is simply not there.
pub(super) const NO_SECRET: &[&str] = &["Secret with name", "Folder with path"];
pub(super) const NO_FOLDER: &[&str] = &["Folder with path"];

/// A 404 whose message starts with one of `absent_when` (see `NO_SECRET`, `NO_FOLDER`): `Ok`,
/// the caller answers "absent". Any other 404 (an unknown project or environment, a missing
/// route) is an error.
pub(super) fn absent(body: &[u8], absent_when: &[&str]) -> Result<(), InfisicalError> {
    let err = ErrorBody::parse(body);
    let msg = err.message();
    if absent_when.iter().any(|p| msg.starts_with(p)) {
        Ok(())
    } else {
        Err(not_found_error(&err))
    }
}

pub(super) fn not_found_error(err: &ErrorBody) -> InfisicalError {
    let message = err.message();
    if err.error_name() == "Not Found" && message.starts_with("Route ") {
        return InfisicalError::InvalidResponse(
            "route not found: the server does not serve this API (check INFISICAL_SITE_URL)".into(),
        );
    }
    InfisicalError::Rejected {
        status: 404,
        message,
    }
}

pub(super) fn write_not_found(path: &str, body: &[u8]) -> InfisicalError {
    let err = ErrorBody::parse(body);
    let msg = err.message();
    if msg.starts_with("Folder with path") {
        InfisicalError::FolderNotFound(path.to_owned())
    } else if msg.starts_with("Secret with name") {
        InfisicalError::NotFound
    } else {
        not_found_error(&err)
    }
}

pub(super) fn status_error(status: StatusCode, body: &[u8]) -> InfisicalError {
    let err = ErrorBody::parse(body);
    match status {
        StatusCode::UNAUTHORIZED => InfisicalError::Unauthorized(err.message()),
        StatusCode::FORBIDDEN => InfisicalError::Forbidden(err.message()),
        StatusCode::NOT_FOUND => not_found_error(&err),
        StatusCode::PAYLOAD_TOO_LARGE => InfisicalError::TooLarge {
            what: "request",
            limit: 1024 * 1024,
        },
        s if s.is_client_error() => InfisicalError::Rejected {
            status: s.as_u16(),
            message: err.message(),
        },
        s => InfisicalError::InvalidResponse(format!("unexpected HTTP {}", s.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_carry_no_body_text() {
        let e = parse_json::<TokenResponse>(br#"{"accessToken": "eyJSECRET"#)
            .err()
            .unwrap();
        assert!(!e.to_string().contains("eyJSECRET"), "{e}");
    }
}
