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
use git2::{Direction, FetchOptions, ObjectType, Oid, Reference, Remote, RemoteCallbacks, Repository};

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

/// The kind of location a URL names, as far as the text alone tells.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlKind {
    /// A network URL (`https`, `http` or `git`), handed to git as written.
    Network,
    /// A `file://` URL, handed to git as written.
    FileUrl,
    /// A local path, absolute or relative.
    LocalPath,
}

/// Classifies `url` without touching the disk or the network; `Err` holds the
/// reason it is refused.
fn classify(url: &str) -> Result<UrlKind, String> {
    if url.trim().is_empty() {
        return Err(format!("it is empty; {ACCEPTED_FORMS}"));
    }
    if url.trim() != url {
        return Err(format!("it has spaces around it; remove them ({ACCEPTED_FORMS})"));
    }
    if url.chars().any(char::is_control) {
        return Err(format!("it contains control characters; {ACCEPTED_FORMS}"));
    }
    if url.starts_with('-') {
        return Err(format!("it starts with `-`, like a command-line option; {ACCEPTED_FORMS}"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        return match scheme.as_str() {
            "https" | "http" | "git" => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if host.is_empty() {
                    Err(format!("it names no host; write it as {scheme}://HOST/PATH"))
                } else if url.chars().any(char::is_whitespace) {
                    Err(format!("it contains spaces; percent-encode them as %20 ({ACCEPTED_FORMS})"))
                } else {
                    Ok(UrlKind::Network)
                }
            }
            "file" => {
                if rest.is_empty() || rest == "/" {
                    Err("it names no directory; write it as file:///absolute/path".into())
                } else {
                    Ok(UrlKind::FileUrl)
                }
            }
            "ssh" | "git+ssh" | "ssh+git" => {
                Err(format!("ssh is not supported (Kraken fetches without credentials); {ACCEPTED_FORMS}"))
            }
            _ => Err(format!("the `{scheme}` scheme is not supported; {ACCEPTED_FORMS}")),
        };
    }
    // git reads `[user@]host:path` (a colon before any slash) as ssh.
    if let Some(colon) = url.find(':') {
        if !url[..colon].contains('/') {
            return Err(format!(
                "it looks like an ssh address (host:path), and ssh is not supported; {ACCEPTED_FORMS} \
                 (write a local directory with a colon in its name as ./{url})"
            ));
        }
    }
    Ok(UrlKind::LocalPath)
}

/// Whether `url` names something on this machine (a `file://` URL or a
/// path) rather than a network location. Decided from the text alone.
pub fn is_local(url: &str) -> bool {
    matches!(classify(url), Ok(UrlKind::FileUrl | UrlKind::LocalPath))
}

/// Refuses a local source (a path or `file://` URL) unless `allow_local`,
/// without touching the disk, so the answer never tells whether a path
/// exists on this machine.
///
/// # Errors
/// [`SourceError::LocalRefused`] for a local source that is not allowed.
pub fn check_allowed(url: &str, allow_local: bool) -> Result<(), SourceError> {
    if !allow_local && is_local(url) {
        return Err(SourceError::LocalRefused { url: url.to_string() });
    }
    Ok(())
}

/// Checks the form of `url` from its text alone: a network URL Kraken can
/// fetch, a `file://` URL or a path; the part of [`validate_url`] that
/// touches neither the disk nor the network.
///
/// # Errors
/// [`SourceError::InvalidUrl`] for a form Kraken does not fetch (ssh, other
/// schemes, empty, option-like text).
pub fn check_url(url: &str) -> Result<(), SourceError> {
    classify_url(url).map(|_| ())
}

fn classify_url(url: &str) -> Result<UrlKind, SourceError> {
    classify(url).map_err(|reason| SourceError::InvalidUrl { url: url.to_string(), reason })
}

/// Checks that `url` is a URL or path Kraken can fetch, without contacting it
/// (a local path must exist as a directory).
///
/// Returns the location to hand to git: the URL as written, or the absolute
/// form of a local path.
///
/// # Errors
/// [`SourceError::InvalidUrl`] for a form Kraken does not fetch (ssh, other
/// schemes, empty, option-like text), [`SourceError::RepositoryNotFound`] for
/// a local path that is not an existing directory.
pub fn validate_url(url: &str) -> Result<String, SourceError> {
    let invalid = |reason: String| SourceError::InvalidUrl { url: url.to_string(), reason };
    match classify_url(url)? {
        UrlKind::Network | UrlKind::FileUrl => Ok(url.to_string()),
        UrlKind::LocalPath => {
            let path = Path::new(url);
            let absolute = path.canonicalize().map_err(|e| SourceError::RepositoryNotFound {
                url: url.to_string(),
                detail: format!("the local path cannot be opened ({e}); give an existing directory"),
            })?;
            if !absolute.is_dir() {
                return Err(SourceError::RepositoryNotFound {
                    url: url.to_string(),
                    detail: "the local path is not a directory; give the directory of a git repository"
                        .into(),
                });
            }
            absolute.into_os_string().into_string().map_err(|_| {
                invalid(
                    "the directory's absolute path is not UTF-8; move the repository to a UTF-8 path".into(),
                )
            })
        }
    }
}

/// Checks that `branch` is a valid git branch name (git's ref-name rules,
/// plus: not starting with `-`, not `HEAD`).
///
/// # Errors
/// [`SourceError::InvalidBranch`] saying what is wrong.
pub fn validate_branch(branch: &str) -> Result<(), SourceError> {
    let invalid =
        |reason: &str| Err(SourceError::InvalidBranch { branch: branch.to_string(), reason: reason.into() });
    if branch.trim().is_empty() {
        return invalid("it is empty; give a branch name such as `main`");
    }
    if branch.chars().any(char::is_control) {
        return invalid("it contains control characters");
    }
    if branch.starts_with('-') {
        return invalid("it starts with `-`");
    }
    if branch == "HEAD" {
        return invalid("`HEAD` is not a branch; name the branch itself, such as `main`");
    }
    if branch.starts_with("refs/") {
        return invalid("give the short branch name (`main`), not a ref (`refs/heads/main`)");
    }
    if !Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return invalid(
            "git does not allow it (no spaces, `..`, `~`, `^`, `:`, `?`, `*`, `[`, `\\`, `@{`, \
             no `/` at either end or doubled, no part starting with `.` or ending in `.lock`)",
        );
    }
    Ok(())
}

/// Clones `branch` of `url` into `dest` (which must not exist or be empty) and
/// reads its manifest. Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// A [`SourceError`] saying what was wrong. On error nothing that was written
/// in `dest` is left behind.
pub fn fetch(url: &str, branch: &str, dest: &Path, limits: FetchLimits) -> Result<Checkout, SourceError> {
    fetch_inner(url, branch, None, dest, limits, &|| {})
}

/// [`fetch`] (`commit: None`) or [`fetch_commit`], calling `progress` whenever
/// data arrives or files are written, so a watcher can tell a fetch that
/// makes progress from one that hangs. Blocking.
///
/// # Errors
/// As [`fetch`] and [`fetch_commit`].
pub fn fetch_reporting(
    url: &str,
    branch: &str,
    commit: Option<&str>,
    dest: &Path,
    limits: FetchLimits,
    progress: &dyn Fn(),
) -> Result<Checkout, SourceError> {
    let want = match commit {
        None => None,
        Some(c) => Some(parse_commit(c)?),
    };
    fetch_inner(url, branch, want, dest, limits, progress)
}

fn parse_commit(commit: &str) -> Result<Oid, SourceError> {
    let invalid = || SourceError::InvalidCommit { commit: commit.to_string() };
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    Oid::from_str(commit).map_err(|_| invalid())
}

/// Clones `branch` of `url` into `dest` (which must not exist or be empty) and
/// checks out `commit`, which must be the branch's newest commit or one of its
/// ancestors; reads its manifest. This is how a build uses exactly the commit
/// that was validated earlier. Blocking: call it from `spawn_blocking`.
///
/// The branch is fetched shallowly when `commit` is its newest commit, and
/// with its history otherwise.
///
/// # Errors
/// [`SourceError::InvalidCommit`] if `commit` is not a full hex id,
/// [`SourceError::CommitNotOnBranch`] if the branch no longer holds it, and
/// the errors of [`fetch`]. On error nothing that was written in `dest` is
/// left behind.
pub fn fetch_commit(
    url: &str,
    branch: &str,
    commit: &str,
    dest: &Path,
    limits: FetchLimits,
) -> Result<Checkout, SourceError> {
    let oid = parse_commit(commit)?;
    fetch_inner(url, branch, Some(oid), dest, limits, &|| {})
}

/// The newest commit of `branch` at `url`, without cloning (a remote listing).
/// Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// A [`SourceError`] saying what was wrong.
pub fn latest_commit(url: &str, branch: &str) -> Result<String, SourceError> {
    let location = validate_url(url)?;
    validate_branch(branch)?;
    let git_err = |source| SourceError::Git { url: url.to_string(), source };
    let mut remote = Remote::create_detached(location.as_str()).map_err(git_err)?;
    let heads = list_heads(&mut remote, url)?;
    branch_tip(&heads, url, branch).map(|oid| oid.to_string())
}

/// The branches of the repository at `url` with their newest commits, sorted
/// by name, without cloning. Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// A [`SourceError`] saying what was wrong.
pub fn list_branches(url: &str) -> Result<Vec<(String, String)>, SourceError> {
    let location = validate_url(url)?;
    let git_err = |source| SourceError::Git { url: url.to_string(), source };
    let mut remote = Remote::create_detached(location.as_str()).map_err(git_err)?;
    let heads = list_heads(&mut remote, url)?;
    Ok(heads.into_iter().map(|(name, oid)| (name, oid.to_string())).collect())
}

/// Connects to `remote` and lists its branches (`refs/heads/*`) with their
/// commits, sorted by name. A failure to connect means no repository answered.
fn list_heads(remote: &mut Remote<'_>, url: &str) -> Result<Vec<(String, Oid)>, SourceError> {
    let connection = remote.connect_auth(Direction::Fetch, None, None).map_err(|e| {
        SourceError::RepositoryNotFound { url: url.to_string(), detail: e.message().to_string() }
    })?;
    let listed = connection.list().map_err(|source| SourceError::Git { url: url.to_string(), source })?;
    let mut heads = Vec::new();
    for head in listed {
        // `RemoteHead::name` panics on a name that is not UTF-8; such a
        // branch could not be asked for anyway, so it is skipped.
        let name = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| head.name().to_string())).ok();
        if let Some(short) = name.as_deref().and_then(|n| n.strip_prefix("refs/heads/")) {
            heads.push((short.to_string(), head.oid()));
        }
    }
    heads.sort();
    Ok(heads)
}

/// The commit of `branch` among `heads`, or [`SourceError::BranchNotFound`].
fn branch_tip(heads: &[(String, Oid)], url: &str, branch: &str) -> Result<Oid, SourceError> {
    heads.iter().find(|(name, _)| name == branch).map(|(_, oid)| *oid).ok_or_else(|| {
        let available = if heads.is_empty() {
            "none (the repository has no branches yet)".to_string()
        } else {
            heads.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ")
        };
        SourceError::BranchNotFound { url: url.to_string(), branch: branch.to_string(), available }
    })
}

/// Removes what a fetch wrote in its destination unless it is disarmed.
struct DestGuard<'a> {
    /// The destination directory.
    dest: &'a Path,
    /// Whether the directory itself was created by the fetch (then it is
    /// removed whole; otherwise only its contents are).
    created: bool,
    /// Whether to clean up when dropped.
    armed: bool,
}

impl<'a> DestGuard<'a> {
    /// Prepares `dest`: creates it, or accepts it if it is an empty directory.
    fn prepare(dest: &'a Path) -> Result<Self, SourceError> {
        let io_err = |source| SourceError::Io { path: dest.to_path_buf(), source };
        match std::fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(io_err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "the directory is not empty; a fetch needs a new or empty directory",
                    )));
                }
                Ok(Self { dest, created: false, armed: true })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dest).map_err(io_err)?;
                Ok(Self { dest, created: true, armed: true })
            }
            Err(e) => Err(io_err(e)),
        }
    }
}

impl Drop for DestGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let result = if self.created {
            std::fs::remove_dir_all(self.dest)
        } else {
            std::fs::read_dir(self.dest).and_then(|entries| {
                entries.into_iter().try_for_each(|entry| {
                    let path = entry?.path();
                    if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(path)
                    } else {
                        std::fs::remove_file(path)
                    }
                })
            })
        };
        if let Err(e) = result {
            tracing::warn!(dest = %self.dest.display(), error = %e, "could not remove a failed fetch");
        }
    }
}

/// Fetches `branch` of `url` into `dest` and checks out `want` (or the
/// branch's newest commit).
fn fetch_inner(
    url: &str,
    branch: &str,
    want: Option<Oid>,
    dest: &Path,
    limits: FetchLimits,
    progress: &dyn Fn(),
) -> Result<Checkout, SourceError> {
    let location = validate_url(url)?;
    validate_branch(branch)?;
    let mut guard = DestGuard::prepare(dest)?;
    let checkout = clone_into(url, &location, branch, want, dest, limits, progress)?;
    guard.armed = false;
    Ok(checkout)
}

/// The body of a fetch, into the prepared directory `dest`.
fn clone_into(
    url: &str,
    location: &str,
    branch: &str,
    want: Option<Oid>,
    dest: &Path,
    limits: FetchLimits,
    progress: &dyn Fn(),
) -> Result<Checkout, SourceError> {
    let git_err = |source| SourceError::Git { url: url.to_string(), source };
    let repo = Repository::init(dest).map_err(git_err)?;
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    let mut remote = repo.remote_with_fetch("origin", location, &refspec).map_err(git_err)?;

    let tip = branch_tip(&list_heads(&mut remote, url)?, url, branch)?;
    let shallow = want.is_none_or(|w| w == tip);

    progress();
    let received = match fetch_refspec(&mut remote, &refspec, shallow, url, limits, progress) {
        Err(FetchFailure::Git(e)) if shallow && shallow_refused(&e) => {
            tracing::debug!(%url, error = %e, "shallow fetch refused; fetching the whole branch");
            fetch_refspec(&mut remote, &refspec, false, url, limits, progress)
        }
        other => other,
    }
    .map_err(|failure| match failure {
        FetchFailure::TooLarge => {
            SourceError::TooLarge { url: url.to_string(), limit_bytes: limits.max_bytes }
        }
        FetchFailure::Git(e) => git_err(e),
    })?;

    let fetched = repo
        .find_reference(&format!("refs/remotes/origin/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .map_err(git_err)?;
    let commit = match want {
        None => fetched,
        Some(w) if w == fetched.id() => fetched,
        Some(w) => {
            let on_branch =
                repo.find_commit(w).is_ok() && repo.graph_descendant_of(fetched.id(), w).unwrap_or(false);
            if !on_branch {
                return Err(SourceError::CommitNotOnBranch {
                    url: url.to_string(),
                    branch: branch.to_string(),
                    commit: w.to_string(),
                    tip: fetched.id().to_string(),
                });
            }
            repo.find_commit(w).map_err(git_err)?
        }
    };
    let tree = commit.tree().map_err(git_err)?;

    let no_manifest = || SourceError::NoManifest { url: url.to_string(), branch: branch.to_string() };
    let entry = tree.get_name(MANIFEST_FILE).ok_or_else(no_manifest)?;
    if entry.kind() != Some(ObjectType::Blob) {
        return Err(no_manifest());
    }
    let blob = repo.find_blob(entry.id()).map_err(git_err)?;
    if blob.size() as u64 > MAX_MANIFEST_BYTES {
        return Err(SourceError::ManifestTooLarge { url: url.to_string(), branch: branch.to_string() });
    }
    let manifest_text = String::from_utf8(blob.content().to_vec())
        .map_err(|_| SourceError::ManifestNotUtf8 { url: url.to_string(), branch: branch.to_string() })?;

    // The download and the files it checks out count against one limit.
    let room = limits.max_bytes.saturating_sub(received);
    if tree_size(&repo, &tree, room).map_err(git_err)? > room {
        return Err(SourceError::TooLarge { url: url.to_string(), limit_bytes: limits.max_bytes });
    }

    let mut checkout = CheckoutBuilder::new();
    checkout.force().progress(|_, _, _| progress());
    repo.checkout_tree(commit.as_object(), Some(&mut checkout)).map_err(git_err)?;
    repo.branch(branch, &commit, true).map_err(git_err)?;
    repo.set_head(&format!("refs/heads/{branch}")).map_err(git_err)?;

    Ok(Checkout { dir: dest.to_path_buf(), commit: commit.id().to_string(), manifest_text })
}

/// Why one fetch attempt failed.
enum FetchFailure {
    /// The download went over the size limit and was stopped.
    TooLarge,
    /// git failed.
    Git(git2::Error),
}

/// Whether `e` says the transport refused a shallow fetch.
fn shallow_refused(e: &git2::Error) -> bool {
    e.raw_code() == GIT_ENOTSUPPORTED || e.message().contains("shallow")
}

/// Fetches `refspec` from `remote`, at depth 1 if `shallow`, stopping the
/// transfer when it goes over `limits.max_bytes`; returns the bytes received.
fn fetch_refspec(
    remote: &mut Remote<'_>,
    refspec: &str,
    shallow: bool,
    url: &str,
    limits: FetchLimits,
    progress: &dyn Fn(),
) -> Result<u64, FetchFailure> {
    let over_limit = Cell::new(false);
    let received = Cell::new(0u64);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(|stats| {
        progress();
        received.set(stats.received_bytes() as u64);
        if stats.received_bytes() as u64 > limits.max_bytes {
            over_limit.set(true);
            return false;
        }
        true
    });
    callbacks.sideband_progress(|_| {
        progress();
        true
    });
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks).download_tags(git2::AutotagOption::None);
    if shallow {
        options.depth(1);
    }
    let result = remote.fetch(&[refspec], Some(&mut options), None);
    if over_limit.get() {
        return Err(FetchFailure::TooLarge);
    }
    result.map_err(|e| {
        tracing::debug!(%url, error = %e, "fetch failed");
        FetchFailure::Git(e)
    })?;
    Ok(received.get())
}

/// The total size of the blobs in `tree` (recursively), stopping early once it
/// is over `limit`.
fn tree_size(repo: &Repository, tree: &git2::Tree<'_>, limit: u64) -> Result<u64, git2::Error> {
    let odb = repo.odb()?;
    let mut total: u64 = 0;
    let mut failure = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        match odb.read_header(entry.id()) {
            Ok((size, _)) => {
                total = total.saturating_add(size as u64);
                if total > limit {
                    return git2::TreeWalkResult::Abort;
                }
                git2::TreeWalkResult::Ok
            }
            Err(e) => {
                failure = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    })
    .or_else(|e| if total > limit || failure.is_some() { Ok(()) } else { Err(e) })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_and_file_urls_are_accepted() {
        for url in [
            "https://example.com/team/app.git",
            "HTTPS://example.com/app",
            "http://192.168.1.10:8080/app.git",
            "git://127.0.0.1:9418/app",
            "file:///srv/git/app",
        ] {
            assert!(matches!(classify(url), Ok(UrlKind::Network | UrlKind::FileUrl)), "{url}");
        }
        assert_eq!(classify("file:///srv/git/app"), Ok(UrlKind::FileUrl));
        assert_eq!(classify("git://host/app"), Ok(UrlKind::Network));
    }

    #[test]
    fn paths_are_local() {
        for url in ["/srv/git/app", "./app", "../app", "app", "repos/app", "./dir:with-colon"] {
            assert_eq!(classify(url), Ok(UrlKind::LocalPath), "{url}");
        }
    }

    #[test]
    fn ssh_and_other_forms_are_refused_with_what_works() {
        for url in [
            "ssh://git@example.com/app.git",
            "git+ssh://example.com/app",
            "git@example.com:team/app.git",
            "example.com:app",
            "ftp://example.com/app",
            "ext::sh -c touch% /tmp/x",
            "",
            "   ",
            "\t",
            "-uhttps://example.com/app",
            "--upload-pack=touch /tmp/x",
            " https://example.com/app",
            "https://",
            "https:///path",
            "file://",
            "https://exa mple.com/app",
            "https://example.com/a\nb",
        ] {
            let reason = classify(url).expect_err(url);
            assert!(!reason.is_empty(), "{url}");
        }
        let reason = classify("git@example.com:team/app.git").expect_err("scp form");
        assert!(reason.contains("ssh") && reason.contains("https://"), "{reason}");
        let reason = classify("").expect_err("empty");
        assert!(reason.contains("file://"), "{reason}");
        let reason = classify("ftp://example.com/app").expect_err("ftp");
        assert!(reason.contains("`ftp`"), "{reason}");
    }

    #[test]
    fn local_sources_are_refused_unless_allowed_without_looking_at_the_disk() {
        for url in ["/etc", "/does/not/exist", "./repo", "file:///srv/git/app", "FILE:///x"] {
            let err = check_allowed(url, false).expect_err(url);
            assert!(matches!(err, SourceError::LocalRefused { .. }), "{url}: {err}");
            assert!(err.to_string().contains("--allow-local-sources"), "{err}");
            assert!(check_allowed(url, true).is_ok(), "{url}");
        }
        // The same answer whether the path exists or not.
        assert_eq!(
            check_allowed("/etc", false).expect_err("refused").to_string().replace("/etc", "P"),
            check_allowed("/nope", false).expect_err("refused").to_string().replace("/nope", "P")
        );
        for url in ["https://example.com/app.git", "git://127.0.0.1/app", "http://10.0.0.1/a"] {
            assert!(check_allowed(url, false).is_ok(), "{url}");
        }
    }

    #[test]
    fn validate_url_resolves_local_paths_and_refuses_missing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let resolved =
            validate_url(dir.path().to_str().expect("utf-8 temp path")).expect("existing directory");
        assert!(Path::new(&resolved).is_absolute());
        let missing = dir.path().join("nope");
        let err = validate_url(missing.to_str().expect("utf-8")).expect_err("missing directory");
        assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
        let err = validate_url("ssh://host/app").expect_err("ssh");
        assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err}");
        assert_eq!(validate_url("https://example.com/app").expect("https"), "https://example.com/app");
    }

    #[test]
    fn branch_names_follow_git_rules() {
        for ok in ["main", "feature/login", "release-1.2", "v2_fix"] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "-x",
            "HEAD",
            "a..b",
            "a b",
            "a~1",
            "x:y",
            "end.lock",
            "/lead",
            "trail/",
            "a//b",
            "refs/heads/main",
            "nul\0",
            "ask?",
        ] {
            assert!(matches!(validate_branch(bad), Err(SourceError::InvalidBranch { .. })), "{bad:?}");
        }
    }

    #[test]
    fn missing_branch_lists_the_available_ones() {
        let heads = vec![("dev".to_string(), Oid::zero()), ("main".to_string(), Oid::zero())];
        match branch_tip(&heads, "u", "prod") {
            Err(SourceError::BranchNotFound { available, .. }) => assert_eq!(available, "dev, main"),
            other => panic!("expected BranchNotFound, got {other:?}"),
        }
        match branch_tip(&[], "u", "main") {
            Err(SourceError::BranchNotFound { available, .. }) => assert!(available.contains("none")),
            other => panic!("expected BranchNotFound, got {other:?}"),
        }
    }

    #[test]
    fn tree_size_sums_blobs_recursively_and_stops_over_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(dir.path()).expect("init");
        let small = repo.blob(&[b'a'; 100]).expect("blob");
        let large = repo.blob(&[b'b'; 1000]).expect("blob");
        let mut sub = repo.treebuilder(None).expect("treebuilder");
        sub.insert("large.bin", large, 0o100644).expect("insert");
        let sub = sub.write().expect("write subtree");
        let mut root = repo.treebuilder(None).expect("treebuilder");
        root.insert("small.txt", small, 0o100644).expect("insert");
        root.insert("dir", sub, 0o040000).expect("insert");
        let tree = repo.find_tree(root.write().expect("write tree")).expect("tree");

        assert_eq!(tree_size(&repo, &tree, u64::MAX).expect("size"), 1100);
        assert!(tree_size(&repo, &tree, 500).expect("size over limit") > 500);
        assert_eq!(tree_size(&repo, &tree, 1100).expect("size at limit"), 1100);
    }
}
