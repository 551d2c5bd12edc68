//! The container runtime: the Docker Engine through `bollard`.
//!
//! [`Runtime`] is the trait the worker uses (so unit tests can use the mockall
//! mock, `MockRuntime`, with the `mock` feature or in this crate's tests);
//! [`DockerRuntime`] is the real one. Every container Kraken starts carries the
//! labels [`LABEL_MANAGED`], [`LABEL_DEPLOYMENT`], [`LABEL_NODE`] and
//! [`LABEL_COMMIT`], so a restarted agent finds and re-adopts its containers,
//! and [`LABEL_ROLE`], so an app is never mistaken for the throw-away
//! container of a test (which inherits its image's labels). A build that
//! fails removes the layers it made.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::builder::BuildPlan;
use crate::output::{Line, LineSplitter, Tail};

/// The most of a `test` command's output kept (its end).
pub const TEST_OUTPUT_BYTES: usize = 64 * 1024;

mod build_layers;

pub use build_layers::BuildLayers;

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
    /// The host port to publish it on; 0 lets the engine choose.
    pub host_port: u16,
    /// The host address to publish on (`0.0.0.0` for the whole LAN).
    pub host_ip: String,
    /// Memory limit in bytes; 0 for none.
    pub memory_limit: u64,
    /// How many processes and threads the container may have; 0 for no limit.
    pub pids_limit: i64,
    /// How the engine keeps the container's output on disk; `None` for the
    /// engine's default (which grows without end).
    pub log_rotation: Option<LogRotation>,
}

/// The engine keeps a container's output in at most `max_files` files of
/// `max_file_bytes` each (the `json-file` driver's `max-size` and `max-file`),
/// dropping the oldest.
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
}

impl Default for AppLimits {
    fn default() -> Self {
        Self { pids: 512, log_rotation: LogRotation::default() }
    }
}

/// The engine's log settings for `rotation`.
fn log_config(rotation: Option<LogRotation>) -> Option<bollard::models::HostConfigLogConfig> {
    let rotation = rotation?;
    let config = [
        ("max-size".to_string(), rotation.max_file_bytes.to_string()),
        ("max-file".to_string(), rotation.max_files.max(1).to_string()),
    ];
    Some(bollard::models::HostConfigLogConfig {
        typ: Some("json-file".to_string()),
        config: Some(config.into_iter().collect()),
    })
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
    /// Its labels.
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
    /// A command ran longer than it was allowed to.
    #[error("{0}")]
    TimedOut(String),
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
    /// A run that outlasts `timeout` is stopped and reported as
    /// [`RuntimeError::TimedOut`]; the container is removed in every case.
    async fn run_to_completion(
        &self,
        image: &str,
        cmd: &str,
        env: &BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> Result<(i64, String), RuntimeError>;
    /// Creates and starts a container that the engine does not restart yet;
    /// returns its id and the published host port.
    async fn run_container(&self, spec: &ContainerSpec) -> Result<(String, u16), RuntimeError>;
    /// From now on the engine restarts the container when it stops or the
    /// machine reboots, until it is removed (`unless-stopped`).
    async fn keep_restarting(&self, id: &str) -> Result<(), RuntimeError>;
    /// The container's state.
    async fn inspect(&self, id: &str) -> Result<ContainerState, RuntimeError>;
    /// The container's output: past lines, then new ones while `follow`.
    ///
    /// With `since_now`, only what the container prints from now on (used when
    /// a restarted agent re-adopts a container whose past output it already has).
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
    /// The images Kraken built on this engine, optionally only those built for `node`.
    async fn list_images(&self, node: Option<String>) -> Result<Vec<ManagedImage>, RuntimeError>;
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
        // Speak the engine's API version when it is older than the client's,
        // so older engines (e.g. Debian's 20.10) accept the requests.
        let docker =
            docker.negotiate_version().await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(Self { docker })
    }
}

/// The name the plan's Dockerfile gets inside the build context.
const CONTEXT_DOCKERFILE: &str = ".kraken.Dockerfile";

/// Seconds a container gets to stop on its own before it is killed.
const STOP_GRACE_SECS: i64 = 5;

/// A host port to publish an app on: `preferred` if it can be bound on
/// `0.0.0.0` right now, otherwise a free port the operating system picks.
///
/// The answer is only a good guess: another process may take the port between
/// this check and the container's start. Callers that publish on the returned
/// port must therefore be ready for [`Runtime::run_container`] to fail, and
/// fall back to `host_port: 0`, which lets the engine choose a free port
/// atomically. Returns 0 (meaning "let the engine choose") when not even an
/// OS-picked port can be bound. A `preferred` of 0 asks for any free port.
pub fn pick_host_port(preferred: u16) -> u16 {
    use std::net::{Ipv4Addr, TcpListener};
    if preferred != 0 && TcpListener::bind((Ipv4Addr::UNSPECIFIED, preferred)).is_ok() {
        return preferred;
    }
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Maps a bollard error to a [`RuntimeError`]; `what` names the object or the
/// action for the message ("container web-1", "creating container web-1").
fn map_err(what: &str, err: bollard::errors::Error) -> RuntimeError {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError { status_code: 404, .. } => RuntimeError::NotFound(what.to_string()),
        E::DockerResponseServerError { status_code, message } => {
            RuntimeError::Engine(format!("{what}: {message} (HTTP {status_code})"))
        }
        E::HyperResponseError { .. }
        | E::HyperLegacyError { .. }
        | E::IOError { .. }
        | E::SocketNotFoundError(_)
        | E::RequestTimeoutError => RuntimeError::Unavailable(format!("{what}: {err}")),
        other => RuntimeError::Engine(format!("{what}: {other}")),
    }
}

/// Whether `err` is the engine saying "no such object".
fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Whether a failed build's `message` says a cached layer it built on was
/// deleted meanwhile (an image removal running at the same time pruned an
/// untagged parent the build was about to use); building again then succeeds.
fn lost_cache_layer(message: &str) -> bool {
    message.contains("unknown parent image ID") || message.contains("No such image: sha256:")
}

/// `labels` plus [`LABEL_MANAGED`]` = "true"`, in the form bollard takes.
fn managed_labels(labels: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    let mut out: std::collections::HashMap<String, String> =
        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(LABEL_MANAGED.to_string(), "true".to_string());
    out
}

/// `KEY=value` strings for the engine.
fn env_list(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Packs `dir` (without any `.git`), `dockerfile` (as [`CONTEXT_DOCKERFILE`])
/// and the plan's extra `files` into an uncompressed tar archive in memory.
///
/// File modes are kept; symbolic links are stored as links and never followed,
/// so nothing outside `dir` enters the archive. Sockets, FIFOs and devices are
/// left out.
fn build_context(
    dir: &Path,
    dockerfile: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    // Same files, same archive: no times or owners of this checkout, so the
    // engine's layer cache sees an unchanged file as unchanged (a fresh
    // checkout has new modification times every build).
    tar.mode(tar::HeaderMode::Deterministic);
    append_dir_entries(&mut tar, dir, Path::new(""), files)?;
    let generated = std::iter::once((CONTEXT_DOCKERFILE, dockerfile.as_bytes()))
        .chain(files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
    for (name, bytes) in generated {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)?;
    }
    tar.into_inner()
}

/// Adds the entries of `dir` (at `rel` inside the archive) to `tar`, recursively.
fn append_dir_entries(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    rel: &Path,
    generated: &BTreeMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let at_root = rel.as_os_str().is_empty();
        let replaced =
            at_root && (name == CONTEXT_DOCKERFILE || generated.contains_key(&*name.to_string_lossy()));
        if name == ".git" || replaced {
            continue;
        }
        let path = entry.path();
        let rel_path = rel.join(&name);
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            tar.append_dir(&rel_path, &path)?;
            append_dir_entries(tar, &path, &rel_path, generated)?;
        } else if kind.is_file() || kind.is_symlink() {
            tar.append_path_with_name(&path, &rel_path)?;
        }
    }
    Ok(())
}

/// A splitter's line as the trait hands it out.
fn log_line(line: Line) -> Result<LogLine, RuntimeError> {
    Ok(LogLine { stream: line.stream.to_string(), line: line.text })
}

/// The stream name and bytes of one output frame.
fn log_frame(out: bollard::container::LogOutput) -> (&'static str, bytes::Bytes) {
    use bollard::container::LogOutput as O;
    match out {
        O::StdErr { message } => ("stderr", message),
        O::StdOut { message } | O::Console { message } => ("stdout", message),
        O::StdIn { message } => ("stdin", message),
    }
}

/// CPU use in percent of one core between two samples, as `docker stats`
/// computes it: the container's share of the host's CPU time in the interval,
/// times the number of CPUs. 0 when the interval is empty or unknown.
fn cpu_percent(total: u64, pre_total: u64, system: Option<u64>, pre_system: Option<u64>, cpus: u64) -> f64 {
    let (Some(system), Some(pre_system)) = (system, pre_system) else {
        return 0.0;
    };
    let cpu_delta = total.saturating_sub(pre_total) as f64;
    let system_delta = system.saturating_sub(pre_system) as f64;
    if cpu_delta <= 0.0 || system_delta <= 0.0 {
        return 0.0;
    }
    cpu_delta / system_delta * cpus.max(1) as f64 * 100.0
}

/// Memory in use without the page cache the kernel can drop, as `docker stats`
/// reports it (cgroup v1: `total_inactive_file`; v2: `inactive_file`).
fn memory_in_use(memory: &bollard::container::MemoryStats) -> u64 {
    use bollard::container::MemoryStatsStats as S;
    let cache = match &memory.stats {
        Some(S::V1(v1)) if v1.total_inactive_file > 0 => v1.total_inactive_file,
        Some(S::V1(v1)) => v1.cache,
        Some(S::V2(v2)) => v2.inactive_file,
        None => 0,
    };
    usage_without_cache(memory.usage.unwrap_or(0), cache)
}

/// `usage - cache`, or `usage` when the cache figure does not fit below it.
fn usage_without_cache(usage: u64, cache: u64) -> u64 {
    if cache < usage {
        usage - cache
    } else {
        usage
    }
}

/// The host port `container_port/tcp` is published on, from an inspect result.
fn published_port(info: &bollard::models::ContainerInspectResponse, container_port: u16) -> Option<u16> {
    let key = format!("{container_port}/tcp");
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&key)?
        .as_ref()?
        .iter()
        .filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        .find(|p| *p != 0)
}

impl DockerRuntime {
    /// The engine client, for callers that need an operation the trait lacks.
    pub fn client(&self) -> &bollard::Docker {
        &self.docker
    }

    /// Creates (but does not start) a container; returns its id.
    async fn create(
        &self,
        name: Option<&str>,
        config: bollard::container::Config<String>,
    ) -> Result<String, RuntimeError> {
        let options =
            name.map(|n| bollard::container::CreateContainerOptions { name: n.to_string(), platform: None });
        let what = format!("creating container {}", name.unwrap_or("(unnamed)"));
        let created = self.docker.create_container(options, config).await.map_err(|e| map_err(&what, e))?;
        Ok(created.id)
    }

    /// Force-removes a container, ignoring a missing one; used to undo a half-made one.
    async fn force_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = bollard::container::RemoveContainerOptions { force: true, v: true, link: false };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(&format!("removing container {id}"), e)),
        }
    }

    /// One build attempt: streams the engine's output to `log` and returns the image id.
    async fn build_once(
        &self,
        options: bollard::image::BuildImageOptions<String>,
        context: bytes::Bytes,
        tag: &str,
        log: &mpsc::UnboundedSender<String>,
    ) -> Result<String, RuntimeError> {
        let mut image_id = None;
        let mut layers = BuildLayers::new();
        let mut stream = self.docker.build_image(options, None, Some(context));
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    let _ = log.send(error.clone());
                    self.remove_layers(layers.made()).await;
                    return Err(RuntimeError::BuildFailed(error));
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code, message })
                    if (400..500).contains(&status_code) =>
                {
                    let _ = log.send(message.clone());
                    self.remove_layers(layers.made()).await;
                    return Err(RuntimeError::BuildFailed(message));
                }
                Err(e) => {
                    self.remove_layers(layers.made()).await;
                    return Err(map_err(&format!("building image {tag}"), e));
                }
            };
            if let Some(text) = &info.stream {
                for line in
                    text.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty())
                {
                    layers.read(line);
                    let _ = log.send(line.to_string());
                }
            }
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                let _ = log.send(message.clone());
                self.remove_layers(layers.made()).await;
                return Err(RuntimeError::BuildFailed(message));
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
            }
        }
        match image_id {
            Some(id) => Ok(id),
            None => {
                let image =
                    self.docker.inspect_image(tag).await.map_err(|e| map_err(&format!("image {tag}"), e))?;
                image.id.ok_or_else(|| RuntimeError::Engine(format!("image {tag} was built but has no id")))
            }
        }
    }

    /// Removes the layers a failed build made, newest first (a layer with a
    /// child, say one another build has built on since, stays).
    async fn remove_layers(&self, layers: &[String]) {
        for layer in layers.iter().rev() {
            if let Err(e) = self.remove_image(layer).await {
                tracing::debug!(%layer, error = %e, "a layer of a failed build stays");
            }
        }
    }

    /// Starts `id`, waits for it to stop and returns its exit code and output.
    async fn start_and_collect(&self, id: &str) -> Result<(i64, String), RuntimeError> {
        self.docker
            .start_container::<String>(id, None)
            .await
            .map_err(|e| map_err(&format!("starting container {id}"), e))?;
        let wait = bollard::container::WaitContainerOptions { condition: "not-running".to_string() };
        let mut waits = self.docker.wait_container(id, Some(wait));
        let mut code = None;
        while let Some(item) = waits.next().await {
            match item {
                Ok(resp) => code = Some(resp.status_code),
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = Some(c),
                Err(e) => return Err(map_err(&format!("waiting for container {id}"), e)),
            }
        }
        let code = code.ok_or_else(|| {
            RuntimeError::Engine(format!("waiting for container {id}: the engine reported no exit code"))
        })?;
        let options = bollard::container::LogsOptions::<String> {
            stdout: true,
            stderr: true,
            tail: "all".to_string(),
            ..Default::default()
        };
        // Whatever the command printed, only its end is kept.
        let mut output = Tail::new(TEST_OUTPUT_BYTES);
        let mut logs = self.docker.logs(id, Some(options));
        while let Some(frame) = logs.next().await {
            let frame = frame.map_err(|e| map_err(&format!("reading the output of container {id}"), e))?;
            output.push(&log_frame(frame).1);
        }
        Ok((code, output.text()))
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn build_image(
        &self,
        plan: &BuildPlan,
        tag: &str,
        labels: &BTreeMap<String, String>,
        log: mpsc::UnboundedSender<String>,
    ) -> Result<String, RuntimeError> {
        let dir = plan.context_dir.clone();
        let dockerfile = plan.dockerfile.clone();
        let files = plan.files.clone();
        let context = tokio::task::spawn_blocking(move || build_context(&dir, &dockerfile, &files))
            .await
            .map_err(|e| RuntimeError::Io(std::io::Error::other(e)))?
            .map_err(|e| {
                RuntimeError::Io(std::io::Error::new(
                    e.kind(),
                    format!("packing the build context {}: {e}", plan.context_dir.display()),
                ))
            })?;
        let options = bollard::image::BuildImageOptions::<String> {
            dockerfile: CONTEXT_DOCKERFILE.to_string(),
            t: tag.to_string(),
            labels: managed_labels(labels),
            rm: true,
            forcerm: true,
            pull: false,
            buildargs: plan.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..Default::default()
        };
        let context = bytes::Bytes::from(context);
        let mut attempt = 1;
        loop {
            match self.build_once(options.clone(), context.clone(), tag, &log).await {
                Err(RuntimeError::BuildFailed(message)) if attempt == 1 && lost_cache_layer(&message) => {
                    attempt += 1;
                    tracing::info!(%tag, %message, "a cached layer vanished during the build; building again");
                    let _ = log.send(
                        "a cached layer was removed while the build used it; building again".to_string(),
                    );
                }
                other => return other,
            }
        }
    }

    async fn run_to_completion(
        &self,
        image: &str,
        cmd: &str,
        env: &BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> Result<(i64, String), RuntimeError> {
        // The image's labels (deployment, node, generation) are inherited: the
        // role tells this container from the app's.
        let labels = BTreeMap::from([(LABEL_ROLE.to_string(), ROLE_TEST.to_string())]);
        let limits = AppLimits::default();
        let host_config = bollard::models::HostConfig {
            pids_limit: Some(limits.pids),
            log_config: log_config(Some(limits.log_rotation)),
            ..Default::default()
        };
        let config = bollard::container::Config {
            image: Some(image.to_string()),
            cmd: Some(vec!["sh".to_string(), "-c".to_string(), cmd.to_string()]),
            env: Some(env_list(env)),
            labels: Some(managed_labels(&labels)),
            host_config: Some(host_config),
            ..Default::default()
        };
        let id = self.create(None, config).await?;
        let result = match tokio::time::timeout(timeout, self.start_and_collect(&id)).await {
            Ok(result) => result,
            Err(_) => {
                Err(RuntimeError::TimedOut(format!("`{cmd}` did not finish within {} s", timeout.as_secs())))
            }
        };
        let removed = self.force_remove(&id).await;
        let result = result?;
        removed?;
        Ok(result)
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<(String, u16), RuntimeError> {
        use bollard::models::{HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
        let port_key = format!("{}/tcp", spec.container_port);
        let mut labels = spec.labels.clone();
        labels.entry(LABEL_PORT.to_string()).or_insert_with(|| spec.container_port.to_string());
        labels.entry(LABEL_ROLE.to_string()).or_insert_with(|| ROLE_APP.to_string());
        let binding = PortBinding {
            host_ip: Some(spec.host_ip.clone()).filter(|ip| !ip.is_empty()),
            host_port: Some(if spec.host_port == 0 { String::new() } else { spec.host_port.to_string() }),
        };
        let host_config = HostConfig {
            port_bindings: Some([(port_key.clone(), Some(vec![binding]))].into_iter().collect()),
            // No restarts until the caller saw the app start (`keep_restarting`),
            // so an app that exits at once shows its own exit code.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            memory: (spec.memory_limit > 0).then(|| i64::try_from(spec.memory_limit).unwrap_or(i64::MAX)),
            pids_limit: (spec.pids_limit > 0).then_some(spec.pids_limit),
            log_config: log_config(spec.log_rotation),
            ..Default::default()
        };
        let config = bollard::container::Config {
            image: Some(spec.image.clone()),
            env: Some(env_list(&spec.env)),
            labels: Some(managed_labels(&labels)),
            exposed_ports: Some([(port_key, std::collections::HashMap::new())].into_iter().collect()),
            host_config: Some(host_config),
            ..Default::default()
        };
        let id = self.create(Some(&spec.name), config).await?;
        let started = async {
            self.docker
                .start_container::<String>(&id, None)
                .await
                .map_err(|e| map_err(&format!("starting container {}", spec.name), e))?;
            let info = self
                .docker
                .inspect_container(&id, None)
                .await
                .map_err(|e| map_err(&format!("container {}", spec.name), e))?;
            match published_port(&info, spec.container_port) {
                Some(port) => Ok(port),
                None if spec.host_port != 0 => Ok(spec.host_port),
                None => Err(RuntimeError::Engine(format!(
                    "container {} started but port {}/tcp is not published; did its process exit at once?",
                    spec.name, spec.container_port
                ))),
            }
        }
        .await;
        match started {
            Ok(port) => Ok((id, port)),
            Err(e) => {
                if let Err(cleanup) = self.force_remove(&id).await {
                    tracing::warn!(container = %id, error = %cleanup, "could not remove a container that failed to start");
                }
                Err(e)
            }
        }
    }

    async fn keep_restarting(&self, id: &str) -> Result<(), RuntimeError> {
        use bollard::models::{RestartPolicy, RestartPolicyNameEnum};
        let options = bollard::container::UpdateContainerOptions::<String> {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        self.docker.update_container(id, options).await.map_err(|e| map_err(&format!("container {id}"), e))
    }

    async fn inspect(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| map_err(&format!("container {id}"), e))?;
        let state = info.state.unwrap_or_default();
        // While the engine waits to restart a crashed container it reports it
        // as running and restarting; the app is not running then.
        let running = state.running.unwrap_or(false) && !state.restarting.unwrap_or(false);
        Ok(ContainerState {
            running,
            exit_code: if running { None } else { state.exit_code },
            error: state.error.filter(|e| !e.is_empty()),
            started_at: state.started_at.filter(|s| !s.is_empty() && !s.starts_with("0001-")),
            restart_count: info.restart_count.unwrap_or(0),
        })
    }

    fn logs(
        &self,
        id: &str,
        follow: bool,
        since_now: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let since = if since_now { chrono::Utc::now().timestamp() } else { 0 };
        let options = bollard::container::LogsOptions::<String> {
            follow,
            stdout: true,
            stderr: true,
            since,
            timestamps: false,
            tail: "all".to_string(),
            ..Default::default()
        };
        let frames = self.docker.logs(id, Some(options));
        let what = format!("container {id}");
        // State: the engine's frames, the splitter, items ready to hand out,
        // and whether the frames have ended.
        let state = (frames.boxed(), LineSplitter::new(), VecDeque::new(), false);
        futures::stream::unfold(state, move |(mut frames, mut splitter, mut ready, mut done)| {
            let what = what.clone();
            async move {
                loop {
                    if let Some(item) = ready.pop_front() {
                        return Some((item, (frames, splitter, ready, done)));
                    }
                    if done {
                        return None;
                    }
                    match frames.next().await {
                        Some(Ok(frame)) => {
                            let (stream, bytes) = log_frame(frame);
                            ready.extend(splitter.push(stream, &bytes).into_iter().map(log_line));
                        }
                        Some(Err(e)) => {
                            // Hand out the lines received so far, then the error.
                            done = true;
                            ready.extend(splitter.finish().into_iter().map(log_line));
                            ready.push_back(Err(map_err(&what, e)));
                        }
                        None => {
                            done = true;
                            ready.extend(splitter.finish().into_iter().map(log_line));
                        }
                    }
                }
            }
        })
        .boxed()
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let options = bollard::container::StatsOptions { stream: false, one_shot: false };
        let mut samples = self.docker.stats(id, Some(options));
        let sample = samples
            .next()
            .await
            .ok_or_else(|| RuntimeError::Engine(format!("container {id}: the engine sent no stats")))?
            .map_err(|e| map_err(&format!("container {id}"), e))?;
        let cpu = &sample.cpu_stats;
        let pre = &sample.precpu_stats;
        let cpus = cpu
            .online_cpus
            .filter(|n| *n > 0)
            .or_else(|| cpu.cpu_usage.percpu_usage.as_ref().map(|v| v.len() as u64))
            .unwrap_or(1);
        Ok(ContainerStats {
            cpu_percent: cpu_percent(
                cpu.cpu_usage.total_usage,
                pre.cpu_usage.total_usage,
                cpu.system_cpu_usage,
                pre.system_cpu_usage,
                cpus,
            ),
            memory_bytes: memory_in_use(&sample.memory_stats),
            memory_limit_bytes: sample.memory_stats.limit.unwrap_or(0),
        })
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let stop = bollard::container::StopContainerOptions { t: STOP_GRACE_SECS };
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // Already stopped (304) or failing to stop: the forced removal below settles it.
            Err(e) => tracing::debug!(container = %id, error = %e, "stopping before removal failed"),
        }
        self.force_remove(id).await
    }

    async fn list_managed(&self, node: Option<String>) -> Result<Vec<ManagedContainer>, RuntimeError> {
        let mut label_filters = vec![format!("{LABEL_MANAGED}=true")];
        if let Some(node) = &node {
            label_filters.push(format!("{LABEL_NODE}={node}"));
        }
        let options = bollard::container::ListContainersOptions::<String> {
            all: true,
            filters: [("label".to_string(), label_filters)].into_iter().collect(),
            ..Default::default()
        };
        let summaries =
            self.docker.list_containers(Some(options)).await.map_err(|e| map_err("listing containers", e))?;
        let mut out: Vec<ManagedContainer> = summaries
            .into_iter()
            .map(|c| {
                let labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
                let app_port = labels.get(LABEL_PORT).and_then(|p| p.parse::<u16>().ok());
                let host_port = c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| app_port.is_none_or(|want| p.private_port == want))
                    .find_map(|p| p.public_port.filter(|port| *port != 0));
                let name = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                ManagedContainer {
                    id: c.id.unwrap_or_default(),
                    name,
                    image: c.image.unwrap_or_default(),
                    running: c.state.as_deref() == Some("running"),
                    labels,
                    host_port,
                    image_id: c.image_id.unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_images(&self, node: Option<String>) -> Result<Vec<ManagedImage>, RuntimeError> {
        let mut label_filters = vec![format!("{LABEL_MANAGED}=true")];
        if let Some(node) = &node {
            label_filters.push(format!("{LABEL_NODE}={node}"));
        }
        let options = bollard::image::ListImagesOptions::<String> {
            all: false,
            filters: [("label".to_string(), label_filters)].into_iter().collect(),
            digests: false,
        };
        let images =
            self.docker.list_images(Some(options)).await.map_err(|e| map_err("listing images", e))?;
        Ok(images
            .into_iter()
            .map(|i| ManagedImage {
                id: i.id,
                tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                labels: i.labels.into_iter().collect(),
            })
            .collect())
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let options = bollard::image::RemoveImageOptions { force: false, noprune: false };
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(&format!("removing image {image}"), e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    #[test]
    fn pick_host_port_keeps_a_free_preferred_port() {
        let free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap().local_addr().unwrap().port();
        // The listener is dropped, so the port is free again (barring a race
        // with another process, which the function's contract accepts).
        assert_eq!(pick_host_port(free), free);
    }

    #[test]
    fn pick_host_port_avoids_a_taken_port() {
        let held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let taken = held.local_addr().unwrap().port();
        let picked = pick_host_port(taken);
        assert_ne!(picked, taken);
        assert_ne!(picked, 0);
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, picked)).expect("the picked port is bindable");
    }

    #[test]
    fn pick_host_port_zero_means_any_free_port() {
        let picked = pick_host_port(0);
        assert_ne!(picked, 0);
    }

    #[test]
    fn cpu_percent_follows_the_docker_formula() {
        // 0.5 s of container CPU in 4 s of host CPU time on 2 CPUs = 25 %.
        let pct = cpu_percent(1_500_000_000, 1_000_000_000, Some(12_000_000_000), Some(8_000_000_000), 2);
        assert!((pct - 25.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn cpu_percent_is_zero_without_a_previous_sample_or_interval() {
        assert_eq!(cpu_percent(10, 0, Some(100), None, 2), 0.0);
        assert_eq!(cpu_percent(10, 0, None, None, 2), 0.0);
        assert_eq!(cpu_percent(10, 10, Some(200), Some(100), 2), 0.0);
        assert_eq!(cpu_percent(10, 5, Some(100), Some(100), 2), 0.0);
        // A counter that went backwards (container restarted) gives 0, not a panic.
        assert_eq!(cpu_percent(5, 10, Some(200), Some(100), 2), 0.0);
    }

    #[test]
    fn memory_subtracts_the_cache_only_when_it_fits() {
        assert_eq!(usage_without_cache(1000, 300), 700);
        assert_eq!(usage_without_cache(1000, 0), 1000);
        assert_eq!(usage_without_cache(1000, 5000), 1000);
        assert_eq!(usage_without_cache(0, 0), 0);
    }

    #[test]
    fn build_context_packs_the_app_without_git_and_keeps_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("app.py"), "print('hi')\n").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(root.join("src/lib")).unwrap();
        std::fs::write(root.join("src/lib/util.py"), "x = 1\n").unwrap();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(root.join(CONTEXT_DOCKERFILE), "FROM stale\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("outside")).unwrap();

        let mut extra = BTreeMap::new();
        extra.insert(".kraken-build-ca.pem".to_string(), b"PEM".to_vec());
        let bytes = build_context(root, "FROM base\nCOPY . /app\n", &extra).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let header = entry.header().clone();
            let mut body = String::new();
            if header.entry_type().is_file() {
                entry.read_to_string(&mut body).unwrap();
            }
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            seen.insert(path, (header.entry_type(), header.mode().unwrap() & 0o777, body, link));
        }

        assert!(seen.keys().all(|p| !p.starts_with(".git")), "{:?}", seen.keys());
        assert_eq!(seen["run.sh"].1, 0o755);
        assert_eq!(seen["app.py"].2, "print('hi')\n");
        assert_eq!(seen["src/lib/util.py"].2, "x = 1\n");
        assert!(seen["src"].0.is_dir());
        assert_eq!(seen[CONTEXT_DOCKERFILE].2, "FROM base\nCOPY . /app\n");
        assert!(seen["outside"].0.is_symlink());
        assert_eq!(seen["outside"].3.as_deref(), Some("/etc/passwd"));
        assert_eq!(seen["outside"].2, "", "a link's target is never read");
        assert_eq!(seen[".kraken-build-ca.pem"].2, "PEM", "the plan's files are added");
        // A file of the app with a generated file's name is replaced, not doubled.
        std::fs::write(root.join(".kraken-build-ca.pem"), "stale").unwrap();
        let bytes = build_context(root, "FROM base\n", &extra).unwrap();
        let names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .filter(|n| n == ".kraken-build-ca.pem")
            .collect();
        assert_eq!(names.len(), 1);
        // A new checkout of the same files packs to the same archive.
        let again = |mtime: u64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            std::fs::File::options().write(true).open(root.join("app.py")).unwrap().set_modified(t).unwrap();
            build_context(root, "FROM base\n", &extra).unwrap()
        };
        assert_eq!(again(1_000_000), again(2_000_000));
    }

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

    #[test]
    fn a_vanished_cache_layer_is_told_apart_from_a_failing_build() {
        assert!(lost_cache_layer(
            "failed to export image: failed to set parent sha256:addaaa9c: unknown parent image ID sha256:addaaa9c"
        ));
        assert!(!lost_cache_layer("The command '/bin/sh -c false' returned a non-zero code: 1"));
        assert!(!lost_cache_layer("No such image: node:18-bookworm-slim"));
    }

    #[test]
    fn engine_errors_map_to_runtime_errors() {
        use bollard::errors::Error as E;
        let e =
            map_err("container x", E::DockerResponseServerError { status_code: 404, message: "no".into() });
        assert!(matches!(e, RuntimeError::NotFound(ref w) if w == "container x"), "{e:?}");
        let e =
            map_err("image y", E::DockerResponseServerError { status_code: 409, message: "in use".into() });
        assert!(matches!(e, RuntimeError::Engine(ref m) if m.contains("in use") && m.contains("image y")));
        let e = map_err("ping", E::SocketNotFoundError("/var/run/docker.sock".into()));
        assert!(matches!(e, RuntimeError::Unavailable(_)), "{e:?}");
        let e = map_err("ping", E::RequestTimeoutError);
        assert!(matches!(e, RuntimeError::Unavailable(_)), "{e:?}");
    }
}
