//! Updates without downtime on one node, with the real `kraken` binary and
//! real containers: a client asking the app again and again during an
//! update sees no failed request, then the new version; a new version that
//! never listens leaves the old one answering; a restarted agent serves the
//! app on the same address again; an update is `Running` at the switch while
//! the old version still ends the requests it holds.

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use apps::AppRepo;
use serde_json::Value;
use support::*;

const DEPLOY: Duration = Duration::from_secs(180);

/// One GET of `/` on a new connection: the body of a 200 answer, or what
/// went wrong.
fn get(host: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(|| format!("no answer: {answer:?}"))?;
    if !head.lines().next().unwrap_or_default().contains(" 200 ") {
        return Err(format!("answered {head:?}"));
    }
    Ok(body.trim().to_string())
}

/// A client asking `host` again and again until stopped; it returns every
/// answer (or failure) in order.
struct Client {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Result<String, String>>>,
}

impl Client {
    fn start(host: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (host, stopped) = (host.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                seen.push(get(&host));
            }
            seen
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the client thread")
    }
}

/// The deployment as the API shows it.
fn deployment(agent: &Agent, id: &str) -> Value {
    get_json(agent.port, &format!("/api/v1/deployments/{id}")).expect("the deployment")
}

/// Asks for an update of `id` and waits until its history shows a `Running`
/// entry after the update request; returns that entry's message.
fn update(agent: &Agent, id: &str) -> String {
    let before = deployment(agent, id)["status_history"].as_array().map_or(0, Vec::len);
    let (status, v) =
        call(agent.port, "POST", &format!("/api/v1/deployments/{id}/update"), None, Some(TOKEN));
    assert_eq!(status, 202, "{v}");
    let deadline = Instant::now() + DEPLOY;
    loop {
        let d = deployment(agent, id);
        let history = d["status_history"].as_array().cloned().unwrap_or_default();
        let after = history.iter().skip(before).skip_while(|c| c["status"] != "UpdateRequested");
        if let Some(done) = after.skip(1).find(|c| c["status"] == "Running" || c["status"] == "Errored") {
            assert_eq!(done["status"], "Running", "{d:#}\n{}", agent.log());
            return done["message"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "the update did not end: {d:#}\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The failures among `seen`, and the answers in the order they came, each
/// once.
fn summary(seen: &[Result<String, String>]) -> (Vec<&String>, Vec<&str>) {
    let failures = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    let mut answers: Vec<&str> = Vec::new();
    for body in seen.iter().filter_map(|r| r.as_deref().ok()) {
        if answers.last() != Some(&body) {
            answers.push(body);
        }
    }
    (failures, answers)
}

#[test]
fn an_update_switches_without_a_failed_request_and_a_broken_one_changes_nothing() {
    let dir = tempfile::Builder::new().prefix("kraken-switch-").tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let extra = ["--app-ready-timeout".to_string(), "8".to_string()];
    let mut agent = Agent::spawn("up", &data, "127.0.0.1", port, &extra).expect("kraken up answers");
    // Busy for 3 s before it listens: the old version must serve meanwhile.
    let repo = AppRepo::new("listens-late");
    let id = deploy(&agent, &repo.url());
    let d = wait_status(&agent, &id, "Running", DEPLOY);
    let address = d["address"].as_str().expect("address").to_string();
    let host = address.trim_start_matches("http://").to_string();
    assert_eq!(get(&host).as_deref(), Ok("hello from a late listener"));

    // A new version: no request fails while it builds, starts and takes over.
    let dockerfile = std::fs::read_to_string(repo.path().join("Dockerfile")).expect("Dockerfile");
    let new_head = repo.commit(
        &[("Dockerfile", &dockerfile.replace("hello from a late listener", "hello from version two"))],
        "version two",
    );
    let client = Client::start(&host);
    let message = update(&agent, &id);
    assert!(!message.contains("update failed"), "{message}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&host).as_deref() != Ok("hello from version two") {
        assert!(Instant::now() < deadline, "the new version never answered on {address}");
    }
    let seen = client.finish();
    let (failures, answers) = summary(&seen);
    assert!(failures.is_empty(), "{} of {} requests failed: {failures:?}", failures.len(), seen.len());
    assert_eq!(answers, ["hello from a late listener", "hello from version two"], "{} requests", seen.len());
    let d = deployment(&agent, &id);
    assert_eq!(d["commit"], new_head.as_str());
    assert_eq!(d["address"], address.as_str(), "the address did not change");
    assert_eq!(the_one_container_of(&id).len(), 1, "the old container was stopped");

    // A version that never listens: the old one answers throughout, and on.
    repo.commit(&[("serve.sh", "#!/bin/sh\necho version three is broken\nexec sleep 100000\n")], "broken");
    let client = Client::start(&host);
    let message = update(&agent, &id);
    assert!(message.contains("update failed, still running the previous commit"), "{message}");
    assert!(message.contains("never listened on port 9000"), "{message}");
    let seen = client.finish();
    let (failures, answers) = summary(&seen);
    assert!(failures.is_empty(), "{} of {} requests failed: {failures:?}", failures.len(), seen.len());
    assert_eq!(answers, ["hello from version two"], "{} requests", seen.len());
    let containers = containers_of(&id);
    assert_eq!(containers.len(), 1, "the broken container was removed: {containers:?}");
    let label =
        docker_lines(&["inspect", "-f", "{{index .Config.Labels \"kraken.commit\"}}", &containers[0]]);
    assert_eq!(label.join(""), new_head, "version two still runs");

    // A restarted agent serves the same container on the same address.
    agent.stop();
    let agent = Agent::spawn("up", &data, "127.0.0.1", port, &extra).expect("kraken up answers again");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&host).as_deref() != Ok("hello from version two") {
        assert!(Instant::now() < deadline, "{address} is not served after the restart:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(containers_of(&id), containers, "the container was adopted, not replaced");
    let (status, _) = call(agent.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_status(&agent, &id, "Destroyed", DEPLOY);
    assert!(get(&host).is_err(), "nothing is served on {address} after the destroy");
}

#[test]
fn an_update_is_running_at_the_switch_while_the_old_version_ends_its_open_requests() {
    let dir = tempfile::Builder::new().prefix("kraken-retire-").tempdir().expect("tempdir");
    // A long stop timeout: the old container waits for its open request
    // for up to two minutes, far longer than the update takes.
    let extra = ["--app-stop-timeout".to_string(), "120".to_string()];
    let agent =
        Agent::spawn("up", &dir.path().join("data"), "127.0.0.1", free_port(), &extra).expect("kraken up");
    let repo = AppRepo::new("python-hello");
    let id = deploy(&agent, &repo.url());
    let d = wait_status(&agent, &id, "Running", DEPLOY);
    let host = d["address"].as_str().expect("address").trim_start_matches("http://").to_string();
    assert_eq!(get(&host).as_deref(), Ok("hello from python"));

    // A request begun on the old version and not finished yet.
    let mut held = TcpStream::connect(&host).expect("connect");
    write!(held, "GET / HTTP/1.0\r\nHost: {host}\r\n").expect("send half a request");
    let app = std::fs::read_to_string(repo.path().join("app.py")).expect("app.py");
    repo.commit(&[("app.py", &app.replace("hello from python", "hello again from python"))], "again");
    let message = update(&agent, &id);
    assert!(!message.contains("update failed"), "{message}");

    // `Running` came at the switch: the new version answers, and the old
    // container is still there for the request it holds.
    assert_eq!(get(&host).as_deref(), Ok("hello again from python"));
    let both = containers_of(&id);
    assert_eq!(both.len(), 2, "the old container waits for its open request: {both:?}\n{}", agent.log());
    write!(held, "\r\n").expect("finish the request");
    held.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut answer = String::new();
    held.read_to_string(&mut answer).expect("the old version answers");
    assert!(answer.contains("hello from python"), "{answer}");
    drop(held);

    // Its request answered and its connection closed, the old container goes.
    let left = the_one_container_of(&id);
    assert_eq!(left.len(), 1, "the old container was removed: {left:?}\n{}", agent.log());
    let (status, _) = call(agent.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    assert_eq!(status, 202);
    wait_status(&agent, &id, "Destroyed", DEPLOY);
}
