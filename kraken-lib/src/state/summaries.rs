//! The list of deployment summaries together with the version of the state
//! it shows, read at one moment, so a copy of the list can be kept until the
//! state changes.

use crate::deployment::{Deployment, DeploymentSummary};

use super::State;

impl State {
    /// The summaries of all deployments, oldest request first, and the
    /// version of the last durable change they include. Every change of a
    /// deployment that a summary shows is a new version.
    pub fn versioned_summaries(&self) -> (u64, Vec<DeploymentSummary>) {
        let inner = self.lock();
        let mut all: Vec<&Deployment> = inner.deployments.values().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        (inner.version, all.into_iter().map(Deployment::summary).collect())
    }
}
