//! The bodies the HTTP API takes and gives, shared by the server (which
//! serialises them) and [`Client`](super::Client) (which reads them), so the
//! two cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::{PublicKey, TokenHash};
use crate::builder::plan::BuildPlan;
use crate::deployment::{Deployment, DeploymentId, DeploymentSummary, Status};
use crate::rollover::replication::ReplicationStatus;
use crate::shipwreck::Manifest;
use crate::state::{LogLine, NodeRecord};

/// The body of validate and create calls.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// An https://, http:// or git:// URL (an agent started with
    /// `--allow-local-sources` also takes local paths and file:// URLs).
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r"^(?:[Hh][Tt][Tt][Pp][Ss]?|[Gg][Ii][Tt])://[^/?#\s]+"
    )]
    pub url: String,
    /// The branch (default `main`).
    #[serde(default = "default_branch")]
    #[schema(min_length = 1, max_length = 255, default = "main")]
    pub branch: String,
}

fn default_branch() -> String {
    "main".to_string()
}

/// The answer of a call that changed the platform (create, update, destroy).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The deployment.
    #[schema(value_type = String)]
    pub id: DeploymentId,
    /// Its status now.
    pub status: Status,
    /// Whether the change reached the copy of the state on the rollover
    /// candidate before the answer (false on a platform without one).
    pub replicated: bool,
}

/// The answer of drain and undrain calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Drained {
    /// The node.
    pub id: String,
    /// Whether it takes no new work now.
    pub drained: bool,
    /// Whether the change reached the rollover candidate's copy first.
    pub replicated: bool,
}

/// What `POST /api/v1/validate` found in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Validation {
    /// The app's manifest.
    pub manifest: Manifest,
    /// The builder chosen.
    pub builder: String,
    /// Why that builder.
    pub reason: String,
    /// The commit read.
    pub commit: String,
    /// The whole build plan.
    pub plan: BuildPlan,
}

/// One page of the list of deployments, oldest request first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct DeploymentPage {
    /// The deployments of this page, in their short form.
    pub items: Vec<DeploymentSummary>,
    /// The cursor of the next page (`?after=` it), or `null` when this page
    /// is the last.
    pub next: Option<String>,
}

/// One page of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
    /// The offset to ask for next.
    pub next_offset: u64,
}

/// The answer of `GET /ping`: who answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct PingAnswer {
    /// Always `kraken`.
    pub service: String,
    /// The agent's version.
    #[serde(default)]
    pub version: String,
    /// Its node id.
    pub node_id: String,
    /// Its node name.
    pub node_name: String,
    /// `orchestrator` or `worker`.
    pub role: String,
    /// Its epoch: higher means a later orchestrator.
    pub epoch: u64,
    /// The orchestrator a worker follows (`http://host:port`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// A worker's place in the rollover order (1 holds the replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollover_priority: Option<u32>,
    /// Whether a worker's replica is in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_ready: Option<bool>,
}

/// The answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always true when it answers.
    pub ok: bool,
    /// The node.
    pub node_id: String,
    /// `orchestrator` or `worker`.
    pub role: String,
    /// Its epoch.
    pub epoch: u64,
}

/// The answer of `GET /api/v1/platform`: the platform at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct PlatformInfo {
    /// The orchestrator's version.
    pub version: String,
    /// The orchestrator's epoch.
    pub epoch: u64,
    /// The node running the orchestrator.
    pub orchestrator: OrchestratorInfo,
    /// How many nodes the platform knows.
    pub node_count: usize,
    /// How many of them reported within the grace period.
    pub nodes_up: usize,
    /// How many deployments it holds (destroyed ones included).
    pub deployment_count: usize,
    /// How many deployments are in each status (statuses with none are left out).
    pub deployments_by_status: BTreeMap<String, usize>,
    /// Whether changes are copied to a rollover candidate before they are acknowledged.
    pub replication: ReplicationStatus,
}

/// The node running the orchestrator, as the platform call names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct OrchestratorInfo {
    /// Its node id.
    pub node_id: String,
    /// Its name.
    pub name: String,
    /// Its API address.
    pub address: String,
}

/// One builder of `GET /api/v1/builders`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct BuilderInfo {
    /// The name a manifest's `lang` gives.
    pub name: String,
    /// What it builds.
    pub description: String,
    /// An example `shipwreck.toml` for it.
    pub example: String,
}

/// The data of a `lagged` event of `GET /api/v1/events`: the stream fell
/// behind and dropped events, so the records should be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Lagged {
    /// How many events were missed.
    pub missed: u64,
}

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what would be right.
    pub error: String,
}

/// The body of a join request.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The joining node's id.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub node_id: String,
    /// Its name.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Its API address.
    #[schema(pattern = r"^https?://[^\s/?#]+")]
    pub address: String,
    /// The platform's join token.
    pub join_token: String,
    /// The key it signs its messages with (64 hex digits); the orchestrator
    /// believes only messages from this node that carry its signature.
    pub public_key: String,
}

/// The answer to a successful join.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct JoinAnswer {
    /// The broker to connect to.
    pub amqp_url: String,
    /// The orchestrator epoch.
    pub epoch: u64,
    /// The orchestrator's node id.
    pub orchestrator_id: String,
    /// The orchestrator's API address.
    pub orchestrator_address: String,
    /// The key the orchestrator signs work with; workers act only on work
    /// signed with it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub orchestrator_key: Option<PublicKey>,
}

/// The body of `POST /api/v1/replica/ack`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAck {
    /// The session of the stream (from its snapshot).
    pub session: String,
    /// Every change up to this version is stored.
    pub version: u64,
}

/// The first event of the replica stream: everything a rollover candidate needs.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// The orchestrator's epoch.
    pub epoch: u64,
    /// The orchestrator's node id.
    pub orchestrator_id: String,
    /// The hash of the platform token (enough to check it, not to learn it).
    #[schema(value_type = String)]
    pub token_hash: TokenHash,
    /// The hash of the join token.
    #[schema(value_type = String)]
    pub join_token_hash: TokenHash,
    /// Every deployment, with its status history.
    pub deployments: Vec<Deployment>,
    /// Every node.
    pub nodes: Vec<NodeRecord>,
    /// The broker the platform started itself, if it did: image, port, user
    /// and password, so a new orchestrator can start it again.
    #[serde(default)]
    pub broker: Option<(String, u16, String, String)>,
    /// The state's version the records above are at; every later event
    /// carries its own version as its `id`.
    #[serde(default)]
    pub version: u64,
    /// The session to name when confirming versions (`POST /api/v1/replica/ack`).
    #[serde(default)]
    pub session: String,
}

/// One event of `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ApiEvent {
    /// A deployment changed; its short form (as in the list of deployments).
    Deployment(Box<DeploymentSummary>),
    /// A node changed; the whole record.
    Node(Box<NodeRecord>),
    /// The replication status changed (`state`, `reason`, `candidate`).
    Replication(serde_json::Value),
    /// The stream fell behind and dropped this many events: read the
    /// records again.
    Lagged {
        /// How many events were missed.
        missed: u64,
    },
    /// An event this client does not know (a newer server).
    Other {
        /// The event's name.
        event: String,
        /// Its data.
        data: String,
    },
}
