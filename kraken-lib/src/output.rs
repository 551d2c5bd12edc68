//! What containers print, handled in bounded memory and linear time.
//!
//! An app (or its build, or its `test` command) may print anything: floods of
//! lines, lines of hundreds of megabytes, no newline at all. [`LineSplitter`]
//! turns output frames into lines looking at every byte once and keeping at
//! most [`MAX_LINE_BYTES`] of a line (the rest of a longer line is dropped and
//! the line ends with ` […]`); [`Tail`] keeps only the end of an output.
//!
//! `tokio_util::codec::LinesCodec` with a maximum length was considered: it
//! drops a line over the limit whole (and reports an error), where Kraken
//! keeps its beginning, marked as cut, so a person sees what the app said;
//! and it decodes one stream, where frames here interleave stdout and stderr.

use std::collections::VecDeque;

/// The most bytes of one line kept; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What a cut line ends with.
pub const CUT_MARK: &str = " […]";

/// One line a container printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line without its newline (cut lines end with [`CUT_MARK`]).
    pub text: String,
}

/// The part of a line received so far.
#[derive(Debug, Default)]
struct Partial {
    bytes: Vec<u8>,
    /// Bytes of this line beyond [`MAX_LINE_BYTES`], dropped.
    dropped: usize,
}

impl Partial {
    fn extend(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.bytes.len());
        let kept = room.min(bytes.len());
        self.bytes.extend_from_slice(&bytes[..kept]);
        self.dropped += bytes.len() - kept;
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }

    fn take(&mut self, stream: &'static str) -> Line {
        if self.dropped == 0 && self.bytes.last() == Some(&b'\r') {
            self.bytes.pop();
        }
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            text.push_str(CUT_MARK);
        }
        self.bytes.clear();
        self.dropped = 0;
        Line { stream, text }
    }
}

/// Splits a container's output frames into lines, per stream, keeping a
/// partial last line until its end arrives. Each byte is looked at once;
/// at most [`MAX_LINE_BYTES`] are kept per stream between frames.
#[derive(Debug, Default)]
pub struct LineSplitter {
    stdout: Partial,
    stderr: Partial,
    #[cfg(test)]
    scanned: usize,
}

impl LineSplitter {
    /// A splitter with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one frame of `stream` (`"stderr"`, or anything else for
    /// stdout); returns the lines it completed.
    pub fn push(&mut self, stream: &'static str, bytes: &[u8]) -> Vec<Line> {
        #[cfg(test)]
        {
            self.scanned += bytes.len();
        }
        let (name, partial) =
            if stream == "stderr" { ("stderr", &mut self.stderr) } else { ("stdout", &mut self.stdout) };
        let mut lines = Vec::new();
        let mut rest = bytes;
        // Only the new bytes are searched: what is pending holds no newline.
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            partial.extend(&rest[..end]);
            lines.push(partial.take(name));
            rest = &rest[end + 1..];
        }
        partial.extend(rest);
        lines
    }

    /// The partial lines still held, once the output has ended.
    pub fn finish(&mut self) -> Vec<Line> {
        let mut lines = Vec::new();
        for (name, partial) in [("stdout", &mut self.stdout), ("stderr", &mut self.stderr)] {
            if !partial.is_empty() {
                lines.push(partial.take(name));
            }
        }
        lines
    }

    /// Bytes held for partial lines right now.
    pub fn pending_bytes(&self) -> usize {
        self.stdout.bytes.len() + self.stderr.bytes.len()
    }
}

/// Keeps the last `limit` bytes of an output (a `test` command's), however
/// much is printed, and how much was dropped before them.
#[derive(Debug)]
pub struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
    dropped: usize,
}

impl Tail {
    /// A tail keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { bytes: VecDeque::new(), limit, dropped: 0 }
    }

    /// Adds output.
    pub fn push(&mut self, bytes: &[u8]) {
        let skip = bytes.len().saturating_sub(self.limit);
        self.dropped += skip;
        self.bytes.extend(&bytes[skip..]);
        let over = self.bytes.len().saturating_sub(self.limit);
        self.bytes.drain(..over);
        self.dropped += over;
    }

    /// The kept text, after a line saying how much came before it, if anything did.
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let kept = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        if self.dropped == 0 {
            return kept;
        }
        // Start at a line's beginning when the cut fell inside one.
        let kept = match kept.find('\n') {
            Some(i) if i + 1 < kept.len() => kept[i + 1..].to_string(),
            _ => kept,
        };
        format!("[… the first {} bytes of the output are not kept]\n{kept}", self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<(&str, &str)> {
        lines.iter().map(|l| (l.stream, l.text.as_str())).collect()
    }

    #[test]
    fn lines_are_joined_across_frames_per_stream() {
        let mut s = LineSplitter::new();
        assert!(s.push("stdout", b"hel").is_empty());
        assert_eq!(texts(&s.push("stderr", b"oops\r\nwar")), [("stderr", "oops")]);
        assert_eq!(
            texts(&s.push("stdout", b"lo\nworld\n\n")),
            [("stdout", "hello"), ("stdout", "world"), ("stdout", "")]
        );
        assert_eq!(texts(&s.finish()), [("stderr", "war")]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn a_huge_line_without_newline_is_scanned_once_and_kept_bounded() {
        let mut s = LineSplitter::new();
        let frame = vec![b'x'; 16 * 1024];
        let frames = 150 * 1024 * 1024 / frame.len();
        for _ in 0..frames {
            assert!(s.push("stdout", &frame).is_empty());
            assert!(s.pending_bytes() <= MAX_LINE_BYTES);
        }
        // Every byte was looked at once: linear in what was printed.
        assert_eq!(s.scanned, frames * frame.len());
        let lines = s.push("stdout", b"\nnext\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text.len(), MAX_LINE_BYTES + CUT_MARK.len());
        assert!(lines[0].text.ends_with(CUT_MARK));
        assert_eq!(lines[1].text, "next");
    }

    #[test]
    fn a_flood_of_short_lines_keeps_nothing_pending() {
        let mut s = LineSplitter::new();
        let mut count = 0;
        for i in 0..10_000 {
            count += s.push("stdout", format!("line {i}\n").as_bytes()).len();
            assert_eq!(s.pending_bytes(), 0);
        }
        assert_eq!(count, 10_000);
    }

    #[test]
    fn a_tail_keeps_the_end_and_says_what_it_dropped() {
        let mut t = Tail::new(16);
        t.push(b"short\n");
        assert_eq!(t.text(), "short\n");
        for i in 0..1000 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert!(text.starts_with("[… the first "), "{text}");
        assert!(text.ends_with("line 999\n"), "{text}");
        assert!(text.len() < 80, "{text}");
        let mut big = Tail::new(8);
        big.push(&[b'a'; 1000]);
        assert!(big.text().ends_with("aaaaaaaa"));
    }
}
