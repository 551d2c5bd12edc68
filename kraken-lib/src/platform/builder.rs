//! [`PlatformBuilder`]: what an agent is made of, given step by step.

use std::sync::Arc;

use axum::Router;

use super::{NodeRole, Platform, PlatformError};
use crate::builder::BuilderRegistry;
use crate::executor::Executor;
use crate::node::NodeConfig;
use crate::rollover::takeover::TakeoverFaults;
use crate::runtime::Runtime;

/// What a platform is started with; made by [`Platform::builder`], started
/// with [`start`](Self::start).
///
/// Everything but the node's settings has a default: a combined node, the
/// built-in builders on the official base images, no web interface, the
/// local Docker engine, the in-process bus, no executors beyond Kraken's own.
///
/// # Examples
/// A combined node with the web interface and an executor of one's own:
/// ```no_run
/// use kraken_lib::executor::{ExecutionFailure, Executor, SetupFailure};
/// use kraken_lib::node::{GenericNode, NodeConfig};
/// use kraken_lib::platform::{NodeRole, Platform};
///
/// struct Hello;
///
/// #[async_trait::async_trait]
/// impl Executor for Hello {
///     fn name(&self) -> &str {
///         "hello"
///     }
///     async fn setup(&mut self, node: &mut GenericNode) -> Result<(), SetupFailure> {
///         println!("hello from {}", node.name);
///         Ok(())
///     }
///     async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
///         node.shutdown.cancelled().await;
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = NodeConfig::new("/var/lib/kraken", "0.0.0.0:8000".parse()?);
/// let platform = Platform::builder(config).role(NodeRole::Combined).executor(Hello).start().await?;
/// platform.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(())
/// # }
/// ```
pub struct PlatformBuilder {
    pub(super) config: NodeConfig,
    pub(super) role: NodeRole,
    pub(super) registry: Option<BuilderRegistry>,
    pub(super) ui: Option<Router>,
    pub(super) runtime: Option<Arc<dyn Runtime>>,
    pub(super) executors: Vec<Box<dyn Executor>>,
    pub(super) token: Option<String>,
    pub(super) name: Option<String>,
    pub(super) join_token: Option<String>,
    pub(super) amqp_url: Option<String>,
    pub(super) amqp_advertise_url: Option<String>,
    pub(super) broker_image: Option<String>,
    pub(super) broker_port: u16,
    pub(super) takeover_faults: Option<TakeoverFaults>,
    pub(super) announce: bool,
}

impl std::fmt::Debug for PlatformBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformBuilder")
            .field("config", &self.config)
            .field("role", &self.role)
            .field("executors", &self.executors)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// A platform with the node's settings `config`; see [`PlatformBuilder`].
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = kraken_lib::node::NodeConfig::new("./data", "127.0.0.1:8000".parse()?);
    /// let platform = kraken_lib::platform::Platform::builder(config).start().await?;
    /// println!("serving at {}", platform.api_address());
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(config: NodeConfig) -> PlatformBuilder {
        PlatformBuilder {
            config,
            role: NodeRole::Combined,
            registry: None,
            ui: None,
            runtime: None,
            executors: Vec::new(),
            token: None,
            name: None,
            join_token: None,
            amqp_url: None,
            amqp_advertise_url: None,
            broker_image: None,
            broker_port: 5672,
            takeover_faults: None,
            announce: false,
        }
    }
}

impl PlatformBuilder {
    /// Which of Kraken's executors the agent runs (default: [`NodeRole::Combined`]).
    pub fn role(mut self, role: NodeRole) -> Self {
        self.role = role;
        self
    }

    /// The builders (default: the built-ins on the official base images).
    pub fn registry(mut self, registry: BuilderRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// A router served beside the API (the web interface, `kraken_ui::router()`).
    pub fn ui(mut self, ui: Router) -> Self {
        self.ui = Some(ui);
        self
    }

    /// The container engine (default: the local Docker engine, connected at start).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// An executor of one's own, run by the node beside Kraken's (in every
    /// role, and on after a takeover).
    pub fn executor(mut self, executor: impl Executor + 'static) -> Self {
        self.executors.push(Box::new(executor));
        self
    }

    /// The platform token to use instead of the stored (or a new) one.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// A name for the node instead of the host name.
    pub fn name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// The join token: an orchestrator's instead of the stored or a new one;
    /// the token a worker presents.
    pub fn join_token(mut self, join_token: Option<String>) -> Self {
        self.join_token = join_token;
        self
    }

    /// The RabbitMQ URL the orchestrator uses; without one the in-process bus
    /// is used (a single machine; nobody can join), unless a broker is
    /// started ([`broker`](Self::broker)).
    pub fn amqp_url(mut self, url: Option<String>) -> Self {
        self.amqp_url = url;
        self
    }

    /// The broker URL handed to joining nodes when it differs from the one
    /// the orchestrator uses (e.g. a LAN address instead of 127.0.0.1).
    pub fn amqp_advertise_url(mut self, url: Option<String>) -> Self {
        self.amqp_advertise_url = url;
        self
    }

    /// Without an [`amqp_url`](Self::amqp_url): start a RabbitMQ broker as a
    /// container of `image` (credentials made for this platform), listening
    /// on the host's `port`, and use it.
    pub fn broker(mut self, image: impl Into<String>, port: u16) -> Self {
        self.broker_image = Some(image.into());
        self.broker_port = port;
        self
    }

    /// Announce this node over mDNS (platforms of several machines only):
    /// its role, epoch and orchestrator, kept up to date.
    pub fn announce(mut self, announce: bool) -> Self {
        self.announce = announce;
        self
    }

    /// Faults to inject into a takeover's steps, for tests of its recovery.
    pub fn takeover_faults(mut self, faults: TakeoverFaults) -> Self {
        self.takeover_faults = Some(faults);
        self
    }

    /// Opens the state, settles the tokens, connects the bus (or joins the
    /// platform, for a worker), binds the API and prepares the executors.
    ///
    /// # Errors
    /// [`PlatformError`] saying what could not be used.
    pub async fn start(mut self) -> Result<Platform, PlatformError> {
        if self.runtime.is_none() {
            let docker = crate::runtime::DockerRuntime::connect().await.map_err(PlatformError::Runtime)?;
            self.runtime = Some(Arc::new(docker));
        }
        super::assemble::start(self).await
    }
}
