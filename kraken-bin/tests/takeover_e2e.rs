//! Takeovers that fail part-way, end to end: the orchestrator is a real
//! `kraken up` process; the primary candidate is a worker agent run inside
//! this test (the library's `Platform`, with the real broker and Docker
//! engine) so that a failure can be injected before each step of its
//! takeover. The test decides each step's fate while the step waits, and
//! checks between two attempts that nothing another node can see changed.
//!
//! The broker really is unreachable for a while (the test's broker account is
//! locked out); the other failures (a busy port, a state error, …) are
//! injected.

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use kraken_test_support::wait_until;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use apps::AppRepo;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::{NodeRole, Platform};
use kraken_lib::rollover::takeover::{InjectedFault, TakeoverFaults, TakeoverStep};
use kraken_lib::runtime::DockerRuntime;
use serde_json::{json, Value};
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());
const DEPLOY: Duration = Duration::from_secs(240);
const JOIN_TOKEN: &str = "takeover-join-token";

type Reply = mpsc::Sender<Result<(), String>>;

/// The test's side of the injected faults: each step of a takeover waits
/// here until the test answers.
struct Steps {
    calls: mpsc::Receiver<(TakeoverStep, Reply)>,
}

impl Steps {
    fn new() -> (TakeoverFaults, Self) {
        let (tx, calls) = mpsc::channel::<(TakeoverStep, Reply)>();
        let tx = Mutex::new(tx);
        let hook: TakeoverFaults = Arc::new(move |step| {
            let (reply, answer) = mpsc::channel();
            if tx.lock().unwrap_or_else(|p| p.into_inner()).send((step, reply)).is_err() {
                return Ok(());
            }
            // Waiting for the test must not hold up the agent's other tasks.
            tokio::task::block_in_place(|| answer.recv_timeout(Duration::from_secs(300)).unwrap_or(Ok(())))
                .map_err(InjectedFault::new)
        });
        (hook, Self { calls })
    }

    fn next(&self, within: Duration) -> (TakeoverStep, Reply) {
        self.calls.recv_timeout(within).unwrap_or_else(|e| panic!("no takeover step within {within:?}: {e}"))
    }
}

/// A worker agent run in this process, with faults injected into its takeovers.
struct Candidate {
    ip: String,
    port: u16,
    data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Candidate {
    fn start(data_dir: &Path, ip: &str, orchestrator: &str, faults: TakeoverFaults) -> Self {
        let port = free_port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let (dir, address, orchestrator) =
            (data_dir.to_path_buf(), format!("{ip}:{port}"), orchestrator.to_string());
        let host = ip.to_string();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .expect("a runtime for the candidate");
            runtime.block_on(async move {
                let mut config = NodeConfig::new(&dir, address.parse().expect("address"));
                config.advertise_host = host.clone();
                config.publish_ip = host;
                // The fixtures are repositories on this machine's disk, fetched
                // by the `kraken` binary (this test binary is not a fetch program).
                config.allow_local_sources = true;
                config.fetch_program = kraken_lib::fetcher::FetchProgram::Program(fetch_helper());
                let registry = BuilderRegistry::with_builtins(BaseImages::uniform(&base_image()));
                let docker = match DockerRuntime::connect().await {
                    Ok(d) => d,
                    Err(e) => return drop(ready_tx.send(Err(e.to_string()))),
                };
                let platform = Platform::builder(config)
                    .role(NodeRole::Worker { orchestrator })
                    .join_token(Some(JOIN_TOKEN.to_string()))
                    .name(Some("candidate".into()))
                    .takeover_faults(faults)
                    .registry(registry)
                    .runtime(Arc::new(docker))
                    .start()
                    .await;
                let platform = match platform {
                    Ok(p) => p,
                    Err(e) => return drop(ready_tx.send(Err(e.to_string()))),
                };
                let _ = ready_tx.send(Ok(()));
                if let Err(e) = platform
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
                {
                    eprintln!("the candidate stopped with an error: {e}");
                }
            });
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("the candidate starts")
            .expect("the candidate joins");
        Self {
            ip: ip.to_string(),
            port,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn ping(&self) -> Value {
        get_json_at(&self.ip, self.port, "/ping").unwrap_or(Value::Null)
    }

    fn server(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    fn node_id(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node-id")).expect("node id").trim().to_string()
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let filter = format!("label=kraken.node={}", self.node_id());
        for id in docker_lines(&["ps", "-aq", "--filter", &filter]) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
}

fn ping_at(ip: &str, port: u16) -> Value {
    get_json_at(ip, port, "/ping").unwrap_or(Value::Null)
}

fn post_at(ip: &str, port: u16, path: &str, body: Option<Value>) -> (u16, Value) {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut request = client.post(format!("http://{ip}:{port}{path}")).bearer_auth(TOKEN);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().expect("answers");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn delete_at(ip: &str, port: u16, path: &str) -> (u16, Value) {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let response =
        client.delete(format!("http://{ip}:{port}{path}")).bearer_auth(TOKEN).send().expect("answers");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn deployment_at(ip: &str, port: u16, id: &str) -> Value {
    get_json_at(ip, port, &format!("/api/v1/deployments/{id}")).unwrap_or(Value::Null)
}

fn orchestrator(dir: &Path, account: &BrokerAccount) -> Agent {
    let args = ["--amqp-url", &account.url(), "--join-token", JOIN_TOKEN].map(String::from);
    Agent::spawn("up", dir, "127.0.0.1", free_port(), &args).expect("the orchestrator starts")
}

fn log_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,kraken_lib=debug"))
        .with_test_writer()
        .try_init();
}

#[test]
fn a_takeover_that_fails_at_each_step_is_tried_again_until_an_orchestrator_serves_every_deployment() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    log_tracing();
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-takeover-").tempdir().expect("tempdir");
    let mut o = orchestrator(&dir.path().join("o"), &account);
    let (faults, steps) = Steps::new();
    let c = Candidate::start(&dir.path().join("c"), "127.0.0.2", &o.server(), faults);
    wait_until("the in-process worker to be the primary candidate", Duration::from_secs(30), || {
        (c.ping()["rollover_priority"] == 1).then_some(())
    });
    let w_args = ["--join", &o.server(), "--join-token", JOIN_TOKEN].map(String::from);
    let w = Agent::spawn("worker", &dir.path().join("w"), "127.0.0.3", free_port(), &w_args).expect("worker");
    wait_until("three nodes up", Duration::from_secs(30), || {
        let nodes = get_json(o.port, "/api/v1/nodes").ok()?;
        (nodes.as_array()?.iter().filter(|n| n["up"] == true).count() == 3).then_some(())
    });

    wait_until("the candidate's replica", Duration::from_secs(30), || {
        (c.ping()["replica_ready"] == true).then_some(())
    });
    // One deployment on the orchestrator's machine (the workers drained for
    // it), then two more, which spread over the workers.
    let (o_id, c_id, w_id) = (o.node_id(), c.node_id(), w.node_id());
    let deploy = |repo: &AppRepo| {
        let (status, v) = post_at(
            "127.0.0.1",
            o.port,
            "/api/v1/deployments",
            Some(json!({"url": repo.url(), "branch": "main"})),
        );
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["replicated"], true, "the candidate confirmed the request: {v}");
        v["id"].as_str().expect("id").to_string()
    };
    let repos: Vec<AppRepo> =
        ["static-site", "node-hello", "python-hello"].iter().map(|n| AppRepo::new(n)).collect();
    for other in [&c_id, &w_id] {
        assert_eq!(post_at("127.0.0.1", o.port, &format!("/api/v1/nodes/{other}/drain"), None).0, 202);
    }
    let mut ids = vec![deploy(&repos[0])];
    assert_eq!(wait_status(&o, &ids[0], "Running", DEPLOY)["node"], o_id.as_str());
    for other in [&c_id, &w_id] {
        assert_eq!(post_at("127.0.0.1", o.port, &format!("/api/v1/nodes/{other}/undrain"), None).0, 202);
    }
    ids.extend(repos[1..].iter().map(deploy));
    for id in &ids {
        wait_status(&o, id, "Running", DEPLOY);
    }
    let before: BTreeMap<String, (Value, Vec<String>)> = ids
        .iter()
        .map(|id| (id.clone(), (deployment_at("127.0.0.1", o.port, id), containers_of(id))))
        .collect();
    wait_until("the candidate's replica", Duration::from_secs(30), || {
        (c.ping()["replica_ready"] == true).then_some(())
    });

    // The broker becomes unreachable, and the orchestrator's machine dies.
    account.block();
    o.kill9();
    o.remove_containers();
    let unchanged = |when: &str| {
        let (cp, wp) = (c.ping(), ping_at(&w.ip, w.port));
        assert_eq!((cp["role"].as_str(), cp["epoch"].as_u64()), (Some("worker"), Some(1)), "{when}: {cp}");
        assert_eq!(wp["epoch"], 1, "{when}: the other worker saw no new epoch: {wp}");
    };
    let mut script: Vec<(TakeoverStep, &str)> = vec![
        (TakeoverStep::Orchestrator, "injected: the orchestrator's subscriptions were refused"),
        (TakeoverStep::State, "injected: the replica's database could not be written (disk full)"),
        (TakeoverStep::State, "injected: the replica's database could not be written (disk full)"),
        (TakeoverStep::Serve, "injected: the API could not be switched"),
        (TakeoverStep::Announce, "injected: the work queues are unreachable"),
    ];
    let mut seen = Vec::new();
    let mut blocked = true;
    loop {
        let (step, reply) = steps.next(Duration::from_secs(120));
        seen.push(step);
        if step == TakeoverStep::Announce {
            // The point of no return is behind: it serves already.
            assert_eq!(c.ping()["role"], "orchestrator");
        } else {
            unchanged(&format!("before step {step:?} (call #{})", seen.len()));
        }
        let answer = match step {
            TakeoverStep::Broker
                if blocked && seen.iter().filter(|s| **s == TakeoverStep::Broker).count() >= 2 =>
            {
                // The first attempt failed for real; now the broker is back, but
                // this attempt finds the port of the broker it would start busy.
                account.unblock();
                blocked = false;
                Err("injected: port 5672 on 127.0.0.2 is already in use by another program".into())
            }
            other => match script.iter().position(|(s, _)| *s == other) {
                Some(i) => Err(script.remove(i).1.to_string()),
                None => Ok(()),
            },
        };
        let last = step == TakeoverStep::Announce;
        reply.send(answer).expect("the step waits for its answer");
        if last {
            break;
        }
    }
    assert_eq!(
        &seen[..2],
        [TakeoverStep::Broker, TakeoverStep::Broker],
        "the unreachable broker failed the first attempt"
    );
    assert!(script.is_empty(), "every injected failure was met: {script:?} left, steps {seen:?}");
    for step in [TakeoverStep::Orchestrator, TakeoverStep::State, TakeoverStep::Serve] {
        assert!(seen.iter().filter(|s| **s == step).count() >= 2, "{step:?} was tried again: {seen:?}");
    }

    // An orchestrator exists, with every deployment.
    let led = wait_until("the candidate to serve as the orchestrator", Duration::from_secs(30), || {
        let p = c.ping();
        (p["role"] == "orchestrator").then_some(p)
    });
    assert_eq!(led["epoch"], 2, "one new epoch, however many attempts: {led}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while ping_at(&w.ip, w.port)["orchestrator"] != c.server().as_str() {
        assert!(Instant::now() < deadline, "the other worker never found the new orchestrator:\n{}", w.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for (id, (old, containers)) in &before {
        let d = wait_until(&format!("{id} on the new orchestrator"), DEPLOY, || {
            let d = deployment_at(&c.ip, c.port, id);
            (d["status"] == "Running" && d["node"] != o_id.as_str()).then_some(d)
        });
        let (old_history, new_history) = (history(old), history(&d));
        assert_eq!(new_history[..old_history.len()], old_history[..], "{id}: history kept");
        if old["node"] != o_id.as_str() {
            assert_eq!(&containers_of(id), containers, "{id}: the very same container");
        }
        http_body(d["address"].as_str().expect("address"), Duration::from_secs(20));
    }
    let fresh = AppRepo::new("static-site");
    let (status, v) =
        post_at(&c.ip, c.port, "/api/v1/deployments", Some(json!({"url": fresh.url(), "branch": "main"})));
    assert_eq!(status, 202, "{v}");
    let fresh_id = v["id"].as_str().expect("id").to_string();
    wait_until("a new deployment through the new orchestrator", DEPLOY, || {
        (deployment_at(&c.ip, c.port, &fresh_id)["status"] == "Running").then_some(())
    });
    drop(w);
    drop(c);
}

#[test]
fn a_takeover_is_called_off_when_the_orchestrator_answers_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    log_tracing();
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-calloff-").tempdir().expect("tempdir");
    let o = orchestrator(&dir.path().join("o"), &account);
    let (faults, steps) = Steps::new();
    let c = Candidate::start(&dir.path().join("c"), "127.0.0.2", &o.server(), faults);
    wait_until("the candidate's replica", Duration::from_secs(30), || {
        let p = c.ping();
        (p["rollover_priority"] == 1 && p["replica_ready"] == true).then_some(())
    });
    let repo = AppRepo::new("static-site");
    let (status, v) = post_at("127.0.0.1", o.port, "/api/v1/deployments", Some(json!({"url": repo.url()})));
    assert_eq!((status, v["replicated"].clone()), (202, json!(true)), "{v}");
    let first = v["id"].as_str().expect("id").to_string();
    wait_status(&o, &first, "Running", DEPLOY);

    // The orchestrator stops answering (its process is frozen) long enough for
    // the candidate to start a takeover; it comes back while the first step fails.
    o.signal("STOP");
    let (step, reply) = steps.next(Duration::from_secs(60));
    assert_eq!(step, TakeoverStep::Broker);
    o.signal("CONT");
    wait_until("the orchestrator to answer again", Duration::from_secs(30), || {
        (ping_at("127.0.0.1", o.port)["role"] == "orchestrator").then_some(())
    });
    reply.send(Err("injected: port 5672 on 127.0.0.2 is already in use".into())).expect("waits");

    // The takeover is called off: the old orchestrator leads on, with its epoch,
    // and the candidate copies its state again: a new request is confirmed by
    // it (one that was not, made while it was reconnecting, is destroyed again).
    let repo2 = AppRepo::new("node-hello");
    let second = wait_until("the candidate to confirm changes again", Duration::from_secs(60), || {
        let (status, v) =
            post_at("127.0.0.1", o.port, "/api/v1/deployments", Some(json!({"url": repo2.url()})));
        assert_eq!(status, 202, "{v}");
        let id = v["id"].as_str().expect("id").to_string();
        if v["replicated"] == true {
            return Some(id);
        }
        let (status, v) = delete_at("127.0.0.1", o.port, &format!("/api/v1/deployments/{id}"));
        assert_eq!(status, 202, "{v}");
        None
    });
    let o_ping = ping_at("127.0.0.1", o.port);
    assert_eq!(
        (o_ping["role"].as_str(), o_ping["epoch"].as_u64()),
        (Some("orchestrator"), Some(1)),
        "{o_ping}"
    );
    let c_ping = c.ping();
    assert_eq!((c_ping["role"].as_str(), c_ping["epoch"].as_u64()), (Some("worker"), Some(1)), "{c_ping}");
    assert!(steps.calls.try_recv().is_err(), "no further takeover attempt");
    for id in [&first, &second] {
        wait_status(&o, id, "Running", DEPLOY);
    }
    let platform = get_json(o.port, "/api/v1/platform").expect("platform");
    assert_eq!(platform["replication"]["state"], "synchronous", "{platform}");
    assert!(!o.log().contains("stepping down"), "the orchestrator never stepped down:\n{}", o.log());
    assert!(
        !o.log().contains("marking the node down"),
        "nobody was marked down for the freeze:\n{}",
        o.log()
    );
    drop(c);
}
