//! The `Executor` trait: one role of an agent (orchestrating, working, …) as a
//! loop the node runner drives.
//!
//! The runner calls [`Executor::setup`] once, then [`Executor::execute`] again
//! and again until the node stops. `execute` waits for its own events with a
//! deadline and returns soon after handling one; long work (a clone, a build)
//! runs in a task of its own and reports back through a channel. Failures are
//! enums the runner acts on: retry setup with back-off, back off after a
//! transient failure, or stop the node.

use std::fmt;

use crate::node::GenericNode;

/// The error that caused a failure: any error type, kept so that a caller can
/// [`downcast_ref`](std::error::Error) it to what went wrong.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `": cause"` for a message, or nothing.
fn because(source: &Option<Cause>) -> String {
    source.as_ref().map(|s| format!(": {s}")).unwrap_or_default()
}

/// Why an executor could not start.
///
/// Each variant says what failed (`what`) and, when another error caused
/// it, keeps that error as its [`source`](std::error::Error::source):
///
/// ```
/// use kraken_lib::executor::SetupFailure;
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let failure = SetupFailure::retry("cannot reach the broker").caused_by(io);
/// assert_eq!(failure.to_string(), "not ready yet: cannot reach the broker: refused");
/// let source = std::error::Error::source(&failure).and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert_eq!(source.map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupFailure {
    /// Something it needs is not there yet (a broker, a daemon); the runner
    /// retries setup with back-off.
    #[error("not ready yet: {what}{}", because(.source))]
    Retry {
        /// What is not ready.
        what: String,
        /// The error that caused it, if one did.
        #[source]
        source: Option<Cause>,
    },
    /// It can never start with this configuration; the node stops.
    #[error("cannot start: {what}{}", because(.source))]
    Fatal {
        /// What is wrong.
        what: String,
        /// The error that caused it, if one did.
        #[source]
        source: Option<Cause>,
    },
}

impl SetupFailure {
    /// Setup is to be tried again: `what` is not ready.
    pub fn retry(what: impl Into<String>) -> Self {
        Self::Retry { what: what.into(), source: None }
    }

    /// Setup can never succeed: `what` is wrong.
    pub fn fatal(what: impl Into<String>) -> Self {
        Self::Fatal { what: what.into(), source: None }
    }

    /// The same failure, caused by `source`.
    #[must_use]
    pub fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            Self::Retry { source, .. } | Self::Fatal { source, .. } => *source = Some(cause.into()),
        }
        self
    }

    /// What failed, and its cause, in one line (without the variant's words).
    pub fn reason(&self) -> String {
        match self {
            Self::Retry { what, source } | Self::Fatal { what, source } => {
                format!("{what}{}", because(source))
            }
        }
    }
}

/// Why one round of an executor failed.
///
/// As with [`SetupFailure`], `what` says what failed and the error that
/// caused it, if any, is the [`source`](std::error::Error::source):
///
/// ```
/// use kraken_lib::executor::ExecutionFailure;
///
/// let failure = ExecutionFailure::reset("the work queue closed");
/// assert!(matches!(failure, ExecutionFailure::Reset { .. }));
/// assert_eq!(failure.reason(), "the work queue closed");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutionFailure {
    /// A passing failure (a lost connection, a busy engine); the runner
    /// backs off briefly and calls `execute` again.
    #[error("transient failure: {what}{}", because(.source))]
    Transient {
        /// What failed.
        what: String,
        /// The error that caused it, if one did.
        #[source]
        source: Option<Cause>,
    },
    /// The executor must be set up again (its subscriptions were lost).
    #[error("needs setting up again: {what}{}", because(.source))]
    Reset {
        /// What was lost.
        what: String,
        /// The error that caused it, if one did.
        #[source]
        source: Option<Cause>,
    },
    /// The executor is done; the others go on.
    #[error("finished: {what}{}", because(.source))]
    Finished {
        /// Why it is done.
        what: String,
        /// The error that ended it, if one did.
        #[source]
        source: Option<Cause>,
    },
    /// The node cannot go on; the runner stops every executor.
    #[error("fatal: {what}{}", because(.source))]
    Fatal {
        /// What failed.
        what: String,
        /// The error that caused it, if one did.
        #[source]
        source: Option<Cause>,
    },
}

impl ExecutionFailure {
    /// A passing failure: `what` failed this round.
    pub fn transient(what: impl Into<String>) -> Self {
        Self::Transient { what: what.into(), source: None }
    }

    /// The executor needs setting up again: `what` was lost.
    pub fn reset(what: impl Into<String>) -> Self {
        Self::Reset { what: what.into(), source: None }
    }

    /// The executor is done, because of `what`.
    pub fn finished(what: impl Into<String>) -> Self {
        Self::Finished { what: what.into(), source: None }
    }

    /// The node cannot go on: `what` failed.
    pub fn fatal(what: impl Into<String>) -> Self {
        Self::Fatal { what: what.into(), source: None }
    }

    /// The same failure, caused by `source`.
    #[must_use]
    pub fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            Self::Transient { source, .. }
            | Self::Reset { source, .. }
            | Self::Finished { source, .. }
            | Self::Fatal { source, .. } => *source = Some(cause.into()),
        }
        self
    }

    /// What failed, and its cause, in one line (without the variant's words).
    pub fn reason(&self) -> String {
        match self {
            Self::Transient { what, source }
            | Self::Reset { what, source }
            | Self::Finished { what, source }
            | Self::Fatal { what, source } => format!("{what}{}", because(source)),
        }
    }
}

/// One role of an agent, driven by the node runner.
#[async_trait::async_trait]
pub trait Executor: Send {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Prepares the executor (subscriptions, loading state). Called once, and
    /// again after [`ExecutionFailure::Reset`].
    async fn setup(&mut self, node: &mut GenericNode) -> Result<(), SetupFailure>;

    /// Handles what is pending, waiting for it at most a short deadline.
    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure>;

    /// Called once when the node stops, to let go of resources.
    async fn teardown(&mut self, node: &mut GenericNode) {
        let _ = node;
    }
}

impl fmt::Debug for dyn Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Executor({})", self.name())
    }
}
