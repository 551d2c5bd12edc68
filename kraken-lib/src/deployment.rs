//! Deployment records and the lifecycle they go through.
//!
//! A deployment is one app (a git URL and branch) that the platform keeps
//! running. Its [`Status`] follows the lifecycle
//! `DeploymentRequested → ValidatingDeploymentData → RetrievingApplicationData →
//! DelegatingDeployment → BuildingDeployment → (TestingDeployment) → Deploying →
//! Running`, with `Errored` possible from any step, `UpdateRequested` to redeploy
//! the branch's newest commit, and `DestructionRequested → DelegatingDestruction →
//! DestructionInProgress → Destroyed` to remove it. Every change is kept, with
//! its time and a message, in the deployment's status history.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runtime::ContainerStats;
use crate::shipwreck::Manifest;

/// A deployment's id: 12 lowercase hex characters.
pub type DeploymentId = String;
/// A node's id: stable, kept in the node's data directory.
pub type NodeId = String;

/// How many resource samples a deployment keeps for its graphs.
pub const STATS_HISTORY: usize = 120;

/// Where a deployment is in its lifecycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, utoipa::ToSchema,
)]
pub enum Status {
    /// Accepted and stored; nothing done yet.
    DeploymentRequested,
    /// The request's URL and branch are being checked.
    ValidatingDeploymentData,
    /// The repository is being fetched and its `shipwreck.toml` read.
    RetrievingApplicationData,
    /// A worker is being chosen and handed the work.
    DelegatingDeployment,
    /// The worker is building the image.
    BuildingDeployment,
    /// The manifest's `test` command runs in the built image.
    TestingDeployment,
    /// The container is being started.
    Deploying,
    /// The app runs and its port is published.
    Running,
    /// A step failed; the history's last message says why.
    Errored,
    /// The newest commit of the branch is to be deployed.
    UpdateRequested,
    /// Removal was asked for.
    DestructionRequested,
    /// The worker running it is being told to remove it.
    DelegatingDestruction,
    /// The worker is removing its container and image.
    DestructionInProgress,
    /// Removed; kept for its history.
    Destroyed,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 14] = [
        Status::DeploymentRequested,
        Status::ValidatingDeploymentData,
        Status::RetrievingApplicationData,
        Status::DelegatingDeployment,
        Status::BuildingDeployment,
        Status::TestingDeployment,
        Status::Deploying,
        Status::Running,
        Status::Errored,
        Status::UpdateRequested,
        Status::DestructionRequested,
        Status::DelegatingDestruction,
        Status::DestructionInProgress,
        Status::Destroyed,
    ];

    /// The status's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::DeploymentRequested => "DeploymentRequested",
            Status::ValidatingDeploymentData => "ValidatingDeploymentData",
            Status::RetrievingApplicationData => "RetrievingApplicationData",
            Status::DelegatingDeployment => "DelegatingDeployment",
            Status::BuildingDeployment => "BuildingDeployment",
            Status::TestingDeployment => "TestingDeployment",
            Status::Deploying => "Deploying",
            Status::Running => "Running",
            Status::Errored => "Errored",
            Status::UpdateRequested => "UpdateRequested",
            Status::DestructionRequested => "DestructionRequested",
            Status::DelegatingDestruction => "DelegatingDestruction",
            Status::DestructionInProgress => "DestructionInProgress",
            Status::Destroyed => "Destroyed",
        }
    }

    /// Whether a worker holds the deployment's work in this status.
    pub fn is_with_worker(self) -> bool {
        matches!(
            self,
            Status::DelegatingDeployment
                | Status::BuildingDeployment
                | Status::TestingDeployment
                | Status::Deploying
                | Status::DelegatingDestruction
                | Status::DestructionInProgress
        )
    }

    /// Whether the status belongs to the destruction path.
    pub fn is_destruction(self) -> bool {
        matches!(
            self,
            Status::DestructionRequested
                | Status::DelegatingDestruction
                | Status::DestructionInProgress
                | Status::Destroyed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a deployment's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    /// The status entered.
    pub status: Status,
    /// When.
    pub at: DateTime<Utc>,
    /// What happened, for people.
    pub message: String,
}

/// What the person asked the deployment to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Desired {
    /// Keep it running.
    Running,
    /// Remove it.
    Destroyed,
}

/// One sample of a deployment's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsSample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// CPU in percent of one core.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
}

/// Everything the platform knows about a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    /// Its id.
    #[schema(value_type = String)]
    pub id: DeploymentId,
    /// The git URL.
    pub url: String,
    /// The branch.
    pub branch: String,
    /// The app's name from its manifest, once read.
    pub name: Option<String>,
    /// The commit deployed (or being deployed).
    pub commit: Option<String>,
    /// The current status.
    pub status: Status,
    /// Every status it went through, oldest first.
    pub status_history: Vec<StatusChange>,
    /// The reason of the last failure, while it matters.
    pub error: Option<String>,
    /// What the person asked for.
    pub desired: Desired,
    /// Bumped on every hand-over to a worker; work and reports carry it, so a
    /// stale or replayed message is recognised and ignored.
    pub generation: u64,
    /// The node running (or building) it.
    #[schema(value_type = Option<String>)]
    pub node: Option<NodeId>,
    /// Where people reach the app: `http://host:port`.
    pub address: Option<String>,
    /// The published host port.
    pub host_port: Option<u16>,
    /// The container's id on its node's engine.
    pub container_id: Option<String>,
    /// The builder used and why it was chosen.
    pub builder: Option<String>,
    /// Why that builder.
    pub builder_reason: Option<String>,
    /// The parsed manifest.
    pub manifest: Option<Manifest>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The latest resource sample (not persisted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ContainerStats>,
    /// Recent resource samples, oldest first (not persisted).
    #[serde(default)]
    #[schema(value_type = Vec<StatsSample>)]
    pub stats_history: VecDeque<StatsSample>,
}

impl Deployment {
    /// A new deployment request for `url` and `branch`.
    pub fn new(id: DeploymentId, url: String, branch: String, now: DateTime<Utc>) -> Self {
        Self {
            id,
            url,
            branch,
            name: None,
            commit: None,
            status: Status::DeploymentRequested,
            status_history: vec![StatusChange {
                status: Status::DeploymentRequested,
                at: now,
                message: "deployment requested".to_string(),
            }],
            error: None,
            desired: Desired::Running,
            generation: 0,
            node: None,
            address: None,
            host_port: None,
            container_id: None,
            builder: None,
            builder_reason: None,
            manifest: None,
            created_at: now,
            updated_at: now,
            stats: None,
            stats_history: VecDeque::new(),
        }
    }

    /// Moves to `status`, recording it with `message` in the history. Entering
    /// `Errored` keeps `message` as the error; a new request clears it.
    pub fn transition(&mut self, status: Status, message: impl Into<String>, now: DateTime<Utc>) {
        let message = message.into();
        match status {
            Status::Errored => self.error = Some(message.clone()),
            Status::UpdateRequested | Status::DestructionRequested => self.error = None,
            _ => {}
        }
        self.status = status;
        self.updated_at = now;
        self.status_history.push(StatusChange { status, at: now, message });
    }

    /// Adds a resource sample, dropping the oldest beyond [`STATS_HISTORY`].
    pub fn push_stats(&mut self, stats: ContainerStats, at: DateTime<Utc>) {
        self.stats = Some(stats);
        self.stats_history.push_back(StatsSample {
            at,
            cpu_percent: stats.cpu_percent,
            memory_bytes: stats.memory_bytes,
        });
        while self.stats_history.len() > STATS_HISTORY {
            self.stats_history.pop_front();
        }
    }

    /// The short form the list endpoints and events use.
    pub fn summary(&self) -> DeploymentSummary {
        DeploymentSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
            branch: self.branch.clone(),
            commit: self.commit.clone(),
            status: self.status,
            node: self.node.clone(),
            address: self.address.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A deployment in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentSummary {
    /// Its id.
    #[schema(value_type = String)]
    pub id: DeploymentId,
    /// The app's name, once known.
    pub name: Option<String>,
    /// The git URL.
    pub url: String,
    /// The branch.
    pub branch: String,
    /// The commit.
    pub commit: Option<String>,
    /// The current status.
    pub status: Status,
    /// The node.
    #[schema(value_type = Option<String>)]
    pub node: Option<NodeId>,
    /// Where people reach it.
    pub address: Option<String>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Whether `address` is an `http://` or `https://` address that may be shown
/// as a link: a host after the scheme, no spaces or control characters, at
/// most 2048 bytes. Anything else a node reports (say `javascript:…`) is not
/// kept as an app's or a node's address.
pub fn is_web_address(address: &str) -> bool {
    let lower = address.get(..8).unwrap_or(address).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &address[8..]
    } else if lower.starts_with("http://") {
        &address[7..]
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    address.len() <= 2048
        && !host.is_empty()
        && !address.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
}

/// A fresh random id of `bytes` bytes in lowercase hex, for names that need
/// to be unique but not secret (deployments, nodes). Secrets (tokens, keys)
/// come from [`crate::auth`], which refuses to make one without the system's
/// random source.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom only fails when the OS has no entropy source at all, which a
    // Linux machine always has; an id (never a secret) then falls back to
    // time-derived bytes rather than a panic.
    if getrandom::getrandom(&mut buf).is_err() {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_recorded_in_order_with_the_error() {
        let t0 = Utc::now();
        let mut d = Deployment::new("abc".into(), "file:///x".into(), "main".into(), t0);
        d.transition(Status::ValidatingDeploymentData, "checking", t0);
        d.transition(Status::Errored, "branch missing", t0);
        let statuses: Vec<_> = d.status_history.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [Status::DeploymentRequested, Status::ValidatingDeploymentData, Status::Errored]
        );
        assert_eq!(d.error.as_deref(), Some("branch missing"));
        assert_eq!(d.status, Status::Errored);
    }

    #[test]
    fn stats_history_is_bounded() {
        let t0 = Utc::now();
        let mut d = Deployment::new("abc".into(), "u".into(), "b".into(), t0);
        for i in 0..(STATS_HISTORY + 10) {
            d.push_stats(
                ContainerStats { cpu_percent: i as f64, memory_bytes: 1, memory_limit_bytes: 0 },
                t0,
            );
        }
        assert_eq!(d.stats_history.len(), STATS_HISTORY);
        assert_eq!(d.stats_history.front().map(|s| s.cpu_percent), Some(10.0));
    }

    #[test]
    fn status_names_round_trip_through_json() {
        for s in Status::ALL {
            let json = serde_json::to_string(&s).expect("serialises");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            let back: Status = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn only_http_addresses_count_as_web_addresses() {
        for ok in ["http://192.168.1.20:5000", "https://pi.local/", "HTTP://host:1/path?q#f"] {
            assert!(is_web_address(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript://%0aalert(1)",
            "data:text/html,<b>x</b>",
            "http://",
            "http:///x",
            "http://a b",
            "http://x\n",
            "ftp://host/",
            "//host/x",
            "",
        ] {
            assert!(!is_web_address(bad), "{bad:?}");
        }
        assert!(!is_web_address(&format!("http://h/{}", "a".repeat(3000))));
    }

    #[test]
    fn random_ids_differ_and_are_hex() {
        let a = random_id(6);
        let b = random_id(6);
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
