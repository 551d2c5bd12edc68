//! The replica feed: every durable change of the state, numbered and in
//! order, for the rollover candidate; and the candidate's side, storing a
//! snapshot in one commit.
//!
//! A change gets its version while the state's lock is held, and is sent to
//! the feed before the lock is released, so a receiver sees versions in
//! order; [`State::replica_feed`] subscribes under the same lock as it copies
//! the records, so nothing falls between the snapshot and the changes after
//! it.

use redb::Durability;
use tokio::sync::broadcast;

use super::{encode, Event, NodeRecord, State, StateError, DEPLOYMENTS, NODES};
use crate::deployment::Deployment;

/// A durable change, as the rollover candidate copies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A deployment record as stored.
    Deployment(Box<Deployment>),
    /// A node record as stored.
    Node(Box<NodeRecord>),
}

/// A [`Change`] with its version: versions grow by one with every durable
/// change, so a copy that has every change up to version `v` is complete up
/// to `v`.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The version this change made.
    pub version: u64,
    /// The change.
    pub change: Change,
}

/// What a rollover candidate starts from: every record at `version`, and the
/// changes after it, in order.
#[derive(Debug)]
pub struct ReplicaFeed {
    /// The version of the records below.
    pub version: u64,
    /// Every deployment.
    pub deployments: Vec<Deployment>,
    /// Every node.
    pub nodes: Vec<NodeRecord>,
    /// The changes made after `version`, in version order.
    pub changes: broadcast::Receiver<Versioned>,
}

impl State {
    /// The version of the last durable change.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Every record as of now and the changes that follow, for a rollover
    /// candidate: nothing is missed between the two.
    pub fn replica_feed(&self) -> ReplicaFeed {
        let inner = self.lock();
        // Subscribing with the lock held: every later change is sent after this.
        let changes = self.shared.changes.subscribe();
        let mut deployments: Vec<Deployment> = inner.deployments.values().cloned().collect();
        deployments.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        ReplicaFeed {
            version: inner.version,
            deployments,
            nodes: inner.nodes.values().cloned().collect(),
            changes,
        }
    }

    /// Stores a copy of an orchestrator's records (a rollover candidate's
    /// snapshot) in one commit, replacing records with the same ids.
    ///
    /// # Errors
    /// [`StateError`] when they could not be stored; then none was.
    pub fn import_snapshot(
        &self,
        deployments: &[Deployment],
        nodes: &[NodeRecord],
    ) -> Result<(), StateError> {
        let mut inner = self.lock();
        let deployment_bytes: Vec<(&str, Vec<u8>)> =
            deployments.iter().map(|d| (d.id.as_str(), encode(d))).collect();
        let node_bytes: Vec<(&str, Vec<u8>)> = nodes
            .iter()
            .map(|n| {
                let mut stored = n.clone();
                stored.history.clear();
                (n.id.as_str(), encode(&stored))
            })
            .collect();
        self.write(Durability::Immediate, |txn| {
            let mut table = txn.open_table(DEPLOYMENTS)?;
            for (id, bytes) in &deployment_bytes {
                table.insert(*id, bytes.as_slice())?;
            }
            drop(table);
            let mut table = txn.open_table(NODES)?;
            for (id, bytes) in &node_bytes {
                table.insert(*id, bytes.as_slice())?;
            }
            Ok(())
        })?;
        for d in deployments {
            inner.deployments.insert(d.id.clone(), d.clone());
            self.record_change(&mut inner, Change::Deployment(Box::new(d.clone())));
        }
        for n in nodes {
            inner.nodes.insert(n.id.clone(), n.clone());
            self.record_change(&mut inner, Change::Node(Box::new(n.clone())));
        }
        drop(inner);
        for d in deployments {
            self.emit(Event::Deployment(d.summary()));
        }
        Ok(())
    }
}
