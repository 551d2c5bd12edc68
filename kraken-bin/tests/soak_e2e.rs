//! No false alarms under load, with the default settings: three agents (an
//! orchestrator and two workers, separate processes on loopback addresses, a
//! real broker and Docker engine) while every CPU of the machine is saturated
//! by busy loops and by image builds that burn CPU, one after the other. No
//! node may be marked down and no takeover may start.
//!
//! The default test command runs it for 60 s. The long soak is the same test
//! for 10 minutes:
//!
//! ```sh
//! KRAKEN_SOAK_SECS=600 cargo test -p kraken-bin --test soak_e2e -- --nocapture
//! ```

#[path = "../../kraken-lib/tests/common/apps.rs"]
mod apps;
mod support;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apps::AppRepo;
use serde_json::{json, Value};
use support::*;

const JOIN_TOKEN: &str = "soak-join-token-0123";

/// Busy loops, one more than there are CPUs; killed when dropped.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Self(
            (0..=cpus)
                .map(|_| Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("a busy loop"))
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An app whose every build burns CPU for a while; each update is a new commit
/// (so nothing comes from the cache).
fn burning_app() -> AppRepo {
    let repo = AppRepo::new("dockerfile-app");
    repo.commit(&[("Dockerfile", &burning_dockerfile(0))], "a build that burns CPU");
    repo
}

fn burning_dockerfile(round: u32) -> String {
    format!(
        "FROM {}\nRUN echo round {round} && i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done\n\
         RUN mkdir -p /www && echo \"hello from a dockerfile\" > /www/index.html\nCOPY serve.sh /serve.sh\n\
         EXPOSE 9000\nCMD [\"sh\", \"/serve.sh\"]\n",
        apps::base_image()
    )
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn no_node_is_marked_down_and_no_takeover_starts_while_every_cpu_is_saturated() {
    let secs: u64 = std::env::var("KRAKEN_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let account = BrokerAccount::new();
    let dir = tempfile::Builder::new().prefix("kraken-soak-").tempdir().expect("tempdir");
    let o_args = ["--amqp-url", &account.url(), "--join-token", JOIN_TOKEN].map(String::from);
    let o =
        Agent::spawn("up", &dir.path().join("o"), "127.0.0.1", free_port(), &o_args).expect("orchestrator");
    let w_args = ["--join", &o.server(), "--join-token", JOIN_TOKEN].map(String::from);
    let workers: Vec<Agent> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            Agent::spawn("worker", &dir.path().join(format!("w{i}")), ip, free_port(), &w_args)
                .expect("worker")
        })
        .collect();
    let nodes =
        || get_json(o.port, "/api/v1/nodes").ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes().iter().filter(|n| n["up"] == true).count() < 3 {
        assert!(Instant::now() < deadline, "three nodes up: {:#?}", nodes());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Two apps that are rebuilt again and again, spread over the nodes.
    let repos: Vec<AppRepo> = (0..2).map(|_| burning_app()).collect();
    let ids: Vec<String> = repos
        .iter()
        .map(|r| {
            let (status, v) = call(
                o.port,
                "POST",
                "/api/v1/deployments",
                Some(json!({"url": r.url(), "branch": "main"})),
                Some(TOKEN),
            );
            assert_eq!(status, 202, "{v}");
            v["id"].as_str().expect("id").to_string()
        })
        .collect();
    for id in &ids {
        wait_status(&o, id, "Running", Duration::from_secs(300));
    }

    let hogs = Hogs::start();
    let stop = Arc::new(AtomicBool::new(false));
    let builds = Arc::new(AtomicU32::new(0));
    let port = o.port;
    let builders: Vec<_> = repos
        .into_iter()
        .zip(ids.clone())
        .map(|(repo, id)| {
            let (stop, builds) = (stop.clone(), builds.clone());
            std::thread::spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    repo.commit(&[("Dockerfile", &burning_dockerfile(round))], "another build");
                    let (status, _) =
                        call(port, "POST", &format!("/api/v1/deployments/{id}/update"), None, Some(TOKEN));
                    if status != 202 {
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                    let started = Instant::now();
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(300) {
                        let d = get_json(port, &format!("/api/v1/deployments/{id}")).unwrap_or(Value::Null);
                        if d["status"] == "Running" || d["status"] == "Errored" {
                            builds.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            })
        })
        .collect();

    // Watch: every node stays up, the whole time.
    let started = Instant::now();
    let mut worst_heartbeat_age = 0.0f64;
    let mut loads = Vec::new();
    let mut down_seen = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let now = chrono::Utc::now();
        for n in nodes() {
            if n["up"] != true {
                down_seen.push(format!("{} at {:.1} s", n["name"], started.elapsed().as_secs_f64()));
            }
            if let Some(at) =
                n["last_heartbeat"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                worst_heartbeat_age = worst_heartbeat_age
                    .max((now - at.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0);
            }
        }
        loads.push(loadavg());
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::SeqCst);
    drop(hogs);
    for b in builders {
        b.join().expect("a build loop");
    }

    let logs: Vec<(String, String)> =
        std::iter::once(&o).chain(workers.iter()).map(|a| (a.server(), a.log())).collect();
    for (who, log) in &logs {
        for alarm in ["marking the node down", "taking over", "took over", "stepping down"] {
            assert!(!log.contains(alarm), "{who} logged `{alarm}` under load:\n{log}");
        }
    }
    assert!(down_seen.is_empty(), "nodes shown down under load: {down_seen:?}");
    for a in std::iter::once(&o).chain(workers.iter()) {
        let p = get_json_at(&a.ip, a.port, "/ping").expect("ping");
        assert_eq!(p["epoch"], 1, "no takeover: {p}");
    }
    assert_eq!(get_json_at(&o.ip, o.port, "/ping").expect("ping")["role"], "orchestrator");
    let builds = builds.load(Ordering::SeqCst);
    assert!(builds > 0, "images were built during the run");
    let mean_load = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
    eprintln!(
        "MEASURED soak {secs} s, {} CPUs saturated (busy loops + {builds} image builds): no node marked down, no takeover; load average mean {mean_load:.1}, max {:.1}; oldest heartbeat seen {worst_heartbeat_age:.2} s (grace 2 s)",
        std::thread::available_parallelism().map_or(2, usize::from),
        loads.iter().cloned().fold(0.0, f64::max),
    );
    for id in &ids {
        call(o.port, "DELETE", &format!("/api/v1/deployments/{id}"), None, Some(TOKEN));
    }
    for id in &ids {
        wait_status(&o, id, "Destroyed", Duration::from_secs(120));
    }
}
