//! One entry point for an agent: a combined node (orchestrator and worker),
//! an orchestrator-only node, or a worker-only node that joins a platform,
//! with executors of one's own beside Kraken's.
//!
//! [`Platform::builder`] takes the node's settings and, step by step, its
//! role, builders, web interface, container engine and extra executors;
//! [`PlatformBuilder::start`] opens the state, makes or reads the platform
//! and join tokens, connects the bus (in-process for a single machine,
//! RabbitMQ when a broker URL is given), binds the API's port and returns;
//! [`Platform::run`] serves until the given shutdown future completes. The
//! `kraken up`, `kraken orchestrator` and `kraken worker` commands are this,
//! plus flags.
//!
//! - `builder.rs`: [`PlatformBuilder`], what an agent is made of.
//! - `assemble.rs`: putting the pieces together for each role.

mod assemble;
mod builder;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use tracing::info;

use crate::auth::settle::{settle, Settled, Slot};
use crate::auth::{AuthError, NodeKey};
use crate::bus::BusError;
use crate::node::{GenericNode, NodeConfig, NodeError, NodeIdentity, NodeRunner};
use crate::rollover::newer_orchestrator;
use crate::state::{KeyConflict, Role, State, StateError};

pub use crate::role::NodeRole;
pub use builder::PlatformBuilder;

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
    /// The platform's own broker could not be started or reached.
    #[error("the platform's message broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// The orchestrator refused to let this node join, or could not be asked.
    #[error(transparent)]
    Join(#[from] crate::join::JoinError),
    /// No container engine was given and none could be reached.
    #[error("Kraken runs apps in Docker containers: {0}")]
    Runtime(#[source] crate::runtime::RuntimeError),
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
