//! Rollover: the platform survives the loss of its orchestrator.
//!
//! The orchestrator ranks the nodes (0 itself, 1 the primary candidate, then
//! the others). Every worker runs a [`RolloverExecutor`], which watches the
//! orchestrator's API every half second:
//!
//! - On the primary candidate it keeps a replica of the orchestrator's state
//!   (deployments with their status histories, nodes, tokens, epoch) in its
//!   own data directory, streamed continuously from `/api/v1/replica` (a full
//!   snapshot, then every change as it is committed). Logs are not replicated.
//! - When the orchestrator has not answered for the grace period, the primary
//!   candidate takes over: a new epoch, the orchestration executor on the
//!   replica, the full API and UI on its own port, and an announcement on every
//!   node's work queue. Workers keep their containers; the new orchestrator
//!   adopts them from their reports and places elsewhere what ran on the dead
//!   machine.
//! - Other workers that lose the orchestrator look for the new one among the
//!   nodes they knew (the node with the highest epoch that calls itself
//!   orchestrator) and follow it.
//!
//! Fencing: every message carries the sender's epoch; an orchestrator that
//! sees a newer epoch steps down, workers ignore work from an older epoch,
//! and an orchestrator starting on old data first asks the nodes it knew
//! whether a newer one leads, and joins it as a worker if so.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;
use tracing::{info, warn};

use crate::api::{self, ApiContext, JoinInfo, Snapshot, SseDecoder, SseMessage};
use crate::auth::TokenHash;
use crate::builder::BuilderRegistry;
use crate::bus::{Body, Channel, WorkRequest};
use crate::deployment::{Deployment, NodeId};
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::node::GenericNode;
use crate::orchestrator::OrchestrationExecutor;
use crate::state::{NodeRecord, Role, State};

/// A router whose routes can be swapped while it serves (a worker's small API
/// becomes the full API when it takes over).
#[derive(Clone)]
pub struct SwitchRouter {
    current: Arc<RwLock<Router>>,
}

impl std::fmt::Debug for SwitchRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchRouter").finish_non_exhaustive()
    }
}

impl SwitchRouter {
    /// A switch serving `router`.
    pub fn new(router: Router) -> Self {
        Self { current: Arc::new(RwLock::new(router)) }
    }

    /// Serves `router` from now on.
    pub fn set(&self, router: Router) {
        match self.current.write() {
            Ok(mut g) => *g = router,
            Err(p) => *p.into_inner() = router,
        }
    }

    /// A router to serve that always asks the current routes.
    pub fn router(&self) -> Router {
        let current = self.current.clone();
        Router::new().fallback_service(tower::service_fn(move |request: Request| {
            let router = current.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone());
            async move { Ok::<Response, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {})) }
        }))
    }
}

/// What a candidate serves and uses once it leads.
#[derive(Clone)]
pub struct TakeoverKit {
    /// The builders.
    pub registry: BuilderRegistry,
    /// The router the node serves.
    pub switch: SwitchRouter,
    /// The web interface, merged beside the API after a takeover.
    pub ui: Option<Router>,
    /// This node's join token, presented when it joins again or asks for the
    /// replica.
    pub join_token: Arc<str>,
    /// The broker URL joining nodes are given (a new orchestrator lets nodes
    /// join too).
    pub amqp_url: Arc<str>,
    /// The node's broker connection, to point it at a broker that moved.
    pub amqp: Option<crate::bus::amqp::AmqpBus>,
    /// The container engine (a new orchestrator may have to start the broker again).
    pub runtime: Arc<dyn crate::runtime::Runtime>,
}

impl std::fmt::Debug for TakeoverKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakeoverKit").finish_non_exhaustive()
    }
}

struct Replica {
    state: State,
    task: Option<JoinHandle<()>>,
}

/// Watches the orchestrator from a worker; keeps the replica on the primary
/// candidate; takes over when the orchestrator is gone.
pub struct RolloverExecutor {
    kit: TakeoverKit,
    http: reqwest::Client,
    last_ok: Instant,
    known: Vec<(NodeId, String)>,
    replica: Option<Replica>,
    leader: Option<OrchestrationExecutor>,
}

impl std::fmt::Debug for RolloverExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloverExecutor").field("leading", &self.leader.is_some()).finish_non_exhaustive()
    }
}

const POLL: Duration = Duration::from_millis(500);

impl RolloverExecutor {
    /// A watcher that takes over with `kit`.
    pub fn new(kit: TakeoverKit) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        Self { kit, http, last_ok: Instant::now(), known: Vec::new(), replica: None, leader: None }
    }

    async fn poll(http: reqwest::Client, orchestrator: String) -> Result<Vec<NodeRecord>, String> {
        let response =
            http.get(format!("{orchestrator}/api/v1/nodes")).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        response.json::<Vec<NodeRecord>>().await.map_err(|e| e.to_string())
    }

    fn ensure_replica(&mut self, node: &GenericNode) -> Result<(), String> {
        if self.replica.is_none() {
            let state = State::open(&node.config.data_dir.join("replica"), node.config.state_limits)
                .map_err(|e| e.to_string())?;
            // An older version kept the tokens in clear here; the next
            // snapshot brings their hashes.
            for legacy in ["token", "join_token"] {
                state.remove_meta(legacy).map_err(|e| e.to_string())?;
            }
            self.replica = Some(Replica { state, task: None });
        }
        let Some(replica) = self.replica.as_mut() else { return Ok(()) };
        if replica.task.as_ref().is_none_or(|t| t.is_finished()) {
            let task = tokio::spawn(follow_replica(
                node.clone(),
                replica.state.clone(),
                self.http.clone(),
                self.kit.join_token.to_string(),
            ));
            replica.task = Some(task);
        }
        Ok(())
    }

    fn stop_replica(&mut self, node: &GenericNode) {
        if let Some(task) = self.replica.as_mut().and_then(|r| r.task.take()) {
            task.abort();
        }
        node.set_replica_ready(false);
    }

    /// Looks for an orchestrator with a newer epoch among the nodes known.
    async fn take_over(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        let Some(mut replica) = self.replica.take() else {
            return Err(ExecutionFailure::Transient("no replica to take over with".into()));
        };
        if let Some(task) = replica.task.take() {
            task.abort();
        }
        let state = replica.state;
        let known_epoch: u64 = state.meta("epoch").ok().flatten().and_then(|e| e.parse().ok()).unwrap_or(1);
        let epoch = known_epoch.max(node.epoch()) + 1;
        let persist = |e: crate::state::StateError| ExecutionFailure::Transient(format!("the replica: {e}"));
        state.set_meta("epoch", &epoch.to_string()).map_err(persist)?;
        node.set_epoch(epoch);
        let old = state.meta("orchestrator_id").map_err(persist)?;
        if let Some(old) = &old {
            state
                .update_node(old, |n| {
                    n.role = Role::Worker;
                    n.up = false;
                    true
                })
                .map_err(persist)?;
        }
        state
            .update_node(&node.id, |n| {
                n.role = Role::Orchestrator;
                n.rollover_priority = 0;
                true
            })
            .map_err(persist)?;
        state.set_meta("orchestrator_id", &node.id).map_err(persist)?;
        self.rescue_broker(node, &state).await;
        let mut leader = OrchestrationExecutor::new(state.clone(), self.kit.registry.clone());
        leader
            .setup(node)
            .await
            .map_err(|e| ExecutionFailure::Transient(format!("starting the orchestrator: {e}")))?;
        // The replica holds the tokens' hashes only: enough to check them.
        let hash = |key: &str| -> Result<TokenHash, ExecutionFailure> {
            let text = state.meta(key).map_err(persist)?.ok_or_else(|| {
                ExecutionFailure::Transient(format!("the replica has no {key}; waiting for a snapshot"))
            })?;
            text.parse().map_err(|e| ExecutionFailure::Transient(format!("the replica's {key}: {e}")))
        };
        let join = JoinInfo { token: hash("join_token_hash")?, amqp_url: self.kit.amqp_url.clone() };
        let ctx =
            ApiContext::new(state.clone(), self.kit.registry.clone(), node.clone(), hash("token_hash")?)
                .with_join(join);
        let mut app = api::router(ctx);
        if let Some(ui) = self.kit.ui.clone() {
            app = app.merge(ui);
        }
        self.kit.switch.set(app);
        // This node's worker takes work from this node from now on.
        node.update_trust(|t| {
            t.orchestrator = node.public_key();
            t.candidate = None;
        });
        node.set_orchestrator(Some(node.api_address()));
        node.set_rollover_priority(0);
        node.set_replica_ready(false);
        let address = node.api_address();
        for n in state.nodes() {
            if n.id == node.id || Some(&n.id) == old.as_ref() {
                continue;
            }
            let work = Body::Work(WorkRequest::Orchestrator { epoch, address: address.clone() });
            if let Err(e) = node.publish(&Channel::Work(n.id.clone()), work).await {
                warn!(node = %n.id, error = %e, "could not announce the new orchestrator");
            }
        }
        info!(epoch, %address, previous = ?old, "took over as the platform's orchestrator");
        self.leader = Some(leader);
        Ok(())
    }
}

impl RolloverExecutor {
    /// When the broker went away with the old orchestrator's machine and the
    /// platform had started it itself, starts it again here (same credentials)
    /// and points this node's bus and the join answers at it.
    async fn rescue_broker(&mut self, node: &GenericNode, state: &State) {
        let Some(amqp) = self.kit.amqp.clone() else { return };
        if amqp.is_connected() {
            return;
        }
        let get = |k: &str| state.meta(k).ok().flatten();
        let (Some(image), Some(port)) =
            (get("broker_image"), get("broker_port").and_then(|p| p.parse::<u16>().ok()))
        else {
            warn!(
                "the broker is unreachable and was not started by the platform; waiting for it to come back"
            );
            return;
        };
        match crate::platform::start_broker(
            state,
            self.kit.runtime.as_ref(),
            &image,
            port,
            &node.id,
            &node.config,
        )
        .await
        {
            Ok((local, advertised)) => {
                if let Err(e) = amqp.redirect(&local).await {
                    warn!(error = %e, "could not switch to the new broker");
                    return;
                }
                self.kit.amqp_url = Arc::from(advertised.as_str());
                let deadline = Instant::now() + Duration::from_secs(90);
                while !amqp.is_connected() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                info!(connected = amqp.is_connected(), "started the platform's broker on this machine");
            }
            Err(e) => warn!(error = %e, "could not start the platform's broker here"),
        }
    }

    /// Joins the new orchestrator again, so a broker that moved is followed.
    async fn rejoin(&mut self, node: &GenericNode, orchestrator: &str) {
        let Some(amqp) = self.kit.amqp.clone() else { return };
        let identity = crate::node::NodeIdentity { id: node.id.clone(), name: node.name.clone() };
        let token = self.kit.join_token.to_string();
        let Some(key) = node.public_key() else { return };
        match crate::platform::join_platform(orchestrator, &identity, &node.config, Some(&token), key).await {
            Ok(answer) if *answer.amqp_url != *self.kit.amqp_url => {
                info!("the platform's broker moved; following it");
                if amqp.redirect(&answer.amqp_url).await.is_ok() {
                    self.kit.amqp_url = Arc::from(answer.amqp_url.as_str());
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not join the new orchestrator"),
        }
    }
}

/// Streams the orchestrator's state into `state` until aborted.
async fn follow_replica(node: GenericNode, state: State, http: reqwest::Client, join_token: String) {
    let streaming =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().unwrap_or(http);
    loop {
        let Some(orchestrator) = node.orchestrator() else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let Some(key) = node.key() else { return };
        let proof = crate::auth::proof::replica_proof(key, &node.id, chrono::Utc::now().timestamp());
        let response = streaming
            .get(format!("{orchestrator}/api/v1/replica"))
            .bearer_auth(&join_token)
            .header(crate::auth::proof::HEADER, proof)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {
                let mut body = r.bytes_stream();
                let mut decoder = SseDecoder::new();
                while let Some(Ok(chunk)) = body.next().await {
                    for message in decoder.push(&chunk) {
                        apply_event(&node, &state, &message);
                    }
                }
            }
            Ok(r) => warn!(status = %r.status(), "the orchestrator refused the replica stream"),
            Err(e) => tracing::debug!(error = %e, "no replica stream"),
        }
        tokio::time::sleep(POLL).await;
    }
}

fn apply_event(node: &GenericNode, state: &State, message: &SseMessage) {
    let (name, data) = (message.event.as_str(), &message.data);
    let applied = match name {
        "snapshot" => serde_json::from_str::<Snapshot>(data).map_err(|e| e.to_string()).and_then(|s| {
            for d in &s.deployments {
                state.import_deployment(d).map_err(|e| e.to_string())?;
            }
            for n in &s.nodes {
                state.import_node(n).map_err(|e| e.to_string())?;
            }
            state.set_meta("token_hash", &s.token_hash.to_string()).map_err(|e| e.to_string())?;
            state.set_meta("join_token_hash", &s.join_token_hash.to_string()).map_err(|e| e.to_string())?;
            state.set_meta("epoch", &s.epoch.to_string()).map_err(|e| e.to_string())?;
            state.set_meta("orchestrator_id", &s.orchestrator_id).map_err(|e| e.to_string())?;
            if let Some((image, port, user, password)) = &s.broker {
                for (k, v) in [
                    ("broker_image", image.clone()),
                    ("broker_port", port.to_string()),
                    ("broker_user", user.clone()),
                    ("broker_password", password.clone()),
                ] {
                    state.set_meta(k, &v).map_err(|e| e.to_string())?;
                }
            }
            node.set_replica_ready(true);
            info!(deployments = s.deployments.len(), nodes = s.nodes.len(), "replica in sync");
            Ok(())
        }),
        "deployment" => serde_json::from_str::<Deployment>(data)
            .map_err(|e| e.to_string())
            .and_then(|d| state.import_deployment(&d).map_err(|e| e.to_string())),
        "node" => serde_json::from_str::<NodeRecord>(data)
            .map_err(|e| e.to_string())
            .and_then(|n| state.import_node(&n).map_err(|e| e.to_string())),
        _ => Ok(()),
    };
    if let Err(e) = applied {
        warn!(event = name, error = %e, "could not apply a replica event");
        node.set_replica_ready(false);
    }
}

#[async_trait::async_trait]
impl Executor for RolloverExecutor {
    fn name(&self) -> &str {
        "rollover"
    }

    async fn setup(&mut self, _node: &mut GenericNode) -> Result<(), SetupFailure> {
        self.last_ok = Instant::now();
        Ok(())
    }

    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        if let Some(leader) = self.leader.as_mut() {
            return leader.execute(node).await;
        }
        tokio::select! {
            () = node.shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(POLL) => {}
        }
        let Some(orchestrator) = node.orchestrator() else { return Ok(()) };
        match Self::poll(self.http.clone(), orchestrator.clone()).await {
            Ok(nodes) => {
                self.last_ok = Instant::now();
                self.known = nodes.iter().map(|n| (n.id.clone(), n.address.clone())).collect();
                // The candidate the orchestrator names is the only node whose
                // promotion this node will believe.
                let candidate = nodes
                    .iter()
                    .find(|n| n.rollover_priority == 1 && n.id != node.id)
                    .and_then(|n| n.public_key.map(|k| (n.id.clone(), k)));
                node.update_trust(|t| t.candidate = candidate);
                let mine = nodes.iter().find(|n| n.id == node.id).map(|n| n.rollover_priority);
                if let Some(p) = mine {
                    node.set_rollover_priority(p);
                }
                if mine == Some(1) {
                    if let Err(e) = self.ensure_replica(node) {
                        warn!(error = %e, "cannot keep the replica");
                    }
                } else {
                    self.stop_replica(node);
                }
            }
            Err(why) if self.last_ok.elapsed() > node.config.node_grace => {
                if node.rollover_priority() == 1 && node.replica_ready() {
                    warn!(%orchestrator, %why, "the orchestrator is gone; taking over");
                    return self.take_over(node).await;
                }
                // Only the candidate the orchestrator named may have taken over.
                let Some((candidate, key)) = node.trust().candidate else { return Ok(()) };
                let known: Vec<_> = self.known.iter().filter(|(id, _)| *id == candidate).cloned().collect();
                let search = newer_orchestrator(known, node.id.clone(), node.epoch());
                if let Some((address, epoch)) = search.await {
                    info!(%address, epoch, "following the new orchestrator");
                    node.set_epoch(epoch);
                    node.set_orchestrator(Some(address.clone()));
                    node.update_trust(|t| {
                        t.orchestrator = Some(key);
                        t.candidate = None;
                    });
                    self.rejoin(node, &address).await;
                    self.last_ok = Instant::now();
                }
            }
            Err(_) => {}
        }
        Ok(())
    }

    async fn teardown(&mut self, node: &mut GenericNode) {
        self.stop_replica(node);
        if let Some(leader) = self.leader.as_mut() {
            leader.teardown(node).await;
        }
    }
}

/// Asks the nodes at `known` (id, API address) whether one of them is an
/// orchestrator with a newer epoch than `epoch`; returns its address and
/// epoch. Only an orchestrator's own answer counts: a worker's idea of who
/// leads may be stale while a takeover is under way.
pub async fn newer_orchestrator(
    known: Vec<(NodeId, String)>,
    own_id: NodeId,
    epoch: u64,
) -> Option<(String, u64)> {
    let mut best: Option<(String, u64)> = None;
    for (id, address) in known.iter().filter(|(id, _)| *id != own_id) {
        let Ok(found) = crate::discovery::probe(address, Duration::from_secs(1)).await else { continue };
        if found.node_id == *id
            && found.is_orchestrator()
            && found.epoch > epoch
            && best.as_ref().is_none_or(|b| found.epoch > b.1)
        {
            best = Some((found.address, found.epoch));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as HttpBody;
    use axum::routing::get;

    #[tokio::test]
    async fn a_switch_router_serves_the_routes_set_last() {
        let switch = SwitchRouter::new(Router::new().route("/ping", get(|| async { "worker" })));
        let app = switch.router();
        let ask = |app: Router| async move {
            let response = app
                .oneshot(Request::get("/ping").body(HttpBody::empty()).expect("request"))
                .await
                .expect("infallible");
            let bytes =
                http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
            String::from_utf8_lossy(&bytes).to_string()
        };
        assert_eq!(ask(app.clone()).await, "worker");
        switch.set(Router::new().route("/ping", get(|| async { "orchestrator" })));
        assert_eq!(ask(app).await, "orchestrator");
    }
}
