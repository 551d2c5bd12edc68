//! The Docker runtime against the real engine: building, running, observing,
//! listing and removing containers and images.
//!
//! Every test builds on the local base image (env `KRAKEN_TEST_BASE_IMAGE`),
//! uses its own names and labels, and removes what it made through a guard.

#![allow(clippy::unwrap_used)]

#[path = "common/docker.rs"]
mod docker;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kraken_lib::builder::{BuildPlan, Step};
use kraken_lib::runtime::{
    pick_host_port, AppImage, AppLimits, BuildLayers, ContainerSpec, DockerRuntime, LogRotation, Runtime,
    RuntimeError, LABEL_DEPLOYMENT, LABEL_MANAGED, LABEL_NODE, LABEL_PORT, TEST_OUTPUT_BYTES,
};
use tokio::sync::mpsc;

use docker::{all_containers, base_image, http_get, unique, wait_for, Cleanup};

/// The tiny app: prints a start-up line, answers every GET with `hello from <marker>`,
/// and exits at once on SIGTERM.
const SERVER_PY: &str = r#"
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
fn server_plan(dir: &Path, marker: &str) -> BuildPlan {
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
fn own_layers(marker: &str) -> String {
    format!("LABEL {}={marker}", docker::TEST_LABEL)
}

/// A plan whose context is an empty directory and whose Dockerfile is `body`
/// after `FROM <base>` and [`own_layers`].
fn plan_with(dir: &Path, marker: &str, body: &str) -> BuildPlan {
    BuildPlan::new(
        "test",
        Step::new(base_image(), "test"),
        dir,
        format!("FROM {}\n{}\n{body}\n", base_image(), own_layers(marker)),
    )
}

/// Builds `plan` as `tag` (removed by the guard); returns the result and all log lines.
async fn build(
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
fn app_labels(guard: &Cleanup, dep: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        guard.label(),
        (LABEL_DEPLOYMENT.to_string(), dep.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
    ])
}

#[tokio::test]
async fn builds_runs_observes_lists_and_removes_an_app() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("full");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let plan = server_plan(dir.path(), &run);
    let tag = format!("{run}:v1");

    let started = Instant::now();
    let (built, lines) = build(&rt, &mut guard, &plan, &tag).await;
    let image_id = built.unwrap();
    let build_time = started.elapsed();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert!(lines.iter().any(|l| l.contains("Step 1/")), "no build steps in the log: {lines:?}");
    assert!(lines.iter().all(|l| !l.is_empty() && !l.ends_with('\n')), "{lines:?}");
    let image = rt.client().inspect_image(&tag).await.unwrap();
    let image_labels = image.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(image_labels.get(LABEL_MANAGED), None, "images are built without labels");
    assert_eq!(image_labels.get(docker::TEST_LABEL), Some(&run), "the Dockerfile's own label");
    // No instruction added to the plan's Dockerfile (labels given to the
    // classic builder would have been one more step).
    let steps = plan.dockerfile.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines.iter().any(|l| l.starts_with(&format!("Step {steps}/{steps} :"))), "{lines:?}");

    let node = format!("node-{run}");
    let spec = ContainerSpec {
        name: run.clone(),
        image: tag.clone(),
        labels: app_labels(&guard, "dep-1", &node),
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        container_port: 8000,
        publish: true,
        host_port: 0,
        host_ip: "127.0.0.1".into(),
        memory_limit: 256 * 1024 * 1024,
        pids_limit: 64,
        log_rotation: Some(LogRotation { max_file_bytes: 1024 * 1024, max_files: 2 }),
        init: true,
        stop_timeout: Some(Duration::from_secs(2)),
    };
    let started = Instant::now();
    let (id, host_port) = rt.run_container(&spec).await.unwrap();
    // The engine applies the limits: processes, and output kept on disk.
    let host = rt.client().inspect_container(&id, None).await.unwrap().host_config.unwrap();
    assert_eq!(host.pids_limit, Some(64));
    let log = host.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    let log_options = log.config.unwrap_or_default();
    assert_eq!(log_options.get("max-size").map(String::as_str), Some("1048576"));
    assert_eq!(log_options.get("max-file").map(String::as_str), Some("2"));
    // An init process passes signals on; stops wait the spec's timeout, not the engine's 10 s.
    assert_eq!(host.init, Some(true));
    let config = rt.client().inspect_container(&id, None).await.unwrap().config.unwrap();
    assert_eq!(config.stop_timeout, Some(2));
    assert_ne!(host_port, 0);
    let body = http_get(host_port, "/", Duration::from_secs(30)).await;
    let start_time = started.elapsed();
    assert_eq!(body, format!("hello from {run}"));
    eprintln!("tiny image: build {build_time:?}, start until first HTTP answer {start_time:?}");

    let state = rt.inspect(&id).await.unwrap();
    assert!(state.running, "{state:?}");
    assert_eq!(state.exit_code, None);
    assert!(state.started_at.is_some());
    // The app answers on its own address too, without the published port.
    let address = state.address.expect("a running container has an address");
    let direct = tokio::net::TcpStream::connect((address, 8000)).await;
    assert!(direct.is_ok(), "{address}:8000 refused: {direct:?}");

    let lines: Vec<_> = rt.logs(&id, false, false).collect().await;
    let lines: Vec<_> = lines.into_iter().map(Result::unwrap).collect();
    assert!(
        lines.iter().any(|l| l.stream == "stdout" && l.line == "tiny app listening on 8000"),
        "{lines:?}"
    );

    // Following: the first line arrives although the stream stays open.
    let mut follow = rt.logs(&id, true, false);
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.line, "tiny app listening on 8000");
    drop(follow);

    let stats = rt.stats(&id).await.unwrap();
    assert!(stats.memory_bytes > 0, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, 256 * 1024 * 1024, "{stats:?}");
    assert!(stats.memory_bytes < stats.memory_limit_bytes, "{stats:?}");
    assert!(stats.cpu_percent.is_finite() && stats.cpu_percent >= 0.0, "{stats:?}");

    let listed = rt.list_managed(Some(node.clone())).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let found = &listed[0];
    assert_eq!(found.id, id);
    assert_eq!(found.name, run);
    assert_eq!(found.image, tag);
    assert!(found.running);
    assert_eq!(found.host_port, Some(host_port));
    assert_eq!(found.labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
    assert_eq!(found.labels.get(LABEL_DEPLOYMENT).map(String::as_str), Some("dep-1"));
    assert_eq!(found.labels.get(LABEL_NODE), Some(&node));
    assert_eq!(found.labels.get(LABEL_PORT).map(String::as_str), Some("8000"));
    assert!(rt.list_managed(None).await.unwrap().iter().any(|c| c.id == id));

    // An image a container uses is not removed.
    let in_use = rt.remove_image(&tag).await;
    assert!(matches!(in_use, Err(RuntimeError::Engine { .. })), "{in_use:?}");
    // The engine's own answer (409, image in use) is kept as the source.
    let source = in_use.as_ref().err().and_then(std::error::Error::source);
    assert!(
        matches!(
            source.and_then(|s| s.downcast_ref::<bollard::errors::Error>()),
            Some(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })
        ),
        "{source:?}"
    );

    rt.remove_container(&id).await.unwrap();
    assert!(rt.list_managed(Some(node.clone())).await.unwrap().is_empty());
    assert!(matches!(rt.inspect(&id).await, Err(RuntimeError::NotFound { .. })));
    rt.remove_container(&id).await.unwrap();

    rt.remove_image(&tag).await.unwrap();
    let gone = rt.client().inspect_image(&tag).await;
    assert!(gone.is_err(), "image {tag} is still there");
    rt.remove_image(&tag).await.unwrap();
}

/// Asserts that no container on the engine runs a command containing `marker`
/// and none carries the guard's label.
fn assert_no_leftovers(guard: &Cleanup, marker: &str, before: &[String]) {
    let after = all_containers();
    let new: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
    let ours: Vec<_> = new.iter().filter(|c| c.contains(marker)).collect();
    assert!(ours.is_empty(), "containers of this test remain: {ours:?}");
    let filter = format!("label={}={}", docker::TEST_LABEL, guard.id);
    let labelled = docker::docker_lines(&["ps", "-aq", "--filter", &filter]);
    assert!(labelled.is_empty(), "labelled containers remain: {labelled:?}");
}

#[tokio::test]
async fn a_failing_build_reports_its_error_and_leaves_no_containers() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("fail");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let before = all_containers();
    let plan = plan_with(dir.path(), &run, &format!("RUN echo {run} && false"));

    let (built, lines) = build(&rt, &mut guard, &plan, &format!("{run}:v1")).await;
    let Err(RuntimeError::BuildFailed(message)) = built else {
        panic!("expected BuildFailed, got {built:?}")
    };
    assert!(message.contains("non-zero code"), "{message}");
    assert_eq!(lines.last(), Some(&message), "the error is the last log line: {lines:?}");
    assert!(lines.iter().any(|l| l.contains(&format!("RUN echo {run}"))), "{lines:?}");
    assert_no_leftovers(&guard, &run, &before);
    assert!(rt.client().inspect_image(&format!("{run}:v1")).await.is_err());
}

#[tokio::test]
async fn the_plans_files_and_build_args_reach_the_build_only() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("args");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan_with(
        dir.path(),
        &run,
        "COPY generated.txt /generated.txt\nRUN echo \"file=$(cat /generated.txt) proxy=$HTTPS_PROXY\"\nCMD [\"sh\", \"-c\", \"echo proxy=$HTTPS_PROXY\"]",
    );
    plan.files.insert("generated.txt".to_string(), b"made by the plan".to_vec());
    plan.build_args.insert("HTTPS_PROXY".to_string(), "http://proxy.invalid:3128".to_string());
    let tag = format!("{run}:v1");
    let (built, lines) = build(&rt, &mut guard, &plan, &tag).await;
    built.unwrap();
    assert!(
        lines.iter().any(|l| l.contains("file=made by the plan proxy=http://proxy.invalid:3128")),
        "{lines:?}"
    );
    // A predefined proxy argument is not kept in the image.
    let (code, output) = rt
        .run_to_completion(
            &tag,
            "echo proxy=$HTTPS_PROXY",
            &BTreeMap::new(),
            &BTreeMap::new(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!((code, output.trim()), (0, "proxy="));
}

#[tokio::test]
async fn an_app_image_is_found_by_its_tag_and_an_earlier_version_s_by_its_labels() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("tagged");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let node = run.clone();
    let tagged =
        AppImage { node: node.clone(), app: "tagged".into(), deployment: "d00d".into(), generation: 3 };
    let tag = tagged.tag();
    let plan = plan_with(dir.path(), &run, "EXPOSE 8000");
    let (built, lines) = build(&rt, &mut guard, &plan, &tag).await;
    let tagged_id = built.unwrap_or_else(|e| panic!("{e}: {lines:?}"));

    // An image as an earlier version built it: any tag, Kraken's labels.
    let legacy_tag = format!("kraken/legacy-{run}:d00d-1");
    guard.track_tag(&legacy_tag);
    let legacy_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        legacy_dir.path().join("Dockerfile"),
        format!("FROM {}\n{}\n", base_image(), own_layers(&run)),
    )
    .unwrap();
    let node_label = format!("{LABEL_NODE}={node}");
    let legacy_id = docker::docker_lines(&[
        "build",
        "-q",
        "-t",
        &legacy_tag,
        "--label",
        "kraken.managed=true",
        "--label",
        &node_label,
        &legacy_dir.path().display().to_string(),
    ])
    .join("");
    assert!(legacy_id.starts_with("sha256:"), "{legacy_id}");

    let listed = rt.list_images(Some(node.clone())).await.unwrap();
    let found = listed.iter().find(|i| i.id == tagged_id).unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(found.tags, std::slice::from_ref(&tag));
    assert_eq!(found.labels.get(LABEL_MANAGED), None, "found by its tag alone");
    let old = listed.iter().find(|i| i.id == legacy_id).unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(old.tags, std::slice::from_ref(&legacy_tag));
    assert_eq!(listed.len(), 2, "nothing else is this node's: {listed:?}");
    let all = rt.list_images(None).await.unwrap();
    assert!(all.iter().any(|i| i.id == tagged_id) && all.iter().any(|i| i.id == legacy_id));
    let other = rt.list_images(Some(format!("other-{run}"))).await.unwrap();
    assert!(other.iter().all(|i| i.id != tagged_id && i.id != legacy_id), "{other:?}");

    for name in [&tag, &legacy_tag] {
        rt.remove_image(name).await.unwrap();
    }
    assert!(rt.list_images(Some(node)).await.unwrap().is_empty(), "both removed");
    assert!(rt.client().inspect_image(&tagged_id).await.is_err());
}

#[tokio::test]
async fn an_unpublished_container_publishes_nothing_and_is_reached_on_its_own_address() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("unpublished");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{run}:v1");
    let body = format!(
        "RUN mkdir /www && echo {run} > /www/index.html\n\
         CMD [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8000\", \"-h\", \"/www\"]"
    );
    build(&rt, &mut guard, &plan_with(dir.path(), &run, &body), &tag).await.0.unwrap();
    let spec = ContainerSpec {
        name: run.clone(),
        image: tag,
        labels: app_labels(&guard, "dep-unpublished", &format!("node-{run}")),
        container_port: 8000,
        publish: false,
        init: true,
        ..Default::default()
    };
    let (id, port) = rt.run_container(&spec).await.unwrap();
    assert_eq!(port, 0, "no host port");
    assert_eq!(docker::docker_lines(&["port", &id]), Vec::<String>::new(), "the engine publishes nothing");
    let listed = rt.list_managed(Some(format!("node-{run}"))).await.unwrap();
    assert_eq!(listed.iter().find(|c| c.id == id).map(|c| c.host_port), Some(None), "{listed:?}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().unwrap();
    let page = wait_for("the app on its container's address", Duration::from_secs(60), || {
        let (rt, id, client) = (rt.clone(), id.clone(), client.clone());
        async move {
            let address = rt.inspect(&id).await.unwrap().address?;
            let url = format!("http://{}/", std::net::SocketAddr::from((address, 8000)));
            client.get(&url).send().await.ok()?.text().await.ok()
        }
    })
    .await;
    assert_eq!(page.trim(), run);
    rt.remove_container(&id).await.unwrap();
}

#[tokio::test]
async fn a_failed_build_removes_the_layers_it_made() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("layers");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let plan =
        plan_with(dir.path(), &run, &format!("RUN echo {run} > /made\nRUN echo second > /more\nRUN false"));

    let (built, lines) = build(&rt, &mut guard, &plan, &format!("{run}:v1")).await;
    assert!(matches!(built, Err(RuntimeError::BuildFailed(_))), "{built:?}");
    let mut layers = BuildLayers::new();
    let made: Vec<String> = lines.iter().filter_map(|l| layers.read(l)).collect();
    assert!(made.len() >= 2, "the build made its own layers before failing: {lines:?}");
    for layer in &made {
        assert!(rt.client().inspect_image(layer).await.is_err(), "layer {layer} of the failed build is gone");
    }
}

#[tokio::test]
async fn a_bad_instruction_fails_the_build() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("bad");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_with(dir.path(), &run, "NOSUCHINSTRUCTION here");

    let (built, lines) = build(&rt, &mut guard, &plan, &format!("{run}:v1")).await;
    let Err(RuntimeError::BuildFailed(message)) = built else {
        panic!("expected BuildFailed, got {built:?}")
    };
    assert!(message.to_lowercase().contains("nosuchinstruction"), "{message}");
    assert!(lines.contains(&message), "{lines:?}");
}

#[tokio::test]
async fn a_process_that_exits_at_once_is_reported_stopped_with_its_code() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("exit");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{run}:v1");
    let plan = plan_with(dir.path(), &run, "CMD [\"sh\", \"-c\", \"echo bye; exit 3\"]");
    build(&rt, &mut guard, &plan, &tag).await.0.unwrap();

    let spec = ContainerSpec {
        name: run.clone(),
        image: tag,
        labels: app_labels(&guard, "dep-exit", &format!("node-{run}")),
        container_port: 8000,
        publish: true,
        host_port: pick_host_port(0),
        host_ip: "127.0.0.1".into(),
        ..Default::default()
    };
    let (id, _) = rt.run_container(&spec).await.unwrap();
    // A new container is not restarted, so its own exit code shows.
    let state = wait_for("the container to be stopped with code 3", Duration::from_secs(30), || {
        let rt = rt.clone();
        let id = id.clone();
        async move {
            let s = rt.inspect(&id).await.unwrap();
            (!s.running && s.exit_code == Some(3)).then_some(s)
        }
    })
    .await;
    assert_eq!(state.restart_count, 0);
    let lines: Vec<_> = rt.logs(&id, false, false).collect().await;
    assert!(lines.into_iter().map(Result::unwrap).any(|l| l.line == "bye"));
    // Once told to keep it running, the engine restarts it after each exit.
    rt.keep_restarting(&id).await.unwrap();
    rt.client().start_container::<String>(&id, None).await.unwrap();
    wait_for("the engine to restart it", Duration::from_secs(30), || {
        let rt = rt.clone();
        let id = id.clone();
        async move { (rt.inspect(&id).await.unwrap().restart_count >= 1).then_some(()) }
    })
    .await;
    rt.remove_container(&id).await.unwrap();
}

#[tokio::test]
async fn run_to_completion_returns_code_and_output() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("once");
    let guard = Cleanup::new(&run);
    let before = all_containers();
    let env = BTreeMap::from([("GREETING".to_string(), "hello-env".to_string())]);
    let labels = BTreeMap::from([guard.label(), (LABEL_DEPLOYMENT.to_string(), run.clone())]);

    let (code, output) = rt
        .run_to_completion(
            &base_image(),
            &format!("echo {run} $GREETING; echo to-stderr >&2"),
            &env,
            &labels,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(output.contains(&format!("{run} hello-env")), "{output}");
    assert!(output.contains("to-stderr"), "{output}");

    let (code, output) = rt
        .run_to_completion(
            &base_image(),
            &format!("echo failing {run}; exit 7"),
            &env,
            &labels,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(code, 7);
    assert!(output.contains(&format!("failing {run}")), "{output}");

    assert_no_leftovers(&guard, &run, &before);

    let missing = rt
        .run_to_completion(&format!("{run}-no-such-image"), "true", &env, &labels, Duration::from_secs(60))
        .await;
    assert!(matches!(missing, Err(RuntimeError::NotFound { .. })), "{missing:?}");

    // A command that outlasts its time is stopped, reported, and leaves
    // nothing behind. While it runs, its container carries the labels it was
    // given (the image has none to pass on) and the test role.
    let slow = {
        let (rt, env, labels, run) = (rt.clone(), env.clone(), labels.clone(), run.clone());
        tokio::spawn(async move {
            rt.run_to_completion(
                &base_image(),
                &format!("echo {run}; sleep 300"),
                &env,
                &labels,
                Duration::from_secs(10),
            )
            .await
        })
    };
    let filter = format!("label={}={}", docker::TEST_LABEL, run);
    let running = wait_for("the test command's container", Duration::from_secs(20), || {
        let filter = filter.clone();
        async move { docker::docker_lines(&["ps", "-q", "--filter", &filter]).into_iter().next() }
    })
    .await;
    let label_of = |key: &str| {
        let format = format!("{{{{index .Config.Labels \"{key}\"}}}}");
        docker::docker_lines(&["inspect", "-f", &format, &running]).join("")
    };
    assert_eq!(label_of(LABEL_DEPLOYMENT), run, "the labels given");
    assert_eq!(label_of("kraken.role"), "test");
    assert_eq!(label_of(LABEL_MANAGED), "true");
    let slow = slow.await.unwrap();
    assert!(matches!(&slow, Err(RuntimeError::TimedOut(m)) if m.contains("10 s")), "{slow:?}");
    assert_no_leftovers(&guard, &run, &before);
}

#[tokio::test]
async fn a_test_command_cannot_fork_without_end_and_only_the_end_of_its_output_is_kept() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("bounded");
    let guard = Cleanup::new(&run);
    let before = all_containers();
    let env = BTreeMap::new();
    // Tries to start 700 processes, counts how many it got, and stops them.
    let script = format!(
        "python3 - <<'EOF'\n\
         import os, signal\n\
         children = []\n\
         for _ in range(700):\n\
         \x20   try:\n\
         \x20       pid = os.fork()\n\
         \x20   except OSError:\n\
         \x20       break\n\
         \x20   if pid == 0:\n\
         \x20       signal.pause()\n\
         \x20       os._exit(0)\n\
         \x20   children.append(pid)\n\
         print('{run} processes', len(children) + 1, flush=True)\n\
         for pid in children:\n\
         \x20   os.kill(pid, signal.SIGKILL)\n\
         EOF\n"
    );
    let (code, output) = rt
        .run_to_completion(&base_image(), &script, &env, &BTreeMap::new(), Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(code, 0, "{output}");
    let count: usize = output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{run} processes ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {output}"));
    assert!(count <= AppLimits::default().pids as usize, "{count} processes ran");
    assert!(count > 100, "the count is real: {count}");

    // Eight megabytes printed: the answer holds the end, a note, and no more.
    let (code, output) = rt
        .run_to_completion(
            &base_image(),
            &format!("i=0; while [ $i -lt 100000 ]; do echo line $i of {run} padded to eighty bytes................; i=$((i+1)); done"),
            &env,
            &BTreeMap::new(),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(output.len() <= TEST_OUTPUT_BYTES + 100, "{} bytes kept", output.len());
    assert!(output.starts_with("[… the first "), "{}", &output[..80]);
    assert!(output
        .trim_end()
        .ends_with(&format!("line 99999 of {run} padded to eighty bytes................")));
    assert_no_leftovers(&guard, &run, &before);
}

#[tokio::test]
async fn a_new_runtime_readopts_running_containers_by_label() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("adopt");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{run}:v1");
    build(&rt, &mut guard, &server_plan(dir.path(), &run), &tag).await.0.unwrap();
    let node = format!("node-{run}");
    let spec = ContainerSpec {
        name: run.clone(),
        image: tag,
        labels: app_labels(&guard, "dep-adopt", &node),
        container_port: 8000,
        publish: true,
        host_port: 0,
        host_ip: "127.0.0.1".into(),
        ..Default::default()
    };
    let (id, port) = rt.run_container(&spec).await.unwrap();
    drop(rt);

    // As an agent after a restart: a fresh connection, only the labels to go by.
    let fresh = DockerRuntime::connect().await.unwrap();
    let listed = fresh.list_managed(Some(node)).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].host_port, Some(port));
    assert_eq!(http_get(port, "/", Duration::from_secs(30)).await, format!("hello from {run}"));
    assert!(fresh.list_managed(Some(format!("other-{run}"))).await.unwrap().is_empty());
    fresh.remove_container(&id).await.unwrap();
}

/// Stops `id` the way [`Runtime::remove_container`] does (with the
/// container's own stop timeout) and returns the exit code the engine saw.
async fn stop_and_exit_code(rt: &DockerRuntime, id: &str) -> i64 {
    rt.client().stop_container(id, None).await.unwrap();
    let state = rt.inspect(id).await.unwrap();
    assert!(!state.running, "{state:?}");
    state.exit_code.expect("a stopped container has an exit code")
}

#[tokio::test]
async fn an_app_that_ignores_sigterm_as_pid_1_stops_at_once_under_init() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("init");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{run}:v1");
    // `sleep` installs no SIGTERM handler: as PID 1 the kernel drops the
    // signal, as the init's child it dies of it. A shell trapping TERM
    // ignores it either way and is killed when the stop timeout ends.
    std::fs::write(
        dir.path().join("stop.sh"),
        "if [ -n \"$TRAP\" ]; then trap '' TERM; while :; do sleep 1; done; else exec sleep 100000; fi\n",
    )
    .unwrap();
    let body = "COPY stop.sh /stop.sh\nCMD [\"sh\", \"/stop.sh\"]";
    build(&rt, &mut guard, &plan_with(dir.path(), &run, body), &tag).await.0.unwrap();
    let spec = |name: &str, trap: bool, init: bool| ContainerSpec {
        name: format!("{run}-{name}"),
        image: tag.clone(),
        labels: app_labels(&guard, name, &format!("node-{run}")),
        env: if trap { BTreeMap::from([("TRAP".to_string(), "1".to_string())]) } else { BTreeMap::new() },
        container_port: 8000,
        publish: true,
        host_ip: "127.0.0.1".into(),
        init,
        stop_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };

    // Under init, SIGTERM ends the app: 128 + 15, no kill needed.
    let (id, _) = rt.run_container(&spec("plain", false, true)).await.unwrap();
    assert_eq!(stop_and_exit_code(&rt, &id).await, 143, "the app died of SIGTERM");
    rt.remove_container(&id).await.unwrap();
    // Without init the same app ignores SIGTERM and is killed (128 + 9) once
    // the stop timeout ends: what the init option saves.
    let (id, _) = rt.run_container(&spec("no-init", false, false)).await.unwrap();
    assert_eq!(stop_and_exit_code(&rt, &id).await, 137, "as PID 1 the app ignored SIGTERM");
    rt.remove_container(&id).await.unwrap();
    // An app that traps SIGTERM is killed after the container's own stop
    // timeout (1 s here), which the engine took from the spec.
    let (id, _) = rt.run_container(&spec("trap", true, true)).await.unwrap();
    let config = rt.client().inspect_container(&id, None).await.unwrap().config.unwrap();
    assert_eq!(config.stop_timeout, Some(1));
    assert_eq!(stop_and_exit_code(&rt, &id).await, 137, "the trapping app was killed");
    rt.remove_container(&id).await.unwrap();
}

#[tokio::test]
async fn following_after_any_line_gives_exactly_the_lines_after_it_in_each_streams_order() {
    let rt = DockerRuntime::connect().await.unwrap();
    let run = unique("resume");
    let mut guard = Cleanup::new(&run);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{run}:v1");
    // Many lines at once: the engine stamps the lines of one read alike.
    let script =
        "i=0; while [ $i -lt 3000 ]; do echo \\\"out $i\\\"; echo \\\"err $i\\\" >&2; i=$((i+1)); done";
    let plan = plan_with(dir.path(), &run, &format!("CMD [\"sh\", \"-c\", \"{script}\"]"));
    build(&rt, &mut guard, &plan, &tag).await.0.unwrap();
    let spec = ContainerSpec {
        name: run.clone(),
        image: tag,
        labels: app_labels(&guard, "dep-resume", &format!("node-{run}")),
        container_port: 8000,
        host_port: pick_host_port(0),
        host_ip: "127.0.0.1".into(),
        ..Default::default()
    };
    let (id, _) = rt.run_container(&spec).await.unwrap();
    wait_for("the container to finish printing", Duration::from_secs(60), || {
        let rt = rt.clone();
        let id = id.clone();
        async move { (!rt.inspect(&id).await.unwrap().running).then_some(()) }
    })
    .await;

    let all: Vec<_> = rt.follow_after(&id, None).map(Result::unwrap).collect().await;
    assert_eq!(all.len(), 6000);
    for (stream, word) in [("stdout", "out"), ("stderr", "err")] {
        let lines: Vec<_> =
            all.iter().filter(|(l, _)| l.stream == stream).map(|(l, _)| l.line.clone()).collect();
        let want: Vec<_> = (0..3000).map(|i| format!("{word} {i}")).collect();
        assert_eq!(lines, want, "{stream} in the order printed");
    }
    let positions: std::collections::BTreeSet<_> = all.iter().map(|(_, at)| at.clone()).collect();
    assert_eq!(positions.len(), all.len(), "each line has a position of its own");
    let shared = all.iter().filter(|(_, at)| at.nth > 1).count();
    eprintln!("{shared} of 6000 lines share their timestamp with an earlier line");

    // Wherever an agent stopped, the lines after it come, each once.
    let mut cuts = vec![0, 1, 2999, 5998];
    cuts.extend(all.iter().position(|(_, at)| at.nth > 1));
    // Where the engine kept a later-stamped message before an earlier one.
    let swapped = all.windows(2).position(|w| w[1].1.at < w[0].1.at);
    eprintln!("first line followed by an earlier-stamped one: {swapped:?}");
    cuts.extend(swapped);
    for cut in cuts {
        let after = all[cut].1.clone();
        let rest: Vec<_> = rt.follow_after(&id, Some(after)).map(Result::unwrap).collect().await;
        assert_eq!(rest, all[cut + 1..], "after line {cut}");
    }
    rt.remove_container(&id).await.unwrap();
}
