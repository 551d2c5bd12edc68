//! A deployment's log lines on their way to the bus, in bounded memory.
//!
//! Whatever follows an app's (or its build's) output hands lines to a
//! [`LogSink`]; a task of the sink gathers them into batches and publishes
//! them. Between the two sits a queue of at most [`QUEUE_LINES`] lines and
//! [`QUEUE_BYTES`] bytes (lines come in bursts while a batch is being
//! published and stored, so the queue holds thousands): when an app prints faster
//! than its lines can be published and stored, the lines that do not fit are
//! dropped and counted instead of the agent's memory growing, and the log
//! says so where they are missing: `[kraken] N lines dropped …` comes right
//! before the next line that fits (or, when the app went quiet, after the
//! last line queued). Each line is cut to the state's longest line, so a
//! batch is at most [`BATCH_LINES`] lines and [`BATCH_BYTES`] bytes (plus
//! one line). A batch is sent [`GATHER`] after its first line, or at once
//! when a full batch is already waiting: a chatty app costs a message per
//! batch, not per line. While it gathers, the batching task sleeps until the
//! batch is due rather than waking for every line.
//!
//! Lines may carry where they stand in the container's output
//! ([`LogSink::send_at`]); a sink started with [`LogSink::start_marked`] says
//! after each published batch where its last line stood, so a follower
//! started again resumes after what was sent and nothing sooner.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use crate::bus::{Body, Channel, LogBatch, LogEntry};
use crate::deployment::DeploymentId;
use crate::node::GenericNode;
use crate::output::CUT_MARK;
use crate::runtime::LogPosition;

/// A line waiting for its batch, and where it stands in the container's output.
#[derive(Debug)]
struct Queued {
    entry: LogEntry,
    mark: Option<LogPosition>,
}

/// What a marked sink calls with the position of each published batch's last line.
type OnPublished = Box<dyn Fn(&LogPosition) + Send + Sync>;

/// How many lines wait for their batch at most.
pub const QUEUE_LINES: usize = 8192;
/// How many bytes of lines wait for their batch at most.
pub const QUEUE_BYTES: usize = 2 * 1024 * 1024;
/// The most lines in one batch.
pub const BATCH_LINES: usize = 4096;
/// The most bytes of lines in one batch.
pub const BATCH_BYTES: usize = 512 * 1024;
/// How long a batch waits for more lines after its first.
pub const GATHER: Duration = Duration::from_millis(10);

/// The usual stream names, borrowed so a line costs no allocation for its name.
const STREAMS: [&str; 4] = ["stdout", "stderr", "build", "platform"];

/// `stream` as a [`LogEntry`] holds it: borrowed when it is a usual name.
fn stream_name(stream: &str) -> Cow<'static, str> {
    match STREAMS.iter().find(|s| **s == stream) {
        Some(name) => Cow::Borrowed(*name),
        None => Cow::Owned(stream.to_string()),
    }
}

/// Batches log lines of one deployment onto the bus. Clones feed the same batches.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Queued>,
    dropped: Arc<AtomicU64>,
    /// Bytes of lines in the queue.
    queued: Arc<AtomicUsize>,
    max_line: usize,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LogSink {
    /// A sink publishing the lines of `deployment` (its work of `generation`)
    /// from `node`, until every clone is dropped.
    pub fn start(node: GenericNode, deployment: DeploymentId, generation: u64) -> Self {
        Self::spawn(node, deployment, generation, None)
    }

    /// Like [`LogSink::start`]; after each batch is published, calls
    /// `on_published` with the position of its last line that carried one
    /// ([`LogSink::send_at`]).
    pub fn start_marked(
        node: GenericNode,
        deployment: DeploymentId,
        generation: u64,
        on_published: impl Fn(&LogPosition) + Send + Sync + 'static,
    ) -> Self {
        Self::spawn(node, deployment, generation, Some(Box::new(on_published)))
    }

    fn spawn(
        node: GenericNode,
        deployment: DeploymentId,
        generation: u64,
        on_published: Option<OnPublished>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE_LINES);
        let max_line = node.config.state_limits.log_line_bytes.max(64);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let (counter, in_queue) = (dropped.clone(), queued.clone());
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let until = tokio::time::Instant::now() + GATHER;
                let mut bytes = first.entry.line.len();
                let mut mark = first.mark;
                let mut lines = vec![first.entry];
                // Gather what else comes (up to a batch, until the batch is
                // due), then send. Between looks it sleeps until the batch is
                // due: waiting on the queue would wake it for every line.
                let mut emptied = false;
                let mut slept = false;
                while lines.len() < BATCH_LINES && bytes < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(l) => {
                            bytes += l.entry.line.len();
                            mark = l.mark.or(mark);
                            lines.push(l.entry);
                        }
                        Err(mpsc::error::TryRecvError::Empty) if !slept => {
                            tokio::time::sleep_until(until).await;
                            slept = true;
                        }
                        Err(_) => {
                            emptied = true;
                            break;
                        }
                    }
                }
                in_queue.fetch_sub(bytes, Ordering::Relaxed);
                // Every line queued before the drops is in this batch, and
                // none came after them (a sender puts the note before its
                // line): the gap is at the end. A full batch that took the
                // last line waiting counts too, or the note would wait for
                // the app's next line.
                if emptied || rx.is_empty() {
                    let missed = counter.swap(0, Ordering::Relaxed);
                    if missed > 0 {
                        lines.push(dropped_note(missed));
                    }
                }
                let batch = LogBatch { deployment: deployment.clone(), generation, lines };
                // A node that stops publishes nothing more: what is left
                // was not counted as sent, and a follower started again
                // reads it again.
                let gate = node.log_publishing.clone();
                let _publishing = gate.read().await;
                if node.shutdown.is_cancelled() {
                    break;
                }
                match node.publish(&Channel::Log, Body::Log(batch)).await {
                    Ok(()) => {
                        if let (Some(f), Some(mark)) = (&on_published, &mark) {
                            f(mark);
                        }
                    }
                    Err(e) => warn!(error = %e, "could not send log lines"),
                }
            }
        });
        Self { tx, dropped, queued, max_line }
    }

    /// Hands over a line; drops it (and counts it) when the queue is full.
    pub fn send(&self, stream: &str, line: impl Into<String>) {
        self.queue(stream, line.into(), None);
    }

    /// Hands over a line that stands at `mark` in the container's output;
    /// drops it (and counts it) when the queue is full.
    pub fn send_at(&self, stream: &str, line: impl Into<String>, mark: LogPosition) {
        self.queue(stream, line.into(), Some(mark));
    }

    fn queue(&self, stream: &str, mut line: String, mark: Option<LogPosition>) {
        if line.len() > self.max_line {
            let mut cut = self.max_line;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(CUT_MARK);
        }
        let size = line.len();
        if self.queued.load(Ordering::Relaxed) + size > QUEUE_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = Queued { entry: LogEntry { stream: stream_name(stream), line }, mark };
        if self.dropped.load(Ordering::Relaxed) == 0 {
            // Counted before it is sent, so the batching task never takes
            // away more than was added.
            self.queued.fetch_add(size, Ordering::Relaxed);
            match self.tx.try_send(entry) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.queued.fetch_sub(size, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // The publishing task ended with the runtime: nothing to do.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.queued.fetch_sub(size, Ordering::Relaxed);
                }
            }
            return;
        }
        // Lines were dropped just before this one: the note goes here, with
        // it, or this line is dropped too.
        match self.tx.try_reserve_many(2) {
            Ok(mut permits) => {
                let missed = self.dropped.swap(0, Ordering::Relaxed);
                if missed > 0 {
                    if let Some(permit) = permits.next() {
                        let note = dropped_note(missed);
                        self.queued.fetch_add(note.line.len(), Ordering::Relaxed);
                        permit.send(Queued { entry: note, mark: None });
                    }
                }
                if let Some(permit) = permits.next() {
                    self.queued.fetch_add(size, Ordering::Relaxed);
                    permit.send(entry);
                }
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(())) => {}
        }
    }

    /// Lines dropped and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The line saying `missed` lines were dropped.
fn dropped_note(missed: u64) -> LogEntry {
    LogEntry {
        stream: Cow::Borrowed("platform"),
        line: format!(
            "[kraken] {missed} line{} dropped: the app printed faster than its log could be kept",
            if missed == 1 { "" } else { "s" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::Bus;
    use crate::node::{NodeConfig, NodeIdentity};

    #[tokio::test]
    async fn a_flood_is_bounded_and_the_drop_is_said_in_the_log() {
        let bus = Arc::new(MemoryBus::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        let node = GenericNode::new(NodeIdentity { id: "n1".into(), name: "n".into() }, config, bus.clone());
        let mut batches = bus.subscribe(&Channel::Log).await.expect("subscribe");
        let sink = LogSink::start(node, "d1".into(), 1);
        // Far more at once than the queue holds, one line far too long.
        sink.send("stdout", "x".repeat(100_000));
        for i in 0..10_000 {
            sink.send("stdout", format!("line {i}"));
        }
        assert!(sink.dropped() > 0, "the queue is bounded");
        sink.send("stdout", "last");
        let mut seen = Vec::new();
        while !seen.iter().any(|l: &LogEntry| l.line.contains("dropped")) {
            let next = tokio::time::timeout(Duration::from_secs(10), batches.next()).await.expect("a batch");
            let Some(delivery) = next else { panic!("the bus closed") };
            let Body::Log(batch) = delivery.envelope.body else { panic!("not a log batch") };
            assert!(batch.lines.len() <= BATCH_LINES + 1);
            seen.extend(batch.lines);
        }
        let long = &seen[0];
        assert_eq!(long.line.len(), 4096 + CUT_MARK.len(), "lines are cut to the state's longest");
        let note = seen.iter().find(|l| l.line.contains("dropped")).expect("note");
        assert_eq!(note.stream, "platform");
        assert!(note.line.starts_with("[kraken] "), "{}", note.line);
        // Nothing was published while the lines were handed over (one
        // thread): the queue took its fill, the rest is counted, and the note
        // comes after the last line queued.
        let said: usize = note.line.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("a count");
        assert_eq!(said, 10_002 - QUEUE_LINES, "{}", note.line);
        assert_eq!(seen.iter().position(|l| l.line.contains("dropped")), Some(QUEUE_LINES));
    }

    #[tokio::test]
    async fn the_queue_holds_at_most_its_bytes_of_long_lines() {
        let bus = Arc::new(MemoryBus::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        let node = GenericNode::new(NodeIdentity { id: "n1".into(), name: "n".into() }, config, bus.clone());
        let sink = LogSink::start(node, "d1".into(), 1);
        // Lines of the longest length kept: far fewer fit than QUEUE_LINES.
        let line = "y".repeat(4096);
        for _ in 0..2000 {
            sink.send("stdout", line.clone());
        }
        let queued = 2000 - usize::try_from(sink.dropped()).expect("a count");
        assert_eq!(queued, QUEUE_BYTES / 4096, "the queue holds {queued} lines of 4 KiB");
    }

    #[tokio::test]
    async fn the_note_stands_where_the_lines_are_missing() {
        let bus = Arc::new(MemoryBus::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        let node = GenericNode::new(NodeIdentity { id: "n1".into(), name: "n".into() }, config, bus.clone());
        let mut batches = bus.subscribe(&Channel::Log).await.expect("subscribe");
        let sink = LogSink::start(node, "d1".into(), 1);
        for i in 0..(QUEUE_LINES + 10) {
            sink.send("stdout", format!("before {i}"));
        }
        // Room again: the next line that fits comes after the note.
        let mut seen = Vec::new();
        while seen.len() < QUEUE_LINES {
            let delivery =
                tokio::time::timeout(Duration::from_secs(10), batches.next()).await.expect("a batch");
            let Some(Body::Log(batch)) = delivery.map(|d| d.envelope.body) else { panic!("no log batch") };
            seen.extend(batch.lines.into_iter().map(|l| l.line));
        }
        sink.send("stdout", "after");
        while !seen.iter().any(|l| l == "after") {
            let delivery =
                tokio::time::timeout(Duration::from_secs(10), batches.next()).await.expect("a batch");
            let Some(Body::Log(batch)) = delivery.map(|d| d.envelope.body) else { panic!("no log batch") };
            seen.extend(batch.lines.into_iter().map(|l| l.line));
        }
        let note = seen.iter().position(|l| l.contains("10 lines dropped")).expect("the note");
        assert_eq!(seen[note - 1], format!("before {}", QUEUE_LINES - 1), "{seen:?}");
        assert_eq!(seen.last().map(String::as_str), Some("after"));
    }
}
