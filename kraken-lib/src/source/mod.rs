//! Fetching an app's source: a git URL and a branch, cloned with `git2` into a
//! fresh directory, with the commit recorded.
//!
//! Public `https://` and `http://` URLs, `git://` URLs, `file://` URLs and
//! local paths (absolute, or relative to the working directory) are accepted;
//! ssh and every other form are refused up front with [`SourceError::InvalidUrl`].
//! Whether local sources may be read at all is the caller's policy
//! ([`check_allowed`]; an agent reads them only when started with
//! `--allow-local-sources`).
//! Only the asked-for branch is fetched, shallowly (depth 1) where the
//! transport supports it, and fully otherwise. A repository larger than the
//! configured limit is refused while it downloads, and its checked-out tree is
//! measured again before anything is written to the work tree.
//!
//! Every function here blocks on disk and network, with no time limit of its
//! own (libgit2 has none): the agent runs fetches through [`crate::fetcher`],
//! in a helper process it stops when a fetch hangs. Use these functions
//! directly only for sources you trust.
//!
//! A fetch never leaves a checkout that looks complete behind it: on any error,
//! what was written in the destination is removed again.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::build::CheckoutBuilder;
use git2::{Direction, FetchOptions, ObjectType, Oid, Remote, RemoteCallbacks, Repository};

mod clone;
mod location;

pub use clone::*;
pub use location::*;

/// The name of the manifest every app has at the root of its branch.
pub const MANIFEST_FILE: &str = "shipwreck.toml";

/// The URL forms Kraken accepts, for error messages.
const ACCEPTED_FORMS: &str =
    "use an https://, http://, git:// or file:// URL, or the path of a local directory";

/// libgit2's "not supported" error code (`GIT_ENOTSUPPORTED`), which `git2`
/// reports only as a generic error.
const GIT_ENOTSUPPORTED: i32 = -39;

/// The largest `shipwreck.toml` read.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// Limits applied while fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The most bytes a fetch may download and check out, together
    /// (default 200 MiB).
    pub max_bytes: u64,
    /// The longest a whole fetch may take (default 10 minutes); enforced by
    /// [`crate::fetcher`], which stops the fetch's process.
    pub timeout: Duration,
    /// The longest a fetch may go without progress: no connection, no data
    /// (default 30 s); enforced by [`crate::fetcher`].
    pub idle_timeout: Duration,
    /// How many fetches run at once on an agent (default 2).
    pub concurrent: usize,
    /// How many more may wait for a place before checks are refused
    /// (default 8; deployments always wait their turn).
    pub queued: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 200 * 1024 * 1024,
            timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            concurrent: 2,
            queued: 8,
        }
    }
}

/// An app checked out at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The directory holding the work tree (with the repository in its `.git`).
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
    #[error("`{url}` is larger than the {limit_bytes}-byte limit for a repository (its download and its files together)")]
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
    /// The branch name is not a valid git branch name.
    #[error("`{branch}` is not a valid branch name: {reason}")]
    InvalidBranch {
        /// The branch name given.
        branch: String,
        /// What is wrong and what would work.
        reason: String,
    },
    /// The commit id given is not a full hex commit id.
    #[error("`{commit}` is not a commit id: give the full 40-character hex id")]
    InvalidCommit {
        /// The commit id given.
        commit: String,
    },
    /// The commit asked for is not (or no longer) on the branch, for instance
    /// because the branch was force-pushed since the commit was chosen.
    #[error(
        "commit {commit} is no longer on branch `{branch}` of `{url}` (its newest commit is {tip}); \
         deploy the branch's newest commit instead"
    )]
    CommitNotOnBranch {
        /// The URL given.
        url: String,
        /// The branch.
        branch: String,
        /// The commit asked for.
        commit: String,
        /// The branch's newest commit.
        tip: String,
    },
    /// The URL names something on this machine (a path or a `file://` URL)
    /// and the agent was not started to fetch such sources.
    #[error(
        "`{url}` is on this machine (a local path or file:// URL), and this platform fetches only \
         https://, http:// and git:// repositories; publish the repository on a git server, or start \
         the agent with --allow-local-sources to let it read repositories on its own disk"
    )]
    LocalRefused {
        /// The URL given.
        url: String,
    },
    /// `shipwreck.toml` is larger than [`MAX_MANIFEST_BYTES`].
    #[error("shipwreck.toml on branch `{branch}` of `{url}` is larger than {MAX_MANIFEST_BYTES} bytes; a manifest is a few lines")]
    ManifestTooLarge {
        /// The URL given.
        url: String,
        /// The branch.
        branch: String,
    },
    /// `shipwreck.toml` is not UTF-8 text.
    #[error("shipwreck.toml on branch `{branch}` of `{url}` is not UTF-8 text; save it as UTF-8")]
    ManifestNotUtf8 {
        /// The URL given.
        url: String,
        /// The branch.
        branch: String,
    },
}

#[cfg(test)]
mod tests;
