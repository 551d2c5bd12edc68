//! What the runtime's tests against the real engine share: the engine with a
//! run name and a cleanup guard, the tiny app and its build plan, plans of
//! one's own, building with the log collected, labels, and checks that
//! nothing is left.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use kraken_lib::builder::{BuildPlan, Step};
use kraken_lib::runtime::{DockerRuntime, Runtime, RuntimeError, LABEL_DEPLOYMENT, LABEL_NODE};
use tokio::sync::mpsc;

use super::docker::{self, all_containers, base_image, unique, Cleanup};

/// The engine, a run name unique to this test (from `prefix`), and the guard
/// that removes what the test makes.
pub async fn engine(prefix: &str) -> (DockerRuntime, String, Cleanup) {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique(prefix);
    let guard = Cleanup::new(&run);
    (rt, run, guard)
}

/// The tiny app: prints a start-up line, answers every GET with `hello from <marker>`,
/// and exits at once on SIGTERM.
pub const SERVER_PY: &str = r#"
import http.server, signal, sys

MARKER = open("/app/marker").read().strip()

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + MARKER).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server = http.server.HTTPServer(("0.0.0.0", 8000), Hello)
print("tiny app listening on 8000", flush=True)
server.serve_forever()
"#;

/// Writes the tiny app into `dir` and returns its build plan.
pub fn server_plan(dir: &Path, marker: &str) -> BuildPlan {
    std::fs::write(dir.join("server.py"), SERVER_PY).unwrap();
    std::fs::write(dir.join("marker"), format!("{marker}\n")).unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let dockerfile = format!(
        "FROM {}\n{}\nWORKDIR /app\nCOPY . /app\nRUN test ! -e /app/.git\nEXPOSE 8000\nCMD [\"python3\", \"-u\", \"/app/server.py\"]\n",
        base_image(),
        own_layers(marker),
    );
    BuildPlan::new("test", Step::new(base_image(), "test"), dir, dockerfile)
}

/// A first instruction unique to the test run `marker`, so its build shares no
/// cached layer with a concurrent test whose cleanup could delete it mid-build.
pub fn own_layers(marker: &str) -> String {
    format!("LABEL {}={marker}", docker::TEST_LABEL)
}

/// A plan whose context is an empty directory and whose Dockerfile is `body`
/// after `FROM <base>` and [`own_layers`].
pub fn plan_with(dir: &Path, marker: &str, body: &str) -> BuildPlan {
    BuildPlan::new(
        "test",
        Step::new(base_image(), "test"),
        dir,
        format!("FROM {}\n{}\n{body}\n", base_image(), own_layers(marker)),
    )
}

/// Builds `plan` as `tag` (removed by the guard); returns the result and all log lines.
pub async fn build(
    rt: &DockerRuntime,
    guard: &mut Cleanup,
    plan: &BuildPlan,
    tag: &str,
) -> (Result<String, RuntimeError>, Vec<String>) {
    guard.track_tag(tag);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = rt.build_image(plan, tag, tx).await;
    let mut lines = Vec::new();
    while let Some(line) = rx.recv().await {
        lines.push(line);
    }
    (result, lines)
}

/// Labels for a container of deployment `dep` on node `node`, with the guard's label.
pub fn app_labels(guard: &Cleanup, dep: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        guard.label(),
        (LABEL_DEPLOYMENT.to_string(), dep.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
    ])
}

/// Asserts that no container on the engine runs a command containing `marker`
/// and none carries the guard's label.
pub fn assert_no_leftovers(guard: &Cleanup, marker: &str, before: &[String]) {
    let after = all_containers();
    let new: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
    let ours: Vec<_> = new.iter().filter(|c| c.contains(marker)).collect();
    assert!(ours.is_empty(), "containers of this test remain: {ours:?}");
    let filter = format!("label={}={}", docker::TEST_LABEL, guard.id);
    let labelled = docker::docker_lines(&["ps", "-aq", "--filter", &filter]);
    assert!(labelled.is_empty(), "labelled containers remain: {labelled:?}");
}

/// Stops `id` the way [`Runtime::remove_container`] does (with the
/// container's own stop timeout) and returns the exit code the engine saw.
pub async fn stop_and_exit_code(rt: &DockerRuntime, id: &str) -> i64 {
    rt.client().stop_container(id, None).await.unwrap();
    let state = rt.inspect(id).await.unwrap();
    assert!(!state.running, "{state:?}");
    state.exit_code.expect("a stopped container has an exit code")
}
