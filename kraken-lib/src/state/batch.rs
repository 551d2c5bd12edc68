//! Several deployments changed in one durable commit. A reconciliation pass
//! that places many deployments at once (a platform starting with a backlog,
//! a machine's apps moved after it died) would otherwise wait for one synced
//! disk write per deployment.

use redb::Durability;

use super::{encode, Change, Event, State, StateError, DEPLOYMENTS};
use crate::deployment::Deployment;

impl State {
    /// Changes each deployment named in `ids` with `f`; those for which `f`
    /// returns true are stored in one durable commit and announced. Returns,
    /// in the order of `ids`, each deployment after the call (`None` for an
    /// unknown id) with whether it was changed.
    ///
    /// # Errors
    /// [`StateError`] when the commit failed; then none of the changes was
    /// made.
    pub fn update_deployments(
        &self,
        ids: &[String],
        mut f: impl FnMut(&mut Deployment) -> bool,
    ) -> Result<Vec<Option<(Deployment, bool)>>, StateError> {
        let _writer = self.writer();
        let mut out = Vec::with_capacity(ids.len());
        let mut changed = Vec::new();
        for id in ids {
            let Some(mut next) = self.deployment(id) else {
                out.push(None);
                continue;
            };
            let did = f(&mut next);
            if did {
                changed.push((id.clone(), encode(&next)));
            }
            out.push(Some((next, did)));
        }
        if changed.is_empty() {
            return Ok(out);
        }
        self.write(Durability::Immediate, |txn| {
            let mut table = txn.open_table(DEPLOYMENTS)?;
            for (id, bytes) in &changed {
                table.insert(id.as_str(), bytes.as_slice())?;
            }
            Ok(())
        })?;
        let mut events = Vec::with_capacity(changed.len());
        let mut inner = self.lock();
        for (next, _) in out.iter_mut().flatten().filter(|(_, did)| *did) {
            // Resource samples (in memory only) may have come in meanwhile.
            if let Some(live) = inner.deployments.get(&next.id) {
                next.stats = live.stats;
                next.stats_history = live.stats_history.clone();
            }
            inner.deployments.insert(next.id.clone(), next.clone());
            self.record_change(&mut inner, Change::Deployment(Box::new(next.clone())));
            events.push(Event::Deployment(next.summary()));
        }
        drop(inner);
        for event in events {
            self.emit(event);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateLimits;

    #[test]
    fn one_commit_changes_the_chosen_deployments_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        let a = state.create_deployment("https://example.com/a.git", "main").expect("a");
        let b = state.create_deployment("https://example.com/b.git", "main").expect("b");
        let ids = vec![a.id.clone(), "missing".to_string(), b.id.clone()];
        let mut events = state.subscribe();
        let out = state
            .update_deployments(&ids, |d| {
                if d.id == a.id {
                    d.node = Some("n1".into());
                    true
                } else {
                    false
                }
            })
            .expect("update");
        assert_eq!(out.len(), 3);
        assert!(out[0].as_ref().is_some_and(|(d, did)| *did && d.node.as_deref() == Some("n1")));
        assert!(out[1].is_none());
        assert!(out[2].as_ref().is_some_and(|(d, did)| !*did && d.node.is_none()));
        // Exactly one announcement: the changed deployment's.
        match events.try_recv() {
            Ok(Event::Deployment(s)) => assert_eq!(s.id, a.id),
            other => panic!("expected the changed deployment's event, got {other:?}"),
        }
        assert!(events.try_recv().is_err(), "an unchanged deployment was announced");
        drop(state);
        let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
        assert_eq!(state.deployment(&a.id).and_then(|d| d.node), Some("n1".to_string()));
        assert_eq!(state.deployment(&b.id).and_then(|d| d.node), None);
    }
}
