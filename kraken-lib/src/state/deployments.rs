//! Deployments: a request stored, changed, read and imported from the
//! orchestrator's copy; every change committed durably before it is announced.

use chrono::Utc;
use redb::Durability;

use super::{encode, Change, Event, State, StateError, DEPLOYMENTS};
use crate::deployment::{random_id, Deployment, DeploymentSummary};
use crate::runtime::ContainerStats;

impl State {
    /// Stores a new deployment request durably and returns it.
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored; then nothing was stored.
    pub fn create_deployment(&self, url: &str, branch: &str) -> Result<Deployment, StateError> {
        let _writer = self.writer();
        let mut id = random_id(6);
        while self.lock().deployments.contains_key(&id) {
            id = random_id(6);
        }
        let d = Deployment::new(id.clone(), url.to_string(), branch.to_string(), Utc::now());
        let bytes = encode(&d);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(DEPLOYMENTS)?.insert(id.as_str(), bytes.as_slice())?;
            Ok(())
        })?;
        let mut inner = self.lock();
        inner.deployments.insert(id, d.clone());
        self.record_change(&mut inner, Change::Deployment(Box::new(d.clone())));
        drop(inner);
        self.emit(Event::Deployment(d.summary()));
        self.notify();
        Ok(d)
    }

    /// Changes a deployment with `f`; when `f` returns true the change is
    /// stored durably and announced. Returns the deployment after the call,
    /// or `None` when there is no such deployment.
    ///
    /// # Errors
    /// [`StateError`] when the change could not be stored; then it was not made.
    pub fn update_deployment(
        &self,
        id: &str,
        f: impl FnOnce(&mut Deployment) -> bool,
    ) -> Result<Option<Deployment>, StateError> {
        let _writer = self.writer();
        let Some(mut next) = self.deployment(id) else { return Ok(None) };
        if !f(&mut next) {
            return Ok(Some(next));
        }
        let bytes = encode(&next);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(DEPLOYMENTS)?.insert(id, bytes.as_slice())?;
            Ok(())
        })?;
        let mut inner = self.lock();
        // Resource samples (in memory only) may have come in meanwhile.
        if let Some(live) = inner.deployments.get(id) {
            next.stats = live.stats;
            next.stats_history = live.stats_history.clone();
        }
        inner.deployments.insert(id.to_string(), next.clone());
        self.record_change(&mut inner, Change::Deployment(Box::new(next.clone())));
        drop(inner);
        self.emit(Event::Deployment(next.summary()));
        Ok(Some(next))
    }

    /// Records a resource sample of a deployment (in memory only).
    pub fn record_stats(&self, id: &str, stats: ContainerStats) {
        let mut inner = self.lock();
        if let Some(d) = inner.deployments.get_mut(id) {
            d.push_stats(stats, Utc::now());
        }
    }

    /// One deployment.
    pub fn deployment(&self, id: &str) -> Option<Deployment> {
        self.lock().deployments.get(id).cloned()
    }

    /// The summaries of all deployments, oldest request first (what the list
    /// endpoint shows, without copying every history).
    pub fn deployment_summaries(&self) -> Vec<DeploymentSummary> {
        let inner = self.lock();
        let mut all: Vec<&Deployment> = inner.deployments.values().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all.into_iter().map(Deployment::summary).collect()
    }

    /// All deployments, oldest request first.
    pub fn deployments(&self) -> Vec<Deployment> {
        let mut all: Vec<_> = self.lock().deployments.values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all
    }

    /// Stores a deployment record as it is (a replica receiving the
    /// orchestrator's copy), replacing any record with its id.
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored.
    pub fn import_deployment(&self, d: &Deployment) -> Result<(), StateError> {
        let _writer = self.writer();
        let bytes = encode(d);
        self.write(Durability::Immediate, |txn| {
            txn.open_table(DEPLOYMENTS)?.insert(d.id.as_str(), bytes.as_slice())?;
            Ok(())
        })?;
        let mut inner = self.lock();
        inner.deployments.insert(d.id.clone(), d.clone());
        self.record_change(&mut inner, Change::Deployment(Box::new(d.clone())));
        drop(inner);
        self.emit(Event::Deployment(d.summary()));
        Ok(())
    }
}
