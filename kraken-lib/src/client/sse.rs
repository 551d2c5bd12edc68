//! Reading a server-sent event stream (`text/event-stream`): the log and
//! event streams of the API and the replica stream. The decoder keeps its
//! bounds: each byte is searched once, and a message larger than its limit is
//! dropped instead of growing without end.

/// One server-sent event as a client of this API reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseMessage {
    /// The `event:` name (empty when none was given).
    pub event: String,
    /// The `id:` field, when one was given.
    pub id: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// Splits a server-sent event stream into messages, chunk by chunk. Bytes are
/// kept until a message is complete, so a character split across chunks
/// arrives whole. Lines may end in `\n`, `\r\n` or `\r` (as the event-stream
/// format allows); a blank line ends a message. Each byte is looked at once,
/// and a message larger than the decoder's limit
/// ([`SseDecoder::MAX_MESSAGE_BYTES`] by default) is dropped rather than kept
/// growing.
///
/// (A crate was considered: `eventsource-stream` keeps whatever a message
/// grows to, with no limit, which a replica or log stream from a confused
/// server must not be able to do here.)
///
/// # Examples
///
/// ```
/// use kraken_lib::client::{SseDecoder, SseMessage};
///
/// let mut decoder = SseDecoder::new();
/// assert!(decoder.push(b"event: log\r\ndata: hel").is_empty());
/// let messages = decoder.push(b"lo\r\n\r\n");
/// assert_eq!(messages, [SseMessage { event: "log".into(), id: None, data: "hello".into() }]);
/// ```
#[derive(Debug)]
pub struct SseDecoder {
    pending: Vec<u8>,
    /// How much of `pending` was looked at already.
    searched: usize,
    /// Whether the last byte looked at ended a line (so a line ending next is a blank line).
    line_ended: bool,
    /// Whether the last byte looked at was a `\r` (so a `\n` next belongs to it).
    after_cr: bool,
    /// Whether the current message went over the limit (it is skipped up to its end).
    skipping: bool,
    limit: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(Self::MAX_MESSAGE_BYTES)
    }
}

impl SseDecoder {
    /// The largest message kept by default (a replica snapshot included).
    pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that drops messages larger than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            pending: Vec::new(),
            searched: 0,
            line_ended: true,
            after_cr: false,
            skipping: false,
            limit: limit.max(2),
        }
    }

    /// Adds `chunk` and returns the messages it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(chunk);
        let mut messages = Vec::new();
        let mut start = 0;
        for at in self.searched..self.pending.len() {
            let byte = self.pending[at];
            if byte == b'\n' && self.after_cr {
                // The second half of a `\r\n` already counted.
                self.after_cr = false;
                continue;
            }
            self.after_cr = byte == b'\r';
            if byte != b'\n' && byte != b'\r' {
                self.line_ended = false;
                continue;
            }
            if !self.line_ended {
                self.line_ended = true;
                continue;
            }
            // A blank line: the message ends here.
            if !self.skipping {
                if let Some(message) = parse_sse_block(&self.pending[start..at]) {
                    messages.push(message);
                }
            }
            self.skipping = false;
            start = at + 1;
        }
        self.pending.drain(..start);
        self.searched = self.pending.len();
        if self.pending.len() > self.limit {
            // Too large to be one of ours: skip the rest of this message.
            self.pending.clear();
            self.searched = 0;
            self.skipping = true;
        }
        messages
    }
}

/// The message in one block of an event stream (its lines, without the
/// blank line ending it).
fn parse_sse_block(block: &[u8]) -> Option<SseMessage> {
    let text = String::from_utf8_lossy(block);
    let mut message = SseMessage::default();
    let mut data = Vec::new();
    // Inside a block every line has text: splitting a `\r\n` leaves an
    // empty piece, which is no field.
    for line in text.split(['\r', '\n']) {
        if let Some(v) = line.strip_prefix("event:") {
            message.event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            message.id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    message.data = data.join("\n");
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_are_split_whole_across_chunks() {
        let mut decoder = SseDecoder::new();
        let stream =
            "event: log\ndata: {\"line\":\"héllo\"}\n\n: keep-alive\n\ndata: a\ndata: b\n\n".as_bytes();
        // Split inside the two-byte 'é'.
        let cut = stream.iter().position(|&b| b == 0xc3).expect("é") + 1;
        let mut messages = decoder.push(&stream[..cut]);
        assert!(messages.is_empty());
        messages.extend(decoder.push(&stream[cut..]));
        assert_eq!(
            messages,
            [
                SseMessage { event: "log".into(), data: "{\"line\":\"héllo\"}".into(), id: None },
                SseMessage { event: String::new(), data: "a\nb".into(), id: None },
            ]
        );
    }

    #[test]
    fn lines_may_end_in_crlf_or_cr_even_split_across_chunks() {
        let expected = [
            SseMessage { event: "log".into(), data: "one\ntwo".into(), id: Some("7".into()) },
            SseMessage { event: String::new(), data: "three".into(), id: None },
        ];
        for ending in ["\r\n", "\r", "\n"] {
            let text = "event: log\nid: 7\ndata: one\ndata: two\n\n: keep-alive\n\ndata: three\n\n"
                .replace('\n', ending);
            let bytes = text.as_bytes();
            // Every cut, including between the two bytes of a `\r\n`.
            for cut in 0..=bytes.len() {
                let mut decoder = SseDecoder::new();
                let mut messages = decoder.push(&bytes[..cut]);
                messages.extend(decoder.push(&bytes[cut..]));
                assert_eq!(messages, expected, "{ending:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn a_message_over_the_limit_is_dropped_and_the_next_one_kept() {
        let mut decoder = SseDecoder::with_limit(16);
        let mut messages = decoder.push(format!("data: {}\r\n", "x".repeat(40)).as_bytes());
        messages.extend(decoder.push(b"data: more of it\r\n\r\ndata: ok\r\n\r\n"));
        assert_eq!(messages, [SseMessage { event: String::new(), data: "ok".into(), id: None }]);
    }
}
