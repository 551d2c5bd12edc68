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
