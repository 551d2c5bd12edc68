//! The bus: the messages between the orchestrator and its workers.
//!
//! The channels are the seed's: [`Channel::Sysinfo`] (worker → orchestrator
//! node stats and the deployments it runs), [`Channel::Deployment`] (worker →
//! orchestrator deployment status), [`Channel::Log`] (worker → orchestrator log
//! lines), and one [`Channel::Work`] queue per node (orchestrator → worker:
//! deploy, update, destroy, cancel). Every message travels in an [`Envelope`]
//! that names its sender and the orchestrator epoch it belongs to.
//!
//! Transports implement [`Bus`]: [`memory::MemoryBus`] for a single combined
//! node (no broker needed), [`amqp::AmqpBus`] across machines, where every
//! message is signed with its sender's node key ([`wire`]) and handlers act
//! only on messages from whom they expect ([`trust`]). Handling is idempotent: work and reports carry the
//! deployment's generation, so a duplicated or replayed message changes nothing.

pub mod amqp;
pub mod memory;
pub mod trust;
pub mod wire;

use std::fmt;
use std::pin::Pin;

use futures::future::BoxFuture;
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::auth::PublicKey;
use crate::deployment::{DeploymentId, NodeId, Status};
use crate::runtime::ContainerStats;
use crate::shipwreck::Manifest;
use crate::stats::NodeStats;

/// A named stream of messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Worker → orchestrator: node statistics and running deployments.
    Sysinfo,
    /// Worker → orchestrator: deployment status changes.
    Deployment,
    /// Worker → orchestrator: log lines.
    Log,
    /// Orchestrator → one worker: its work requests.
    Work(NodeId),
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Sysinfo => f.write_str("kraken.sysinfo"),
            Channel::Deployment => f.write_str("kraken.deployment"),
            Channel::Log => f.write_str("kraken.log"),
            Channel::Work(node) => write!(f, "kraken.work.{node}"),
        }
    }
}

/// A message with its sender and epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The orchestrator epoch the sender knows.
    pub epoch: u64,
    /// The sending node.
    pub from: NodeId,
    /// The message.
    pub body: Body,
}

/// The messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Work requests carry a whole manifest and are few; boxing them would only
// add an allocation to every message.
#[allow(clippy::large_enum_variant)]
pub enum Body {
    /// A worker's periodic report.
    Sysinfo(NodeReport),
    /// A deployment's status changed on a worker.
    Deployment(DeploymentReport),
    /// Log lines of one deployment.
    Log(LogBatch),
    /// Work for a worker.
    Work(WorkRequest),
}

/// What a node says about itself every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node's id.
    pub node: NodeId,
    /// Its name (host name by default).
    pub name: String,
    /// The address of its API (`http://host:port`).
    pub address: String,
    /// Its statistics.
    pub stats: NodeStats,
    /// The deployments it runs or is working on.
    pub deployments: Vec<WorkerDeployment>,
    /// When the report was made (a report delayed by a broker outage is
    /// recognised as old).
    #[serde(default = "chrono::Utc::now")]
    pub at: chrono::DateTime<chrono::Utc>,
    /// Whether the node runs apps (an orchestrator-only node does not).
    #[serde(default = "runs_apps_default")]
    pub runs_apps: bool,
    /// This run of the node's agent: a new value means the agent restarted
    /// and lost the work it had not finished.
    #[serde(default)]
    pub instance: String,
}

fn runs_apps_default() -> bool {
    true
}

/// A deployment as a worker sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDeployment {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The generation of the work it runs.
    pub generation: u64,
    /// Whether a build or start is still in progress.
    pub in_progress: bool,
    /// Its container, once started.
    pub container_id: Option<String>,
    /// Whether the container runs.
    pub running: bool,
    /// Its published host port.
    pub host_port: Option<u16>,
    /// Where people reach the app, once it runs.
    #[serde(default)]
    pub address: Option<String>,
    /// Its latest resource sample.
    pub stats: Option<ContainerStats>,
}

/// A deployment's status change on a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentReport {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The generation of the work this is about.
    pub generation: u64,
    /// The status entered.
    pub status: Status,
    /// What happened.
    pub message: String,
    /// The container, when one runs.
    pub container_id: Option<String>,
    /// The published host port.
    pub host_port: Option<u16>,
    /// Where people reach the app.
    pub address: Option<String>,
    /// The commit it runs.
    pub commit: Option<String>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// `build`, `stdout`, `stderr` or `platform` (a string on the bus; the
    /// usual names borrowed in memory, so a line costs no allocation for it).
    pub stream: std::borrow::Cow<'static, str>,
    /// The line.
    pub line: String,
}

/// A batch of log lines of one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The generation of the work that printed them.
    pub generation: u64,
    /// The lines, oldest first.
    pub lines: Vec<LogEntry>,
}

/// What a worker is to build and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The generation of this work.
    pub generation: u64,
    /// The git URL.
    pub url: String,
    /// The branch.
    pub branch: String,
    /// The exact commit to build.
    pub commit: String,
    /// The validated manifest.
    pub manifest: Manifest,
    /// The builder chosen.
    pub builder: String,
}

/// Work for one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkRequest {
    /// Build and run a deployment.
    Deploy(DeploySpec),
    /// Build the new commit, then replace the running container.
    Update(DeploySpec),
    /// Remove the deployment's container and image.
    Destroy {
        /// The deployment.
        deployment: DeploymentId,
        /// The generation being destroyed.
        generation: u64,
    },
    /// Stop any work in progress for the deployment (it moved elsewhere).
    Cancel {
        /// The deployment.
        deployment: DeploymentId,
    },
    /// A new orchestrator leads the platform from `epoch` on.
    Orchestrator {
        /// Its epoch.
        epoch: u64,
        /// Its API address.
        address: String,
    },
}

impl WorkRequest {
    /// The deployment the work is about.
    pub fn deployment(&self) -> &str {
        match self {
            WorkRequest::Deploy(s) | WorkRequest::Update(s) => &s.deployment,
            WorkRequest::Destroy { deployment, .. } | WorkRequest::Cancel { deployment } => deployment,
            WorkRequest::Orchestrator { .. } => "",
        }
    }
}

/// Acknowledges a delivery to its transport.
pub type Acker = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Who vouches for a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It came from this very process (the in-process bus): nobody else can
    /// have sent it.
    InProcess,
    /// It was signed with this key and the signature checked.
    Signed(PublicKey),
    /// Nothing vouches for it: whoever reaches the transport could have sent it.
    Unsigned,
}

/// A received message.
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Who vouches for it; handlers act only on messages from whom they expect.
    pub origin: Origin,
    acker: Option<Acker>,
}

impl Delivery {
    /// A delivery that `acker` acknowledges (none: nothing to acknowledge),
    /// with nothing vouching for it ([`Origin::Unsigned`]).
    pub fn new(envelope: Envelope, acker: Option<Acker>) -> Self {
        Self { envelope, origin: Origin::Unsigned, acker }
    }

    /// The same delivery, vouched for by `origin`.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Tells the transport the message was handled, so it is not redelivered.
    pub async fn ack(mut self) {
        if let Some(acker) = self.acker.take() {
            acker().await;
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The messages of one channel, as they arrive.
pub type Subscription = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The channel already has its consumer in this process.
    #[error("channel {0} already has a consumer")]
    AlreadySubscribed(String),
    /// The transport is closed or unreachable.
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    /// A message could not be encoded.
    #[error("could not encode a message: {0}")]
    Encode(String),
}

/// A transport for the bus.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `envelope` on `channel`. Returns once the transport holds it (for
    /// a broker: once the broker confirmed it).
    async fn publish(&self, channel: &Channel, envelope: &Envelope) -> Result<(), BusError>;
    /// Starts consuming `channel`.
    async fn subscribe(&self, channel: &Channel) -> Result<Subscription, BusError>;

    /// Whether the transport can carry messages right now. While it cannot,
    /// silence from other nodes says nothing about them.
    fn is_connected(&self) -> bool {
        true
    }
}
