//! The platform's tokens at an orchestrator's start.
//!
//! The state keeps only a [`TokenHash`] of each token (`token_hash`,
//! `join_token_hash`), so neither the database nor the replica streamed to a
//! rollover candidate holds a token in clear. The agent that made (or was
//! given) a token writes it to a file of its data directory, private from its
//! creation, so the CLI on the same machine and the next start can show it.
//! Data of an older version, which kept the tokens in clear in the state, is
//! converted at the first start.

use std::path::Path;

use super::token::check_chosen;
use super::{files, random_token, AuthError, TokenHash};
use crate::state::State;

/// Where one token is kept.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// What people call it ("platform token", "join token").
    pub what: &'a str,
    /// The state setting holding its hash.
    pub hash_key: &'a str,
    /// The state setting an older version kept it in, in clear.
    pub legacy_key: &'a str,
    /// The file of the data directory holding it in clear.
    pub file: &'a Path,
}

/// A token after the start: its hash, and the token itself when this agent
/// knows it (given on the command line, made now, or read from its file).
#[derive(Debug, Clone)]
pub struct Settled {
    /// The hash requests are checked against.
    pub hash: TokenHash,
    /// The token, when known here.
    pub clear: Option<String>,
}

/// Settles the token of `slot`: `given` replaces the stored one (and is kept
/// for later starts); without it, the stored hash stays and the token is read
/// from the file; with neither, a new random token is made.
///
/// # Errors
/// [`AuthError::TooShort`] for a given token shorter than
/// [`MIN_TOKEN_LEN`](super::MIN_TOKEN_LEN), [`AuthError::NoRandomness`] when
/// no token or salt can be made, [`AuthError::Io`] when the file cannot be
/// written, [`AuthError::Stored`] when the state cannot be used.
pub fn settle(state: &State, slot: Slot<'_>, given: Option<String>) -> Result<Settled, AuthError> {
    let stored = match state.meta(slot.hash_key)? {
        Some(text) => Some(text.parse::<TokenHash>()?),
        None => None,
    };
    let legacy = state.meta(slot.legacy_key)?;
    let (stored, legacy_clear) = match (stored, legacy) {
        (None, Some(clear)) => (Some(TokenHash::of(&clear)?), Some(clear)),
        (stored, _) => (stored, None),
    };
    let given = given.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let (hash, clear) = match (given, stored) {
        (Some(token), stored) => {
            check_chosen(slot.what, &token)?;
            let hash = match stored {
                Some(h) if h.matches(&token) => h,
                _ => TokenHash::of(&token)?,
            };
            (hash, Some(token))
        }
        (None, Some(hash)) => {
            let from_file = std::fs::read_to_string(slot.file).ok().map(|t| t.trim().to_string());
            let clear = from_file.or(legacy_clear).filter(|t| hash.matches(t));
            (hash, clear)
        }
        (None, None) => {
            let token = random_token()?;
            (TokenHash::of(&token)?, Some(token))
        }
    };
    state.set_meta(slot.hash_key, &hash.to_string())?;
    state.remove_meta(slot.legacy_key)?;
    if let Some(token) = &clear {
        let current = std::fs::read_to_string(slot.file).ok();
        if current.as_deref().map(str::trim) != Some(token.as_str()) {
            files::write_private(slot.file, token.as_bytes())
                .map_err(|source| AuthError::Io { path: slot.file.to_path_buf(), source })?;
        }
    }
    Ok(Settled { hash, clear })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateLimits;

    fn slot(file: &Path) -> Slot<'_> {
        Slot { what: "platform token", hash_key: "token_hash", legacy_key: "token", file }
    }

    #[test]
    fn a_new_token_is_kept_as_a_hash_and_in_its_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
        let file = dir.path().join("token");
        let first = settle(&state, slot(&file), None).expect("settle");
        let token = first.clear.clone().expect("a new token is known");
        assert!(first.hash.matches(&token));
        assert_eq!(std::fs::read_to_string(&file).expect("file"), token);
        assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o600);
        assert_eq!(state.meta("token").expect("read"), None, "never in clear in the state");
        let stored = state.meta("token_hash").expect("read").expect("hash stored");
        assert!(!stored.contains(&token));
        // The next start shows the same token, read from the file.
        let again = settle(&state, slot(&file), None).expect("settle");
        assert_eq!(again.clear.as_deref(), Some(token.as_str()));
    }

    #[test]
    fn a_given_token_replaces_the_stored_one_and_must_be_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
        let file = dir.path().join("token");
        settle(&state, slot(&file), None).expect("settle");
        let chosen = settle(&state, slot(&file), Some(" my-own-long-token ".into())).expect("settle");
        assert_eq!(chosen.clear.as_deref(), Some("my-own-long-token"));
        assert!(chosen.hash.matches("my-own-long-token"));
        let later = settle(&state, slot(&file), None).expect("settle");
        assert!(later.hash.matches("my-own-long-token"));
        let err = settle(&state, slot(&file), Some("short".into())).expect_err("too short");
        assert!(matches!(err, AuthError::TooShort { .. }), "{err}");
    }

    #[test]
    fn without_its_file_the_token_is_unknown_but_still_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
        let file = dir.path().join("token");
        let token = settle(&state, slot(&file), None).expect("settle").clear.expect("token");
        std::fs::remove_file(&file).expect("remove");
        let later = settle(&state, slot(&file), None).expect("settle");
        assert_eq!(later.clear, None);
        assert!(later.hash.matches(&token));
        // A file holding something else is not taken for the token.
        std::fs::write(&file, "something-else-entirely").expect("write");
        assert_eq!(settle(&state, slot(&file), None).expect("settle").clear, None);
    }

    #[test]
    fn a_token_an_older_version_kept_in_clear_is_converted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
        state.set_meta("token", "e88a84f6acdb7497f441582d7176407c").expect("legacy");
        let file = dir.path().join("token");
        let settled = settle(&state, slot(&file), None).expect("settle");
        assert_eq!(settled.clear.as_deref(), Some("e88a84f6acdb7497f441582d7176407c"));
        assert!(settled.hash.matches("e88a84f6acdb7497f441582d7176407c"));
        assert_eq!(state.meta("token").expect("read"), None);
        assert_eq!(std::fs::read_to_string(&file).expect("file"), "e88a84f6acdb7497f441582d7176407c");
    }
}
