//! The web interface against what it must not trust, in a real browser (the
//! real `kraken up` serving the UI, headless Chromium through ChromeDriver):
//! an app address a node reported is a link only when it is an http(s)
//! address, and checking a repository asks for the platform token.

mod ui_support;

use std::time::Duration;

use serde_json::{json, Value};
use ui_support::{run_ui_test, runtime, serial, Ui};

const SHORT: Duration = Duration::from_secs(15);

fn deployment(id: &str, address: &str) -> Value {
    json!({
        "id": id, "name": id, "url": "https://git.example/app.git", "branch": "main",
        "commit": "0123456789abcdef0123456789abcdef01234567", "status": "Running", "node": "n1",
        "address": address, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "status_history": [], "error": null, "desired": "Running", "generation": 1, "host_port": 5000,
        "container_id": "c", "builder": "static", "builder_reason": "index.html", "manifest": null,
        "stats_history": [],
    })
}

/// Makes the page's `fetch` answer the deployment list and details with
/// `deployments` (as a node could have reported them), everything else as usual.
async fn serve_deployments(ui: &Ui, deployments: &[Value]) {
    let list = Value::Array(deployments.to_vec());
    ui.js(&format!(
        r#"
        const list = {list};
        const real = window.__realFetch || window.fetch;
        window.__realFetch = real;
        window.fetch = (input, init) => {{
          const path = new URL(String(input), location.href).pathname;
          const answer = (body) => Promise.resolve(new Response(JSON.stringify(body),
            {{ status: 200, headers: {{ "content-type": "application/json" }} }}));
          if (path === "/api/v1/deployments") return answer({{ items: list, next: null }});
          const one = list.find((d) => path === "/api/v1/deployments/" + d.id);
          if (one) return answer(one);
          if (list.some((d) => path.startsWith("/api/v1/deployments/" + d.id + "/logs"))) return answer({{ lines: [], next_offset: 0 }});
          return real(input, init);
        }};
        return true;"#
    ))
    .await;
}

const LINKS: &str = r#"
    const rows = [...document.querySelectorAll('.deployment-row')].map((r) => r.dataset.id);
    const links = [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href'));
    const app = document.querySelector('#app-link');
    return { rows, links, appLink: app ? app.getAttribute('href') : null, text: document.body.innerText };
"#;

#[test]
fn only_http_addresses_become_links() {
    let _one_at_a_time = serial();
    runtime().block_on(run_ui_test("links", |ui| async move {
        ui.open("#/").await;
        ui.element("#orchestrator-name", SHORT).await;
        let hostile = [
            deployment("evil00000001", "javascript:alert(document.cookie)"),
            deployment("evil00000002", " JaVaScRiPt:alert(1)"),
            deployment("evil00000003", "data:text/html,<script>alert(1)</script>"),
            deployment("good00000001", "http://192.168.1.20:5000"),
        ];
        serve_deployments(&ui, &hostile).await;
        ui.js("location.hash = '#/deployments'; return true").await;
        let seen = ui
            .wait_js(
                "the list to show the four deployments",
                SHORT,
                LINKS,
                |v| v["rows"].as_array().is_some_and(|r| r.len() == 4),
                |_| None,
            )
            .await;
        let links: Vec<&str> =
            seen["links"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(links.contains(&"http://192.168.1.20:5000/"), "the http address is a link: {links:?}");
        for link in &links {
            let lower = link.trim().to_ascii_lowercase();
            assert!(
                !lower.starts_with("javascript:") && !lower.starts_with("data:"),
                "a hostile link was made: {link}"
            );
        }
        ui.screenshots("hostile-list").await;

        // The detail page of a deployment with a hostile address: no "Open app" link.
        ui.js("location.hash = '#/deployments/evil00000001'; return true").await;
        let detail = ui
            .wait_js(
                "the detail page",
                SHORT,
                LINKS,
                |v| v["text"].as_str().is_some_and(|t| t.contains("javascript:alert")),
                |_| None,
            )
            .await;
        assert_eq!(detail["appLink"], Value::Null, "no Open app link for a javascript: address");
        let links: Vec<&str> =
            detail["links"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(links.iter().all(|l| !l.to_ascii_lowercase().contains("javascript:")), "{links:?}");
        // And the control: an http address gets its link.
        ui.js("location.hash = '#/deployments/good00000001'; return true").await;
        ui.wait_js(
            "the Open app link",
            SHORT,
            LINKS,
            |v| v["appLink"] == "http://192.168.1.20:5000/",
            |_| None,
        )
        .await;
    }));
}

#[test]
fn checking_a_repository_asks_for_the_token() {
    let _one_at_a_time = serial();
    runtime().block_on(run_ui_test("validate-token", |ui| async move {
        ui.open("#/deployments").await;
        ui.js("localStorage.removeItem('kraken.token'); return true").await;
        let url = ui.element("#deploy-url", SHORT).await;
        url.send_keys("http://127.0.0.1:1/nothing.git").await.expect("type");
        ui.element("#validate-button", SHORT).await.click().await.expect("click");
        ui.wait_js(
            "the token dialog",
            SHORT,
            "const d = document.querySelector('#token-dialog'); return Boolean(d && d.open)",
            |v| *v == Value::Bool(true),
            |_| None,
        )
        .await;
        ui.element("#token-dialog-input", SHORT).await.send_keys(&ui.token).await.expect("type the token");
        ui.element("#token-dialog-save", SHORT).await.click().await.expect("save");
        let result = ui
            .wait_js(
                "the check to answer",
                Duration::from_secs(60),
                "const r = document.querySelector('#validate-result'); return r ? { state: r.dataset.state, text: r.innerText } : null",
                |v| v["state"] == "error" || v["state"] == "ok",
                |_| None,
            )
            .await;
        assert_eq!(result["state"], "error", "{result}");
        let text = result["text"].as_str().unwrap_or_default();
        assert!(!text.contains("token"), "the saved token was accepted and the repository itself was checked: {text}");
    }));
}
