//! Why reading a repository failed.

use crate::builder::BuildError;
use crate::fetcher::FetchError;
use crate::shipwreck::ShipwreckError;

/// Why reading a repository failed. Each message says what to change; none
/// names a path of this machine beyond what was given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetrieveError {
    /// Too many repositories are being fetched; asking again later may succeed.
    #[error("{source}")]
    Busy {
        /// The fetch queue's refusal.
        #[source]
        source: FetchError,
    },
    /// The repository could not be fetched (not found, no such branch, no
    /// manifest, too large, too slow, a local source not allowed, …).
    #[error("{source}")]
    Fetch {
        /// What the fetch said.
        #[source]
        source: FetchError,
    },
    /// `shipwreck.toml` is not valid.
    #[error("{message}")]
    Manifest {
        /// The manifest's error, this machine's paths hidden.
        message: String,
        /// The manifest's error.
        #[source]
        source: ShipwreckError,
    },
    /// No build plan could be made for the app.
    #[error("could not prepare the build: {message}")]
    Plan {
        /// The builder's error, this machine's paths hidden.
        message: String,
        /// The builder's error.
        #[source]
        source: BuildError,
    },
    /// This machine could not make a directory for the checkout.
    #[error("this machine cannot make a directory for the checkout ({source}); its log has the details")]
    Workspace {
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The task reading the checkout ended without an answer.
    #[error("reading the checkout failed: {source}")]
    Task {
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl RetrieveError {
    /// Whether the fetch was refused only because too many were under way
    /// (asking again later may succeed).
    pub fn is_busy(&self) -> bool {
        matches!(self, RetrieveError::Busy { .. })
    }
}
