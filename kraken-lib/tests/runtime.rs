//! The Docker runtime against the real engine, one app's whole life:
//! building, running, observing, listing and removing it, and a new runtime
//! adopting running containers.
//!
//! Every test builds on the local base image (env `KRAKEN_TEST_BASE_IMAGE`),
//! uses its own names and labels, and removes what it made through a guard
//! (the set-up shared by the runtime's tests is in `common/runtime_kit.rs`).

#![allow(clippy::unwrap_used)]

#[path = "common/docker.rs"]
mod docker;
#[path = "common/runtime_kit.rs"]
mod kit;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kraken_lib::runtime::{
    ContainerSpec, DockerRuntime, LogRotation, Runtime, RuntimeError, LABEL_DEPLOYMENT, LABEL_MANAGED,
    LABEL_NODE, LABEL_PORT,
};

use docker::http_get;
use kit::*;

#[tokio::test]
async fn builds_runs_observes_lists_and_removes_an_app() {
    let (rt, run, mut guard) = engine("full").await;
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
    assert_eq!(log.typ.as_deref(), Some("local"), "the engine's own format, read faster than JSON");
    let log_options = log.config.unwrap_or_default();
    assert_eq!(log_options.get("compress").map(String::as_str), Some("false"));
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

#[tokio::test]
async fn a_new_runtime_readopts_running_containers_by_label() {
    let (rt, run, mut guard) = engine("adopt").await;
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
