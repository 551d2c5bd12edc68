//! The Docker runtime's logs against the real engine: a follower started
//! after any line gets exactly the lines after it.

#![allow(clippy::unwrap_used)]

#[path = "common/docker.rs"]
mod docker;
#[path = "common/runtime_kit.rs"]
mod kit;

use std::time::Duration;

use futures::StreamExt;
use kraken_lib::runtime::{pick_host_port, AppLimits, ContainerSpec, Runtime};

use docker::wait_for;
use kit::*;

#[tokio::test]
async fn following_after_any_line_gives_exactly_the_lines_after_it_in_each_streams_order() {
    let (rt, run, mut guard) = engine("resume").await;
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
        // The engine keeps the output as it does for every app.
        log_rotation: Some(AppLimits::default().log_rotation),
        ..Default::default()
    };
    let (id, _) = rt.run_container(&spec).await.unwrap();
    let log = rt.client().inspect_container(&id, None).await.unwrap().host_config.unwrap().log_config;
    assert_eq!(log.and_then(|l| l.typ).as_deref(), Some("local"));
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
