//! Secrets and who may do what.
//!
//! - [`token`]: random tokens from the system's random source only, and the
//!   salted hashes the platform keeps of its tokens (a replica or a state
//!   file never holds a token in clear; presented tokens are compared with
//!   the hash in constant time).
//! - [`keys`]: each node's ed25519 key, kept in its data directory. A node
//!   signs what it sends on a broker with it; the orchestrator knows every
//!   node's public key from its join, and workers know the orchestrator's
//!   key from the join answer.
//! - [`proof`]: a node proving who it is in an HTTP request (the rollover
//!   candidate asking for the replica).
//! - [`settle`]: the platform's tokens at an orchestrator's start: hashes in
//!   the state, the tokens themselves only in the files of the agent that
//!   made them.
//! - [`files`]: files and directories that are private to their owner from
//!   the moment they exist (tokens, keys, databases).
//!
//! Who holds what is written down in `docs/operations.md`.

pub mod files;
pub mod keys;
pub mod proof;
pub mod settle;
pub mod token;

use std::path::PathBuf;

pub use keys::{NodeKey, PublicKey, SIGNATURE_LENGTH};
pub use token::{random_token, TokenHash, MIN_TOKEN_LEN};

/// Why a secret could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The system's random source gave nothing; no token or key is made
    /// from anything else.
    #[error(
        "the system's random source failed ({0}); Kraken makes tokens and keys only from it, \
         so it cannot go on (is /dev/urandom readable?)"
    )]
    NoRandomness(String),
    /// A file holding a secret could not be read or written.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored key or hash is not in the expected form.
    #[error("{what} is malformed: {why}")]
    Malformed {
        /// What was read.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// The state holding a token's hash could not be used.
    #[error(transparent)]
    Stored(#[from] crate::state::StateError),
    /// A token given by a person is too short to be a secret.
    #[error(
        "the {what} is {len} characters long; a token must have at least {min} characters \
         (leave it out to have a random one made)"
    )]
    TooShort {
        /// Which token.
        what: String,
        /// Its length.
        len: usize,
        /// The least length accepted.
        min: usize,
    },
}

/// Fills `buf` from the system's random source.
///
/// # Errors
/// [`AuthError::NoRandomness`] when the source fails; there is no fallback.
pub fn fill_random(buf: &mut [u8]) -> Result<(), AuthError> {
    getrandom::getrandom(buf).map_err(|e| AuthError::NoRandomness(e.to_string()))
}
