//! The build phase: the plan built into the deployment's image, its output
//! streamed into the deployment's log, and the layers it makes noted so
//! that an interrupted build's layers can be removed at the next start.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::fetch::Checkout;
use super::{Failed, Job};
use crate::builder::BuildPlan;
use crate::runtime::{BuildLayers, LABEL_COMMIT, LABEL_DEPLOYMENT, LABEL_NODE};
use crate::worker::{adopt, LABEL_GENERATION};

/// The labels of the containers made for the job (the app's and its test's;
/// the image has none: its tag says whose it is).
pub(super) fn labels(job: &Job<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_DEPLOYMENT.to_string(), job.spec.deployment.clone()),
        (LABEL_NODE.to_string(), job.shared.node.id.clone()),
        (LABEL_COMMIT.to_string(), job.spec.commit.clone()),
        (LABEL_GENERATION.to_string(), job.spec.generation.to_string()),
    ])
}

/// Builds the image tagged `job.tag`; returns its id.
pub(super) async fn build(job: &Job<'_>, checkout: &Checkout, plan: &BuildPlan) -> Result<String, Failed> {
    let (log_tx, mut log_rx) = mpsc::unbounded_channel::<String>();
    let build_sink = job.sink.clone();
    let building = checkout.work_dir.clone();
    let forward = tokio::spawn(async move {
        let mut layers = BuildLayers::new();
        while let Some(line) = log_rx.recv().await {
            if let Some(layer) = layers.read(&line) {
                adopt::note_layer(&building, &layer);
            }
            build_sink.send("build", line);
        }
    });
    let built = job.shared.runtime.build_image(plan, &job.tag, log_tx).await;
    let _ = forward.await;
    // The build ended (a failed one removed its own layers): nothing to clean at the next start.
    let _ = std::fs::remove_file(adopt::layers_file(&checkout.work_dir));
    built.map_err(|e| Failed(format!("{e}; the build log above has the details")))
}
