//! The fetch phase: the deployment's exact commit checked out into a work
//! directory of its own, removed again when the deployment ends.
//!
//! When this agent's orchestrator read the repository for this deployment,
//! the tree it fetched at that commit is moved here instead of being fetched
//! again; a worker on another machine fetches exactly that commit.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::{Failed, Job};

/// A checkout of the deployment's commit; its directory is removed when
/// this is dropped.
pub(super) struct Checkout {
    /// Where the commit is checked out.
    pub(super) dir: PathBuf,
    /// The work directory (the checkout is in it), as error messages hide it.
    pub(super) work_dir: PathBuf,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// Fetches the deployment's commit into `work/<deployment>-<generation>`
/// under the node's data directory.
pub(super) async fn fetch(job: &Job<'_>) -> Result<Checkout, Failed> {
    let spec = job.spec;
    let node = &job.shared.node;
    let work_dir = work_dir(&node.config.data_dir, &spec.deployment, spec.generation);
    let _ = std::fs::remove_dir_all(&work_dir);
    // From here on the directory goes when the deployment ends, fetched or not.
    let mut checkout = Checkout { dir: work_dir.clone(), work_dir };
    if let Some(tree) = node.fetched.take(&spec.deployment, &spec.commit) {
        let parent = checkout.work_dir.parent().unwrap_or(&node.config.data_dir);
        let moved = std::fs::create_dir_all(parent).and_then(|()| tree.move_to(&checkout.work_dir));
        match moved {
            Ok(()) => {
                job.sink.send(
                    "platform",
                    format!(
                        "using the tree of {} at {} fetched when the request was read",
                        spec.url, spec.commit
                    ),
                );
                return Ok(checkout);
            }
            Err(e) => {
                warn!(deployment = %spec.deployment, error = %e, "could not take the fetched tree; fetching again");
                let _ = std::fs::remove_dir_all(&checkout.work_dir);
            }
        }
    }
    job.sink.send("platform", format!("fetching {} ({}) at {}", spec.url, spec.branch, spec.commit));
    let fetched = node
        .fetcher
        .fetch(&spec.url, &spec.branch, Some(&spec.commit), &checkout.work_dir)
        .await
        .map_err(|e| Failed(format!("could not fetch the source: {e}")))?;
    checkout.dir = fetched.dir;
    Ok(checkout)
}

/// The work directory of a deployment's generation.
pub(in crate::worker) fn work_dir(data_dir: &Path, deployment: &str, generation: u64) -> PathBuf {
    data_dir.join("work").join(format!("{deployment}-{generation}"))
}
