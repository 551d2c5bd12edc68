//! When a deployment counts as running, and how its app stops, with the real
//! `kraken` binary and real containers: `Running` once the app accepts
//! connections (not after a fixed wait), an app that exits or never listens
//! fails with its exit code or a timeout and the end of its log and leaves
//! no container, and an app that ignores SIGTERM as PID 1 still stops on
//! SIGTERM (the init process passes it on) instead of being killed.

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use apps::AppRepo;
use serde_json::{json, Value};
use support::*;

const DEPLOY: Duration = Duration::from_secs(180);

/// An agent on loopback whose apps must listen within 8 s, and the folder
/// holding its data. The folder comes first so it outlives the agent: the
/// agent removes its containers when dropped, finding them by the node id
/// stored in that folder.
fn agent() -> (tempfile::TempDir, Agent) {
    let dir = tempfile::Builder::new().prefix("kraken-ready-").tempdir().expect("tempdir");
    let extra = ["--app-ready-timeout".to_string(), "8".to_string()];
    let agent = Agent::spawn("up", &dir.path().join("data"), "127.0.0.1", free_port(), &extra)
        .expect("kraken up answers");
    (dir, agent)
}

/// Asks the platform to deploy `repo`; returns the deployment's id.
fn deploy(agent: &Agent, repo: &AppRepo) -> String {
    let body = json!({"url": repo.url(), "branch": "main"});
    let (status, created) = call(agent.port, "POST", "/api/v1/deployments", Some(body), Some(TOKEN));
    assert_eq!(status, 202, "{created}");
    created["id"].as_str().expect("id").to_string()
}

/// One GET of `/` at `address` (`http://ip:port`), without retrying: the
/// status line and the body.
fn get_once(address: &str) -> (String, String) {
    get_path_once(address, "/")
}

/// One GET of `path` at `address`, without retrying: the status line and
/// the body.
fn get_path_once(address: &str, path: &str) -> (String, String) {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("{address} refused: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap_or_else(|e| panic!("{address} did not answer: {e}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

#[test]
fn running_means_answering_and_a_stop_is_a_sigterm() {
    let (_dir, agent) = agent();
    let repo = AppRepo::new("listens-late");
    let id = deploy(&agent, &repo);
    let d = wait_status(&agent, &id, "Running", DEPLOY);
    // The app listens 3 s after it starts: reported running, it answers at
    // the first try.
    let address = d["address"].as_str().expect("address");
    let (status, body) = get_once(address);
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body.trim(), "hello from a late listener");
    let log = log_text(&agent, &id);
    assert!(log.contains("listens-late serving on port 9000"), "{log}");

    // busybox httpd as PID 1 has no SIGTERM handler: without an init process
    // the signal is dropped and the engine kills it when the stop timeout
    // ends (exit 137); with one, SIGTERM ends it (exit 143).
    let container = containers_of(&id).pop().expect("the app's container");
    let mut events = Command::new("docker")
        .args(["events", "--filter", &format!("container={container}"), "--filter", "event=die"])
        .args(["--format", "{{.Actor.Attributes.exitCode}}"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker events runs");
    let (status, _) = call(agent.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_status(&agent, &id, "Destroyed", DEPLOY);
    let mut exit_code = String::new();
    BufReader::new(events.stdout.take().expect("stdout")).read_line(&mut exit_code).expect("a die event");
    let _ = events.kill();
    let _ = events.wait();
    assert_eq!(exit_code.trim(), "143", "the app died of SIGTERM, not of the kill after the timeout");
    assert!(containers_of(&id).is_empty());
}

#[test]
fn an_app_that_exits_or_never_listens_fails_with_its_log_and_leaves_nothing() {
    let (_dir, agent) = agent();
    let crashing = AppRepo::new("exits-at-once");
    let silent = AppRepo::new("never-listens");
    let crashing_id = deploy(&agent, &crashing);
    let silent_id = deploy(&agent, &silent);

    let d: Value = wait_status(&agent, &crashing_id, "Errored", DEPLOY);
    let reason = d["error"].as_str().unwrap_or_default();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("fatal: missing configuration, giving up"), "the end of its log: {reason}");
    assert!(containers_of(&crashing_id).is_empty(), "the crashed container was removed");

    let d = wait_status(&agent, &silent_id, "Errored", DEPLOY);
    let reason = d["error"].as_str().unwrap_or_default();
    assert!(reason.contains("never listened on port 9000 within 8 s"), "{reason}");
    assert!(reason.contains("never-listens starting, but not listening"), "the end of its log: {reason}");
    assert!(containers_of(&silent_id).is_empty(), "the silent container was removed");
}

#[test]
fn with_a_health_path_running_waits_for_a_healthy_answer() {
    let (_dir, agent) = agent();
    let healthy = AppRepo::new("health-gated");
    let sick = AppRepo::new("health-gated");
    let manifest = std::fs::read_to_string(sick.path().join("shipwreck.toml")).expect("manifest");
    sick.commit(
        &[("shipwreck.toml", &manifest.replace("HEALTHY_AFTER = \"3\"", "HEALTHY_AFTER = \"never\""))],
        "never healthy",
    );
    let healthy_id = deploy(&agent, &healthy);
    let sick_id = deploy(&agent, &sick);

    // It listens at once but is healthy only after 3 s: reported running,
    // its health path answers at the first try.
    let d = wait_status(&agent, &healthy_id, "Running", DEPLOY);
    let (status, body) = get_path_once(d["address"].as_str().expect("address"), "/healthz");
    assert!(status.contains(" 200 "), "{status}: {body}");

    let d = wait_status(&agent, &sick_id, "Errored", DEPLOY);
    let reason = d["error"].as_str().unwrap_or_default();
    assert!(reason.contains("never answered its health path /healthz on port 7000"), "{reason}");
    assert!(reason.contains("503"), "the last answer is named: {reason}");
    assert!(reason.contains("health-gated listening on port 7000"), "the end of its log: {reason}");
    assert!(containers_of(&sick_id).is_empty(), "the unhealthy container was removed");
}
