//! The primary candidate's copy of the orchestrator's state.
//!
//! `follow` streams `GET /api/v1/replica` into the candidate's own state
//! database (`<data-dir>/replica/`): a snapshot, then every durable change as
//! the orchestrator commits it. After storing what a chunk of the stream
//! brought, it confirms the version reached with `POST /api/v1/replica/ack`
//! (from a task of its own, so storing never waits for the network); the
//! orchestrator acknowledges a request only once its change is confirmed.
//! When the orchestrator says the session is gone (it was cut off for
//! falling behind), the stream is opened again and starts from a snapshot.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use reqwest::StatusCode;

use crate::client::{Client, ClientError, ReplicaAck, Snapshot, SseMessage};
use crate::deployment::Deployment;
use crate::node::GenericNode;
use crate::state::{NodeRecord, State};

/// The pause before the stream is opened again.
const RECONNECT: Duration = Duration::from_millis(250);

/// What applying one event of the stream reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reached {
    /// A snapshot of `version`, in `session`.
    Snapshot { session: String, version: u64 },
    /// Every change up to this version.
    Version(u64),
    /// Nothing to confirm (an event without a version).
    Nothing,
}

/// Streams the orchestrator's state into `state` and confirms what was stored,
/// until aborted.
pub(crate) async fn follow(node: GenericNode, state: State, join_token: String) {
    let streaming =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().unwrap_or_default();
    let acking = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    loop {
        let Some(orchestrator) = node.orchestrator() else {
            tokio::time::sleep(RECONNECT).await;
            continue;
        };
        // Every joined machine holds the join token: the stream and the
        // confirmations also carry this node's proof that it is the candidate.
        let Some(proof) = proof_of(&node) else { return };
        let (Ok(stream_client), Ok(ack_client)) = (
            Client::with_http(&orchestrator, streaming.clone()),
            Client::with_http(&orchestrator, acking.clone()),
        ) else {
            warn!(address = %orchestrator, "the orchestrator's address is unusable");
            tokio::time::sleep(RECONNECT).await;
            continue;
        };
        match stream_client.with_token(join_token.clone()).replica(&node.id, &proof).await {
            Ok(messages) => {
                let (to_ack, acked) = watch::channel(None::<(String, u64)>);
                let gone = CancellationToken::new();
                let acker = tokio::spawn(confirm_loop(
                    node.clone(),
                    ack_client.with_token(join_token.clone()),
                    acked,
                    gone.clone(),
                ));
                // Messages that arrived together are stored before one confirmation.
                let mut messages = std::pin::pin!(messages.ready_chunks(256));
                let mut session: Option<String> = None;
                'stream: loop {
                    let batch = tokio::select! {
                        () = gone.cancelled() => break,
                        batch = messages.next() => batch,
                    };
                    let Some(batch) = batch else { break };
                    let mut reached = None;
                    for message in batch {
                        let Ok(message) = message else { break 'stream };
                        match apply_event(&node, &state, &message) {
                            Ok(Reached::Snapshot { session: s, version }) => {
                                session = Some(s);
                                reached = Some(version);
                            }
                            Ok(Reached::Version(v)) => reached = Some(v),
                            Ok(Reached::Nothing) => {}
                            Err(e) => {
                                warn!(event = %message.event, error = %e, "could not store a replica event");
                                node.set_replica_ready(false);
                                gone.cancel();
                                break 'stream;
                            }
                        }
                    }
                    if let (Some(s), Some(v)) = (&session, reached) {
                        to_ack.send_replace(Some((s.clone(), v)));
                    }
                }
                // The copy stays usable (complete up to what was confirmed).
                acker.abort();
            }
            Err(ClientError::Refused { status, .. }) => {
                warn!(status = %status, "the orchestrator refused the replica stream")
            }
            Err(e) => debug!(error = %e, "no replica stream"),
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Confirms the newest version stored, again and again; cancels `gone` when
/// the orchestrator no longer knows the session.
async fn confirm_loop(
    node: GenericNode,
    client: Client,
    mut stored: watch::Receiver<Option<(String, u64)>>,
    gone: CancellationToken,
) {
    let mut confirmed: Option<(String, u64)> = None;
    loop {
        let latest = stored.borrow_and_update().clone();
        let Some((session, version)) = latest.clone().filter(|l| confirmed.as_ref() != Some(l)) else {
            if stored.changed().await.is_err() {
                return;
            }
            continue;
        };
        let Some(proof) = proof_of(&node) else { return };
        match client.replica_ack(&proof, &ReplicaAck { session, version }).await {
            Ok(()) => confirmed = latest,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                info!("the orchestrator ended the replica session; starting again from a snapshot");
                gone.cancel();
                return;
            }
            Err(ClientError::Refused { status, .. }) => {
                warn!(status = %status, "the orchestrator refused a replica confirmation");
                tokio::time::sleep(RECONNECT).await;
            }
            Err(e) => {
                debug!(error = %e, "could not confirm the replica's version");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

/// This node's signed proof, for now, that it is the node it says.
fn proof_of(node: &GenericNode) -> Option<String> {
    let key = node.key()?;
    Some(crate::auth::proof::replica_proof(key, &node.id, chrono::Utc::now().timestamp()))
}

/// Why an event of the replica stream could not be stored.
#[derive(Debug, thiserror::Error)]
enum EventError {
    /// The event's data is not what its name says.
    #[error("the event's data cannot be read: {0}")]
    Decode(#[from] serde_json::Error),
    /// The replica could not be written.
    #[error("the replica cannot be written: {0}")]
    Store(#[from] crate::state::StateError),
}

/// Stores one event of the stream.
fn apply_event(node: &GenericNode, state: &State, message: &SseMessage) -> Result<Reached, EventError> {
    let version = || {
        message.id.as_deref().and_then(|v| v.parse::<u64>().ok()).map_or(Reached::Nothing, Reached::Version)
    };
    match message.event.as_str() {
        "snapshot" => {
            let s = serde_json::from_str::<Snapshot>(&message.data)?;
            state.import_snapshot(&s.deployments, &s.nodes)?;
            state.set_meta("token_hash", &s.token_hash.to_string())?;
            state.set_meta("join_token_hash", &s.join_token_hash.to_string())?;
            state.set_meta("epoch", &s.epoch.to_string())?;
            state.set_meta("orchestrator_id", &s.orchestrator_id)?;
            if let Some((image, port, user, password)) = &s.broker {
                for (k, v) in [
                    ("broker_image", image.clone()),
                    ("broker_port", port.to_string()),
                    ("broker_user", user.clone()),
                    ("broker_password", password.clone()),
                ] {
                    state.set_meta(k, &v)?;
                }
            }
            node.set_replica_ready(true);
            info!(
                deployments = s.deployments.len(),
                nodes = s.nodes.len(),
                version = s.version,
                "replica in sync"
            );
            Ok(Reached::Snapshot { session: s.session, version: s.version })
        }
        "deployment" => {
            let d = serde_json::from_str::<Deployment>(&message.data)?;
            state.import_deployment(&d)?;
            Ok(version())
        }
        "node" => {
            let n = serde_json::from_str::<NodeRecord>(&message.data)?;
            state.import_node(&n)?;
            Ok(version())
        }
        _ => Ok(Reached::Nothing),
    }
}
