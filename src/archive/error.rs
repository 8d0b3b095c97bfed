//! What can go wrong talking to OpenBao. Messages carry OpenBao's own error words and paths,
//! never a token, secret id or value (OpenBao does not echo request data in its errors).

/// An OpenBao failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    /// Not reachable, sealed, timing out, a 5xx, or the breaker is open: try again later.
    #[error("OpenBao is unavailable: {0}")]
    Unavailable(String),
    /// The AppRole login was refused (wrong role id or secret id, or the secret id expired).
    #[error("OpenBao refused the AppRole login: {0}")]
    Login(String),
    /// The token lacks a capability (the policy does not cover the path).
    #[error("OpenBao denied the request: {0}")]
    Denied(String),
    /// Another writer added a KV version meanwhile.
    #[error("the archive entry changed meanwhile (check-and-set did not match)")]
    CasConflict,
    /// Anything else OpenBao said no to.
    #[error("OpenBao answered HTTP {status}: {message}")]
    Unexpected { status: u16, message: String },
    /// An answer we cannot read.
    #[error("unexpected answer from OpenBao: {0}")]
    Protocol(String),
    #[error("invalid archive settings: {0}")]
    Config(String),
}

impl ArchiveError {
    /// Worth retrying later without changing anything.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ArchiveError::Unavailable(_))
    }
}

/// OpenBao's `{"errors": [...]}`, joined and cut short.
pub(crate) fn error_words(body: &[u8]) -> String {
    let words = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v["errors"].as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .unwrap_or_default();
    // OpenBao's multi-error text ("1 error occurred:\n\t* permission denied") on one line.
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut words = if words.is_empty() {
        "no error text".to_string()
    } else {
        words
    };
    if words.len() > 300 {
        let mut cut = 300;
        while !words.is_char_boundary(cut) {
            cut -= 1;
        }
        words.truncate(cut);
        words.push('…');
    }
    words
}
