//! `GenericNode` (what the executors of one agent share) and the node runner
//! that composes executors into an agent.
//!
//! Orchestrator-only, worker-only and combined nodes are different sets of
//! executors handed to one [`NodeRunner`]; a library user adds an executor of
//! their own the same way. Each executor runs in its own task, so one waiting
//! for its events never delays another; each holds its own clone of the
//! [`GenericNode`], whose shared parts (bus, epoch, orchestrator address,
//! rollover priority, shutdown) are shared handles.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::auth::{NodeKey, PublicKey};
use crate::bus::{Body, Bus, BusError, Channel, Envelope};
use crate::deployment::{random_id, NodeId};
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::fetcher::{FetchProgram, Fetcher};
use crate::retrieval::FetchedTrees;
use crate::runtime::AppLimits;
use crate::source::FetchLimits;
use crate::state::StateLimits;

mod runner;

pub use runner::*;

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the node keeps its identity, state and work files.
    pub data_dir: PathBuf,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The host name or address others use to reach this node and its apps.
    pub advertise_host: String,
    /// The host address apps' ports are published on (`0.0.0.0`: the whole LAN).
    pub publish_ip: String,
    /// How often a node reports its statistics.
    pub heartbeat: Duration,
    /// How long a node may stay silent before it is marked down.
    pub node_grace: Duration,
    /// Limits on fetched repositories.
    pub fetch_limits: FetchLimits,
    /// Limits on stored logs.
    pub state_limits: StateLimits,
    /// How long a manifest's `test` command may run.
    pub test_timeout: Duration,
    /// PEM files of CA certificates that builds trust (`--build-ca`), for
    /// networks whose proxy or private CA the base images do not know; combined
    /// with the machine's system bundle (see [`crate::builder::BuildEnv`]).
    pub build_ca: Vec<PathBuf>,
    /// How long a change waits for the rollover candidate's confirmation
    /// before it is acknowledged anyway (the platform then runs degraded).
    pub replication_timeout: Duration,
    /// Limits every app container gets (processes, output kept on disk).
    pub app_limits: AppLimits,
    /// Which program runs fetches (by default this executable again; see
    /// [`crate::fetcher`]).
    pub fetch_program: FetchProgram,
    /// Whether local sources (paths and `file://` URLs) may be deployed and
    /// validated; off by default, since they read this machine's own disk.
    pub allow_local_sources: bool,
}

impl NodeConfig {
    /// Settings with the defaults for a node keeping its data in `data_dir`
    /// and serving its API on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        let advertise_host = if listen.ip().is_unspecified() {
            local_host_address().unwrap_or_else(|| "127.0.0.1".to_string())
        } else {
            listen.ip().to_string()
        };
        Self {
            data_dir: data_dir.into(),
            listen,
            advertise_host,
            publish_ip: "0.0.0.0".to_string(),
            heartbeat: Duration::from_millis(500),
            node_grace: Duration::from_secs(2),
            fetch_limits: FetchLimits::default(),
            state_limits: StateLimits::default(),
            test_timeout: Duration::from_secs(600),
            build_ca: Vec::new(),
            replication_timeout: Duration::from_secs(2),
            app_limits: AppLimits::default(),
            allow_local_sources: false,
            fetch_program: FetchProgram::default(),
        }
    }

    /// The API's address as others reach it: `http://host:port`.
    pub fn api_address(&self) -> String {
        format!("http://{}:{}", self.advertise_host, self.listen.port())
    }
}

/// The address of this machine on its LAN: the source address the kernel would
/// pick for a route to the private ranges. Nothing is sent.
pub fn local_host_address() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.254.254.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// A node's stable identity, kept in its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The id, made once.
    pub id: NodeId,
    /// A name for people (the host name by default).
    pub name: String,
}

impl NodeIdentity {
    /// Reads the identity kept in `data_dir`, or makes and keeps a new one.
    ///
    /// # Errors
    /// The I/O error when the directory cannot be read or written.
    pub fn load_or_create(data_dir: &Path, name: Option<&str>) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("node-id");
        let id = match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = format!("n{}", random_id(5));
                let tmp = data_dir.join("node-id.tmp");
                std::fs::write(&tmp, &id)?;
                std::fs::rename(&tmp, &path)?;
                id
            }
        };
        let name = name.map(str::to_string).or_else(sysinfo::System::host_name).unwrap_or_else(|| id.clone());
        Ok(Self { id, name })
    }
}

/// What the executors of one agent share.
#[derive(Clone)]
pub struct GenericNode {
    /// The node's id.
    pub id: NodeId,
    /// The node's name.
    pub name: String,
    /// Its settings.
    pub config: Arc<NodeConfig>,
    /// The bus handle.
    pub bus: Arc<dyn Bus>,
    epoch: Arc<AtomicU64>,
    orchestrator: Arc<RwLock<Option<String>>>,
    rollover_priority: Arc<AtomicU32>,
    replica_ready: Arc<std::sync::atomic::AtomicBool>,
    /// Bumped whenever the epoch or the orchestrator changes.
    leadership: Arc<tokio::sync::watch::Sender<u64>>,
    key: Option<Arc<NodeKey>>,
    trust: Arc<RwLock<Trust>>,
    /// Runs this node's fetches under its limits (one queue for the whole agent).
    pub fetcher: Fetcher,
    /// Trees the orchestrator fetched, kept for this agent's worker so that
    /// a deployment placed here is fetched once.
    pub fetched: FetchedTrees,
    /// Cancelled when the node stops.
    pub shutdown: CancellationToken,
    /// Held shared by each log sink while it publishes a batch and notes
    /// where the batch's last line stood; taken alone by an orchestrator
    /// that stops, so that every batch counted as published is on the bus
    /// when it stores the last ones (see [`crate::log_sink`]).
    pub log_publishing: Arc<tokio::sync::RwLock<()>>,
}

/// Whose signatures a node believes, besides its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// The key of the orchestrator this node takes work from.
    pub orchestrator: Option<PublicKey>,
    /// The rollover candidate the orchestrator named, with its key: the only
    /// node whose promotion to orchestrator this node accepts.
    pub candidate: Option<(NodeId, PublicKey)>,
}

impl std::fmt::Debug for GenericNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericNode").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

impl GenericNode {
    /// A node with `identity`, `config` and `bus`, at epoch 1.
    pub fn new(identity: NodeIdentity, config: NodeConfig, bus: Arc<dyn Bus>) -> Self {
        let fetcher = Fetcher::new(
            config.fetch_program.clone(),
            config.fetch_limits,
            config.allow_local_sources,
            &config.data_dir,
        );
        Self {
            id: identity.id,
            name: identity.name,
            config: Arc::new(config),
            bus,
            epoch: Arc::new(AtomicU64::new(1)),
            orchestrator: Arc::new(RwLock::new(None)),
            rollover_priority: Arc::new(AtomicU32::new(0)),
            replica_ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            leadership: Arc::new(tokio::sync::watch::channel(0).0),
            key: None,
            trust: Arc::default(),
            fetcher,
            fetched: FetchedTrees::default(),
            shutdown: CancellationToken::new(),
            log_publishing: Arc::default(),
        }
    }

    /// This node with `key`, which signs what it sends on a broker and names
    /// it when it joins.
    pub fn with_key(mut self, key: Arc<NodeKey>) -> Self {
        self.key = Some(key);
        self
    }

    /// The node's key, when it has one.
    pub fn key(&self) -> Option<&NodeKey> {
        self.key.as_deref()
    }

    /// The public half of the node's key.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.key.as_ref().map(|k| k.public())
    }

    /// Whose signatures this node believes.
    pub fn trust(&self) -> Trust {
        self.trust.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Changes whose signatures this node believes.
    pub fn update_trust(&self, f: impl FnOnce(&mut Trust)) {
        match self.trust.write() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The orchestrator epoch this node knows.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Sets the known epoch.
    pub fn set_epoch(&self, epoch: u64) {
        if self.epoch.swap(epoch, Ordering::SeqCst) != epoch {
            self.leadership.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The orchestrator's API address, when known.
    pub fn orchestrator(&self) -> Option<String> {
        self.orchestrator.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Records the orchestrator's API address.
    pub fn set_orchestrator(&self, address: Option<String>) {
        let changed = {
            let mut g = self.orchestrator.write().unwrap_or_else(|p| p.into_inner());
            let changed = *g != address;
            *g = address;
            changed
        };
        if changed {
            self.leadership.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether this node is the platform's orchestrator (it names itself as such).
    pub fn is_orchestrator(&self) -> bool {
        self.orchestrator().is_some_and(|o| o == self.api_address())
    }

    /// A receiver that changes whenever the epoch or the orchestrator changes
    /// (a takeover, following a new orchestrator).
    pub fn leadership_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.leadership.subscribe()
    }

    /// This node's rollover priority.
    pub fn rollover_priority(&self) -> u32 {
        self.rollover_priority.load(Ordering::SeqCst)
    }

    /// Sets this node's rollover priority.
    pub fn set_rollover_priority(&self, priority: u32) {
        self.rollover_priority.store(priority, Ordering::SeqCst);
    }

    /// Whether this node holds an up-to-date replica of the orchestrator's state.
    pub fn replica_ready(&self) -> bool {
        self.replica_ready.load(Ordering::SeqCst)
    }

    /// Records whether this node holds an up-to-date replica.
    pub fn set_replica_ready(&self, ready: bool) {
        self.replica_ready.store(ready, Ordering::SeqCst);
    }

    /// This node's API address as others reach it.
    pub fn api_address(&self) -> String {
        self.config.api_address()
    }

    /// Wraps `body` in an envelope from this node at its epoch.
    pub fn envelope(&self, body: Body) -> Envelope {
        Envelope { epoch: self.epoch(), from: self.id.clone(), body }
    }

    /// Publishes `body` on `channel`.
    ///
    /// # Errors
    /// [`BusError`] from the transport.
    pub async fn publish(&self, channel: &Channel, body: Body) -> Result<(), BusError> {
        self.bus.publish(channel, &self.envelope(body)).await
    }
}

#[cfg(test)]
mod tests;
