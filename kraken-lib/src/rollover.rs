//! Rollover: the platform survives the loss of its orchestrator.
//!
//! The orchestrator ranks the nodes (0 itself, 1 the primary candidate, then
//! the others). Every worker runs a [`RolloverExecutor`], which asks the
//! orchestrator's `/ping` four times a second and its node list once a second:
//!
//! - On the primary candidate it keeps a replica of the orchestrator's state
//!   (deployments with their status histories, nodes, tokens, epoch) in its
//!   own data directory, streamed from `/api/v1/replica` and confirmed change
//!   by change ([`replica`]); the orchestrator acknowledges a request only
//!   once its change is confirmed ([`replication`]). Logs are not replicated.
//! - When the orchestrator has not answered for the grace period, the primary
//!   candidate takes over ([`takeover`]): in steps that change nothing another
//!   node can see until the new orchestrator can serve, tried again with
//!   back-off when one fails, called off if the old orchestrator answers
//!   again. Workers keep their containers; the new orchestrator adopts them
//!   from their reports and places elsewhere what ran on the dead machine.
//! - Other workers that lose the orchestrator look for the new one among the
//!   nodes they knew (the node with the highest epoch that calls itself
//!   orchestrator) and follow it.
//!
//! Fencing: every message carries the sender's epoch; an orchestrator that
//! sees a newer epoch steps down, workers ignore work from an older epoch,
//! and an orchestrator starting on old data first asks the nodes it knew
//! whether a newer one leads, and joins it as a worker if so.

pub mod replica;
pub mod replication;
pub mod takeover;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;
use tracing::{info, warn};

use crate::auth::PublicKey;
use crate::builder::BuilderRegistry;
use crate::client::{Client, ClientError};
use crate::deployment::NodeId;
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::node::GenericNode;
use crate::state::{NodeRecord, State};
use takeover::{Takeover, TakeoverFaults};

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
    /// Faults to inject into the takeover's steps (tests); `None` in real use.
    pub faults: Option<TakeoverFaults>,
    /// Starts the orchestrator on this node's runner once it took over, beside
    /// the node's other executors ([`crate::node::NodeRunner::spawner`]).
    pub spawner: crate::node::ExecutorSpawner,
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
    rounds: u64,
    known: Vec<(NodeId, String)>,
    /// The node keys the orchestrator's node list named, by node id.
    keys: HashMap<NodeId, PublicKey>,
    replica: Option<Replica>,
    takeover: Option<Takeover>,
}

impl std::fmt::Debug for RolloverExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloverExecutor")
            .field("taking_over", &self.takeover.is_some())
            .finish_non_exhaustive()
    }
}

/// How often the orchestrator is asked whether it is there.
const POLL: Duration = Duration::from_millis(250);
/// How long one question may take.
const PING_TIMEOUT: Duration = Duration::from_millis(750);
/// The node list (priorities, addresses) is read every this many rounds.
const NODES_EVERY: u64 = 4;

impl RolloverExecutor {
    /// A watcher that takes over with `kit`.
    pub fn new(kit: TakeoverKit) -> Self {
        let http = reqwest::Client::builder()
            .timeout(PING_TIMEOUT)
            .connect_timeout(PING_TIMEOUT)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            kit,
            http,
            last_ok: Instant::now(),
            rounds: 0,
            known: Vec::new(),
            keys: HashMap::new(),
            replica: None,
            takeover: None,
        }
    }

    /// Whether `orchestrator` answers `/ping` as an orchestrator.
    async fn answers(http: reqwest::Client, orchestrator: &str) -> bool {
        let Ok(client) = Client::with_http(orchestrator, http) else { return false };
        client.ping().await.is_ok_and(|answer| answer.role == "orchestrator")
    }

    async fn nodes(http: reqwest::Client, orchestrator: &str) -> Result<Vec<NodeRecord>, ClientError> {
        Client::with_http(orchestrator, http)?.with_timeout(Duration::from_secs(2)).nodes().await
    }

    fn ensure_replica(&mut self, node: &GenericNode) -> Result<(), crate::state::StateError> {
        if self.replica.is_none() {
            let state = State::open(&node.config.data_dir.join("replica"), node.config.state_limits)?;
            // An older version kept the tokens in clear here; the next
            // snapshot brings their hashes.
            for legacy in ["token", "join_token"] {
                state.remove_meta(legacy)?;
            }
            self.replica = Some(Replica { state, task: None });
        }
        let Some(replica) = self.replica.as_mut() else { return Ok(()) };
        if replica.task.as_ref().is_none_or(|t| t.is_finished()) {
            let task = tokio::spawn(replica::follow(
                node.clone(),
                replica.state.clone(),
                self.kit.join_token.to_string(),
            ));
            replica.task = Some(task);
        }
        Ok(())
    }

    fn stop_stream(&mut self) {
        if let Some(task) = self.replica.as_mut().and_then(|r| r.task.take()) {
            task.abort();
        }
    }

    fn stop_replica(&mut self, node: &GenericNode) {
        self.stop_stream();
        node.set_replica_ready(false);
    }

    /// One round of a takeover: an attempt when it is due.
    async fn continue_takeover(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        self.stop_stream();
        let Some(state) = self.replica.as_ref().map(|r| r.state.clone()) else {
            return Err(ExecutionFailure::transient("no replica to take over with"));
        };
        let takeover = self.takeover.get_or_insert_with(|| Takeover::begin(&state, node.epoch()));
        if Instant::now() < takeover.next_attempt {
            return Ok(());
        }
        if takeover.attempts > 0 {
            // While this node failed to take over, another may have.
            let search = leading_orchestrator(
                self.known.clone(),
                node.id.clone(),
                node.epoch().saturating_add(1),
                None,
            );
            if let Some((id, address, epoch)) = search.await {
                info!(%address, epoch, "another node took over meanwhile; following it");
                self.takeover = None;
                self.follow(node, &id, address, epoch).await;
                return Ok(());
            }
        }
        let Some(takeover) = self.takeover.as_mut() else { return Ok(()) };
        match takeover.attempt(node, &state, &mut self.kit).await {
            Ok(leader) => {
                self.takeover = None;
                // The orchestrator runs in a task of its own on this node's
                // runner, as on a node started as orchestrator; watching
                // for a missing orchestrator ends here.
                if self.kit.spawner.start_set_up(Box::new(leader)).is_err() {
                    return Ok(()); // The node is stopping.
                }
                return Err(ExecutionFailure::finished("this node leads the platform now"));
            }
            Err(e) => takeover.failed(&e),
        }
        Ok(())
    }

    /// Follows node `id`, the orchestrator at `address` since `epoch`: its
    /// work is taken from now on, signed with the key its node record named.
    async fn follow(&mut self, node: &GenericNode, id: &str, address: String, epoch: u64) {
        let key = self.keys.get(id).copied();
        if key.is_none() {
            warn!(node = %id, "following an orchestrator whose key this node never saw; its work is refused until it announces itself");
        }
        node.update_trust(|t| {
            if key.is_some() {
                t.orchestrator = key;
            }
            t.candidate = None;
        });
        node.set_epoch(epoch);
        node.set_orchestrator(Some(address.clone()));
        self.rejoin(node, &address).await;
        self.last_ok = Instant::now();
    }

    /// Joins the new orchestrator again, so a broker that moved is followed.
    async fn rejoin(&mut self, node: &GenericNode, orchestrator: &str) {
        let Some(amqp) = self.kit.amqp.clone() else { return };
        let identity = crate::node::NodeIdentity { id: node.id.clone(), name: node.name.clone() };
        let token = self.kit.join_token.to_string();
        let Some(key) = node.public_key() else { return };
        match crate::join::request(orchestrator, &identity, &node.config, Some(&token), key).await {
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
        tokio::select! {
            () = node.shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(POLL) => {}
        }
        let Some(orchestrator) = node.orchestrator() else { return Ok(()) };
        self.rounds += 1;
        if Self::answers(self.http.clone(), &orchestrator).await {
            self.last_ok = Instant::now();
            let called_off = self.takeover.take();
            if let Some(t) = &called_off {
                info!(attempts = t.attempts, "the orchestrator answers again; the takeover is called off");
                // The attempt stopped the replica's stream: follow again at once,
                // so changes are confirmed again without waiting for a later round.
                if let Err(e) = self.ensure_replica(node) {
                    warn!(error = %e, "cannot keep the replica");
                }
            }
            if called_off.is_none() && self.rounds % NODES_EVERY != 1 {
                return Ok(());
            }
            let Ok(nodes) = Self::nodes(self.http.clone(), &orchestrator).await else { return Ok(()) };
            self.known = nodes.iter().map(|n| (n.id.clone(), n.address.clone())).collect();
            self.keys = nodes.iter().filter_map(|n| n.public_key.map(|k| (n.id.clone(), k))).collect();
            // The candidate the orchestrator names is the only node whose
            // promotion this node believes.
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
            return Ok(());
        }
        if self.last_ok.elapsed() <= node.config.node_grace {
            return Ok(());
        }
        if self.takeover.is_some() || (node.rollover_priority() == 1 && node.replica_ready()) {
            if self.takeover.is_none() {
                warn!(%orchestrator, silent_for = ?self.last_ok.elapsed(), "the orchestrator is gone; taking over");
            }
            return self.continue_takeover(node).await;
        }
        // Only the candidate the orchestrator named may have taken over. Its
        // epoch may be known here already (its announcement arrived before
        // this round): an orchestrator at this epoch or later leads now.
        let Some((candidate, _)) = node.trust().candidate else { return Ok(()) };
        let known: Vec<_> = self.known.iter().filter(|(id, _)| *id == candidate).cloned().collect();
        let search = leading_orchestrator(known, node.id.clone(), node.epoch(), Some(orchestrator.as_str()));
        if let Some((id, address, epoch)) = search.await {
            info!(%address, epoch, "following the new orchestrator");
            self.follow(node, &id, address, epoch).await;
        }
        Ok(())
    }

    async fn teardown(&mut self, node: &mut GenericNode) {
        self.stop_replica(node);
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
    leading_orchestrator(known, own_id, epoch.saturating_add(1), None)
        .await
        .map(|(_, address, epoch)| (address, epoch))
}

/// Asks the nodes at `known` for the orchestrator with the highest epoch, at
/// least `min_epoch`, other than the one at `lost` (which does not answer);
/// returns its node id, address and epoch.
async fn leading_orchestrator(
    known: Vec<(NodeId, String)>,
    own_id: NodeId,
    min_epoch: u64,
    lost: Option<&str>,
) -> Option<(NodeId, String, u64)> {
    let mut best: Option<(NodeId, String, u64)> = None;
    for (id, address) in known.iter().filter(|(id, _)| *id != own_id) {
        let Ok(found) = crate::discovery::probe(address, Duration::from_secs(1)).await else { continue };
        let newest = best.as_ref().is_none_or(|b| found.epoch > b.2);
        // Only a node's own answer counts (an address may have changed hands).
        if found.node_id == *id
            && found.is_orchestrator()
            && found.epoch >= min_epoch
            && Some(found.address.as_str()) != lost
            && newest
        {
            best = Some((id.clone(), found.address, found.epoch));
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
