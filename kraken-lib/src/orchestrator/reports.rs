//! What the workers report, taken in: a deployment's status changes (from
//! the node that runs its current generation only), and a node's periodic
//! report (its statistics, the containers it holds). From a node's report
//! the orchestrator also learns what that node lost: work handed to an
//! earlier run of its agent, or not mentioned for too long, is judged by
//! [`super::resume`] and handed over again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::actions::{Action, Sent};
use super::reconcile::RESEND_AFTER;
use super::resume::{self, Seen};
use super::{OrchestrationExecutor, OrchestratorError};
use crate::bus::{DeploymentReport, NodeReport, WorkRequest, WorkerDeployment};
use crate::deployment::{is_web_address, Deployment, DeploymentId, Desired, Status};
use crate::node::GenericNode;
use crate::state::Role;

/// How long after it starts the orchestrator leaves containers it does not
/// know where they are (its state may still be catching up with the nodes).
const ADOPTION_QUIET: Duration = Duration::from_secs(2);

/// What a node's report tells about the work last `sent` for one of the
/// deployments it should hold. `fresh` says whether the report names a run of
/// the node's agent this orchestrator had not heard of; `waited` is how long
/// ago the work was sent (or this orchestrator started, if it sent nothing).
pub(super) fn seen(
    sent: Option<&Sent>,
    report: (&str, DateTime<Utc>),
    fresh: bool,
    waited: Duration,
) -> Seen {
    let (instance, made_at) = report;
    let restarted = !instance.is_empty()
        && match sent.map(|s| &s.instance) {
            Some(Some(earlier)) => earlier != instance,
            // Sent before the node's first report here: it may still be on its way.
            Some(None) => false,
            None => fresh,
        };
    // Only a report made after the work was sent (with a second for clock
    // differences) can show that the node lost it.
    let report_is_newer = sent.is_none_or(|t| made_at > t.wall + chrono::Duration::seconds(1));
    Seen { restarted, overdue: waited > RESEND_AFTER && report_is_newer }
}

/// Whether report `r`, sent by `from`, is about the work `d` has now: its
/// current generation, on the node it is placed on.
fn from_current_work(d: &Deployment, from: &str, r: &DeploymentReport) -> bool {
    r.generation == d.generation && d.node.as_deref() == Some(from)
}

/// Applies report `r`, sent by `from`, to `d`; returns whether `d` changed.
/// A stale report (another generation or node) and a repeat of the last
/// status with the same message change nothing.
fn apply_report(d: &mut Deployment, from: &str, r: &DeploymentReport) -> bool {
    if !from_current_work(d, from, r) {
        return false;
    }
    if d.desired == Desired::Destroyed && !r.status.is_destruction() && r.status != Status::Errored {
        // Work finished after destruction was asked for: keep the ids for clean-up.
        d.container_id = r.container_id.clone().or(d.container_id.take());
        return true;
    }
    if d.status == r.status && d.status_history.last().is_some_and(|c| c.message == r.message) {
        return false;
    }
    if let Some(c) = &r.container_id {
        d.container_id = Some(c.clone());
    }
    if let Some(p) = r.host_port {
        d.host_port = Some(p);
    }
    if let Some(a) = r.address.as_ref().filter(|a| is_web_address(a)) {
        d.address = Some(a.clone());
    }
    if let Some(c) = &r.commit {
        d.commit = Some(c.clone());
    }
    if r.status == Status::Destroyed {
        d.container_id = None;
        d.address = None;
        d.host_port = None;
    }
    if r.status == Status::Running && r.container_id.is_some() {
        d.error = None;
    }
    d.transition(r.status, r.message.clone(), Utc::now());
    true
}

impl OrchestrationExecutor {
    /// Takes in the status reports of a batch (each with the node that sent
    /// it, in the order they came): every change they make is stored in one
    /// durable commit, so a burst of reports (many apps starting at once)
    /// costs one disk sync, not one each.
    pub(super) fn on_deployment_reports(&mut self, reports: Vec<(String, DeploymentReport)>) {
        let mut ids: Vec<DeploymentId> = Vec::new();
        let mut by_id: HashMap<DeploymentId, Vec<(String, DeploymentReport)>> = HashMap::new();
        for (from, r) in reports {
            let Some(d) = self.state.deployment(&r.deployment) else {
                debug!(deployment = %r.deployment, "a report about an unknown deployment");
                continue;
            };
            if !from_current_work(&d, &from, &r) {
                debug!(deployment = %d.id, generation = r.generation, current = d.generation, "ignoring a stale report");
                continue;
            }
            if r.address.as_ref().is_some_and(|a| !is_web_address(a)) {
                warn!(deployment = %d.id, node = %from, "ignoring an app address that is not an http(s) address");
            }
            // The node answered about the work: the wait for its next word
            // starts again (a removal it is busy with is not asked for again at
            // once), and the run of its agent that answered is the one holding it.
            if let Some(sent) = self.sent.get_mut(&d.id) {
                sent.at = Instant::now();
                sent.wall = Utc::now();
                if sent.instance.is_none() {
                    sent.instance = self.instances.get(&from).cloned();
                }
            }
            let queued = by_id.entry(d.id.clone()).or_default();
            if queued.is_empty() {
                ids.push(d.id.clone());
            }
            queued.push((from, r));
        }
        if ids.is_empty() {
            return;
        }
        let stored = self.state.update_deployments(&ids, |d| {
            let reports = by_id.get(d.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            // Each report in turn, so two reports of one deployment in the
            // same batch both reach its history.
            reports.iter().fold(false, |changed, (from, r)| apply_report(d, from, r) || changed)
        });
        if let Err(source) = stored {
            let e = OrchestratorError::Store { what: format!("{} status reports", ids.len()), source };
            warn!(error = %e, "status reports were not stored");
        }
    }

    /// Takes in node `from`'s periodic report.
    pub(super) async fn on_node_report(&mut self, node: &GenericNode, from: &str, report: NodeReport) {
        if report.node != from || !is_web_address(&report.address) {
            warn!(from, about = %report.node, "ignoring a node report about another node or with a bad address");
            return;
        }
        let role = if report.node == node.id { Role::Orchestrator } else { Role::Worker };
        if let Err(e) = self.state.record_report(&report, role, Utc::now()) {
            warn!(node = %report.node, error = %e, "could not store a node report");
        }
        for w in &report.deployments {
            let Some(d) = self.state.deployment(&w.deployment) else {
                if !w.in_progress {
                    info!(deployment = %w.deployment, node = %from, "removing a container of an unknown deployment");
                    self.send_work(node, from, WorkRequest::Cancel { deployment: w.deployment.clone() })
                        .await;
                }
                continue;
            };
            let ours = d.node.as_deref() == Some(from);
            if ours && w.generation == d.generation {
                if let Some(stats) = w.stats {
                    self.state.record_stats(&d.id, stats);
                }
                let transition = |status, message: &str| Action::Transition {
                    deployment: d.id.clone(),
                    status,
                    message: message.into(),
                };
                if d.status == Status::Running && w.container_id.is_some() && !w.running && !w.in_progress {
                    let stopped =
                        transition(Status::Errored, "the app's container stopped; its log shows why");
                    self.apply(node, stopped).await;
                } else if d.status == Status::Errored && w.running && w.container_id.is_some() {
                    self.apply(node, transition(Status::Running, "the app's container runs again")).await;
                }
            }
            // An older generation on the right node is about to be replaced by
            // work already on its way, so only a container on the wrong node counts.
            let misplaced = !ours;
            let unwanted = d.desired == Desired::Destroyed && d.status == Status::Destroyed;
            if (misplaced || unwanted) && !w.in_progress && self.started.elapsed() > ADOPTION_QUIET {
                info!(deployment = %d.id, node = %from, "removing a container the platform no longer wants there");
                self.send_work(node, from, WorkRequest::Cancel { deployment: d.id.clone() }).await;
            }
        }
        // What the node should hold but does not account for: lost with a
        // restart of its agent, or not mentioned for a while.
        let fresh = report.instance.is_empty()
            || self.instances.insert(from.to_string(), report.instance.clone()).as_deref()
                != Some(report.instance.as_str());
        let held: HashMap<&str, &WorkerDeployment> =
            report.deployments.iter().map(|w| (w.deployment.as_str(), w)).collect();
        let now = Instant::now();
        let name = self.state.node(from).map(|n| n.name).unwrap_or_else(|| from.to_string());
        for d in self.state.deployments_on(from) {
            let sent = self.sent.get(&d.id).filter(|s| s.target == from);
            let waited = now.duration_since(sent.map_or(self.started, |t| t.at));
            let seen = seen(sent, (&report.instance, report.at), fresh, waited);
            let repair = resume::judge(&d, held.get(d.id.as_str()).copied(), seen);
            let actions = match repair {
                resume::Repair::Delegate => {
                    info!(deployment = %d.id, node = %from, "its node does not hold it; handing it over again");
                    let deployments = self.state.deployments();
                    super::reconcile::delegation(
                        &d.id,
                        deployments,
                        &self.state.nodes(),
                        "its node lost it; ",
                    )
                }
                repair => resume::actions(&d, from, &name, repair),
            };
            for action in actions {
                self.apply(node, action).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testing;

    /// `d` placed on node `n1`, generation 1, being built.
    fn placed() -> Deployment {
        let mut d = testing::with_app_data(testing::deployment("d1", Status::DelegatingDeployment));
        d.node = Some("n1".into());
        d.generation = 1;
        d
    }

    fn report(status: Status, message: &str) -> DeploymentReport {
        DeploymentReport {
            deployment: "d1".into(),
            generation: 1,
            status,
            message: message.into(),
            container_id: (status == Status::Running).then(|| "c1".to_string()),
            host_port: None,
            address: Some("http://n1:8080".into()),
            commit: None,
        }
    }

    #[test]
    fn reports_of_one_batch_reach_the_history_in_their_order() {
        let mut d = placed();
        assert!(apply_report(&mut d, "n1", &report(Status::BuildingDeployment, "building")));
        assert!(apply_report(&mut d, "n1", &report(Status::Deploying, "starting")));
        assert!(apply_report(&mut d, "n1", &report(Status::Running, "answering")));
        let tail: Vec<Status> = d.status_history.iter().rev().take(3).rev().map(|c| c.status).collect();
        assert_eq!(tail, [Status::BuildingDeployment, Status::Deploying, Status::Running]);
        assert_eq!(d.container_id.as_deref(), Some("c1"));
        assert_eq!(d.address.as_deref(), Some("http://n1:8080"));
    }

    #[test]
    fn stale_and_repeated_reports_change_nothing() {
        let mut d = placed();
        let before = d.clone();
        let mut old = report(Status::Running, "answering");
        old.generation = 0;
        assert!(!apply_report(&mut d, "n1", &old), "an older generation");
        assert!(!apply_report(&mut d, "n2", &report(Status::Running, "answering")), "another node");
        assert_eq!(d, before);
        assert!(apply_report(&mut d, "n1", &report(Status::Running, "answering")));
        let once = d.clone();
        assert!(!apply_report(&mut d, "n1", &report(Status::Running, "answering")), "a repeat");
        assert_eq!(d, once);
    }

    #[test]
    fn work_that_finishes_after_destruction_was_asked_for_keeps_only_its_container() {
        let mut d = placed();
        d.desired = Desired::Destroyed;
        d.transition(Status::DestructionRequested, "asked", Utc::now());
        assert!(apply_report(&mut d, "n1", &report(Status::Running, "answering")));
        assert_eq!(d.status, Status::DestructionRequested, "the destruction goes on");
        assert_eq!(d.container_id.as_deref(), Some("c1"), "kept for the clean-up");
    }

    fn sent(instance: Option<&str>, wall: DateTime<Utc>) -> Sent {
        Sent { at: Instant::now(), wall, target: "n1".into(), instance: instance.map(str::to_string) }
    }

    #[test]
    fn a_new_run_of_the_agent_means_the_work_it_was_given_is_lost() {
        let now = Utc::now();
        let given = sent(Some("run-1"), now);
        let later = now + chrono::Duration::seconds(5);
        assert!(seen(Some(&given), ("run-2", later), true, Duration::ZERO).restarted);
        assert!(!seen(Some(&given), ("run-1", later), false, Duration::ZERO).restarted);
        // Sent before the node's first report: the work may still be on its way.
        let blind = sent(None, now);
        assert!(!seen(Some(&blind), ("run-2", later), true, Duration::ZERO).restarted);
        // Nothing sent by this orchestrator: a run it had not heard of counts.
        assert!(seen(None, ("run-2", later), true, Duration::ZERO).restarted);
        assert!(!seen(None, ("run-2", later), false, Duration::ZERO).restarted);
        // A node that does not name its runs never counts as restarted.
        assert!(!seen(None, ("", later), true, Duration::ZERO).restarted);
    }

    #[test]
    fn work_not_mentioned_is_overdue_only_after_the_resend_delay_and_in_a_newer_report() {
        let now = Utc::now();
        let given = sent(Some("run-1"), now);
        let long = RESEND_AFTER + Duration::from_secs(1);
        let newer = now + chrono::Duration::seconds(20);
        assert!(seen(Some(&given), ("run-1", newer), false, long).overdue);
        assert!(!seen(Some(&given), ("run-1", newer), false, RESEND_AFTER).overdue, "not long enough");
        // A report made before the work was sent (delayed by an outage) says nothing about it.
        let older = now - chrono::Duration::seconds(20);
        assert!(!seen(Some(&given), ("run-1", older), false, long).overdue);
        let within_a_second = now + chrono::Duration::milliseconds(500);
        assert!(!seen(Some(&given), ("run-1", within_a_second), false, long).overdue);
    }
}
