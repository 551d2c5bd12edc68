//! The deployments of one node, read without copying every other
//! deployment: a node's report is checked against what it should hold, and
//! with many nodes and deployments a copy of all of them per report was
//! most of the orchestrator's work.

use super::State;
use crate::deployment::Deployment;

impl State {
    /// The deployments placed on node `node`, oldest request first.
    pub fn deployments_on(&self, node: &str) -> Vec<Deployment> {
        let mut on: Vec<Deployment> =
            self.lock().deployments.values().filter(|d| d.node.as_deref() == Some(node)).cloned().collect();
        on.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        on
    }
}
