//! One entry point for a whole platform on one machine: a combined node
//! (orchestrator and worker) with the in-process bus and the HTTP API.
//!
//! [`Platform::start`] opens the state, makes or reads the platform token,
//! binds the API's port and returns; [`Platform::run`] serves until the given
//! shutdown future completes. The `kraken up` command is this, plus flags.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tracing::info;

use crate::api::{self, ApiContext};
use crate::builder::BuilderRegistry;
use crate::bus::memory::MemoryBus;
use crate::deployment::random_id;
use crate::node::{GenericNode, NodeConfig, NodeError, NodeIdentity, NodeRunner};
use crate::orchestrator::OrchestrationExecutor;
use crate::runtime::Runtime;
use crate::state::{State, StateError};
use crate::worker::WorkerExecutor;

/// The file in the data directory that holds the platform token (mode 0600).
pub const TOKEN_FILE: &str = "token";

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
    token: String,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("node", &self.node)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Reads the stored token, or stores `given` or a new one; also writes it to
/// the token file so the CLI on this machine finds it.
fn settle_token(
    state: &State,
    dir: &std::path::Path,
    given: Option<String>,
) -> Result<String, PlatformError> {
    let token = match given.filter(|t| !t.trim().is_empty()) {
        Some(t) => t.trim().to_string(),
        None => match state.meta("token")? {
            Some(t) => t,
            None => random_id(16),
        },
    };
    state.set_meta("token", &token)?;
    let path = dir.join(TOKEN_FILE);
    let io = |source| PlatformError::Io { path: path.clone(), source };
    std::fs::write(&path, &token).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(token)
}

impl Platform {
    /// Opens the state, settles the token, binds the API and prepares the
    /// combined node's executors.
    ///
    /// # Errors
    /// [`PlatformError`] saying what could not be used.
    pub async fn start(options: PlatformOptions, runtime: Arc<dyn Runtime>) -> Result<Self, PlatformError> {
        let config = options.config;
        let data_dir = config.data_dir.clone();
        let identity = NodeIdentity::load_or_create(&data_dir, options.name.as_deref())
            .map_err(|source| PlatformError::Io { path: data_dir.join("node-id"), source })?;
        let state = State::open(&data_dir.join("state"), config.state_limits)?;
        let token = settle_token(&state, &data_dir, options.token)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| PlatformError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| PlatformError::Bind { addr: config.listen, source })?;
        let mut config = config;
        config.listen = local_addr;
        let bus = Arc::new(MemoryBus::new());
        let node = GenericNode::new(identity, config, bus);
        let runner = NodeRunner::new(node.clone())
            .with(OrchestrationExecutor::new(state.clone(), options.registry.clone()))
            .with(WorkerExecutor::new(runtime, options.registry.clone()));
        let mut app = api::router(ApiContext::new(state, options.registry, node.clone(), &token));
        if let Some(ui) = options.ui {
            app = app.merge(ui);
        }
        Ok(Self { node, runner, listener, app, token, local_addr })
    }

    /// The platform token.
    pub fn token(&self) -> &str {
        &self.token
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
        let result = self.runner.run(shutdown).await;
        token.cancel();
        match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the API server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the API server task failed"),
            Err(_) => tracing::warn!("the API server did not stop within 5 s"),
        }
        result.map_err(PlatformError::from)
    }
}
