//! Log lines: numbered and announced at once, committed in chunks (one per
//! appended batch, see `log_chunk`) by the log writer thread, the oldest
//! dropped beyond the limits, read back by offset.
//!
//! The limits count lines one by one, as before chunks: the lines they drop
//! are gone for readers at once, a chunk is removed once all its lines are
//! dropped, and the first line kept is stored beside the chunks so a reader
//! skips the older lines of a chunk partly dropped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use redb::{ReadTransaction, ReadableTable, TableHandle, WriteTransaction};

use super::log_chunk::{self, Raw};
use super::{
    log_writer, LogLine, LogMeta, LoggedLines, State, StateError, LOGS_BY_LINE, LOG_CHUNKS, LOG_STARTS,
};
use crate::bus::LogEntry;
use crate::deployment::DeploymentId;
use crate::log_sink::{BATCH_BYTES, BATCH_LINES};

impl State {
    /// Appends log lines of a deployment, dropping its oldest lines beyond the
    /// limits. The lines are numbered and announced at once and committed by
    /// the log writer thread in a batch; [`State::logs`] waits for them.
    ///
    /// The entries are taken as they are (a `Vec`) or copied (a slice); the
    /// lines are returned as stored and sent once to
    /// [`State::subscribe_logs`]' listeners.
    ///
    /// # Errors
    /// None since the commit moved to the log writer (which logs a failed
    /// commit); the `Result` stays for callers that handle one.
    pub fn append_logs(
        &self,
        id: &str,
        entries: impl Into<Vec<LogEntry>>,
    ) -> Result<Arc<[LogLine]>, StateError> {
        let entries = entries.into();
        if entries.is_empty() {
            return Ok(Arc::new([]));
        }
        let limits = self.shared.limits;
        let now = Utc::now();
        let at_json = log_chunk::at_json(&now);
        let order = self.shared.log_order.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut inner = self.lock();
        let meta = inner.logs.entry(id.to_string()).or_default();
        let mut lines = Vec::with_capacity(entries.len());
        let mut next = meta.next_seq;
        for e in entries {
            let mut text = e.line;
            if text.len() > limits.log_line_bytes {
                let mut cut = limits.log_line_bytes;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str(" […]");
            }
            let line = LogLine { seq: next, at: now, stream: e.stream, line: text };
            let size = log_chunk::json_size(next, at_json, line.stream.as_bytes(), line.line.as_bytes());
            // In place: a copy of the kept lines' sizes per batch cost more than the batch.
            meta.kept.push_back((next, size));
            meta.bytes += size;
            next += 1;
            lines.push(line);
        }
        meta.next_seq = next;
        let chunks = chunk_lengths(&lines);
        let mut first = lines[0].seq;
        for len in &chunks {
            meta.chunks.push_back((first, first + *len as u64));
            first += *len as u64;
        }
        while meta.kept.len() > limits.log_lines || (meta.bytes > limits.log_bytes && meta.kept.len() > 1) {
            if let Some((_, size)) = meta.kept.pop_front() {
                meta.bytes -= size;
            }
        }
        let start = meta.kept.front().map_or(next, |(seq, _)| *seq);
        let mut dropped = Vec::new();
        while let Some(&(first, end)) = meta.chunks.front() {
            if end > start {
                break;
            }
            dropped.push(first);
            meta.chunks.pop_front();
        }
        drop(inner);
        let lines: Arc<[LogLine]> = lines.into();
        // Committed by the log writer, off this thread, in this order.
        self.shared.logs.queue(log_writer::LogBatch {
            deployment: id.to_string(),
            lines: Arc::clone(&lines),
            chunks,
            dropped,
            start,
        });
        drop(order);
        // No listener is fine: nobody follows this log.
        let _ = self
            .shared
            .log_events
            .send(LoggedLines { deployment: id.to_string(), lines: Arc::clone(&lines) });
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
        let err = self.db_err();
        let read = self.shared.db.begin_read().map_err(|e| err(e.into()))?;
        let starts = read.open_table(LOG_STARTS).map_err(|e| err(e.into()))?;
        let start = starts.get(id).map_err(|e| err(e.into()))?.map_or(0, |v| v.value());
        let from = offset.max(start);
        let table = read.open_table(LOG_CHUNKS).map_err(|e| err(e.into()))?;
        // The chunk holding `from` (the last one starting at or before it),
        // then every one after it.
        let holding = table.range((id, 0)..=(id, from)).map_err(|e| err(e.into()))?.next_back();
        let after = match from.checked_add(1) {
            Some(after) => Some(table.range((id, after)..=(id, u64::MAX)).map_err(|e| err(e.into()))?),
            None => None,
        };
        let corrupt = |e: String| StateError::Corrupt(format!("a chunk of the log of {id}: {e}"));
        let mut out = Vec::new();
        let mut next = offset;
        'chunks: for item in holding.into_iter().chain(after.into_iter().flatten()) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| err(e.into()))?;
            for raw in log_chunk::lines(k.value().1, v.value()) {
                let raw = raw.map_err(corrupt)?;
                if raw.seq < from {
                    continue;
                }
                if out.len() >= limit {
                    break 'chunks;
                }
                next = raw.seq + 1;
                out.push(raw.to_line().map_err(corrupt)?);
            }
        }
        Ok((out, next))
    }
}

/// How many of `lines` go in each chunk, in order: a chunk closes at
/// [`BATCH_LINES`] lines, or at the line that brings its text to
/// [`BATCH_BYTES`].
fn chunk_lengths(lines: &[LogLine]) -> Vec<usize> {
    let mut chunks = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for line in lines {
        count += 1;
        bytes += line.line.len();
        if count == BATCH_LINES || bytes >= BATCH_BYTES {
            chunks.push(count);
            (count, bytes) = (0, 0);
        }
    }
    if count > 0 {
        chunks.push(count);
    }
    chunks
}

/// What the state knows of each deployment's log at open: the kept lines'
/// sizes and the chunks, from the stored chunks and first lines kept.
pub(super) fn load(
    read: &ReadTransaction,
    path: &Path,
) -> Result<HashMap<DeploymentId, LogMeta>, StateError> {
    let dbe = |e: redb::Error| StateError::Database { path: path.to_path_buf(), source: Box::new(e) };
    let mut logs: HashMap<DeploymentId, LogMeta> = HashMap::new();
    let starts = read.open_table(LOG_STARTS).map_err(|e| dbe(e.into()))?;
    let mut start_of = HashMap::new();
    for item in starts.iter().map_err(|e| dbe(e.into()))? {
        let (k, v) = item.map_err(|e| dbe(e.into()))?;
        start_of.insert(k.value().to_string(), v.value());
    }
    let chunks = read.open_table(LOG_CHUNKS).map_err(|e| dbe(e.into()))?;
    // The JSON length of the time of the lines before, which most share.
    let mut at_json = None;
    for item in chunks.iter().map_err(|e| dbe(e.into()))? {
        let (k, v) = item.map_err(|e| dbe(e.into()))?;
        let (id, first) = k.value();
        let start = start_of.get(id).copied().unwrap_or(0);
        let meta = logs.entry(id.to_string()).or_default();
        meta.next_seq = meta.next_seq.max(start);
        let mut end = first;
        for raw in log_chunk::lines(first, v.value()) {
            let raw: Raw<'_> =
                raw.map_err(|e| StateError::Corrupt(format!("a chunk of the log of {id}: {e}")))?;
            end = raw.seq + 1;
            if raw.seq < start {
                continue;
            }
            let at = match at_json {
                Some((at, len)) if at == raw.at => len,
                _ => {
                    let len = log_chunk::at_json(&raw.at);
                    at_json = Some((raw.at, len));
                    len
                }
            };
            let size = raw.json_size(at);
            meta.kept.push_back((raw.seq, size));
            meta.bytes += size;
        }
        meta.chunks.push_back((first, end));
        meta.next_seq = meta.next_seq.max(end);
    }
    for (id, start) in start_of {
        let meta = logs.entry(id).or_default();
        meta.next_seq = meta.next_seq.max(start);
    }
    Ok(logs)
}

/// Moves the lines of a database written by an earlier version (one row per
/// line) into chunks, in `txn` (the one that opens the state): runs of lines
/// numbered one after the other, at most a batch each. A line that cannot
/// be read is left out, with a warning.
pub(super) fn move_lines_into_chunks(txn: &WriteTransaction) -> Result<(), redb::Error> {
    if !txn.list_tables()?.any(|t| t.name() == LOGS_BY_LINE.name()) {
        return Ok(());
    }
    {
        let old = txn.open_table(LOGS_BY_LINE)?;
        let mut chunks = txn.open_table(LOG_CHUNKS)?;
        let mut starts = txn.open_table(LOG_STARTS)?;
        let mut pending: Vec<LogLine> = Vec::new();
        let mut deployment = String::new();
        let mut encoded = Vec::new();
        let mut moved = 0usize;
        let mut pending_bytes = 0;
        let mut store = |deployment: &str, pending: &mut Vec<LogLine>| -> Result<(), redb::Error> {
            if let Some(first) = pending.first().map(|l| l.seq) {
                log_chunk::encode(pending, &mut encoded);
                chunks.insert((deployment, first), encoded.as_slice())?;
                moved += pending.len();
                pending.clear();
            }
            Ok(())
        };
        for item in old.iter()? {
            let (k, v) = item?;
            let (id, seq) = k.value();
            let mut line: LogLine = match serde_json::from_slice(v.value()) {
                Ok(line) => line,
                Err(e) => {
                    tracing::warn!(deployment = id, seq, error = %e, "a stored log line cannot be read; it is left out");
                    continue;
                }
            };
            line.seq = seq;
            if id != deployment {
                store(&deployment, &mut pending)?;
                pending_bytes = 0;
                deployment = id.to_string();
                starts.insert(id, seq)?;
            }
            let follows = pending.last().is_none_or(|l| l.seq + 1 == seq);
            if !follows || pending.len() == BATCH_LINES || pending_bytes >= BATCH_BYTES {
                store(&deployment, &mut pending)?;
                pending_bytes = 0;
            }
            pending_bytes += line.line.len();
            pending.push(line);
        }
        store(&deployment, &mut pending)?;
        tracing::info!(lines = moved, "log lines stored one by one were moved into chunks");
    }
    txn.delete_table(LOGS_BY_LINE)?;
    Ok(())
}
