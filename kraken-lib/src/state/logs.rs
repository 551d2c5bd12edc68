//! Log lines: numbered and announced at once, committed in batches by the
//! log writer thread, the oldest dropped beyond the limits, read back by offset.

use chrono::Utc;

use super::{encode, log_writer, Event, LogLine, State, StateError, LOGS};
use crate::bus::LogEntry;

impl State {
    /// Appends log lines of a deployment, dropping its oldest lines beyond the
    /// limits. The lines are numbered and announced at once and committed by
    /// the log writer thread in a batch; [`State::logs`] waits for them.
    ///
    /// # Errors
    /// None since the commit moved to the log writer (which logs a failed
    /// commit); the `Result` stays for callers that handle one.
    pub fn append_logs(&self, id: &str, entries: &[LogEntry]) -> Result<Vec<LogLine>, StateError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let limits = self.shared.limits;
        let now = Utc::now();
        let order = self.shared.log_order.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut inner = self.lock();
        let meta = inner.logs.entry(id.to_string()).or_default();
        let mut lines = Vec::with_capacity(entries.len());
        let mut encoded = Vec::with_capacity(entries.len());
        let mut next = meta.next_seq;
        for e in entries {
            let mut text = e.line.clone();
            if text.len() > limits.log_line_bytes {
                let mut cut = limits.log_line_bytes;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str(" […]");
            }
            let line = LogLine { seq: next, at: now, stream: e.stream.clone(), line: text };
            next += 1;
            encoded.push(encode(&line));
            lines.push(line);
        }
        // In place: a copy of the kept lines' sizes per batch cost more than the batch.
        for (line, enc) in lines.iter().zip(&encoded) {
            meta.kept.push_back((line.seq, enc.len()));
            meta.bytes += enc.len();
        }
        let mut dropped = Vec::new();
        while meta.kept.len() > limits.log_lines || (meta.bytes > limits.log_bytes && meta.kept.len() > 1) {
            if let Some((seq, size)) = meta.kept.pop_front() {
                meta.bytes -= size;
                dropped.push(seq);
            }
        }
        meta.next_seq = next;
        drop(inner);
        // Committed by the log writer, off this thread, in this order.
        self.shared.logs.queue(log_writer::LogBatch {
            deployment: id.to_string(),
            lines: lines.iter().map(|l| l.seq).zip(encoded).collect(),
            dropped,
        });
        drop(order);
        for line in &lines {
            self.emit(Event::Log { deployment: id.to_string(), line: line.clone() });
        }
        Ok(lines)
    }

    /// Up to `limit` log lines of a deployment from `offset` (a `seq`) on, and
    /// the offset to ask from next time. Lines dropped by the limits are skipped.
    ///
    /// # Errors
    /// [`StateError`] when the database cannot be read.
    pub fn logs(&self, id: &str, offset: u64, limit: usize) -> Result<(Vec<LogLine>, u64), StateError> {
        // Every line announced so far is queued: wait until it is stored.
        self.shared.logs.flush();
        let read = self.shared.db.begin_read().map_err(|e| self.db_err()(e.into()))?;
        let table = read.open_table(LOGS).map_err(|e| self.db_err()(e.into()))?;
        let mut out = Vec::new();
        let mut next = offset;
        for item in table.range((id, offset)..=(id, u64::MAX)).map_err(|e| self.db_err()(e.into()))? {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(|e| self.db_err()(e.into()))?;
            let line: LogLine = serde_json::from_slice(v.value())
                .map_err(|e| StateError::Corrupt(format!("log line of {id}: {e}")))?;
            next = line.seq + 1;
            out.push(line);
        }
        Ok((out, next))
    }
}
