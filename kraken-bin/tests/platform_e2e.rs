//! A whole platform on one machine, end to end: the real `kraken` binary on a
//! loopback port, a real Docker engine, fixture apps in git repositories made
//! by the test, driven through the CLI and through the HTTP API.

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use std::time::Duration;

use apps::AppRepo;
use serde_json::{json, Value};
use support::*;

const DEPLOY: Duration = Duration::from_secs(180);

#[test]
fn deploy_update_and_destroy_through_the_cli_and_the_api() {
    let agent = Agent::start();

    // Through the CLI, following the progress.
    let node_repo = AppRepo::new("node-hello");
    let out = agent.cli(&["deploy", &node_repo.url(), "--branch", "main", "--follow"]);
    let shown = text(&out);
    assert!(out.status.success(), "deploy --follow succeeds:\n{shown}\n{}", agent.log());
    for step in ["RetrievingApplicationData", "BuildingDeployment", "Deploying", "Running"] {
        assert!(shown.contains(step), "progress shows {step}:\n{shown}");
    }
    assert!(shown.contains("[build]"), "the build log is shown:\n{shown}");
    let ps = agent.cli(&["ps", "--json"]);
    let list: Value = serde_json::from_slice(&ps.stdout).expect("ps --json prints JSON");
    let node_id =
        list.as_array().and_then(|l| l.first()).and_then(|d| d["id"].as_str()).expect("listed").to_string();
    let d = wait_status(&agent, &node_id, "Running", DEPLOY);
    assert_eq!(d["commit"], node_repo.head().as_str());
    let address = d["address"].as_str().expect("address").to_string();
    assert!(address.starts_with("http://127.0.0.1:"), "{address}");
    assert_eq!(http_body(&address, Duration::from_secs(20)).trim(), "hello from node");
    wait_log(&agent, &node_id, "node-hello listening on port 3000", Duration::from_secs(20));
    let steps = history(&d);
    for s in [
        "DeploymentRequested",
        "ValidatingDeploymentData",
        "RetrievingApplicationData",
        "DelegatingDeployment",
        "BuildingDeployment",
        "Deploying",
        "Running",
    ] {
        assert!(steps.iter().any(|h| h == s), "history has {s}: {steps:?}");
    }

    // A second app wanting the same port gets another free one.
    let twin_repo = AppRepo::new("node-hello");
    let (status, created) = call(
        agent.port,
        "POST",
        "/api/v1/deployments",
        Some(json!({"url": twin_repo.url(), "branch": "main"})),
        Some(TOKEN),
    );
    assert_eq!(status, 202);
    let twin_id = created["id"].as_str().expect("id").to_string();
    let twin = wait_status(&agent, &twin_id, "Running", DEPLOY);
    let twin_address = twin["address"].as_str().expect("address").to_string();
    assert_ne!(twin_address, address, "two apps on port 3000 get different host ports");
    assert_eq!(http_body(&twin_address, Duration::from_secs(20)).trim(), "hello from node");
    assert_eq!(http_body(&address, Duration::from_secs(20)).trim(), "hello from node");
    let (status, _) =
        call(agent.port, "DELETE", &format!("/api/v1/deployments/{twin_id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_status(&agent, &twin_id, "Destroyed", DEPLOY);

    // Through the API.
    let py_repo = AppRepo::new("python-hello");
    let (status, created) = call(
        agent.port,
        "POST",
        "/api/v1/deployments",
        Some(json!({"url": py_repo.url(), "branch": "main"})),
        Some(TOKEN),
    );
    assert_eq!(status, 202, "{created}");
    let py_id = created["id"].as_str().expect("id").to_string();
    let d = wait_status(&agent, &py_id, "Running", DEPLOY);
    assert!(
        history(&d).iter().any(|s| s == "TestingDeployment"),
        "the manifest's test ran: {:?}",
        history(&d)
    );
    assert_eq!(
        http_body(d["address"].as_str().expect("address"), Duration::from_secs(20)).trim(),
        "hello from python"
    );
    wait_log(&agent, &py_id, "python-hello listening on port 5000", Duration::from_secs(20));

    // Update after a new commit on the branch serves the new content.
    let manifest = std::fs::read_to_string(node_repo.path().join("shipwreck.toml")).expect("read");
    let new_head = node_repo.commit(
        &[("shipwreck.toml", &manifest.replace("hello from node", "hello again from node"))],
        "new greeting",
    );
    let out = agent.cli(&["update", &node_id, "--follow"]);
    assert!(out.status.success(), "update --follow succeeds:\n{}\n{}", text(&out), agent.log());
    let d = wait_status(&agent, &node_id, "Running", DEPLOY);
    assert_eq!(d["commit"], new_head.as_str());
    let address = d["address"].as_str().expect("address");
    assert_eq!(http_body(address, Duration::from_secs(20)).trim(), "hello again from node");
    assert_eq!(
        the_one_container_of(&node_id).len(),
        1,
        "the old container was replaced, not kept beside the new one"
    );

    // Destroy through the CLI and through the API: no container remains.
    let out = agent.cli(&["rm", &node_id, "--wait"]);
    assert!(out.status.success(), "rm --wait succeeds:\n{}", text(&out));
    let (status, _) = call(agent.port, "DELETE", &format!("/api/v1/deployments/{py_id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_status(&agent, &py_id, "Destroyed", DEPLOY);
    wait_status(&agent, &node_id, "Destroyed", DEPLOY);
    assert!(containers_of(&node_id).is_empty(), "node-hello's container is gone");
    assert!(containers_of(&py_id).is_empty(), "python-hello's container is gone");
    let out = agent.cli(&["ps"]);
    assert!(!text(&out).contains(&py_id), "destroyed deployments are hidden from ps");
    let out = agent.cli(&["ps", "--all"]);
    assert!(text(&out).contains(&py_id), "and shown with --all");
}

#[test]
fn static_and_dockerfile_apps_run_and_answer() {
    let agent = Agent::start();
    let mut ids = Vec::new();
    for (app, body) in
        [("static-site", "hello from a static site"), ("dockerfile-app", "hello from a dockerfile")]
    {
        let repo = AppRepo::new(app);
        let out = agent.cli(&["deploy", &repo.url(), "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let id = v["id"].as_str().expect("id").to_string();
        let d = wait_status(&agent, &id, "Running", DEPLOY);
        assert!(http_body(d["address"].as_str().expect("address"), Duration::from_secs(20)).contains(body));
        // One fetch per deployment: the worker of this agent builds the tree
        // its orchestrator fetched to read the request, at that commit.
        let log = wait_log(&agent, &id, "fetched when the request was read", Duration::from_secs(20));
        assert!(log.contains(&format!("at {}", repo.head())), "the tree of the commit read:\n{log}");
        assert!(!log.contains("fetching "), "the worker did not fetch again:\n{log}");
        ids.push((id, repo));
    }
    wait_log(&agent, &ids[1].0, "dockerfile-app serving /www on port 9000", Duration::from_secs(20));

    // `kraken logs -f` follows the log live (server-sent events).
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_kraken"))
        .args(["--server", &agent.server(), "--token", TOKEN, "logs", "-f", &ids[1].0])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f starts");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("dockerfile-app serving")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("logs -f printed no start-up line: {seen:?}"),
        }
    }
    // New output arrives while following: the app logs each request.
    let address = get_json(agent.port, &format!("/api/v1/deployments/{}", ids[1].0)).expect("get")["address"]
        .as_str()
        .expect("address")
        .to_string();
    while rx.try_recv().is_ok() {}
    http_body(&format!("{address}/index.html"), Duration::from_secs(10));
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("a live line after a request");
    assert!(!line.trim().is_empty(), "the request's log line arrived while following");
    let _ = follower.kill();
    let _ = follower.wait();

    // Resource use from Docker stats is sampled and kept as a short history.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = get_json(agent.port, &format!("/api/v1/deployments/{}", ids[0].0)).expect("get");
        let samples = d["stats_history"].as_array().map_or(0, Vec::len);
        if samples >= 2 && d["stats"]["memory_bytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no resource samples: {d:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for (id, _) in &ids {
        let out = agent.cli(&["rm", id, "--wait"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(containers_of(id).is_empty());
    }
}

#[test]
fn broken_apps_end_errored_with_the_reason_and_their_log() {
    let agent = Agent::start();

    let broken = AppRepo::new("broken-build");
    let out = agent.cli(&["deploy", &broken.url(), "--follow"]);
    assert_eq!(out.status.code(), Some(1), "a failed deployment exits 1:\n{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("error: this build always fails"), "the build log is shown:\n{shown}");
    let list: Value = serde_json::from_slice(&agent.cli(&["ps", "--json"]).stdout).expect("json");
    let broken_id = list[0]["id"].as_str().expect("id").to_string();
    let d = wait_status(&agent, &broken_id, "Errored", DEPLOY);
    assert!(d["error"].as_str().unwrap_or("").contains("build failed"), "{d:#}");
    assert!(log_text(&agent, &broken_id).contains("compiling the broken app"));
    assert!(containers_of(&broken_id).is_empty(), "nothing left running");

    let crashing = AppRepo::new("exits-at-once");
    let (status, created) =
        call(agent.port, "POST", "/api/v1/deployments", Some(json!({"url": crashing.url()})), Some(TOKEN));
    assert_eq!(status, 202);
    let id = created["id"].as_str().expect("id").to_string();
    let d = wait_status(&agent, &id, "Errored", DEPLOY);
    let reason = d["error"].as_str().unwrap_or("");
    assert!(reason.contains("exited with code 3"), "{reason}");
    let log = wait_log(&agent, &id, "exits-at-once starting", Duration::from_secs(10));
    assert!(log.contains("fatal: missing configuration"), "stderr is in the log too:\n{log}");
    assert!(containers_of(&id).is_empty(), "the crashed container was removed");

    // A repository that does not exist, and a branch without a manifest.
    let (status, created) = call(
        agent.port,
        "POST",
        "/api/v1/deployments",
        Some(json!({"url": "/nonexistent/repo", "branch": "main"})),
        Some(TOKEN),
    );
    assert_eq!(status, 202);
    let d = wait_status(&agent, created["id"].as_str().expect("id"), "Errored", DEPLOY);
    assert!(d["error"].as_str().unwrap_or("").contains("/nonexistent/repo"), "{d:#}");
    let out = agent.cli(&["validate", &crashing.url(), "--branch", "nope"]);
    assert_eq!(out.status.code(), Some(4), "validation refusal exits 4: {}", text(&out));
    assert!(text(&out).contains("nope") && text(&out).contains("main"), "{}", text(&out));
}

#[test]
fn a_restart_keeps_deployments_and_their_containers() {
    let mut agent = Agent::start();
    let port = agent.port;
    let data_dir = agent.data_dir.clone();
    let node_repo = AppRepo::new("node-hello");
    let static_repo = AppRepo::new("static-site");
    let mut ids = Vec::new();
    for repo in [&node_repo, &static_repo] {
        let (status, created) =
            call(port, "POST", "/api/v1/deployments", Some(json!({"url": repo.url()})), Some(TOKEN));
        assert_eq!(status, 202);
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let before: Vec<Value> = ids.iter().map(|id| wait_status(&agent, id, "Running", DEPLOY)).collect();
    let containers: Vec<Vec<String>> = ids.iter().map(|id| containers_of(id)).collect();
    assert!(containers.iter().all(|c| c.len() == 1), "{containers:?}");

    let late_repo = AppRepo::new("python-hello");
    let mut late = None;
    for (round, how) in ["SIGTERM", "SIGKILL"].iter().enumerate() {
        if *how == "SIGTERM" {
            agent.stop();
        } else {
            // A request acknowledged just before a crash is not lost.
            let (status, created) =
                call(port, "POST", "/api/v1/deployments", Some(json!({"url": late_repo.url()})), Some(TOKEN));
            assert_eq!(status, 202);
            late = created["id"].as_str().map(String::from);
            agent.kill9();
        }
        // The apps keep running while the agent is away (their addresses,
        // held by the agent, answer again once it is back).
        for c in containers.iter().flatten() {
            assert_eq!(docker_lines(&["inspect", "-f", "{{.State.Running}}", c]), ["true"], "round {round}");
        }
        let restarted = Agent::start_in(&data_dir, port);
        for (i, id) in ids.iter().enumerate() {
            let d = wait_status(&restarted, id, "Running", Duration::from_secs(30));
            let old = history(&before[i]);
            let now = history(&d);
            assert!(
                now.len() >= old.len() && now[..old.len()] == old[..],
                "round {round}: history kept: {old:?} vs {now:?}"
            );
            let builds = now.iter().filter(|s| *s == "BuildingDeployment").count();
            assert_eq!(builds, 1, "round {round} ({how}): nothing rebuilt: {now:?}");
            assert_eq!(containers_of(id), containers[i], "round {round} ({how}): the same container serves");
            assert_eq!(d["address"], before[i]["address"]);
            http_body(d["address"].as_str().expect("address"), Duration::from_secs(10));
        }
        // Still re-adopted after a few heartbeats, not rescheduled.
        std::thread::sleep(Duration::from_secs(3));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(containers_of(id), containers[i]);
        }
        assert!(log_text(&restarted, &ids[0]).contains("node-hello listening"), "logs survive the restart");
        // Hand the data directory to the next round.
        std::mem::forget(std::mem::replace(&mut agent, restarted));
    }
    let late = late.expect("the late request's id");
    let d = wait_status(&agent, &late, "Running", DEPLOY);
    assert_eq!(d["status_history"][0]["status"], "DeploymentRequested");
    http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
    ids.push(late);
    for id in &ids {
        let out = agent.cli(&["rm", id, "--wait"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(containers_of(id).is_empty());
    }
}

#[test]
fn unauthorised_and_malformed_requests_are_refused() {
    let agent = Agent::start();
    let repo = AppRepo::new("static-site");
    let (status, v) = call(agent.port, "POST", "/api/v1/deployments", Some(json!({"url": repo.url()})), None);
    assert_eq!(status, 401, "{v}");
    let (status, _) = call(
        agent.port,
        "POST",
        "/api/v1/deployments",
        Some(json!({"url": repo.url()})),
        Some("not-the-token"),
    );
    assert_eq!(status, 401);
    let out = cli(&agent.server(), "not-the-token", &["deploy", &repo.url()]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("token"), "{}", text(&out));
    let (status, v) =
        call(agent.port, "POST", "/api/v1/deployments", Some(json!({"branch": "main"})), Some(TOKEN));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().is_some());
    let (status, _) = call(agent.port, "GET", "/api/v1/deployments/does-not-exist", None, None);
    assert_eq!(status, 404);
    let (_, list) = call(agent.port, "GET", "/api/v1/deployments", None, None);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was created: {list}");
    let unreachable = cli(&format!("http://127.0.0.1:{}", free_port()), TOKEN, &["ps"]);
    assert_eq!(unreachable.status.code(), Some(3), "{}", text(&unreachable));
}

#[test]
fn the_original_format_validates_and_deploys_as_written_with_a_build_ca() {
    let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
    let ca = "/etc/ssl/certs/ca-certificates.crt".to_string();
    let extra: Vec<String> =
        if std::path::Path::new(&ca).is_file() { vec!["--build-ca".into(), ca] } else { Vec::new() };
    let agent = Agent::spawn("up", &dir.path().join("data"), "127.0.0.1", free_port(), &extra)
        .expect("kraken up answers");
    let repo = AppRepo::new("original-format");
    let out = agent.cli(&["validate", &repo.url()]);
    let shown = text(&out);
    assert!(out.status.success(), "validate succeeds:\n{shown}");
    assert!(
        shown.contains(
            "ok: `scapenode` on port 7211 built by the node builder (lang = \"node\" in shipwreck.toml)"
        ),
        "{shown}"
    );
    assert!(shown.contains("start    npm start"), "the start command is shown:\n{shown}");
    assert!(shown.contains("because: `run` in shipwreck.toml"), "and why:\n{shown}");
    assert!(shown.contains(&format!("image    {}", base_image())), "the base image is shown:\n{shown}");

    let out = agent.cli(&["deploy", &repo.url(), "--branch", "main", "--follow"]);
    assert!(out.status.success(), "deploy --follow succeeds:\n{}\n{}", text(&out), agent.log());
    let ps = agent.cli(&["ps", "--json"]);
    let list: Value = serde_json::from_slice(&ps.stdout).expect("ps --json prints JSON");
    let id =
        list.as_array().and_then(|l| l.first()).and_then(|d| d["id"].as_str()).expect("listed").to_string();
    let d = wait_status(&agent, &id, "Running", DEPLOY);
    assert_eq!(d["manifest"]["app"]["endpoint"], "https://github.com/ethanshry/scapenode");
    assert_eq!(
        http_body(d["address"].as_str().expect("address"), Duration::from_secs(20)).trim(),
        "hello from scapenode"
    );
    let (status, _) = call(agent.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_status(&agent, &id, "Destroyed", DEPLOY);
}

#[test]
fn a_build_ca_that_is_not_a_certificate_stops_kraken_up_with_the_reason() {
    let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
    let bad = dir.path().join("not-a-cert.txt");
    std::fs::write(&bad, "hello").expect("write");
    let extra = vec!["--build-ca".to_string(), bad.display().to_string()];
    let err = Agent::spawn("up", &dir.path().join("data"), "127.0.0.1", free_port(), &extra)
        .err()
        .expect("kraken up refuses the file");
    assert!(err.contains("holds no PEM certificate"), "{err}");
    assert!(err.contains("not-a-cert.txt"), "{err}");
}

#[test]
fn a_missing_fetch_helper_stops_kraken_up_saying_how_to_get_it() {
    let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-kraken-fetch");
    let extra = vec!["--fetch-helper".to_string(), missing.display().to_string()];
    let err = Agent::spawn("up", &dir.path().join("data"), "127.0.0.1", free_port(), &extra)
        .err()
        .expect("kraken up refuses to start without its fetch helper");
    assert!(err.contains("no-such-kraken-fetch is missing or not executable"), "{err}");
    assert!(err.contains("cargo build --release -p kraken-bin -p kraken-lib --bins"), "{err}");
    assert!(err.contains("--fetch-helper PATH"), "{err}");
}
