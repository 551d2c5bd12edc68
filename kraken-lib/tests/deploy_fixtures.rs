//! The foundation end to end on a real Docker engine: each fixture app is
//! fetched from its own git repository, its manifest parsed, its build planned
//! by the registry, built into an image, run with its port published, asked
//! over HTTP, its start-up line found in its logs, and removed without a trace.

#[path = "common/apps.rs"]
mod apps;
#[path = "common/docker.rs"]
mod docker;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::runtime::{
    AppLimits, ContainerSpec, DockerRuntime, Runtime, RuntimeError, LABEL_DEPLOYMENT, LABEL_MANAGED,
    LABEL_NODE,
};
use kraken_lib::shipwreck::{Manifest, FILE_NAME};
use kraken_lib::source::{self, FetchLimits, SourceError};

use apps::AppRepo;
use docker::{http_get, unique, wait_for, Cleanup};

fn registry() -> BuilderRegistry {
    BuilderRegistry::with_builtins(BaseImages::uniform(&docker::base_image()))
}

/// Deploys fixture `name` and checks its answer and start-up line; returns
/// the builder the registry chose.
async fn deploy_fixture(name: &str, expected_body: &str, startup_line: &str) -> String {
    let repo = AppRepo::new(name);
    let work = tempfile::tempdir().expect("tempdir");
    let (url, dest) = (repo.url(), work.path().join("src"));
    let checkout =
        tokio::task::spawn_blocking(move || source::fetch(&url, "main", &dest, FetchLimits::default()))
            .await
            .expect("join")
            .expect("fetch");
    assert_eq!(checkout.commit, repo.head(), "the fetched commit is the branch's tip");

    let registry = registry();
    let manifest =
        Manifest::parse(FILE_NAME, &checkout.manifest_text, &registry.names()).expect("valid manifest");
    assert_eq!(manifest.app.name, name);
    let (plan, detection) = registry.plan(&checkout.dir, &manifest).expect("plan");

    let rt = DockerRuntime::connect().await.expect("docker");
    let run_id = unique(name);
    let mut cleanup = Cleanup::new(run_id.clone());
    let tag = format!("kraken-test/{name}:{run_id}");
    cleanup.track_tag(tag.clone());
    let mut labels = BTreeMap::new();
    labels.insert(docker::TEST_LABEL.to_string(), run_id.clone());
    labels.insert(LABEL_DEPLOYMENT.to_string(), run_id.clone());
    labels.insert(LABEL_NODE.to_string(), run_id.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let image = rt.build_image(&plan, &tag, tx).await.expect("build");
    let mut build_log = Vec::new();
    while let Ok(line) = rx.try_recv() {
        build_log.push(line);
    }
    assert!(!build_log.is_empty(), "the build streamed its output");
    assert!(!image.is_empty());

    if let Some(test) = &manifest.config.test {
        let (code, output) = rt
            .run_to_completion(&tag, test, &manifest.config.env, &labels, Duration::from_secs(120))
            .await
            .expect("test runs");
        assert_eq!(code, 0, "the manifest's test passes: {output}");
    }

    let spec = ContainerSpec {
        name: run_id.clone(),
        image: tag.clone(),
        labels: labels.clone(),
        env: manifest.config.env.clone(),
        container_port: manifest.config.port,
        publish: true,
        host_port: 0,
        host_ip: "127.0.0.1".to_string(),
        memory_limit: 0,
        pids_limit: AppLimits::default().pids,
        log_rotation: Some(AppLimits::default().log_rotation),
        init: true,
        stop_timeout: Some(AppLimits::default().stop_timeout),
    };
    let (id, host_port) = rt.run_container(&spec).await.expect("run");
    assert_ne!(host_port, 0);
    let body = http_get(host_port, "/", Duration::from_secs(30)).await;
    assert!(body.contains(expected_body), "{name} answered {body:?}");

    let rt2 = rt.clone();
    let id2 = id.clone();
    wait_for(&format!("{name}'s start-up line"), Duration::from_secs(15), || {
        let (rt, id) = (rt2.clone(), id2.clone());
        async move {
            let lines: Vec<_> = rt.logs(&id, false, false).collect().await;
            lines.iter().flatten().any(|l| l.line.contains(startup_line)).then_some(())
        }
    })
    .await;

    let managed = rt.list_managed(Some(run_id.clone())).await.expect("list");
    assert_eq!(managed.len(), 1, "found by its labels");
    assert_eq!(managed[0].labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));

    rt.remove_container(&id).await.expect("remove");
    rt.remove_image(&tag).await.expect("remove image");
    assert!(
        rt.list_managed(Some(run_id.clone())).await.expect("list").is_empty(),
        "no container left behind"
    );
    assert!(matches!(rt.inspect(&id).await, Err(RuntimeError::NotFound { .. })));
    detection.builder
}

#[tokio::test]
async fn node_app_is_deployed() {
    let builder = deploy_fixture("node-hello", "hello from node", "node-hello listening on port 3000").await;
    assert_eq!(builder, "node");
}

#[tokio::test]
async fn python_app_is_detected_tested_and_deployed() {
    let builder =
        deploy_fixture("python-hello", "hello from python", "python-hello listening on port 5000").await;
    assert_eq!(builder, "python", "detected from requirements.txt");
}

#[tokio::test]
async fn static_site_is_deployed() {
    let builder = deploy_fixture("static-site", "hello from a static site", "serving").await;
    assert_eq!(builder, "static");
}

#[tokio::test]
async fn app_with_its_own_dockerfile_is_deployed() {
    let builder = deploy_fixture(
        "dockerfile-app",
        "hello from a dockerfile",
        "dockerfile-app serving /www on port 9000",
    )
    .await;
    assert_eq!(builder, "dockerfile");
}

#[tokio::test]
async fn a_failing_build_returns_its_log_and_leaves_nothing_running() {
    let repo = AppRepo::new("broken-build");
    let work = tempfile::tempdir().expect("tempdir");
    let checkout =
        source::fetch(&repo.url(), "main", &work.path().join("src"), FetchLimits::default()).expect("fetch");
    let registry = registry();
    let manifest = Manifest::parse(FILE_NAME, &checkout.manifest_text, &registry.names()).expect("manifest");
    let (plan, _) = registry.plan(&checkout.dir, &manifest).expect("plan");
    let rt = DockerRuntime::connect().await.expect("docker");
    let run_id = unique("broken");
    let mut cleanup = Cleanup::new(run_id.clone());
    let tag = format!("kraken-test/broken:{run_id}");
    cleanup.track_tag(tag.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = rt.build_image(&plan, &tag, tx).await.expect_err("the build fails");
    assert!(matches!(err, RuntimeError::BuildFailed(_)), "{err}");
    let mut log = Vec::new();
    while let Ok(line) = rx.try_recv() {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("compiling the broken app"), "build output is in the log: {log}");
    assert!(log.contains("error: this build always fails"), "the failing step's stderr is in the log: {log}");
    let leftovers =
        docker::docker_lines(&["ps", "-aq", "--filter", &format!("label={}={run_id}", docker::TEST_LABEL)]);
    assert!(leftovers.is_empty(), "no container left: {leftovers:?}");
    assert!(docker::docker_lines(&["images", "-q", &tag]).is_empty(), "no image tagged");
}

#[test]
fn a_missing_branch_names_the_branches_there_are() {
    let repo = AppRepo::new("static-site");
    let work = tempfile::tempdir().expect("tempdir");
    let err = source::fetch(&repo.url(), "release", &work.path().join("src"), FetchLimits::default())
        .expect_err("no such branch");
    assert!(matches!(err, SourceError::BranchNotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("release") && text.contains("main"), "{text}");
}

#[test]
fn a_branch_without_a_manifest_is_refused() {
    let repo = AppRepo::new("static-site");
    repo.branch("keep");
    std::fs::remove_file(repo.path().join("shipwreck.toml")).expect("rm");
    repo.commit(&[("README.md", "no manifest here\n")], "drop the manifest");
    let work = tempfile::tempdir().expect("tempdir");
    let err = source::fetch(&repo.url(), "main", &work.path().join("src"), FetchLimits::default())
        .expect_err("no manifest");
    assert!(matches!(err, SourceError::NoManifest { .. }), "{err}");
    assert!(err.to_string().contains("shipwreck.toml"));
}

#[test]
fn bad_manifests_in_a_repository_are_refused_with_file_line_and_key() {
    let registry = registry();
    let cases: [(&str, &str, &str); 6] = [
        ("[app]\nname = \"ok\"\n[config]\nport = 70000\nlang = \"static\"\n", "config.port", "65535"),
        ("[app]\nname = \"ok\"\n[config]\nport = 80\nlang = \"cobol\"\n", "config.lang", "node"),
        ("[app]\nname = \"Not A DNS Name\"\n[config]\nport = 80\n", "app.name", "lowercase"),
        ("[app]\nname = \"ok\"\n[config]\nport = 80\nlang = \"dockerfile\"\ndockerfile = \"../../etc/passwd\"\n", "config.dockerfile", "repository"),
        ("[app]\nname = \"ok\"\n[config]\nlang = \"static\"\n", "config.port", "port"),
        ("[app]\nname = \"ok\"\ncolour = \"red\"\n[config]\nport = 80\n", "app.colour", "name"),
    ];
    let repo = AppRepo::new("static-site");
    for (i, (text, key, hint)) in cases.iter().enumerate() {
        repo.commit(&[("shipwreck.toml", text)], &format!("bad manifest {i}"));
        let work = tempfile::tempdir().expect("tempdir");
        let checkout = source::fetch(&repo.url(), "main", &work.path().join("src"), FetchLimits::default())
            .expect("fetch");
        let err =
            Manifest::parse(FILE_NAME, &checkout.manifest_text, &registry.names()).expect_err("invalid");
        let shown = err.to_string();
        assert!(shown.starts_with("shipwreck.toml:"), "{shown}");
        assert_eq!(err.key.as_deref(), Some(*key), "{shown}");
        assert!(err.line >= 1 && err.column >= 1);
        assert!(
            shown.to_lowercase().contains(&hint.to_lowercase()),
            "case {i}: {shown} should mention {hint}"
        );
    }
}
