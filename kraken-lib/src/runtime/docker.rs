//! [`DockerRuntime`]: the [`Runtime`] on the local Docker engine, through
//! `bollard`. The work is done in the files named for it (`build`,
//! `containers`, `logs`, `stats`, `images`); this file connects and puts the
//! trait together.

use std::collections::BTreeMap;

use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::{
    build, containers, images, logs, stats, ContainerSpec, ContainerState, ContainerStats, LogLine,
    LogPosition, ManagedContainer, ManagedImage, Runtime, RuntimeError, LABEL_MANAGED, LABEL_NODE,
};
use crate::builder::BuildPlan;

/// The real runtime, talking to the local Docker engine.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    pub(super) docker: bollard::Docker,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket).
    ///
    /// # Errors
    /// [`RuntimeError::Unavailable`] when no engine answers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use kraken_lib::runtime::{DockerRuntime, Runtime};
    ///
    /// # async fn run() -> Result<(), kraken_lib::runtime::RuntimeError> {
    /// let docker = DockerRuntime::connect().await?;
    /// for c in docker.list_managed(None).await? {
    ///     println!("{} runs {}", c.name, c.image);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| RuntimeError::Unavailable { what: "connecting".to_string(), source: e })?;
        docker.ping().await.map_err(|e| RuntimeError::Unavailable { what: "ping".to_string(), source: e })?;
        // Speak the engine's API version when it is older than the client's,
        // so older engines (e.g. Debian's 20.10) accept the requests.
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Unavailable {
            what: "negotiating the API version".to_string(),
            source: e,
        })?;
        Ok(Self { docker })
    }

    /// The engine client, for callers that need an operation the trait lacks.
    pub fn client(&self) -> &bollard::Docker {
        &self.docker
    }
}

/// `labels` plus [`LABEL_MANAGED`]` = "true"`, in the form bollard takes.
pub(super) fn managed_labels(labels: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    let mut out: std::collections::HashMap<String, String> =
        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(LABEL_MANAGED.to_string(), "true".to_string());
    out
}

/// The engine's filter for the containers Kraken made, only for `node` when given.
pub(super) fn managed_filter(node: Option<&str>) -> std::collections::HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{LABEL_MANAGED}=true")];
    labels.extend(node.map(|node| format!("{LABEL_NODE}={node}")));
    std::collections::HashMap::from([("label".to_string(), labels)])
}

/// `KEY=value` strings for the engine.
pub(super) fn env_list(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn build_image(
        &self,
        plan: &BuildPlan,
        tag: &str,
        log: mpsc::UnboundedSender<String>,
    ) -> Result<String, RuntimeError> {
        build::build_image(self, plan, tag, log).await
    }

    async fn run_to_completion(
        &self,
        image: &str,
        cmd: &str,
        env: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> Result<(i64, String), RuntimeError> {
        containers::run_to_completion(self, image, cmd, env, labels, timeout).await
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<(String, u16), RuntimeError> {
        containers::run_container(self, spec).await
    }

    async fn keep_restarting(&self, id: &str) -> Result<(), RuntimeError> {
        containers::keep_restarting(self, id).await
    }

    async fn inspect(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        containers::inspect(self, id).await
    }

    fn logs(
        &self,
        id: &str,
        follow: bool,
        since_now: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        logs::logs(self, id, follow, since_now)
    }

    fn follow_after(
        &self,
        id: &str,
        after: Option<LogPosition>,
    ) -> BoxStream<'static, Result<(LogLine, LogPosition), RuntimeError>> {
        logs::follow_after(self, id, after)
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        stats::stats(self, id).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        containers::remove_container(self, id).await
    }

    async fn list_managed(&self, node: Option<String>) -> Result<Vec<ManagedContainer>, RuntimeError> {
        containers::list_managed(self, node).await
    }

    async fn list_images(&self, node: Option<String>) -> Result<Vec<ManagedImage>, RuntimeError> {
        images::list_images(self, node).await
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        images::remove_image(self, image).await
    }
}
