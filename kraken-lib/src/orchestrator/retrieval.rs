//! Reading a deployment's repository for the orchestrator: the fetch runs in
//! a task of its own (through the node's bounded fetcher) and reports back
//! through a channel; what it found is stored on the deployment, which is
//! then handed to a node (or back to its node, for an update). The fetched
//! tree is kept for this agent's own worker (`GenericNode::fetched`), so a
//! deployment placed here is not fetched a second time.

use tracing::{debug, warn};

use super::actions::Action;
use super::reconcile::delegation;
use super::OrchestrationExecutor;
use crate::deployment::{DeploymentId, Desired, Status};
use crate::node::GenericNode;
use crate::retrieval::{retrieve_keeping, RetrieveError, Retrieved};

/// A fetch the orchestrator started, finished.
#[derive(Debug)]
pub(super) struct RetrievalDone {
    /// The deployment it was for.
    pub deployment: DeploymentId,
    /// Whether it was for an update of a running deployment.
    pub update: bool,
    /// What it found, or why it failed.
    pub result: Result<Retrieved, RetrieveError>,
}

impl OrchestrationExecutor {
    /// Starts fetching `url` (`branch`) for `deployment`, unless a fetch for
    /// it runs already.
    pub(super) fn start_retrieval(
        &mut self,
        node: &GenericNode,
        deployment: DeploymentId,
        url: String,
        branch: String,
        update: bool,
    ) {
        if !self.retrieving.insert(deployment.clone()) {
            return;
        }
        let registry = self.registry.clone();
        let fetcher = node.fetcher.clone();
        let root = node.config.data_dir.join("fetch");
        let tx = self.done_tx.clone();
        let kept = node.fetched.clone();
        tokio::spawn(async move {
            // The platform's own work waits its turn in the fetch queue.
            let result = retrieve_keeping(&fetcher, true, &url, &branch, &registry, &root).await;
            let result = result.map(|(found, tree)| {
                // Kept before the result is handed on, so it is there when
                // this agent's worker gets the work.
                kept.keep(&deployment, &found.commit, tree);
                found
            });
            let _ = tx.send(RetrievalDone { deployment, update, result });
        });
    }

    /// Stores what a finished fetch found and hands the deployment on.
    pub(super) async fn on_retrieved(&mut self, node: &GenericNode, done: RetrievalDone) {
        self.retrieving.remove(&done.deployment);
        if !self.hand_on(node, &done).await {
            // Nobody will build what was fetched. (A deployment placed on
            // another node loses its tree when it is placed.)
            node.fetched.discard(&done.deployment);
        }
    }

    /// Stores what a finished fetch found and hands the deployment on;
    /// whether it was handed to a node.
    async fn hand_on(&mut self, node: &GenericNode, done: &RetrievalDone) -> bool {
        let Some(d) = self.state.deployment(&done.deployment) else { return false };
        if d.desired != Desired::Running {
            return false;
        }
        let expected = if done.update { Status::UpdateRequested } else { Status::RetrievingApplicationData };
        if d.status != expected {
            debug!(deployment = %d.id, status = %d.status, "a fetch finished for a deployment that moved on");
            return false;
        }
        let transition =
            |status, message: String| Action::Transition { deployment: d.id.clone(), status, message };
        let r = match &done.result {
            Ok(r) => r,
            Err(e) => {
                let reason = e.to_string();
                if done.update && d.container_id.is_some() {
                    let message = format!("update not possible, still running the previous commit: {reason}");
                    self.apply(node, transition(Status::Running, message)).await;
                    let _ = self.state.update_deployment(&d.id, |d| {
                        d.error = Some(reason.clone());
                        true
                    });
                } else {
                    self.apply(node, transition(Status::Errored, reason)).await;
                }
                return false;
            }
        };
        let short = r.commit.get(..8).unwrap_or(&r.commit).to_string();
        if done.update && d.commit.as_deref() == Some(r.commit.as_str()) && d.container_id.is_some() {
            let message = format!("already at the newest commit {short}");
            self.apply(node, transition(Status::Running, message)).await;
            return false;
        }
        let starts =
            r.plan.start.as_ref().map(|s| format!("; starts with `{}`", s.command)).unwrap_or_default();
        let message = format!(
            "{} `{}` at commit {short}: {} builder ({}){starts}",
            if done.update { "updating to" } else { "read" },
            r.manifest.app.name,
            r.detection.builder,
            r.detection.reason
        );
        let stored = self.state.update_deployment(&d.id, |d| {
            d.name = Some(r.manifest.app.name.clone());
            d.commit = Some(r.commit.clone());
            d.builder = Some(r.detection.builder.clone());
            d.builder_reason = Some(r.detection.reason.clone());
            d.manifest = Some(r.manifest.clone());
            d.error = None;
            true
        });
        if let Err(e) = stored {
            warn!(deployment = %d.id, error = %e, "could not store the app data");
            return false;
        }
        let on_live_node = d.node.as_deref().and_then(|n| self.state.node(n)).filter(|n| n.up);
        match (done.update, on_live_node, d.container_id.is_some()) {
            (true, Some(target), true) => {
                let message = format!("{message}; handing the update to {}", target.name);
                let hand_over =
                    Action::HandOver { deployment: d.id.clone(), node: target.id, update: true, message };
                self.apply(node, hand_over).await;
            }
            _ => {
                self.apply(node, transition(Status::DelegatingDeployment, message)).await;
                for action in delegation(&d.id, self.state.deployments(), &self.state.nodes(), "") {
                    self.apply(node, action).await;
                }
            }
        }
        true
    }
}
