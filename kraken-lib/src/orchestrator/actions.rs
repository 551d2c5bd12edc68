//! What the orchestrator decides to do, as data ([`Action`]), and the thin
//! part that does it: writes to the state and work sent on the bus. Every
//! decision is made by a pure function ([`super::reconcile`],
//! [`super::placement`], [`super::resume`], [`super::fencing`]); only this
//! file and the loop in `orchestrator.rs` have effects.

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use tracing::{info, warn};

use super::error::OrchestratorError;
use super::OrchestrationExecutor;
use crate::bus::{Body, Channel, DeploySpec, WorkRequest};
use crate::deployment::{Deployment, DeploymentId, Desired, NodeId, Status};
use crate::node::GenericNode;

/// One thing the orchestrator decided to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Mark a node down: it was silent for longer than the grace period.
    MarkDown {
        /// The node.
        node: NodeId,
        /// For how long it was silent, in milliseconds (for the log).
        silent_ms: i64,
    },
    /// Store a node's rollover priority.
    SetPriority {
        /// The node.
        node: NodeId,
        /// Its new priority.
        priority: u32,
    },
    /// Move a deployment to `status`, saying why.
    Transition {
        /// The deployment.
        deployment: DeploymentId,
        /// Its new status.
        status: Status,
        /// Why, for its status history.
        message: String,
    },
    /// Fetch a deployment's repository and read its manifest (unless a fetch
    /// for it runs already).
    Retrieve {
        /// The deployment.
        deployment: DeploymentId,
        /// Its git URL.
        url: String,
        /// Its branch.
        branch: String,
        /// Whether this fetch is for an update of a running deployment.
        update: bool,
    },
    /// Hand a deployment to a node chosen for it as a fresh deploy: a new
    /// generation, no container yet.
    Place {
        /// The deployment.
        deployment: DeploymentId,
        /// The node chosen.
        node: NodeId,
        /// Why, for its status history.
        message: String,
    },
    /// Hand a deployment again to the node it is on (a new generation, its
    /// container kept): as an update when `update`, else as a deploy.
    HandOver {
        /// The deployment.
        deployment: DeploymentId,
        /// Its node.
        node: NodeId,
        /// Whether the node is to replace a container it runs.
        update: bool,
        /// Why, for its status history.
        message: String,
    },
    /// A node's agent, started again, found the deployment's container of
    /// the current generation running: it is Running there.
    Found {
        /// The deployment.
        deployment: DeploymentId,
        /// The container.
        container: String,
        /// Its host port, if the node said.
        host_port: Option<u16>,
        /// Where people reach it, if the node said.
        address: Option<String>,
        /// Why, for its status history.
        message: String,
    },
    /// No node can take a deployment now: it waits, on no node, for one.
    AwaitNode {
        /// The deployment.
        deployment: DeploymentId,
        /// Why, for its status history.
        message: String,
    },
    /// Ask a node to remove a deployment's container and image.
    Destroy {
        /// The node.
        node: NodeId,
        /// The deployment.
        deployment: DeploymentId,
        /// The generation to remove.
        generation: u64,
    },
}

/// When work for a deployment was last sent (or its node last answered
/// about it), and to which run of its node's agent.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// By the clock here.
    pub at: Instant,
    /// By the wall clock (compared with the time of a report).
    pub wall: chrono::DateTime<Utc>,
    /// The node it was sent to.
    pub target: String,
    /// The run of the node's agent that was current then, if one had reported.
    pub instance: Option<String>,
}

/// The work a worker gets for deployment `d`; `None` while its app data
/// (commit, manifest, builder) is not known.
pub(crate) fn spec(d: &Deployment) -> Option<DeploySpec> {
    Some(DeploySpec {
        deployment: d.id.clone(),
        generation: d.generation,
        url: d.url.clone(),
        branch: d.branch.clone(),
        commit: d.commit.clone()?,
        manifest: d.manifest.clone()?,
        builder: d.builder.clone()?,
    })
}

/// Whether moving `d` to `status` still serves what the person wants: a
/// decision made from an earlier read must not undo a destroy (or a deploy)
/// the API stored since.
fn still_wanted(d: &Deployment, status: Status) -> bool {
    let wanted = if status.is_destruction() { Desired::Destroyed } else { Desired::Running };
    d.desired == wanted
}

impl OrchestrationExecutor {
    /// Does what `action` says. A failed state write is logged and left to a
    /// later pass, which decides again from what was stored.
    pub(super) async fn apply(&mut self, node: &GenericNode, action: Action) {
        if let Err(e) = self.try_apply(node, action).await {
            warn!(error = %e, "an action of the orchestrator failed; a later pass tries again");
        }
    }

    async fn try_apply(&mut self, node: &GenericNode, action: Action) -> Result<(), OrchestratorError> {
        let store = |id: &str| {
            let id = id.to_string();
            move |source| OrchestratorError::Store { what: id, source }
        };
        match action {
            Action::MarkDown { node: id, silent_ms } => {
                warn!(node = %id, silent_ms, "no report within the grace period; marking the node down");
                self.state
                    .update_node(&id, |n| {
                        n.up = false;
                        true
                    })
                    .map_err(store(&id))?;
            }
            Action::SetPriority { node: id, priority } => {
                self.state
                    .update_node(&id, |n| {
                        let differs = n.rollover_priority != priority;
                        n.rollover_priority = priority;
                        differs
                    })
                    .map_err(store(&id))?;
            }
            Action::Transition { deployment, status, message } => {
                info!(%deployment, %status, %message, "status");
                self.state
                    .update_deployment(&deployment, |d| {
                        let wanted = still_wanted(d, status);
                        if wanted {
                            d.transition(status, message, Utc::now());
                        }
                        wanted
                    })
                    .map_err(store(&deployment))?;
            }
            Action::Retrieve { deployment, url, branch, update } => {
                self.start_retrieval(node, deployment, url, branch, update);
            }
            Action::Place { deployment, node: target, message } => {
                info!(%deployment, node = %target, %message, "status");
                let mut placed = false;
                let d = self
                    .state
                    .update_deployment(&deployment, |d| {
                        placed = still_wanted(d, Status::DelegatingDeployment);
                        if placed {
                            d.generation += 1;
                            d.node = Some(target.clone());
                            d.container_id = None;
                            d.transition(Status::DelegatingDeployment, message, Utc::now());
                        }
                        placed
                    })
                    .map_err(store(&deployment))?;
                if target != node.id {
                    // The tree this agent fetched is for its own worker only.
                    node.fetched.discard(&deployment);
                }
                if let Some(spec) = d.as_ref().filter(|_| placed).and_then(spec) {
                    self.send_work(node, &target, WorkRequest::Deploy(spec)).await;
                }
            }
            Action::HandOver { deployment, node: target, update, message } => {
                info!(%deployment, node = %target, %message, "status");
                let mut handed = false;
                let d = self
                    .state
                    .update_deployment(&deployment, |d| {
                        handed = still_wanted(d, Status::DelegatingDeployment);
                        if handed {
                            d.generation += 1;
                            d.transition(Status::DelegatingDeployment, message, Utc::now());
                        }
                        handed
                    })
                    .map_err(store(&deployment))?;
                if !handed {
                    return Ok(());
                }
                if target != node.id {
                    node.fetched.discard(&deployment);
                }
                match d.as_ref().and_then(spec) {
                    Some(spec) if update => self.send_work(node, &target, WorkRequest::Update(spec)).await,
                    Some(spec) => self.send_work(node, &target, WorkRequest::Deploy(spec)).await,
                    // The decision to hand it over was made knowing its
                    // app data; it can only be missing if the deployment
                    // changed since, and the next pass decides again.
                    None => warn!(%deployment, "no app data to hand over; the next pass decides again"),
                }
            }
            Action::Found { deployment, container, host_port, address, message } => {
                info!(%deployment, %message, "status");
                self.state
                    .update_deployment(&deployment, |d| {
                        if !still_wanted(d, Status::Running) {
                            return false;
                        }
                        d.container_id = Some(container);
                        d.host_port = host_port.or(d.host_port);
                        d.address = address.or(d.address.take());
                        d.error = None;
                        d.transition(Status::Running, message, Utc::now());
                        true
                    })
                    .map_err(store(&deployment))?;
            }
            Action::AwaitNode { deployment, message } => {
                info!(%deployment, %message, "status");
                self.state
                    .update_deployment(&deployment, |d| {
                        if !still_wanted(d, Status::DelegatingDeployment) {
                            return false;
                        }
                        d.node = None;
                        d.transition(Status::DelegatingDeployment, message, Utc::now());
                        true
                    })
                    .map_err(store(&deployment))?;
            }
            Action::Destroy { node: target, deployment, generation } => {
                self.send_work(node, &target, WorkRequest::Destroy { deployment, generation }).await
            }
        }
        Ok(())
    }

    /// Sends `work` to node `target`, remembering when (unless it is a
    /// cancel, which says nothing about the work that node holds). A send
    /// that fails is logged: a later pass or report sends it again.
    /// Places each `(deployment, node, message)`: the deployments still
    /// wanted are stored as delegated to their node in one durable commit,
    /// then each node is sent its work. A failed commit is logged and left to
    /// a later pass, which decides again from what was stored.
    pub(super) async fn place_all(
        &mut self,
        node: &GenericNode,
        places: Vec<(DeploymentId, String, String)>,
    ) {
        let ids: Vec<DeploymentId> = places.iter().map(|(d, _, _)| d.clone()).collect();
        let chosen: HashMap<&str, (&str, &str)> =
            places.iter().map(|(d, t, m)| (d.as_str(), (t.as_str(), m.as_str()))).collect();
        let stored = self.state.update_deployments(&ids, |d| {
            let Some((target, message)) = chosen.get(d.id.as_str()) else { return false };
            if !still_wanted(d, Status::DelegatingDeployment) {
                return false;
            }
            info!(deployment = %d.id, node = %target, %message, "status");
            d.generation += 1;
            d.node = Some(target.to_string());
            d.container_id = None;
            d.transition(Status::DelegatingDeployment, message.to_string(), Utc::now());
            true
        });
        let stored = match stored {
            Ok(stored) => stored,
            Err(source) => {
                let e = OrchestratorError::Store { what: format!("{} placements", ids.len()), source };
                warn!(error = %e, "an action of the orchestrator failed; a later pass tries again");
                return;
            }
        };
        for ((deployment, target, _), after) in places.iter().zip(stored) {
            if *target != node.id {
                // The tree this agent fetched is for its own worker only.
                node.fetched.discard(deployment);
            }
            if let Some(spec) = after.filter(|(_, placed)| *placed).and_then(|(d, _)| spec(&d)) {
                self.send_work(node, target, WorkRequest::Deploy(spec)).await;
            }
        }
    }

    pub(super) async fn send_work(&mut self, node: &GenericNode, target: &str, work: WorkRequest) {
        let id = work.deployment().to_string();
        let holds = !matches!(work, WorkRequest::Cancel { .. });
        match node.publish(&Channel::Work(target.to_string()), Body::Work(work)).await {
            Ok(()) if holds => {
                let instance = self.instances.get(target).cloned();
                let sent =
                    Sent { at: Instant::now(), wall: Utc::now(), target: target.to_string(), instance };
                self.sent.insert(id, sent);
            }
            Ok(()) => {}
            Err(source) => {
                let e = OrchestratorError::Send { deployment: id, node: target.to_string(), source };
                warn!(error = %e, "it is sent again on a later pass");
            }
        }
    }
}
