//! Property tests (a bounded number of cases, run with the other tests) for
//! the decoders that read what other machines send: the bus's wire format
//! and the server-sent event decoder. Whatever the bytes, they never panic;
//! what was sent whole arrives whole however it is split; a signed message
//! changed on the way is never taken for the original sender's.

#![allow(clippy::unwrap_used)]

use kraken_lib::api::{SseDecoder, SseMessage};
use kraken_lib::auth::NodeKey;
use kraken_lib::bus::wire::{decode, encode, WireError};
use kraken_lib::bus::{Body, Envelope, LogBatch, LogEntry, Origin, WorkRequest};
use proptest::prelude::*;

fn envelope() -> impl Strategy<Value = Envelope> {
    let log =
        (any::<String>(), any::<u64>(), prop::collection::vec((any::<String>(), any::<String>()), 0..8))
            .prop_map(|(deployment, generation, lines)| {
                Body::Log(LogBatch {
                    deployment,
                    generation,
                    lines: lines
                        .into_iter()
                        .map(|(stream, line)| LogEntry { stream: stream.into(), line })
                        .collect(),
                })
            });
    let work = prop_oneof![
        any::<String>().prop_map(|deployment| Body::Work(WorkRequest::Cancel { deployment })),
        (any::<String>(), any::<u64>())
            .prop_map(|(deployment, generation)| Body::Work(WorkRequest::Destroy { deployment, generation })),
        (any::<u64>(), any::<String>())
            .prop_map(|(epoch, address)| Body::Work(WorkRequest::Orchestrator { epoch, address })),
    ];
    (any::<u64>(), any::<String>(), prop_oneof![log, work]).prop_map(|(epoch, from, body)| Envelope {
        epoch,
        from,
        body,
    })
}

fn sse_messages() -> impl Strategy<Value = Vec<SseMessage>> {
    let line = "[^\r\n]{0,40}";
    let id = prop::option::of("[0-9]{1,12}");
    let message =
        ("[a-z]{0,12}", id, prop::collection::vec(line, 1..4)).prop_map(|(event, id, lines)| SseMessage {
            event,
            id,
            data: lines
                .iter()
                .map(|l: &String| l.strip_prefix(' ').unwrap_or(l).to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        });
    prop::collection::vec(message, 0..6)
}

fn sse_text(messages: &[SseMessage]) -> String {
    let mut text = String::new();
    for m in messages {
        if !m.event.is_empty() {
            text.push_str(&format!("event: {}\n", m.event));
        }
        if let Some(id) = &m.id {
            text.push_str(&format!("id: {id}\n"));
        }
        for line in m.data.split('\n') {
            text.push_str(&format!("data: {line}\n"));
        }
        text.push('\n');
        text.push_str(": keep-alive\n\n");
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_to_an_envelope_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn any_json_object_decodes_or_is_refused(
        key in "[0-9a-f]{0,70}", sig in "[0-9a-f]{0,130}", inner in any::<String>(),
    ) {
        let text = format!("{{\"key\":\"{key}\",\"sig\":\"{sig}\",\"envelope\":{}}}", serde_json::json!(inner));
        prop_assert!(decode(text.as_bytes()).is_err());
    }

    #[test]
    fn signed_envelopes_round_trip_and_alterations_are_refused(e in envelope(), flip in any::<prop::sample::Index>()) {
        let key = NodeKey::generate().unwrap();
        let bytes = encode(&e, Some(&key)).unwrap();
        let (back, origin) = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(origin, Origin::Signed(key.public()));
        // Any one byte of the envelope changed: refused, never taken as signed.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let start = text.find("\"envelope\":").unwrap() + "\"envelope\":".len();
        let i = start + flip.index(bytes.len() - 1 - start);
        let mut altered = bytes.clone();
        altered[i] ^= 0x01;
        match decode(&altered) {
            Err(WireError::BadSignature | WireError::NotAnEnvelope(_) | WireError::BadKey) => {}
            Err(other) => prop_assert!(false, "unexpected {other}"),
            Ok((changed, origin)) => prop_assert!(
                changed == e && origin == Origin::Signed(key.public()),
                "an altered message was taken as signed: {changed:?}"
            ),
        }
    }

    #[test]
    fn server_sent_events_arrive_whole_however_they_are_split(
        messages in sse_messages(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let text = sse_text(&messages);
        let bytes = text.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut decoder = SseDecoder::new();
        let mut got = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            got.extend(decoder.push(&bytes[from..p]));
            from = p;
        }
        prop_assert_eq!(got, messages);
    }

    #[test]
    fn any_bytes_through_the_sse_decoder_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut decoder = SseDecoder::with_limit(256);
        for chunk in &chunks {
            for message in decoder.push(chunk) {
                prop_assert!(message.data.len() <= 256);
            }
        }
    }
}

#[test]
fn a_message_larger_than_the_limit_is_dropped_and_the_next_one_arrives() {
    let mut decoder = SseDecoder::with_limit(1024);
    let mut got = decoder.push(b"data: ");
    for _ in 0..100 {
        got.extend(decoder.push(&[b'x'; 100]));
    }
    got.extend(decoder.push(b"\n\nevent: log\ndata: after\n\n"));
    assert_eq!(got, [SseMessage { event: "log".into(), id: None, data: "after".into() }]);
}
