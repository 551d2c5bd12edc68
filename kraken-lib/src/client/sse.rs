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
/// arrives whole. Each byte is searched once for the end of its message, and
/// a message larger than the decoder's limit ([`SseDecoder::MAX_MESSAGE_BYTES`]
/// by default) is dropped rather than kept growing.
#[derive(Debug)]
pub struct SseDecoder {
    pending: Vec<u8>,
    /// Where in `pending` the search for the end of a message goes on.
    searched: usize,
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
        Self { pending: Vec::new(), searched: 0, skipping: false, limit: limit.max(2) }
    }

    /// Adds `chunk` and returns the messages it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(chunk);
        let mut messages = Vec::new();
        let mut start = 0;
        // Resume one byte back: a "\n\n" may straddle two chunks.
        let mut at = self.searched.saturating_sub(1).max(start);
        while let Some(found) = self.pending[at..].windows(2).position(|w| w == b"\n\n") {
            let end = at + found + 2;
            if !self.skipping {
                if let Some(message) = parse_sse_block(&self.pending[start..end]) {
                    messages.push(message);
                }
            }
            self.skipping = false;
            start = end;
            at = end;
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

/// The message in one block of an event stream (up to and with its blank line).
fn parse_sse_block(block: &[u8]) -> Option<SseMessage> {
    let text = String::from_utf8_lossy(block);
    let mut message = SseMessage::default();
    let mut data = Vec::new();
    for line in text.lines() {
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
}
