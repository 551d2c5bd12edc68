//! Tests of log lines stored in chunks: reads from inside a chunk and across
//! chunks, limits dropping part of a chunk, reopening, a database written
//! one row per line by an earlier version, and the same lines kept as when
//! every line was stored on its own.

use proptest::prelude::*;

use super::*;
use crate::bus::LogEntry;
use crate::log_sink::{BATCH_BYTES, BATCH_LINES};
use redb::TableHandle;

fn entries(range: std::ops::Range<u64>) -> Vec<LogEntry> {
    range.map(|i| LogEntry { stream: "stdout".into(), line: format!("line {i}") }).collect()
}

fn seqs(lines: &[LogLine]) -> Vec<u64> {
    lines.iter().map(|l| l.seq).collect()
}

/// The first seqs of the stored chunks of `id`.
fn chunks(state: &State, id: &str) -> Vec<u64> {
    state.shared.logs.flush();
    let read = state.shared.db.begin_read().expect("read");
    let table = read.open_table(LOG_CHUNKS).expect("table");
    let keys = table.range((id, 0)..=(id, u64::MAX)).expect("range");
    keys.map(|item| item.expect("row").0.value().1).collect()
}

fn unlimited() -> StateLimits {
    StateLimits { log_lines: 1_000_000, log_bytes: 1 << 30, log_line_bytes: 4096 }
}

#[test]
fn a_batch_is_one_chunk_and_reads_start_inside_it_and_cross_into_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), unlimited()).expect("open");
    for batch in [0..10, 10..15, 15..30] {
        state.append_logs("d", entries(batch)).expect("append");
    }
    assert_eq!(chunks(&state, "d"), [0, 10, 15]);
    let (lines, next) = state.logs("d", 4, 3).expect("read");
    assert_eq!((seqs(&lines), next), (vec![4, 5, 6], 7));
    assert_eq!(lines[0].line, "line 4");
    // From inside the first chunk, through the second, into the third.
    let (lines, next) = state.logs("d", 8, 10).expect("read");
    assert_eq!((seqs(&lines), next), ((8..18).collect::<Vec<_>>(), 18));
    // A limit ending exactly at a chunk's end, and the offset after the end.
    let (lines, next) = state.logs("d", 12, 3).expect("read");
    assert_eq!((seqs(&lines), next), (vec![12, 13, 14], 15));
    let (lines, next) = state.logs("d", 30, 10).expect("read");
    assert_eq!((lines.len(), next), (0, 30));
    let (lines, next) = state.logs("d", u64::MAX, 10).expect("read");
    assert_eq!((lines.len(), next), (0, u64::MAX));
    // Another deployment's chunks are not read.
    state.append_logs("d2", entries(0..3)).expect("append");
    let (lines, _) = state.logs("d", 29, 10).expect("read");
    assert_eq!(seqs(&lines), [29]);
}

#[test]
fn a_batch_larger_than_a_chunk_is_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), unlimited()).expect("open");
    let many = BATCH_LINES as u64 * 2 + 100;
    state.append_logs("d", entries(0..many)).expect("append");
    let b = BATCH_LINES as u64;
    assert_eq!(chunks(&state, "d"), [0, b, 2 * b]);
    // Long lines: a chunk closes at the line that brings it to BATCH_BYTES.
    let long: Vec<LogEntry> =
        (0..300).map(|_| LogEntry { stream: "stdout".into(), line: "z".repeat(4096) }).collect();
    state.append_logs("long", long).expect("append");
    let per_chunk = (BATCH_BYTES / 4096) as u64;
    assert_eq!(chunks(&state, "long"), [0, per_chunk, 2 * per_chunk]);
    let (lines, next) = state.logs("d", b - 2, 5).expect("read");
    assert_eq!((seqs(&lines), next), ((b - 2..b + 3).collect::<Vec<_>>(), b + 3));
}

#[test]
fn limits_drop_part_of_a_chunk_for_readers_and_whole_chunks_from_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = StateLimits { log_lines: 7, log_bytes: 1 << 20, log_line_bytes: 100 };
    let state = State::open(dir.path(), limits).expect("open");
    state.append_logs("d", entries(0..5)).expect("append");
    state.append_logs("d", entries(5..10)).expect("append");
    // Lines 0..3 are dropped; their chunk stays for lines 3 and 4.
    assert_eq!(chunks(&state, "d"), [0, 5]);
    let (lines, next) = state.logs("d", 0, 100).expect("read");
    assert_eq!((seqs(&lines), next), ((3..10).collect::<Vec<_>>(), 10));
    let (lines, _) = state.logs("d", 1, 2).expect("read");
    assert_eq!(seqs(&lines), [3, 4], "an offset below the first kept line starts at it");
    state.append_logs("d", entries(10..13)).expect("append");
    // Lines 0..6 are dropped: the first chunk is gone, the second partly.
    assert_eq!(chunks(&state, "d"), [5, 10]);
    let (lines, _) = state.logs("d", 0, 100).expect("read");
    assert_eq!(seqs(&lines), (6..13).collect::<Vec<_>>());
    // Nothing kept at all: every chunk goes, and numbers are not reused.
    drop(state);
    let none = StateLimits { log_lines: 0, ..limits };
    let state = State::open(dir.path(), none).expect("reopen");
    state.append_logs("d", entries(13..15)).expect("append");
    assert!(chunks(&state, "d").is_empty());
    assert_eq!(state.logs("d", 0, 100).expect("read"), (vec![], 0));
    drop(state);
    let state = State::open(dir.path(), limits).expect("reopen");
    let appended = state.append_logs("d", entries(15..16)).expect("append");
    assert_eq!(seqs(&appended), [15]);
}

#[test]
fn reopening_keeps_every_line_and_the_limits_go_on_from_the_same_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = StateLimits { log_lines: 1000, log_bytes: 2000, log_line_bytes: 100 };
    let state = State::open(dir.path(), limits).expect("open");
    for start in (0..60).step_by(6) {
        state.append_logs("d", entries(start..start + 6)).expect("append");
    }
    let before = state.logs("d", 0, 1000).expect("read");
    assert!(before.0.first().is_some_and(|l| l.seq > 0), "the byte limit dropped lines");
    let kept = before.0.len();
    drop(state);
    let state = State::open(dir.path(), limits).expect("reopen");
    assert_eq!(state.logs("d", 0, 1000).expect("read"), before);
    // The same sizes after reopening: one more line of the same size drops one.
    let appended = state.append_logs("d", entries(60..61)).expect("append");
    assert_eq!(seqs(&appended), [60]);
    let (lines, _) = state.logs("d", 0, 1000).expect("read");
    assert_eq!(lines.len(), kept);
    assert_eq!(lines.first().map(|l| l.seq), before.0.get(1).map(|l| l.seq));
}

#[test]
fn a_database_with_a_row_per_line_opens_with_its_lines_in_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = DateTime::from_timestamp(1_700_000_000, 250_000_000).expect("a time");
    let later = DateTime::from_timestamp(1_700_000_060, 0).expect("a time");
    let line = |seq: u64, at, stream: &'static str, text: &str| LogLine {
        seq,
        at,
        stream: stream.into(),
        line: text.into(),
    };
    // Lines 3..8 of "a" (a gap at 6: a batch that was never stored), with two
    // times and streams, and lines 0..2 of "b"; one row cannot be read.
    let old: Vec<(&str, LogLine)> = vec![
        ("a", line(3, at, "build", "Step 1/2")),
        ("a", line(4, at, "build", "Step 2/2")),
        ("a", line(5, later, "stdout", "listening")),
        ("a", line(7, later, "stderr", "a \"warning\"\tü")),
        ("a", line(8, later, "platform", "[kraken] 3 lines dropped")),
        ("b", line(0, at, "stdout", "b0")),
        ("b", line(1, at, "stdout", "b1")),
    ];
    {
        std::fs::create_dir_all(dir.path()).expect("dir");
        let db = Database::create(dir.path().join("state.redb")).expect("an old database");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(LOGS_BY_LINE).expect("old table");
            for (id, l) in &old {
                table.insert((*id, l.seq), encode(l).as_slice()).expect("insert");
            }
            table.insert(("b", 2), b"not json".as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let limits = StateLimits { log_lines: 5, ..StateLimits::default() };
    let state = State::open(dir.path(), limits).expect("open");
    let (a, next) = state.logs("a", 0, 100).expect("read");
    let expect_a: Vec<LogLine> = old.iter().filter(|(id, _)| *id == "a").map(|(_, l)| l.clone()).collect();
    assert_eq!((a, next), (expect_a, 9));
    let (b, _) = state.logs("b", 1, 100).expect("read");
    assert_eq!(b, [old[6].1.clone()]);
    // Runs of lines numbered one after the other make the chunks.
    assert_eq!(chunks(&state, "a"), [3, 7]);
    assert_eq!(chunks(&state, "b"), [0]);
    {
        let read = state.shared.db.begin_read().expect("read");
        let tables: Vec<String> = read.list_tables().expect("tables").map(|t| t.name().to_string()).collect();
        assert!(!tables.iter().any(|t| t == "logs"), "{tables:?}");
    }
    // Numbering goes on after the newest line, and the limits count the old lines.
    let appended = state.append_logs("a", entries(0..2)).expect("append");
    assert_eq!(seqs(&appended), [9, 10]);
    let (a, _) = state.logs("a", 0, 100).expect("read");
    assert_eq!(seqs(&a), [5, 7, 8, 9, 10]);
    drop(state);
    // Opened again: nothing left to move, the same lines.
    let state = State::open(dir.path(), limits).expect("reopen");
    assert_eq!(seqs(&state.logs("a", 0, 100).expect("read").0), [5, 7, 8, 9, 10]);
}

/// The lines kept when every line is stored on its own, counted by its JSON:
/// what the state kept before chunks, computed from the lines appended.
#[derive(Default)]
struct OneByOne {
    lines: VecDeque<(LogLine, usize)>,
    bytes: usize,
}

impl OneByOne {
    fn append(&mut self, lines: &[LogLine], limits: StateLimits) {
        for l in lines {
            let size = encode(l).len();
            self.lines.push_back((l.clone(), size));
            self.bytes += size;
        }
        while self.lines.len() > limits.log_lines || (self.bytes > limits.log_bytes && self.lines.len() > 1) {
            if let Some((_, size)) = self.lines.pop_front() {
                self.bytes -= size;
            }
        }
    }

    fn read(&self, offset: u64, limit: usize) -> (Vec<LogLine>, u64) {
        let lines: Vec<LogLine> =
            self.lines.iter().map(|(l, _)| l.clone()).filter(|l| l.seq >= offset).take(limit).collect();
        let next = lines.last().map_or(offset, |l| l.seq + 1);
        (lines, next)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn chunks_keep_and_return_the_same_lines_as_one_row_per_line(
        batches in prop::collection::vec(prop::collection::vec((0..4usize, 0..90usize), 1..40), 1..12),
        log_lines in 1..120usize,
        log_bytes in 50..9000usize,
        reopen_after in 0..12usize,
        reads in prop::collection::vec((0..400u64, 1..50usize), 1..8),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = StateLimits { log_lines, log_bytes, log_line_bytes: 64 };
        let mut state = State::open(dir.path(), limits).expect("open");
        let mut model = OneByOne::default();
        let streams = ["stdout", "stderr", "build", "odd"];
        for (i, batch) in batches.iter().enumerate() {
            let entries: Vec<LogEntry> = batch
                .iter()
                .map(|(s, len)| LogEntry { stream: streams[*s].into(), line: "é\"x".chars().cycle().take(*len).collect() })
                .collect();
            let lines = state.append_logs("d", entries).expect("append");
            model.append(&lines, limits);
            if i == reopen_after {
                drop(state);
                state = State::open(dir.path(), limits).expect("reopen");
            }
        }
        prop_assert_eq!(state.logs("d", 0, usize::MAX).expect("read"), model.read(0, usize::MAX));
        for (offset, limit) in reads {
            prop_assert_eq!(state.logs("d", offset, limit).expect("read"), model.read(offset, limit));
        }
    }
}
