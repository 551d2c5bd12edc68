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

/// Why an executor could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupFailure {
    /// Something it needs is not there yet (a broker, a daemon); the runner
    /// retries setup with back-off.
    #[error("not ready yet: {0}")]
    Retry(String),
    /// It can never start with this configuration; the node stops.
    #[error("cannot start: {0}")]
    Fatal(String),
}

/// Why one round of an executor failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutionFailure {
    /// A passing failure (a lost connection, a busy engine); the runner backs
    /// off briefly and calls `execute` again.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The executor must be set up again (its subscriptions were lost).
    #[error("needs setting up again: {0}")]
    Reset(String),
    /// The executor is done; the others go on.
    #[error("finished: {0}")]
    Finished(String),
    /// The node cannot go on; the runner stops every executor.
    #[error("fatal: {0}")]
    Fatal(String),
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
