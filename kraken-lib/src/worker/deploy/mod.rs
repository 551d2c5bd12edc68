//! Deploying on the worker, phase by phase: [`fetch`] the commit, [`plan`]
//! the build with the builder the orchestrator chose, [`build`] the image,
//! run the manifest's [`test`], [`start`] the container (beside the previous
//! one on an update) and wait until it [`settle`]s, accepting connections;
//! then the port proxy switches to it and the previous container is stopped.
//!
//! Each phase returns [`Failed`] with a reason a person can act on; the
//! phase that fails undoes what it made (an image, a container), and
//! [`run_deploy`] reports the outcome: running, errored, or — for an update
//! whose previous container is still there — still running the old commit.

use tracing::warn;

use super::{Active, Shared};
use crate::bus::DeploySpec;
use crate::deployment::Status;
use crate::log_sink::LogSink;
use crate::proxy::Backend;

mod build;
mod fetch;
mod plan;
mod settle;
mod start;
mod test;

/// Why a deployment failed, as the deployment's log and status say it.
pub(super) struct Failed(pub(super) String);

/// One deployment under way: what every phase needs.
struct Job<'a> {
    shared: &'a Shared,
    spec: &'a DeploySpec,
    sink: &'a LogSink,
    /// The image's tag: `kraken/<node>/<app>:<deployment>-<generation>` (an
    /// [`AppImage`](crate::runtime::AppImage)).
    tag: String,
}

impl Job<'_> {
    async fn report(&self, status: Status, message: impl Into<String>) {
        self.shared.report(&self.spec.deployment, self.spec.generation, status, message).await;
    }

    /// Removes the image this deployment built (after a later phase failed).
    async fn remove_image(&self, image: &str) {
        if let Err(e) = self.shared.runtime.remove_image(image).await {
            warn!(error = %e, "could not remove an image");
        }
    }
}

/// Carries out a deploy (or, with `update`, an update replacing `previous`)
/// and reports how it ended.
pub(super) async fn run_deploy(shared: Shared, spec: DeploySpec, previous: Option<Active>, update: bool) {
    let dep = spec.deployment.clone();
    let generation = spec.generation;
    let sink = LogSink::start(shared.node.clone(), dep.clone(), generation);
    if let Err(Failed(reason)) = deploy(&shared, &spec, previous.clone(), &sink).await {
        sink.send("platform", format!("error: {reason}"));
        // The old version serves on only if its container is still there
        // (a new app that failed after the swap has already replaced it).
        let old_running = match previous.as_ref().and_then(|p| p.container_id.clone()) {
            Some(id) => shared.runtime.inspect(&id).await.is_ok_and(|s| s.running),
            None => false,
        };
        let keeps_serving = update && old_running;
        {
            let mut active = shared.active();
            match previous.filter(|_| keeps_serving) {
                Some(p) => active.insert(dep.clone(), Active { in_progress: false, generation, ..p }),
                None => active.insert(dep.clone(), Active { generation, ..Active::default() }),
            };
        }
        if keeps_serving {
            // The old version keeps serving: say so rather than call it errored.
            let message = format!("update failed, still running the previous commit: {reason}");
            shared.report(&dep, generation, Status::Running, message).await;
        } else {
            shared.report(&dep, generation, Status::Errored, reason).await;
        }
    }
    shared.tasks().work.remove(&dep);
}

/// Removes an updated deployment's previous container, once the connections
/// still open on it have finished (or its stop timeout passed), and its image,
/// on a task of their own: the update is reported `Running` without waiting,
/// and a later update or destroy of the deployment does not cut the removal
/// short. An agent stopped meanwhile removes the old container when it
/// adopts the deployment's newer one (`worker::adopt`).
fn retire(
    shared: &Shared,
    drain: Option<crate::proxy::Drain>,
    container: Option<String>,
    image: Option<String>,
) {
    if container.is_none() && image.is_none() {
        return;
    }
    let runtime = shared.runtime.clone();
    let stop_timeout = shared.node.config.app_limits.stop_timeout;
    tokio::spawn(async move {
        if let Some(old) = container {
            if let Some(drain) = drain {
                drain.wait(stop_timeout).await;
            }
            if let Err(e) = runtime.remove_container(&old).await {
                warn!(error = %e, "could not remove the previous container");
            }
        }
        if let Some(old) = image {
            if let Err(e) = runtime.remove_image(&old).await {
                warn!(error = %e, "could not remove the previous image");
            }
        }
    });
}

/// The phases of one deployment, in order.
async fn deploy(
    shared: &Shared,
    spec: &DeploySpec,
    previous: Option<Active>,
    sink: &LogSink,
) -> Result<(), Failed> {
    let short = spec.commit.get(..8).unwrap_or(&spec.commit);
    let tag = crate::runtime::AppImage {
        node: shared.node.id.clone(),
        app: spec.manifest.app.name.clone(),
        deployment: spec.deployment.clone(),
        generation: spec.generation,
    }
    .tag();
    let job = Job { shared, spec, sink, tag };
    job.report(Status::BuildingDeployment, format!("building commit {short} on {}", shared.node.name)).await;
    let checkout = fetch::fetch(&job).await?;
    let plan = plan::plan(&job, &checkout)?;
    let image = build::build(&job, &checkout, &plan).await?;
    test::test(&job).await?;
    job.report(Status::Deploying, "starting the container").await;
    let start::Started { container_id, public_port: host_port, fresh_port, following } =
        start::start(&job, previous.as_ref()).await?;
    let address = match settle::settle(&job, &container_id, following).await {
        Ok(address) => address,
        Err(failed) => {
            if fresh_port {
                shared.proxy.close(&spec.deployment);
            }
            return Err(failed);
        }
    };
    // Ready: new connections go to the new container from now on, and its
    // output (all of it, from its start, on an update) to the deployment's log.
    let backend = Backend {
        container_id: container_id.clone(),
        port: spec.manifest.config.port,
        address: Some(address),
    };
    let drain = shared.proxy.switch(&spec.deployment, backend);
    if !following {
        shared.follow_logs(&spec.deployment, spec.generation, &container_id, false);
    }
    shared.active().insert(
        spec.deployment.clone(),
        Active {
            generation: spec.generation,
            in_progress: false,
            container_id: Some(container_id.clone()),
            image: Some(job.tag.clone()),
            host_port: Some(host_port),
            running: true,
            stats: None,
        },
    );
    let address = shared.address(host_port);
    sink.send("platform", format!("running at {address}"));
    let message = format!("running at {address} on {}", shared.node.name);
    shared
        .report_running(
            &spec.deployment,
            spec.generation,
            &spec.commit,
            container_id.clone(),
            host_port,
            message,
        )
        .await;
    // The new version serves and is reported; the old one goes meanwhile.
    let old_container =
        previous.as_ref().and_then(|p| p.container_id.clone()).filter(|id| *id != container_id);
    let old_image = previous.and_then(|p| p.image).filter(|i| *i != job.tag && *i != image);
    retire(shared, drain, old_container, old_image);
    settle::keep_running(&job, &container_id).await;
    Ok(())
}
