//! Rollover, end to end: real agents as separate processes on loopback
//! addresses, a real RabbitMQ broker, a real Docker engine. The orchestrator's
//! machine dies (`kill -9` and its containers removed); the primary candidate
//! takes over with the replicated state, the workers keep their containers,
//! and the old orchestrator returns as a worker.

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use kraken_test_support::wait_until;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apps::AppRepo;
use serde_json::{json, Value};
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());
const DEPLOY: Duration = Duration::from_secs(240);
const JOIN_TOKEN: &str = "rollover-join-token";

/// Every agent here runs with the default settings (node grace 2 s).
fn orchestrator(dir: &std::path::Path, port: u16, account: &BrokerAccount) -> Agent {
    let args = ["--amqp-url", &account.url(), "--join-token", JOIN_TOKEN].map(String::from);
    Agent::spawn("up", dir, "127.0.0.1", port, &args).expect("orchestrator starts")
}

fn worker(dir: &std::path::Path, ip: &str, orchestrator: &str) -> Agent {
    let args = ["--join", orchestrator, "--join-token", JOIN_TOKEN].map(String::from);
    Agent::spawn("worker", dir, ip, free_port(), &args).expect("worker joins")
}

fn nodes_at(agent: &Agent) -> Vec<Value> {
    get_json_at(&agent.ip, agent.port, "/api/v1/nodes")
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn ping(agent: &Agent) -> Value {
    get_json_at(&agent.ip, agent.port, "/ping").unwrap_or(Value::Null)
}

fn deployment_at(agent: &Agent, id: &str) -> Value {
    get_json_at(&agent.ip, agent.port, &format!("/api/v1/deployments/{id}")).unwrap_or(Value::Null)
}

fn statuses(d: &Value) -> Vec<(String, String)> {
    d["status_history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["status"].as_str().unwrap_or("").to_string(), c["at"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn started_at(container: &str) -> String {
    docker_lines(&["inspect", "-f", "{{.State.StartedAt}}", container]).join("")
}

fn post(agent: &Agent, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}:{}{path}", agent.ip, agent.port);
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut req = client.post(url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Waits until `agent` (a candidate) holds the replica.
fn wait_replica(agent: &Agent) {
    wait_until("the candidate's replica", Duration::from_secs(30), || {
        let p = ping(agent);
        (p["rollover_priority"] == 1 && p["replica_ready"] == true).then_some(())
    });
}

#[test]
fn the_primary_candidate_takes_over_and_nothing_is_lost() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-rollover-").tempdir().expect("tempdir");
    let o_port = free_port();
    let mut o = orchestrator(&dir.path().join("o"), o_port, &account);
    let w1 = worker(&dir.path().join("w1"), "127.0.0.2", &o.server());
    let w2 = worker(&dir.path().join("w2"), "127.0.0.3", &o.server());
    let o_id = o.node_id();
    wait_until("three nodes up", Duration::from_secs(30), || {
        (nodes_at(&o).iter().filter(|n| n["up"] == true).count() == 3).then_some(())
    });
    // Priorities: 0 the orchestrator, 1 and 2 the workers.
    let candidate = wait_until("a primary candidate", Duration::from_secs(20), || {
        let list = nodes_at(&o);
        let by_prio: BTreeMap<u64, String> = list
            .iter()
            .filter_map(|n| Some((n["rollover_priority"].as_u64()?, n["id"].as_str()?.to_string())))
            .collect();
        (by_prio.len() == 3 && by_prio.get(&0) == Some(&o_id)).then(|| by_prio[&1].clone())
    });
    let (c, other) = if w1.node_id() == candidate { (&w1, &w2) } else { (&w2, &w1) };

    // One deployment on the orchestrator's machine (the workers drained for it), three on the workers.
    for w in [&w1, &w2] {
        assert_eq!(post(&o, &format!("/api/v1/nodes/{}/drain", w.node_id()), None).0, 202);
    }
    let repos: Vec<AppRepo> = ["static-site", "node-hello", "python-hello", "static-site"]
        .iter()
        .map(|n| AppRepo::new(n))
        .collect();
    let deploy = |repo: &AppRepo| {
        let (status, v) = post(&o, "/api/v1/deployments", Some(json!({"url": repo.url(), "branch": "main"})));
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().expect("id").to_string()
    };
    let on_o = deploy(&repos[0]);
    assert_eq!(wait_status(&o, &on_o, "Running", DEPLOY)["node"], o_id.as_str());
    for w in [&w1, &w2] {
        assert_eq!(post(&o, &format!("/api/v1/nodes/{}/undrain", w.node_id()), None).0, 202);
    }
    let mut ids = vec![on_o.clone()];
    ids.extend(repos[1..].iter().map(deploy));
    let mut before = BTreeMap::new();
    let mut on_dead_machine = Vec::new();
    for id in &ids {
        let d = wait_status(&o, id, "Running", DEPLOY);
        if d["node"] == o_id.as_str() {
            on_dead_machine.push(id.clone());
        }
        let containers = containers_of(id);
        assert_eq!(containers.len(), 1);
        let started = started_at(&containers[0]);
        before.insert(id.clone(), (d, containers[0].clone(), started));
    }
    assert!(on_dead_machine.len() < ids.len(), "some deployments run on the workers");
    wait_replica(c);

    // The orchestrator's machine dies.
    let t0 = Instant::now();
    o.kill9();
    o.remove_containers();

    let c_ping = wait_until("the candidate to answer as orchestrator", Duration::from_secs(60), || {
        let p = ping(c);
        (p["role"] == "orchestrator").then_some(p)
    });
    let api_back = t0.elapsed();
    assert!(c_ping["epoch"].as_u64().unwrap_or(0) >= 2, "a new epoch: {c_ping}");
    wait_until("the other worker to follow the new orchestrator", Duration::from_secs(60), || {
        (ping(other)["orchestrator"] == c.server().as_str()).then_some(())
    });
    let attached = t0.elapsed();

    // All four listed with their full history; the three on workers are the same containers.
    for id in &ids {
        let (old, container, started) = &before[id];
        let d = wait_until(&format!("{id} on the new orchestrator"), Duration::from_secs(30), || {
            let d = deployment_at(c, id);
            d.is_object().then_some(d)
        });
        let old_history = statuses(old);
        let new_history = statuses(&d);
        assert!(
            new_history.len() >= old_history.len() && new_history[..old_history.len()] == old_history[..],
            "{id}: history kept\n{old_history:?}\n{new_history:?}"
        );
        if !on_dead_machine.contains(id) {
            assert_eq!(d["status"], "Running", "{d:#}");
            assert_eq!(containers_of(id), vec![container.clone()], "{id}: the very same container");
            assert_eq!(&started_at(container), started, "{id}: never restarted");
            http_body(d["address"].as_str().expect("address"), Duration::from_secs(10));
        }
    }
    // What lived on the dead machine runs elsewhere.
    for id in &on_dead_machine {
        let moved = wait_until("the dead machine's deployments to run elsewhere", DEPLOY, || {
            let d = deployment_at(c, id);
            (d["status"] == "Running" && d["node"] != o_id.as_str()).then_some(d)
        });
        http_body(moved["address"].as_str().expect("address"), Duration::from_secs(20));
    }
    let rescheduled = t0.elapsed();
    // A new deploy through the new orchestrator works.
    let fresh = AppRepo::new("dockerfile-app");
    let (status, v) = post(c, "/api/v1/deployments", Some(json!({"url": fresh.url(), "branch": "main"})));
    assert_eq!(status, 202, "{v}");
    let fresh_id = v["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + DEPLOY;
    let fresh_d = loop {
        let d = deployment_at(c, &fresh_id);
        if d["status"] == "Running" {
            break d;
        }
        assert!(d["status"] != "Errored" && Instant::now() < deadline, "{d:#}\n{}", c.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    http_body(fresh_d["address"].as_str().expect("address"), Duration::from_secs(20));
    eprintln!(
        "MEASURED rollover (default settings): new orchestrator answering {:.1} s, workers re-attached {:.1} s, dead machine's deployment running elsewhere {:.1} s after the orchestrator died",
        api_back.as_secs_f64(),
        attached.as_secs_f64(),
        rescheduled.as_secs_f64()
    );

    // The old orchestrator comes back with its old data: it becomes a worker.
    let returned = Agent::spawn(
        "up",
        &dir.path().join("o"),
        "127.0.0.1",
        o_port,
        &["--amqp-url", &account.url()].map(String::from),
    )
    .expect("the old orchestrator starts again");
    assert_eq!(ping(&returned)["role"], "worker", "it stepped down: {}", returned.log());
    wait_until("the returned node to be up as a worker", Duration::from_secs(30), || {
        nodes_at(c)
            .iter()
            .any(|n| n["id"] == o_id.as_str() && n["up"] == true && n["role"] == "worker")
            .then_some(())
    });
    let orchestrators = [&returned, c, other].iter().filter(|a| ping(a)["role"] == "orchestrator").count();
    assert_eq!(orchestrators, 1, "one orchestrator");
    drop(returned);
}

#[test]
fn losing_the_candidate_then_the_orchestrator_is_survived() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-cascade-").tempdir().expect("tempdir");
    let mut o = orchestrator(&dir.path().join("o"), free_port(), &account);
    let mut workers = vec![
        worker(&dir.path().join("w1"), "127.0.0.2", &o.server()),
        worker(&dir.path().join("w2"), "127.0.0.3", &o.server()),
    ];
    wait_until("three nodes up", Duration::from_secs(30), || {
        (nodes_at(&o).iter().filter(|n| n["up"] == true).count() == 3).then_some(())
    });
    let repo = AppRepo::new("node-hello");
    let (status, v) = post(&o, "/api/v1/deployments", Some(json!({"url": repo.url(), "branch": "main"})));
    assert_eq!(status, 202);
    let id = v["id"].as_str().expect("id").to_string();
    wait_status(&o, &id, "Running", DEPLOY);

    // The primary candidate dies first.
    let first = wait_until("a candidate", Duration::from_secs(20), || {
        workers.iter().position(|w| ping(w)["rollover_priority"] == 1)
    });
    wait_replica(&workers[first]);
    let mut dead = workers.remove(first);
    dead.kill9();
    dead.remove_containers();
    // A new one is chosen and gets the state.
    let survivor = &workers[0];
    wait_replica(survivor);
    // Whatever ran on the dead candidate runs again before the next loss.
    wait_until("the deployment running on a live node", DEPLOY, || {
        let d = get_json(o.port, &format!("/api/v1/deployments/{id}")).ok()?;
        (d["status"] == "Running" && d["node"] != dead.node_id().as_str()).then_some(())
    });
    let o_id = o.node_id();
    o.kill9();
    o.remove_containers();
    wait_until("the second candidate to lead", Duration::from_secs(60), || {
        (ping(survivor)["role"] == "orchestrator").then_some(())
    });
    let d = wait_until("the deployment running on the last node", DEPLOY, || {
        let d = deployment_at(survivor, &id);
        (d["status"] == "Running" && d["node"] == survivor.node_id().as_str()).then_some(d)
    });
    assert!(http_body(d["address"].as_str().expect("address"), Duration::from_secs(20))
        .contains("hello from node"));
    assert!(statuses(&d).len() > 5, "history kept: {d:#}");
    assert!(nodes_at(survivor).iter().any(|n| n["id"] == o_id.as_str() && n["up"] == false));
}

#[test]
fn a_broker_lost_with_the_orchestrator_is_started_again_by_the_new_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let image =
        std::env::var("KRAKEN_TEST_BROKER_IMAGE").unwrap_or_else(|_| "kraken-test-rabbitmq:bookworm".into());
    let _ = std::process::Command::new("docker").args(["rm", "-f", "kraken-broker"]).output();
    let dir = tempfile::Builder::new().prefix("kraken-rescue-").tempdir().expect("tempdir");
    let broker_port = free_port().to_string();
    let args = [
        "--start-broker",
        "--broker-image",
        &image,
        "--broker-port",
        &broker_port,
        "--join-token",
        JOIN_TOKEN,
    ]
    .map(String::from);
    let mut o = Agent::spawn("up", &dir.path().join("o"), "127.0.0.1", free_port(), &args)
        .expect("orchestrator with its broker");
    let w1 = worker(&dir.path().join("w1"), "127.0.0.2", &o.server());
    let w2 = worker(&dir.path().join("w2"), "127.0.0.3", &o.server());
    wait_until("three nodes up", Duration::from_secs(60), || {
        (nodes_at(&o).iter().filter(|n| n["up"] == true).count() == 3).then_some(())
    });
    let o_id = o.node_id();
    assert_eq!(post(&o, &format!("/api/v1/nodes/{o_id}/drain"), None).0, 202);
    let repo = AppRepo::new("node-hello");
    let (status, v) = post(&o, "/api/v1/deployments", Some(json!({"url": repo.url(), "branch": "main"})));
    assert_eq!(status, 202);
    let id = v["id"].as_str().expect("id").to_string();
    let before = wait_status(&o, &id, "Running", DEPLOY);
    let container = containers_of(&id);
    let candidate = wait_until("a candidate with the replica", Duration::from_secs(30), || {
        [&w1, &w2].into_iter().find(|w| {
            let p = ping(w);
            p["rollover_priority"] == 1 && p["replica_ready"] == true
        })
    });
    let other = if candidate.node_id() == w1.node_id() { &w2 } else { &w1 };

    // The orchestrator's machine dies, and the broker with it.
    let t0 = Instant::now();
    o.kill9();
    o.remove_containers();
    let _ = std::process::Command::new("docker").args(["rm", "-f", "kraken-broker"]).output();

    wait_until("the candidate to lead", Duration::from_secs(120), || {
        (ping(candidate)["role"] == "orchestrator").then_some(())
    });
    wait_until("the other worker to follow", Duration::from_secs(60), || {
        (ping(other)["orchestrator"] == candidate.server().as_str()).then_some(())
    });
    wait_until("both workers reporting through the new broker", Duration::from_secs(60), || {
        let up = nodes_at(candidate).iter().filter(|n| n["up"] == true && n["id"] != o_id.as_str()).count();
        (up == 2).then_some(())
    });
    eprintln!(
        "MEASURED broker rescue: both workers reporting through a new broker {:.1} s after the machine died",
        t0.elapsed().as_secs_f64()
    );
    let broker_host = docker_lines(&[
        "inspect",
        "-f",
        "{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}{{end}}{{end}}",
        "kraken-broker",
    ]);
    assert_eq!(broker_host.join(""), candidate.ip, "the broker now runs on the new orchestrator's machine");
    let d = deployment_at(candidate, &id);
    assert_eq!(d["status"], "Running");
    assert_eq!(containers_of(&id), container, "the same container");
    assert!(statuses(&d).len() >= statuses(&before).len());
    http_body(d["address"].as_str().expect("address"), Duration::from_secs(10));
    let fresh = AppRepo::new("static-site");
    let (status, v) =
        post(candidate, "/api/v1/deployments", Some(json!({"url": fresh.url(), "branch": "main"})));
    assert_eq!(status, 202);
    let fresh_id = v["id"].as_str().expect("id").to_string();
    wait_until("a new deployment through the new broker", DEPLOY, || {
        (deployment_at(candidate, &fresh_id)["status"] == "Running").then_some(())
    });
    let _ = std::process::Command::new("docker").args(["rm", "-f", "kraken-broker"]).output();
}

/// One request of the stream and what the platform answered.
#[derive(Debug, Clone)]
struct Sent {
    op: &'static str,
    id: String,
    status: u16,
}

#[test]
fn every_request_acknowledged_before_a_kill_9_is_on_the_new_orchestrator() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-acked-").tempdir().expect("tempdir");
    let mut o = orchestrator(&dir.path().join("o"), free_port(), &account);
    let c = worker(&dir.path().join("c"), "127.0.0.2", &o.server());
    wait_replica(&c);
    let port = o.port;

    // Requests for repositories that do not exist end Errored at once (no
    // builds), so they can be updated and destroyed again and again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = std::sync::Arc::new(Mutex::new(Vec::<Sent>::new()));
    let latencies = std::sync::Arc::new(Mutex::new(Vec::<Duration>::new()));
    let streams: Vec<_> = (0..3)
        .map(|stream| {
            let (stop, log, latencies) = (stop.clone(), log.clone(), latencies.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let mut mine: Vec<String> = Vec::new();
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let base = format!("http://127.0.0.1:{port}/api/v1/deployments");
                    let (op, request, target) = match (i % 4, mine.get(i as usize % mine.len().max(1))) {
                        (1, Some(id)) => ("update", client.post(format!("{base}/{id}/update")), id.clone()),
                        (3, Some(id)) => ("destroy", client.delete(format!("{base}/{id}")), id.clone()),
                        _ => (
                            "create",
                            client.post(&base).json(
                                &json!({"url": format!("/nonexistent/s{stream}-r{i}"), "branch": "main"}),
                            ),
                            String::new(),
                        ),
                    };
                    let started = Instant::now();
                    let Ok(response) = request.bearer_auth(TOKEN).send() else {
                        // No answer: the request was not acknowledged.
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let status = response.status().as_u16();
                    let body: Value = response.json().unwrap_or(Value::Null);
                    if status == 202 {
                        latencies.lock().unwrap_or_else(|p| p.into_inner()).push(started.elapsed());
                    }
                    let id = if op == "create" {
                        body["id"].as_str().unwrap_or_default().to_string()
                    } else {
                        target
                    };
                    if op == "create" && status == 202 {
                        mine.push(id.clone());
                    }
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(Sent { op, id, status });
                }
            })
        })
        .collect();

    // Once plenty were acknowledged, the orchestrator dies in the middle of the stream.
    wait_until("requests acknowledged", Duration::from_secs(120), || {
        let acked = log.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|s| s.status == 202).count();
        (acked >= 60).then_some(())
    });
    o.kill9();
    let killed_after = log.lock().unwrap_or_else(|p| p.into_inner()).len();
    wait_until("the candidate to lead", Duration::from_secs(60), || {
        (ping(&c)["role"] == "orchestrator").then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for s in streams {
        s.join().expect("a request stream");
    }
    let sent = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let acked: Vec<&Sent> = sent.iter().filter(|s| s.status == 202).collect();
    let by_op = |op: &str| acked.iter().filter(|s| s.op == op).count();
    assert!(by_op("create") > 0 && by_op("update") > 0 && by_op("destroy") > 0, "{sent:?}");

    // Every acknowledged request is on the new orchestrator.
    let mut updates: BTreeMap<&str, usize> = BTreeMap::new();
    for s in acked.iter().filter(|s| s.op == "update") {
        *updates.entry(s.id.as_str()).or_default() += 1;
    }
    for s in &acked {
        let d = deployment_at(&c, &s.id);
        assert!(d.is_object(), "{} of {} acknowledged but unknown to the new orchestrator", s.op, s.id);
        match s.op {
            "destroy" => assert_eq!(d["desired"], "Destroyed", "{}: {d:#}", s.id),
            "update" => {
                let asked = statuses(&d).iter().filter(|(status, _)| status == "UpdateRequested").count();
                assert!(
                    asked >= updates[s.id.as_str()],
                    "{}: {} updates acknowledged, {asked} kept",
                    s.id,
                    updates[s.id.as_str()]
                );
            }
            _ => {}
        }
    }
    let mut latencies = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    eprintln!(
        "MEASURED synchronous replication: {} requests acknowledged ({} create, {} update, {} destroy), {} sent before the kill -9, all on the new orchestrator; acknowledgement time median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        acked.len(),
        by_op("create"),
        by_op("update"),
        by_op("destroy"),
        killed_after,
        at(0.5),
        at(0.9),
        at(1.0),
    );
}
