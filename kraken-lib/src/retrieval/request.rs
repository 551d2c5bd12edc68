//! Checking a deployment request's fields before anything is fetched.

use crate::source::{self, SourceError};

/// The longest git URL a request may give.
pub const MAX_URL_CHARS: usize = 2048;
/// The longest branch name a request may give.
pub const MAX_BRANCH_CHARS: usize = 255;

/// What is wrong with a deployment request's URL or branch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No URL was given.
    #[error("the git URL is empty; give an https://, http:// or git:// URL")]
    EmptyUrl,
    /// The URL is longer than [`MAX_URL_CHARS`].
    #[error("the git URL is longer than {MAX_URL_CHARS} characters")]
    UrlTooLong,
    /// No branch was given.
    #[error("the branch is empty; give a branch name such as main")]
    EmptyBranch,
    /// The branch name is longer than [`MAX_BRANCH_CHARS`].
    #[error("the branch name is longer than {MAX_BRANCH_CHARS} characters")]
    BranchTooLong,
    /// The source's own checks refused the URL or the branch: a form Kraken
    /// does not fetch, a local source that is not allowed, or a branch name
    /// git does not allow.
    #[error("{0}")]
    Source(#[from] SourceError),
}

/// Checks a deployment request's fields before anything is fetched, from
/// their text alone (nothing on the disk or the network is looked at): the
/// URL's form and the branch name through [`source::check_url`] and
/// [`source::validate_branch`]; local sources (paths, `file://`) only when
/// `allow_local`. Spaces around either field are ignored, as the API trims
/// them.
///
/// # Errors
/// [`RequestError`] saying what is wrong and what would be right.
///
/// # Examples
///
/// ```
/// use kraken_lib::retrieval::{check_request, RequestError};
///
/// assert!(check_request("https://example.org/app.git", "main", false).is_ok());
/// let refused = check_request("/srv/app", "main", false).unwrap_err();
/// assert!(refused.to_string().contains("--allow-local-sources"));
/// assert!(matches!(check_request("https://example.org/app.git", " ", false), Err(RequestError::EmptyBranch)));
/// ```
pub fn check_request(url: &str, branch: &str, allow_local: bool) -> Result<(), RequestError> {
    let (url, branch) = (url.trim(), branch.trim());
    if url.is_empty() {
        return Err(RequestError::EmptyUrl);
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(RequestError::UrlTooLong);
    }
    source::check_allowed(url, allow_local)?;
    source::check_url(url)?;
    if branch.is_empty() {
        return Err(RequestError::EmptyBranch);
    }
    if branch.chars().count() > MAX_BRANCH_CHARS {
        return Err(RequestError::BranchTooLong);
    }
    // The source's own check refuses control characters (a NUL would make
    // git's name check panic) before asking git.
    Ok(source::validate_branch(branch)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(url: &str, branch: &str, allow_local: bool) -> String {
        check_request(url, branch, allow_local).expect_err("refused").to_string()
    }

    #[test]
    fn requests_are_checked_before_fetching() {
        assert!(check_request("https://example.org/app.git", "main", false).is_ok());
        assert!(check_request(" https://example.org/app.git ", " main ", false).is_ok());
        assert!(check_request("/srv/app", "main", true).is_ok());
        assert!(refusal("", "main", false).contains("the git URL is empty"));
        assert!(refusal("/srv/app", "", true).contains("the branch is empty"));
        assert!(refusal("/srv/app", "bad..name", true).contains("not a valid branch"));
        assert!(refusal(&"x".repeat(3000), "main", false).contains("2048"));
        assert!(refusal("https://example.org/app.git", &"b".repeat(300), false).contains("255"));
        assert!(refusal("/srv/app", "main", false).contains("--allow-local-sources"));
        assert!(refusal("file:///srv/app", "main", false).contains("--allow-local-sources"));
    }

    #[test]
    fn forms_kraken_does_not_fetch_are_refused_before_fetching() {
        for url in ["ssh://git@example.org/app.git", "git@example.org:team/app.git", "--upload-pack=x"] {
            let e = check_request(url, "main", true).expect_err(url);
            assert!(matches!(e, RequestError::Source(SourceError::InvalidUrl { .. })), "{url}: {e:?}");
        }
        let e = check_request("https://example.org/app.git", "a\0b", false).expect_err("NUL");
        assert!(matches!(e, RequestError::Source(SourceError::InvalidBranch { .. })), "{e:?}");
    }
}
