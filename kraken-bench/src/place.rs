//! Placement throughput: the real orchestrator (`OrchestrationExecutor` on a
//! `NodeRunner`, with its state on disk) and the real in-process bus, with
//! simulated nodes that answer work at once. Every deployment is stored as an
//! app whose repository was already read (commit, manifest and builder known,
//! on no node yet), and the simulated nodes are registered, before the
//! orchestrator starts; the clock runs from its start until every simulated
//! node has received its work (placed), and until the state holds every
//! deployment as `Running` (the nodes' answers taken in).
//!
//! A simulated node is a task on the bus: it takes `Deploy` work from its
//! queue, answers `Running` with a made-up container at once, and reports
//! itself (and what it runs) every half second, as a worker does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use futures::StreamExt;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::bus::memory::MemoryBus;
use kraken_lib::bus::{
    Body, Bus, Channel, DeploymentReport, Envelope, NodeReport, WorkRequest, WorkerDeployment,
};
use kraken_lib::deployment::Status;
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity, NodeRunner};
use kraken_lib::orchestrator::OrchestrationExecutor;
use kraken_lib::shipwreck::Manifest;
use kraken_lib::state::{Role, State, StateLimits};

use crate::report::secs;

/// One run's size.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Simulated nodes.
    pub nodes: usize,
    /// Deployments to place.
    pub deployments: usize,
}

/// Runs each shape and prints one report.
pub async fn run(shapes: &[Shape]) -> Result<()> {
    println!("## Placement throughput (real orchestrator and in-process bus, simulated nodes)\n");
    println!(
        "| nodes | deployments | all placed | placements/s | all Running | Running/s |\n| --- | --- | --- | --- | --- | --- |"
    );
    for shape in shapes {
        let r = measure(*shape).await?;
        println!(
            "| {} | {} | {} | **{:.0}** | {} | {:.0} |",
            shape.nodes,
            shape.deployments,
            secs(r.placed),
            shape.deployments as f64 / r.placed.as_secs_f64(),
            secs(r.running),
            shape.deployments as f64 / r.running.as_secs_f64(),
        );
    }
    println!("\ntarget ≥ 5,000 placements/s on 2 cores (1,000 nodes, 10,000 deployments).\n");
    Ok(())
}

struct Timing {
    placed: Duration,
    running: Duration,
}

/// What the simulated nodes share: what each runs, and how much work came.
#[derive(Default)]
struct Nodes {
    running: Mutex<HashMap<String, Vec<WorkerDeployment>>>,
    placed: AtomicUsize,
}

async fn measure(shape: Shape) -> Result<Timing> {
    let dir = tempfile::Builder::new().prefix("kraken-bench-place-").tempdir()?;
    let state =
        State::open(&dir.path().join("state"), StateLimits::default()).context("opening the state")?;
    let ids: Vec<String> = (0..shape.nodes).map(|i| format!("sim-{i:05}")).collect();
    let store = state.clone();
    let node_ids = ids.clone();
    tokio::task::spawn_blocking(move || prepare(&store, &node_ids, shape.deployments))
        .await
        .context("storing the nodes and deployments")??;

    let bus = Arc::new(MemoryBus::new());
    let config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse()?);
    let identity = NodeIdentity { id: "orchestrator".into(), name: "orchestrator".into() };
    let node = GenericNode::new(identity, config, bus.clone());
    // No takeover happens here: the epoch stays the one the node starts with.
    let epoch = node.epoch();
    let nodes = Arc::new(Nodes::default());
    let mut tasks = Vec::new();
    for id in &ids {
        let work = bus.subscribe(&Channel::Work(id.clone())).await?;
        tasks.push(tokio::spawn(answer(work, bus.clone(), id.clone(), epoch, Arc::clone(&nodes))));
    }
    tasks.push(tokio::spawn(report(bus.clone(), ids.clone(), epoch, Arc::clone(&nodes))));

    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let runner = NodeRunner::new(node).with(OrchestrationExecutor::new(state.clone(), registry));
    let stop = tokio_util_cancel();
    let started = Instant::now();
    let orchestrator = tokio::spawn(runner.run(stop.1));
    let deadline = started + Duration::from_secs(600);
    while nodes.placed.load(Ordering::Relaxed) < shape.deployments {
        if Instant::now() > deadline || orchestrator.is_finished() {
            bail!(
                "{} of {} deployments placed after {:?}",
                nodes.placed.load(Ordering::Relaxed),
                shape.deployments,
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let placed = started.elapsed();
    loop {
        let running = state.deployment_summaries().iter().filter(|d| d.status == Status::Running).count();
        if running == shape.deployments {
            break;
        }
        if Instant::now() > deadline || orchestrator.is_finished() {
            bail!("{running} of {} deployments Running after {:?}", shape.deployments, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let running = started.elapsed();
    let _ = stop.0.send(());
    let _ = orchestrator.await;
    for t in tasks {
        t.abort();
    }
    Ok(Timing { placed, running })
}

/// A one-shot stop signal for the runner.
fn tokio_util_cancel() -> (tokio::sync::oneshot::Sender<()>, impl std::future::Future<Output = ()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// Registers the simulated nodes and stores `n` deployments waiting for a node.
fn prepare(state: &State, nodes: &[String], n: usize) -> Result<()> {
    for id in nodes {
        state.record_report(&node_report(id, Vec::new()), Role::Worker, Utc::now())?;
    }
    let manifest = Manifest::parse(
        "shipwreck.toml",
        "[app]\nname = \"sim\"\n\n[config]\nport = 8080\nlang = \"dockerfile\"\n",
        &["dockerfile".to_string()],
    )?;
    for i in 0..n {
        let d = state.create_deployment(&format!("https://git.example.invalid/app-{i}.git"), "main")?;
        state.update_deployment(&d.id, |d| {
            let now = Utc::now();
            d.commit = Some("0123456789abcdef0123456789abcdef01234567".into());
            d.builder = Some("dockerfile".into());
            d.manifest = Some(manifest.clone());
            d.transition(Status::ValidatingDeploymentData, "checking the request", now);
            d.transition(Status::RetrievingApplicationData, "fetching the repository", now);
            d.transition(Status::DelegatingDeployment, "read the app; placing it", now);
            true
        })?;
    }
    Ok(())
}

fn node_report(id: &str, deployments: Vec<WorkerDeployment>) -> NodeReport {
    NodeReport {
        node: id.to_string(),
        name: id.to_string(),
        address: "127.0.0.1".into(),
        stats: Default::default(),
        deployments,
        at: Utc::now(),
        runs_apps: true,
        instance: "kraken-bench".into(),
    }
}

/// A simulated node's work queue: every deployment is running at once.
async fn answer(
    mut work: kraken_lib::bus::Subscription,
    bus: Arc<MemoryBus>,
    id: String,
    epoch: u64,
    nodes: Arc<Nodes>,
) {
    let mut port = 20_000u16;
    while let Some(delivery) = work.next().await {
        let Body::Work(WorkRequest::Deploy(spec)) = delivery.envelope.body.clone() else {
            delivery.ack().await;
            continue;
        };
        port = port.wrapping_add(1);
        let container = format!("sim-{}", spec.deployment);
        let running = WorkerDeployment {
            deployment: spec.deployment.clone(),
            generation: spec.generation,
            in_progress: false,
            container_id: Some(container.clone()),
            running: true,
            host_port: Some(port),
            address: None,
            stats: None,
        };
        {
            let mut all = nodes.running.lock().unwrap_or_else(|p| p.into_inner());
            let mine = all.entry(id.clone()).or_default();
            mine.retain(|d| d.deployment != spec.deployment);
            mine.push(running);
        }
        let body = Body::Deployment(DeploymentReport {
            deployment: spec.deployment,
            generation: spec.generation,
            status: Status::Running,
            message: "running (simulated)".into(),
            container_id: Some(container),
            host_port: Some(port),
            address: None,
            commit: Some(spec.commit),
        });
        let envelope = Envelope { epoch, from: id.clone(), body };
        if bus.publish(&Channel::Deployment, &envelope).await.is_err() {
            return;
        }
        nodes.placed.fetch_add(1, Ordering::Relaxed);
        delivery.ack().await;
    }
}

/// Every simulated node reports itself every half second.
async fn report(bus: Arc<MemoryBus>, ids: Vec<String>, epoch: u64, nodes: Arc<Nodes>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for id in &ids {
            let deployments = {
                let all = nodes.running.lock().unwrap_or_else(|p| p.into_inner());
                all.get(id).cloned().unwrap_or_default()
            };
            let envelope =
                Envelope { epoch, from: id.clone(), body: Body::Sysinfo(node_report(id, deployments)) };
            if bus.publish(&Channel::Sysinfo, &envelope).await.is_err() {
                return;
            }
        }
    }
}
