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
//! server-sent events. Log lines are committed in batches by a thread of
//! their own (see `log_writer`).
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};

use crate::auth::PublicKey;
use crate::bus::{LogEntry, NodeReport};
use crate::deployment::{random_id, Deployment, DeploymentId, DeploymentSummary, NodeId};
use crate::runtime::ContainerStats;
use crate::stats::NodeStats;

mod batch;
mod by_node;
mod feed;
mod log_writer;
mod summaries;

pub use feed::{Change, ReplicaFeed, Versioned};

const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("logs");
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
    pub stream: String,
    /// The text.
    pub line: String,
}

/// The role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It runs the orchestrator (and may run apps too).
    Orchestrator,
    /// It runs apps.
    Worker,
}

fn runs_apps_default() -> bool {
    true
}

/// One sample of a node's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeSample {
    /// When.
    pub at: DateTime<Utc>,
    /// CPU use, 0–100.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_used_bytes: u64,
}

/// What the orchestrator knows about a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// Its id.
    #[schema(value_type = String)]
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its API address.
    pub address: String,
    /// Whether it reported within the grace period.
    pub up: bool,
    /// When it last reported.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// 0 for the orchestrator, 1 for the primary rollover candidate, higher for others.
    pub rollover_priority: u32,
    /// Whether new deployments may be placed on it.
    #[serde(default)]
    pub drained: bool,
    /// Whether it runs apps at all (an orchestrator-only node does not).
    #[serde(default = "runs_apps_default")]
    pub runs_apps: bool,
    /// The deployments it runs, as it last reported.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub deployments: Vec<DeploymentId>,
    /// Its latest statistics (not persisted).
    #[serde(default)]
    pub stats: NodeStats,
    /// Its recent statistics, oldest first (not persisted).
    #[serde(default)]
    #[schema(value_type = Vec<NodeSample>)]
    pub history: VecDeque<NodeSample>,
    /// The key it signs its messages with, registered when it joined.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub public_key: Option<PublicKey>,
}

/// A change, broadcast to whoever listens (the API's event streams).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A deployment changed.
    Deployment(DeploymentSummary),
    /// A node reported.
    Node(Box<NodeRecord>),
    /// A deployment logged a line.
    Log {
        /// The deployment.
        deployment: DeploymentId,
        /// The line.
        line: LogLine,
    },
}

#[derive(Debug, Default)]
struct LogMeta {
    next_seq: u64,
    // (seq, size) of the kept lines, oldest first.
    kept: VecDeque<(u64, usize)>,
    bytes: usize,
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
                txn.open_table(LOGS).map_err(|e| dbe(&path)(e.into()))?;
                txn.open_table(META).map_err(|e| dbe(&path)(e.into()))?;
            }
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
            let table = read.open_table(LOGS).map_err(|e| dbe(&path)(e.into()))?;
            for item in table.iter().map_err(|e| dbe(&path)(e.into()))? {
                let (k, v) = item.map_err(|e| dbe(&path)(e.into()))?;
                let (id, seq) = k.value();
                let meta = inner.logs.entry(id.to_string()).or_default();
                let size = v.value().len();
                meta.kept.push_back((seq, size));
                meta.bytes += size;
                meta.next_seq = meta.next_seq.max(seq + 1);
            }
        }
        let (events, _) = broadcast::channel(1024);
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

    /// Subscribes to changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
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

    /// Stores a new deployment request durably and returns it.
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored; then nothing was stored.
    pub fn create_deployment(&self, url: &str, branch: &str) -> Result<Deployment, StateError> {
        let _writer = self.writer();
        let mut id = random_id(6);
        while self.lock().deployments.contains_key(&id) {
            id = random_id(6);
        }
        let d = Deployment::new(id.clone(), url.to_string(), branch.to_string(), Utc::now());
        let bytes = encode(&d);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(DEPLOYMENTS)?.insert(id.as_str(), bytes.as_slice())?;
            Ok(())
        })?;
        let mut inner = self.lock();
        inner.deployments.insert(id, d.clone());
        self.record_change(&mut inner, Change::Deployment(Box::new(d.clone())));
        drop(inner);
        self.emit(Event::Deployment(d.summary()));
        self.notify();
        Ok(d)
    }

    /// Changes a deployment with `f`; when `f` returns true the change is
    /// stored durably and announced. Returns the deployment after the call,
    /// or `None` when there is no such deployment.
    ///
    /// # Errors
    /// [`StateError`] when the change could not be stored; then it was not made.
    pub fn update_deployment(
        &self,
        id: &str,
        f: impl FnOnce(&mut Deployment) -> bool,
    ) -> Result<Option<Deployment>, StateError> {
        let _writer = self.writer();
        let Some(mut next) = self.deployment(id) else { return Ok(None) };
        if !f(&mut next) {
            return Ok(Some(next));
        }
        let bytes = encode(&next);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(DEPLOYMENTS)?.insert(id, bytes.as_slice())?;
            Ok(())
        })?;
        let mut inner = self.lock();
        // Resource samples (in memory only) may have come in meanwhile.
        if let Some(live) = inner.deployments.get(id) {
            next.stats = live.stats;
            next.stats_history = live.stats_history.clone();
        }
        inner.deployments.insert(id.to_string(), next.clone());
        self.record_change(&mut inner, Change::Deployment(Box::new(next.clone())));
        drop(inner);
        self.emit(Event::Deployment(next.summary()));
        Ok(Some(next))
    }

    /// Records a resource sample of a deployment (in memory only).
    pub fn record_stats(&self, id: &str, stats: ContainerStats) {
        let mut inner = self.lock();
        if let Some(d) = inner.deployments.get_mut(id) {
            d.push_stats(stats, Utc::now());
        }
    }

    /// One deployment.
    pub fn deployment(&self, id: &str) -> Option<Deployment> {
        self.lock().deployments.get(id).cloned()
    }

    /// The summaries of all deployments, oldest request first (what the list
    /// endpoint shows, without copying every history).
    pub fn deployment_summaries(&self) -> Vec<DeploymentSummary> {
        let inner = self.lock();
        let mut all: Vec<&Deployment> = inner.deployments.values().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all.into_iter().map(Deployment::summary).collect()
    }

    /// All deployments, oldest request first.
    pub fn deployments(&self) -> Vec<Deployment> {
        let mut all: Vec<_> = self.lock().deployments.values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all
    }

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

    /// Records a node's report: marks it up, updates its stats and history,
    /// and stores the node when it is new or its identity changed.
    ///
    /// # Errors
    /// [`StateError`] when a new node could not be stored.
    pub fn record_report(
        &self,
        report: &NodeReport,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<NodeRecord, StateError> {
        let mut inner = self.lock();
        let known = inner.nodes.get(&report.node).cloned();
        let next_priority = match role {
            Role::Orchestrator => 0,
            Role::Worker => 1 + inner.nodes.values().filter(|n| n.role == Role::Worker).count() as u32,
        };
        let mut node = known.clone().unwrap_or_else(|| NodeRecord {
            id: report.node.clone(),
            name: report.name.clone(),
            role,
            address: report.address.clone(),
            up: true,
            last_heartbeat: None,
            rollover_priority: next_priority,
            drained: false,
            runs_apps: report.runs_apps,
            deployments: Vec::new(),
            stats: NodeStats::default(),
            history: VecDeque::new(),
            public_key: None,
        });
        let identity_changed = known
            .as_ref()
            .is_none_or(|k| k.name != report.name || k.address != report.address || k.role != role || !k.up);
        node.name = report.name.clone();
        node.address = report.address.clone();
        node.role = role;
        node.runs_apps = report.runs_apps;
        node.up = true;
        node.last_heartbeat = Some(now);
        node.deployments = report.deployments.iter().map(|d| d.deployment.clone()).collect();
        node.stats = report.stats.clone();
        // Reports come several times a second; the graphs keep a sample every
        // couple of seconds, so the history covers minutes.
        if node.history.back().is_none_or(|last| now - last.at >= chrono::Duration::milliseconds(1900)) {
            node.history.push_back(NodeSample {
                at: now,
                cpu_percent: report.stats.cpu_percent,
                memory_used_bytes: report.stats.memory_used_bytes,
            });
        }
        while node.history.len() > NODE_HISTORY {
            node.history.pop_front();
        }
        if identity_changed {
            self.persist_node(&node)?;
            self.record_change(&mut inner, Change::Node(Box::new(node.clone())));
        }
        inner.nodes.insert(node.id.clone(), node.clone());
        drop(inner);
        self.emit(Event::Node(Box::new(node.clone())));
        Ok(node)
    }

    fn persist_node(&self, node: &NodeRecord) -> Result<(), StateError> {
        let mut stored = node.clone();
        stored.history.clear();
        let bytes = encode(&stored);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(NODES)?.insert(node.id.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Changes a node with `f` and stores it when `f` returns true.
    ///
    /// # Errors
    /// [`StateError`] when the change could not be stored.
    pub fn update_node(
        &self,
        id: &str,
        f: impl FnOnce(&mut NodeRecord) -> bool,
    ) -> Result<Option<NodeRecord>, StateError> {
        let mut inner = self.lock();
        let Some(current) = inner.nodes.get(id) else { return Ok(None) };
        let mut next = current.clone();
        if !f(&mut next) {
            return Ok(Some(next));
        }
        self.persist_node(&next)?;
        inner.nodes.insert(id.to_string(), next.clone());
        self.record_change(&mut inner, Change::Node(Box::new(next.clone())));
        drop(inner);
        self.emit(Event::Node(Box::new(next.clone())));
        Ok(Some(next))
    }

    /// All nodes, by id.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.lock().nodes.values().cloned().collect()
    }

    /// Stores a deployment record as it is (a replica receiving the
    /// orchestrator's copy), replacing any record with its id.
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored.
    pub fn import_deployment(&self, d: &Deployment) -> Result<(), StateError> {
        let _writer = self.writer();
        let bytes = encode(d);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(DEPLOYMENTS)?.insert(d.id.as_str(), bytes.as_slice())?;
            Ok(())
        })?;
        let mut inner = self.lock();
        inner.deployments.insert(d.id.clone(), d.clone());
        self.record_change(&mut inner, Change::Deployment(Box::new(d.clone())));
        drop(inner);
        self.emit(Event::Deployment(d.summary()));
        Ok(())
    }

    /// Stores a node record as it is (a replica receiving the orchestrator's copy).
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored.
    pub fn import_node(&self, n: &NodeRecord) -> Result<(), StateError> {
        let mut inner = self.lock();
        // Reports arrive every heartbeat; only what is persisted anyway (not
        // statistics or heartbeat times) is worth a write.
        let durable = |r: &NodeRecord| {
            let mut r = r.clone();
            r.stats = NodeStats::default();
            r.history.clear();
            r.last_heartbeat = None;
            r
        };
        if inner.nodes.get(&n.id).is_none_or(|old| durable(old) != durable(n)) {
            self.persist_node(n)?;
            self.record_change(&mut inner, Change::Node(Box::new(n.clone())));
        }
        inner.nodes.insert(n.id.clone(), n.clone());
        Ok(())
    }

    /// One node.
    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.lock().nodes.get(id).cloned()
    }

    /// A stored setting.
    ///
    /// # Errors
    /// [`StateError`] when the database cannot be read.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        let read = self.shared.db.begin_read().map_err(|e| self.db_err()(e.into()))?;
        let table = read.open_table(META).map_err(|e| self.db_err()(e.into()))?;
        let v = table.get(key).map_err(|e| self.db_err()(e.into()))?;
        Ok(v.map(|v| v.value().to_string()))
    }

    /// Stores a setting durably.
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        let _writer = self.writer();
        self.write(Durability::Immediate, |txn| {
            txn.open_table(META)?.insert(key, value)?;
            Ok(())
        })
    }

    /// Removes a setting durably (nothing happens when there is none).
    ///
    /// # Errors
    /// [`StateError`] when the change could not be stored.
    pub fn remove_meta(&self, key: &str) -> Result<(), StateError> {
        let _writer = self.writer();
        self.write(Durability::Immediate, |txn| {
            txn.open_table(META)?.remove(key)?;
            Ok(())
        })
    }

    /// Registers the key a node signs its messages with (when it joins, or
    /// the orchestrator's own at its start). A node not known yet is added,
    /// not up until it reports. A node keeps the key it registered first:
    /// another key for the same id is refused (it would let one node speak
    /// for another).
    ///
    /// # Errors
    /// [`KeyConflict::Other`] when the node has another key;
    /// [`KeyConflict::State`] when the record could not be stored.
    pub fn register_node_key(
        &self,
        id: &str,
        name: &str,
        address: &str,
        role: Role,
        key: PublicKey,
    ) -> Result<NodeRecord, KeyConflict> {
        let mut inner = self.lock();
        let mut node = match inner.nodes.get(id) {
            Some(known) => match known.public_key {
                Some(k) if k == key => return Ok(known.clone()),
                Some(_) => return Err(KeyConflict::Other),
                None => known.clone(),
            },
            None => NodeRecord {
                id: id.to_string(),
                name: name.to_string(),
                role,
                address: address.to_string(),
                up: false,
                last_heartbeat: None,
                rollover_priority: u32::try_from(inner.nodes.len()).unwrap_or(u32::MAX),
                drained: false,
                runs_apps: true,
                deployments: Vec::new(),
                stats: NodeStats::default(),
                history: VecDeque::new(),
                public_key: None,
            },
        };
        node.public_key = Some(key);
        self.persist_node(&node).map_err(KeyConflict::State)?;
        inner.nodes.insert(node.id.clone(), node.clone());
        drop(inner);
        self.emit(Event::Node(Box::new(node.clone())));
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Status;

    fn entry(s: &str) -> LogEntry {
        LogEntry { stream: "stdout".into(), line: s.into() }
    }

    #[test]
    fn deployments_survive_reopening_with_their_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let state = State::open(dir.path(), StateLimits::default()).expect("open");
            let d = state.create_deployment("file:///repo", "main").expect("create");
            state
                .update_deployment(&d.id, |d| {
                    d.transition(Status::ValidatingDeploymentData, "checking", Utc::now());
                    true
                })
                .expect("update");
            d.id
        };
        let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
        let d = state.deployment(&id).expect("still there");
        assert_eq!(d.status, Status::ValidatingDeploymentData);
        assert_eq!(d.status_history.len(), 2);
        assert_eq!(d.url, "file:///repo");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = State::open(dir.path(), StateLimits::default()).expect("open");
        let second = State::open(dir.path(), StateLimits::default());
        assert!(matches!(second, Err(StateError::InUse(_))), "{second:?}");
    }

    #[test]
    fn logs_are_read_from_an_offset_and_bounded_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = StateLimits { log_lines: 5, log_bytes: 1 << 20, log_line_bytes: 10 };
        let state = State::open(dir.path(), limits).expect("open");
        let batch: Vec<_> = (0..8).map(|i| entry(&format!("line {i}"))).collect();
        state.append_logs("d1", &batch).expect("append");
        let (lines, next) = state.logs("d1", 0, 100).expect("read");
        let texts: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(texts, ["line 3", "line 4", "line 5", "line 6", "line 7"]);
        assert_eq!(next, 8);
        let (lines, next) = state.logs("d1", 6, 1).expect("read");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].seq, 6);
        assert_eq!(next, 7);
        state.append_logs("d1", &[entry("a very long line indeed")]).expect("append");
        let (lines, _) = state.logs("d1", 8, 10).expect("read");
        assert_eq!(lines[0].line, "a very lon […]");
        drop(state);
        let state = State::open(dir.path(), limits).expect("reopen");
        state.append_logs("d1", &[entry("after")]).expect("append");
        let (lines, _) = state.logs("d1", 0, 100).expect("read");
        assert_eq!(lines.len(), 5);
        assert_eq!(lines.last().map(|l| (l.seq, l.line.as_str())), Some((9, "after")));
    }

    #[test]
    fn log_byte_limit_drops_oldest_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = StateLimits { log_lines: 1000, log_bytes: 400, log_line_bytes: 100 };
        let state = State::open(dir.path(), limits).expect("open");
        for i in 0..50 {
            state.append_logs("d", &[entry(&format!("{i:>40}"))]).expect("append");
        }
        let (lines, _) = state.logs("d", 0, 1000).expect("read");
        assert!(lines.len() < 10, "kept {}", lines.len());
        assert_eq!(lines.last().map(|l| l.seq), Some(49));
    }

    #[tokio::test]
    async fn changes_are_broadcast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        let mut rx = state.subscribe();
        let d = state.create_deployment("u", "b").expect("create");
        match rx.recv().await.expect("event") {
            Event::Deployment(s) => assert_eq!(s.id, d.id),
            other => panic!("unexpected {other:?}"),
        }
        state.append_logs(&d.id, &[entry("hello")]).expect("append");
        match rx.recv().await.expect("event") {
            Event::Log { deployment, line } => {
                assert_eq!(deployment, d.id);
                assert_eq!(line.line, "hello");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_replica_feed_starts_where_its_snapshot_ends_and_keeps_the_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        let first = state.create_deployment("u", "b").expect("create");
        let mut feed = state.replica_feed();
        assert_eq!((feed.version, feed.deployments.len()), (1, 1));
        let second = state.create_deployment("v", "b").expect("create");
        state
            .update_deployment(&first.id, |d| {
                d.transition(Status::ValidatingDeploymentData, "checking", Utc::now());
                true
            })
            .expect("update");
        // A change that changes nothing is not a version.
        state.update_deployment(&first.id, |_| false).expect("no-op");
        assert_eq!(state.version(), 3);
        let next = feed.changes.try_recv().expect("the second request");
        assert_eq!(next.version, 2);
        assert!(matches!(&next.change, Change::Deployment(d) if d.id == second.id));
        let next = feed.changes.try_recv().expect("the update");
        assert_eq!(next.version, 3);
        assert!(
            matches!(&next.change, Change::Deployment(d) if d.status == Status::ValidatingDeploymentData)
        );
        assert!(feed.changes.try_recv().is_err(), "nothing else");
    }

    #[test]
    fn meta_values_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let state = State::open(dir.path(), StateLimits::default()).expect("open");
            assert_eq!(state.meta("token").expect("read"), None);
            state.set_meta("token", "abc").expect("write");
        }
        let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
        assert_eq!(state.meta("token").expect("read").as_deref(), Some("abc"));
    }

    #[test]
    fn the_database_is_private_from_its_creation() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("state");
        let state = State::open(&dir, StateLimits::default()).expect("open");
        state.set_meta("token_hash", "x").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("state.redb")), 0o600);
        drop(state);
        // A database made with wider permissions (an older version) is tightened.
        std::fs::set_permissions(dir.join("state.redb"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let state = State::open(&dir, StateLimits::default()).expect("reopen");
        assert_eq!(state.meta("token_hash").expect("read").as_deref(), Some("x"));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("state.redb")), 0o600);
    }

    #[test]
    fn meta_values_can_be_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        state.set_meta("token", "clear").expect("write");
        state.remove_meta("token").expect("remove");
        state.remove_meta("never-set").expect("remove nothing");
        assert_eq!(state.meta("token").expect("read"), None);
    }

    #[test]
    fn a_node_keeps_the_key_it_registered_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        let key = crate::auth::NodeKey::generate().expect("key").public();
        let other = crate::auth::NodeKey::generate().expect("key").public();
        let n =
            state.register_node_key("n1", "pi", "http://10.0.0.2:8000", Role::Worker, key).expect("register");
        assert!(!n.up, "a node is up once it reports");
        assert_eq!(n.public_key, Some(key));
        assert!(state.register_node_key("n1", "pi", "http://10.0.0.2:8000", Role::Worker, key).is_ok());
        assert!(matches!(
            state.register_node_key("n1", "evil", "http://10.0.0.9:8000", Role::Worker, other),
            Err(KeyConflict::Other)
        ));
        let report = NodeReport {
            node: "n1".into(),
            name: "pi".into(),
            address: "http://10.0.0.2:8000".into(),
            stats: NodeStats::default(),
            deployments: Vec::new(),
            at: Utc::now(),
            runs_apps: true,
            instance: "i1".into(),
        };
        let n = state.record_report(&report, Role::Worker, Utc::now()).expect("report");
        assert!(n.up);
        assert_eq!(n.public_key, Some(key), "a report keeps the key");
        drop(state);
        let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
        assert_eq!(state.node("n1").and_then(|n| n.public_key), Some(key));
    }
}
