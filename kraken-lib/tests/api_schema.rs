//! Real answers of the API checked against the OpenAPI document it serves:
//! an in-process platform (orchestrator and worker, the real Docker engine)
//! deploys a small app from a local repository, and every answer on the way
//! (the deployment calls, logs, nodes, platform, validate, and the refusals:
//! 400, 401, 404, 409, 413, 415, 422) must be a status the document lists
//! for its path and method, with a body valid against the schema the
//! document gives for that status. The event stream's `deployment` events
//! are checked against the schema the document names for them.

#[path = "common/apps.rs"]
mod apps;
#[path = "common/docker.rs"]
mod docker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kraken_lib::api::SseDecoder;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::Platform;
use kraken_lib::runtime::DockerRuntime;
use reqwest::{header, Method};
use serde_json::{json, Value};

use apps::AppRepo;

/// How long the app may take to be Running (a build on a busy machine).
const DEPLOY: Duration = Duration::from_secs(300);

/// The document's schemas, ready to check answers with.
struct Document {
    doc: Value,
}

impl Document {
    /// The operation object of `method` on the path `template`.
    fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "the document has no {method} {template}");
        op
    }

    /// A validator for `schema`, which may refer to the document's components.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}"))
    }

    /// Checks `value` against the component schema `name`; returns what is wrong.
    fn errors_for_component(&self, name: &str, value: &Value) -> Vec<String> {
        let validator = self.validator(&json!({ "$ref": format!("#/components/schemas/{name}") }));
        validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path)).collect()
    }

    /// Checks one answer: its status must be listed for the operation, and
    /// its body must match what the document says that status carries.
    fn check(&self, method: &Method, template: &str, answer: &Answer) {
        let what = format!("{method} {template} answered {}", answer.status);
        let responses = &self.operation(method, template)["responses"];
        let documented = &responses[answer.status.to_string()];
        assert!(
            documented.is_object(),
            "{what}, a status the document does not list (it lists {:?}); body: {}",
            responses.as_object().map(|r| r.keys().collect::<Vec<_>>()),
            answer.text
        );
        let Some(content) = documented.get("content").and_then(Value::as_object) else {
            assert!(
                answer.text.is_empty(),
                "{what}: the document gives no body, the answer has: {}",
                answer.text
            );
            return;
        };
        if answer.content_type.starts_with("text/event-stream") {
            assert!(
                content.contains_key("text/event-stream"),
                "{what}: an event stream the document does not list"
            );
            return;
        }
        assert!(
            answer.content_type.starts_with("application/json"),
            "{what} with content type `{}`; the document lists {:?}",
            answer.content_type,
            content.keys().collect::<Vec<_>>()
        );
        let schema = &content.get("application/json").unwrap_or_else(|| {
            panic!("{what} with JSON; the document lists {:?}", content.keys().collect::<Vec<_>>())
        })["schema"];
        let body: Value = serde_json::from_str(&answer.text)
            .unwrap_or_else(|e| panic!("{what} with a body that is not JSON ({e}): {}", answer.text));
        let validator = self.validator(schema);
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at `{}`", e, e.instance_path)).collect();
        assert!(
            errors.is_empty(),
            "{what} with a body the document's schema refuses:\n{}\nbody: {body}",
            errors.join("\n")
        );
    }
}

/// One answer as it came.
struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A client that checks every answer against the document.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    doc: Document,
}

/// What a request sends.
enum Body {
    None,
    Json(Value),
    Raw(&'static str, String),
}

impl Api {
    /// Sends a request to `path` (the operation's path `template` filled
    /// in), with or without the token, and checks the answer.
    async fn call(&self, method: Method, template: &str, path: &str, token: bool, body: Body) -> Answer {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if token {
            req = req.bearer_auth(&self.token);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(content_type, text) => req.header(header::CONTENT_TYPE, content_type).body(text),
        };
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            resp.text().await.expect("a body")
        };
        let answer = Answer { status, content_type, text };
        self.doc.check(&method, template, &answer);
        answer
    }

    async fn get(&self, template: &str, path: &str) -> Answer {
        self.call(Method::GET, template, path, false, Body::None).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = NodeConfig::new(dir.path().join("data"), "127.0.0.1:0".parse().expect("address"));
    config.publish_ip = "127.0.0.1".to_string();
    config.allow_local_sources = true;
    config.fetch_program =
        kraken_lib::fetcher::FetchProgram::Program(PathBuf::from(env!("CARGO_BIN_EXE_kraken-fetch")));
    let registry = BuilderRegistry::with_builtins(BaseImages::uniform(&docker::base_image()));
    let runtime = DockerRuntime::connect().await.expect("docker");
    let platform = Platform::builder(config)
        .registry(registry)
        .runtime(Arc::new(runtime))
        .start()
        .await
        .expect("platform");
    let _cleanup = docker::NodeCleanup(platform.node_id().to_string());
    let base = format!("http://{}", platform.local_addr());
    let token = platform.token().expect("the agent that made the token knows it").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(platform.run(async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let doc: Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("document")
        .json()
        .await
        .expect("JSON");
    let api = Api { http, base, token, doc: Document { doc } };
    let repo = AppRepo::new("dockerfile-app");
    let source = json!({ "url": repo.url(), "branch": "main" });

    // The event stream, opened first so it sees the deployment from its request on.
    let events = api.call(Method::GET, "/api/v1/events", "/api/v1/events", false, Body::None).await;
    assert_eq!(events.status, 200);
    let stream = api.http.get(format!("{}/api/v1/events", api.base)).send().await.expect("events");
    let mut stream = stream.bytes_stream();

    // Reading calls.
    for (template, path) in [
        ("/ping", "/ping"),
        ("/health", "/health"),
        ("/api/v1/openapi.json", "/api/v1/openapi.json"),
        ("/api/v1/platform", "/api/v1/platform"),
        ("/api/v1/builders", "/api/v1/builders"),
        ("/api/v1/deployments", "/api/v1/deployments"),
    ] {
        assert_eq!(api.get(template, path).await.status, 200, "{path}");
    }

    // Checking a repository: the plan of a real one, and refusals.
    let validate = "/api/v1/validate";
    let ok = api.call(Method::POST, validate, validate, true, Body::Json(source.clone())).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["builder"], "dockerfile");
    let refused = api.call(Method::POST, validate, validate, false, Body::Json(source.clone())).await;
    assert_eq!(refused.status, 401);
    let bad = json!({ "url": "https://example.invalid/app.git", "branch": "a..b" });
    assert_eq!(api.call(Method::POST, validate, validate, true, Body::Json(bad)).await.status, 422);

    // Creating: every refusal of a body, then the real one.
    let create = "/api/v1/deployments";
    let cases: Vec<(bool, Body, u16)> = vec![
        (false, Body::Json(source.clone()), 401),
        (true, Body::Raw("application/json", "not json".into()), 400),
        (true, Body::Raw("text/plain", source.to_string()), 415),
        (true, Body::Raw("application/json", format!("{{\"url\":\"{}\"}}", "a".repeat(100_000))), 413),
        (true, Body::Json(json!({ "url": "https://example.invalid/x.git", "branch": "a..b" })), 422),
    ];
    for (token, body, expected) in cases {
        let answer = api.call(Method::POST, create, create, token, body).await;
        assert_eq!(answer.status, expected, "{}", answer.text);
    }
    let created = api.call(Method::POST, create, create, true, Body::Json(source.clone())).await;
    assert_eq!(created.status, 202, "{}", created.text);
    let id = created.json()["id"].as_str().expect("an id").to_string();
    let one = "/api/v1/deployments/{id}";
    let update = "/api/v1/deployments/{id}/update";
    let logs = "/api/v1/deployments/{id}/logs";

    // Not Running yet: an update is refused with 409.
    let early =
        api.call(Method::POST, update, &format!("/api/v1/deployments/{id}/update"), true, Body::None).await;
    assert_eq!(early.status, 409, "{}", early.text);
    // Unknown ids.
    assert_eq!(api.get(one, "/api/v1/deployments/nope").await.status, 404);
    assert_eq!(api.get(logs, "/api/v1/deployments/nope/logs").await.status, 404);
    let gone = api.call(Method::DELETE, one, "/api/v1/deployments/nope", true, Body::None).await;
    assert_eq!(gone.status, 404);
    let no_token =
        api.call(Method::DELETE, one, &format!("/api/v1/deployments/{id}"), false, Body::None).await;
    assert_eq!(no_token.status, 401);
    let out_of_range = api.get(logs, &format!("/api/v1/deployments/{id}/logs?limit=0")).await;
    assert_eq!(out_of_range.status, 400);

    // The app builds and runs; every read on the way is checked too.
    let deadline = Instant::now() + DEPLOY;
    let running = loop {
        let d = api.get(one, &format!("/api/v1/deployments/{id}")).await.json();
        match d["status"].as_str() {
            Some("Running") => break d,
            Some("Errored") => panic!("the app errored: {}", d["error"]),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not Running within {DEPLOY:?}: {d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(running["address"].is_string(), "{running}");
    let page = api.get(logs, &format!("/api/v1/deployments/{id}/logs?offset=0&limit=50")).await;
    assert!(!page.json()["lines"].as_array().expect("lines").is_empty(), "{}", page.text);
    let follow = api.get(logs, &format!("/api/v1/deployments/{id}/logs?follow=true")).await;
    assert_eq!(follow.status, 200);
    let listed = api.get(create, "/api/v1/deployments").await.json();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["next"], Value::Null, "{listed}");
    // Pages: a page of one, the page after it (empty, the last), and the
    // refusals of a bad limit or cursor.
    let first = api.get(create, "/api/v1/deployments?limit=1").await.json();
    assert_eq!(first["items"][0]["id"], id.as_str(), "{first}");
    let cursor = format!("{}.000000000_{id}", chrono_seconds(&first["items"][0]["created_at"]) + 1);
    let after = api.get(create, &format!("/api/v1/deployments?limit=1000&after={cursor}")).await.json();
    assert_eq!(after["items"].as_array().map(Vec::len), Some(0), "{after}");
    for query in ["limit=0", "limit=1001", "limit=many", "after=nope", "after=1.5_x"] {
        let refused = api.get(create, &format!("/api/v1/deployments?{query}")).await;
        assert_eq!(refused.status, 400, "?{query}: {}", refused.text);
    }
    assert_eq!(api.get("/api/v1/platform", "/api/v1/platform").await.json()["deployment_count"], 1);

    // Joining: this platform has one machine and no broker. The replica:
    // without the join token and a proof, refused.
    let join = json!({ "node_id": "n2", "name": "other", "address": "http://127.0.0.1:1",
                       "join_token": "x", "public_key": "0".repeat(64) });
    let joined = api.call(Method::POST, "/api/v1/join", "/api/v1/join", false, Body::Json(join)).await;
    assert_eq!(joined.status, 409, "{}", joined.text);
    let replica = api.get("/api/v1/replica", "/api/v1/replica").await;
    assert_eq!(replica.status, 401);
    let ack = json!({ "session": "s", "version": 1 });
    let acked =
        api.call(Method::POST, "/api/v1/replica/ack", "/api/v1/replica/ack", false, Body::Json(ack)).await;
    assert_eq!(acked.status, 401);

    // Update, then destroy.
    let updated =
        api.call(Method::POST, update, &format!("/api/v1/deployments/{id}/update"), true, Body::None).await;
    assert_eq!(updated.status, 202, "{}", updated.text);
    let destroyed =
        api.call(Method::DELETE, one, &format!("/api/v1/deployments/{id}"), true, Body::None).await;
    assert_eq!(destroyed.status, 202, "{}", destroyed.text);

    // Nodes (once nothing runs that a drain would move): the list, drain and
    // undrain, an unknown node.
    let nodes = api.get("/api/v1/nodes", "/api/v1/nodes").await.json();
    let node = nodes[0]["id"].as_str().expect("the platform's own node").to_string();
    for (template, verb) in [("/api/v1/nodes/{id}/drain", "drain"), ("/api/v1/nodes/{id}/undrain", "undrain")]
    {
        let answer =
            api.call(Method::POST, template, &format!("/api/v1/nodes/{node}/{verb}"), true, Body::None).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        let unknown =
            api.call(Method::POST, template, &format!("/api/v1/nodes/nope/{verb}"), true, Body::None).await;
        assert_eq!(unknown.status, 404);
    }

    // The event stream brought the deployment's changes, each one a
    // DeploymentSummary as the document says.
    let mut decoder = SseDecoder::new();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = stream.next().await {
            for message in decoder.push(&chunk.expect("a chunk")) {
                if message.event != "deployment" {
                    continue;
                }
                let data: Value = serde_json::from_str(&message.data).expect("JSON data");
                let errors = api.doc.errors_for_component("DeploymentSummary", &data);
                assert!(errors.is_empty(), "a `deployment` event the schema refuses: {errors:?}\n{data}");
                seen.push(data["status"].as_str().unwrap_or_default().to_string());
                if data["status"] == "DestructionRequested" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no DestructionRequested event within a minute; saw {seen:?}");
    assert!(seen.iter().any(|s| s == "Running"), "{seen:?}");

    let _ = stop.send(());
    let _ = serving.await;
}

/// The whole seconds of an RFC 3339 time in a JSON answer.
fn chrono_seconds(at: &Value) -> i64 {
    let text = at.as_str().unwrap_or_else(|| panic!("{at} is not a time"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).timestamp()
}

/// The checks can fail: a body that lacks a required field, or has one of
/// the wrong type, is refused by the document's schema, and a status the
/// document does not list is noticed.
#[test]
fn the_checks_refuse_what_the_document_does_not_say() {
    let doc = Document { doc: kraken_lib::api::openapi_document() };
    assert!(doc
        .errors_for_component("Accepted", &json!({ "id": "a", "status": "Running", "replicated": false }))
        .is_empty());
    assert!(!doc.errors_for_component("Accepted", &json!({ "id": "a", "replicated": false })).is_empty());
    assert!(!doc
        .errors_for_component("Accepted", &json!({ "id": 5, "status": "Running", "replicated": false }))
        .is_empty());
    assert!(!doc
        .errors_for_component("Accepted", &json!({ "id": "a", "status": "Sleeping", "replicated": false }))
        .is_empty());
    assert!(!doc.errors_for_component("ErrorBody", &json!({ "message": "no" })).is_empty());
    let unlisted = std::panic::catch_unwind(|| {
        let answer = Answer { status: 418, content_type: "application/json".into(), text: "{}".into() };
        doc.check(&Method::GET, "/api/v1/deployments", &answer);
    });
    assert!(unlisted.is_err(), "a status the document does not list passed");
}
