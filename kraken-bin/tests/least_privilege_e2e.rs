//! Least privilege across real agents (an orchestrator and a worker joined
//! through a real RabbitMQ broker): the join token lets a machine join and
//! nothing more, the rollover candidate's replica holds no token in clear,
//! and every file holding a secret is private.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const JOIN_TOKEN: &str = "least-privilege-join-token";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_joined_machine_holds_no_token_and_secrets_are_private() {
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
    let orchestrator = Agent::spawn(
        "up",
        &dir.path().join("o"),
        "127.0.0.1",
        free_port(),
        &["--amqp-url", &account.url(), "--join-token", JOIN_TOKEN, "--node-grace", "3"].map(String::from),
    )
    .expect("orchestrator starts");
    let worker = Agent::spawn(
        "worker",
        &dir.path().join("w"),
        "127.0.0.2",
        free_port(),
        &["--join", &orchestrator.server(), "--join-token", JOIN_TOKEN, "--node-grace", "3"]
            .map(String::from),
    )
    .expect("worker joins");

    // The worker becomes the rollover candidate and holds a replica.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ping = get_json_at(&worker.ip, worker.port, "/ping").unwrap_or(Value::Null);
        if ping["rollover_priority"] == 1 && ping["replica_ready"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never held a replica: {ping}\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = get_json(orchestrator.port, "/api/v1/nodes").expect("nodes");
    let worker_node =
        listed.as_array().into_iter().flatten().find(|n| n["id"] == worker.node_id().as_str()).cloned();
    assert!(
        worker_node.is_some_and(|n| n["public_key"].as_str().is_some_and(|k| k.len() == 64)),
        "the worker's key is registered"
    );

    // No token in clear anywhere on the worker (its replica included) …
    assert!(worker.data_dir.join("replica/state.redb").exists());
    assert_eq!(
        files_containing(&worker.data_dir, TOKEN),
        Vec::<String>::new(),
        "the platform token on the worker"
    );
    assert_eq!(
        files_containing(&worker.data_dir, JOIN_TOKEN),
        Vec::<String>::new(),
        "the join token on the worker"
    );
    // … and on the orchestrator only in the files meant for the CLI.
    assert_eq!(files_containing(&orchestrator.data_dir, TOKEN), ["token"]);
    assert_eq!(files_containing(&orchestrator.data_dir, JOIN_TOKEN), ["join-token"]);

    // Private from creation: the data directories, the tokens, the keys, the databases.
    for (path, want) in [
        (orchestrator.data_dir.clone(), 0o700),
        (orchestrator.data_dir.join("token"), 0o600),
        (orchestrator.data_dir.join("join-token"), 0o600),
        (orchestrator.data_dir.join("node-key"), 0o600),
        (orchestrator.data_dir.join("state"), 0o700),
        (orchestrator.data_dir.join("state/state.redb"), 0o600),
        (worker.data_dir.clone(), 0o700),
        (worker.data_dir.join("node-key"), 0o600),
        (worker.data_dir.join("replica"), 0o700),
        (worker.data_dir.join("replica/state.redb"), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{}", path.display());
    }

    // The join token changes nothing and reads no replica.
    let (status, v) = call(
        orchestrator.port,
        "POST",
        "/api/v1/deployments",
        Some(json!({"url": "https://git.invalid/a.git", "branch": "main"})),
        Some(JOIN_TOKEN),
    );
    assert_eq!(status, 401, "{v}");
    let (status, v) = call(orchestrator.port, "GET", "/api/v1/replica", None, Some(JOIN_TOKEN));
    assert_eq!(status, 403, "{v}");
}

/// Waits until the agent's log contains `needle`.
fn wait_for_log(agent: &Agent, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agent.log().contains(needle) {
        assert!(Instant::now() < deadline, "the log never said {needle:?}:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_machine_with_the_join_token_cannot_command_the_others_on_the_bus() {
    use kraken_lib::auth::NodeKey;
    use kraken_lib::bus::amqp::{AmqpBus, AmqpOptions};
    use kraken_lib::bus::{Body, Bus, Channel, DeploySpec, Envelope, NodeReport, WorkRequest};
    use kraken_lib::shipwreck::Manifest;

    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
    let orchestrator = Agent::spawn(
        "up",
        &dir.path().join("o"),
        "127.0.0.1",
        free_port(),
        &["--amqp-url", &account.url(), "--join-token", JOIN_TOKEN].map(String::from),
    )
    .expect("orchestrator starts");
    let worker = Agent::spawn(
        "worker",
        &dir.path().join("w"),
        "127.0.0.2",
        free_port(),
        &["--join", &orchestrator.server(), "--join-token", JOIN_TOKEN].map(String::from),
    )
    .expect("worker joins");
    let (o_id, w_id) = (orchestrator.node_id(), worker.node_id());

    // The intruder joins with the join token: a node of its own, with the broker's URL.
    let key = std::sync::Arc::new(NodeKey::generate().expect("key"));
    let (status, answer) = call(
        orchestrator.port,
        "POST",
        "/api/v1/join",
        Some(json!({"node_id": "intruder", "name": "intruder", "address": "http://127.0.0.9:8000",
                    "join_token": JOIN_TOKEN, "public_key": key.public().to_string()})),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let amqp_url = answer["amqp_url"].as_str().expect("the broker URL").to_string();
    let epoch = answer["epoch"].as_u64().expect("epoch");

    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::write(repo.path().join("index.html"), "<h1>not yours</h1>").expect("write");
    let manifest = Manifest::parse(
        "shipwreck.toml",
        "[app]\nname = \"forged\"\n[config]\nport = 8080\nlang = \"static\"\n",
        &["static".to_string()],
    )
    .expect("manifest");
    let forged = DeploySpec {
        deployment: "f0f0f0f0f0f0".into(),
        generation: 1,
        url: repo.path().display().to_string(),
        branch: "main".into(),
        commit: "0".repeat(40),
        manifest,
        builder: "static".into(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let bus = AmqpBus::connect(&amqp_url, AmqpOptions::default()).await.expect("the intruder connects");
        bus.sign_with(key.clone());
        let envelope = |from: &str, epoch: u64, body: Body| Envelope { epoch, from: from.into(), body };
        let work = Channel::Work(w_id.clone());
        // Work in the orchestrator's name, and a promotion of itself.
        bus.publish(&work, &envelope(&o_id, epoch, Body::Work(WorkRequest::Deploy(forged))))
            .await
            .expect("publish");
        let promote =
            WorkRequest::Orchestrator { epoch: epoch + 10, address: "http://127.0.0.9:8000".into() };
        bus.publish(&work, &envelope("intruder", epoch + 10, Body::Work(promote))).await.expect("publish");
        // A newer epoch, to make the orchestrator step down.
        let report: NodeReport = serde_json::from_value(json!({
            "node": "intruder", "name": "intruder", "address": "http://127.0.0.9:8000",
            "stats": {"cpu_percent": 0.0, "memory_used_bytes": 0, "memory_total_bytes": 0,
                      "load": [0.0, 0.0, 0.0], "uptime_secs": 0, "cpus": 1},
            "deployments": [],
        }))
        .expect("a node report");
        bus.publish(&Channel::Sysinfo, &envelope("intruder", epoch + 10, Body::Sysinfo(report)))
            .await
            .expect("publish");
    });

    wait_for_log(&worker, "ignoring work not signed by this node's orchestrator");
    wait_for_log(&worker, "ignoring a promotion");
    wait_for_log(&orchestrator, "a newer epoch from a node that is not the rollover candidate");
    assert!(containers_of("f0f0f0f0f0f0").is_empty(), "the forged work was not started");
    let ping = get_json_at(&worker.ip, worker.port, "/ping").expect("ping");
    assert_eq!(ping["orchestrator"], orchestrator.server().as_str(), "{ping}");
    assert_eq!(ping["epoch"], epoch, "{ping}");
    let ping = get_json(orchestrator.port, "/ping").expect("the orchestrator still answers");
    assert_eq!(ping["role"], "orchestrator");
}
