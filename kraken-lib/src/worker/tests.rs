use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::builder::BaseImages;
use crate::bus::memory::MemoryBus;
use crate::bus::DeploySpec;
use crate::bus::{Bus, Envelope};
use crate::deployment::Status;
use crate::node::{NodeConfig, NodeIdentity};
use crate::runtime::{ContainerState, MockRuntime};
use crate::shipwreck::Manifest;

/// Node `n1` on `bus`, fetching local repositories in-process (a unit
/// test has no helper program to run).
fn local_node(data: &std::path::Path, bus: Arc<MemoryBus>) -> GenericNode {
    let mut config = NodeConfig::new(data, "127.0.0.1:0".parse().expect("addr"));
    config.fetch_program = crate::fetcher::FetchProgram::in_process();
    config.allow_local_sources = true;
    GenericNode::new(NodeIdentity { id: "n1".into(), name: "box".into() }, config, bus)
}

/// What every deploying test's engine answers alike: nothing listed, no
/// output, a container that runs, empty samples.
fn quiet_engine(runtime: &mut MockRuntime) {
    runtime.expect_list_managed().returning(|_| Ok(Vec::new()));
    runtime.expect_list_images().returning(|_| Ok(Vec::new()));
    runtime.expect_logs().returning(|_, _, _| futures::stream::empty().boxed());
    runtime.expect_follow_after().returning(|_, _| futures::stream::empty().boxed());
    runtime.expect_inspect().returning(|_| Ok(up()));
    runtime.expect_stats().returning(|_| Ok(ContainerStats::default()));
}

/// The state of a container that runs.
fn up() -> ContainerState {
    ContainerState {
        running: true,
        exit_code: None,
        error: None,
        started_at: None,
        restart_count: 0,
        address: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    }
}

/// The port the mock engine's apps listen on: a listener this test
/// process holds on 127.0.0.1 (the address [`up`] gives every container),
/// so the worker's readiness check connects for real.
fn app_port() -> u16 {
    static LISTENER: std::sync::OnceLock<std::net::TcpListener> = std::sync::OnceLock::new();
    let listener =
        LISTENER.get_or_init(|| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"));
    listener.local_addr().expect("bound").port()
}

/// A git repository holding a static site, and its commit.
fn static_repo(dir: &std::path::Path) -> String {
    let repo = git2::Repository::init(dir).expect("init");
    std::fs::write(dir.join("index.html"), "<h1>hi</h1>").expect("write");
    std::fs::write(
        dir.join("shipwreck.toml"),
        format!("[app]\nname = \"site\"\n[config]\nport = {}\nlang = \"static\"\n", app_port()),
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
    runtime.expect_build_image().returning(move |_, _, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok("sha256:img".to_string())
    });
    runtime.expect_run_container().times(1).returning(|_| Ok(("c1".to_string(), 18080)));
    runtime.expect_logs().returning(|_, _, _| futures::stream::empty().boxed());
    runtime.expect_follow_after().returning(|_, _| futures::stream::empty().boxed());
    runtime.expect_inspect().returning(|_| Ok(up()));
    runtime.expect_keep_restarting().times(1).returning(|_| Ok(()));
    runtime.expect_stats().returning(|_| Ok(ContainerStats::default()));

    let bus = Arc::new(MemoryBus::new());
    let mut config = NodeConfig::new(data.path(), "127.0.0.1:0".parse().expect("addr"));
    config.advertise_host = "127.0.0.1".into();
    // A unit test has no helper program to run; the fetch runs in-process.
    config.fetch_program = crate::fetcher::FetchProgram::in_process();
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
        let next = tokio::time::timeout_at(deadline, reports.next()).await.expect("a Running report in time");
        if let Some(Body::Deployment(r)) = next.map(|d| d.envelope.body) {
            assert_ne!(r.status, Status::Errored, "{}", r.message);
            if r.status == Status::Running {
                running += 1;
                // Served on the port the agent holds, not the container's own.
                let address = r.address.clone().expect("an address");
                let port = address.strip_prefix("http://127.0.0.1:").expect("on the advertised host");
                let port: u16 = port.parse().expect("a port");
                assert_ne!(port, 18080, "{address}");
                std::net::TcpStream::connect(("127.0.0.1", port)).expect("the agent holds the app's port");
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

/// A builder no detection picks: it builds a static site, with a marker
/// in its Dockerfile, only when it is named.
struct Marked(Arc<dyn crate::builder::Builder>);

impl crate::builder::Builder for Marked {
    fn name(&self) -> &str {
        "marked"
    }
    fn description(&self) -> &str {
        "a static site with a marked Dockerfile"
    }
    fn example_manifest(&self) -> String {
        String::new()
    }
    fn detect(&self, _app: &crate::builder::AppFiles) -> Option<String> {
        None
    }
    fn plan(
        &self,
        app: &crate::builder::AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<crate::builder::BuildPlan, crate::builder::BuildError> {
        let mut plan = self.0.plan(app, manifest, images)?;
        plan.builder = "marked".into();
        plan.dockerfile = format!("# marked\n{}", plan.dockerfile);
        Ok(plan)
    }
}

/// Deploys `spec` (its manifest replaced by one without `lang`, so a
/// detection would choose the static builder) on a worker with a mock
/// engine; returns the last report and the Dockerfiles built.
async fn deploy_with_builder(builder: &str) -> (crate::bus::DeploymentReport, Vec<String>) {
    let repo = tempfile::tempdir().expect("tempdir");
    let commit = static_repo(repo.path());
    let data = tempfile::tempdir().expect("tempdir");
    let dockerfiles = Arc::new(Mutex::new(Vec::new()));
    let mut runtime = MockRuntime::new();
    quiet_engine(&mut runtime);
    let seen = dockerfiles.clone();
    runtime.expect_build_image().returning(move |plan, _, _| {
        seen.lock().expect("lock").push(plan.dockerfile.clone());
        Ok("sha256:img".to_string())
    });
    runtime.expect_run_container().returning(|_| Ok(("c1".to_string(), 18080)));
    runtime.expect_keep_restarting().returning(|_| Ok(()));
    runtime.expect_remove_image().returning(|_| Ok(()));

    let bus = Arc::new(MemoryBus::new());
    let mut node = local_node(data.path(), bus.clone());
    let mut registry = BuilderRegistry::with_builtins(BaseImages::uniform("local:base"));
    let static_builder = registry.get("static").expect("static builder").clone();
    registry.register(Marked(static_builder));
    let mut worker = WorkerExecutor::new(Arc::new(runtime), registry);
    worker.setup(&mut node).await.expect("setup");
    let mut reports = bus.subscribe(&Channel::Deployment).await.expect("subscribe");

    let mut spec = spec(repo.path(), &commit, 1);
    let text = format!("[app]\nname = \"site\"\n[config]\nport = {}\n", app_port());
    spec.manifest = Manifest::parse("shipwreck.toml", &text, &[]).expect("manifest");
    spec.builder = builder.to_string();
    node.publish(&Channel::Work("n1".into()), Body::Work(WorkRequest::Deploy(spec))).await.expect("publish");
    worker.execute(&mut node).await.expect("execute");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let last = loop {
        let next = tokio::time::timeout_at(deadline, reports.next()).await.expect("a final report in time");
        if let Some(Body::Deployment(r)) = next.map(|d| d.envelope.body) {
            if matches!(r.status, Status::Running | Status::Errored) {
                break r;
            }
        }
    };
    worker.teardown(&mut node).await;
    let built = dockerfiles.lock().expect("lock").clone();
    (last, built)
}

#[tokio::test]
async fn the_worker_builds_with_the_builder_the_orchestrator_chose() {
    let (report, dockerfiles) = deploy_with_builder("marked").await;
    assert_eq!(report.status, Status::Running, "{}", report.message);
    assert_eq!(dockerfiles.len(), 1);
    assert!(dockerfiles[0].starts_with("# marked\n"), "built with another builder:\n{}", dockerfiles[0]);
}

#[tokio::test]
async fn a_builder_the_worker_lacks_fails_the_deployment_with_what_it_has() {
    let (report, dockerfiles) = deploy_with_builder("cobol").await;
    assert_eq!(report.status, Status::Errored);
    assert!(report.message.contains("`cobol` builder"), "{}", report.message);
    assert!(report.message.contains("does not have"), "{}", report.message);
    assert!(report.message.contains("marked"), "the builders it has are named: {}", report.message);
    assert!(dockerfiles.is_empty(), "nothing was built");
}

#[tokio::test]
async fn a_setup_that_cannot_reach_the_engine_keeps_the_engines_error() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut runtime = MockRuntime::new();
    runtime
        .expect_list_managed()
        .returning(|_| Err(crate::runtime::RuntimeError::Unexpected("no answer".into())));
    let bus = Arc::new(MemoryBus::new());
    let config = NodeConfig::new(data.path(), "127.0.0.1:0".parse().expect("addr"));
    let mut node = GenericNode::new(NodeIdentity { id: "n1".into(), name: "box".into() }, config, bus);
    let mut worker =
        WorkerExecutor::new(Arc::new(runtime), BuilderRegistry::with_builtins(BaseImages::defaults()));
    let failure = worker.setup(&mut node).await.expect_err("setup fails without the engine");
    assert!(matches!(failure, SetupFailure::Retry { .. }), "the runner tries again: {failure:?}");
    assert!(failure.to_string().contains("no answer"), "{failure}");
    let source =
        std::error::Error::source(&failure).and_then(|s| s.downcast_ref::<crate::runtime::RuntimeError>());
    assert!(
        matches!(source, Some(crate::runtime::RuntimeError::Unexpected(m)) if m == "no answer"),
        "{source:?}"
    );
}

#[tokio::test]
async fn an_update_whose_build_fails_keeps_the_previous_version_serving() {
    let repo = tempfile::tempdir().expect("tempdir");
    let commit = static_repo(repo.path());
    let data = tempfile::tempdir().expect("tempdir");
    let builds = Arc::new(AtomicUsize::new(0));
    let mut runtime = MockRuntime::new();
    quiet_engine(&mut runtime);
    let counter = builds.clone();
    runtime.expect_build_image().returning(move |_, _, _| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => Ok("sha256:img".to_string()),
        _ => Err(crate::runtime::RuntimeError::BuildFailed("npm ci exited with 1".into())),
    });
    runtime.expect_run_container().times(1).returning(|_| Ok(("c1".to_string(), 18080)));
    runtime.expect_keep_restarting().returning(|_| Ok(()));
    runtime.expect_remove_container().never();

    let bus = Arc::new(MemoryBus::new());
    let mut node = local_node(data.path(), bus.clone());
    let registry = BuilderRegistry::with_builtins(BaseImages::uniform("local:base"));
    let mut worker = WorkerExecutor::new(Arc::new(runtime), registry);
    worker.setup(&mut node).await.expect("setup");
    let mut reports = bus.subscribe(&Channel::Deployment).await.expect("subscribe");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let work = Channel::Work("n1".into());
    let requests = [
        WorkRequest::Deploy(spec(repo.path(), &commit, 1)),
        WorkRequest::Update(spec(repo.path(), &commit, 2)),
    ];
    let mut finals = Vec::new();
    for request in requests {
        node.publish(&work, Body::Work(request)).await.expect("publish");
        worker.execute(&mut node).await.expect("execute");
        loop {
            let next = tokio::time::timeout_at(deadline, reports.next()).await.expect("a report in time");
            if let Some(Body::Deployment(r)) = next.map(|d| d.envelope.body) {
                if matches!(r.status, Status::Running | Status::Errored) {
                    finals.push(r);
                    break;
                }
            }
        }
    }
    assert_eq!(finals[0].status, Status::Running, "{}", finals[0].message);
    let update = &finals[1];
    assert_eq!((update.generation, update.status), (2, Status::Running), "{}", update.message);
    assert!(update.message.contains("still running the previous commit"), "{}", update.message);
    assert!(update.message.contains("npm ci exited with 1"), "the reason is given: {}", update.message);
    let held = worker.shared.as_ref().and_then(|s| s.active().get("d1").cloned()).expect("held");
    assert_eq!(held.container_id.as_deref(), Some("c1"), "the previous container is still the one held");
    assert!(!held.in_progress);
    worker.teardown(&mut node).await;
}
