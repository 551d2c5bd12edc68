//! Fetching an app's source: a git URL and a branch, cloned with `git2` into a
//! fresh directory, with the commit recorded.
//!
//! Public https, `git://`, `file://` URLs and local paths are accepted. A
//! repository larger than the configured limit is refused while it downloads.

use std::path::{Path, PathBuf};

/// Limits applied while fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The most bytes a fetch may download (and a checkout may hold).
    pub max_bytes: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self { max_bytes: 200 * 1024 * 1024 }
    }
}

/// An app checked out at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The directory holding the work tree.
    pub dir: PathBuf,
    /// The full hex id of the checked-out commit.
    pub commit: String,
    /// The text of `shipwreck.toml` at the root.
    pub manifest_text: String,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The URL is not one Kraken can fetch.
    #[error("`{url}` is not a git URL Kraken can fetch: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong and what would work.
        reason: String,
    },
    /// No repository answered at the URL.
    #[error("no git repository at `{url}`: {detail}")]
    RepositoryNotFound {
        /// The URL given.
        url: String,
        /// What git said.
        detail: String,
    },
    /// The repository has no such branch.
    #[error("branch `{branch}` not found in `{url}`; its branches are: {available}")]
    BranchNotFound {
        /// The URL given.
        url: String,
        /// The branch asked for.
        branch: String,
        /// The branches it has, comma separated.
        available: String,
    },
    /// The branch has no `shipwreck.toml` at its root.
    #[error("branch `{branch}` of `{url}` has no shipwreck.toml at its root; add one (see the Info page for its keys)")]
    NoManifest {
        /// The URL given.
        url: String,
        /// The branch.
        branch: String,
    },
    /// The repository is larger than allowed.
    #[error("`{url}` is larger than the {limit_bytes}-byte limit for a repository")]
    TooLarge {
        /// The URL given.
        url: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// Any other git failure.
    #[error("git failed on `{url}`: {source}")]
    Git {
        /// The URL given.
        url: String,
        /// The underlying error.
        #[source]
        source: git2::Error,
    },
    /// A local file operation failed.
    #[error("could not prepare {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Clones `branch` of `url` into `dest` (which must not exist or be empty) and
/// reads its manifest. Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// A [`SourceError`] saying what was wrong.
pub fn fetch(url: &str, branch: &str, dest: &Path, limits: FetchLimits) -> Result<Checkout, SourceError> {
    let _ = (url, branch, dest, limits);
    Err(SourceError::InvalidUrl { url: url.to_string(), reason: "not implemented yet".into() })
}

/// The newest commit of `branch` at `url`, without cloning (a remote listing).
/// Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// A [`SourceError`] saying what was wrong.
pub fn latest_commit(url: &str, branch: &str) -> Result<String, SourceError> {
    let _ = branch;
    Err(SourceError::InvalidUrl { url: url.to_string(), reason: "not implemented yet".into() })
}

/// Clones `branch` of `url` into `dest` and checks out `commit`, which must be
/// on that branch. Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// A [`SourceError`] saying what was wrong.
pub fn fetch_commit(
    url: &str,
    branch: &str,
    commit: &str,
    dest: &Path,
    limits: FetchLimits,
) -> Result<Checkout, SourceError> {
    let _ = commit;
    fetch(url, branch, dest, limits)
}
