//! Destroying a deployment on the worker, and cancelling work handed to it:
//! every container and image of the deployment on this node is removed.

use tracing::warn;

use super::Shared;
use crate::deployment::{DeploymentId, Status};
use crate::runtime::{RuntimeError, LABEL_DEPLOYMENT};

/// Removes every container and image of a deployment on this node.
///
/// # Errors
/// The engine's error when a container could not be listed or removed (an
/// image that stays is only logged).
async fn remove_everything(shared: &Shared, dep: &str) -> Result<(), RuntimeError> {
    shared.stop_following(dep);
    // No new connections; open ones end as the container stops.
    shared.proxy.close(dep);
    let containers = shared.runtime.list_managed(Some(shared.node.id.clone())).await?;
    let mut images = Vec::new();
    for c in containers.iter().filter(|c| c.labels.get(LABEL_DEPLOYMENT).map(String::as_str) == Some(dep)) {
        shared.runtime.remove_container(&c.id).await?;
        images.push(c.image.clone());
    }
    if let Some(a) = shared.active().get(dep) {
        images.extend(a.image.clone());
    }
    images.sort();
    images.dedup();
    for image in images {
        if let Err(e) = shared.runtime.remove_image(&image).await {
            warn!(error = %e, %image, "could not remove an image");
        }
    }
    Ok(())
}

/// Destroys a deployment, reporting its progress and its end.
pub(super) async fn run_destroy(shared: Shared, dep: DeploymentId, generation: u64) {
    shared.report(&dep, generation, Status::DestructionInProgress, "removing the container and image").await;
    match remove_everything(&shared, &dep).await {
        Ok(()) => {
            shared.active().remove(&dep);
            shared.report(&dep, generation, Status::Destroyed, "container and image removed").await;
        }
        Err(e) => {
            if let Some(a) = shared.active().get_mut(&dep) {
                a.in_progress = false;
            }
            shared
                .report(&dep, generation, Status::Errored, format!("could not remove the container: {e}"))
                .await;
        }
    }
    shared.tasks().work.remove(&dep);
}

/// Removes what work handed to this node for a deployment left, silently
/// (the orchestrator moved the deployment elsewhere).
pub(super) async fn run_cancel(shared: Shared, dep: DeploymentId) {
    if let Err(e) = remove_everything(&shared, &dep).await {
        warn!(deployment = %dep, error = %e, "could not clean up a cancelled deployment");
    }
    shared.active().remove(&dep);
    shared.tasks().work.remove(&dep);
}
