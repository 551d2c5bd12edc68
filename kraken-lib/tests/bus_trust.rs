//! Who may say what on the bus, against a real RabbitMQ broker: a machine
//! that joined the platform holds the broker's credentials and can put any
//! message on any queue. These tests play that machine and check that it is
//! refused: forged work for another worker, a forged promotion to
//! orchestrator, forged reports and logs in another node's name, and a
//! newer epoch that would make the orchestrator step down. Each test runs in
//! a virtual host of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/rabbit.rs"]
mod rabbit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kraken_lib::auth::NodeKey;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::bus::amqp::{AmqpBus, AmqpOptions};
use kraken_lib::bus::{
    Body, Bus, Channel, DeploySpec, DeploymentReport, Envelope, LogBatch, LogEntry, NodeReport, Subscription,
    WorkRequest,
};
use kraken_lib::deployment::Status;
use kraken_lib::executor::{ExecutionFailure, Executor};
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity};
use kraken_lib::orchestrator::OrchestrationExecutor;
use kraken_lib::runtime::DockerRuntime;
use kraken_lib::shipwreck::Manifest;
use kraken_lib::state::{Role, State, StateLimits};
use kraken_lib::worker::WorkerExecutor;

const ARRIVAL: Duration = Duration::from_secs(15);

async fn bus(url: &str, key: Option<&Arc<NodeKey>>) -> AmqpBus {
    let bus = AmqpBus::connect(url, AmqpOptions::default()).await.expect("connect to RabbitMQ");
    if let Some(key) = key {
        bus.sign_with(key.clone());
    }
    bus
}

fn key() -> Arc<NodeKey> {
    Arc::new(NodeKey::generate().expect("a key"))
}

fn node(id: &str, dir: &std::path::Path, bus: AmqpBus, key: &Arc<NodeKey>) -> GenericNode {
    let config = NodeConfig::new(dir, "127.0.0.1:0".parse().expect("addr"));
    GenericNode::new(NodeIdentity { id: id.into(), name: id.into() }, config, Arc::new(bus))
        .with_key(key.clone())
}

fn spec(deployment: &str) -> DeploySpec {
    let manifest = Manifest::parse(
        "shipwreck.toml",
        "[app]\nname = \"site\"\n[config]\nport = 8080\nlang = \"static\"\n",
        &["static".to_string()],
    )
    .expect("manifest");
    DeploySpec {
        deployment: deployment.into(),
        generation: 1,
        url: "https://git.invalid/nobody/site.git".into(),
        branch: "main".into(),
        commit: "0".repeat(40),
        manifest,
        builder: "static".into(),
    }
}

fn envelope(epoch: u64, from: &str, body: Body) -> Envelope {
    Envelope { epoch, from: from.into(), body }
}

/// The deployments the reports on `sub` are about, until one about `until` arrives.
async fn reports_until(sub: &mut Subscription, until: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let delivery = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no report about {until} within {ARRIVAL:?}; saw {seen:?}"))
            .expect("open");
        if let Body::Deployment(r) = &delivery.envelope.body {
            seen.push(r.deployment.clone());
        }
        delivery.ack().await;
        if seen.last().map(String::as_str) == Some(until) {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_worker_acts_only_on_work_and_promotions_from_whom_it_trusts() {
    let vhost = rabbit::Vhost::new("trust-worker");
    let url = vhost.url();
    let data = tempfile::tempdir().expect("tempdir");
    let (orchestrator_key, worker_key, attacker_key, candidate_key) = (key(), key(), key(), key());

    let worker_id = rabbit::unique_node("worker");
    let mut worker_node = node(&worker_id, data.path(), bus(&url, Some(&worker_key)).await, &worker_key);
    worker_node.update_trust(|t| t.orchestrator = Some(orchestrator_key.public()));
    worker_node.set_orchestrator(Some("http://orchestrator.invalid:8000".into()));
    let runtime = Arc::new(DockerRuntime::connect().await.expect("docker"));
    let mut worker = WorkerExecutor::new(
        runtime,
        BuilderRegistry::with_builtins(BaseImages::uniform("kraken-test-base:bookworm")),
    );
    worker.setup(&mut worker_node).await.expect("setup");

    // What the worker reports is what the orchestrator would see.
    let observer = bus(&url, None).await;
    let mut reports = observer.subscribe(&Channel::Deployment).await.expect("subscribe");

    let attacker = bus(&url, Some(&attacker_key)).await;
    let unsigned = bus(&url, None).await;
    let orchestrator = bus(&url, Some(&orchestrator_key)).await;
    let candidate = bus(&url, Some(&candidate_key)).await;
    let work = Channel::Work(worker_id.clone());

    // Forged work in the orchestrator's name: signed with another key, or not at all.
    attacker
        .publish(&work, &envelope(1, "orchestrator", Body::Work(WorkRequest::Deploy(spec("forged")))))
        .await
        .expect("publish");
    unsigned
        .publish(&work, &envelope(1, "orchestrator", Body::Work(WorkRequest::Deploy(spec("unsigned")))))
        .await
        .expect("publish");
    // The real orchestrator's work.
    orchestrator
        .publish(&work, &envelope(1, "orchestrator", Body::Work(WorkRequest::Deploy(spec("legit")))))
        .await
        .expect("publish");
    for _ in 0..3 {
        worker.execute(&mut worker_node).await.expect("execute");
    }
    let seen = reports_until(&mut reports, "legit").await;
    assert!(seen.iter().all(|d| d == "legit"), "only the signed work was started: {seen:?}");

    // A promotion from a node that is not the named candidate changes nothing.
    let promote = |epoch, from: &str, address: &str| {
        envelope(epoch, from, Body::Work(WorkRequest::Orchestrator { epoch, address: address.into() }))
    };
    attacker.publish(&work, &promote(99, "attacker", "http://attacker.invalid:8000")).await.expect("publish");
    worker.execute(&mut worker_node).await.expect("execute");
    assert_eq!(worker_node.epoch(), 1);
    assert_eq!(worker_node.orchestrator().as_deref(), Some("http://orchestrator.invalid:8000"));

    // The orchestrator names its candidate; the attacker claims to be it.
    worker_node.update_trust(|t| t.candidate = Some(("candidate".into(), candidate_key.public())));
    attacker
        .publish(&work, &promote(99, "candidate", "http://attacker.invalid:8000"))
        .await
        .expect("publish");
    worker.execute(&mut worker_node).await.expect("execute");
    assert_eq!(worker_node.epoch(), 1, "a promotion signed with another key is ignored");

    // The real candidate takes over.
    candidate
        .publish(&work, &promote(2, "candidate", "http://candidate.invalid:8000"))
        .await
        .expect("publish");
    worker.execute(&mut worker_node).await.expect("execute");
    assert_eq!(worker_node.epoch(), 2);
    assert_eq!(worker_node.orchestrator().as_deref(), Some("http://candidate.invalid:8000"));
    assert_eq!(worker_node.trust().orchestrator, Some(candidate_key.public()));

    // From now on the old orchestrator's key counts for nothing, the new one's does.
    orchestrator
        .publish(&work, &envelope(2, "orchestrator", Body::Work(WorkRequest::Deploy(spec("stale")))))
        .await
        .expect("publish");
    candidate
        .publish(&work, &envelope(2, "candidate", Body::Work(WorkRequest::Deploy(spec("followed")))))
        .await
        .expect("publish");
    for _ in 0..2 {
        worker.execute(&mut worker_node).await.expect("execute");
    }
    let seen = reports_until(&mut reports, "followed").await;
    assert!(!seen.iter().any(|d| d == "stale"), "work of the old orchestrator was ignored: {seen:?}");

    worker.teardown(&mut worker_node).await;
}

#[tokio::test]
async fn the_orchestrator_believes_reports_only_from_their_signed_sender() {
    let vhost = rabbit::Vhost::new("trust-orchestrator");
    let url = vhost.url();
    let data = tempfile::tempdir().expect("tempdir");
    let (orchestrator_key, worker_key, attacker_key) = (key(), key(), key());
    let state = State::open(&data.path().join("state"), StateLimits::default()).expect("state");
    let mut orchestrator_node =
        node("orchestrator", data.path(), bus(&url, Some(&orchestrator_key)).await, &orchestrator_key);
    let address = "http://127.0.0.1:9";
    state
        .register_node_key("orchestrator", "o", address, Role::Orchestrator, orchestrator_key.public())
        .expect("register");
    state.register_node_key("worker", "w", address, Role::Worker, worker_key.public()).expect("register");
    // The attacker joined with the join token: it is a node of its own.
    state.register_node_key("attacker", "a", address, Role::Worker, attacker_key.public()).expect("register");
    let d = state.create_deployment("https://git.invalid/app.git", "main").expect("create");
    state
        .update_deployment(&d.id, |d| {
            d.node = Some("worker".into());
            d.generation = 1;
            d.transition(Status::BuildingDeployment, "building", chrono::Utc::now());
            true
        })
        .expect("update");

    // The worker is up (it reported before) and says it is building the
    // deployment, so the deployment stays with it.
    let building = kraken_lib::bus::WorkerDeployment {
        deployment: d.id.clone(),
        generation: 1,
        in_progress: true,
        container_id: None,
        running: false,
        host_port: None,
        address: None,
        stats: None,
    };
    let sysinfo = |from: &str, epoch: u64| {
        envelope(
            epoch,
            from,
            Body::Sysinfo(NodeReport {
                node: from.into(),
                name: from.into(),
                address: address.into(),
                stats: Default::default(),
                deployments: if from == "worker" { vec![building.clone()] } else { Vec::new() },
                at: chrono::Utc::now(),
                runs_apps: true,
                instance: "bus-trust".into(),
            }),
        )
    };
    let Body::Sysinfo(earlier) = sysinfo("worker", 1).body else { unreachable!() };
    let started = chrono::Utc::now();
    state.record_report(&earlier, Role::Worker, started).expect("report");

    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let mut orchestrator = OrchestrationExecutor::new(state.clone(), registry);
    orchestrator.setup(&mut orchestrator_node).await.expect("setup");

    let report = |message: &str| {
        Body::Deployment(DeploymentReport {
            deployment: d.id.clone(),
            generation: 1,
            status: Status::Running,
            message: message.into(),
            container_id: Some("c1".into()),
            host_port: Some(8080),
            address: Some("javascript:alert(1)".into()),
            commit: None,
        })
    };
    let attacker = bus(&url, Some(&attacker_key)).await;
    let unsigned = bus(&url, None).await;
    let worker = bus(&url, Some(&worker_key)).await;
    // In the worker's name, signed with the attacker's key, or unsigned.
    attacker.publish(&Channel::Deployment, &envelope(1, "worker", report("forged"))).await.expect("publish");
    unsigned
        .publish(&Channel::Deployment, &envelope(1, "worker", report("unsigned")))
        .await
        .expect("publish");
    // In its own name, about a deployment it does not run.
    attacker
        .publish(&Channel::Deployment, &envelope(1, "attacker", report("not its own")))
        .await
        .expect("publish");
    let lines = |text: &str| {
        Body::Log(LogBatch {
            deployment: d.id.clone(),
            generation: 99,
            lines: vec![LogEntry { stream: "stdout".into(), line: text.into() }],
        })
    };
    attacker.publish(&Channel::Log, &envelope(1, "attacker", lines("forged line"))).await.expect("publish");
    // A newer epoch from a node that is not the candidate.
    attacker.publish(&Channel::Sysinfo, &sysinfo("attacker", 99)).await.expect("publish");
    // The worker's own report and log line.
    let mut legit = report("legit");
    if let Body::Deployment(r) = &mut legit {
        r.address = Some("http://127.0.0.1:8080".into());
    }
    worker.publish(&Channel::Log, &envelope(1, "worker", lines("real line"))).await.expect("publish");
    worker.publish(&Channel::Sysinfo, &sysinfo("worker", 1)).await.expect("publish");
    worker.publish(&Channel::Deployment, &envelope(1, "worker", legit)).await.expect("publish");

    let deadline = Instant::now() + ARRIVAL;
    let heard_all = || {
        let history_done =
            state.deployment(&d.id).is_some_and(|d| d.status_history.iter().any(|c| c.message == "legit"));
        let logged = state.logs(&d.id, 0, 10).map(|(l, _)| !l.is_empty()).unwrap_or(false);
        let reported = state.node("worker").and_then(|n| n.last_heartbeat).is_some_and(|t| t > started);
        history_done && logged && reported
    };
    while !heard_all() {
        assert!(Instant::now() < deadline, "the worker's messages were not handled in time");
        orchestrator
            .execute(&mut orchestrator_node)
            .await
            .expect("no message makes the orchestrator step down");
    }
    let d = state.deployment(&d.id).expect("deployment");
    let messages: Vec<&str> = d.status_history.iter().map(|c| c.message.as_str()).collect();
    assert!(!messages.iter().any(|m| ["forged", "unsigned", "not its own"].contains(m)), "{messages:?}");
    assert_eq!(d.address.as_deref(), Some("http://127.0.0.1:8080"));
    let (logged, _) = state.logs(&d.id, 0, 10).expect("logs");
    let logged: Vec<&str> = logged.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(logged, ["real line"]);
    assert!(!state.node("attacker").is_some_and(|n| n.up), "the attacker's report of epoch 99 was dropped");

    // The worker is the candidate this orchestrator named (priority 1): its
    // newer epoch means a takeover happened, and the orchestrator steps down.
    assert_eq!(state.node("worker").map(|n| n.rollover_priority), Some(1));
    worker.publish(&Channel::Sysinfo, &sysinfo("worker", 2)).await.expect("publish");
    let deadline = Instant::now() + ARRIVAL;
    loop {
        match orchestrator.execute(&mut orchestrator_node).await {
            Ok(()) => assert!(Instant::now() < deadline, "the candidate's newer epoch was not acted on"),
            Err(ExecutionFailure::Fatal { what: why, .. }) => {
                assert!(why.contains("another orchestrator leads"), "{why}");
                break;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}
