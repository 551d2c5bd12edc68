//! Node keys: one ed25519 key per node, kept in `<data dir>/node-key`
//! (mode 0600, the 32-byte seed in hex), made once from the system's random
//! source.
//!
//! The public half names the node to the orchestrator when it joins; from
//! then on the orchestrator accepts on the broker only messages from that
//! node signed with that key, and workers accept work only when it is signed
//! with their orchestrator's key.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{files, fill_random, AuthError};

/// The file in the data directory that holds the node's key.
pub const KEY_FILE: &str = "node-key";

/// The length of a signature in bytes.
pub const SIGNATURE_LENGTH: usize = 64;

/// A node's public key: 32 bytes, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `signature` is this key's signature of `message` (strict
    /// verification: no malleable or small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else { return false };
        let Ok(signature) = Signature::from_slice(signature) else { return false };
        key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0[..6]))
    }
}

impl FromStr for PublicKey {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| AuthError::Malformed {
            what: "a public key".into(),
            why: "expected 64 hex digits".into(),
        })?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| AuthError::Malformed {
            what: "a public key".into(),
            why: "it is not a point of the ed25519 curve".into(),
        })?;
        Ok(Self(bytes))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A node's signing key.
pub struct NodeKey {
    signing: SigningKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A new key from the system's random source.
    ///
    /// # Errors
    /// [`AuthError::NoRandomness`] when the random source fails.
    pub fn generate() -> Result<Self, AuthError> {
        let mut seed = [0u8; 32];
        fill_random(&mut seed)?;
        Ok(Self { signing: SigningKey::from_bytes(&seed) })
    }

    /// Reads the key kept in `data_dir`, or makes one and keeps it there
    /// (the file is private from the moment it exists).
    ///
    /// # Errors
    /// [`AuthError::Io`] when the file cannot be read or written,
    /// [`AuthError::Malformed`] when it holds something else than a key,
    /// [`AuthError::NoRandomness`] when a new key cannot be made.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| AuthError::Io { path: path.clone(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| AuthError::Malformed {
                    what: path.display().to_string(),
                    why: "expected the 64 hex digits of a node key; remove the file to make a new key \
                          (the node then has to join again under a new id)"
                        .into(),
                })?;
                files::restrict_file(&path).map_err(io)?;
                Ok(Self { signing: SigningKey::from_bytes(&seed) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                files::private_dir(data_dir).map_err(io)?;
                files::write_private(&path, hex::encode(key.signing.to_bytes()).as_bytes()).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LENGTH] {
        self.signing.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_public_key_only() {
        let key = NodeKey::generate().expect("key");
        let other = NodeKey::generate().expect("key");
        let signature = key.sign(b"deploy d1");
        assert!(key.public().verify(b"deploy d1", &signature));
        assert!(!key.public().verify(b"deploy d2", &signature));
        assert!(!other.public().verify(b"deploy d1", &signature));
        assert!(!key.public().verify(b"deploy d1", &signature[..63]));
    }

    #[test]
    fn the_key_is_kept_privately_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = NodeKey::load_or_create(dir.path()).expect("create");
        let second = NodeKey::load_or_create(dir.path()).expect("load");
        assert_eq!(first.public(), second.public());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        let err = NodeKey::load_or_create(dir.path()).expect_err("malformed");
        assert!(err.to_string().contains("remove the file"), "{err}");
    }

    #[test]
    fn public_keys_round_trip_as_hex() {
        let key = NodeKey::generate().expect("key").public();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>().expect("parses"), key);
        let json = serde_json::to_string(&key).expect("json");
        assert_eq!(serde_json::from_str::<PublicKey>(&json).expect("back"), key);
        assert!("zz".parse::<PublicKey>().is_err());
    }
}
