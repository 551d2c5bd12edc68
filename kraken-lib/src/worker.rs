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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::builder::BuilderRegistry;
use crate::bus::{
    trust, Body, Channel, DeploySpec, DeploymentReport, NodeReport, Subscription, WorkRequest,
    WorkerDeployment,
};
use crate::deployment::{DeploymentId, Status};
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::log_sink::LogSink;
use crate::node::GenericNode;
use crate::runtime::{
    ContainerSpec, ContainerStats, Runtime, LABEL_COMMIT, LABEL_DEPLOYMENT, LABEL_NODE, LABEL_PORT,
};
use crate::stats::Sampler;

mod adopt;

/// Label holding the generation of the work a container runs.
pub const LABEL_GENERATION: &str = "kraken.generation";

/// How long a freshly started app must stay up to count as started.
const SETTLE: Duration = Duration::from_millis(1500);

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

    async fn report(&self, deployment: &str, generation: u64, status: Status, message: impl Into<String>) {
        self.report_full(DeploymentReport {
            deployment: deployment.to_string(),
            generation,
            status,
            message: message.into(),
            container_id: None,
            host_port: None,
            address: None,
            commit: None,
        })
        .await;
    }

    async fn report_full(&self, report: DeploymentReport) {
        debug!(deployment = %report.deployment, status = %report.status, "report");
        if let Err(e) = self.node.publish(&Channel::Deployment, Body::Deployment(report)).await {
            // The orchestrator repairs a lost report from the next heartbeat.
            warn!(error = %e, "could not send a deployment report");
        }
    }

    fn address(&self, host_port: u16) -> String {
        format!("http://{}:{host_port}", self.node.config.advertise_host)
    }

    /// Starts forwarding a container's output to the deployment's log.
    fn follow_logs(&self, deployment: &str, generation: u64, container_id: &str, since_now: bool) {
        let logs = self.runtime.logs(container_id, true, since_now);
        let sink = LogSink::start(self.node.clone(), deployment.to_string(), generation);
        let handle = tokio::spawn(async move {
            let mut logs = logs;
            while let Ok(Some(line)) = logs.try_next().await {
                sink.send(&line.stream, line.line);
            }
        });
        if let Some(old) = self.tasks().logs.insert(deployment.to_string(), handle) {
            old.abort();
        }
    }

    fn stop_following(&self, deployment: &str) {
        if let Some(h) = self.tasks().logs.remove(deployment) {
            h.abort();
        }
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
            .map_err(|e| SetupFailure::Retry(format!("cannot list this node's containers: {e}")))?;
        let shared = match &self.shared {
            Some(s) => s.clone(),
            None => Shared {
                node: node.clone(),
                runtime: self.runtime.clone(),
                registry: self.registry.clone(),
                active: Arc::default(),
                tasks: Arc::default(),
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
                SetupFailure::Retry(format!("cannot subscribe to this node's work queue: {e}"))
            })?;
        self.work = Some(work);
        if let Some(r) = self.reporter.take() {
            r.abort();
        }
        self.reporter = Some(tokio::spawn(report_loop(shared.clone())));
        self.shared = Some(shared);
        Ok(())
    }

    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        let (Some(shared), Some(work)) = (&self.shared, &mut self.work) else {
            return Err(ExecutionFailure::Reset("not set up".into()));
        };
        let delivery = tokio::select! {
            d = work.next() => d,
            () = node.shutdown.cancelled() => return Ok(()),
        };
        let Some(delivery) = delivery else {
            return Err(ExecutionFailure::Reset("the work queue closed".into()));
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
                        let address = shared.address(port);
                        shared
                            .report_full(DeploymentReport {
                                deployment: spec.deployment.clone(),
                                generation: spec.generation,
                                status: Status::Running,
                                message: "already running on this node".into(),
                                container_id: Some(id),
                                host_port: Some(port),
                                address: Some(address),
                                commit: Some(spec.commit.clone()),
                            })
                            .await;
                    });
                }
            }
        }
        WorkRequest::Deploy(spec) => {
            let previous = current.filter(|a| a.container_id.is_some());
            start(shared, &dep, spec.generation, run_deploy(shared.clone(), spec, previous, false));
        }
        WorkRequest::Update(spec) => {
            let previous = current.filter(|a| a.container_id.is_some());
            start(shared, &dep, spec.generation, run_deploy(shared.clone(), spec, previous, true));
        }
        WorkRequest::Destroy { deployment, generation } => {
            start(shared, &dep, generation, run_destroy(shared.clone(), deployment, generation));
        }
        WorkRequest::Cancel { deployment } => {
            start(shared, &dep, 0, run_cancel(shared.clone(), deployment));
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

struct Failed(String);

async fn run_deploy(shared: Shared, spec: DeploySpec, previous: Option<Active>, update: bool) {
    let dep = spec.deployment.clone();
    let generation = spec.generation;
    let sink = LogSink::start(shared.node.clone(), dep.clone(), generation);
    match deploy(&shared, &spec, previous.clone(), &sink).await {
        Ok(()) => {}
        Err(Failed(reason)) => {
            sink.send("platform", format!("error: {reason}"));
            // The old version serves on only if its container is still there
            // (a new app that failed after the swap has already replaced it).
            let old_running = match previous.as_ref().and_then(|p| p.container_id.clone()) {
                Some(id) => shared.runtime.inspect(&id).await.is_ok_and(|s| s.running),
                None => false,
            };
            let keeps_serving = update && old_running;
            {
                let mut active = shared.active();
                match previous.filter(|_| keeps_serving) {
                    Some(p) => active.insert(dep.clone(), Active { in_progress: false, generation, ..p }),
                    None => active.insert(dep.clone(), Active { generation, ..Active::default() }),
                };
            }
            if keeps_serving {
                // The old version keeps serving: say so rather than call it errored.
                shared
                    .report_full(DeploymentReport {
                        deployment: dep.clone(),
                        generation,
                        status: Status::Running,
                        message: format!("update failed, still running the previous commit: {reason}"),
                        container_id: None,
                        host_port: None,
                        address: None,
                        commit: None,
                    })
                    .await;
            } else {
                shared.report(&dep, generation, Status::Errored, reason).await;
            }
        }
    }
    shared.tasks().work.remove(&dep);
}

async fn deploy(
    shared: &Shared,
    spec: &DeploySpec,
    previous: Option<Active>,
    sink: &LogSink,
) -> Result<(), Failed> {
    let dep = &spec.deployment;
    let generation = spec.generation;
    let short = spec.commit.get(..8).unwrap_or(&spec.commit);
    shared
        .report(
            dep,
            generation,
            Status::BuildingDeployment,
            format!("building commit {short} on {}", shared.node.name),
        )
        .await;
    let work_dir = shared.node.config.data_dir.join("work").join(format!("{dep}-{generation}"));
    let _cleanup = RemoveOnDrop(work_dir.clone());
    let _ = std::fs::remove_dir_all(&work_dir);
    sink.send("platform", format!("fetching {} ({}) at {}", spec.url, spec.branch, spec.commit));
    let checkout = shared
        .node
        .fetcher
        .fetch(&spec.url, &spec.branch, Some(&spec.commit), &work_dir)
        .await
        .map_err(|e| Failed(format!("could not fetch the source: {e}")))?;
    let (plan, detection) = shared.registry.plan(&checkout.dir, &spec.manifest).map_err(|e| {
        Failed(format!(
            "could not prepare the build: {}",
            shared.node.fetcher.hide_paths(&e.to_string(), &work_dir)
        ))
    })?;
    sink.send("platform", format!("building with the {} builder ({})", detection.builder, detection.reason));
    let name = &spec.manifest.app.name;
    let tag = format!("kraken/{name}:{dep}-{generation}");
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_DEPLOYMENT.to_string(), dep.clone());
    labels.insert(LABEL_NODE.to_string(), shared.node.id.clone());
    labels.insert(LABEL_COMMIT.to_string(), spec.commit.clone());
    labels.insert(LABEL_GENERATION.to_string(), generation.to_string());
    let (log_tx, mut log_rx) = mpsc::unbounded_channel::<String>();
    let build_sink = sink.clone();
    let building = work_dir.clone();
    let forward = tokio::spawn(async move {
        let mut layers = crate::runtime::BuildLayers::new();
        while let Some(line) = log_rx.recv().await {
            if let Some(layer) = layers.read(&line) {
                adopt::note_layer(&building, &layer);
            }
            build_sink.send("build", line);
        }
    });
    let built = shared.runtime.build_image(&plan, &tag, &labels, log_tx).await;
    let _ = forward.await;
    // The build ended (a failed one removed its own layers): nothing to clean at the next start.
    let _ = std::fs::remove_file(adopt::layers_file(&work_dir));
    let image = built.map_err(|e| Failed(format!("{e}; the build log above has the details")))?;
    let remove_image = |image: String| {
        let runtime = shared.runtime.clone();
        async move {
            if let Err(e) = runtime.remove_image(&image).await {
                warn!(error = %e, "could not remove an image");
            }
        }
    };

    let mut env = spec.manifest.config.env.clone();
    // The app listens where its manifest says; PORT always tells it so.
    env.insert("PORT".to_string(), spec.manifest.config.port.to_string());
    if let Some(test) = &spec.manifest.config.test {
        shared
            .report(dep, generation, Status::TestingDeployment, format!("running the test command `{test}`"))
            .await;
        let (code, output) =
            match shared.runtime.run_to_completion(&tag, test, &env, shared.node.config.test_timeout).await {
                Ok(r) => r,
                Err(e) => {
                    remove_image(tag.clone()).await;
                    return Err(Failed(format!("could not run the test command: {e}")));
                }
            };
        for line in output.lines() {
            sink.send("build", line.to_string());
        }
        if code != 0 {
            remove_image(tag.clone()).await;
            return Err(Failed(format!("the test command `{test}` failed with exit code {code}")));
        }
    }

    shared.report(dep, generation, Status::Deploying, "starting the container").await;
    let port = spec.manifest.config.port;
    let mut host_port = crate::runtime::pick_host_port(port);
    if let Some(prev) = &previous {
        if let Some(id) = &prev.container_id {
            shared.stop_following(dep);
            if let Err(e) = shared.runtime.remove_container(id).await {
                warn!(error = %e, "could not remove the previous container");
            }
            if let Some(p) = prev.host_port {
                host_port = p;
            }
        }
    }
    labels.insert(LABEL_PORT.to_string(), port.to_string());
    let mut container = ContainerSpec {
        name: format!("kraken-{name}-{dep}-{generation}"),
        image: tag.clone(),
        labels,
        env,
        container_port: port,
        host_port,
        host_ip: shared.node.config.publish_ip.clone(),
        memory_limit: 0,
        pids_limit: shared.node.config.app_limits.pids,
        log_rotation: Some(shared.node.config.app_limits.log_rotation),
    };
    let started = match shared.runtime.run_container(&container).await {
        Ok(r) => Ok(r),
        Err(first) => {
            warn!(error = %first, port = host_port, "starting on the chosen port failed; letting the engine choose one");
            container.host_port = 0;
            shared.runtime.run_container(&container).await
        }
    };
    let (container_id, host_port) = match started {
        Ok(r) => r,
        Err(e) => {
            remove_image(tag.clone()).await;
            return Err(Failed(format!("could not start the container: {e}")));
        }
    };
    shared.follow_logs(dep, generation, &container_id, false);

    // The app counts as started when it stays up for the settle period.
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut ticker = tokio::time::interval(Duration::from_millis(150));
    loop {
        ticker.tick().await;
        let state = shared.runtime.inspect(&container_id).await;
        let stopped = match &state {
            Ok(s) if !s.running || s.restart_count > 0 => Some(match s.exit_code {
                Some(code) => {
                    format!("the app exited with code {code} right after it started; its log shows why")
                }
                None => "the app stopped right after it started; its log shows why".to_string(),
            }),
            Ok(_) => None,
            Err(e) => Some(format!("the container vanished after it started: {e}")),
        };
        if let Some(reason) = stopped {
            // Let the log follower pick up the app's last words before removing it.
            let settle_logs = tokio::time::Instant::now() + Duration::from_millis(500);
            let mut logs = shared.runtime.logs(&container_id, false, false);
            while let Ok(Ok(Some(_))) = tokio::time::timeout_at(settle_logs, logs.try_next()).await {}
            shared.stop_following(dep);
            let _ = shared.runtime.remove_container(&container_id).await;
            remove_image(tag.clone()).await;
            return Err(Failed(reason));
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    if let Err(e) = shared.runtime.keep_restarting(&container_id).await {
        warn!(error = %e, "could not set the container's restart policy; it will not come back after a reboot");
    }
    if let Some(prev) = previous {
        if let Some(image) = prev.image.filter(|i| *i != tag && *i != image) {
            remove_image(image).await;
        }
    }
    let address = shared.address(host_port);
    shared.active().insert(
        dep.clone(),
        Active {
            generation,
            in_progress: false,
            container_id: Some(container_id.clone()),
            image: Some(tag.clone()),
            host_port: Some(host_port),
            running: true,
            stats: None,
        },
    );
    sink.send("platform", format!("running at {address}"));
    shared
        .report_full(DeploymentReport {
            deployment: dep.clone(),
            generation,
            status: Status::Running,
            message: format!("running at {address} on {}", shared.node.name),
            container_id: Some(container_id),
            host_port: Some(host_port),
            address: Some(address),
            commit: Some(spec.commit.clone()),
        })
        .await;
    Ok(())
}

/// Removes every container and image of a deployment on this node.
async fn remove_everything(shared: &Shared, dep: &str) -> Result<(), String> {
    shared.stop_following(dep);
    let containers =
        shared.runtime.list_managed(Some(shared.node.id.clone())).await.map_err(|e| e.to_string())?;
    let mut images = Vec::new();
    for c in containers.iter().filter(|c| c.labels.get(LABEL_DEPLOYMENT).map(String::as_str) == Some(dep)) {
        shared.runtime.remove_container(&c.id).await.map_err(|e| e.to_string())?;
        images.push(c.image.clone());
    }
    if let Some(a) = shared.active().get(dep) {
        images.extend(a.image.clone());
    }
    images.sort();
    images.dedup();
    for image in images {
        if let Err(e) = shared.runtime.remove_image(&image).await {
            warn!(error = %e, %image, "could not remove an image");
        }
    }
    Ok(())
}

async fn run_destroy(shared: Shared, dep: DeploymentId, generation: u64) {
    shared.report(&dep, generation, Status::DestructionInProgress, "removing the container and image").await;
    match remove_everything(&shared, &dep).await {
        Ok(()) => {
            shared.active().remove(&dep);
            shared.report(&dep, generation, Status::Destroyed, "container and image removed").await;
        }
        Err(e) => {
            if let Some(a) = shared.active().get_mut(&dep) {
                a.in_progress = false;
            }
            shared
                .report(&dep, generation, Status::Errored, format!("could not remove the container: {e}"))
                .await;
        }
    }
    shared.tasks().work.remove(&dep);
}

async fn run_cancel(shared: Shared, dep: DeploymentId) {
    if let Err(e) = remove_everything(&shared, &dep).await {
        warn!(deployment = %dep, error = %e, "could not clean up a cancelled deployment");
    }
    shared.active().remove(&dep);
    shared.tasks().work.remove(&dep);
}

/// Sends this node's report every heartbeat.
async fn report_loop(shared: Shared) {
    // Resource samples take about a second each (the engine compares two
    // readings) and listing containers waits on the engine, so both are
    // refreshed by tasks of their own and a report never waits for them; nor
    // does the next report wait for the broker to confirm this one. So
    // heartbeats stay on time when the machine or the engine is busy.
    let _stop_sampler = AbortOnDrop(tokio::spawn(stats_loop(shared.clone())));
    let _stop_watcher = AbortOnDrop(tokio::spawn(running_loop(shared.clone())));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4));
    let mut sampler = Sampler::new();
    let mut ticker = tokio::time::interval(shared.node.config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let taken = chrono::Utc::now();
        let deployments: Vec<WorkerDeployment> = shared
            .active()
            .iter()
            .map(|(dep, a)| WorkerDeployment {
                deployment: dep.clone(),
                generation: a.generation,
                in_progress: a.in_progress,
                container_id: a.container_id.clone(),
                running: a.running && a.container_id.is_some(),
                address: a.host_port.map(|p| shared.address(p)),
                host_port: a.host_port,
                stats: a.stats,
            })
            .collect();
        let report = NodeReport {
            node: shared.node.id.clone(),
            name: shared.node.name.clone(),
            address: shared.node.api_address(),
            stats: sampler.sample(),
            deployments,
            at: taken,
            runs_apps: true,
            instance: shared.instance.clone(),
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            warn!("the broker has not confirmed the last reports; skipping one");
            continue;
        };
        let node = shared.node.clone();
        tokio::spawn(async move {
            if let Err(e) = node.publish(&Channel::Sysinfo, Body::Sysinfo(report)).await {
                warn!(error = %e, "could not send this node's report");
            }
            drop(permit);
        });
    }
}

/// Keeps whether each container runs up to date (every second), for the reports.
async fn running_loop(shared: Shared) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Containers missing from the last list: one started after the list was
    // taken is missing once; one that was removed stays missing.
    let mut missing = std::collections::HashSet::new();
    loop {
        ticker.tick().await;
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            shared.runtime.list_managed(Some(shared.node.id.clone())),
        )
        .await;
        let Ok(Ok(containers)) = listed else { continue };
        let mut now_missing = std::collections::HashSet::new();
        let mut active = shared.active();
        for entry in active.values_mut() {
            let Some(id) = &entry.container_id else { continue };
            match containers.iter().find(|c| &c.id == id) {
                Some(c) => entry.running = c.running,
                None if missing.contains(id) => entry.running = false,
                None => {
                    now_missing.insert(id.clone());
                }
            }
        }
        missing = now_missing;
    }
}

/// Reports a node that runs no apps (an orchestrator-only node): its
/// statistics every heartbeat, so it is listed with the others.
#[derive(Default)]
pub struct PresenceExecutor {
    sampler: Option<Sampler>,
}

impl std::fmt::Debug for PresenceExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceExecutor").finish_non_exhaustive()
    }
}

impl PresenceExecutor {
    /// A reporter.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Executor for PresenceExecutor {
    fn name(&self) -> &str {
        "presence"
    }

    async fn setup(&mut self, _node: &mut GenericNode) -> Result<(), SetupFailure> {
        self.sampler = Some(Sampler::new());
        Ok(())
    }

    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        tokio::select! {
            () = node.shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(node.config.heartbeat) => {}
        }
        let stats = self.sampler.get_or_insert_with(Sampler::new).sample();
        let report = NodeReport {
            node: node.id.clone(),
            name: node.name.clone(),
            address: node.api_address(),
            stats,
            deployments: Vec::new(),
            at: chrono::Utc::now(),
            runs_apps: false,
            instance: String::new(),
        };
        node.publish(&Channel::Sysinfo, Body::Sysinfo(report))
            .await
            .map_err(|e| ExecutionFailure::Transient(format!("could not report this node: {e}")))
    }
}

/// Refreshes the resource samples of this node's containers every heartbeat.
async fn stats_loop(shared: Shared) {
    let mut ticker = tokio::time::interval(shared.node.config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let containers: Vec<(DeploymentId, String)> = shared
            .active()
            .iter()
            .filter_map(|(k, v)| v.container_id.clone().map(|c| (k.clone(), c)))
            .collect();
        let samples =
            futures::future::join_all(
                containers.iter().map(|(_, id)| {
                    let runtime = shared.runtime.clone();
                    let id = id.clone();
                    async move {
                        tokio::time::timeout(Duration::from_secs(5), runtime.stats(&id)).await.ok()?.ok()
                    }
                }),
            )
            .await;
        let mut active = shared.active();
        for ((dep, container), sample) in containers.into_iter().zip(samples) {
            if let Some(entry) =
                active.get_mut(&dep).filter(|e| e.container_id.as_deref() == Some(container.as_str()))
            {
                entry.stats = sample;
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt;

    use super::*;
    use crate::builder::BaseImages;
    use crate::bus::memory::MemoryBus;
    use crate::bus::{Bus, Envelope};
    use crate::node::{NodeConfig, NodeIdentity};
    use crate::runtime::{ContainerState, MockRuntime};
    use crate::shipwreck::Manifest;

    /// A git repository holding a static site, and its commit.
    fn static_repo(dir: &std::path::Path) -> String {
        let repo = git2::Repository::init(dir).expect("init");
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").expect("write");
        std::fs::write(
            dir.join("shipwreck.toml"),
            "[app]\nname = \"site\"\n[config]\nport = 8080\nlang = \"static\"\n",
        )
        .expect("write");
        let mut index = repo.index().expect("index");
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
        let tree = repo.find_tree(index.write_tree().expect("tree")).expect("tree");
        let sig = git2::Signature::now("t", "t@example.invalid").expect("sig");
        let oid = repo.commit(Some("refs/heads/main"), &sig, &sig, "one", &tree, &[]).expect("commit");
        repo.set_head("refs/heads/main").expect("head");
        oid.to_string()
    }

    fn spec(dir: &std::path::Path, commit: &str, generation: u64) -> DeploySpec {
        let text = std::fs::read_to_string(dir.join("shipwreck.toml")).expect("read");
        let manifest = Manifest::parse("shipwreck.toml", &text, &["static".to_string()]).expect("manifest");
        DeploySpec {
            deployment: "d1".into(),
            generation,
            url: dir.display().to_string(),
            branch: "main".into(),
            commit: commit.to_string(),
            manifest,
            builder: "static".into(),
        }
    }

    #[tokio::test]
    async fn a_duplicated_deploy_request_builds_and_runs_once() {
        let repo = tempfile::tempdir().expect("tempdir");
        let commit = static_repo(repo.path());
        let data = tempfile::tempdir().expect("tempdir");

        let builds = Arc::new(AtomicUsize::new(0));
        let mut runtime = MockRuntime::new();
        runtime.expect_list_managed().returning(|_| Ok(Vec::new()));
        runtime.expect_list_images().returning(|_| Ok(Vec::new()));
        let counter = builds.clone();
        runtime.expect_build_image().returning(move |_, _, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok("sha256:img".to_string())
        });
        runtime.expect_run_container().times(1).returning(|_| Ok(("c1".to_string(), 18080)));
        runtime.expect_logs().returning(|_, _, _| futures::stream::empty().boxed());
        runtime.expect_inspect().returning(|_| {
            Ok(ContainerState {
                running: true,
                exit_code: None,
                error: None,
                started_at: None,
                restart_count: 0,
            })
        });
        runtime.expect_keep_restarting().times(1).returning(|_| Ok(()));
        runtime.expect_stats().returning(|_| Ok(ContainerStats::default()));

        let bus = Arc::new(MemoryBus::new());
        let mut config = NodeConfig::new(data.path(), "127.0.0.1:0".parse().expect("addr"));
        config.advertise_host = "127.0.0.1".into();
        // A unit test has no helper program to run; the fetch runs in-process.
        config.fetch_program = crate::fetcher::FetchProgram::InProcess;
        config.allow_local_sources = true;
        let mut node =
            GenericNode::new(NodeIdentity { id: "n1".into(), name: "box".into() }, config, bus.clone());
        let registry = BuilderRegistry::with_builtins(BaseImages::uniform("local:base"));
        let mut worker = WorkerExecutor::new(Arc::new(runtime), registry);
        worker.setup(&mut node).await.expect("setup");
        let mut reports = bus.subscribe(&Channel::Deployment).await.expect("subscribe");

        let work = Channel::Work("n1".into());
        for _ in 0..2 {
            node.publish(&work, Body::Work(WorkRequest::Deploy(spec(repo.path(), &commit, 1))))
                .await
                .expect("publish");
            worker.execute(&mut node).await.expect("execute");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut running = 0;
        while running == 0 {
            let next =
                tokio::time::timeout_at(deadline, reports.next()).await.expect("a Running report in time");
            if let Some(Body::Deployment(r)) = next.map(|d| d.envelope.body) {
                assert_ne!(r.status, Status::Errored, "{}", r.message);
                if r.status == Status::Running {
                    running += 1;
                    assert_eq!(r.address.as_deref(), Some("http://127.0.0.1:18080"));
                }
            }
        }
        // The same request once more, after it runs: answered from what runs.
        node.publish(&work, Body::Work(WorkRequest::Deploy(spec(repo.path(), &commit, 1))))
            .await
            .expect("publish");
        worker.execute(&mut node).await.expect("execute");
        let again = tokio::time::timeout(Duration::from_secs(10), reports.next()).await.expect("a report");
        match again.map(|d| d.envelope.body) {
            Some(Body::Deployment(r)) => {
                assert_eq!(r.status, Status::Running);
                assert!(r.message.contains("already running"), "{}", r.message);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1, "built once");
        worker.teardown(&mut node).await;
    }

    #[tokio::test]
    async fn work_from_an_older_epoch_is_ignored() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut runtime = MockRuntime::new();
        runtime.expect_list_managed().returning(|_| Ok(Vec::new()));
        runtime.expect_list_images().returning(|_| Ok(Vec::new()));
        runtime.expect_stats().returning(|_| Ok(ContainerStats::default()));
        runtime.expect_build_image().never();
        let bus = Arc::new(MemoryBus::new());
        let config = NodeConfig::new(data.path(), "127.0.0.1:0".parse().expect("addr"));
        let mut node =
            GenericNode::new(NodeIdentity { id: "n1".into(), name: "box".into() }, config, bus.clone());
        node.set_epoch(5);
        let mut worker =
            WorkerExecutor::new(Arc::new(runtime), BuilderRegistry::with_builtins(BaseImages::defaults()));
        worker.setup(&mut node).await.expect("setup");
        let repo = tempfile::tempdir().expect("tempdir");
        let commit = static_repo(repo.path());
        let stale = Envelope {
            epoch: 4,
            from: "old".into(),
            body: Body::Work(WorkRequest::Deploy(spec(repo.path(), &commit, 1))),
        };
        bus.publish(&Channel::Work("n1".into()), &stale).await.expect("publish");
        worker.execute(&mut node).await.expect("execute");
        assert!(worker.shared.as_ref().is_some_and(|s| s.active().is_empty()), "nothing was started");
        worker.teardown(&mut node).await;
    }
}
