//! The container runtime: the Docker Engine through `bollard`.
//!
//! [`Runtime`] is the trait the worker uses (so unit tests can use the mockall
//! mock, `MockRuntime`, with the `mock` feature or in this crate's tests);
//! [`DockerRuntime`] is the real one. Every container Kraken starts carries the
//! labels [`LABEL_MANAGED`], [`LABEL_DEPLOYMENT`], [`LABEL_NODE`] and
//! [`LABEL_COMMIT`], so a restarted agent finds and re-adopts its containers,
//! and [`LABEL_ROLE`], so an app is never mistaken for the throw-away
//! container of a test. Images carry no labels (on the engine's classic
//! builder each label costs a build step): their tag, an [`AppImage`], says
//! whose they are. A build that fails removes the layers it made.
//!
//! The files: `docker.rs` (connecting, the trait put together), `build.rs`
//! (build context and image builds), `build_layers.rs` (the layers a build
//! made), `containers.rs` (run, inspect, remove, list), `logs.rs` (output
//! split into lines), `stats.rs` (resource samples), `images.rs` (image
//! tags, list and remove images), `error.rs` ([`RuntimeError`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::builder::BuildPlan;

mod build;
mod build_layers;
mod containers;
mod docker;
mod error;
mod images;
mod logs;
mod stats;

pub use build_layers::BuildLayers;
pub use containers::pick_host_port;
pub use docker::DockerRuntime;
pub use error::RuntimeError;
pub use images::AppImage;

/// The most of a `test` command's output kept (its end).
pub const TEST_OUTPUT_BYTES: usize = 64 * 1024;

/// Label present (value `"true"`) on every container Kraken made (and on the
/// images of earlier versions, which were labelled too).
pub const LABEL_MANAGED: &str = "kraken.managed";
/// Label holding the deployment id.
pub const LABEL_DEPLOYMENT: &str = "kraken.deployment";
/// Label holding the node id that runs the container.
pub const LABEL_NODE: &str = "kraken.node";
/// Label holding the deployed commit.
pub const LABEL_COMMIT: &str = "kraken.commit";
/// Label holding the container's port inside the container.
pub const LABEL_PORT: &str = "kraken.port";
/// Label saying what a container is for: [`ROLE_APP`], [`ROLE_TEST`] or [`ROLE_BROKER`].
pub const LABEL_ROLE: &str = "kraken.role";
/// [`LABEL_ROLE`] of a deployment's app container.
pub const ROLE_APP: &str = "app";
/// [`LABEL_ROLE`] of the throw-away container a manifest's `test` runs in.
pub const ROLE_TEST: &str = "test";
/// [`LABEL_ROLE`] of the broker container a platform starts itself.
pub const ROLE_BROKER: &str = "broker";

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
    /// Whether the engine publishes `container_port` on the host (on
    /// `host_ip`:`host_port`, one `docker-proxy` process per container).
    /// Without it the port is reached only on the container's own address
    /// ([`ContainerState::address`]), as the agent's port proxy does.
    pub publish: bool,
    /// The host port to publish it on, when `publish`; 0 lets the engine choose.
    pub host_port: u16,
    /// The host address to publish on, when `publish` (`0.0.0.0` for the whole LAN).
    pub host_ip: String,
    /// Memory limit in bytes; 0 for none.
    pub memory_limit: u64,
    /// How many processes and threads the container may have; 0 for no limit.
    pub pids_limit: i64,
    /// How the engine keeps the container's output on disk; `None` for the
    /// engine's default (which grows without end).
    pub log_rotation: Option<LogRotation>,
    /// Whether the engine runs a small init process as PID 1 that passes
    /// signals on to the app and reaps its children, so an app that never
    /// handles SIGTERM itself still stops when asked.
    pub init: bool,
    /// How long a stop waits for the app to exit before killing it; `None`
    /// for the engine's default (10 s).
    pub stop_timeout: Option<Duration>,
}

/// The engine keeps a container's output in at most `max_files` files of
/// `max_file_bytes` each (the `local` log driver's `max-size` and
/// `max-file`), dropping the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// The size of one file.
    pub max_file_bytes: u64,
    /// How many files.
    pub max_files: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        Self { max_file_bytes: 10 * 1024 * 1024, max_files: 3 }
    }
}

/// Limits every app container (and `test` command container) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLimits {
    /// How many processes and threads an app may have (default 512; 0: no limit).
    pub pids: i64,
    /// How its output is kept on the node's disk (default 3 files of 10 MiB).
    pub log_rotation: LogRotation,
    /// How long a stopping app gets to exit after SIGTERM before it is
    /// killed (default 3 s).
    pub stop_timeout: Duration,
    /// How long a started app may take to accept connections on its port
    /// before its deployment fails (default 60 s).
    pub ready_timeout: Duration,
}

impl Default for AppLimits {
    fn default() -> Self {
        Self {
            pids: 512,
            log_rotation: LogRotation::default(),
            stop_timeout: Duration::from_secs(3),
            ready_timeout: Duration::from_secs(60),
        }
    }
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
    /// The id of the image it runs.
    #[serde(default)]
    pub image_id: String,
}

impl ManagedContainer {
    /// What the container is for ([`LABEL_ROLE`]). Containers made before
    /// roles were labelled count as apps when they publish a port (only app
    /// containers were given [`LABEL_PORT`]), as tests otherwise.
    pub fn role(&self) -> &str {
        match self.labels.get(LABEL_ROLE) {
            Some(role) => role,
            None if self.labels.contains_key(LABEL_PORT) => ROLE_APP,
            None => ROLE_TEST,
        }
    }
}

/// An image Kraken built, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedImage {
    /// Engine id (`sha256:…`).
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its labels: none on images of this version (their tag, an
    /// [`AppImage`], says whose they are); [`LABEL_MANAGED`], [`LABEL_NODE`]
    /// and the deployment's on images built by earlier versions.
    pub labels: BTreeMap<String, String>,
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
    /// Its address on the engine's network, where this machine reaches the
    /// app's port directly; `None` when it has none (not running).
    #[serde(default)]
    pub address: Option<IpAddr>,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
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
    /// `stdout` or `stderr` (borrowed: no allocation per line).
    pub stream: std::borrow::Cow<'static, str>,
    /// The line without its newline.
    pub line: String,
}

/// Where a line stands in a container's output as the engine keeps it: the
/// engine's timestamp of the output message that ended the line, and how many
/// messages carrying that same timestamp (the engine stamps all the lines of
/// one read alike) came up to and including it. Following a container's
/// output after a position ([`Runtime::follow_after`]) neither repeats nor
/// skips a line, so a restarted agent picks up exactly where it left.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The timestamp, as the engine writes it: RFC 3339 in UTC with nine
    /// digits of fractions (fixed width, so the text orders as the time).
    pub at: std::sync::Arc<str>,
    /// How many messages with this timestamp, counting the line's own.
    pub nth: u32,
}

impl LogPosition {
    /// The position of a message stamped right now, before any message the
    /// engine stamps later: following after it gives only new output.
    pub fn now() -> Self {
        Self { at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string().into(), nth: 0 }
    }

    /// The position as one line of text (`<timestamp> <nth>`), to be kept in a file.
    pub fn to_text(&self) -> String {
        format!("{} {}", self.at, self.nth)
    }

    /// Reads [`LogPosition::to_text`] back; `None` when `text` is not one.
    pub fn from_text(text: &str) -> Option<Self> {
        let (at, nth) = text.trim().split_once(' ')?;
        let fixed = at.len() == 30 && at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(at).is_ok();
        let nth = nth.parse().ok()?;
        fixed.then(|| Self { at: at.into(), nth })
    }

    /// The whole second the position falls in, as seconds since 1970.
    pub(crate) fn second(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.at).map(|t| t.timestamp()).unwrap_or(0)
    }
}

/// The container engine as Kraken uses it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Builds `plan` into an image tagged `tag` (an [`AppImage`]'s tag, so
    /// that [`Runtime::list_images`] finds it), without labels, sending each
    /// line of build output to `log`; returns the image id.
    async fn build_image(
        &self,
        plan: &BuildPlan,
        tag: &str,
        log: mpsc::UnboundedSender<String>,
    ) -> Result<String, RuntimeError>;
    /// Runs `cmd` (through `sh -c`) in a throw-away container of `image`
    /// labelled with `labels` (the runtime adds [`LABEL_MANAGED`] and
    /// [`LABEL_ROLE`] [`ROLE_TEST`]) and returns its exit code and output.
    /// Used for a manifest's `test`.
    /// A run that outlasts `timeout` is stopped and reported as
    /// [`RuntimeError::TimedOut`]; the container is removed in every case.
    async fn run_to_completion(
        &self,
        image: &str,
        cmd: &str,
        env: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> Result<(i64, String), RuntimeError>;
    /// Creates and starts a container that the engine does not restart yet;
    /// returns its id and the published host port (0 when the spec does not
    /// [publish](ContainerSpec::publish) it, or when its process already
    /// exited, before the port was published).
    async fn run_container(&self, spec: &ContainerSpec) -> Result<(String, u16), RuntimeError>;
    /// From now on the engine restarts the container when it stops or the
    /// machine reboots, until it is removed (`unless-stopped`).
    async fn keep_restarting(&self, id: &str) -> Result<(), RuntimeError>;
    /// The container's state.
    async fn inspect(&self, id: &str) -> Result<ContainerState, RuntimeError>;
    /// The container's output: past lines, then new ones while `follow`.
    ///
    /// With `since_now`, only what the container prints from the current
    /// whole second on. A deployment's log is followed with
    /// [`Runtime::follow_after`], which resumes exactly where it left.
    fn logs(
        &self,
        id: &str,
        follow: bool,
        since_now: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>>;
    /// Follows the container's output after `after` (from its first line
    /// with `None`), each line with its [`LogPosition`], until the container
    /// stops.
    fn follow_after(
        &self,
        id: &str,
        after: Option<LogPosition>,
    ) -> BoxStream<'static, Result<(LogLine, LogPosition), RuntimeError>>;
    /// One sample of resource use.
    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError>;
    /// Stops (with the container's own stop timeout, see
    /// [`ContainerSpec::stop_timeout`]) and removes the container; a missing
    /// one is not an error.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Kraken's containers on this engine, optionally only those of `node`.
    async fn list_managed(&self, node: Option<String>) -> Result<Vec<ManagedContainer>, RuntimeError>;
    /// The images Kraken built on this engine (told by their [`AppImage`] tag,
    /// or by the labels of earlier versions), optionally only those built by
    /// `node`.
    async fn list_images(&self, node: Option<String>) -> Result<Vec<ManagedImage>, RuntimeError>;
    /// Removes an image; a missing one is not an error.
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError>;
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn containers_made_before_roles_are_told_apart_by_their_port_label() {
        let container = |labels: &[(&str, &str)]| ManagedContainer {
            id: "c".into(),
            name: "c".into(),
            image: "i".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            running: true,
            host_port: None,
            image_id: String::new(),
        };
        assert_eq!(container(&[(LABEL_ROLE, ROLE_TEST), (LABEL_PORT, "80")]).role(), ROLE_TEST);
        assert_eq!(container(&[(LABEL_ROLE, ROLE_APP)]).role(), ROLE_APP);
        assert_eq!(container(&[(LABEL_PORT, "80")]).role(), ROLE_APP);
        assert_eq!(container(&[(LABEL_DEPLOYMENT, "d")]).role(), ROLE_TEST);
    }
}
