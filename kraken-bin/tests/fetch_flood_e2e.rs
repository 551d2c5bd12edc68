//! A git server that accepts connections and never answers, against the real
//! `kraken up` (which runs every fetch in a helper process of its own): many
//! checks at once are answered (refused as busy, or stopped for making no
//! progress), a normal check right after is answered, the agent itself has
//! not loaded OpenSSL (only the helper `kraken-fetch` links it), and the
//! agent is left with no helper process and no more threads than before.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The agent's direct children (pid and name) that are still there.
fn children(pid: u32) -> Vec<String> {
    let parent = pid.to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if fields.get(1) == Some(&parent.as_str()) {
            found.push(stat[..close + 1].to_string());
        }
    }
    found
}

/// `POST /api/v1/validate` with the token; waits as long as the agent takes.
fn validate(port: u16, url: &str) -> (u16, serde_json::Value) {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(180)).build().expect("client");
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v1/validate"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": url, "branch": "main"}))
        .send()
        .expect("the agent answers");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(serde_json::Value::Null))
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_server_that_never_answers_cannot_block_checks() {
    // Accepts every connection and never answers.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hole.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in hole.incoming().flatten() {
            held.push(socket);
        }
    });
    let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
    let agent = Agent::spawn(
        "up",
        &dir.path().join("data"),
        "127.0.0.1",
        free_port(),
        &["--fetch-idle-timeout", "3"].map(String::from),
    )
    .expect("kraken up answers");
    let pid = agent.pid().expect("pid");
    // Settle: the agent's own node reported, its threads started.
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_json(agent.port, "/api/v1/nodes").ok().and_then(|v| v.as_array().map(|a| !a.is_empty()))
        != Some(true)
    {
        assert!(Instant::now() < deadline, "the node did not report");
        std::thread::sleep(Duration::from_millis(200));
    }
    let threads_before = threads(pid);

    let url = format!("git://127.0.0.1:{port}/app.git");
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let (agent_port, url) = (agent.port, url.clone());
            std::thread::spawn(move || validate(agent_port, &url))
        })
        .collect();
    let answers: Vec<(u16, serde_json::Value)> = calls.into_iter().map(|c| c.join().expect("call")).collect();
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    let stopped = answers
        .iter()
        .filter(|(s, v)| *s == 422 && v["error"].as_str().unwrap_or_default().contains("made no progress"))
        .count();
    assert_eq!(busy + stopped, 40, "every check was answered, refused or stopped: {answers:?}");
    assert!(busy > 0 && stopped > 0, "busy {busy}, stopped {stopped}");

    // A normal check right after is answered.
    let repo = support_repo();
    let started = Instant::now();
    let (status, v) = validate(agent.port, &repo.path().display().to_string());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["manifest"]["app"]["name"], "static-site");
    eprintln!("a normal check after the flood answered in {:?}", started.elapsed());

    // The fetches ran in `kraken-fetch`: the agent itself never loaded
    // OpenSSL (libgit2's TLS), which only the helper links.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("the agent's maps");
    assert!(maps.contains("libc.so"), "the maps name the agent's libraries");
    let tls: Vec<&str> = maps.lines().filter(|l| l.contains("libssl") || l.contains("libcrypto")).collect();
    assert!(tls.is_empty(), "the agent loaded OpenSSL: {tls:?}");

    // Nothing left behind: no helper process, no extra thread.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (left, now) = (children(pid), threads(pid));
        if left.is_empty() && now <= threads_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, {now} threads (there were {threads_before})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;

fn support_repo() -> apps::AppRepo {
    apps::AppRepo::new("static-site")
}
