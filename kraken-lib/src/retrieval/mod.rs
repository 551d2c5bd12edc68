//! Reading a deployment's repository: checking the request's fields,
//! fetching the branch (through the node's bounded [`Fetcher`]), validating
//! its `shipwreck.toml`, choosing its builder and making the build plan.
//!
//! The API's `validate` endpoint and the orchestrator both read repositories
//! through here. What the orchestrator fetched is not thrown away: the tree
//! is kept for the node's own worker ([`FetchedTrees`]), so a deployment
//! placed on the node that read it is fetched once; a worker elsewhere
//! fetches exactly the commit that was read.
//!
//! - `request`: [`check_request`], the fields' checks from their text alone.
//! - `kept`: [`FetchedTree`] and [`FetchedTrees`], trees handed on.
//! - `error`: [`RetrieveError`].

use std::path::Path;

use tracing::warn;

use crate::builder::{BuildPlan, BuilderRegistry, Detection};
use crate::fetcher::Fetcher;
use crate::shipwreck::{Manifest, FILE_NAME};

mod error;
mod kept;
mod request;

pub use error::RetrieveError;
pub use kept::{FetchedTree, FetchedTrees, KEEP_FOR, MAX_KEPT};
pub use request::{check_request, RequestError, MAX_BRANCH_CHARS, MAX_URL_CHARS};

/// What reading a repository found.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The commit read.
    pub commit: String,
    /// The validated manifest.
    pub manifest: Manifest,
    /// The builder chosen and why.
    pub detection: Detection,
    /// The whole build plan (base image, install, build and start steps with
    /// their reasons, the Dockerfile), made here so that a request whose plan
    /// fails is refused before anything is delegated.
    pub plan: Box<BuildPlan>,
}

/// Fetches `branch` of `url` with `fetcher` into a temporary directory under
/// `work_root`, validates its `shipwreck.toml`, chooses its builder and makes
/// the whole build plan; the checkout is removed before this returns. With
/// `wait`, waits for a place in the fetch queue; without, is refused with
/// [`RetrieveError::Busy`] when the queue is full.
///
/// # Errors
/// [`RetrieveError`] with a message a person can act on (naming no path of
/// this machine beyond what was given) and the cause as its source.
///
/// # Examples
///
/// ```no_run
/// use kraken_lib::builder::{BaseImages, BuilderRegistry};
/// use kraken_lib::fetcher::{FetchProgram, Fetcher};
/// use kraken_lib::retrieval::{check_request, retrieve};
/// use kraken_lib::source::FetchLimits;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let data = std::path::Path::new("/var/lib/kraken");
/// let fetcher = Fetcher::new(FetchProgram::CurrentExe, FetchLimits::default(), false, data);
/// let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
/// let (url, branch) = ("https://example.org/app.git", "main");
/// check_request(url, branch, false)?;
/// let found = retrieve(&fetcher, true, url, branch, &registry, &data.join("fetch")).await?;
/// println!("{} at {}: {} builder", found.manifest.app.name, found.commit, found.detection.builder);
/// # Ok(())
/// # }
/// ```
pub async fn retrieve(
    fetcher: &Fetcher,
    wait: bool,
    url: &str,
    branch: &str,
    registry: &BuilderRegistry,
    work_root: &Path,
) -> Result<Retrieved, RetrieveError> {
    retrieve_keeping(fetcher, wait, url, branch, registry, work_root).await.map(|(found, _tree)| found)
}

/// As [`retrieve`], and hands back the fetched tree (removed when it is
/// dropped) so that it can be built without fetching it again.
///
/// # Errors
/// As [`retrieve`].
pub async fn retrieve_keeping(
    fetcher: &Fetcher,
    wait: bool,
    url: &str,
    branch: &str,
    registry: &BuilderRegistry,
    work_root: &Path,
) -> Result<(Retrieved, FetchedTree), RetrieveError> {
    let dir = crate::auth::files::private_dir(work_root)
        .and_then(|()| tempfile::Builder::new().prefix("fetch-").tempdir_in(work_root))
        .map_err(|source| {
            warn!(root = %work_root.display(), error = %source, "cannot make a directory for a checkout");
            RetrieveError::Workspace { source }
        })?;
    let tree = FetchedTree::new(dir);
    let dest = tree.path().to_path_buf();
    let fetched = if wait {
        fetcher.fetch(url, branch, None, &dest).await
    } else {
        fetcher.try_fetch(url, branch, None, &dest).await
    };
    let checkout = fetched.map_err(|source| {
        if source.is_busy() {
            RetrieveError::Busy { source }
        } else {
            RetrieveError::Fetch { source }
        }
    })?;
    let registry = registry.clone();
    let hide = fetcher.clone();
    tokio::task::spawn_blocking(move || {
        let manifest =
            Manifest::parse(FILE_NAME, &checkout.manifest_text, &registry.names()).map_err(|source| {
                RetrieveError::Manifest { message: hide.hide_paths(&source.to_string(), &dest), source }
            })?;
        let (plan, detection) = registry.plan(&checkout.dir, &manifest).map_err(|source| {
            RetrieveError::Plan { message: hide.hide_paths(&source.to_string(), &dest), source }
        })?;
        let found = Retrieved { commit: checkout.commit, manifest, detection, plan: Box::new(plan) };
        Ok((found, tree))
    })
    .await
    .map_err(|source| RetrieveError::Task { source })?
}
