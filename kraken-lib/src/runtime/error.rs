//! Why a runtime call failed: [`RuntimeError`], with the engine's own error
//! kept as its source, and the mapping from `bollard`'s errors to it.

use std::path::PathBuf;

/// Why a runtime call failed.
///
/// Each variant that wraps an error of the engine's client keeps it as its
/// [`source`](std::error::Error::source), so a caller can tell, say, a
/// conflict from a server error:
///
/// ```
/// use kraken_lib::runtime::RuntimeError;
///
/// fn retry_later(e: &RuntimeError) -> bool {
///     matches!(e, RuntimeError::Unavailable { .. })
/// }
/// # let _ = retry_later;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The Docker engine could not be reached.
    #[error(
        "cannot reach the Docker engine ({what}: {source}); is dockerd running and is its socket readable?"
    )]
    Unavailable {
        /// What was being done or asked for ("listing containers").
        what: String,
        /// The engine client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image build failed; the build log has the details.
    #[error("the image build failed: {0}")]
    BuildFailed(String),
    /// The container or image does not exist.
    #[error("{what} not found")]
    NotFound {
        /// The object asked for ("container 3f2a…").
        what: String,
        /// The engine client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine refused or failed a request.
    #[error("docker: {what}: {source}")]
    Engine {
        /// What was being done or asked for ("removing image kraken/web:d1-1").
        what: String,
        /// The engine client's error (with the engine's status and message).
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine answered, but not as it should have (no exit code, no
    /// image id, a port that is not published).
    #[error("docker: {0}")]
    Unexpected(String),
    /// A command ran longer than it was allowed to.
    #[error("{0}")]
    TimedOut(String),
    /// The build context could not be packed from the app's folder.
    #[error("i/o: packing the build context {}: {source}", dir.display())]
    BuildContext {
        /// The folder being packed.
        dir: PathBuf,
        /// The error reading it.
        #[source]
        source: std::io::Error,
    },
    /// A local I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Maps a bollard error to a [`RuntimeError`]; `what` names the object or the
/// action for the message ("container web-1", "creating container web-1").
pub(super) fn map_err(what: &str, err: bollard::errors::Error) -> RuntimeError {
    use bollard::errors::Error as E;
    let what = what.to_string();
    match err {
        E::DockerResponseServerError { status_code: 404, .. } => RuntimeError::NotFound { what, source: err },
        E::HyperResponseError { .. }
        | E::HyperLegacyError { .. }
        | E::IOError { .. }
        | E::SocketNotFoundError(_)
        | E::RequestTimeoutError => RuntimeError::Unavailable { what, source: err },
        _ => RuntimeError::Engine { what, source: err },
    }
}

/// Whether `err` is the engine saying "no such object".
pub(super) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Whether the engine refused because of the object's state (409), such as
/// a removal already under way.
pub(super) fn is_conflict(err: &bollard::errors::Error) -> bool {
    matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn engine_errors_map_to_runtime_errors_that_keep_their_source() {
        use bollard::errors::Error as E;
        let e =
            map_err("container x", E::DockerResponseServerError { status_code: 404, message: "no".into() });
        assert!(matches!(e, RuntimeError::NotFound { ref what, .. } if what == "container x"), "{e:?}");
        let e =
            map_err("image y", E::DockerResponseServerError { status_code: 409, message: "in use".into() });
        assert!(matches!(e, RuntimeError::Engine { ref what, .. } if what == "image y"), "{e:?}");
        assert!(e.to_string().contains("in use") && e.to_string().contains("image y"), "{e}");
        let source = e.source().and_then(|s| s.downcast_ref::<bollard::errors::Error>());
        assert!(
            matches!(source, Some(E::DockerResponseServerError { status_code: 409, .. })),
            "the engine's error is the source: {source:?}"
        );
        let e = map_err("ping", E::SocketNotFoundError("/var/run/docker.sock".into()));
        assert!(matches!(e, RuntimeError::Unavailable { .. }), "{e:?}");
        assert!(e.source().is_some());
        let e = map_err("ping", E::RequestTimeoutError);
        assert!(matches!(e, RuntimeError::Unavailable { .. }), "{e:?}");
    }
}
