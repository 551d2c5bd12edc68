//! One reconciliation pass as a pure function: from the deployments, the
//! nodes, the time and what was sent, to the [`Action`]s that bring what is
//! observed closer to what is wanted, and when to look again. As a kube-rs
//! controller returns an `Action`, [`reconcile`] writes nothing: the loop in
//! `orchestrator.rs` applies what it returns. Each pass is idempotent: the
//! same input gives the same actions, and applying them leads to a state
//! for which the next pass asks for nothing new.
//!
//! A pass first marks down the nodes silent for longer than the grace
//! period, then keeps the rollover priorities dense, then walks every
//! deployment: checks new requests and starts their fetch, places work on
//! the least-loaded node ([`super::placement`]), moves work off drained
//! nodes and off nodes that died, and asks a node to remove what is
//! destroyed (again, if it said nothing for a while).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::actions::{spec, Action, Sent};
use super::placement::{place, Loads};
use crate::deployment::{Deployment, DeploymentId, Desired, Status};
use crate::state::NodeRecord;

/// How often a reconciliation pass runs when nothing wakes the orchestrator sooner.
pub(crate) const PASS_EVERY: Duration = Duration::from_secs(1);

/// How long a worker may hold work without mentioning it before it is sent again.
pub(crate) const RESEND_AFTER: Duration = Duration::from_secs(15);

/// What a pass needs to judge the nodes' health.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    /// How long a node may be silent before it counts as down.
    pub grace: chrono::Duration,
    /// Since when nodes could report (this orchestrator's start, the end of
    /// the last bus outage): silence before then says nothing.
    pub listening_since: DateTime<Utc>,
}

/// Everything one pass decides from.
#[derive(Debug)]
pub(crate) struct Observed<'a> {
    /// This orchestrator's node id.
    pub orchestrator: &'a str,
    /// Every deployment, as stored.
    pub deployments: Vec<Deployment>,
    /// Every node, as stored.
    pub nodes: Vec<NodeRecord>,
    /// When work for each deployment was last sent.
    pub sent: &'a HashMap<DeploymentId, Sent>,
    /// Now, by the wall clock (compared with the nodes' last reports).
    pub now: DateTime<Utc>,
    /// Now, by the monotonic clock (compared with when work was sent).
    pub instant: Instant,
    /// How to judge node health; `None` while the bus is down, when nobody
    /// can report and silence says nothing.
    pub health: Option<Health>,
    /// Whether local repositories (paths, `file://`) may be deployed.
    pub allow_local_sources: bool,
}

/// What a pass decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// When to pass again if nothing wakes the orchestrator sooner: when the
    /// next node that is up would be overdue, at most [`PASS_EVERY`].
    pub requeue_after: Duration,
}

/// Decides one pass; see the module's documentation.
pub(crate) fn reconcile(o: Observed<'_>) -> Decision {
    let Observed {
        orchestrator,
        mut deployments,
        mut nodes,
        sent,
        now,
        instant,
        health,
        allow_local_sources,
    } = o;
    let mut actions = Vec::new();
    let mut requeue_after = PASS_EVERY;
    if let Some(health) = health {
        if let Some(next) = mark_down_silent(&mut nodes, now, health, &mut actions) {
            // A little after the node would be overdue, so that it is.
            requeue_after = requeue_after.min(next + Duration::from_millis(10));
        }
    }
    reassign_priorities(orchestrator, &mut nodes, &mut actions);
    // Counted once, kept current as this pass places work: placing each of
    // N deployments among M nodes costs M, not M × N.
    let mut loads = Loads::count(&deployments);
    let by_id: HashMap<&str, &NodeRecord> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    for i in 0..deployments.len() {
        let d = deployments[i].clone();
        let on = d.node.as_deref().and_then(|id| by_id.get(id).copied());
        let (node_up, node_drained) = on.map_or((false, false), |n| (n.up, n.drained));
        let name = d.node.as_deref().map(|id| on.map_or(id.to_string(), |n| n.name.clone()));
        let name = name.unwrap_or_default();
        let mut pass = Pass {
            actions: &mut actions,
            deployments: &mut deployments,
            nodes: &nodes,
            loads: &mut loads,
            i,
        };
        match (d.desired, d.status) {
            (Desired::Running, Status::DeploymentRequested) => {
                pass.transition(Status::ValidatingDeploymentData, "checking the URL and branch");
                match crate::retrieval::check_request(&d.url, &d.branch, allow_local_sources) {
                    Ok(()) => {
                        pass.transition(
                            Status::RetrievingApplicationData,
                            format!("fetching {} ({}) and reading its shipwreck.toml", d.url, d.branch),
                        );
                        pass.retrieve(false);
                    }
                    Err(reason) => pass.transition(Status::Errored, reason.to_string()),
                }
            }
            (Desired::Running, Status::ValidatingDeploymentData | Status::RetrievingApplicationData) => {
                if d.status == Status::ValidatingDeploymentData {
                    pass.transition(Status::RetrievingApplicationData, "fetching the repository again");
                }
                pass.retrieve(false);
            }
            (Desired::Running, Status::UpdateRequested) => pass.retrieve(true),
            (Desired::Running, Status::DelegatingDeployment) if d.node.is_none() || !node_up => {
                if spec(&d).is_some() {
                    pass.delegate(d.node.as_deref(), "");
                } else {
                    pass.transition(Status::RetrievingApplicationData, "fetching the repository again");
                    pass.retrieve(false);
                }
            }
            (Desired::Running, Status::Running)
                if node_up && node_drained && place(&nodes, pass.loads, d.node.as_deref()).is_some() =>
            {
                pass.delegate(d.node.as_deref(), &format!("node {name} is drained; "));
            }
            (Desired::Running, s)
                if (s.is_with_worker() || s == Status::Running) && !node_up && d.node.is_some() =>
            {
                pass.delegate(d.node.as_deref(), &format!("node {name} is down; "));
            }
            (Desired::Destroyed, Status::DestructionRequested) => match d.node.clone() {
                Some(target) if node_up => {
                    pass.transition(Status::DelegatingDestruction, format!("asking {name} to remove it"));
                    pass.destroy_on(target);
                }
                Some(_) => pass.transition(Status::Destroyed, NODE_DOWN_ON_DESTROY),
                None => pass.transition(Status::Destroyed, "it was never started; nothing to remove"),
            },
            (Desired::Destroyed, Status::DelegatingDestruction | Status::DestructionInProgress) => {
                let waited =
                    sent.get(&d.id).map_or(RESEND_AFTER, |t| instant.saturating_duration_since(t.at));
                if !node_up {
                    pass.transition(Status::Destroyed, NODE_DOWN_ON_DESTROY);
                } else if waited >= RESEND_AFTER {
                    if let Some(target) = d.node.clone() {
                        pass.destroy_on(target);
                    }
                }
            }
            _ => {}
        }
    }
    Decision { actions, requeue_after }
}

const NODE_DOWN_ON_DESTROY: &str = "its node is down; its container is removed when the node returns";

/// Marks down (in `nodes` and as actions) the nodes that are up but silent
/// for longer than the grace; returns how long until the next node that is
/// up would be, if it stays silent.
fn mark_down_silent(
    nodes: &mut [NodeRecord],
    now: DateTime<Utc>,
    health: Health,
    actions: &mut Vec<Action>,
) -> Option<Duration> {
    let mut next: Option<chrono::Duration> = None;
    for n in nodes.iter_mut().filter(|n| n.up) {
        let heard = n.last_heartbeat.map_or(health.listening_since, |t| t.max(health.listening_since));
        if now - heard > health.grace {
            n.up = false;
            actions
                .push(Action::MarkDown { node: n.id.clone(), silent_ms: (now - heard).num_milliseconds() });
        } else {
            let left = heard + health.grace - now;
            next = Some(next.map_or(left, |d| d.min(left)));
        }
    }
    Some(next?.to_std().unwrap_or_default())
}

/// Keeps the rollover priorities dense: 0 for this orchestrator, then 1, 2,
/// … for the other nodes, those that are up first, in their current order.
/// So a primary candidate (1) exists whenever another node is up.
fn reassign_priorities(orchestrator: &str, nodes: &mut [NodeRecord], actions: &mut Vec<Action>) {
    let mut order: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].id != orchestrator).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&nodes[a], &nodes[b]);
        b.up.cmp(&a.up).then(a.rollover_priority.cmp(&b.rollover_priority)).then_with(|| a.id.cmp(&b.id))
    });
    let wanted = nodes
        .iter()
        .position(|n| n.id == orchestrator)
        .map(|i| (i, 0))
        .into_iter()
        .chain(order.into_iter().enumerate().map(|(rank, i)| (i, rank as u32 + 1)));
    for (i, priority) in wanted.collect::<Vec<_>>() {
        let n = &mut nodes[i];
        if n.rollover_priority != priority {
            n.rollover_priority = priority;
            actions.push(Action::SetPriority { node: n.id.clone(), priority });
        }
    }
}

/// The decisions about one deployment `d` within a pass. What it decides is
/// also written to the pass's copy of the deployments (at index `i`), so a
/// placement later in the same pass counts it.
struct Pass<'p> {
    actions: &'p mut Vec<Action>,
    deployments: &'p mut [Deployment],
    nodes: &'p [NodeRecord],
    loads: &'p mut Loads,
    i: usize,
}

impl Pass<'_> {
    fn id(&self) -> DeploymentId {
        self.deployments[self.i].id.clone()
    }

    fn transition(&mut self, status: Status, message: impl Into<String>) {
        self.actions.push(Action::Transition { deployment: self.id(), status, message: message.into() });
        self.deployments[self.i].status = status;
    }

    fn retrieve(&mut self, update: bool) {
        let d = &self.deployments[self.i];
        let (url, branch) = (d.url.clone(), d.branch.clone());
        self.actions.push(Action::Retrieve { deployment: self.id(), url, branch, update });
    }

    fn destroy_on(&mut self, target: String) {
        let generation = self.deployments[self.i].generation;
        self.actions.push(Action::Destroy { node: target, deployment: self.id(), generation });
    }

    /// Places the deployment on the least-loaded node but `exclude`, or lets
    /// it wait, on no node, until one can take it; `why` starts the message.
    fn delegate(&mut self, exclude: Option<&str>, why: &str) {
        let deployment = self.id();
        match place(self.nodes, self.loads, exclude) {
            Some(p) => {
                let message = format!("{why}placed on {} ({})", p.name, p.reason);
                self.actions.push(Action::Place { deployment, node: p.node.clone(), message });
                let d = &mut self.deployments[self.i];
                self.loads.moved(d.node.as_deref(), Some(&p.node));
                d.node = Some(p.node);
                d.status = Status::DelegatingDeployment;
            }
            None => {
                let d = &mut self.deployments[self.i];
                if d.status != Status::DelegatingDeployment || d.node.is_some() {
                    let message = format!("{why}waiting for a node to run it");
                    self.loads.moved(d.node.as_deref(), None);
                    d.node = None;
                    d.status = Status::DelegatingDeployment;
                    self.actions.push(Action::AwaitNode { deployment, message });
                }
            }
        }
    }
}

/// Decides where deployment `id` goes now, outside a pass (when its fetch
/// finished, when its node lost it): placed on the least-loaded node, or
/// waiting for one. `why` starts the message.
pub(crate) fn delegation(
    id: &str,
    mut deployments: Vec<Deployment>,
    nodes: &[NodeRecord],
    why: &str,
) -> Vec<Action> {
    let mut actions = Vec::new();
    if let Some(i) = deployments.iter().position(|d| d.id == id) {
        let loads = &mut Loads::count(&deployments);
        Pass { actions: &mut actions, deployments: &mut deployments, nodes, loads, i }.delegate(None, why);
    }
    actions
}

#[cfg(test)]
mod tests;
