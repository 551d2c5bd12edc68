//! The start phase: the previous container (on an update) removed and the
//! new one started on its host port, or on the port the manifest names, or
//! on one the engine chooses when that one is taken.

use tracing::warn;

use super::{Failed, Job};
use crate::runtime::{pick_host_port, ContainerSpec, LABEL_PORT};
use crate::worker::Active;

/// Starts the app's container; returns its id and host port.
pub(super) async fn start(job: &Job<'_>, previous: Option<&Active>) -> Result<(String, u16), Failed> {
    let shared = job.shared;
    let spec = job.spec;
    let port = spec.manifest.config.port;
    let mut host_port = pick_host_port(port);
    if let Some(prev) = previous {
        if let Some(id) = &prev.container_id {
            shared.stop_following(&spec.deployment);
            if let Err(e) = shared.runtime.remove_container(id).await {
                warn!(error = %e, "could not remove the previous container");
            }
            if let Some(p) = prev.host_port {
                host_port = p;
            }
        }
    }
    let mut labels = super::build::labels(job);
    labels.insert(LABEL_PORT.to_string(), port.to_string());
    let name = &spec.manifest.app.name;
    let mut container = ContainerSpec {
        name: format!("kraken-{name}-{}-{}", spec.deployment, spec.generation),
        image: job.tag.clone(),
        labels,
        env: super::test::app_env(job),
        container_port: port,
        host_port,
        host_ip: shared.node.config.publish_ip.clone(),
        memory_limit: 0,
        pids_limit: shared.node.config.app_limits.pids,
        log_rotation: Some(shared.node.config.app_limits.log_rotation),
        init: true,
        stop_timeout: Some(shared.node.config.app_limits.stop_timeout),
    };
    let started = match shared.runtime.run_container(&container).await {
        Ok(r) => Ok(r),
        Err(first) => {
            warn!(error = %first, port = host_port, "starting on the chosen port failed; letting the engine choose one");
            container.host_port = 0;
            shared.runtime.run_container(&container).await
        }
    };
    match started {
        Ok((id, host_port)) => {
            shared.follow_logs(&spec.deployment, spec.generation, &id, false);
            Ok((id, host_port))
        }
        Err(e) => {
            job.remove_image(&job.tag).await;
            Err(Failed(format!("could not start the container: {e}")))
        }
    }
}
