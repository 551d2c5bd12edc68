//! Deployments and nodes for the orchestrator's unit tests.

use chrono::Utc;

use crate::deployment::{Deployment, Desired, Status};
use crate::shipwreck::Manifest;
use crate::state::{NodeRecord, Role};

/// A node that is up, runs apps, is idle and reported just now.
pub(crate) fn node(id: &str) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        name: format!("{id}-name"),
        role: Role::Worker,
        address: format!("http://{id}:8000"),
        up: true,
        last_heartbeat: Some(Utc::now()),
        rollover_priority: 0,
        drained: false,
        runs_apps: true,
        deployments: Vec::new(),
        stats: Default::default(),
        history: Default::default(),
        public_key: None,
    }
}

/// A deployment in `status` (wanted destroyed if `status` is on the
/// destruction path), on no node, with no app data yet.
pub(crate) fn deployment(id: &str, status: Status) -> Deployment {
    let mut d =
        Deployment::new(id.into(), format!("https://example.org/{id}.git"), "main".into(), Utc::now());
    if status.is_destruction() {
        d.desired = Desired::Destroyed;
    }
    if status != Status::DeploymentRequested {
        d.transition(status, "now", Utc::now());
    }
    d
}

/// `d` with its app data read: a commit, a manifest and a builder.
pub(crate) fn with_app_data(mut d: Deployment) -> Deployment {
    let text = "[app]\nname = \"hello\"\n\n[config]\nport = 8080\nlang = \"node\"\nrun = \"node index.js\"\n";
    d.manifest =
        Some(Manifest::parse("shipwreck.toml", text, &["node".to_string()]).expect("a valid manifest"));
    d.commit = Some("0123456789abcdef".into());
    d.builder = Some("node".into());
    d.name = Some("hello".into());
    d
}
