//! Several machines, one platform: three agents as separate processes, each
//! its own node (own data directory, identity and loopback address
//! 127.0.0.x), talking through a real RabbitMQ broker, building on a real
//! Docker engine.
//!
//! The tests share one broker and restart it in one of them, so they run one
//! at a time (a process-wide lock).

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apps::AppRepo;
use serde_json::Value;
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());
const DEPLOY: Duration = Duration::from_secs(240);
const JOIN_TOKEN: &str = "e2e-join-token-0123";

struct Cluster {
    orchestrator: Agent,
    workers: Vec<Agent>,
    _dir: tempfile::TempDir,
}

/// Every agent here runs with the default settings (heartbeat 0.5 s, node grace 2 s).
fn orchestrator_args(amqp: &str) -> Vec<String> {
    ["--amqp-url", amqp, "--join-token", JOIN_TOKEN].map(String::from).to_vec()
}

fn worker_args(orchestrator: &Agent, token: &str) -> Vec<String> {
    ["--join", &orchestrator.server(), "--join-token", token].map(String::from).to_vec()
}

fn start_cluster(account: &BrokerAccount, workers: usize) -> Cluster {
    let dir = tempfile::Builder::new().prefix("kraken-multi-").tempdir().expect("tempdir");
    let orchestrator = Agent::spawn(
        "up",
        &dir.path().join("o"),
        "127.0.0.1",
        free_port(),
        &orchestrator_args(&account.url()),
    )
    .expect("orchestrator starts");
    let workers: Vec<Agent> = (0..workers)
        .map(|i| {
            let ip = format!("127.0.0.{}", i + 2);
            Agent::spawn(
                "worker",
                &dir.path().join(format!("w{i}")),
                &ip,
                free_port(),
                &worker_args(&orchestrator, JOIN_TOKEN),
            )
            .expect("worker joins")
        })
        .collect();
    let cluster = Cluster { orchestrator, workers, _dir: dir };
    wait_nodes_up(&cluster.orchestrator, 1 + workers_len(&cluster), Duration::from_secs(30));
    cluster
}

fn workers_len(c: &Cluster) -> usize {
    c.workers.len()
}

fn nodes(o: &Agent) -> Vec<Value> {
    get_json(o.port, "/api/v1/nodes").expect("nodes").as_array().cloned().unwrap_or_default()
}

fn wait_nodes_up(o: &Agent, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let up = nodes(o).iter().filter(|n| n["up"] == true).count();
        if up == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{up} of {count} nodes up after {timeout:?}:\n{:#?}\n{}",
            nodes(o),
            o.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn six_apps_spread_over_three_nodes_and_move_when_a_machine_dies() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    let mut cluster = start_cluster(&account, 2);
    let o = &cluster.orchestrator;
    let listed = nodes(o);
    let priorities: BTreeSet<u64> = listed.iter().filter_map(|n| n["rollover_priority"].as_u64()).collect();
    assert_eq!(priorities.len(), 3, "every node has its own rollover priority: {listed:#?}");
    assert!(listed.iter().any(|n| n["role"] == "orchestrator" && n["rollover_priority"] == 0));

    let fixtures = [
        ("node-hello", "hello from node"),
        ("python-hello", "hello from python"),
        ("static-site", "hello from a static site"),
        ("dockerfile-app", "hello from a dockerfile"),
        ("node-hello", "hello from node"),
        ("static-site", "hello from a static site"),
    ];
    let repos: Vec<AppRepo> = fixtures.iter().map(|(name, _)| AppRepo::new(name)).collect();
    let ids: Vec<String> = repos.iter().map(|r| deploy(o, &r.url())).collect();
    let mut placed: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let d = wait_status(o, id, "Running", DEPLOY);
        let body = http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
        assert!(body.contains(fixtures[i].1), "{id} answered {body:?}");
        placed.entry(d["node"].as_str().expect("node").to_string()).or_default().push(i);
        let placement = d["status_history"].as_array().into_iter().flatten().any(|c| {
            c["status"] == "DelegatingDeployment"
                && c["message"].as_str().unwrap_or("").contains("least loaded")
        });
        assert!(placement, "the placement and its reason are in the history: {d:#}");
    }
    assert_eq!(placed.len(), 3, "the six apps spread over the three nodes: {placed:?}");

    // A machine dies: its agent is killed and its containers go with it.
    let victim = cluster.workers.pop().expect("a worker");
    let victim_id = victim.node_id();
    let moved: Vec<usize> = placed.get(&victim_id).cloned().unwrap_or_default();
    assert!(!moved.is_empty());
    let mut victim = victim;
    let t0 = Instant::now();
    victim.kill9();
    victim.remove_containers();
    let o = &cluster.orchestrator;
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes(o).iter().any(|n| n["id"] == victim_id.as_str() && n["up"] == true) {
        assert!(Instant::now() < deadline, "the dead node was never marked down");
        std::thread::sleep(Duration::from_millis(100));
    }
    let detected = t0.elapsed();
    for &i in &moved {
        let deadline = Instant::now() + DEPLOY;
        let d = loop {
            let d = get_json(o.port, &format!("/api/v1/deployments/{}", ids[i])).expect("deployment");
            if d["status"] == "Running" && d["node"] != victim_id.as_str() {
                break d;
            }
            assert!(Instant::now() < deadline, "{} never ran elsewhere: {d:#}\n{}", ids[i], o.log());
            std::thread::sleep(Duration::from_millis(200));
        };
        let body = http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
        assert!(body.contains(fixtures[i].1));
        assert!(
            d["status_history"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["message"].as_str().unwrap_or("").contains("is down")),
            "the history says why it moved: {d:#}"
        );
    }
    let rescheduled = t0.elapsed();
    eprintln!(
        "MEASURED failure detection (default settings) {:.1} s, all {} deployments running elsewhere {:.1} s after the machine died",
        detected.as_secs_f64(),
        moved.len(),
        rescheduled.as_secs_f64()
    );
    for id in &ids {
        let (status, _) = call(o.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
        assert_eq!(status, 202);
    }
    for id in &ids {
        wait_status(o, id, "Destroyed", DEPLOY);
    }
}

#[test]
fn a_broker_restart_under_load_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    // After the broker comes back, nodes get the grace plus the longest
    // reconnect back-off (5 s) before anyone is judged silent.
    let cluster = start_cluster(&account, 1);
    let o = &cluster.orchestrator;
    let repos: Vec<AppRepo> =
        ["node-hello", "python-hello", "static-site"].iter().map(|n| AppRepo::new(n)).collect();
    let mut ids = vec![deploy(o, &repos[0].url()), deploy(o, &repos[1].url())];
    let t0 = Instant::now();
    rabbitmqctl(&["stop_app"]);
    // A request while the broker is away is accepted and kept.
    ids.push(deploy(o, &repos[2].url()));
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    eprintln!("MEASURED broker down for {:.1} s", t0.elapsed().as_secs_f64());
    for id in &ids {
        let d = wait_status(o, id, "Running", DEPLOY);
        http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
    }
    wait_nodes_up(o, 2, Duration::from_secs(60));
    // Give replayed messages time to arrive, then check nothing ran twice.
    std::thread::sleep(Duration::from_secs(3));
    let list = get_json(o.port, "/api/v1/deployments").expect("list");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "no deployment lost or added: {list:#}");
    for id in &ids {
        let d = get_json(o.port, &format!("/api/v1/deployments/{id}")).expect("get");
        assert_eq!(the_one_container_of(id).len(), 1, "exactly one container for {id}: {d:#}\n{}", o.log());
    }
    for id in &ids {
        call(o.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    }
    for id in &ids {
        wait_status(o, id, "Destroyed", DEPLOY);
        assert!(containers_of(id).is_empty());
    }
}

#[test]
fn a_node_with_a_wrong_join_token_is_refused_and_garbage_is_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    let cluster = start_cluster(&account, 0);
    let o = &cluster.orchestrator;
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = Agent::spawn(
        "worker",
        &dir.path().join("w"),
        "127.0.0.4",
        free_port(),
        &worker_args(o, "not-the-join-token"),
    );
    let err = refused.err().expect("refused");
    assert!(err.contains("join token is wrong"), "{err}");
    assert_eq!(nodes(o).len(), 1, "the refused node was not added");

    // `kraken up` on another machine finds the platform (a scan of its subnet) and joins it.
    let scanner = Agent::spawn(
        "up",
        &dir.path().join("scanner"),
        "127.0.0.3",
        o.port,
        &["--scan-subnet", "127.0.0.0/30", "--join-token", JOIN_TOKEN].map(String::from),
    )
    .expect("kraken up joins the platform it finds");
    wait_nodes_up(o, 2, Duration::from_secs(30));
    let joined = nodes(o).into_iter().find(|n| n["id"] == scanner.node_id().as_str()).expect("listed");
    assert_eq!(joined["role"], "worker");
    let ping = get_json_at("127.0.0.3", o.port, "/ping").expect("ping");
    assert_eq!(ping["role"], "worker");
    assert_eq!(ping["orchestrator"], o.server().as_str());
    // Found without a join token: told what to pass.
    let err = Agent::spawn(
        "up",
        &dir.path().join("tokenless"),
        "127.0.0.2",
        o.port,
        &["--scan-subnet".to_string(), "127.0.0.0/30".to_string()],
    )
    .err()
    .expect("refused without a join token");
    assert!(err.contains("--join-token"), "{err}");
    drop(scanner);

    // Garbage on every queue the orchestrator reads.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let conn = lapin::Connection::connect(&account.url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        for queue in ["kraken.deployment", "kraken.sysinfo", "kraken.log"] {
            for payload in [&b"\xff\xfe not json"[..], b"{\"epoch\":1}", b"[]"] {
                ch.basic_publish(
                    "",
                    queue,
                    lapin::options::BasicPublishOptions::default(),
                    payload,
                    lapin::BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            }
        }
        let _ = conn.close(0, "done").await;
    });
    let repo = AppRepo::new("static-site");
    let id = deploy(o, &repo.url());
    wait_status(o, &id, "Running", DEPLOY);
    assert!(o.log().contains("not an envelope"), "the garbage was logged and dropped:\n{}", o.log());
    call(o.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    wait_status(o, &id, "Destroyed", DEPLOY);

    // A single-machine platform (no broker) tells a joining node why it cannot join.
    let single = Agent::start();
    let err =
        Agent::spawn("worker", &dir.path().join("w2"), "127.0.0.5", free_port(), &worker_args(&single, "x"))
            .err()
            .expect("refused");
    assert!(err.contains("--amqp-url"), "{err}");
}

#[test]
fn an_orchestrator_without_a_broker_starts_its_own_with_generated_credentials() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let image =
        std::env::var("KRAKEN_TEST_BROKER_IMAGE").unwrap_or_else(|_| "kraken-test-rabbitmq:bookworm".into());
    let _ = Command::new("docker").args(["rm", "-f", "kraken-broker"]).output();
    let dir = tempfile::Builder::new().prefix("kraken-broker-").tempdir().expect("tempdir");
    let broker_port = free_port();
    let started = Instant::now();
    let o = Agent::spawn(
        "orchestrator",
        &dir.path().join("o"),
        "127.0.0.1",
        free_port(),
        &["--broker-image", &image, "--broker-port", &broker_port.to_string(), "--join-token", JOIN_TOKEN]
            .map(String::from),
    );
    let o = match o {
        Ok(o) => o,
        Err(log) => panic!("the orchestrator did not start with its own broker:\n{log}"),
    };
    eprintln!(
        "MEASURED orchestrator with its own broker answering after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The broker runs as a container with credentials made for this platform.
    let env = docker_lines(&["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", "kraken-broker"]);
    let user =
        env.iter().find_map(|e| e.strip_prefix("RABBITMQ_DEFAULT_USER=")).expect("a broker user").to_string();
    assert!(user.starts_with("kraken-") && user != "guest", "{user}");
    // A worker joins through it; apps run on the worker, not on the orchestrator-only node.
    let w =
        Agent::spawn("worker", &dir.path().join("w"), "127.0.0.2", free_port(), &worker_args(&o, JOIN_TOKEN))
            .expect("worker joins");
    wait_nodes_up(&o, 2, Duration::from_secs(60));
    let repo = AppRepo::new("static-site");
    let id = deploy(&o, &repo.url());
    let d = wait_status(&o, &id, "Running", DEPLOY);
    assert_eq!(d["node"], w.node_id().as_str());
    http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
    call(o.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    wait_status(&o, &id, "Destroyed", DEPLOY);
    drop(w);
    drop(o);
    let _ = Command::new("docker").args(["rm", "-f", "kraken-broker"]).output();
}

#[test]
fn draining_a_node_moves_its_deployments_and_places_nothing_new_there() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    let cluster = start_cluster(&account, 1);
    let o = &cluster.orchestrator;
    let o_id = o.node_id();
    let w_id = cluster.workers[0].node_id();
    // Everything goes to the worker while the orchestrator's node is drained.
    assert_eq!(call(o.port, "POST", &format!("/api/v1/nodes/{o_id}/drain"), None, Some(TOKEN)).0, 202);
    let repo = AppRepo::new("static-site");
    let id = deploy(o, &repo.url());
    assert_eq!(wait_status(o, &id, "Running", DEPLOY)["node"], w_id.as_str());
    // Drain the worker and let the orchestrator's node take work again: the app moves.
    assert_eq!(call(o.port, "POST", &format!("/api/v1/nodes/{o_id}/undrain"), None, Some(TOKEN)).0, 202);
    assert_eq!(call(o.port, "POST", &format!("/api/v1/nodes/{w_id}/drain"), None, Some(TOKEN)).0, 202);
    let deadline = Instant::now() + DEPLOY;
    let d = loop {
        let d = get_json(o.port, &format!("/api/v1/deployments/{id}")).expect("deployment");
        if d["status"] == "Running" && d["node"] == o_id.as_str() {
            break d;
        }
        assert!(Instant::now() < deadline, "never moved off the drained node: {d:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        d["status_history"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["message"].as_str().unwrap_or("").contains("drained")),
        "the history says why it moved: {d:#}"
    );
    http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_of(&id).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the drained node's container was not removed: {:?}",
            containers_of(&id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let nodes = get_json(o.port, "/api/v1/nodes").expect("nodes");
    assert!(nodes.as_array().into_iter().flatten().any(|n| n["id"] == w_id.as_str() && n["drained"] == true));
    // Nothing new lands on the drained node.
    let second = AppRepo::new("node-hello");
    let id2 = deploy(o, &second.url());
    assert_eq!(wait_status(o, &id2, "Running", DEPLOY)["node"], o_id.as_str());
    for id in [&id, &id2] {
        call(o.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
        wait_status(o, id, "Destroyed", DEPLOY);
    }
}
