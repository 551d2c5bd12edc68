//! The orchestrator's state: nodes, deployments with their status histories,
//! and logs, kept in an embedded `redb` database under the data directory.
//!
//! `redb` commits are atomic and durable (copy-on-write pages and a checksummed
//! commit slot), so a `kill -9` at any moment leaves the last committed state:
//! a request is acknowledged only after its commit returned. Log lines are
//! committed without a sync of their own (they become durable with the next
//! synced commit), since they arrive fast and losing the last few at a crash
//! loses no work. Resource samples live in memory only.
//!
//! [`State`] is a cheap-to-clone handle. The in-memory copy sits behind a
//! `std::sync::Mutex` that is never held across an `.await` (no method here is
//! async) nor while a deployment's change waits for its synced commit (those
//! are ordered by a lock of their own, so the API's reads never wait for the
//! disk), and every change is broadcast as an [`Event`] for the API's
//! server-sent events (log lines on a channel of their own, a batch at a
//! time: [`State::subscribe_logs`]). Log lines are committed in batches by a
//! thread of their own (see `log_writer`), each batch as one chunk (see
//! `log_chunk`).
//!
//! Every durable change also gets a version number (1, 2, … from the moment
//! the state was opened) and goes out, in version order, on the
//! [`State::replica_feed`]: what the rollover candidate copies. A commit that
//! must wait for the disk moves the runtime's other tasks to another thread
//! first (on a multi-threaded runtime), so a slow disk never stalls the API or
//! the heartbeats.

// redb's own error type is large; the closures handed to `State::write` return
// it as it comes, on a path that only runs when the disk fails.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};

use crate::deployment::{Deployment, DeploymentId, DeploymentSummary, NodeId};

mod batch;
mod by_node;
mod deployments;
mod feed;
mod log_chunk;
mod log_writer;
mod logs;
mod meta;
mod nodes;
mod summaries;

pub use feed::{Change, ReplicaFeed, Versioned};
pub use nodes::{NodeRecord, NodeSample, Role};
pub use summaries::{RecordLookup, RecordMark};

const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Log lines in chunks (see `log_chunk`): `(deployment, first seq)` → the chunk.
const LOG_CHUNKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("log_chunks");
/// Per deployment, the first log line kept (older lines of a chunk are skipped).
const LOG_STARTS: TableDefinition<&str, u64> = TableDefinition::new("log_starts");
/// Log lines as earlier versions stored them, one JSON [`LogLine`] per
/// `(deployment, seq)`: moved into chunks when the state is opened.
const LOGS_BY_LINE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The memory the database may use as its cache (redb's default is 1 GiB,
/// which a flood of log lines would fill).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How many node samples are kept for graphs.
pub const NODE_HISTORY: usize = 120;

/// Bounds on what the state keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Log lines kept per deployment; the oldest are dropped first.
    pub log_lines: usize,
    /// Log bytes kept per deployment; the oldest lines are dropped first.
    pub log_bytes: usize,
    /// Longest log line kept; longer ones are cut.
    pub log_line_bytes: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self { log_lines: 10_000, log_bytes: 2 * 1024 * 1024, log_line_bytes: 4096 }
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The database failed.
    #[error("the state database at {path} failed: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<redb::Error>,
    },
    /// Another process holds the database.
    #[error(
        "the state database at {0} is in use by another kraken process; stop it or choose another --data-dir"
    )]
    InUse(PathBuf),
    /// A record could not be decoded.
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    /// The data directory or the database file could not be made private.
    #[error("could not prepare {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a node's key could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyConflict {
    /// The node registered another key before.
    #[error("the node registered another key before")]
    Other,
    /// The record could not be stored.
    #[error(transparent)]
    State(#[from] StateError),
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Its position in the deployment's log (0-based, never reused).
    pub seq: u64,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// `build`, `stdout`, `stderr` or `platform`.
    #[schema(value_type = String)]
    pub stream: Cow<'static, str>,
    /// The text.
    pub line: String,
}

/// A change, broadcast to whoever listens (the API's event streams).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A deployment changed.
    Deployment(DeploymentSummary),
    /// A node reported.
    Node(Box<NodeRecord>),
}

/// Log lines a deployment logged (one appended batch), broadcast on their own
/// channel ([`State::subscribe_logs`]): once per batch, not per line.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedLines {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The lines, oldest first, numbered one after the other.
    pub lines: Arc<[LogLine]>,
}

/// Batches of log lines a listener may fall behind by before it is told it
/// lagged (and reads the store instead). Small, so a listener that stops
/// reading holds at most a few MiB of lines.
const LOG_EVENTS: usize = 8;

#[derive(Debug, Default)]
struct LogMeta {
    next_seq: u64,
    // (seq, size) of the kept lines, oldest first; a line's size is its
    // JSON's length (`log_chunk::json_size`).
    kept: VecDeque<(u64, usize)>,
    bytes: usize,
    // The stored chunks, oldest first: the seq of their first line and the
    // seq after their last.
    chunks: VecDeque<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Inner {
    deployments: BTreeMap<DeploymentId, Deployment>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    logs: HashMap<DeploymentId, LogMeta>,
    /// The version of the last durable change.
    version: u64,
}

struct Shared {
    path: PathBuf,
    db: Arc<Database>,
    limits: StateLimits,
    // Orders the synced writes of deployments and settings: taken before the
    // commit, with `inner` locked only around the in-memory change after it.
    writer: Mutex<()>,
    // Orders the appenders of log lines (their batches queue in this order).
    log_order: Mutex<()>,
    logs: log_writer::LogWriter,
    // Guards the in-memory copy; never held across an await (nothing here awaits),
    // and each write to `db` happens under it so the two never disagree.
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    log_events: broadcast::Sender<LoggedLines>,
    // Sent to while `inner` is locked, so receivers see versions in order.
    changes: broadcast::Sender<Versioned>,
    changed: Notify,
}

/// The orchestrator's state. Clone it freely: clones share everything.
#[derive(Clone)]
pub struct State {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail (no maps with
    // non-string keys, no custom serialisers that error).
    serde_json::to_vec(value).unwrap_or_default()
}

impl State {
    /// Opens (or creates) the state in `dir`.
    ///
    /// # Errors
    /// [`StateError::InUse`] when another process has it open; other variants
    /// when the directory or database cannot be used.
    ///
    /// # Examples
    ///
    /// ```
    /// use kraken_lib::deployment::Status;
    /// use kraken_lib::state::{State, StateLimits};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let state = State::open(dir.path(), StateLimits::default())?;
    /// let d = state.create_deployment("https://example.org/app.git", "main")?;
    /// assert_eq!(state.deployment(&d.id).map(|d| d.status), Some(Status::DeploymentRequested));
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(dir: &Path, limits: StateLimits) -> Result<Self, StateError> {
        // The database holds the platform's secrets (token hashes, broker
        // credentials): its directory and file are private from creation.
        let io = |source| StateError::Io { path: dir.to_path_buf(), source };
        crate::auth::files::private_dir(dir).map_err(io)?;
        let path = dir.join("state.redb");
        crate::auth::files::private_file(&path)
            .map_err(|source| StateError::Io { path: path.clone(), source })?;
        let db = match redb::Builder::new().set_cache_size(CACHE_BYTES).create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StateError::InUse(path)),
            Err(e) => return Err(StateError::Database { path, source: Box::new(e.into()) }),
        };
        let dbe = |path: &Path| {
            let path = path.to_path_buf();
            move |e: redb::Error| StateError::Database { path: path.clone(), source: Box::new(e) }
        };
        let mut inner = Inner::default();
        {
            let txn = db.begin_write().map_err(|e| dbe(&path)(e.into()))?;
            {
                txn.open_table(DEPLOYMENTS).map_err(|e| dbe(&path)(e.into()))?;
                txn.open_table(NODES).map_err(|e| dbe(&path)(e.into()))?;
                txn.open_table(LOG_CHUNKS).map_err(|e| dbe(&path)(e.into()))?;
                txn.open_table(LOG_STARTS).map_err(|e| dbe(&path)(e.into()))?;
                txn.open_table(META).map_err(|e| dbe(&path)(e.into()))?;
            }
            logs::move_lines_into_chunks(&txn).map_err(dbe(&path))?;
            txn.commit().map_err(|e| dbe(&path)(e.into()))?;
            let read = db.begin_read().map_err(|e| dbe(&path)(e.into()))?;
            let table = read.open_table(DEPLOYMENTS).map_err(|e| dbe(&path)(e.into()))?;
            for item in table.iter().map_err(|e| dbe(&path)(e.into()))? {
                let (k, v) = item.map_err(|e| dbe(&path)(e.into()))?;
                let d: Deployment = serde_json::from_slice(v.value())
                    .map_err(|e| StateError::Corrupt(format!("deployment {}: {e}", k.value())))?;
                inner.deployments.insert(d.id.clone(), d);
            }
            let table = read.open_table(NODES).map_err(|e| dbe(&path)(e.into()))?;
            for item in table.iter().map_err(|e| dbe(&path)(e.into()))? {
                let (k, v) = item.map_err(|e| dbe(&path)(e.into()))?;
                let n: NodeRecord = serde_json::from_slice(v.value())
                    .map_err(|e| StateError::Corrupt(format!("node {}: {e}", k.value())))?;
                inner.nodes.insert(n.id.clone(), n);
            }
            inner.logs = logs::load(&read, &path)?;
        }
        let (events, _) = broadcast::channel(1024);
        let (log_events, _) = broadcast::channel(LOG_EVENTS);
        let (changes, _) = broadcast::channel(4096);
        let db = Arc::new(db);
        let logs = log_writer::LogWriter::start(Arc::clone(&db), path.clone())
            .map_err(|source| StateError::Io { path: path.clone(), source })?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                db,
                limits,
                writer: Mutex::new(()),
                log_order: Mutex::new(()),
                logs,
                inner: Mutex::new(inner),
                events,
                log_events,
                changes,
                changed: Notify::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a
        // way worse than the database (which is the source of truth), so keep going.
        self.shared.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.shared.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn db_err(&self) -> impl Fn(redb::Error) -> StateError + '_ {
        move |source| StateError::Database { path: self.shared.path.clone(), source: Box::new(source) }
    }

    fn write<R>(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, redb::Error>,
    ) -> Result<R, StateError> {
        let commit = || {
            let mut txn = self.shared.db.begin_write().map_err(|e| self.db_err()(e.into()))?;
            txn.set_durability(durability);
            let r = f(&txn).map_err(self.db_err())?;
            txn.commit().map_err(|e| self.db_err()(e.into()))?;
            Ok(r)
        };
        // A synced commit can wait on the disk for long under heavy I/O (image
        // builds): hand this thread's other tasks to another one meanwhile.
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded && matches!(durability, Durability::Immediate) {
            tokio::task::block_in_place(commit)
        } else {
            commit()
        }
    }

    /// Numbers `change` with the next version and sends it to the replica
    /// feed. Called with `inner` locked, right after the commit.
    fn record_change(&self, inner: &mut Inner, change: Change) {
        inner.version += 1;
        // No receiver is fine: no candidate is copying.
        let _ = self.shared.changes.send(Versioned { version: inner.version, change });
    }

    /// Subscribes to changes of deployments and nodes.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Subscribes to log lines as they are appended, a batch at a time. A
    /// listener more than a few batches behind gets `Lagged` and should read
    /// the store ([`State::logs`]) from where it was.
    pub fn subscribe_logs(&self) -> broadcast::Receiver<LoggedLines> {
        self.shared.log_events.subscribe()
    }

    /// Wakes whoever waits in [`State::changed`] (the orchestrator).
    pub fn notify(&self) {
        self.shared.changed.notify_one();
    }

    /// Waits until [`State::notify`] is called (a stored permit counts).
    pub async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    fn emit(&self, event: Event) {
        // No receiver is fine: nobody is watching.
        let _ = self.shared.events.send(event);
    }
}

#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod tests;
