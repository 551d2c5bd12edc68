//! Checking a source from its text: which URL forms Kraken fetches, whether
//! a source is local, and git's rules for branch names.

use super::*;

/// The kind of location a URL names, as far as the text alone tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum UrlKind {
    /// A network URL (`https`, `http` or `git`), handed to git as written.
    Network,
    /// A `file://` URL, handed to git as written.
    FileUrl,
    /// A local path, absolute or relative.
    LocalPath,
}

/// Classifies `url` without touching the disk or the network; `Err` holds the
/// reason it is refused.
pub(super) fn classify(url: &str) -> Result<UrlKind, String> {
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

pub(super) fn classify_url(url: &str) -> Result<UrlKind, SourceError> {
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
    let full = format!("refs/heads/{branch}");
    if gix_validate::reference::branch_name(full.as_bytes().into()).is_err() {
        return invalid(
            "git does not allow it (no spaces, `..`, `~`, `^`, `:`, `?`, `*`, `[`, `\\`, `@{`, \
             no `/` at either end or doubled, no part starting with `.` or ending in `.lock`)",
        );
    }
    Ok(())
}
