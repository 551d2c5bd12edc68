//! The web interface in a real browser: the real `kraken up` binary serves the
//! UI and the API, a headless Chromium (through ChromeDriver and `fantoccini`)
//! uses the pages as a person would, and the fixture app is built and run by
//! the platform's Docker engine.
//!
//! Needs Debian's `chromium` and `chromium-driver`, a running Docker engine and
//! the local base image (`KRAKEN_TEST_BASE_IMAGE`, default
//! `kraken-test-base:bookworm-v2`). Screenshots of every step, at desktop and
//! phone widths, are saved under `<target>/ui-screenshots/`.

mod support;
mod ui_support;

use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;
use ui_support::{
    run_ui_test, run_ui_test_prepared, run_ui_test_with, runtime, serial, Fixture, Ui, APP_ANSWER, APP_HOME,
    APP_NAME, APP_PORT, BRANCH_WITHOUT_MANIFEST,
};

const SHORT: Duration = Duration::from_secs(15);
/// Cloning, building an image and starting it on a busy two-core machine.
const BUILD: Duration = Duration::from_secs(300);

const VALIDATION_STATE: &str = r#"
    const r = document.querySelector('#validate-result');
    const b = document.querySelector('#create-button');
    return r ? { state: r.dataset.state, text: r.innerText, createEnabled: b ? !b.disabled : null } : null;
"#;

const DEPLOYMENT_STATE: &str = r#"
    const s = document.querySelector('#status-current');
    const e = document.querySelector('#deployment-error');
    return { status: s ? s.dataset.status : null, error: e && !e.hidden ? e.innerText : null };
"#;

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

async fn type_into(ui: &Ui, css: &str, text: &str) {
    let input = ui.element(css, SHORT).await;
    input.clear().await.expect("clear the input");
    input.send_keys(text).await.expect("type into the input");
}

async fn click(ui: &Ui, css: &str) {
    ui.element(css, SHORT).await.click().await.unwrap_or_else(|e| panic!("click `{css}`: {e}"));
}

async fn wait_for_status(ui: &Ui, wanted: &str, limit: Duration) {
    let wanted_owned = wanted.to_string();
    ui.wait_js(
        &format!("the deployment to be {wanted}"),
        limit,
        DEPLOYMENT_STATE,
        |v| v["status"] == wanted_owned.as_str(),
        |v| (v["status"] == "Errored").then(|| format!("the deployment is Errored: {}", field(v, "error"))),
    )
    .await;
}

#[test]
fn deploy_open_follow_logs_and_destroy_through_the_ui() {
    let _one_at_a_time = serial();
    let fixture = Fixture::create();
    runtime().block_on(run_ui_test("deploy", |ui| async move {
        // Platform page: save the token.
        ui.open("#/").await;
        type_into(&ui, "#token-input", &ui.token).await;
        click(&ui, "#token-save").await;
        ui.wait_js(
            "the token to be saved",
            SHORT,
            "return document.querySelector('#token-state').innerText",
            |v| v.as_str().unwrap_or_default().contains("saved in this browser"),
            |_| None,
        )
        .await;
        assert_eq!(ui.js("return localStorage.getItem('kraken.token')").await, ui.token.as_str());
        ui.element("#orchestrator-name", SHORT).await;
        ui.screenshots("platform").await;

        // Deployments page: check the fixture, then create it.
        click(&ui, "a[data-nav='deployments']").await;
        type_into(&ui, "#deploy-url", &fixture.url()).await;
        type_into(&ui, "#deploy-branch", "main").await;
        click(&ui, "#validate-button").await;
        let checked = ui
            .wait_js(
                "the fixture to pass validation",
                Duration::from_secs(60),
                VALIDATION_STATE,
                |v| v["state"] == "ok",
                |v| (v["state"] == "error").then(|| format!("validation failed: {}", field(v, "text"))),
            )
            .await;
        let text = field(&checked, "text");
        assert!(text.contains(APP_NAME), "the manifest summary names the app: {text}");
        assert!(text.contains("node"), "the manifest summary names the builder: {text}");
        assert!(text.contains(&APP_PORT.to_string()), "the manifest summary shows the port: {text}");
        assert_eq!(checked["createEnabled"], true, "Create is enabled after a successful check");
        // The check shows the build plan: the start command and why it was chosen.
        let start = ui.element("#validate-plan [data-step='start']", SHORT).await;
        let start = start.text().await.expect("read the start step");
        assert!(start.contains("node server.js") && start.contains("`run` in shipwreck.toml"), "{start}");
        ui.screenshots("validated").await;
        click(&ui, "#create-button").await;

        // The detail page opens; the deployment reaches Running.
        let hash = ui
            .wait_js(
                "the deployment's page to open",
                Duration::from_secs(30),
                r#"
                const dialog = document.querySelector('#token-dialog');
                const error = document.querySelector('#create-error');
                return {
                  hash: location.hash,
                  asked: Boolean(dialog && dialog.open),
                  error: error && !error.hidden ? error.innerText : null,
                };"#,
                |v| field(v, "hash").starts_with("#/deployments/"),
                |v| {
                    if v["asked"] == true {
                        Some("the UI asked for the token again: the saved token was refused".into())
                    } else {
                        v["error"].as_str().map(|e| format!("creating failed: {e}"))
                    }
                },
            )
            .await;
        let id = field(&hash, "hash").trim_start_matches("#/deployments/").to_string();
        assert!(!id.is_empty());
        ui.element("#status-current", SHORT).await;
        // `endpoint` is free metadata: an http(s) URL is shown as a link.
        let home = ui.element("#app-endpoint a", SHORT).await;
        assert_eq!(home.attr("href").await.expect("endpoint link").as_deref(), Some(APP_HOME));
        ui.screenshots("deploying").await;
        wait_for_status(&ui, "Running", BUILD).await;
        ui.screenshots("running").await;

        // The app's start-up line arrives in the live log.
        let startup = format!("listening on {APP_PORT}");
        ui.wait_js(
            "the start-up line in the live log",
            Duration::from_secs(60),
            "return document.querySelector('#log-view').innerText",
            |v| v.as_str().unwrap_or_default().contains(&startup),
            |_| None,
        )
        .await;

        // The list shows it Running with the same link.
        let link = ui.element("#app-link", SHORT).await.attr("href").await.expect("read the app link");
        let link = link.expect("the app link has an href");
        assert!(link.starts_with("http://"), "app link {link}");
        click(&ui, "a[data-nav='deployments']").await;
        let row = ui.element(&format!(".deployment-row[data-id='{id}']"), SHORT).await;
        assert_eq!(row.attr("data-status").await.expect("row status").as_deref(), Some("Running"));
        let row_link = row.find(Locator::Css(".deployment-link")).await.expect("the row links to the app");
        assert_eq!(row_link.attr("href").await.expect("row link").as_deref(), Some(link.as_str()));
        ui.screenshots("list").await;

        // Following the link shows the app's answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            ui.client.goto(&link).await.expect("open the app");
            let body = ui.js("return document.body ? document.body.innerText : ''").await;
            if body.as_str().unwrap_or_default().contains(APP_ANSWER) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{link} did not answer `{APP_ANSWER}`; it showed: {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ui.screenshots("app").await;

        // Destroy asks for confirmation first.
        ui.open(&format!("#/deployments/{id}")).await;
        wait_for_status(&ui, "Running", SHORT).await;
        click(&ui, "#destroy-button").await;
        let confirm = ui.element("#confirm-destroy", SHORT).await;
        assert!(confirm.is_displayed().await.expect("confirmation visibility"));
        assert_eq!(
            ui.js(DEPLOYMENT_STATE).await["status"],
            "Running",
            "nothing happens before the confirmation"
        );
        ui.screenshots("confirm-destroy").await;
        click(&ui, "#confirm-destroy").await;
        wait_for_status(&ui, "Destroyed", Duration::from_secs(120)).await;
        assert!(
            ui.client.find(Locator::Css("#app-link")).await.is_err(),
            "a destroyed deployment offers no app link"
        );
        ui.screenshots("destroyed").await;

        // Gone from the list, and listed as Destroyed when asked for.
        click(&ui, "a[data-nav='deployments']").await;
        ui.element("#deployment-list table, #deployment-list .empty", SHORT).await;
        let row_css = format!(".deployment-row[data-id='{id}']");
        assert!(
            ui.client.find(Locator::Css(&row_css)).await.is_err(),
            "destroyed deployments are hidden by default"
        );
        click(&ui, "#show-destroyed").await;
        let row = ui.element(&row_css, SHORT).await;
        assert_eq!(row.attr("data-status").await.expect("row status").as_deref(), Some("Destroyed"));
    }));
}

#[test]
fn bad_url_and_branch_without_manifest_show_the_error_and_keep_create_disabled() {
    let _one_at_a_time = serial();
    let fixture = Fixture::create();
    runtime().block_on(run_ui_test("validation", |ui| async move {
        // Checking a repository needs the platform token, as creating does.
        ui.open("#/").await;
        ui.js(&format!("localStorage.setItem('kraken.token', {:?}); return true", ui.token)).await;
        ui.open("#/deployments").await;
        let create = ui.element("#create-button", SHORT).await;
        assert!(!create.is_enabled().await.expect("create state"), "Create starts disabled");

        // A URL that leads nowhere, checked with the button.
        let missing = format!("/nonexistent/kraken-ui-test-{}", std::process::id());
        type_into(&ui, "#deploy-url", &missing).await;
        type_into(&ui, "#deploy-branch", "main").await;
        click(&ui, "#validate-button").await;
        let bad = ui
            .wait_js(
                "the bad URL to be refused",
                Duration::from_secs(30),
                VALIDATION_STATE,
                |v| v["state"] == "error",
                |v| (v["state"] == "ok").then(|| "a URL that does not exist passed validation".to_string()),
            )
            .await;
        assert!(
            field(&bad, "text").len() > "This cannot be deployed yet:".len() + 5,
            "an error text is shown: {bad}"
        );
        assert_eq!(bad["createEnabled"], false);
        assert!(!create.is_enabled().await.expect("create state"));
        ui.screenshots("bad-url").await;

        // A real repository and a branch without shipwreck.toml, checked as the person types (debounced).
        type_into(&ui, "#deploy-url", &fixture.url()).await;
        type_into(&ui, "#deploy-branch", BRANCH_WITHOUT_MANIFEST).await;
        let no_manifest = ui
            .wait_js(
                "the branch without a manifest to be refused",
                Duration::from_secs(30),
                VALIDATION_STATE,
                |v| v["state"] == "error" && !field(v, "text").contains(&missing),
                |v| {
                    (v["state"] == "ok")
                        .then(|| "a branch without shipwreck.toml passed validation".to_string())
                },
            )
            .await;
        assert!(
            field(&no_manifest, "text").contains("shipwreck.toml"),
            "the error names the missing file: {no_manifest}"
        );
        assert_eq!(no_manifest["createEnabled"], false);
        ui.screenshots("no-manifest").await;

        // The good branch enables Create; changing the input disables it again at once.
        type_into(&ui, "#deploy-branch", "main").await;
        ui.wait_js(
            "main to pass validation",
            Duration::from_secs(30),
            VALIDATION_STATE,
            |v| v["state"] == "ok",
            |_| None,
        )
        .await;
        assert!(create.is_enabled().await.expect("create state"));
        ui.element("#deploy-branch", SHORT).await.send_keys("x").await.expect("type");
        assert!(!create.is_enabled().await.expect("create state"), "an edited input needs a new check");
        let mainx = ui
            .wait_js(
                "branch mainx to be refused",
                Duration::from_secs(30),
                VALIDATION_STATE,
                |v| v["state"] == "error",
                |_| None,
            )
            .await;
        assert!(field(&mainx, "text").contains("mainx"), "the error names the branch: {mainx}");
        assert!(!create.is_enabled().await.expect("create state"));
    }));
}

#[test]
fn the_list_shows_every_deployment_when_they_take_several_pages() {
    let _one_at_a_time = serial();
    // One and a half pages of the API's default size.
    let stored = kraken_lib::api::DEFAULT_PAGE * 3 / 2;
    let ids = std::sync::Mutex::new(Vec::new());
    let seed = |data_dir: &std::path::Path| {
        *ids.lock().expect("ids") = support::seed_failed_deployments(data_dir, stored);
    };
    let ids = &ids;
    runtime().block_on(run_ui_test_prepared("list-pages", &[], seed, |ui| async move {
        ui.open("#/deployments").await;
        let rows = ui
            .wait_js(
                "every deployment in the list",
                SHORT,
                "return [...document.querySelectorAll('.deployment-row')].map((r) => r.dataset.id);",
                |v| v.as_array().is_some_and(|rows| rows.len() >= stored),
                |_| None,
            )
            .await;
        let mut shown: Vec<String> = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(shown.len(), stored, "each deployment once");
        shown.sort();
        let mut expected = ids.lock().expect("ids").clone();
        expected.sort();
        assert_eq!(shown, expected, "the rows are the stored deployments");
        ui.screenshots("list").await;
    }));
}

#[test]
fn nodes_page_shows_this_node_with_live_numbers() {
    let _one_at_a_time = serial();
    runtime().block_on(run_ui_test("nodes", |ui| async move {
        ui.open("#/nodes").await;
        let card_css = format!(".node-card[data-id='{}']", ui.node_id);
        ui.element(&card_css, SHORT).await;
        let read = format!(
            r#"
            const c = document.querySelector("{card_css}");
            if (!c) return null;
            return {{
              cpu: c.querySelector('.node-cpu').innerText,
              memory: c.querySelector('.node-memory').innerText,
              uptime: Number(c.querySelector('.node-uptime').dataset.uptimeSecs),
              heartbeat: c.querySelector('.node-heartbeat').dataset.at,
              role: c.querySelector('.node-role').innerText,
              up: c.dataset.up,
            }};"#
        );
        let first = ui
            .wait_js(
                "the node's numbers",
                SHORT,
                &read,
                |v| v["uptime"].as_f64().is_some_and(|u| u > 0.0),
                |_| None,
            )
            .await;
        assert_eq!(first["role"], "Orchestrator");
        assert_eq!(first["up"], "true");
        let cpu = field(&first, "cpu");
        assert!(
            cpu.ends_with(" %") && cpu.trim_end_matches(" %").parse::<f64>().is_ok(),
            "CPU shown as a percentage: {cpu}"
        );
        assert!(field(&first, "memory").contains("iB /"), "memory used / total: {first}");
        ui.screenshots("nodes").await;

        // Without reloading, the numbers move on with the heartbeats.
        let uptime = first["uptime"].as_f64().unwrap_or_default();
        let heartbeat = field(&first, "heartbeat").to_string();
        let later = ui
            .wait_js(
                "the node's uptime and heartbeat to change",
                Duration::from_secs(30),
                &read,
                |v| v["uptime"].as_f64().is_some_and(|u| u > uptime) && field(v, "heartbeat") != heartbeat,
                |_| None,
            )
            .await;
        assert!(!field(&later, "cpu").is_empty());
        ui.screenshots("nodes-later").await;

        // The Platform page counts this node as up.
        click(&ui, "a[data-nav='platform']").await;
        let up = ui
            .wait_js(
                "the platform summary",
                SHORT,
                "const e = document.querySelector('#nodes-up'); return e ? e.innerText : null",
                |v| v.is_string(),
                |_| None,
            )
            .await;
        let text = up.as_str().unwrap_or_default();
        let (answering, total) = text.split_once(" / ").expect("`N / M` nodes answering");
        assert!(answering.parse::<u32>().expect("a count") >= 1, "{text}");
        assert!(total.parse::<u32>().expect("a count") >= 1, "{text}");
        ui.screenshots("platform").await;
    }));
}

#[test]
fn the_page_says_when_the_platform_is_lost_and_when_it_is_back() {
    let _one_at_a_time = serial();
    runtime().block_on(run_ui_test("connection", |ui| async move {
        ui.open("#/").await;
        ui.element("#orchestrator-name", SHORT).await;
        let banner = r#"
            const b = document.getElementById("connection-banner");
            if (!b) return null;
            return { state: b.dataset.state || "", hidden: b.hidden, text: b.innerText };"#;
        ui.kill_platform().await;
        let lost = ui
            .wait_js(
                "the connection-lost banner",
                Duration::from_secs(30),
                banner,
                |v| v["state"] == "lost" && v["hidden"] == false,
                |_| None,
            )
            .await;
        assert!(field(&lost, "text").contains("lost"), "{lost}");
        ui.screenshots("connection-lost").await;
        ui.restart_platform().await;
        let back = ui
            .wait_js(
                "the connection-back banner",
                Duration::from_secs(60),
                banner,
                |v| v["state"] == "restored",
                |_| None,
            )
            .await;
        assert!(field(&back, "text").contains("back"), "{back}");
        ui.screenshots("connection-back").await;
    }));
}

/// An agent of the test's own, stopped (which blocks) outside the async runtime.
struct OffTheRuntime(Option<support::Agent>);

impl Drop for OffTheRuntime {
    fn drop(&mut self) {
        if let Some(agent) = self.0.take() {
            let _ = std::thread::spawn(move || drop(agent)).join();
        }
    }
}

/// Sends `signal` (`STOP` or `CONT`) to the process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn the_page_says_when_replication_is_degraded_and_when_a_copy_has_caught_up() {
    let _one_at_a_time = serial();
    let account = support::BrokerAccount::new();
    const JOIN: &str = "ui-replication-join-token";
    // A long grace: the stopped candidate is neither marked down nor takes over.
    let extra = ["--amqp-url", &account.url(), "--join-token", JOIN, "--node-grace", "60"].map(String::from);
    runtime().block_on(run_ui_test_with("replication", &extra, |ui| async move {
        ui.open("#/").await;
        ui.element("#orchestrator-name", SHORT).await;
        let banner = r##"
            const b = document.getElementById("replication-banner");
            const s = document.querySelector("#replication-state .badge");
            if (!b) return null;
            return { state: b.dataset.state || "", hidden: b.hidden, text: b.innerText, badge: s ? s.dataset.state : null };"##;

        // A real worker joins and becomes the rollover candidate: replication
        // is synchronous once it has stored the snapshot.
        let worker_dir = tempfile::tempdir().expect("tempdir");
        let worker_args = ["--join", &ui.base, "--join-token", JOIN, "--node-grace", "60"].map(String::from);
        let data = worker_dir.path().join("w");
        let worker = OffTheRuntime(Some(
            tokio::task::spawn_blocking(move || {
                support::Agent::spawn("worker", &data, "127.0.0.2", support::free_port(), &worker_args)
            })
            .await
            .expect("the start joins")
            .expect("the worker starts"),
        ));
        ui.wait_js("the synchronous badge", BUILD, banner, |v| v["badge"] == "synchronous", |_| None).await;

        // The candidate stops (as a frozen machine would) and confirms
        // nothing: the next change is acknowledged after the timeout,
        // without a copy.
        let pid = worker.0.as_ref().and_then(support::Agent::pid).expect("the worker's pid");
        signal(pid, "STOP");
        let created = reqwest::Client::new()
            .post(format!("{}/api/v1/deployments", ui.base))
            .bearer_auth(&ui.token)
            .json(&serde_json::json!({ "url": "/nonexistent/repository", "branch": "main" }))
            .send()
            .await
            .expect("create answered");
        assert_eq!(created.status().as_u16(), 202);
        let body: Value = created.json().await.expect("json");
        assert_eq!(body["replicated"], false, "{body}");
        let degraded = ui
            .wait_js(
                "the replication-degraded banner",
                Duration::from_secs(30),
                banner,
                |v| v["state"] == "degraded" && v["hidden"] == false,
                |_| None,
            )
            .await;
        assert!(field(&degraded, "text").contains("Replication degraded"), "{degraded}");
        assert!(field(&degraded, "text").contains("did not confirm"), "{degraded}");
        ui.wait_js("the degraded badge", SHORT, banner, |v| v["badge"] == "degraded", |_| None).await;
        ui.screenshots("replication-degraded").await;

        // The candidate runs again, stores what it missed and confirms it: caught up.
        signal(pid, "CONT");
        let back = ui
            .wait_js(
                "the banner to go",
                Duration::from_secs(30),
                banner,
                |v| v["state"] == "synchronous" && v["hidden"] == true,
                |_| None,
            )
            .await;
        ui.wait_js("the synchronous badge", SHORT, banner, |v| v["badge"] == "synchronous", |_| None).await;
        ui.screenshots("replication-synchronous").await;
        drop(back);
    }));
}
