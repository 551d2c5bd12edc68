//! The HTTP API tested in-process: routing, authorisation, error answers and
//! the deployment calls that only touch the state.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kraken_lib::api::{self, ApiContext};
use kraken_lib::auth::TokenHash;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::bus::memory::MemoryBus;
use kraken_lib::bus::LogEntry;
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity};
use kraken_lib::runtime::ContainerStats;
use kraken_lib::state::{State, StateLimits};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token";

struct Fixture {
    _dir: tempfile::TempDir,
    state: State,
    app: axum::Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
    let config = NodeConfig::new(dir.path(), "127.0.0.1:8000".parse().expect("addr"));
    let node = GenericNode::new(
        NodeIdentity { id: "n1".into(), name: "box".into() },
        config,
        Arc::new(MemoryBus::new()),
    );
    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let hash = TokenHash::of(TOKEN).expect("hash");
    let app = api::router(ApiContext::new(state.clone(), registry, node, hash));
    Fixture { _dir: dir, state, app }
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn error_text(v: &Value) -> &str {
    v.get("error").and_then(Value::as_str).unwrap_or_else(|| panic!("no error message in {v}"))
}

#[tokio::test]
async fn ping_names_the_service_and_node() {
    let f = fixture();
    let (status, body) = call(&f.app, Method::GET, "/ping", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["service"], "kraken");
    assert_eq!(body["node_id"], "n1");
}

#[tokio::test]
async fn mutations_without_the_right_token_are_refused() {
    let f = fixture();
    let body = r#"{"url":"https://example.org/a.git","branch":"main"}"#;
    let (status, v) = call(&f.app, Method::POST, "/api/v1/deployments", None, Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_text(&v).contains("Authorization: Bearer"));
    let (status, v) = call(&f.app, Method::POST, "/api/v1/deployments", Some("wrong"), Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_text(&v).contains("wrong"));
    let d = f.state.create_deployment("https://example.org/a.git", "main").expect("create");
    for (method, uri) in [
        (Method::DELETE, format!("/api/v1/deployments/{}", d.id)),
        (Method::POST, format!("/api/v1/deployments/{}/update", d.id)),
    ] {
        let (status, _) = call(&f.app, method, &uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    assert_eq!(f.state.deployments().len(), 1, "nothing was created by the refused call");
    assert_eq!(f.state.deployment(&d.id).map(|d| d.status.as_str()), Some("DeploymentRequested"));
}

#[tokio::test]
async fn malformed_requests_get_4xx_with_a_message() {
    let f = fixture();
    let cases: Vec<(&str, StatusCode)> = vec![
        ("not json", StatusCode::BAD_REQUEST),
        ("{\"branch\":\"main\"}", StatusCode::BAD_REQUEST),
        ("{\"url\":5}", StatusCode::BAD_REQUEST),
        ("{\"url\":\"/x\",\"branch\":\"main\",\"extra\":1}", StatusCode::BAD_REQUEST),
        ("{\"url\":\"\",\"branch\":\"main\"}", StatusCode::UNPROCESSABLE_ENTITY),
        ("{\"url\":\"/x\",\"branch\":\"a..b\"}", StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, expected) in cases {
        let (status, v) = call(&f.app, Method::POST, "/api/v1/deployments", Some(TOKEN), Some(body)).await;
        assert_eq!(status, expected, "{body}: {v}");
        assert!(!error_text(&v).is_empty());
    }
    let big = format!("{{\"url\":\"{}\",\"branch\":\"main\"}}", "a".repeat(100_000));
    let (status, v) = call(&f.app, Method::POST, "/api/v1/deployments", Some(TOKEN), Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/validate")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    let resp = f.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(f.state.deployments().is_empty(), "no bad request stored anything");
}

#[tokio::test]
async fn unknown_ids_and_paths_get_404_json() {
    let f = fixture();
    for uri in ["/api/v1/deployments/nope", "/api/v1/deployments/nope/logs", "/api/v1/nothing-here"] {
        let (status, v) = call(&f.app, Method::GET, uri, None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!error_text(&v).is_empty());
    }
    let (status, _) = call(&f.app, Method::DELETE, "/api/v1/deployments/nope", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = call(&f.app, Method::GET, "/api/v1/deployments/x/logs?offset=minus", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn a_deployment_is_created_listed_and_destroyed() {
    let f = fixture();
    let (status, v) = call(
        &f.app,
        Method::POST,
        "/api/v1/deployments",
        Some(TOKEN),
        Some(r#"{"url":"https://example.org/app.git","branch":"main"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let stored = f.state.deployment(&id).expect("stored before the answer");
    assert_eq!(stored.url, "https://example.org/app.git");

    let (status, list) = call(&f.app, Method::GET, "/api/v1/deployments", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["items"][0]["status"], "DeploymentRequested");
    assert_eq!(list["next"], Value::Null, "one page holds it all");

    let (status, d) = call(&f.app, Method::GET, &format!("/api/v1/deployments/{id}"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["status_history"][0]["status"], "DeploymentRequested");
    assert!(d["status_history"][0]["at"].is_string());

    let (status, v) =
        call(&f.app, Method::POST, &format!("/api/v1/deployments/{id}/update"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "an update while it is being deployed is refused: {v}");
    assert!(error_text(&v).contains("DeploymentRequested"));

    let (status, _) =
        call(&f.app, Method::DELETE, &format!("/api/v1/deployments/{id}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) =
        call(&f.app, Method::DELETE, &format!("/api/v1/deployments/{id}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "destroying twice is fine");
    let d = f.state.deployment(&id).expect("kept");
    assert_eq!(d.status.as_str(), "DestructionRequested");
    assert_eq!(d.status_history.iter().filter(|c| c.status.as_str() == "DestructionRequested").count(), 1);
}

#[tokio::test]
async fn logs_are_served_from_an_offset() {
    let f = fixture();
    let d = f.state.create_deployment("https://example.org/a.git", "main").expect("create");
    let lines: Vec<LogEntry> =
        (0..5).map(|i| LogEntry { stream: "stdout".into(), line: format!("line {i}") }).collect();
    f.state.append_logs(&d.id, lines).expect("append");
    let (status, v) =
        call(&f.app, Method::GET, &format!("/api/v1/deployments/{}/logs?offset=3", d.id), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<&str> =
        v["lines"].as_array().expect("lines").iter().filter_map(|l| l["line"].as_str()).collect();
    assert_eq!(got, ["line 3", "line 4"]);
    assert_eq!(v["next_offset"], 5);
}

#[tokio::test]
async fn platform_builders_and_openapi_describe_the_api() {
    let f = fixture();
    f.state.create_deployment("https://example.org/a.git", "main").expect("create");
    let (status, p) = call(&f.app, Method::GET, "/api/v1/platform", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["deployment_count"], 1);
    assert_eq!(p["deployments_by_status"]["DeploymentRequested"], 1);
    assert_eq!(p["orchestrator"]["node_id"], "n1");

    let (_, b) = call(&f.app, Method::GET, "/api/v1/builders", None, None).await;
    let names: Vec<&str> = b.as_array().expect("list").iter().filter_map(|x| x["name"].as_str()).collect();
    for expected in ["node", "python", "python3.6", "static", "dockerfile"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }

    let (status, doc) = call(&f.app, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/ping",
        "/api/v1/platform",
        "/api/v1/nodes",
        "/api/v1/validate",
        "/api/v1/deployments",
        "/api/v1/deployments/{id}",
        "/api/v1/deployments/{id}/logs",
        "/api/v1/deployments/{id}/update",
        "/api/v1/events",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    assert_eq!(json!(doc["openapi"]), json!("3.1.0"));
}

#[tokio::test]
async fn validate_refuses_bad_input_with_the_reason() {
    let f = fixture();
    let (status, v) =
        call(&f.app, Method::POST, "/api/v1/validate", Some(TOKEN), Some(r#"{"url":"  ","branch":"main"}"#))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_text(&v).contains("empty"));
}

#[tokio::test]
async fn validate_needs_the_token_and_never_looks_at_local_paths() {
    let f = fixture();
    let body = r#"{"url":"https://git.invalid/app.git","branch":"main"}"#;
    let (status, v) = call(&f.app, Method::POST, "/api/v1/validate", None, Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    // Local sources are refused before anything is read: an existing path and
    // a missing one get the same answer, naming only what was given.
    let mut answers = Vec::new();
    for url in ["/etc", "/does-not-exist-here", "file:///etc", "file:///does-not-exist-here"] {
        let body = json!({ "url": url, "branch": "main" }).to_string();
        for path in ["/api/v1/validate", "/api/v1/deployments"] {
            let (status, v) = call(&f.app, Method::POST, path, Some(TOKEN), Some(&body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {url}: {v}");
            let text = error_text(&v).to_string();
            assert!(text.contains("--allow-local-sources"), "{text}");
            answers.push(text.replace(url, "URL"));
        }
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "the same answer whether the path exists or not: {answers:?}");
    assert!(f.state.deployments().is_empty());
}

/// The ids of a page, and its `next`.
fn page_ids(page: &Value) -> (Vec<String>, Option<String>) {
    let ids = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|d| d["id"].as_str().expect("an id").to_string())
        .collect();
    (ids, page["next"].as_str().map(str::to_string))
}

#[tokio::test]
async fn pages_cover_every_deployment_once_while_some_come_and_go() {
    let f = fixture();
    for i in 0..230 {
        f.state.create_deployment(&format!("https://example.org/app-{i}.git"), "main").expect("stored");
    }
    let (status, first) = call(&f.app, Method::GET, "/api/v1/deployments", None, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (ids, next) = page_ids(&first);
    assert_eq!(ids.len(), api::DEFAULT_PAGE, "without a limit a page holds the default");
    assert!(next.is_some(), "230 deployments take more than one page");

    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut round = 0;
    loop {
        let uri = match &after {
            Some(cursor) => format!("/api/v1/deployments?limit=40&after={cursor}"),
            None => "/api/v1/deployments?limit=40".to_string(),
        };
        let (status, page) = call(&f.app, Method::GET, &uri, None, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page}");
        let (ids, next) = page_ids(&page);
        assert!(ids.len() <= 40, "{uri} gave {} deployments", ids.len());
        seen.extend(ids);
        let Some(next) = next else { break };
        after = Some(next);
        // Between pages: two new requests, and two destroyed (one already
        // listed, one not yet).
        round += 1;
        for _ in 0..2 {
            let body = format!(r#"{{"url":"https://example.org/new-{round}.git","branch":"main"}}"#);
            let (status, v) =
                call(&f.app, Method::POST, "/api/v1/deployments", Some(TOKEN), Some(&body)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        }
        let all = f.state.deployment_summaries();
        for target in [&seen[seen.len() / 2], &all[all.len() - 3].id] {
            let (status, v) =
                call(&f.app, Method::DELETE, &format!("/api/v1/deployments/{target}"), Some(TOKEN), None)
                    .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        }
        assert!(round < 100, "the pages never end");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no deployment is listed twice");
    let stored: Vec<String> = f.state.deployment_summaries().into_iter().map(|d| d.id).collect();
    assert!(stored.len() > 230, "deployments were created during the walk");
    assert_eq!(seen, stored, "every deployment, in the list's order, exactly once");
}

#[tokio::test]
async fn a_cursor_naming_a_deployment_that_is_gone_still_gives_the_next_page() {
    let f = fixture();
    let made: Vec<_> = (0..5)
        .map(|i| {
            f.state.create_deployment(&format!("https://example.org/app-{i}.git"), "main").expect("stored")
        })
        .collect();
    let (_, page) = call(&f.app, Method::GET, "/api/v1/deployments?limit=2", None, None).await;
    let (ids, next) = page_ids(&page);
    assert_eq!(ids, [made[0].id.clone(), made[1].id.clone()]);
    let next = next.expect("more pages");
    // The cursor carries when the last deployment was requested, so an id
    // that is not (or no longer) stored still places the page: an id after
    // every hex id, at the second deployment's time, starts after it.
    let (time, _) = next.split_once('_').expect("a cursor is time_id");
    let gone = format!("{time}_zzzzzz");
    let (status, page) =
        call(&f.app, Method::GET, &format!("/api/v1/deployments?limit=2&after={gone}"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page_ids(&page).0, [made[2].id.clone(), made[3].id.clone()]);
    let (_, last) =
        call(&f.app, Method::GET, &format!("/api/v1/deployments?limit=1000&after={next}"), None, None).await;
    assert_eq!(page_ids(&last), (vec![made[2].id.clone(), made[3].id.clone(), made[4].id.clone()], None));
}

#[tokio::test]
async fn bad_page_parameters_get_400_saying_what_would_be_right() {
    let f = fixture();
    f.state.create_deployment("https://example.org/app.git", "main").expect("stored");
    for (query, expected) in [
        ("limit=0", "from 1 to 1000"),
        ("limit=1001", "from 1 to 1000"),
        ("limit=ten", "from 1 to 1000"),
        ("limit=", "from 1 to 1000"),
        ("after=3f2a9c", "`next` of the previous page"),
        ("after=", "`next` of the previous page"),
        ("limit=5&after=1764150000.5_abc", "`next` of the previous page"),
    ] {
        let (status, v) =
            call(&f.app, Method::GET, &format!("/api/v1/deployments?{query}"), None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "?{query}: {v}");
        assert!(error_text(&v).contains(expected), "?{query}: {v}");
    }
}

#[tokio::test]
async fn a_deployment_read_again_shows_every_change_and_each_new_resource_sample() {
    let f = fixture();
    let d = f.state.create_deployment("https://example.org/app.git", "main").expect("stored");
    let path = format!("/api/v1/deployments/{}", d.id);
    let (status, first) = call(&f.app, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "DeploymentRequested");
    let (_, again) = call(&f.app, Method::GET, &path, None, None).await;
    assert_eq!(again, first, "nothing changed, the same record");

    // A durable change.
    let (status, _) = call(&f.app, Method::DELETE, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, destroyed) = call(&f.app, Method::GET, &path, None, None).await;
    assert_eq!(destroyed["status"], "DestructionRequested", "{destroyed}");

    // Resource samples are kept in memory only; each one shows at once.
    for memory in [1_000_000_u64, 2_000_000] {
        let sample = ContainerStats { cpu_percent: 1.5, memory_bytes: memory, memory_limit_bytes: 8_000_000 };
        f.state.record_stats(&d.id, sample);
        let (_, read) = call(&f.app, Method::GET, &path, None, None).await;
        assert_eq!(read["stats"]["memory_bytes"], memory, "{read}");
    }
    let (_, read) = call(&f.app, Method::GET, &path, None, None).await;
    assert_eq!(read["stats_history"].as_array().map(Vec::len), Some(2), "{read}");
    // A change to another deployment leaves this one's record as it is.
    f.state.create_deployment("https://example.org/other.git", "main").expect("stored");
    let (_, after) = call(&f.app, Method::GET, &path, None, None).await;
    assert_eq!(after, read);
}
