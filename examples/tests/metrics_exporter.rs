//! The `metrics_exporter` example's executor, run in a real combined node
//! (Docker engine, in-process bus): after an app is deployed through the API,
//! its `/metrics` names the node and the running app with its memory.

#[path = "../metrics_exporter/exporter.rs"]
mod exporter;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::fetcher::FetchProgram;
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::{NodeRole, Platform};
use kraken_lib::runtime::DockerRuntime;
use kraken_test_support::base_image;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(300);

/// Removes what the node made on the engine, even when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = format!("label=kraken.node={}", self.0);
        let images = format!("reference=kraken/{}/*", self.0);
        for (list, remove, filter) in [
            (&["ps", "-aq"][..], &["rm", "-f"][..], &containers),
            (&["images", "-q"][..], &["rmi", "-f"][..], &images),
        ] {
            let Ok(out) = Command::new("docker").args(list).args(["--filter", filter]).output() else {
                continue;
            };
            let ids: Vec<String> =
                String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").args(remove).args(&ids).output();
            }
        }
    }
}

/// A git repository with a static site on branch `main`.
fn static_site(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("repo dir");
    std::fs::write(
        dir.join("shipwreck.toml"),
        "[app]\nname = \"metrics-site\"\n\n[config]\nport = 8080\nlang = \"static\"\n",
    )
    .expect("shipwreck.toml");
    std::fs::write(dir.join("index.html"), "<h1>measured</h1>\n").expect("index.html");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "site"],
    ] {
        let status = Command::new("git").args(args).current_dir(dir).status().expect("git");
        assert!(status.success(), "git {args:?}");
    }
}

/// The exporter's text once `ready` holds for it, or a failure after [`DEADLINE`].
async fn metrics_until(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "the metrics never showed what was expected:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_shows_the_node_and_the_running_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    static_site(&dir.path().join("repo"));
    let mut config = NodeConfig::new(dir.path().join("data"), "127.0.0.1:0".parse().expect("address"));
    config.publish_ip = "127.0.0.1".into();
    config.allow_local_sources = true;
    config.fetch_program = FetchProgram::in_process();
    let runtime = Arc::new(DockerRuntime::connect().await.expect("a Docker engine"));
    // Bound here and handed over: no other program can take the port meanwhile.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("metrics port");
    let metrics = format!("http://{}/metrics", listener.local_addr().expect("address"));
    let platform = Platform::builder(config)
        .role(NodeRole::Combined)
        .registry(BuilderRegistry::with_builtins(BaseImages::uniform(&base_image())))
        .runtime(runtime.clone())
        .executor(exporter::MetricsExporter::new(listener, runtime))
        .start()
        .await
        .expect("platform");
    let _cleanup = Cleanup(platform.node_id().to_string());
    let node_id = platform.node_id().to_string();
    let api = platform.api_address();
    let token = platform.token().expect("a new platform knows its token").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(platform.run(async move {
        let _ = stopped.await;
    }));

    let text = metrics_until(&metrics, |t| t.contains("kraken_node_epoch")).await;
    assert!(text.contains(&format!("kraken_node_info{{node=\"{node_id}\",")), "{text}");
    assert!(text.contains("role=\"orchestrator\"} 1"), "{text}");
    assert!(text.contains("kraken_node_epoch 1"), "{text}");
    assert!(!text.contains("kraken_app_running{"), "no app yet: {text}");

    let http = reqwest::Client::new();
    let url = format!("file://{}", dir.path().join("repo").display());
    let created: Value = http
        .post(format!("{api}/api/v1/deployments"))
        .bearer_auth(&token)
        .json(&json!({"url": url, "branch": "main"}))
        .send()
        .await
        .expect("deploy")
        .json()
        .await
        .expect("answer");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("no id in {created}")).to_string();
    let running_line = format!("kraken_app_running{{deployment=\"{id}\"}} 1");
    let text = metrics_until(&metrics, |t| t.contains(&running_line)).await;
    let memory = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("kraken_app_memory_bytes{{deployment=\"{id}\"}} ")))
        .unwrap_or_else(|| panic!("no memory for {id}:\n{text}"));
    assert!(memory.parse::<u64>().is_ok_and(|m| m > 0), "memory {memory:?}");

    let status = http
        .delete(format!("{api}/api/v1/deployments/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("destroy")
        .status();
    assert!(status.is_success(), "destroy: {status}");
    metrics_until(&metrics, |t| t.contains("kraken_node_epoch") && !t.contains(&running_line)).await;
    let _ = stop.send(());
    running.await.expect("the platform task").expect("the platform stopped cleanly");
}
