//! The git work: cloning one branch (or one commit of it) shallowly where
//! the transport allows, within the size limit, listing branches, and
//! removing whatever a failed fetch wrote.

use super::*;

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

pub(super) fn parse_commit(commit: &str) -> Result<Oid, SourceError> {
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
pub(super) fn list_heads(remote: &mut Remote<'_>, url: &str) -> Result<Vec<(String, Oid)>, SourceError> {
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
pub(super) fn branch_tip(heads: &[(String, Oid)], url: &str, branch: &str) -> Result<Oid, SourceError> {
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
pub(super) struct DestGuard<'a> {
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
pub(super) fn fetch_inner(
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
pub(super) fn clone_into(
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
pub(super) enum FetchFailure {
    /// The download went over the size limit and was stopped.
    TooLarge,
    /// git failed.
    Git(git2::Error),
}

/// Whether `e` says the transport refused a shallow fetch.
pub(super) fn shallow_refused(e: &git2::Error) -> bool {
    e.raw_code() == GIT_ENOTSUPPORTED || e.message().contains("shallow")
}

/// Fetches `refspec` from `remote`, at depth 1 if `shallow`, stopping the
/// transfer when it goes over `limits.max_bytes`; returns the bytes received.
pub(super) fn fetch_refspec(
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
pub(super) fn tree_size(repo: &Repository, tree: &git2::Tree<'_>, limit: u64) -> Result<u64, git2::Error> {
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
