//! The plan phase: the build plan made by the builder the orchestrator
//! chose (recorded in the work request), not by a detection of its own, so
//! the deployment is built the way it was checked and shown.

use super::fetch::Checkout;
use super::{Failed, Job};
use crate::builder::BuildPlan;

/// The build plan for the checked-out app.
pub(super) fn plan(job: &Job<'_>, checkout: &Checkout) -> Result<BuildPlan, Failed> {
    let shared = job.shared;
    let spec = job.spec;
    let planned = if spec.builder.is_empty() {
        shared.registry.plan(&checkout.dir, &spec.manifest)
    } else {
        shared.registry.plan_with(&checkout.dir, &spec.manifest, &spec.builder)
    };
    let (plan, detection) = planned.map_err(|e| {
        Failed(format!(
            "could not prepare the build: {}",
            shared.node.fetcher.hide_paths(&e.to_string(), &checkout.work_dir)
        ))
    })?;
    job.sink
        .send("platform", format!("building with the {} builder ({})", detection.builder, detection.reason));
    Ok(plan)
}
