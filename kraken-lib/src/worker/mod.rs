//! The worker executor: builds and runs the deployments handed to its node,
//! re-adopts its containers after a restart, and reports what it runs.
//!
//! Work requests arrive on the node's work queue. Each deploy, update or
//! destroy runs in a task of its own, so `execute` returns at once; the task
//! reports every status change on the bus and streams the build output and
//! the container's output as log lines. A reporter task sends the node's
//! statistics and the deployments it runs every heartbeat. Containers carry
//! labels (deployment, node, commit, generation), so a restarted worker finds
//! its running containers and adopts them instead of rebuilding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::builder::BuilderRegistry;
use crate::bus::{trust, Body, Channel, Subscription, WorkRequest};
use crate::deployment::DeploymentId;
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::node::GenericNode;
use crate::proxy::PortProxy;
use crate::runtime::{ContainerStats, Runtime};

mod adopt;
mod deploy;
mod destroy;
mod logs;
mod report;

pub use report::PresenceExecutor;

/// Label holding the generation of the work a container runs.
pub const LABEL_GENERATION: &str = "kraken.generation";
/// Label holding the port the agent holds for the app (see [`crate::proxy`]),
/// so a restarted agent serves it on the same port again.
pub const LABEL_PUBLIC_PORT: &str = "kraken.public-port";

/// What this worker holds of one deployment.
#[derive(Debug, Default, Clone)]
struct Active {
    generation: u64,
    in_progress: bool,
    container_id: Option<String>,
    image: Option<String>,
    host_port: Option<u16>,
    running: bool,
    stats: Option<ContainerStats>,
}

#[derive(Default)]
struct Tasks {
    work: HashMap<DeploymentId, JoinHandle<()>>,
    logs: HashMap<DeploymentId, JoinHandle<()>>,
}

/// What the worker's tasks share with it.
#[derive(Clone)]
struct Shared {
    node: GenericNode,
    runtime: Arc<dyn Runtime>,
    registry: BuilderRegistry,
    // Guards the map of deployments this worker holds; held only for map
    // operations, never across an await.
    active: Arc<Mutex<HashMap<DeploymentId, Active>>>,
    tasks: Arc<Mutex<Tasks>>,
    /// The ports held for the apps.
    proxy: PortProxy,
    /// This run of the agent (see [`WorkerExecutor`]).
    instance: String,
}

impl Shared {
    fn active(&self) -> MutexGuard<'_, HashMap<DeploymentId, Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker role of a node.
pub struct WorkerExecutor {
    runtime: Arc<dyn Runtime>,
    registry: BuilderRegistry,
    shared: Option<Shared>,
    work: Option<Subscription>,
    reporter: Option<JoinHandle<()>>,
    /// Made at every start of the agent: a report from a new instance tells
    /// the orchestrator that work handed to an earlier one was lost.
    instance: String,
    /// Whether the leftovers of an earlier run were removed (at the first setup only).
    cleaned: bool,
}

impl std::fmt::Debug for WorkerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerExecutor").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl WorkerExecutor {
    /// A worker that builds with `registry` and runs containers on `runtime`.
    ///
    /// # Examples
    ///
    /// A worker-only node on the local Docker engine (the node runner sets
    /// it up and drives it):
    ///
    /// ```no_run
    /// use std::sync::Arc;
    ///
    /// use kraken_lib::builder::{BaseImages, BuilderRegistry};
    /// use kraken_lib::runtime::DockerRuntime;
    /// use kraken_lib::worker::WorkerExecutor;
    ///
    /// # async fn run() -> Result<(), kraken_lib::runtime::RuntimeError> {
    /// let runtime = Arc::new(DockerRuntime::connect().await?);
    /// let worker = WorkerExecutor::new(runtime, BuilderRegistry::with_builtins(BaseImages::defaults()));
    /// # let _ = worker;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(runtime: Arc<dyn Runtime>, registry: BuilderRegistry) -> Self {
        Self {
            runtime,
            registry,
            shared: None,
            work: None,
            reporter: None,
            instance: crate::deployment::random_id(6),
            cleaned: false,
        }
    }
}

#[async_trait::async_trait]
impl Executor for WorkerExecutor {
    fn name(&self) -> &str {
        "worker"
    }

    async fn setup(&mut self, node: &mut GenericNode) -> Result<(), SetupFailure> {
        let containers = self
            .runtime
            .list_managed(Some(node.id.clone()))
            .await
            .map_err(|e| SetupFailure::retry("cannot list this node's containers").caused_by(e))?;
        let shared = match &self.shared {
            Some(s) => s.clone(),
            None => Shared {
                node: node.clone(),
                runtime: self.runtime.clone(),
                registry: self.registry.clone(),
                active: Arc::default(),
                tasks: Arc::default(),
                proxy: PortProxy::new(self.runtime.clone()),
                instance: self.instance.clone(),
            },
        };
        let containers = if self.cleaned {
            containers
        } else {
            // Nothing runs yet: what is there besides apps was left by an earlier run.
            self.cleaned = true;
            adopt::clean_leftovers(&shared, containers).await
        };
        adopt::adopt(&shared, containers).await;
        let work =
            node.bus.subscribe(&Channel::Work(node.id.clone())).await.map_err(|e| {
                SetupFailure::retry("cannot subscribe to this node's work queue").caused_by(e)
            })?;
        self.work = Some(work);
        if let Some(r) = self.reporter.take() {
            r.abort();
        }
        self.reporter = Some(tokio::spawn(report::report_loop(shared.clone())));
        self.shared = Some(shared);
        Ok(())
    }

    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        let (Some(shared), Some(work)) = (&self.shared, &mut self.work) else {
            return Err(ExecutionFailure::reset("not set up"));
        };
        let delivery = tokio::select! {
            d = work.next() => d,
            () = node.shutdown.cancelled() => return Ok(()),
        };
        let Some(delivery) = delivery else {
            return Err(ExecutionFailure::reset("the work queue closed"));
        };
        if let Body::Work(WorkRequest::Orchestrator { epoch, address }) = &delivery.envelope.body {
            // A promotion: believed from the candidate the orchestrator named
            // (or from the orchestrator itself), and only forward in epochs.
            let signer = match trust::from_candidate(node, &delivery) {
                Some(key) => Some(Some(key)),
                None if trust::from_orchestrator(node, &delivery) => Some(None),
                None => None,
            };
            match signer {
                Some(candidate) if *epoch > node.epoch() => {
                    info!(%address, epoch, "following the new orchestrator");
                    node.set_epoch(*epoch);
                    node.set_orchestrator(Some(address.clone()));
                    if let Some(key) = candidate {
                        node.update_trust(|t| {
                            t.orchestrator = Some(key);
                            t.candidate = None;
                        });
                    }
                }
                Some(_) => debug!(epoch, "a promotion that is not newer than this node's epoch"),
                None => warn!(
                    from = %delivery.envelope.from,
                    epoch,
                    "ignoring a promotion: only the rollover candidate the orchestrator named can take over"
                ),
            }
            delivery.ack().await;
            return Ok(());
        }
        if !trust::from_orchestrator(node, &delivery) {
            warn!(
                from = %delivery.envelope.from,
                origin = ?delivery.origin,
                "ignoring work not signed by this node's orchestrator"
            );
            delivery.ack().await;
            return Ok(());
        }
        if delivery.envelope.epoch < node.epoch() {
            warn!(from = %delivery.envelope.from, epoch = delivery.envelope.epoch, "ignoring work from an older epoch");
            delivery.ack().await;
            return Ok(());
        }
        let Body::Work(request) = delivery.envelope.body.clone() else {
            warn!("dropping a message that is not a work request from the work queue");
            delivery.ack().await;
            return Ok(());
        };
        if delivery.envelope.epoch > node.epoch() {
            info!(epoch = delivery.envelope.epoch, "a newer orchestrator epoch");
            node.set_epoch(delivery.envelope.epoch);
        }
        accept(shared, request);
        delivery.ack().await;
        Ok(())
    }

    async fn teardown(&mut self, _node: &mut GenericNode) {
        if let Some(r) = self.reporter.take() {
            r.abort();
        }
        if let Some(shared) = &self.shared {
            let mut tasks = shared.tasks();
            for (_, h) in tasks.work.drain() {
                h.abort();
            }
            for (_, h) in tasks.logs.drain() {
                h.abort();
            }
        }
    }
}

/// Takes a work request: starts the task that carries it out, unless it is a
/// duplicate of work already done or under way.
fn accept(shared: &Shared, request: WorkRequest) {
    let dep = request.deployment().to_string();
    let current = shared.active().get(&dep).cloned();
    match request {
        WorkRequest::Deploy(spec) | WorkRequest::Update(spec)
            if current.as_ref().is_some_and(|a| a.generation >= spec.generation) =>
        {
            // Already done or under way: say where it stands, so a lost report is repaired.
            let a = current.unwrap_or_default();
            if !a.in_progress && a.generation == spec.generation {
                if let (Some(id), Some(port)) = (a.container_id, a.host_port) {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let (dep, commit) = (&spec.deployment, &spec.commit);
                        let message = "already running on this node";
                        shared.report_running(dep, spec.generation, commit, id, port, message).await;
                    });
                }
            }
        }
        WorkRequest::Deploy(spec) => {
            let previous = current.filter(|a| a.container_id.is_some());
            start(shared, &dep, spec.generation, deploy::run_deploy(shared.clone(), spec, previous, false));
        }
        WorkRequest::Update(spec) => {
            let previous = current.filter(|a| a.container_id.is_some());
            start(shared, &dep, spec.generation, deploy::run_deploy(shared.clone(), spec, previous, true));
        }
        WorkRequest::Destroy { deployment, generation } => {
            start(shared, &dep, generation, destroy::run_destroy(shared.clone(), deployment, generation));
        }
        WorkRequest::Cancel { deployment } => {
            start(shared, &dep, 0, destroy::run_cancel(shared.clone(), deployment));
        }
        WorkRequest::Orchestrator { .. } => {}
    }
}

fn start(
    shared: &Shared,
    dep: &str,
    generation: u64,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) {
    {
        let mut active = shared.active();
        let entry = active.entry(dep.to_string()).or_default();
        entry.in_progress = true;
        if generation > entry.generation {
            entry.generation = generation;
        }
    }
    let handle = tokio::spawn(fut);
    if let Some(old) = shared.tasks().work.insert(dep.to_string(), handle) {
        old.abort();
    }
}

#[cfg(test)]
mod tests;
