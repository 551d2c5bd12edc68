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
    started_tx: tokio::sync::mpsc::UnboundedSender<Box<dyn Executor>>,
    started_rx: tokio::sync::mpsc::UnboundedReceiver<Box<dyn Executor>>,
}

/// Starts executors on a running node beside the ones it started with, each
/// in a task of its own (a node promoted to orchestrator starts its
/// orchestrator this way). Cheap to clone.
#[derive(Clone)]
pub struct ExecutorSpawner {
    tx: tokio::sync::mpsc::UnboundedSender<Box<dyn Executor>>,
}

impl std::fmt::Debug for ExecutorSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorSpawner").finish_non_exhaustive()
    }
}

impl ExecutorSpawner {
    /// Starts `executor`, already set up on this node: the runner goes on
    /// with its rounds, and sets it up again only if it asks to be.
    ///
    /// # Errors
    /// The executor back, when the node's runner has stopped.
    pub fn start_set_up(&self, executor: Box<dyn Executor>) -> Result<(), Box<dyn Executor>> {
        self.tx.send(executor).map_err(|e| e.0)
    }
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
        let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel();
        Self { node, executors: Vec::new(), started_tx, started_rx }
    }

    /// A handle that starts executors on this node once it runs.
    pub fn spawner(&self) -> ExecutorSpawner {
        ExecutorSpawner { tx: self.started_tx.clone() }
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
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let token = self.node.shutdown.clone();
        let mut tasks = JoinSet::new();
        for executor in std::mem::take(&mut self.executors) {
            let node = self.node.clone();
            tasks.spawn(drive(executor, node, false));
        }
        tokio::pin!(shutdown);
        let mut result = Ok(());
        loop {
            tokio::select! {
                // First: an executor started by one that then finished is
                // running before that one's end is looked at.
                biased;
                Some(executor) = self.started_rx.recv() => {
                    tasks.spawn(drive(executor, self.node.clone(), true));
                }
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

pub(super) async fn drive(
    mut executor: Box<dyn Executor>,
    mut node: GenericNode,
    mut set_up: bool,
) -> Result<(), NodeError> {
    let name = executor.name().to_string();
    let token = node.shutdown.clone();
    'setup: loop {
        if std::mem::take(&mut set_up) {
            info!(executor = %name, node = %node.id, "started (set up already)");
        } else {
            if !set_up_once(&mut *executor, &mut node, &name).await? {
                return Ok(());
            }
            info!(executor = %name, node = %node.id, "started");
        }
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

/// Sets `executor` up, trying again with a back-off while it asks to; false
/// when the node stopped meanwhile.
async fn set_up_once(
    executor: &mut dyn Executor,
    node: &mut GenericNode,
    name: &str,
) -> Result<bool, NodeError> {
    let token = node.shutdown.clone();
    let mut backoff = crate::retry::Backoff::new(Duration::from_millis(250), SETUP_BACKOFF_MAX);
    loop {
        let attempt = tokio::select! {
            () = token.cancelled() => return Ok(false),
            r = executor.setup(node) => r,
        };
        match attempt {
            Ok(()) => return Ok(true),
            Err(why @ SetupFailure::Retry { .. }) => {
                let pause = backoff.next_pause();
                warn!(executor = %name, %why, retry_in = ?pause, "setup failed; retrying");
                tokio::select! {
                    () = token.cancelled() => return Ok(false),
                    () = tokio::time::sleep(pause) => {}
                }
            }
            Err(source) => return Err(NodeError::Setup { executor: name.to_string(), source }),
        }
    }
}
