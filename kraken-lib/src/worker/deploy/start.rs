//! The start phase: the app's port held by the agent's [proxy](crate::proxy)
//! (the port it has already on an update; otherwise the manifest's, or a free
//! one when that is taken), then the new container started beside the old
//! one, its port not published on the host: the proxy reaches it on its own
//! address. A previous container from before the
//! agent held ports publishes the port itself: it is removed first and its
//! port taken over.

use tracing::warn;

use super::{Failed, Job};
use crate::runtime::{ContainerSpec, LABEL_PORT};
use crate::worker::{Active, LABEL_PUBLIC_PORT};

/// A started container and the port people reach it on.
pub(super) struct Started {
    /// The new container.
    pub(super) container_id: String,
    /// The port the proxy holds for the app.
    pub(super) public_port: u16,
    /// Whether the port was opened for this container (and is closed again
    /// when it fails), rather than held already for the running version.
    pub(super) fresh_port: bool,
    /// Whether the container's output is followed into the deployment's log
    /// already: from its start when no previous version runs on; otherwise
    /// the previous version's output is followed until the switch.
    pub(super) following: bool,
}

/// Holds the app's port and starts its container.
pub(super) async fn start(job: &Job<'_>, previous: Option<&Active>) -> Result<Started, Failed> {
    let shared = job.shared;
    let spec = job.spec;
    let dep = &spec.deployment;
    let port = spec.manifest.config.port;
    let fresh_port = shared.proxy.port(dep).is_none();
    let mut preferred = port;
    if let (true, Some(prev)) = (fresh_port, previous) {
        if let Some(id) = &prev.container_id {
            shared.stop_following(dep);
            if let Err(e) = shared.runtime.remove_container(id).await {
                warn!(error = %e, "could not remove the previous container");
            }
            preferred = prev.host_port.unwrap_or(port);
        }
    }
    let public_port = match shared.proxy.open(dep, &shared.node.config.publish_ip, preferred).await {
        Ok(p) => p,
        Err(e) => {
            job.remove_image(&job.tag).await;
            return Err(Failed(format!("could not hold a port for the app: {e}")));
        }
    };
    let mut labels = super::build::labels(job);
    labels.insert(LABEL_PORT.to_string(), port.to_string());
    labels.insert(LABEL_PUBLIC_PORT.to_string(), public_port.to_string());
    let name = &spec.manifest.app.name;
    let container = ContainerSpec {
        name: format!("kraken-{name}-{}-{}", spec.deployment, spec.generation),
        image: job.tag.clone(),
        labels,
        env: super::test::app_env(job),
        container_port: port,
        // The proxy reaches the app on the container's own address; a
        // published port would only cost a `docker-proxy` process.
        publish: false,
        host_port: 0,
        host_ip: String::new(),
        memory_limit: 0,
        pids_limit: shared.node.config.app_limits.pids,
        log_rotation: Some(shared.node.config.app_limits.log_rotation),
        init: true,
        stop_timeout: Some(shared.node.config.app_limits.stop_timeout),
    };
    match shared.runtime.run_container(&container).await {
        Ok((container_id, _)) => {
            let previous_runs = !fresh_port && previous.is_some_and(|p| p.container_id.is_some());
            if !previous_runs {
                shared.follow_logs(dep, spec.generation, &container_id, false);
            }
            Ok(Started { container_id, public_port, fresh_port, following: !previous_runs })
        }
        Err(e) => {
            if fresh_port {
                shared.proxy.close(dep);
            }
            job.remove_image(&job.tag).await;
            Err(Failed(format!("could not start the container: {e}")))
        }
    }
}
