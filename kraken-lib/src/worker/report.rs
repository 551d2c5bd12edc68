//! What a node tells the orchestrator: the node's report every heartbeat
//! (built in one place, [`node_report`], for workers and for
//! orchestrator-only nodes alike) and the status reports of deployments.
//!
//! A worker's report loop never waits for the engine: resource samples and
//! whether each container runs are refreshed by tasks of their own
//! ([`stats_loop`], [`running_loop`]) and the report takes what they last saw.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::Shared;
use crate::bus::{Body, Channel, DeploymentReport, NodeReport, WorkerDeployment};
use crate::deployment::{DeploymentId, Status};
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::node::GenericNode;
use crate::stats::Sampler;

/// The report of `node`: its statistics now, the `deployments` it holds,
/// whether it runs apps and which run of its agent (`instance`) speaks.
pub(crate) fn node_report(
    node: &GenericNode,
    sampler: &mut Sampler,
    deployments: Vec<WorkerDeployment>,
    runs_apps: bool,
    instance: &str,
) -> NodeReport {
    NodeReport {
        node: node.id.clone(),
        name: node.name.clone(),
        address: node.api_address(),
        stats: sampler.sample(),
        deployments,
        at: chrono::Utc::now(),
        runs_apps,
        instance: instance.to_string(),
    }
}

impl Shared {
    /// Reports a deployment's new `status` with a message and nothing else.
    pub(super) async fn report(
        &self,
        deployment: &str,
        generation: u64,
        status: Status,
        message: impl Into<String>,
    ) {
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

    /// Reports that a deployment runs `container_id`, published on `host_port`.
    pub(super) async fn report_running(
        &self,
        deployment: &str,
        generation: u64,
        commit: &str,
        container_id: String,
        host_port: u16,
        message: impl Into<String>,
    ) {
        self.report_full(DeploymentReport {
            deployment: deployment.to_string(),
            generation,
            status: Status::Running,
            message: message.into(),
            container_id: Some(container_id),
            host_port: Some(host_port),
            address: Some(self.address(host_port)),
            commit: Some(commit.to_string()),
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

    /// Where an app published on `host_port` of this node is reached.
    pub(super) fn address(&self, host_port: u16) -> String {
        format!("http://{}:{host_port}", self.node.config.advertise_host)
    }

    /// The deployments this worker holds, as its report lists them.
    fn deployments(&self) -> Vec<WorkerDeployment> {
        self.active()
            .iter()
            .map(|(dep, a)| WorkerDeployment {
                deployment: dep.clone(),
                generation: a.generation,
                in_progress: a.in_progress,
                container_id: a.container_id.clone(),
                running: a.running && a.container_id.is_some(),
                address: a.host_port.map(|p| self.address(p)),
                host_port: a.host_port,
                stats: a.stats,
            })
            .collect()
    }
}

/// Sends this node's report every heartbeat.
pub(super) async fn report_loop(shared: Shared) {
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
        let report = node_report(&shared.node, &mut sampler, shared.deployments(), true, &shared.instance);
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
    let mut missing = HashSet::new();
    loop {
        ticker.tick().await;
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            shared.runtime.list_managed(Some(shared.node.id.clone())),
        )
        .await;
        let Ok(Ok(containers)) = listed else { continue };
        let mut now_missing = HashSet::new();
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reports a node that runs no apps (an orchestrator-only node): its
/// statistics every heartbeat, so it is listed with the others.
///
/// # Examples
///
/// An orchestrator-only node runs it beside its orchestrator:
///
/// ```
/// use kraken_lib::executor::Executor;
/// use kraken_lib::worker::PresenceExecutor;
///
/// let presence = PresenceExecutor::new();
/// assert_eq!(presence.name(), "presence");
/// ```
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
        let sampler = self.sampler.get_or_insert_with(Sampler::new);
        let report = node_report(node, sampler, Vec::new(), false, "");
        node.publish(&Channel::Sysinfo, Body::Sysinfo(report))
            .await
            .map_err(|e| ExecutionFailure::transient("could not report this node").caused_by(e))
    }
}
