//! The Docker runtime's images against the real engine: failed builds and
//! what they leave, what reaches a build, and finding Kraken's images by
//! their tag (and those of earlier versions by their labels).

#![allow(clippy::unwrap_used)]

#[path = "common/docker.rs"]
mod docker;
#[path = "common/runtime_kit.rs"]
mod kit;

use std::collections::BTreeMap;
use std::time::Duration;

use kraken_lib::runtime::{AppImage, BuildLayers, Runtime, RuntimeError, LABEL_MANAGED, LABEL_NODE};

use docker::{all_containers, base_image};
use kit::*;

#[tokio::test]
async fn a_failing_build_reports_its_error_and_leaves_no_containers() {
    let (rt, run, mut guard) = engine("fail").await;
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
    let (rt, run, mut guard) = engine("args").await;
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
    let (rt, run, mut guard) = engine("tagged").await;
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
async fn a_failed_build_removes_the_layers_it_made() {
    let (rt, run, mut guard) = engine("layers").await;
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
    let (rt, run, mut guard) = engine("bad").await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_with(dir.path(), &run, "NOSUCHINSTRUCTION here");

    let (built, lines) = build(&rt, &mut guard, &plan, &format!("{run}:v1")).await;
    let Err(RuntimeError::BuildFailed(message)) = built else {
        panic!("expected BuildFailed, got {built:?}")
    };
    assert!(message.to_lowercase().contains("nosuchinstruction"), "{message}");
    assert!(lines.contains(&message), "{lines:?}");
}
