//! Proofs that an HTTP request comes from a given node: the node signs
//! `kraken replica <node id> <unix time>` with its key and sends the
//! signature in the [`HEADER`] header. The orchestrator streams its replica
//! only to the rollover candidate it named, which proves who it is this way
//! (a join token alone, which every joined machine holds, is not enough).
//!
//! The time bounds replays to a few minutes; on a LAN without TLS, whoever
//! can read a request can read its answer anyway.

use super::{NodeKey, PublicKey};

/// The request header carrying the proof: `<node id> <unix time> <signature hex>`.
pub const HEADER: &str = "kraken-node-proof";

/// How far (in seconds) the proof's time may be from the receiver's clock.
pub const MAX_SKEW_SECS: i64 = 300;

fn message(node_id: &str, at: i64) -> Vec<u8> {
    format!("kraken replica {node_id} {at}").into_bytes()
}

/// The header value proving that node `node_id` (holding `key`) asks at `now`
/// (unix seconds).
pub fn replica_proof(key: &NodeKey, node_id: &str, now: i64) -> String {
    format!("{node_id} {now} {}", hex::encode(key.sign(&message(node_id, now))))
}

/// Why a node proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The header is not `<node id> <unix time> <signature hex>`.
    #[error("the node proof is malformed")]
    Malformed,
    /// The time is not a number.
    #[error("the node proof's time is not a number")]
    BadTime,
    /// The time is further than [`MAX_SKEW_SECS`] from the receiver's clock.
    #[error("the node proof is too old or from the future; are the machines' clocks right?")]
    OutOfTime,
    /// The signature is not hex.
    #[error("the node proof's signature is not hex")]
    BadSignature,
    /// The receiver knows no key for the node named.
    #[error("node `{node}` has no key registered here")]
    UnknownNode {
        /// The node the proof names.
        node: String,
    },
    /// The signature is not the named node's.
    #[error("the node proof is not signed with node `{node}`'s key")]
    WrongKey {
        /// The node the proof names.
        node: String,
    },
}

/// The node id a proof names, once its signature checks out with the key
/// `key_of` gives for that node and its time is within [`MAX_SKEW_SECS`] of `now`.
///
/// # Errors
/// [`ProofError`]: what is wrong with the proof, for the answer.
pub fn check_replica_proof(
    value: &str,
    now: i64,
    key_of: impl FnOnce(&str) -> Option<PublicKey>,
) -> Result<String, ProofError> {
    let mut parts = value.split(' ');
    let (Some(node_id), Some(at), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    let at: i64 = at.parse().map_err(|_| ProofError::BadTime)?;
    if (now - at).abs() > MAX_SKEW_SECS {
        return Err(ProofError::OutOfTime);
    }
    let signature = hex::decode(signature).map_err(|_| ProofError::BadSignature)?;
    let key = key_of(node_id).ok_or_else(|| ProofError::UnknownNode { node: node_id.to_string() })?;
    if !key.verify(&message(node_id, at), &signature) {
        return Err(ProofError::WrongKey { node: node_id.to_string() });
    }
    Ok(node_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_names_its_node_only_with_its_key_and_in_time() {
        let key = NodeKey::generate().expect("key");
        let other = NodeKey::generate().expect("key");
        let proof = replica_proof(&key, "n1", 1_000_000);
        assert_eq!(check_replica_proof(&proof, 1_000_010, |_| Some(key.public())), Ok("n1".to_string()));
        let wrong_key = ProofError::WrongKey { node: "n1".into() };
        assert_eq!(check_replica_proof(&proof, 1_000_010, |_| Some(other.public())), Err(wrong_key));
        let unknown = ProofError::UnknownNode { node: "n1".into() };
        assert_eq!(check_replica_proof(&proof, 1_000_010, |_| None), Err(unknown));
        let late = check_replica_proof(&proof, 1_000_000 + MAX_SKEW_SECS + 1, |_| Some(key.public()));
        assert_eq!(late, Err(ProofError::OutOfTime));
        let forged = proof.replacen("n1", "n2", 1);
        let forged = check_replica_proof(&forged, 1_000_010, |_| Some(key.public()));
        assert_eq!(forged, Err(ProofError::WrongKey { node: "n2".into() }));
        assert_eq!(
            check_replica_proof("n1 x y", 1_000_010, |_| Some(key.public())),
            Err(ProofError::BadTime)
        );
        assert_eq!(check_replica_proof("", 1_000_010, |_| Some(key.public())), Err(ProofError::Malformed));
    }
}
