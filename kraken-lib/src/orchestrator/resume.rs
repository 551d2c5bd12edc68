//! What the orchestrator does about a deployment its node's report does not
//! account for: a pure function from what it knows to what to do, so every
//! status a deployment can be in when an agent restarts ends Running,
//! Errored or Destroyed instead of waiting forever.
//!
//! A node's reports carry the id of its agent's current run (its instance).
//! Work handed to an earlier run, or to a run this orchestrator never heard
//! of, was lost when that agent stopped: it is handed over again at once, to
//! the same node (as an update when the node still runs an older version of
//! the app, so that version serves until the new one is good). A container
//! of the current generation that a node's new run (or a new orchestrator)
//! finds finished and running makes the deployment Running (it was started
//! just before the agent stopped, or its report was lost); one that stopped
//! makes it Errored. Work that is merely not
//! mentioned, from the same run, is handed over again after a while, as
//! before.

use tracing::info;

use super::actions::{spec, Action};
use crate::bus::WorkerDeployment;
use crate::deployment::{Deployment, Desired, Status};

/// What to do about one deployment after a report of its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Repair {
    /// Nothing: the node holds it, or the work is on its way.
    Nothing,
    /// Its container runs: it is Running there.
    Running {
        /// The container.
        container: String,
        /// Its host port.
        host_port: Option<u16>,
        /// Where people reach it.
        address: Option<String>,
    },
    /// Its container stopped.
    Errored(String),
    /// Hand the work to the same node again (a new generation).
    HandOverAgain {
        /// As an update (the node still runs an older version).
        update: bool,
    },
    /// Place it again (on the least-loaded node).
    Delegate,
    /// Ask the node again to remove it.
    DestroyAgain,
}

/// What the orchestrator knows about the report and the work it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// The node's agent restarted since it was given this deployment's work.
    pub restarted: bool,
    /// The work was sent long enough ago, before this report was made, that
    /// the node should have mentioned it.
    pub overdue: bool,
}

/// Judges deployment `d`, whose node sent a report where it appears as `held`.
pub(super) fn judge(d: &Deployment, held: Option<&WorkerDeployment>, seen: Seen) -> Repair {
    let current = held.filter(|w| w.generation == d.generation);
    match d.desired {
        Desired::Destroyed
            if matches!(d.status, Status::DelegatingDestruction | Status::DestructionInProgress)
                && seen.restarted =>
        {
            Repair::DestroyAgain
        }
        Desired::Destroyed => Repair::Nothing,
        Desired::Running => match (d.status, current) {
            (
                Status::DelegatingDeployment
                | Status::BuildingDeployment
                | Status::TestingDeployment
                | Status::Deploying,
                Some(w),
            ) if !w.in_progress && seen.restarted => match (&w.container_id, w.running) {
                (Some(container), true) => Repair::Running {
                    container: container.clone(),
                    host_port: w.host_port,
                    address: w.address.clone(),
                },
                (Some(_), false) => Repair::Errored(
                    "the app's container stopped while its node's agent was away; its log shows why".into(),
                ),
                // The worker gave up on it; its report says why.
                (None, _) => Repair::Nothing,
            },
            (s, None) if s.is_with_worker() && !s.is_destruction() || s == Status::Running => {
                let older_runs = held.is_some_and(|w| w.container_id.is_some() && w.running);
                if seen.restarted {
                    Repair::HandOverAgain { update: older_runs }
                } else if seen.overdue {
                    Repair::Delegate
                } else {
                    Repair::Nothing
                }
            }
            _ => Repair::Nothing,
        },
    }
}

/// What to do, as actions, about deployment `d` on node `from` (called
/// `name`) after [`judge`] decided `repair`. [`Repair::Delegate`] needs the
/// whole platform to choose a node: it is decided by
/// [`super::reconcile::delegation`] and gives no action here.
pub(super) fn actions(d: &Deployment, from: &str, name: &str, repair: Repair) -> Vec<Action> {
    let deployment = d.id.clone();
    match repair {
        Repair::Nothing | Repair::Delegate => Vec::new(),
        Repair::Running { container, host_port, address } => {
            let message = format!(
                "running at {} on {name} (its agent found it running when it started again)",
                address.as_deref().unwrap_or("its port")
            );
            vec![Action::Found { deployment, container, host_port, address, message }]
        }
        Repair::Errored(message) => vec![Action::Transition { deployment, status: Status::Errored, message }],
        Repair::HandOverAgain { .. } if spec(d).is_none() => vec![
            Action::Transition {
                deployment: deployment.clone(),
                status: Status::RetrievingApplicationData,
                message: "fetching the repository again".into(),
            },
            Action::Retrieve { deployment, url: d.url.clone(), branch: d.branch.clone(), update: false },
        ],
        Repair::HandOverAgain { update } => {
            info!(deployment = %d.id, node = %from, status = %d.status, "its node's agent restarted; handing the work over again");
            let message =
                format!("the agent of {name} restarted while it was {}; handing it over again", d.status);
            vec![Action::HandOver { deployment, node: from.to_string(), update, message }]
        }
        Repair::DestroyAgain => {
            info!(deployment = %d.id, node = %from, "its node's agent restarted; asking it again to remove it");
            vec![Action::Destroy { node: from.to_string(), deployment, generation: d.generation }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn deployment(status: Status, generation: u64) -> Deployment {
        let mut d = Deployment::new("d1".into(), "u".into(), "main".into(), Utc::now());
        d.generation = generation;
        d.node = Some("n1".into());
        if status.is_destruction() {
            d.desired = Desired::Destroyed;
        }
        d.transition(status, "now", Utc::now());
        d
    }

    fn held(generation: u64, in_progress: bool, container: Option<&str>, running: bool) -> WorkerDeployment {
        WorkerDeployment {
            deployment: "d1".into(),
            generation,
            in_progress,
            container_id: container.map(str::to_string),
            running,
            host_port: container.map(|_| 31000),
            address: container.map(|_| "http://h:31000".to_string()),
            stats: None,
        }
    }

    const RESTARTED: Seen = Seen { restarted: true, overdue: false };
    const SAME_RUN: Seen = Seen { restarted: false, overdue: false };
    const OVERDUE: Seen = Seen { restarted: false, overdue: true };

    #[test]
    fn work_lost_with_a_restarted_agent_is_handed_over_again_in_every_worker_status() {
        for status in [
            Status::DelegatingDeployment,
            Status::BuildingDeployment,
            Status::TestingDeployment,
            Status::Deploying,
            Status::Running,
        ] {
            let d = deployment(status, 3);
            assert_eq!(judge(&d, None, RESTARTED), Repair::HandOverAgain { update: false }, "{status}");
            // An update under way: the older version still runs there.
            let older = held(2, false, Some("c-old"), true);
            assert_eq!(
                judge(&d, Some(&older), RESTARTED),
                Repair::HandOverAgain { update: true },
                "{status}"
            );
            assert_eq!(judge(&d, None, SAME_RUN), Repair::Nothing, "{status}: the work may be on its way");
            assert_eq!(judge(&d, None, OVERDUE), Repair::Delegate, "{status}");
        }
    }

    #[test]
    fn a_container_found_at_start_settles_a_deployment_caught_deploying() {
        let d = deployment(Status::Deploying, 3);
        let running = held(3, false, Some("c3"), true);
        assert_eq!(
            judge(&d, Some(&running), RESTARTED),
            Repair::Running {
                container: "c3".into(),
                host_port: Some(31000),
                address: Some("http://h:31000".into())
            }
        );
        let stopped = held(3, false, Some("c3"), false);
        assert!(matches!(judge(&d, Some(&stopped), RESTARTED), Repair::Errored(_)));
        let building = held(3, true, None, false);
        assert_eq!(judge(&d, Some(&building), RESTARTED), Repair::Nothing, "work under way is left alone");
        // The same run of the agent: its own report of the start is on its way.
        assert_eq!(judge(&d, Some(&running), SAME_RUN), Repair::Nothing);
    }

    #[test]
    fn an_interrupted_removal_is_asked_for_again() {
        for status in [Status::DelegatingDestruction, Status::DestructionInProgress] {
            let d = deployment(status, 3);
            assert_eq!(judge(&d, None, RESTARTED), Repair::DestroyAgain, "{status}");
            assert_eq!(judge(&d, Some(&held(3, false, Some("c"), true)), RESTARTED), Repair::DestroyAgain);
            assert_eq!(judge(&d, None, SAME_RUN), Repair::Nothing);
        }
    }

    #[test]
    fn statuses_the_orchestrator_drives_itself_are_left_to_it() {
        for status in [
            Status::DeploymentRequested,
            Status::ValidatingDeploymentData,
            Status::RetrievingApplicationData,
            Status::UpdateRequested,
            Status::Errored,
            Status::DestructionRequested,
            Status::Destroyed,
        ] {
            let d = deployment(status, 3);
            assert_eq!(judge(&d, None, RESTARTED), Repair::Nothing, "{status}");
        }
    }

    #[test]
    fn lost_work_is_handed_to_the_same_node_again_or_fetched_again_without_its_app_data() {
        let d = crate::orchestrator::testing::with_app_data(deployment(Status::Deploying, 3));
        let actions = actions(&d, "n1", "pi", Repair::HandOverAgain { update: true });
        assert_eq!(
            actions,
            vec![Action::HandOver {
                deployment: "d1".into(),
                node: "n1".into(),
                update: true,
                message: "the agent of pi restarted while it was Deploying; handing it over again".into(),
            }]
        );
        let bare = deployment(Status::Deploying, 3);
        let again = super::actions(&bare, "n1", "pi", Repair::HandOverAgain { update: false });
        assert!(matches!(&again[0], Action::Transition { status: Status::RetrievingApplicationData, .. }));
        assert!(matches!(&again[1], Action::Retrieve { update: false, .. }), "{again:?}");
    }

    #[test]
    fn a_container_found_running_is_adopted_and_a_removal_asked_again() {
        let d = deployment(Status::Deploying, 3);
        let found = Repair::Running { container: "c3".into(), host_port: Some(31000), address: None };
        match &actions(&d, "n1", "pi", found)[..] {
            [Action::Found { container, host_port: Some(31000), message, .. }] => {
                assert_eq!(container, "c3");
                assert!(message.starts_with("running at its port on pi"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let d = deployment(Status::DelegatingDestruction, 3);
        assert_eq!(
            actions(&d, "n1", "pi", Repair::DestroyAgain),
            vec![Action::Destroy { node: "n1".into(), deployment: "d1".into(), generation: 3 }]
        );
        assert_eq!(actions(&d, "n1", "pi", Repair::Nothing), vec![]);
    }
}
