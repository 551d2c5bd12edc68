//! The Docker runtime's containers against the real engine: reached on their
//! own address, reported when they exit, run to completion for tests with
//! bounded processes and output, and stopped promptly under an init.

#![allow(clippy::unwrap_used)]

#[path = "common/docker.rs"]
mod docker;
#[path = "common/runtime_kit.rs"]
mod kit;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kraken_lib::runtime::{
    pick_host_port, AppLimits, ContainerSpec, Runtime, RuntimeError, LABEL_DEPLOYMENT, LABEL_MANAGED,
    TEST_OUTPUT_BYTES,
};

use docker::{all_containers, base_image, wait_for};
use kit::*;

#[tokio::test]
async fn an_unpublished_container_publishes_nothing_and_is_reached_on_its_own_address() {
    let (rt, run, mut guard) = engine("unpublished").await;
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
async fn a_process_that_exits_at_once_is_reported_stopped_with_its_code() {
    let (rt, run, mut guard) = engine("exit").await;
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
    let (rt, run, guard) = engine("once").await;
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
    let (rt, run, guard) = engine("bounded").await;
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
async fn an_app_that_ignores_sigterm_as_pid_1_stops_at_once_under_init() {
    let (rt, run, mut guard) = engine("init").await;
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
async fn removals_of_one_container_at_the_same_time_all_succeed() {
    let (rt, run, mut guard) = engine("removals").await;
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{run}:v1");
    // Ignores SIGTERM: every removal waits out the stop timeout, then they
    // all ask the engine to remove it at once (as a destroy does while an
    // update still retires the deployment's previous container).
    let body = "CMD [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 1; done\"]";
    build(&rt, &mut guard, &plan_with(dir.path(), &run, body), &tag).await.0.unwrap();
    let spec = ContainerSpec {
        name: run.clone(),
        image: tag,
        labels: app_labels(&guard, "dep-removals", &format!("node-{run}")),
        container_port: 8000,
        host_ip: "127.0.0.1".into(),
        init: true,
        stop_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let (id, _) = rt.run_container(&spec).await.unwrap();
    let removals = (0..4).map(|_| rt.remove_container(&id));
    let results = futures::future::join_all(removals).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(rt.inspect(&id).await.is_err(), "the container is gone");
}
