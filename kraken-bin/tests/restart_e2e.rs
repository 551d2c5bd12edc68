//! Restarts at the worst moment, end to end, with the real `kraken` binary and
//! Docker engine: whatever status a deployment is in when its agent stops, the
//! agent started again resumes it or fails it cleanly (it ends Running,
//! Errored or Destroyed), never adopts a test container as the app, and
//! removes what the interrupted work left behind. Also: twenty simultaneous
//! deployments of one repository all run, on distinct ports.

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apps::AppRepo;
use chrono::Utc;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::deployment::{Deployment, Desired, Status};
use kraken_lib::node::NodeIdentity;
use kraken_lib::runtime::AppImage;
use kraken_lib::state::{NodeRecord, Role, State, StateLimits};
use serde_json::{json, Value};
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());
const DEPLOY: Duration = Duration::from_secs(300);

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn deployment(agent: &Agent, id: &str) -> Value {
    get_json(agent.port, &format!("/api/v1/deployments/{id}")).unwrap_or(Value::Null)
}

/// Waits until `id` settles in `want`; fails at once if it settles elsewhere.
fn wait_settled(agent: &Agent, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + DEPLOY;
    loop {
        let d = deployment(agent, id);
        let status = d["status"].as_str().unwrap_or_default().to_string();
        if status == want {
            return d;
        }
        let settled = ["Running", "Errored", "Destroyed"].contains(&status.as_str());
        assert!(!settled, "{id} ended {status}, not {want}: {d:#}\n{}", agent.log());
        assert!(Instant::now() < deadline, "{id} still {status} after {DEPLOY:?}: {d:#}\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A stand-in app container as a crashed agent leaves it: an HTTP server from
/// `image`, labelled as the worker labels its apps. Returns its id and address.
fn app_container(image: &str, node: &str, dep: &str, generation: u64) -> (String, String) {
    let id = docker(&[
        "run",
        "-d",
        "--label",
        "kraken.managed=true",
        "--label",
        &format!("kraken.node={node}"),
        "--label",
        &format!("kraken.deployment={dep}"),
        "--label",
        &format!("kraken.generation={generation}"),
        "--label",
        "kraken.role=app",
        "--label",
        "kraken.port=8080",
        "-p",
        "127.0.0.1::8080",
        image,
        "sh",
        "-c",
        "mkdir -p /www && echo adopted > /www/index.html && exec busybox httpd -f -p 8080 -h /www",
    ]);
    let port = docker(&["port", &id, "8080/tcp"]);
    let port = port.lines().next().and_then(|l| l.rsplit(':').next()).expect("a published port").to_string();
    (id, format!("http://127.0.0.1:{port}"))
}

/// The deployment a crashed platform would have stored in `status`: the
/// history that leads there, and what the platform knew by then.
fn crashed_in(
    id: &str,
    repo: &AppRepo,
    status: Status,
    node: &str,
    retrieved: &kraken_lib::retrieval::Retrieved,
) -> Deployment {
    use Status::*;
    let now = Utc::now();
    let mut d = Deployment::new(id.to_string(), repo.url(), "main".into(), now);
    let deploy = [
        ValidatingDeploymentData,
        RetrievingApplicationData,
        DelegatingDeployment,
        BuildingDeployment,
        TestingDeployment,
        Deploying,
        Running,
    ];
    let steps: Vec<Status> = match status {
        DeploymentRequested => Vec::new(),
        s if deploy.contains(&s) => deploy.iter().copied().take_while(|x| *x != s).chain([s]).collect(),
        Errored => deploy[..4].iter().copied().chain([Errored]).collect(),
        UpdateRequested => deploy.iter().copied().chain([UpdateRequested]).collect(),
        s => {
            let removal = [DestructionRequested, DelegatingDestruction, DestructionInProgress, Destroyed];
            let upto: Vec<Status> = removal.iter().copied().take_while(|x| *x != s).chain([s]).collect();
            deploy.iter().copied().chain(upto).collect()
        }
    };
    for s in &steps {
        d.transition(*s, "before the agent stopped", now);
    }
    if steps.contains(&DelegatingDeployment) {
        d.name = Some(retrieved.manifest.app.name.clone());
        d.commit = Some(retrieved.commit.clone());
        d.manifest = Some(retrieved.manifest.clone());
        d.builder = Some(retrieved.detection.builder.clone());
        d.generation = 1;
        d.node = Some(node.to_string());
    }
    if status.is_destruction() {
        d.desired = Desired::Destroyed;
    }
    d
}

/// The containers of `node` with role `role`.
fn of_role(node: &str, role: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=kraken.node={node}"),
        "--filter",
        &format!("label=kraken.role={role}"),
    ])
}

#[test]
fn an_agent_started_again_resumes_or_settles_a_deployment_in_every_status_and_cleans_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::Builder::new().prefix("kraken-restart-").tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let identity = NodeIdentity::load_or_create(&data, Some("e2e-127.0.0.1")).expect("identity");
    let node = identity.id.clone();
    let repo = AppRepo::new("static-site");
    let registry = BuilderRegistry::with_builtins(BaseImages::uniform(&base_image()));
    let fetcher = kraken_lib::fetcher::Fetcher::new(
        kraken_lib::fetcher::FetchProgram::Program(fetch_helper()),
        Default::default(),
        true,
        dir.path(),
    );
    let retrieved = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(kraken_lib::retrieval::retrieve(
            &fetcher,
            true,
            &repo.url(),
            "main",
            &registry,
            &dir.path().join("fetch"),
        ))
        .expect("the fixture reads");
    // An image of this test's own, so that removing a deployment's image never
    // touches the shared base image.
    let image = format!("kraken-restart-test:{}", rand_u32());
    docker(&["tag", &base_image(), &image]);

    // One deployment in every status, as an agent killed at that moment leaves them.
    let mut expected: BTreeMap<String, (Status, &str, Option<String>)> = BTreeMap::new();
    let mut records = Vec::new();
    let mut leftover_test_container = String::new();
    for (i, status) in Status::ALL.iter().enumerate() {
        let id = format!("{:012x}", 0xd00d_0000_u64 + i as u64);
        let mut d = crashed_in(&id, &repo, *status, &node, &retrieved);
        let with_container = matches!(
            status,
            Status::Deploying
                | Status::Running
                | Status::UpdateRequested
                | Status::DestructionRequested
                | Status::DelegatingDestruction
                | Status::DestructionInProgress
        );
        let mut kept = None;
        if with_container {
            let (container, address) = app_container(&image, &node, &id, d.generation);
            if *status != Status::Deploying {
                d.container_id = Some(container.clone());
                d.address = Some(address.clone());
            }
            kept = Some(container);
        }
        if *status == Status::TestingDeployment {
            // The throw-away container of the interrupted test: it carries the
            // image's deployment labels, and a role of its own.
            leftover_test_container = docker(&[
                "create",
                "--label",
                "kraken.managed=true",
                "--label",
                &format!("kraken.node={node}"),
                "--label",
                &format!("kraken.deployment={id}"),
                "--label",
                "kraken.generation=1",
                "--label",
                "kraken.role=test",
                &image,
                "sh",
                "-c",
                "sleep 600",
            ]);
        }
        let end = match status {
            Status::Errored => "Errored",
            s if s.is_destruction() => "Destroyed",
            _ => "Running",
        };
        // What was running keeps running: the very same container.
        let same = kept.filter(|_| end == "Running");
        expected.insert(id.clone(), (*status, end, same));
        records.push(d);
    }
    // The one waiting for a node (none placed yet) in DelegatingDeployment.
    let waiting = format!("{:012x}", 0xd00d_00ff_u64);
    {
        let mut d = crashed_in(&waiting, &repo, Status::RetrievingApplicationData, &node, &retrieved);
        d.commit = Some(retrieved.commit.clone());
        d.manifest = Some(retrieved.manifest.clone());
        d.builder = Some(retrieved.detection.builder.clone());
        d.transition(Status::DelegatingDeployment, "waiting for a node to run it", Utc::now());
        expected.insert(waiting.clone(), (Status::DelegatingDeployment, "Running", None));
        records.push(d);
    }
    {
        let state = State::open(&data.join("state"), StateLimits::default()).expect("state");
        for d in &records {
            state.import_deployment(d).expect("store");
        }
        state
            .import_node(&NodeRecord {
                id: node.clone(),
                name: identity.name.clone(),
                role: Role::Orchestrator,
                address: format!("http://127.0.0.1:{port}"),
                up: true,
                last_heartbeat: Some(Utc::now()),
                rollover_priority: 0,
                drained: false,
                runs_apps: true,
                deployments: Vec::new(),
                stats: Default::default(),
                history: Default::default(),
                public_key: None,
            })
            .expect("store the node");
    }
    // Leftovers of interrupted work: checkouts, an interrupted build's layer
    // (noted beside its checkout), an image built but never run.
    for scratch in ["work/d00d00000005-1/src", "fetch/fetch-x/src", "validate/fetch-y/src"] {
        std::fs::create_dir_all(data.join(scratch)).expect("mkdir");
        std::fs::write(data.join(scratch).join("file"), "left behind").expect("write");
    }
    let build_dir = dir.path().join("build");
    std::fs::create_dir_all(&build_dir).expect("mkdir");
    std::fs::write(build_dir.join("Dockerfile"), format!("FROM {image}\nRUN echo {} > /layer\n", rand_u32()))
        .expect("write");
    let layer = docker(&["build", "-q", &build_dir.display().to_string()]);
    std::fs::write(data.join("work/d00d00000005-1.layers"), format!("{layer}\n")).expect("write");
    // One as an earlier version labelled it, one as this version tags it
    // (no labels).
    let unused = format!("kraken/leftover:{}", rand_u32());
    docker(&[
        "build",
        "-q",
        "-t",
        &unused,
        "--label",
        "kraken.managed=true",
        "--label",
        &format!("kraken.node={node}"),
        &build_dir.display().to_string(),
    ]);
    let unused_tagged = AppImage {
        node: node.clone(),
        app: "leftover".into(),
        deployment: "d00d00000009".into(),
        generation: u64::from(rand_u32()),
    }
    .tag();
    docker(&["build", "-q", "-t", &unused_tagged, &build_dir.display().to_string()]);

    let agent = Agent::start_in(&data, port);
    for (id, (status, end, same)) in &expected {
        let d = wait_settled(&agent, id, end);
        let containers = the_one_container_of(id);
        match *end {
            "Running" => {
                let address = d["address"].as_str().expect("an address");
                http_body(address, Duration::from_secs(20));
                assert_eq!(containers.len(), 1, "{status}: one container: {containers:?}");
                if let Some(same) = same {
                    assert_eq!(&containers[0], same, "{status}: the container found running is adopted");
                }
                let role =
                    docker(&["inspect", "-f", "{{index .Config.Labels \"kraken.role\"}}", &containers[0]]);
                assert_eq!(role, "app", "{status}: the app runs in an app container");
            }
            "Destroyed" => assert!(containers.is_empty(), "{status}: nothing left: {containers:?}"),
            _ => {}
        }
        eprintln!("{status:<26} -> {end}: {:?}", history(&d).iter().rev().take(4).collect::<Vec<_>>());
    }
    assert!(
        docker_lines(&["ps", "-aq", "--no-trunc"]).iter().all(|c| *c != leftover_test_container),
        "the interrupted test's container was removed"
    );
    assert!(of_role(&node, "test").is_empty(), "no test container of this node remains");
    for gone in ["fetch/fetch-x", "validate/fetch-y"] {
        assert!(!data.join(gone).exists(), "{gone} was removed");
    }
    let work: Vec<String> = std::fs::read_dir(data.join("work"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "no checkout or layer list left under work/: {work:?}");
    assert!(
        docker_lines(&["images", "-q", &unused]).is_empty(),
        "the labelled image nothing ran was removed"
    );
    assert!(
        docker_lines(&["images", "-q", &unused_tagged]).is_empty(),
        "the tagged image nothing ran was removed"
    );
    assert!(
        Command::new("docker").args(["image", "inspect", &layer]).output().is_ok_and(|o| !o.status.success()),
        "the interrupted build's layer was removed"
    );
    drop(agent);
    let _ = Command::new("docker").args(["rmi", &image]).output();
}

/// A static site whose image build takes a while (`RUN sleep`), and one whose
/// test command does, so that an agent can be stopped in the middle of them.
fn slow_repos() -> (AppRepo, AppRepo) {
    let building = AppRepo::new("dockerfile-app");
    let dockerfile = std::fs::read_to_string(building.path().join("Dockerfile")).expect("read");
    let slow = dockerfile.replacen('\n', &format!("\nRUN echo {} && sleep 20\n", rand_u32()), 1);
    building.commit(&[("Dockerfile", &slow)], "a slow build");
    let testing = AppRepo::new("static-site");
    let manifest = std::fs::read_to_string(testing.path().join("shipwreck.toml")).expect("read");
    testing.commit(&[("shipwreck.toml", &format!("{manifest}test = \"sleep 20\"\n"))], "a slow test");
    (building, testing)
}

fn wait_in(agent: &Agent, id: &str, status: &str) {
    let deadline = Instant::now() + DEPLOY;
    while deployment(agent, id)["status"] != status {
        assert!(Instant::now() < deadline, "{id} never reached {status}: {:#}", deployment(agent, id));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stopped_with_sigterm_or_sigkill_mid_build_mid_test_or_waiting_every_deployment_still_ends_running() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut agent = Agent::start();
    let data = agent.data_dir.clone();
    let port = agent.port;
    let node = agent.node_id();
    let running_repo = AppRepo::new("node-hello");
    let running = deploy(&agent, &running_repo.url());
    let before = wait_settled(&agent, &running, "Running");
    let running_container = containers_of(&running);

    for how in ["TERM", "KILL"] {
        let (building_repo, testing_repo) = slow_repos();
        let building = deploy(&agent, &building_repo.url());
        let testing = deploy(&agent, &testing_repo.url());
        wait_in(&agent, &building, "BuildingDeployment");
        wait_in(&agent, &testing, "TestingDeployment");
        // The only node drained: a new request waits in DelegatingDeployment.
        let (status, _) = call(port, "POST", &format!("/api/v1/nodes/{node}/drain"), None, Some(TOKEN));
        assert_eq!(status, 202);
        let late_repo = AppRepo::new("static-site");
        let waiting = deploy(&agent, &late_repo.url());
        wait_in(&agent, &waiting, "DelegatingDeployment");
        let test_containers = of_role(&node, "test");
        assert!(!test_containers.is_empty(), "the test command runs in its container");

        if how == "TERM" {
            agent.stop();
        } else {
            agent.kill9();
        }
        let restarted = Agent::start_in(&data, port);
        let (status, _) = call(port, "POST", &format!("/api/v1/nodes/{node}/undrain"), None, Some(TOKEN));
        assert_eq!(status, 202);
        for id in [&building, &testing, &waiting, &running] {
            let d = wait_settled(&restarted, id, "Running");
            http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
            let containers = the_one_container_of(id);
            assert_eq!(containers.len(), 1, "{how}: {id} runs in one container: {containers:?}");
            let role = docker(&["inspect", "-f", "{{index .Config.Labels \"kraken.role\"}}", &containers[0]]);
            assert_eq!(role, "app", "{how}: {id} is never served by its test container");
        }
        let d = deployment(&restarted, &testing);
        let tests = history(&d).iter().filter(|s| *s == "TestingDeployment").count();
        assert!(tests >= 2, "{how}: the interrupted test ran again: {:?}", history(&d));
        assert_eq!(
            containers_of(&running),
            running_container,
            "{how}: the running app was adopted, not rebuilt: {:#}\n{}",
            deployment(&restarted, &running),
            restarted.log()
        );
        assert_eq!(deployment(&restarted, &running)["address"], before["address"]);
        assert_eq!(
            docker(&["port", &running_container[0]]),
            "",
            "{how}: the app's container publishes no port; the agent's proxy serves it"
        );
        for c in &test_containers {
            assert!(
                docker_lines(&["ps", "-aq", "--no-trunc"]).iter().all(|x| !x.starts_with(c.as_str())),
                "{how}: the interrupted test's container {c} is gone"
            );
        }
        let work: Vec<String> = std::fs::read_dir(data.join("work"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        assert!(work.is_empty(), "{how}: nothing left under work/: {work:?}");
        // An update works: nothing is stuck.
        let (status, v) =
            call(port, "POST", &format!("/api/v1/deployments/{testing}/update"), None, Some(TOKEN));
        assert_eq!(status, 202, "{how}: {v}");
        wait_settled(&restarted, &testing, "Running");
        for id in [&building, &testing, &waiting] {
            let (status, _) = call(port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
            assert_eq!(status, 202);
            wait_settled(&restarted, id, "Destroyed");
        }
        std::mem::forget(std::mem::replace(&mut agent, restarted));
    }
}

#[test]
fn twenty_simultaneous_deployments_of_one_repository_run_on_distinct_ports() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let agent = Agent::start();
    let repo = AppRepo::new("static-site");
    let url = repo.url();
    let port = agent.port;
    let ids: Vec<String> = std::thread::scope(|s| {
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let url = url.clone();
                s.spawn(move || {
                    let (status, v) = call(
                        port,
                        "POST",
                        "/api/v1/deployments",
                        Some(json!({"url": url, "branch": "main"})),
                        Some(TOKEN),
                    );
                    assert_eq!(status, 202, "{v}");
                    v["id"].as_str().expect("id").to_string()
                })
            })
            .collect();
        requests.into_iter().map(|r| r.join().expect("a request")).collect()
    });
    let mut ports = BTreeSet::new();
    for id in &ids {
        let d = wait_settled(&agent, id, "Running");
        let address = d["address"].as_str().expect("address").to_string();
        assert!(http_body(&address, Duration::from_secs(20)).contains("hello from a static site"));
        ports.insert(d["host_port"].as_u64().expect("a host port"));
    }
    assert_eq!(ports.len(), 20, "twenty distinct ports: {ports:?}");
    for id in &ids {
        call(port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    }
    for id in &ids {
        wait_settled(&agent, id, "Destroyed");
        assert!(containers_of(id).is_empty());
    }
}

/// The numbers of the `tick N` lines stored for `id`, in the stored order.
fn ticks(agent: &Agent, id: &str) -> Vec<u64> {
    let (mut offset, mut out) = (0, Vec::new());
    loop {
        let page = get_json(agent.port, &format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=1000"))
            .expect("logs");
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        if lines.is_empty() {
            return out;
        }
        let said =
            lines.iter().filter_map(|l| l["line"].as_str()?.strip_prefix("tick ")?.parse::<u64>().ok());
        out.extend(said);
        offset = page["next_offset"].as_u64().expect("next_offset");
    }
}

/// The number of the newest `tick N` line the engine holds for `container`.
fn newest_tick(container: &str) -> u64 {
    let out = Command::new("docker").args(["logs", "--tail", "1", container]).output().expect("docker logs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn what_an_app_prints_while_its_agent_is_stopped_is_stored_once_when_the_agent_adopts_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut agent = Agent::start();
    let data = agent.data_dir.clone();
    let port = agent.port;
    let repo = AppRepo::new("dockerfile-app");
    let serve = "#!/bin/sh\nbusybox httpd -p 9000 -h /www\ni=0\nwhile true; do echo \"tick $i\"; i=$((i+1)); sleep 0.02; done\n";
    repo.commit(&[("serve.sh", serve)], "an app that counts");
    let id = deploy(&agent, &repo.url());
    wait_settled(&agent, &id, "Running");
    let container = containers_of(&id).pop().expect("the app's container");

    for how in ["TERM", "KILL"] {
        let stored = wait_until(|| ticks(&agent, &id).last().copied().filter(|n| *n >= 50));
        if how == "TERM" {
            agent.stop();
        } else {
            agent.kill9();
        }
        let stopped_at = newest_tick(&container);
        // The app goes on printing while no agent runs.
        let printed =
            wait_until(|| Some(newest_tick(&container)).filter(|n| *n > stopped_at.max(stored) + 100));
        let restarted = Agent::start_in(&data, port);
        wait_until(|| ticks(&restarted, &id).last().copied().filter(|n| *n > printed + 20));
        let all = ticks(&restarted, &id);
        let repeats: Vec<_> = all.windows(2).filter(|w| w[1] <= w[0]).collect();
        assert!(
            repeats.is_empty(),
            "{how}: ticks stored twice or out of order: {repeats:?}\n{}",
            restarted.log()
        );
        // Stopped with SIGTERM, the agent stores every line it sent; killed,
        // the lines it had in flight are lost with it (the state commits log
        // lines without a sync anyway), but none printed while no agent ran.
        let complete_from = if how == "TERM" { 0 } else { stopped_at + 1 };
        let gaps: Vec<_> = all.windows(2).filter(|w| w[1] > complete_from && w[1] != w[0] + 1).collect();
        assert!(
            all.first() == Some(&0) && gaps.is_empty(),
            "{how}: ticks missing at {gaps:?}\n{}",
            restarted.log()
        );
        std::mem::forget(std::mem::replace(&mut agent, restarted));
    }
    let (status, _) = call(port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_settled(&agent, &id, "Destroyed");
}

/// Waits (two minutes at most) until `check` gives a value.
fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "the condition did not hold within two minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
}
