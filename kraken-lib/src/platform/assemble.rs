//! Putting an agent together from a [`PlatformBuilder`]: a worker joins its
//! platform and watches the orchestrator; an orchestrator (alone or with a
//! worker beside it) opens its state, settles its tokens, connects its bus
//! and serves the orchestrator's role.

use std::sync::Arc;

use tracing::info;

use super::{
    fenced_by_newer, join_token_slot, register_own_key, remove_scratch, settle_token, token_slot, NodeRole,
    Platform, PlatformBuilder, PlatformError,
};
use crate::api::{self, JoinInfo};
use crate::auth::NodeKey;
use crate::builder::BuilderRegistry;
use crate::bus::amqp::{AmqpBus, AmqpOptions};
use crate::bus::memory::MemoryBus;
use crate::bus::Bus;
use crate::node::{GenericNode, NodeConfig, NodeIdentity, NodeRunner};
use crate::role::OrchestratorRole;
use crate::rollover::{RolloverExecutor, SwitchRouter, TakeoverKit};
use crate::runtime::Runtime;
use crate::state::State;
use crate::worker::{PresenceExecutor, WorkerExecutor};

/// What every role starts from: the node's identity, key and bound port.
struct Ground {
    config: NodeConfig,
    identity: NodeIdentity,
    key: Arc<NodeKey>,
    listener: tokio::net::TcpListener,
    local_addr: std::net::SocketAddr,
    registry: BuilderRegistry,
    runtime: Arc<dyn Runtime>,
}

/// Starts the agent `b` describes (its registry and runtime are set).
pub(super) async fn start(mut b: PlatformBuilder) -> Result<Platform, PlatformError> {
    let mut registry = b
        .registry
        .take()
        .unwrap_or_else(|| BuilderRegistry::with_builtins(crate::builder::BaseImages::defaults()));
    let Some(runtime) = b.runtime.take() else {
        return Err(PlatformError::Runtime(crate::runtime::RuntimeError::Unexpected(
            "no container engine was given".into(),
        )));
    };
    // Builds trust the node's CA files and get its proxy variables.
    registry.set_build_env(crate::builder::BuildEnv::load(&b.config.build_ca)?);
    let mut config = b.config.clone();
    let data_dir = config.data_dir.clone();
    // Tokens and the node's key live here: nobody else may look in.
    crate::auth::files::private_dir(&data_dir)
        .map_err(|source| PlatformError::Io { path: data_dir.clone(), source })?;
    let identity = NodeIdentity::load_or_create(&data_dir, b.name.as_deref())
        .map_err(|source| PlatformError::Io { path: data_dir.join("node-id"), source })?;
    remove_scratch(&data_dir);
    let key = Arc::new(NodeKey::load_or_create(&data_dir)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| PlatformError::Bind { addr: config.listen, source })?;
    let local_addr =
        listener.local_addr().map_err(|source| PlatformError::Bind { addr: config.listen, source })?;
    config.listen = local_addr;

    if !matches!(b.role, NodeRole::Worker { .. }) {
        // An orchestrator starting on old data first asks the nodes it knew
        // whether another one took over meanwhile; then it joins that one.
        if let Some((address, stored_join_token)) =
            fenced_by_newer(&data_dir, &identity, config.state_limits).await?
        {
            tracing::warn!(%address, "a newer orchestrator leads this platform; joining it as a worker");
            b.role = NodeRole::Worker { orchestrator: address };
            b.join_token = b.join_token.or(stored_join_token);
        }
    }
    let ground = Ground { config, identity, key, listener, local_addr, registry, runtime };
    match b.role.clone() {
        NodeRole::Worker { orchestrator } => start_worker(b, ground, &orchestrator).await,
        _ => start_orchestrator(b, ground).await,
    }
}

/// A worker: joins the platform the address leads to, takes work from its
/// orchestrator and watches it (taking over when it is the candidate).
async fn start_worker(b: PlatformBuilder, g: Ground, address: &str) -> Result<Platform, PlatformError> {
    // The address given may be any node of the platform: a worker names
    // its orchestrator, which is asked instead.
    let orchestrator = crate::discovery::join(address)
        .await
        .map_err(|source| crate::join::JoinError::Discovery { address: address.to_string(), source })?
        .address;
    info!(%orchestrator, "joining the platform of this orchestrator");
    let answer =
        crate::join::request(&orchestrator, &g.identity, &g.config, b.join_token.as_deref(), g.key.public())
            .await?;
    let Some(orchestrator_key) = answer.orchestrator_key else {
        return Err(crate::join::JoinError::NoOrchestratorKey { address: orchestrator }.into());
    };
    let amqp = AmqpBus::connect(&answer.amqp_url, AmqpOptions::default()).await?;
    amqp.sign_with(g.key.clone());
    let bus: Arc<dyn Bus> = Arc::new(amqp.clone());
    let node = GenericNode::new(g.identity, g.config, bus).with_key(g.key);
    node.update_trust(|t| t.orchestrator = Some(orchestrator_key));
    node.set_epoch(answer.epoch);
    node.set_orchestrator(Some(answer.orchestrator_address.clone()));
    node.set_rollover_priority(u32::MAX);
    let switch = SwitchRouter::new(api::worker_router(node.clone()));
    let runner = NodeRunner::new(node.clone());
    let kit = TakeoverKit {
        registry: g.registry.clone(),
        switch: switch.clone(),
        ui: b.ui.clone(),
        amqp: Some(amqp.clone()),
        runtime: g.runtime.clone(),
        faults: b.takeover_faults.clone(),
        join_token: Arc::from(b.join_token.clone().unwrap_or_default().as_str()),
        amqp_url: Arc::from(answer.amqp_url.as_str()),
        spawner: runner.spawner(),
    };
    let mut runner = runner.with(WorkerExecutor::new(g.runtime, g.registry)).with(RolloverExecutor::new(kit));
    for executor in b.executors {
        runner.push(executor);
    }
    Ok(Platform {
        node,
        runner,
        listener: g.listener,
        app: switch.router(),
        token: None,
        join_token: None,
        joinable: false,
        local_addr: g.local_addr,
        announce: b.announce,
    })
}

/// An orchestrator (with a worker beside it for [`NodeRole::Combined`]).
async fn start_orchestrator(b: PlatformBuilder, g: Ground) -> Result<Platform, PlatformError> {
    let data_dir = g.config.data_dir.clone();
    let state = State::open(&data_dir.join("state"), g.config.state_limits)?;
    let token = settle_token(&state, token_slot(&data_dir), b.token)?;
    let epoch: u64 = state.meta("epoch")?.and_then(|e| e.parse().ok()).unwrap_or(1);
    state.set_meta("epoch", &epoch.to_string())?;
    state.set_meta("orchestrator_id", &g.identity.id)?;
    let mut amqp_url = b.amqp_url;
    let mut amqp_advertise_url = b.amqp_advertise_url;
    if let (None, Some(image)) = (&amqp_url, &b.broker_image) {
        let urls =
            crate::broker::start(&state, g.runtime.as_ref(), image, b.broker_port, &g.identity.id, &g.config)
                .await?;
        amqp_url = Some(urls.local);
        amqp_advertise_url = amqp_advertise_url.or(Some(urls.advertised));
    }
    let (bus, join, join_token): (Arc<dyn Bus>, Option<JoinInfo>, Option<String>) = match &amqp_url {
        Some(url) => {
            let bus = crate::broker::connect_patiently(url).await?;
            bus.sign_with(g.key.clone());
            let settled = settle_token(&state, join_token_slot(&data_dir), b.join_token)?;
            let advertised = amqp_advertise_url.unwrap_or_else(|| url.clone());
            let join = JoinInfo { token: settled.hash, amqp_url: Arc::from(advertised.as_str()) };
            (Arc::new(bus), Some(join), settled.clear)
        }
        None => (Arc::new(MemoryBus::new()), None, None),
    };
    register_own_key(&state, &g.identity, &g.config, &g.key)?;
    let node = GenericNode::new(g.identity, g.config, bus).with_key(g.key.clone());
    // Its own worker takes work from it.
    node.update_trust(|t| t.orchestrator = Some(g.key.public()));
    node.set_epoch(epoch);
    node.set_orchestrator(Some(node.api_address()));
    let role = OrchestratorRole::new(state, g.registry.clone(), b.ui);
    let mut runner = NodeRunner::new(node.clone()).with(role.executor());
    if b.role == NodeRole::Combined {
        runner = runner.with(WorkerExecutor::new(g.runtime, g.registry));
    } else {
        runner = runner.with(PresenceExecutor::new());
    }
    for executor in b.executors {
        runner.push(executor);
    }
    let joinable = join.is_some();
    let app = role.api(&node, token.hash, join);
    Ok(Platform {
        node,
        runner,
        listener: g.listener,
        app,
        token: token.clear,
        join_token,
        joinable,
        local_addr: g.local_addr,
        // A platform without a broker cannot be joined: nothing to announce.
        announce: b.announce && joinable,
    })
}
