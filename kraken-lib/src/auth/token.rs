//! Tokens and their hashes.
//!
//! A token is 128 random bits from the system's random source, written as 32
//! hex digits. The platform keeps only a [`TokenHash`] of it: SHA-256 over a
//! random 16-byte salt and the token. Checking a presented token hashes it
//! with the same salt and compares the digests in constant time, so a replica
//! (or a copy of the state database) lets its holder check tokens but not
//! learn them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{fill_random, AuthError};

/// The least length of a token a person chooses (`--token`, `--join-token`).
pub const MIN_TOKEN_LEN: usize = 16;

const PREFIX: &str = "sha256";

/// A new token: 128 bits from the system's random source, as 32 hex digits.
///
/// # Errors
/// [`AuthError::NoRandomness`] when the random source fails.
pub fn random_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Checks that a token a person gave is long enough to be a secret.
///
/// # Errors
/// [`AuthError::TooShort`] naming `what` (e.g. "platform token").
pub fn check_chosen(what: &str, token: &str) -> Result<(), AuthError> {
    let len = token.chars().count();
    if len < MIN_TOKEN_LEN {
        return Err(AuthError::TooShort { what: what.to_string(), len, min: MIN_TOKEN_LEN });
    }
    Ok(())
}

/// A salted hash of a token. Its text form is `sha256:<salt hex>:<digest hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl TokenHash {
    /// The hash of `token` with a new random salt.
    ///
    /// # Errors
    /// [`AuthError::NoRandomness`] when the random source fails.
    pub fn of(token: &str) -> Result<Self, AuthError> {
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        Ok(Self { salt, digest: digest(&salt, token) })
    }

    /// Whether `token` is the token this is the hash of. Takes the same time
    /// whatever the token (the digests are compared in constant time).
    pub fn matches(&self, token: &str) -> bool {
        bool::from(digest(&self.salt, token).ct_eq(&self.digest))
    }
}

fn digest(salt: &[u8; 16], token: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}:{}:{}", hex::encode(self.salt), hex::encode(self.digest))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(…)")
    }
}

impl FromStr for TokenHash {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed =
            |why: &str| AuthError::Malformed { what: "a stored token hash".into(), why: why.into() };
        let mut parts = text.split(':');
        let (Some(PREFIX), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("expected sha256:<salt>:<digest>"));
        };
        let mut hash = Self { salt: [0; 16], digest: [0; 32] };
        hex::decode_to_slice(salt, &mut hash.salt).map_err(|_| malformed("the salt is not 32 hex digits"))?;
        hex::decode_to_slice(digest, &mut hash.digest)
            .map_err(|_| malformed("the digest is not 64 hex digits"))?;
        Ok(hash)
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_hex_and_differ() {
        let a = random_token().expect("token");
        let b = random_token().expect("token");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_hash_matches_its_token_only() {
        let hash = TokenHash::of("correct horse battery").expect("hash");
        assert!(hash.matches("correct horse battery"));
        assert!(!hash.matches("correct horse batterz"));
        assert!(!hash.matches(""));
        assert!(!hash.matches("correct horse battery "));
    }

    #[test]
    fn the_same_token_hashes_differently_with_another_salt() {
        let a = TokenHash::of("same token here!").expect("hash");
        let b = TokenHash::of("same token here!").expect("hash");
        assert_ne!(a.to_string(), b.to_string());
        assert!(a.matches("same token here!") && b.matches("same token here!"));
    }

    #[test]
    fn the_text_form_round_trips_and_never_holds_the_token() {
        let hash = TokenHash::of("a-secret-token-of-mine").expect("hash");
        let text = hash.to_string();
        assert!(!text.contains("a-secret-token-of-mine"));
        assert!(text.starts_with("sha256:"));
        let back: TokenHash = text.parse().expect("parses");
        assert_eq!(back, hash);
        let json = serde_json::to_string(&hash).expect("json");
        let back: TokenHash = serde_json::from_str(&json).expect("from json");
        assert!(back.matches("a-secret-token-of-mine"));
        assert_eq!(format!("{hash:?}"), "TokenHash(…)");
        for bad in ["", "sha256:zz:00", "md5:00:00", "sha256:00", "sha256:00:00:00"] {
            assert!(bad.parse::<TokenHash>().is_err(), "{bad}");
        }
    }

    #[test]
    fn chosen_tokens_must_be_long_enough() {
        assert!(check_chosen("platform token", "0123456789abcdef").is_ok());
        let err = check_chosen("platform token", "short").expect_err("too short");
        assert!(err.to_string().contains("at least 16"), "{err}");
    }
}
