//! Where new work goes: the least loaded of the nodes that are up, run apps
//! and are not drained, judged by CPU, memory and the deployments each
//! already holds. A pure function of the nodes and deployments, so that a
//! pass can place several deployments in a row, each seeing the ones before.

use std::collections::HashMap;

use crate::deployment::{Deployment, Desired, Status};
use crate::state::NodeRecord;

/// The node chosen for a deployment and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placement {
    /// The node's id.
    pub node: String,
    /// The node's name.
    pub name: String,
    /// Why this node, in words a person reads in the status history.
    pub reason: String,
}

/// How many deployments each node runs or is about to run: counted once
/// (a pass walks every deployment once for it, not once per node and
/// placement) and kept current as a pass places work.
#[derive(Debug, Default, Clone)]
pub(crate) struct Loads(HashMap<String, usize>);

impl Loads {
    /// Counts the deployments that hold a place on each node.
    pub fn count(deployments: &[Deployment]) -> Self {
        let mut loads = Self::default();
        for d in deployments.iter().filter(|d| holds_place(d)) {
            if let Some(node) = &d.node {
                *loads.0.entry(node.clone()).or_default() += 1;
            }
        }
        loads
    }

    /// How many deployments `node` holds.
    pub fn of(&self, node: &str) -> usize {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// A deployment that holds a place moved from node `from` to node `to`
    /// (`None`: on no node).
    pub fn moved(&mut self, from: Option<&str>, to: Option<&str>) {
        if let Some(count) = from.and_then(|n| self.0.get_mut(n)) {
            *count = count.saturating_sub(1);
        }
        if let Some(to) = to {
            *self.0.entry(to.to_string()).or_default() += 1;
        }
    }
}

/// Whether `d` counts on its node: wanted running and not failed.
fn holds_place(d: &Deployment) -> bool {
    d.desired == Desired::Running && d.status != Status::Errored
}

/// Chooses the node for new work among `nodes`, never `exclude`: the least
/// loaded (CPU share + memory share + half a point per deployment it holds,
/// from `loads`), ties broken by node id so that the choice is stable.
/// `None` when no node can take it.
pub(crate) fn place(nodes: &[NodeRecord], loads: &Loads, exclude: Option<&str>) -> Option<Placement> {
    let candidates: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| n.up && n.runs_apps && !n.drained && Some(n.id.as_str()) != exclude)
        .collect();
    let total = candidates.len();
    candidates
        .into_iter()
        .map(|n| {
            let mem = if n.stats.memory_total_bytes > 0 {
                n.stats.memory_used_bytes as f64 / n.stats.memory_total_bytes as f64
            } else {
                0.0
            };
            let c = loads.of(&n.id);
            let score = n.stats.cpu_percent / 100.0 + mem + 0.5 * c as f64;
            (score, c, mem, n)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.3.id.cmp(&b.3.id)))
        .map(|(_, c, mem, n)| Placement {
            node: n.id.clone(),
            name: n.name.clone(),
            reason: format!(
                "least loaded of {total} node{} (cpu {:.0}%, memory {:.0}%, {c} deployment{})",
                if total == 1 { "" } else { "s" },
                n.stats.cpu_percent,
                mem * 100.0,
                if c == 1 { "" } else { "s" }
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testing::{deployment, node};

    #[test]
    fn the_least_loaded_node_that_is_up_and_not_drained_is_chosen() {
        let mut busy = node("a");
        busy.stats.cpu_percent = 90.0;
        let idle = node("b");
        let mut down = node("c");
        down.up = false;
        let mut drained = node("d");
        drained.drained = true;
        let mut no_apps = node("e");
        no_apps.runs_apps = false;
        let nodes = [busy, idle, down, drained, no_apps];
        let p = place(&nodes, &Loads::default(), None).expect("a node can take it");
        assert_eq!(p.node, "b");
        assert!(p.reason.contains("least loaded of 2 nodes"), "{}", p.reason);
        assert_eq!(
            place(&nodes, &Loads::default(), Some("b")).map(|p| p.node),
            Some("a".into()),
            "b is excluded"
        );
        assert_eq!(place(&nodes[2..], &Loads::default(), None), None, "no node can take it");
    }

    #[test]
    fn deployments_already_held_count_and_ties_go_to_the_smaller_id() {
        let nodes = [node("b"), node("a")];
        assert_eq!(place(&nodes, &Loads::default(), None).map(|p| p.node), Some("a".into()));
        let mut held = deployment("d1", Status::Running);
        held.node = Some("a".into());
        let p = place(&nodes, &Loads::count(&[held.clone()]), None).expect("b can take it");
        assert_eq!(p.node, "b");
        // Errored and destroyed deployments hold no place.
        held.status = Status::Errored;
        assert_eq!(place(&nodes, &Loads::count(&[held.clone()]), None).map(|p| p.node), Some("a".into()));
        held.status = Status::Destroyed;
        held.desired = Desired::Destroyed;
        assert_eq!(place(&nodes, &Loads::count(&[held]), None).map(|p| p.node), Some("a".into()));
    }

    #[test]
    fn memory_pressure_outweighs_a_deployment() {
        let mut full = node("a");
        full.stats.memory_total_bytes = 1000;
        full.stats.memory_used_bytes = 900;
        let nodes = [full, node("b")];
        let mut held = deployment("d1", Status::Running);
        held.node = Some("b".into());
        let p = place(&nodes, &Loads::count(&[held]), None).expect("a node can take it");
        assert_eq!(p.node, "b", "{}", p.reason);
        assert!(p.reason.contains("1 deployment)"), "{}", p.reason);
    }

    #[test]
    fn loads_follow_a_deployment_that_moves() {
        let mut held = deployment("d1", Status::Running);
        held.node = Some("a".into());
        let mut loads = Loads::count(&[held]);
        assert_eq!((loads.of("a"), loads.of("b")), (1, 0));
        loads.moved(Some("a"), Some("b"));
        assert_eq!((loads.of("a"), loads.of("b")), (0, 1));
        loads.moved(Some("b"), None);
        assert_eq!((loads.of("a"), loads.of("b")), (0, 0));
    }
}
