//! The bytes of an [`Envelope`] on a broker.
//!
//! A node with a key sends `{"key": <its public key>, "sig": <signature>,
//! "envelope": <the envelope's JSON>}`; the signature covers the envelope's
//! bytes exactly as sent (behind a fixed prefix), so the receiver checks the
//! bytes it got and parses only what was signed. A node without a key sends
//! the bare envelope, which receivers take as [`Origin::Unsigned`].
//!
//! A valid signature says only which key signed; whether that key may say
//! what the envelope says (is it the orchestrator's? the key of the node in
//! `from`?) is for the handler to decide, see [`super::trust`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BusError, Envelope, Origin};
use crate::auth::{NodeKey, PublicKey};

/// What signatures are made over: this prefix, then the envelope's bytes.
const DOMAIN: &[u8] = b"kraken bus envelope v1\n";

#[derive(Serialize)]
struct SignedOut<'a> {
    key: String,
    sig: String,
    envelope: &'a RawValue,
}

#[derive(Deserialize)]
struct SignedIn<'a> {
    key: String,
    sig: String,
    #[serde(borrow)]
    envelope: &'a RawValue,
}

/// Why received bytes were not taken as an envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not an envelope, signed or not.
    #[error("not an envelope: {0}")]
    NotAnEnvelope(#[source] serde_json::Error),
    /// The key named in the message is not a public key.
    #[error("the sender's key is malformed")]
    BadKey,
    /// The signature does not match the key and the bytes.
    #[error("the signature does not match (forged or altered on the way)")]
    BadSignature,
}

fn signed_bytes(envelope: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + envelope.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(envelope);
    message
}

/// The bytes to send for `envelope`, signed with `key` when there is one.
///
/// # Errors
/// [`BusError::Encode`] when the envelope cannot be serialised.
pub fn encode(envelope: &Envelope, key: Option<&NodeKey>) -> Result<Vec<u8>, BusError> {
    let json = serde_json::to_string(envelope).map_err(|e| BusError::Encode(e.to_string()))?;
    let Some(key) = key else { return Ok(json.into_bytes()) };
    let sig = hex::encode(key.sign(&signed_bytes(json.as_bytes())));
    let raw = RawValue::from_string(json).map_err(|e| BusError::Encode(e.to_string()))?;
    let out = SignedOut { key: key.public().to_string(), sig, envelope: &raw };
    serde_json::to_vec(&out).map_err(|e| BusError::Encode(e.to_string()))
}

/// The envelope in `payload` and who vouches for it: [`Origin::Signed`] when
/// its signature checked out, [`Origin::Unsigned`] for a bare envelope.
///
/// # Errors
/// [`WireError`] when the bytes are not an envelope or a signed one does not verify.
pub fn decode(payload: &[u8]) -> Result<(Envelope, Origin), WireError> {
    let signed = match serde_json::from_slice::<SignedIn<'_>>(payload) {
        Ok(signed) => signed,
        Err(_) => {
            let envelope = serde_json::from_slice(payload).map_err(WireError::NotAnEnvelope)?;
            return Ok((envelope, Origin::Unsigned));
        }
    };
    let key: PublicKey = signed.key.parse().map_err(|_| WireError::BadKey)?;
    let signature = hex::decode(&signed.sig).map_err(|_| WireError::BadSignature)?;
    let bytes = signed.envelope.get().as_bytes();
    if !key.verify(&signed_bytes(bytes), &signature) {
        return Err(WireError::BadSignature);
    }
    let envelope = serde_json::from_str(signed.envelope.get()).map_err(WireError::NotAnEnvelope)?;
    Ok((envelope, Origin::Signed(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Body, WorkRequest};

    fn cancel(id: &str) -> Envelope {
        Envelope {
            epoch: 3,
            from: "n1".into(),
            body: Body::Work(WorkRequest::Cancel { deployment: id.into() }),
        }
    }

    #[test]
    fn a_signed_envelope_arrives_with_its_signer() {
        let key = NodeKey::generate().expect("key");
        let bytes = encode(&cancel("d1"), Some(&key)).expect("encode");
        let (envelope, origin) = decode(&bytes).expect("decode");
        assert_eq!(envelope, cancel("d1"));
        assert_eq!(origin, Origin::Signed(key.public()));
    }

    #[test]
    fn a_log_batch_is_the_same_json_whatever_holds_its_stream_names() {
        use crate::bus::{LogBatch, LogEntry};
        let batch = |stream: std::borrow::Cow<'static, str>| Envelope {
            epoch: 1,
            from: "n1".into(),
            body: Body::Log(LogBatch {
                deployment: "d1".into(),
                generation: 2,
                lines: vec![LogEntry { stream, line: "hi".into() }],
            }),
        };
        let borrowed = encode(&batch("stdout".into()), None).expect("encode");
        let owned = encode(&batch(String::from("stdout").into()), None).expect("encode");
        assert_eq!(borrowed, owned);
        let text = String::from_utf8(borrowed).expect("utf-8");
        assert!(text.contains(r#""lines":[{"stream":"stdout","line":"hi"}]"#), "{text}");
        // A name of another version's making arrives as it was sent.
        let odd = text.replace(r#""stream":"stdout""#, r#""stream":"sidecar""#);
        let (envelope, _) = decode(odd.as_bytes()).expect("decode");
        assert_eq!(envelope, batch("sidecar".into()));
    }

    #[test]
    fn a_bare_envelope_is_unsigned() {
        let bytes = encode(&cancel("d1"), None).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), (cancel("d1"), Origin::Unsigned));
    }

    #[test]
    fn an_altered_or_resigned_message_is_refused() {
        let key = NodeKey::generate().expect("key");
        let other = NodeKey::generate().expect("key");
        let text = String::from_utf8(encode(&cancel("d1"), Some(&key)).expect("encode")).expect("utf-8");
        let altered = text.replace("\"d1\"", "\"d2\"");
        assert!(matches!(decode(altered.as_bytes()), Err(WireError::BadSignature)));
        // Someone else's key with the original signature.
        let swapped = text.replace(&key.public().to_string(), &other.public().to_string());
        assert!(matches!(decode(swapped.as_bytes()), Err(WireError::BadSignature)));
        assert!(matches!(decode(b"{\"key\":\"00\",\"sig\":\"00\",\"envelope\":{}}"), Err(WireError::BadKey)));
        assert!(matches!(decode(b"not json"), Err(WireError::NotAnEnvelope(_))));
    }
}
