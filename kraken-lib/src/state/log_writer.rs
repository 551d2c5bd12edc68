//! The log writer: a thread of its own that commits log lines in batches, so
//! an app printing as fast as it can costs the async workers no disk time and
//! holds no lock the API needs. [`State::append_logs`](super::State::append_logs)
//! decides (under the state's lock) which lines are kept and which the limits
//! drop, then queues that as one [`LogBatch`]; the thread takes every batch
//! waiting and commits them in one transaction, in the order they were
//! queued. Log commits are not synced (the next synced commit makes them
//! durable), as before. Reading a log first waits for what was queued before
//! the read ([`LogWriter::flush`]), so a reader sees every line already
//! announced. The queue is bounded: when the disk cannot keep up, the
//! appender waits (on a thread the async runtime can spare) instead of
//! memory growing.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use redb::{Database, Durability};

use super::{log_chunk, LogLine, LOG_CHUNKS, LOG_STARTS};

/// Batches queued at most before an appender waits. A batch holds at most a
/// bus message's lines (4,096 lines, 512 KiB of text plus a line, each cut to
/// the state's longest line), so what waits here and in one commit stays
/// within a few MiB: the agent's memory bound holds whatever an app prints.
const QUEUE: usize = 4;

/// Batches committed together at most.
const PER_COMMIT: usize = 8;

/// The lines of one deployment to store and the chunks to remove.
#[derive(Debug)]
pub(super) struct LogBatch {
    /// The deployment.
    pub deployment: String,
    /// The lines to store, numbered one after the other.
    pub lines: Arc<[LogLine]>,
    /// How many of `lines` go in each chunk, in order.
    pub chunks: Vec<usize>,
    /// The first seqs of the chunks to remove (all their lines dropped by the limits).
    pub dropped: Vec<u64>,
    /// The first line kept after this batch.
    pub start: u64,
}

/// How far the writer got: batches queued and batches done (committed or
/// failed), counted from the start.
#[derive(Debug, Default)]
struct Progress {
    counts: Mutex<(u64, u64)>,
    done: Condvar,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle the state keeps; dropping it lets the thread finish the queue
/// and waits for it (so the database is closed when the state is).
#[derive(Debug)]
pub(super) struct LogWriter {
    queue: Option<SyncSender<LogBatch>>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the thread writing to `db` (at `path`, for messages).
    pub fn start(db: Arc<Database>, path: PathBuf) -> std::io::Result<Self> {
        let (queue, batches) = mpsc::sync_channel(QUEUE);
        let progress = Arc::new(Progress::default());
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("kraken-log-writer".into())
            .spawn(move || write_batches(&db, &path, &batches, &shared))?;
        Ok(Self { queue: Some(queue), progress, thread: Some(thread) })
    }

    /// Queues `batch`; waits while the queue is full.
    pub fn queue(&self, batch: LogBatch) {
        let Some(queue) = &self.queue else { return };
        self.progress.lock().0 += 1;
        let batch = match queue.try_send(batch) {
            Ok(()) => return,
            Err(TrySendError::Full(batch)) => batch,
            Err(TrySendError::Disconnected(_)) => return self.gone(),
        };
        let wait = || queue.send(batch).is_ok();
        if !blocking(wait) {
            self.gone();
        }
    }

    /// Waits until every batch queued before this call is committed (or failed).
    pub fn flush(&self) {
        let target = self.progress.lock().0;
        let wait = || {
            let mut counts = self.progress.lock();
            while counts.1 < target {
                counts = self.progress.done.wait(counts).unwrap_or_else(|p| p.into_inner());
            }
        };
        if self.progress.lock().1 < target {
            blocking(wait);
        }
    }

    /// The thread is gone (it only stops when the state is dropped, or if it
    /// panicked): count the batch as done so no reader waits for it.
    fn gone(&self) {
        tracing::warn!("the log writer has stopped; a batch of log lines was not stored");
        self.progress.lock().1 += 1;
        self.progress.done.notify_all();
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `f`, telling a multi-threaded async runtime first that it may block.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

fn write_batches(db: &Database, path: &std::path::Path, batches: &Receiver<LogBatch>, progress: &Progress) {
    while let Ok(first) = batches.recv() {
        let mut taken = vec![first];
        while taken.len() < PER_COMMIT {
            match batches.try_recv() {
                Ok(b) => taken.push(b),
                Err(_) => break,
            }
        }
        if let Err(e) = commit(db, &taken) {
            tracing::warn!(path = %path.display(), error = %e, lines = taken.len(), "could not store log lines");
        }
        progress.lock().1 += taken.len() as u64;
        progress.done.notify_all();
    }
}

fn commit(db: &Database, batches: &[LogBatch]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Eventual);
    {
        let mut chunks = txn.open_table(LOG_CHUNKS)?;
        let mut starts = txn.open_table(LOG_STARTS)?;
        let mut encoded = Vec::new();
        for b in batches {
            let deployment = b.deployment.as_str();
            let mut rest = &b.lines[..];
            for len in &b.chunks {
                let (chunk, after) = rest.split_at((*len).min(rest.len()));
                rest = after;
                let Some(first) = chunk.first() else { continue };
                log_chunk::encode(chunk, &mut encoded);
                chunks.insert((deployment, first.seq), encoded.as_slice())?;
            }
            for first in &b.dropped {
                chunks.remove((deployment, *first))?;
            }
            starts.insert(deployment, b.start)?;
        }
    }
    txn.commit()?;
    Ok(())
}
