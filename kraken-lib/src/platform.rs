//! One entry point for an agent: a combined node (orchestrator and worker),
//! an orchestrator-only node, or a worker-only node that joins a platform.
//!
//! [`Platform::start`] opens the state, makes or reads the platform and join
//! tokens, connects the bus (in-process for a single machine, RabbitMQ when a
//! broker URL is given), binds the API's port and returns; [`Platform::run`]
//! serves until the given shutdown future completes. The `kraken up`,
//! `kraken orchestrator` and `kraken worker` commands are this, plus flags.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tracing::info;

use crate::api::{self, ApiContext, JoinInfo};
use crate::auth::settle::{settle, Settled, Slot};
use crate::auth::{AuthError, NodeKey, PublicKey};
use crate::builder::BuilderRegistry;
use crate::bus::amqp::{AmqpBus, AmqpOptions};
use crate::bus::memory::MemoryBus;
use crate::bus::{Bus, BusError};
use crate::client::{Client, ClientError, JoinAnswer, JoinRequest};
use crate::node::{GenericNode, NodeConfig, NodeError, NodeIdentity, NodeRunner};
use crate::orchestrator::OrchestrationExecutor;
use crate::rollover::{newer_orchestrator, RolloverExecutor, SwitchRouter, TakeoverKit};
use crate::runtime::Runtime;
use crate::state::{KeyConflict, Role, State, StateError};
use crate::worker::{PresenceExecutor, WorkerExecutor};

/// The file in the data directory that holds the platform token (mode 0600).
pub const TOKEN_FILE: &str = "token";
/// The file in the data directory that holds the join token (mode 0600).
pub const JOIN_TOKEN_FILE: &str = "join-token";

/// Why the platform could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The state could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The API's address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another program using that port? choose another with --listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file in the data directory could not be used.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The node stopped with an error.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The build settings (`--build-ca`) could not be used.
    #[error(transparent)]
    BuildEnv(#[from] crate::builder::BuildEnvError),
    /// A token or key could not be made, read or kept.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The message broker could not be used.
    #[error("the message broker: {0}")]
    Bus(#[from] BusError),
    /// The platform's own broker could not be started.
    #[error("the platform's message broker: {0}")]
    Broker(String),
    /// The orchestrator refused to let this node join, or could not be asked.
    #[error("joining the platform at {address} failed: {reason}")]
    Join {
        /// The orchestrator asked.
        address: String,
        /// Why.
        reason: String,
    },
}

/// Which executors an agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    /// Orchestrator and worker in one agent.
    Combined,
    /// Only the orchestrator (no apps run on this machine).
    Orchestrator,
    /// Only a worker of the platform whose orchestrator answers at `orchestrator`.
    Worker {
        /// The orchestrator's API address.
        orchestrator: String,
    },
}

/// What a platform is started with.
pub struct PlatformOptions {
    /// The node's settings.
    pub config: NodeConfig,
    /// A token to use instead of the stored (or a new) one.
    pub token: Option<String>,
    /// A name for the node instead of the host name.
    pub name: Option<String>,
    /// The builders.
    pub registry: BuilderRegistry,
    /// A router merged beside the API (the web interface).
    pub ui: Option<Router>,
    /// Which executors to run.
    pub role: NodeRole,
    /// The RabbitMQ URL the orchestrator uses; `None` keeps the in-process bus
    /// (a single machine; nobody can join).
    pub amqp_url: Option<String>,
    /// The broker URL handed to joining nodes when it differs from `amqp_url`
    /// (e.g. a LAN address instead of 127.0.0.1).
    pub amqp_advertise_url: Option<String>,
    /// The join token (orchestrator: instead of the stored or a new one;
    /// worker: the token to present).
    pub join_token: Option<String>,
    /// Without `amqp_url`: start a RabbitMQ broker as a container of this image
    /// (credentials made for this platform) and use it.
    pub broker_image: Option<String>,
    /// The host port the started broker listens on.
    pub broker_port: u16,
    /// Faults to inject into a takeover's steps, for tests of its recovery;
    /// `None` in real use.
    pub takeover_faults: Option<crate::rollover::takeover::TakeoverFaults>,
    /// Announce this node over mDNS (platforms of several machines only):
    /// its role, epoch and orchestrator, kept up to date.
    pub announce: bool,
}

impl PlatformOptions {
    /// Options for a combined node with the in-process bus.
    pub fn combined(config: NodeConfig, registry: BuilderRegistry) -> Self {
        Self {
            config,
            token: None,
            name: None,
            registry,
            ui: None,
            role: NodeRole::Combined,
            amqp_url: None,
            amqp_advertise_url: None,
            join_token: None,
            broker_image: None,
            broker_port: 5672,
            takeover_faults: None,
            announce: false,
        }
    }
}

impl std::fmt::Debug for PlatformOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformOptions")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// A started platform, ready to [`run`](Platform::run).
pub struct Platform {
    node: GenericNode,
    runner: NodeRunner,
    listener: tokio::net::TcpListener,
    app: Router,
    token: Option<String>,
    join_token: Option<String>,
    joinable: bool,
    local_addr: SocketAddr,
    announce: bool,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("node", &self.node)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// The platform token's place: its hash in the state, the token in
/// [`TOKEN_FILE`] (where the CLI on this machine finds it).
fn token_slot(data_dir: &std::path::Path) -> (PathBuf, &'static str, &'static str, &'static str) {
    (data_dir.join(TOKEN_FILE), "platform token", "token_hash", "token")
}

/// The join token's place: its hash in the state, the token in [`JOIN_TOKEN_FILE`].
fn join_token_slot(data_dir: &std::path::Path) -> (PathBuf, &'static str, &'static str, &'static str) {
    (data_dir.join(JOIN_TOKEN_FILE), "join token", "join_token_hash", "join_token")
}

/// Settles one token (see [`crate::auth::settle`]); warns when its file is
/// gone, since the token itself can then not be shown again.
fn settle_token(
    state: &State,
    (file, what, hash_key, legacy_key): (PathBuf, &str, &str, &str),
    given: Option<String>,
) -> Result<Settled, PlatformError> {
    let settled = settle(state, Slot { what, hash_key, legacy_key, file: &file }, given)?;
    if settled.clear.is_none() {
        tracing::warn!(
            file = %file.display(),
            "the {what} is kept only as a hash and its file is gone, so it cannot be shown; \
             it still works where it is known; start with a new one given on the command line to replace it"
        );
    }
    Ok(settled)
}

impl Platform {
    /// Opens the state, settles the token, binds the API and prepares the
    /// combined node's executors.
    ///
    /// # Errors
    /// [`PlatformError`] saying what could not be used.
    pub async fn start(
        mut options: PlatformOptions,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Self, PlatformError> {
        // Builds trust the node's CA files and get its proxy variables.
        options.registry.set_build_env(crate::builder::BuildEnv::load(&options.config.build_ca)?);
        let mut config = options.config;
        let data_dir = config.data_dir.clone();
        // Tokens and the node's key live here: nobody else may look in.
        crate::auth::files::private_dir(&data_dir)
            .map_err(|source| PlatformError::Io { path: data_dir.clone(), source })?;
        let identity = NodeIdentity::load_or_create(&data_dir, options.name.as_deref())
            .map_err(|source| PlatformError::Io { path: data_dir.join("node-id"), source })?;
        remove_scratch(&data_dir);
        let key = Arc::new(NodeKey::load_or_create(&data_dir)?);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| PlatformError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| PlatformError::Bind { addr: config.listen, source })?;
        config.listen = local_addr;

        let mut role = options.role.clone();
        let mut join_token = options.join_token.clone();
        if !matches!(role, NodeRole::Worker { .. }) {
            // An orchestrator starting on old data first asks the nodes it knew
            // whether another one took over meanwhile; then it joins that one.
            if let Some((address, stored_join_token)) =
                fenced_by_newer(&data_dir, &identity, config.state_limits).await?
            {
                tracing::warn!(%address, "a newer orchestrator leads this platform; joining it as a worker");
                role = NodeRole::Worker { orchestrator: address };
                join_token = join_token.or(stored_join_token);
            }
        }
        if let NodeRole::Worker { orchestrator } = &role {
            // The address given may be any node of the platform: a worker names
            // its orchestrator, which is asked instead.
            let orchestrator = crate::discovery::join(orchestrator)
                .await
                .map_err(|e| PlatformError::Join { address: orchestrator.clone(), reason: e.to_string() })?
                .address;
            info!(%orchestrator, "joining the platform of this orchestrator");
            let answer =
                join_platform(&orchestrator, &identity, &config, join_token.as_deref(), key.public()).await?;
            let Some(orchestrator_key) = answer.orchestrator_key else {
                return Err(PlatformError::Join {
                    address: orchestrator.clone(),
                    reason: "the orchestrator sent no key to check its work with; it runs an older Kraken: \
                             upgrade it first"
                        .into(),
                });
            };
            let amqp = AmqpBus::connect(&answer.amqp_url, AmqpOptions::default()).await?;
            amqp.sign_with(key.clone());
            let bus: Arc<dyn Bus> = Arc::new(amqp.clone());
            let node = GenericNode::new(identity, config, bus).with_key(key);
            node.update_trust(|t| t.orchestrator = Some(orchestrator_key));
            node.set_epoch(answer.epoch);
            node.set_orchestrator(Some(answer.orchestrator_address.clone()));
            node.set_rollover_priority(u32::MAX);
            let switch = SwitchRouter::new(api::worker_router(node.clone()));
            let kit = TakeoverKit {
                registry: options.registry.clone(),
                switch: switch.clone(),
                ui: options.ui.clone(),
                amqp: Some(amqp.clone()),
                runtime: runtime.clone(),
                faults: options.takeover_faults.clone(),
                join_token: Arc::from(join_token.clone().unwrap_or_default().as_str()),
                amqp_url: Arc::from(answer.amqp_url.as_str()),
            };
            let runner = NodeRunner::new(node.clone())
                .with(WorkerExecutor::new(runtime, options.registry))
                .with(RolloverExecutor::new(kit));
            let app = switch.router();
            return Ok(Self {
                node,
                runner,
                listener,
                app,
                token: None,
                join_token: None,
                joinable: false,
                local_addr,
                announce: options.announce,
            });
        }

        let state = State::open(&data_dir.join("state"), config.state_limits)?;
        let token = settle_token(&state, token_slot(&data_dir), options.token)?;
        let epoch: u64 = state.meta("epoch")?.and_then(|e| e.parse().ok()).unwrap_or(1);
        state.set_meta("epoch", &epoch.to_string())?;
        state.set_meta("orchestrator_id", &identity.id)?;
        let mut amqp_url = options.amqp_url.clone();
        let mut amqp_advertise_url = options.amqp_advertise_url.clone();
        if let (None, Some(image)) = (&amqp_url, &options.broker_image) {
            let (local, advertised) =
                start_broker(&state, runtime.as_ref(), image, options.broker_port, &identity.id, &config)
                    .await?;
            amqp_url = Some(local);
            amqp_advertise_url = amqp_advertise_url.or(Some(advertised));
        }
        let (bus, join): (Arc<dyn Bus>, Option<JoinInfo>) = match &amqp_url {
            Some(url) => {
                let bus = connect_patiently(url).await?;
                bus.sign_with(key.clone());
                let join = settle_token(&state, join_token_slot(&data_dir), options.join_token)?;
                join_token = join.clear.clone();
                let advertised = amqp_advertise_url.clone().unwrap_or_else(|| url.clone());
                (Arc::new(bus), Some(JoinInfo { token: join.hash, amqp_url: Arc::from(advertised.as_str()) }))
            }
            None => {
                join_token = None;
                (Arc::new(MemoryBus::new()), None)
            }
        };
        register_own_key(&state, &identity, &config, &key)?;
        let node = GenericNode::new(identity, config, bus).with_key(key.clone());
        // Its own worker takes work from it.
        node.update_trust(|t| t.orchestrator = Some(key.public()));
        node.set_epoch(epoch);
        node.set_orchestrator(Some(node.api_address()));
        let mut runner = NodeRunner::new(node.clone())
            .with(OrchestrationExecutor::new(state.clone(), options.registry.clone()));
        if role == NodeRole::Combined {
            runner = runner.with(WorkerExecutor::new(runtime, options.registry.clone()));
        } else {
            runner = runner.with(PresenceExecutor::new());
        }
        let joinable = join.is_some();
        let mut ctx = ApiContext::new(state, options.registry, node.clone(), token.hash);
        if let Some(j) = join {
            ctx = ctx.with_join(j);
        }
        let mut app = api::router(ctx);
        if let Some(ui) = options.ui {
            app = app.merge(ui);
        }
        // A platform without a broker cannot be joined: nothing to announce.
        let announce = options.announce && joinable;
        Ok(Self {
            node,
            runner,
            listener,
            app,
            token: token.clear,
            join_token,
            joinable,
            local_addr,
            announce,
        })
    }

    /// The join token other machines need, when the platform can be joined
    /// and this agent knows it (it keeps it in [`JOIN_TOKEN_FILE`]).
    pub fn join_token(&self) -> Option<&str> {
        self.join_token.as_deref()
    }

    /// Whether other machines can join this platform (it has a broker).
    pub fn joinable(&self) -> bool {
        self.joinable
    }

    /// The orchestrator this node answers to (itself for an orchestrator).
    pub fn orchestrator(&self) -> Option<String> {
        self.node.orchestrator()
    }

    /// The platform token, when this agent knows it: an orchestrator that
    /// made it or was given it, or read it from its [`TOKEN_FILE`]. The
    /// platform itself keeps only its hash; a worker never knows it.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The API's address as others reach it.
    pub fn api_address(&self) -> String {
        self.node.api_address()
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Serves the API and runs the node until `shutdown` completes.
    ///
    /// # Errors
    /// [`PlatformError::Node`] when an executor failed fatally.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), PlatformError> {
        let token = self.node.shutdown.clone();
        let server_token = token.clone();
        let server = tokio::spawn(async move {
            axum::serve(self.listener, self.app)
                .with_graceful_shutdown(async move { server_token.cancelled().await })
                .await
        });
        info!(address = %self.node.api_address(), node = %self.node.id, "platform up");
        let announcer =
            self.announce.then(|| tokio::spawn(crate::discovery::announce::announce_node(self.node.clone())));
        let result = self.runner.run(shutdown).await;
        token.cancel();
        if let Some(announcer) = announcer {
            if tokio::time::timeout(std::time::Duration::from_secs(5), announcer).await.is_err() {
                tracing::warn!("the mDNS announcement was not withdrawn within 5 s");
            }
        }
        match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the API server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the API server task failed"),
            Err(_) => tracing::warn!("the API server did not stop within 5 s"),
        }
        result.map_err(PlatformError::from)
    }
}

/// Removes the checkouts an earlier run was reading when it stopped (the
/// orchestrator's `fetch/` and the API's `validate/`): nothing reads them now,
/// and an interrupted fetch starts again from scratch.
fn remove_scratch(data_dir: &std::path::Path) {
    for name in ["fetch", "validate"] {
        let dir = data_dir.join(name);
        if !dir.exists() {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => info!(dir = %dir.display(), "removed the checkouts of an earlier run"),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "could not remove old checkouts"),
        }
    }
}

/// Registers the orchestrator's own key in its state, so its own reports
/// (signed on a broker) are believed. A key that changed (the node-key file
/// was replaced) replaces the stored one: it is this node's own record.
fn register_own_key(
    state: &State,
    identity: &NodeIdentity,
    config: &NodeConfig,
    key: &NodeKey,
) -> Result<(), PlatformError> {
    let public = key.public();
    match state.register_node_key(
        &identity.id,
        &identity.name,
        &config.api_address(),
        Role::Orchestrator,
        public,
    ) {
        Ok(_) => Ok(()),
        Err(KeyConflict::Other) => {
            tracing::warn!("this node's key changed; workers have to join again to take work from it");
            state.update_node(&identity.id, |n| {
                n.public_key = Some(public);
                true
            })?;
            Ok(())
        }
        Err(KeyConflict::State(e)) => Err(e.into()),
    }
}

/// Asks the orchestrator at `address` to let this node join.
pub(crate) async fn join_platform(
    address: &str,
    identity: &NodeIdentity,
    config: &NodeConfig,
    join_token: Option<&str>,
    key: PublicKey,
) -> Result<JoinAnswer, PlatformError> {
    let address = address.trim_end_matches('/').to_string();
    let failed = |reason: String| PlatformError::Join { address: address.clone(), reason };
    let Some(join_token) = join_token.filter(|t| !t.trim().is_empty()) else {
        return Err(failed(
            "no join token given; the orchestrator printed it when it started (pass it with --join-token)"
                .into(),
        ));
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let client = Client::with_http(&address, http).map_err(|e| failed(e.to_string()))?;
    let request = JoinRequest {
        node_id: identity.id.clone(),
        name: identity.name.clone(),
        address: config.api_address(),
        join_token: join_token.to_string(),
        public_key: key.to_string(),
    };
    client.join(&request).await.map_err(|e| match e {
        ClientError::Refused { status, message } => failed(format!("refused ({status}): {message}")),
        ClientError::BadAnswer { reason, .. } => {
            failed(format!("an answer that is not a join answer: {reason}"))
        }
        other => failed(format!("no answer ({other}); is the orchestrator running there?")),
    })
}

/// When this data directory holds an orchestrator's state and one of the
/// nodes it knew now names a newer orchestrator: that orchestrator's address
/// and the stored join token.
async fn fenced_by_newer(
    data_dir: &std::path::Path,
    identity: &NodeIdentity,
    limits: crate::state::StateLimits,
) -> Result<Option<(String, Option<String>)>, PlatformError> {
    let dir = data_dir.join("state");
    if !dir.join("state.redb").exists() {
        return Ok(None);
    }
    // Read what is needed and close the database before deciding.
    let (nodes, epoch) = {
        let state = State::open(&dir, limits)?;
        let epoch: u64 = state.meta("epoch")?.and_then(|e| e.parse().ok()).unwrap_or(1);
        (state.nodes(), epoch)
    };
    let join_token =
        std::fs::read_to_string(data_dir.join(JOIN_TOKEN_FILE)).ok().map(|t| t.trim().to_string());
    // Only the rollover candidate this orchestrator named can have taken over
    // (any other node claiming so is not believed).
    let known: Vec<_> = nodes
        .into_iter()
        .filter(|n| n.id != identity.id && n.rollover_priority == 1)
        .map(|n| (n.id, n.address))
        .collect();
    if known.is_empty() {
        return Ok(None);
    }
    Ok(newer_orchestrator(known, identity.id.clone(), epoch).await.map(|(address, _)| (address, join_token)))
}

/// Connects to the broker, waiting up to a minute for one that is starting.
async fn connect_patiently(url: &str) -> Result<AmqpBus, PlatformError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match AmqpBus::connect(url, AmqpOptions::default()).await {
            Ok(bus) => return Ok(bus),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
            Err(e) => tracing::debug!(error = %e, "the broker is not ready yet"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The name of the broker container a node starts.
pub const BROKER_CONTAINER: &str = "kraken-broker";

/// Starts (or finds running) the platform's RabbitMQ container with
/// credentials made for this platform and kept in its state. Returns the URL
/// for this machine and the URL for the others.
pub(crate) async fn start_broker(
    state: &State,
    runtime: &dyn Runtime,
    image: &str,
    port: u16,
    node_id: &str,
    config: &NodeConfig,
) -> Result<(String, String), PlatformError> {
    let (user, password) = match (state.meta("broker_user")?, state.meta("broker_password")?) {
        (Some(u), Some(p)) => (u, p),
        _ => {
            let (u, p) = crate::bus::amqp::generated_credentials()?;
            state.set_meta("broker_user", &u)?;
            state.set_meta("broker_password", &p)?;
            (u, p)
        }
    };
    let running = runtime
        .list_managed(None)
        .await
        .map_err(|e| PlatformError::Broker(e.to_string()))?
        .into_iter()
        .find(|c| c.name == BROKER_CONTAINER);
    match running {
        Some(c) if c.running => tracing::info!(container = %c.id, "the platform's broker is running"),
        other => {
            if let Some(c) = other {
                runtime.remove_container(&c.id).await.map_err(|e| PlatformError::Broker(e.to_string()))?;
            }
            let mut env = std::collections::BTreeMap::new();
            env.insert("RABBITMQ_DEFAULT_USER".to_string(), user.clone());
            env.insert("RABBITMQ_DEFAULT_PASS".to_string(), password.clone());
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("kraken.broker".to_string(), node_id.to_string());
            labels.insert(crate::runtime::LABEL_ROLE.to_string(), crate::runtime::ROLE_BROKER.to_string());
            let spec = crate::runtime::ContainerSpec {
                name: BROKER_CONTAINER.to_string(),
                image: image.to_string(),
                labels,
                env,
                container_port: 5672,
                host_port: port,
                host_ip: config.publish_ip.clone(),
                memory_limit: 0,
                // RabbitMQ runs many threads; its output is rotated like an app's.
                pids_limit: 0,
                log_rotation: Some(crate::runtime::LogRotation::default()),
            };
            let (id, _) = runtime.run_container(&spec).await.map_err(|e| {
                PlatformError::Broker(format!("could not start the broker container from image {image}: {e}"))
            })?;
            runtime.keep_restarting(&id).await.map_err(|e| PlatformError::Broker(e.to_string()))?;
            state.set_meta("broker_image", image)?;
            state.set_meta("broker_port", &port.to_string())?;
            tracing::info!(container = %id, %image, port, "started the platform's broker");
        }
    }
    let local_host = match config.publish_ip.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let local = crate::bus::amqp::broker_url(&local_host, port, &user, &password);
    let advertised = crate::bus::amqp::broker_url(&config.advertise_host, port, &user, &password);
    Ok((local, advertised))
}
