//! A chunk of a deployment's log as it is stored: the lines of one appended
//! batch (at most [`BATCH_LINES`](crate::log_sink::BATCH_LINES) lines and
//! about [`BATCH_BYTES`](crate::log_sink::BATCH_BYTES) bytes) in one value,
//! under the key `(deployment, seq of its first line)`. The lines' numbers
//! follow each other, so only the first is kept (in the key).
//!
//! The encoding is small and read in one pass: a version byte, then for each
//! line a flags byte (bit 0: a timestamp follows; the first line always has
//! one, later lines only when theirs differs from the line before, so a
//! batch stored at once keeps one), the timestamp as seconds (`i64`) and
//! nanoseconds (`u32`), the stream as a byte (`build`, `stdout`, `stderr`,
//! `platform`; any other name written out after a byte saying so, with its
//! length as a `u16`), then the text's length (`u32`) and the text. Numbers
//! are little-endian.
//!
//! Besides the chunks, the state keeps per deployment the first line still
//! kept (`log_starts`): the limits may drop the older part of a chunk, whose
//! lines a reader skips. [`json_size`] is the size a line counts for against
//! the byte limit: its JSON as the API sends it, as when every line was
//! stored as JSON on its own, so the limits keep the same lines as then.

use std::borrow::Cow;

use bytes::{Buf, BufMut};
use chrono::{DateTime, Utc};

use super::LogLine;

/// The encoding's version.
const VERSION: u8 = 1;
/// Flag: a timestamp follows.
const HAS_AT: u8 = 1;
/// The stream names that take one byte, by their number.
const STREAMS: [&str; 4] = ["stdout", "stderr", "build", "platform"];
/// The number saying a stream's name is written out.
const OTHER_STREAM: u8 = 255;

/// Encodes `lines` (numbered one after the other) into `out`, which is cleared first.
pub(super) fn encode(lines: &[LogLine], out: &mut Vec<u8>) {
    out.clear();
    out.put_u8(VERSION);
    let mut at = None;
    for line in lines {
        if at == Some(line.at) {
            out.put_u8(0);
        } else {
            out.put_u8(HAS_AT);
            out.put_i64_le(line.at.timestamp());
            out.put_u32_le(line.at.timestamp_subsec_nanos());
            at = Some(line.at);
        }
        match STREAMS.iter().position(|s| *s == line.stream) {
            // At most four names: the index fits a byte.
            Some(i) => out.put_u8(i as u8),
            None => {
                let name = &line.stream.as_bytes()[..line.stream.len().min(usize::from(u16::MAX))];
                out.put_u8(OTHER_STREAM);
                out.put_u16_le(name.len() as u16);
                out.put_slice(name);
            }
        }
        // Lines are cut to the state's longest line long before 4 GiB.
        let text = &line.line.as_bytes()[..line.line.len().min(u32::MAX as usize)];
        out.put_u32_le(text.len() as u32);
        out.put_slice(text);
    }
}

/// One line of a chunk as it is stored, read without copying its text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Raw<'a> {
    /// Its position in the deployment's log.
    pub seq: u64,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// Its stream's name, as stored.
    pub stream: &'a [u8],
    /// Its text, as stored.
    pub text: &'a [u8],
}

impl Raw<'_> {
    /// The line itself.
    pub fn to_line(self) -> Result<LogLine, String> {
        let text = |b: &[u8], what| {
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| format!("line {}: its {what} is not UTF-8", self.seq))
        };
        let stream = match STREAMS.iter().find(|s| s.as_bytes() == self.stream) {
            Some(name) => Cow::Borrowed(*name),
            None => Cow::Owned(text(self.stream, "stream")?),
        };
        Ok(LogLine { seq: self.seq, at: self.at, stream, line: text(self.text, "text")? })
    }

    /// The size the line counts for against the byte limit ([`json_size`]).
    pub fn json_size(&self, at_json: usize) -> usize {
        json_size(self.seq, at_json, self.stream, self.text)
    }
}

/// The lines of the chunk `bytes` whose first line is `first`, in order;
/// an error (and nothing after it) where the chunk is not well formed.
pub(super) fn lines(first: u64, bytes: &[u8]) -> Lines<'_> {
    Lines { rest: bytes, seq: first, at: None, started: false, failed: false }
}

/// The iterator of [`lines`].
#[derive(Debug)]
pub(super) struct Lines<'a> {
    rest: &'a [u8],
    seq: u64,
    at: Option<DateTime<Utc>>,
    started: bool,
    failed: bool,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Result<Option<Raw<'a>>, String> {
        let short = |_| "it ends in the middle of a line".to_string();
        if !self.started {
            self.started = true;
            let version = self.rest.try_get_u8().map_err(|_| "it is empty".to_string())?;
            if version != VERSION {
                return Err(format!("its version is {version}, expected {VERSION}"));
            }
        }
        if self.rest.is_empty() {
            return Ok(None);
        }
        let flags = self.rest.try_get_u8().map_err(short)?;
        if flags & HAS_AT != 0 {
            let secs = self.rest.try_get_i64_le().map_err(short)?;
            let nanos = self.rest.try_get_u32_le().map_err(short)?;
            let at = DateTime::from_timestamp(secs, nanos)
                .ok_or_else(|| format!("line {}: no such time", self.seq))?;
            self.at = Some(at);
        }
        let at = self.at.ok_or_else(|| format!("line {}: no time", self.seq))?;
        let stream = match self.rest.try_get_u8().map_err(short)? {
            OTHER_STREAM => {
                let len = usize::from(self.rest.try_get_u16_le().map_err(short)?);
                self.take(len)?
            }
            n => STREAMS
                .get(usize::from(n))
                .ok_or_else(|| format!("line {}: no stream {n}", self.seq))?
                .as_bytes(),
        };
        let len = self.rest.try_get_u32_le().map_err(short)? as usize;
        let text = self.take(len)?;
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Raw { seq, at, stream, text }))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < len {
            return Err("it ends in the middle of a line".to_string());
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Raw<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_line().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

/// How many bytes `text` takes in a JSON string, quotes left out (as
/// `serde_json` escapes it: `"`, `\` and the control characters).
fn escaped_len(text: &[u8]) -> usize {
    let extra: usize = text
        .iter()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    text.len() + extra
}

/// The length of the JSON of a [`LogLine`] numbered `seq`, whose time takes
/// `at_json` bytes in JSON (quotes included), without making it.
pub(super) fn json_size(seq: u64, at_json: usize, stream: &[u8], text: &[u8]) -> usize {
    // {"seq":…,"at":…,"stream":"…","line":"…"}
    const FIXED: usize = r#"{"seq":,"at":,"stream":"","line":""}"#.len();
    let digits = seq.checked_ilog10().map_or(1, |d| d as usize + 1);
    FIXED + digits + at_json + escaped_len(stream) + escaped_len(text)
}

/// How many bytes `at` takes in JSON, quotes included.
pub(super) fn at_json(at: &DateTime<Utc>) -> usize {
    super::encode(at).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, at: DateTime<Utc>, stream: &'static str, text: &str) -> LogLine {
        LogLine { seq, at, stream: stream.into(), line: text.into() }
    }

    #[test]
    fn lines_come_back_as_they_went_in() {
        let t1 = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("a time");
        let t2 = DateTime::from_timestamp(1_700_000_001, 0).expect("a time");
        let lines = vec![
            line(7, t1, "stdout", "hello"),
            line(8, t1, "stderr", ""),
            line(9, t2, "a stream of its own", "ünïcödé \"quoted\"\n"),
            line(10, t1, "platform", "[kraken] back in time"),
        ];
        let mut bytes = Vec::new();
        encode(&lines, &mut bytes);
        let back: Vec<LogLine> = super::lines(7, &bytes)
            .map(|r| r.and_then(Raw::to_line))
            .collect::<Result<_, _>>()
            .expect("decoded");
        assert_eq!(back, lines);
    }

    #[test]
    fn a_damaged_chunk_is_an_error_not_a_panic() {
        let at = DateTime::from_timestamp(1_700_000_000, 5).expect("a time");
        let mut bytes = Vec::new();
        encode(&[line(0, at, "stdout", "one"), line(1, at, "stdout", "two")], &mut bytes);
        // The version byte, then 21 bytes for the first line (with its time)
        // and 9 for the second: a cut anywhere else is in the middle of one.
        assert_eq!(bytes.len(), 31);
        for cut in 0..bytes.len() {
            let read: Vec<_> = super::lines(0, &bytes[..cut]).collect();
            let whole = cut == 1 || cut == 22;
            assert_eq!(read.iter().all(Result::is_ok), whole, "cut at {cut}: {read:?}");
        }
        assert!(super::lines(0, &[2]).next().is_some_and(|r| r.is_err()), "another version");
        assert!(super::lines(0, &[VERSION, 0, 0, 0, 0, 0, 0]).next().is_some_and(|r| r.is_err()), "no time");
    }

    #[test]
    fn the_size_of_a_line_is_its_json_length() {
        let times = [
            DateTime::from_timestamp(1_700_000_000, 0),
            DateTime::from_timestamp(1_700_000_000, 120_000_000),
            DateTime::from_timestamp(1_700_000_000, 123_456_000),
            DateTime::from_timestamp(1_700_000_000, 123_456_789),
        ];
        let texts =
            ["", "plain", "tab\there \"quoted\" back\\slash", "\u{1}\u{1f}\u{7f} bell\u{7}", "ünïcödé ✓"];
        for at in times.into_iter().map(|t| t.expect("a time")) {
            for text in texts {
                for (seq, stream) in [(0, "stdout"), (9, "build"), (10, "odd\"name"), (u64::MAX, "platform")]
                {
                    let l = line(seq, at, stream, text);
                    let size = json_size(seq, at_json(&at), stream.as_bytes(), text.as_bytes());
                    assert_eq!(size, super::super::encode(&l).len(), "{l:?}");
                }
            }
        }
    }
}
