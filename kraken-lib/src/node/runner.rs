//! The node runner: each executor in a task of its own, set up again with a
//! back-off when it asks, until the node stops or one fails for good.

use super::*;

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// An executor could not be set up, and trying again would not help.
    #[error("executor {executor} failed: {}", .source.reason())]
    Setup {
        /// Its name.
        executor: String,
        /// The failure it returned.
        #[source]
        source: SetupFailure,
    },
    /// An executor failed fatally.
    #[error("executor {executor} failed: {}", .source.reason())]
    Executor {
        /// Its name.
        executor: String,
        /// The failure it returned.
        #[source]
        source: ExecutionFailure,
    },
    /// An executor's task ended without returning (it panicked or was
    /// cancelled).
    #[error("executor task ended abnormally: {source}")]
    Task {
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Composes executors into a running agent.
pub struct NodeRunner {
    node: GenericNode,
    executors: Vec<Box<dyn Executor>>,
}

impl std::fmt::Debug for NodeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRunner").field("node", &self.node).field("executors", &self.executors).finish()
    }
}

pub(super) const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(30);
pub(super) const TRANSIENT_BACKOFF: Duration = Duration::from_millis(250);

impl NodeRunner {
    /// A runner for `node` with no executors yet.
    pub fn new(node: GenericNode) -> Self {
        Self { node, executors: Vec::new() }
    }

    /// Adds an executor.
    pub fn with(mut self, executor: impl Executor + 'static) -> Self {
        self.executors.push(Box::new(executor));
        self
    }

    /// Adds a boxed executor.
    pub fn push(&mut self, executor: Box<dyn Executor>) {
        self.executors.push(executor);
    }

    /// The node the executors share.
    pub fn node(&self) -> &GenericNode {
        &self.node
    }

    /// Runs every executor until `shutdown` completes or one fails fatally.
    ///
    /// # Errors
    /// [`NodeError`] for a fatal failure of an executor (its failure as the
    /// source) or a task that ended abnormally.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let token = self.node.shutdown.clone();
        let mut tasks = JoinSet::new();
        for executor in self.executors {
            let node = self.node.clone();
            tasks.spawn(drive(executor, node));
        }
        tokio::pin!(shutdown);
        let mut result = Ok(());
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = token.cancelled() => break,
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        error!(error = %e, "stopping the node");
                        result = Err(e);
                        break;
                    }
                    Some(Err(join)) => {
                        error!(error = %join, "an executor task ended abnormally; stopping the node");
                        result = Err(NodeError::Task { source: join });
                        break;
                    }
                },
            }
        }
        token.cancel();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = tasks.join_next() => if joined.is_none() { break },
                () = &mut deadline => {
                    warn!("executors did not stop within 10 s; aborting them");
                    tasks.abort_all();
                    break;
                }
            }
        }
        result
    }
}

pub(super) async fn drive(mut executor: Box<dyn Executor>, mut node: GenericNode) -> Result<(), NodeError> {
    let name = executor.name().to_string();
    let token = node.shutdown.clone();
    'setup: loop {
        let mut backoff = crate::retry::Backoff::new(Duration::from_millis(250), SETUP_BACKOFF_MAX);
        loop {
            let attempt = tokio::select! {
                () = token.cancelled() => return Ok(()),
                r = executor.setup(&mut node) => r,
            };
            match attempt {
                Ok(()) => break,
                Err(why @ SetupFailure::Retry { .. }) => {
                    let pause = backoff.next_pause();
                    warn!(executor = %name, %why, retry_in = ?pause, "setup failed; retrying");
                    tokio::select! {
                        () = token.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(source) => return Err(NodeError::Setup { executor: name.clone(), source }),
            }
        }
        info!(executor = %name, node = %node.id, "started");
        loop {
            let round = tokio::select! {
                () = token.cancelled() => {
                    executor.teardown(&mut node).await;
                    return Ok(());
                }
                r = executor.execute(&mut node) => r,
            };
            match round {
                Ok(()) => {}
                Err(why @ ExecutionFailure::Transient { .. }) => {
                    warn!(executor = %name, %why, "transient failure");
                    tokio::select! {
                        () = token.cancelled() => {}
                        () = tokio::time::sleep(TRANSIENT_BACKOFF) => {}
                    }
                }
                Err(why @ ExecutionFailure::Reset { .. }) => {
                    warn!(executor = %name, %why, "setting up again");
                    continue 'setup;
                }
                Err(why @ ExecutionFailure::Finished { .. }) => {
                    info!(executor = %name, %why, "finished");
                    executor.teardown(&mut node).await;
                    return Ok(());
                }
                Err(source) => {
                    executor.teardown(&mut node).await;
                    return Err(NodeError::Executor { executor: name.clone(), source });
                }
            }
        }
    }
}
