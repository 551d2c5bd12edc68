//! Nodes: what the orchestrator knows of each machine (identity, key, last
//! report, recent samples); identity changes stored, heartbeats kept in memory.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use redb::Durability;
use serde::{Deserialize, Serialize};

use super::{encode, Change, Event, KeyConflict, State, StateError, NODES, NODE_HISTORY};
use crate::auth::PublicKey;
use crate::bus::NodeReport;
use crate::deployment::{DeploymentId, NodeId};
use crate::stats::NodeStats;

/// The role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It runs the orchestrator (and may run apps too).
    Orchestrator,
    /// It runs apps.
    Worker,
}

fn runs_apps_default() -> bool {
    true
}

/// One sample of a node's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeSample {
    /// When.
    pub at: DateTime<Utc>,
    /// CPU use, 0–100.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_used_bytes: u64,
}

/// What the orchestrator knows about a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// Its id.
    #[schema(value_type = String)]
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its API address.
    pub address: String,
    /// Whether it reported within the grace period.
    pub up: bool,
    /// When it last reported.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// 0 for the orchestrator, 1 for the primary rollover candidate, higher for others.
    pub rollover_priority: u32,
    /// Whether new deployments may be placed on it.
    #[serde(default)]
    pub drained: bool,
    /// Whether it runs apps at all (an orchestrator-only node does not).
    #[serde(default = "runs_apps_default")]
    pub runs_apps: bool,
    /// The deployments it runs, as it last reported.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub deployments: Vec<DeploymentId>,
    /// Its latest statistics (not persisted).
    #[serde(default)]
    pub stats: NodeStats,
    /// Its recent statistics, oldest first (not persisted).
    #[serde(default)]
    #[schema(value_type = Vec<NodeSample>)]
    pub history: VecDeque<NodeSample>,
    /// The key it signs its messages with, registered when it joined.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub public_key: Option<PublicKey>,
}

impl State {
    /// Records a node's report: marks it up, updates its stats and history,
    /// and stores the node when it is new or its identity changed.
    ///
    /// # Errors
    /// [`StateError`] when a new node could not be stored.
    pub fn record_report(
        &self,
        report: &NodeReport,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<NodeRecord, StateError> {
        let mut inner = self.lock();
        let known = inner.nodes.get(&report.node).cloned();
        let next_priority = match role {
            Role::Orchestrator => 0,
            Role::Worker => 1 + inner.nodes.values().filter(|n| n.role == Role::Worker).count() as u32,
        };
        let mut node = known.clone().unwrap_or_else(|| NodeRecord {
            id: report.node.clone(),
            name: report.name.clone(),
            role,
            address: report.address.clone(),
            up: true,
            last_heartbeat: None,
            rollover_priority: next_priority,
            drained: false,
            runs_apps: report.runs_apps,
            deployments: Vec::new(),
            stats: NodeStats::default(),
            history: VecDeque::new(),
            public_key: None,
        });
        let identity_changed = known
            .as_ref()
            .is_none_or(|k| k.name != report.name || k.address != report.address || k.role != role || !k.up);
        node.name = report.name.clone();
        node.address = report.address.clone();
        node.role = role;
        node.runs_apps = report.runs_apps;
        node.up = true;
        node.last_heartbeat = Some(now);
        node.deployments = report.deployments.iter().map(|d| d.deployment.clone()).collect();
        node.stats = report.stats.clone();
        // Reports come several times a second; the graphs keep a sample every
        // couple of seconds, so the history covers minutes.
        if node.history.back().is_none_or(|last| now - last.at >= chrono::Duration::milliseconds(1900)) {
            node.history.push_back(NodeSample {
                at: now,
                cpu_percent: report.stats.cpu_percent,
                memory_used_bytes: report.stats.memory_used_bytes,
            });
        }
        while node.history.len() > NODE_HISTORY {
            node.history.pop_front();
        }
        if identity_changed {
            self.persist_node(&node)?;
            self.record_change(&mut inner, Change::Node(Box::new(node.clone())));
        }
        inner.nodes.insert(node.id.clone(), node.clone());
        drop(inner);
        self.emit(Event::Node(Box::new(node.clone())));
        Ok(node)
    }

    fn persist_node(&self, node: &NodeRecord) -> Result<(), StateError> {
        let mut stored = node.clone();
        stored.history.clear();
        let bytes = encode(&stored);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(NODES)?.insert(node.id.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Changes a node with `f` and stores it when `f` returns true.
    ///
    /// # Errors
    /// [`StateError`] when the change could not be stored.
    pub fn update_node(
        &self,
        id: &str,
        f: impl FnOnce(&mut NodeRecord) -> bool,
    ) -> Result<Option<NodeRecord>, StateError> {
        let mut inner = self.lock();
        let Some(current) = inner.nodes.get(id) else { return Ok(None) };
        let mut next = current.clone();
        if !f(&mut next) {
            return Ok(Some(next));
        }
        self.persist_node(&next)?;
        inner.nodes.insert(id.to_string(), next.clone());
        self.record_change(&mut inner, Change::Node(Box::new(next.clone())));
        drop(inner);
        self.emit(Event::Node(Box::new(next.clone())));
        Ok(Some(next))
    }

    /// All nodes, by id.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.lock().nodes.values().cloned().collect()
    }

    /// Stores a node record as it is (a replica receiving the orchestrator's copy).
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored.
    pub fn import_node(&self, n: &NodeRecord) -> Result<(), StateError> {
        let mut inner = self.lock();
        // Reports arrive every heartbeat; only what is persisted anyway (not
        // statistics or heartbeat times) is worth a write.
        let durable = |r: &NodeRecord| {
            let mut r = r.clone();
            r.stats = NodeStats::default();
            r.history.clear();
            r.last_heartbeat = None;
            r
        };
        if inner.nodes.get(&n.id).is_none_or(|old| durable(old) != durable(n)) {
            self.persist_node(n)?;
            self.record_change(&mut inner, Change::Node(Box::new(n.clone())));
        }
        inner.nodes.insert(n.id.clone(), n.clone());
        Ok(())
    }

    /// One node.
    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.lock().nodes.get(id).cloned()
    }

    /// Registers the key a node signs its messages with (when it joins, or
    /// the orchestrator's own at its start). A node not known yet is added,
    /// not up until it reports. A node keeps the key it registered first:
    /// another key for the same id is refused (it would let one node speak
    /// for another).
    ///
    /// # Errors
    /// [`KeyConflict::Other`] when the node has another key;
    /// [`KeyConflict::State`] when the record could not be stored.
    pub fn register_node_key(
        &self,
        id: &str,
        name: &str,
        address: &str,
        role: Role,
        key: PublicKey,
    ) -> Result<NodeRecord, KeyConflict> {
        let mut inner = self.lock();
        let mut node = match inner.nodes.get(id) {
            Some(known) => match known.public_key {
                Some(k) if k == key => return Ok(known.clone()),
                Some(_) => return Err(KeyConflict::Other),
                None => known.clone(),
            },
            None => NodeRecord {
                id: id.to_string(),
                name: name.to_string(),
                role,
                address: address.to_string(),
                up: false,
                last_heartbeat: None,
                rollover_priority: u32::try_from(inner.nodes.len()).unwrap_or(u32::MAX),
                drained: false,
                runs_apps: true,
                deployments: Vec::new(),
                stats: NodeStats::default(),
                history: VecDeque::new(),
                public_key: None,
            },
        };
        node.public_key = Some(key);
        self.persist_node(&node).map_err(KeyConflict::State)?;
        inner.nodes.insert(node.id.clone(), node.clone());
        drop(inner);
        self.emit(Event::Node(Box::new(node.clone())));
        Ok(node)
    }
}
