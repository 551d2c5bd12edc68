//! Synchronous replication on the orchestrator's side: who copies the state,
//! how far each copy has confirmed, and whether a change may be acknowledged.
//!
//! The primary candidate streams the state from `GET /api/v1/replica` (a
//! session per stream) and confirms, through `POST /api/v1/replica/ack`, the
//! version (see [`State::version`](crate::state::State::version)) up to which
//! it has stored every change. A request that changes the platform is
//! answered only once every connected copy confirmed its change
//! ([`Replication::confirm`]), so an acknowledged request survives the loss of
//! the orchestrator. A copy that does not confirm within the timeout is cut
//! off and the platform runs **degraded** (changes are acknowledged once they
//! are on this machine's disk only) until a copy has caught up again; the API
//! and the UI say so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::deployment::{random_id, NodeId};

/// Where the platform's replication stands, as `GET /api/v1/platform` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplicationState {
    /// A rollover candidate holds a copy and confirms every change before it
    /// is acknowledged.
    Synchronous,
    /// Other machines are up but no copy confirms changes: an acknowledged
    /// change could be lost if this machine died now.
    Degraded,
    /// No other machine could hold a copy (one machine, or no other node up).
    Off,
}

/// The replication status with the details people need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicationStatus {
    /// The state.
    pub state: ReplicationState,
    /// Why the platform is degraded, when it is.
    pub reason: Option<String>,
    /// The node holding the copy, when one is connected.
    #[schema(value_type = Option<String>)]
    pub candidate: Option<NodeId>,
}

/// What [`Replication::confirm`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Every connected copy holds the change.
    Replicated,
    /// The change is on this machine only; the reason says why.
    Local(String),
}

struct Session {
    node: NodeId,
    /// Every change up to this version is stored there.
    acked: u64,
    /// Whether it stored its snapshot: only then is it a copy to wait for.
    ready: bool,
    stop: CancellationToken,
}

#[derive(Default)]
struct Sessions {
    open: HashMap<String, Session>,
    /// Why the platform is degraded; `None` while copies confirm in time.
    degraded: Option<String>,
}

struct Inner {
    timeout: Duration,
    // Guards the sessions; held for map operations only, never across an await.
    sessions: Mutex<Sessions>,
    /// Bumped on every acknowledgement and every change of the status.
    changed: watch::Sender<u64>,
}

/// The orchestrator's record of the copies of its state. Cheap to clone.
#[derive(Clone)]
pub struct Replication {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").field("timeout", &self.inner.timeout).finish_non_exhaustive()
    }
}

/// One open replica stream; closing it (dropping this) ends the session.
#[derive(Debug)]
pub struct SessionGuard {
    replication: Replication,
    /// The session's id, sent to the candidate with the snapshot.
    pub id: String,
    /// Cancelled when the session is cut off (it fell behind); the stream ends then.
    pub stop: CancellationToken,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let removed = self.replication.lock().open.remove(&self.id);
        if let Some(s) = removed {
            info!(node = %s.node, "the rollover candidate's replica stream closed");
            self.replication.bump();
        }
    }
}

impl Replication {
    /// A record where a copy has `timeout` to confirm a change.
    pub fn new(timeout: Duration) -> Self {
        let (changed, _) = watch::channel(0);
        Self { inner: Arc::new(Inner { timeout, sessions: Mutex::default(), changed }) }
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How long a copy has to confirm a change.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Opens a session for `node`'s copy, which starts complete at `version`
    /// (the snapshot it is sent first counts as confirmed once acknowledged).
    pub fn open(&self, node: &str) -> SessionGuard {
        let id = random_id(8);
        let stop = CancellationToken::new();
        self.lock().open.insert(
            id.clone(),
            Session { node: node.to_string(), acked: 0, ready: false, stop: stop.clone() },
        );
        info!(%node, "a rollover candidate opened a replica stream");
        self.bump();
        SessionGuard { replication: self.clone(), id, stop }
    }

    /// Records that session `id` stored every change up to `version`; `latest`
    /// is the state's current version (a copy that reached it ends a degraded
    /// period). False when there is no such session (it was cut off).
    pub fn ack(&self, id: &str, version: u64, latest: u64) -> bool {
        let mut sessions = self.lock();
        let Some(session) = sessions.open.get_mut(id) else { return false };
        session.acked = session.acked.max(version);
        // The first confirmation is the snapshot's.
        session.ready = true;
        let caught_up = session.acked >= latest;
        let node = session.node.clone();
        if caught_up && sessions.degraded.take().is_some() {
            info!(%node, "the rollover candidate has caught up; changes are replicated again");
        }
        drop(sessions);
        self.bump();
        true
    }

    /// Waits until every connected copy holds the change that made `version`,
    /// at most the timeout. A copy that misses the timeout is cut off (its
    /// stream ends; the candidate reconnects and starts from a snapshot) and
    /// the platform is degraded until a copy has caught up.
    pub async fn confirm(&self, version: u64) -> Confirmed {
        let mut changes = self.inner.changed.subscribe();
        let waiting = async {
            loop {
                {
                    let sessions = self.lock();
                    if let Some(reason) = &sessions.degraded {
                        return Confirmed::Local(reason.clone());
                    }
                    if sessions.open.is_empty() {
                        return Confirmed::Local("no rollover candidate is connected".into());
                    }
                    // A candidate still storing its snapshot is no copy yet:
                    // nothing to wait for (and no reason to cut it off).
                    let copies: Vec<&Session> = sessions.open.values().filter(|s| s.ready).collect();
                    if copies.is_empty() {
                        return Confirmed::Local("the rollover candidate is still copying the state".into());
                    }
                    if copies.iter().all(|s| s.acked >= version) {
                        return Confirmed::Replicated;
                    }
                }
                if changes.changed().await.is_err() {
                    return Confirmed::Local("the replication record is gone".into());
                }
            }
        };
        match tokio::time::timeout(self.inner.timeout, waiting).await {
            Ok(found) => found,
            Err(_) => {
                let reason = format!(
                    "the rollover candidate did not confirm a change within {} ms",
                    self.inner.timeout.as_millis()
                );
                let mut sessions = self.lock();
                for s in sessions.open.values().filter(|s| s.ready && s.acked < version) {
                    warn!(node = %s.node, version, acked = s.acked, "{reason}; running degraded");
                    s.stop.cancel();
                }
                sessions.degraded.get_or_insert(reason.clone());
                drop(sessions);
                self.bump();
                Confirmed::Local(reason)
            }
        }
    }

    /// The status; `others_up` says whether another node could hold a copy.
    pub fn status(&self, others_up: bool) -> ReplicationStatus {
        let sessions = self.lock();
        let candidate = sessions.open.values().filter(|s| s.ready).map(|s| s.node.clone()).next();
        let copying = sessions.open.values().any(|s| !s.ready);
        match (&sessions.degraded, candidate) {
            (Some(reason), candidate) => ReplicationStatus {
                state: ReplicationState::Degraded,
                reason: Some(reason.clone()),
                candidate,
            },
            (None, Some(candidate)) => ReplicationStatus {
                state: ReplicationState::Synchronous,
                reason: None,
                candidate: Some(candidate),
            },
            (None, None) if others_up || copying => ReplicationStatus {
                state: ReplicationState::Degraded,
                reason: Some(
                    if copying {
                        "the rollover candidate is still copying the state"
                    } else {
                        "no rollover candidate holds a copy of the state yet"
                    }
                    .into(),
                ),
                candidate: None,
            },
            (None, None) => ReplicationStatus { state: ReplicationState::Off, reason: None, candidate: None },
        }
    }

    /// A receiver that changes whenever the status may have changed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_is_confirmed_once_the_copy_has_it() {
        let r = Replication::new(Duration::from_secs(30));
        assert_eq!(r.status(false).state, ReplicationState::Off);
        assert!(matches!(r.confirm(1).await, Confirmed::Local(_)), "no copy: nothing to wait for");
        let session = r.open("n2");
        assert!(
            matches!(r.confirm(1).await, Confirmed::Local(why) if why.contains("still copying")),
            "a candidate that has not stored its snapshot is no copy yet"
        );
        assert!(!session.stop.is_cancelled(), "and it is not cut off for it");
        assert!(r.ack(&session.id, 1, 1), "the snapshot is stored");
        let waiting = tokio::spawn({
            let r = r.clone();
            async move { r.confirm(3).await }
        });
        assert!(r.ack(&session.id, 2, 3));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "version 2 does not hold the change of version 3");
        assert!(r.ack(&session.id, 3, 3));
        assert_eq!(waiting.await.expect("joins"), Confirmed::Replicated);
        let status = r.status(true);
        assert_eq!((status.state, status.candidate.as_deref()), (ReplicationState::Synchronous, Some("n2")));
    }

    #[tokio::test]
    async fn a_silent_copy_is_cut_off_and_the_platform_degrades_until_one_catches_up() {
        let r = Replication::new(Duration::from_millis(50));
        let session = r.open("n2");
        assert!(r.ack(&session.id, 0, 0), "its snapshot is stored");
        let answer = r.confirm(1).await;
        assert!(matches!(&answer, Confirmed::Local(why) if why.contains("did not confirm")), "{answer:?}");
        assert!(session.stop.is_cancelled(), "the lagging stream is ended");
        assert_eq!(r.status(true).state, ReplicationState::Degraded);
        // While degraded, changes are not held up.
        assert!(matches!(r.confirm(2).await, Confirmed::Local(_)));
        drop(session);
        let again = r.open("n2");
        assert_eq!(
            r.status(true).reason.as_deref(),
            Some("the rollover candidate did not confirm a change within 50 ms")
        );
        assert!(r.ack(&again.id, 1, 2));
        assert_eq!(r.status(true).state, ReplicationState::Degraded, "still behind");
        assert!(r.ack(&again.id, 2, 2));
        assert_eq!(r.status(true).state, ReplicationState::Synchronous);
        assert!(!r.ack("no-such-session", 2, 2));
    }

    #[test]
    fn no_copy_with_other_nodes_up_is_degraded() {
        let r = Replication::new(Duration::from_secs(1));
        let status = r.status(true);
        assert_eq!(status.state, ReplicationState::Degraded);
        assert!(status.reason.unwrap_or_default().contains("no rollover candidate"));
    }
}
