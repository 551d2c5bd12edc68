//! What the join token lets a machine do, tested on the API in-process: join
//! (registering its key, never another node's), and nothing more: no changes
//! to the platform, no replica unless it is the named rollover candidate, and
//! never a token in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kraken_lib::api::{self, ApiContext, JoinInfo, SseDecoder};
use kraken_lib::auth::{proof, NodeKey, TokenHash};
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::bus::memory::MemoryBus;
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity};
use kraken_lib::state::{Role, State, StateLimits};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "platform-token-0123456789";
const JOIN_TOKEN: &str = "join-token-abcdefghijklmnop";

struct Fixture {
    _dir: tempfile::TempDir,
    state: State,
    app: axum::Router,
    orchestrator_key: Arc<NodeKey>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
    let config = NodeConfig::new(dir.path(), "127.0.0.1:8000".parse().expect("addr"));
    let orchestrator_key = Arc::new(NodeKey::generate().expect("key"));
    let node = GenericNode::new(
        NodeIdentity { id: "orchestrator".into(), name: "o".into() },
        config,
        Arc::new(MemoryBus::new()),
    )
    .with_key(orchestrator_key.clone());
    state
        .register_node_key(
            "orchestrator",
            "o",
            "http://127.0.0.1:8000",
            Role::Orchestrator,
            orchestrator_key.public(),
        )
        .expect("register");
    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let join = JoinInfo {
        token: TokenHash::of(JOIN_TOKEN).expect("hash"),
        amqp_url: Arc::from("amqp://kraken-x:secret@127.0.0.1:5672/%2f"),
    };
    let ctx =
        ApiContext::new(state.clone(), registry, node, TokenHash::of(TOKEN).expect("hash")).with_join(join);
    Fixture { _dir: dir, state, app: api::router(ctx), orchestrator_key }
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn join_request(node_id: &str, key: &NodeKey, token: &str) -> Request<Body> {
    let body = json!({
        "node_id": node_id,
        "name": "pi",
        "address": "http://192.168.1.30:8000",
        "join_token": token,
        "public_key": key.public().to_string(),
    });
    Request::post("/api/v1/join")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test]
async fn joining_registers_the_nodes_key_and_never_lets_it_take_another_nodes_id() {
    let f = fixture();
    let key = NodeKey::generate().expect("key");
    let (status, v) = send(&f.app, join_request("pi-1", &key, "wrong-token-wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(f.state.node("pi-1").is_none(), "a refused join stores nothing");

    let (status, answer) = send(&f.app, join_request("pi-1", &key, JOIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["orchestrator_key"], f.orchestrator_key.public().to_string());
    assert_eq!(f.state.node("pi-1").and_then(|n| n.public_key), Some(key.public()));
    // Joining again (a restart) with the same key is fine.
    assert_eq!(send(&f.app, join_request("pi-1", &key, JOIN_TOKEN)).await.0, StatusCode::OK);

    // Another machine with the join token tries to become pi-1, or the orchestrator.
    let intruder = NodeKey::generate().expect("key");
    for id in ["pi-1", "orchestrator"] {
        let (status, v) = send(&f.app, join_request(id, &intruder, JOIN_TOKEN)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{id}: {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains("another key"), "{v}");
    }
    assert_eq!(f.state.node("pi-1").and_then(|n| n.public_key), Some(key.public()));
    assert_eq!(f.state.node("orchestrator").and_then(|n| n.public_key), Some(f.orchestrator_key.public()));

    // A node address that is not an http(s) address is refused.
    let mut bad = json!({
        "node_id": "pi-2", "name": "pi", "address": "javascript:alert(1)",
        "join_token": JOIN_TOKEN, "public_key": intruder.public().to_string(),
    });
    let request = |body: &Value| {
        Request::post("/api/v1/join")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    assert_eq!(send(&f.app, request(&bad)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    bad["address"] = json!("http://192.168.1.31:8000");
    bad["node_id"] = json!("../../etc");
    assert_eq!(send(&f.app, request(&bad)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_join_token_changes_nothing_on_the_platform() {
    let f = fixture();
    let d = f.state.create_deployment("https://git.invalid/a.git", "main").expect("create");
    let calls = [
        (Method::POST, "/api/v1/deployments".to_string(), Some(r#"{"url":"https://git.invalid/b.git"}"#)),
        (Method::POST, "/api/v1/validate".to_string(), Some(r#"{"url":"https://git.invalid/b.git"}"#)),
        (Method::DELETE, format!("/api/v1/deployments/{}", d.id), None),
        (Method::POST, format!("/api/v1/deployments/{}/update", d.id), None),
        (Method::POST, "/api/v1/nodes/orchestrator/drain".to_string(), None),
    ];
    for (method, uri, body) in calls {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(header::AUTHORIZATION, format!("Bearer {JOIN_TOKEN}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
        let (status, v) = send(&f.app, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {v}");
    }
    assert_eq!(f.state.deployments().len(), 1);
    assert!(!f.state.node("orchestrator").expect("node").drained);
}

/// The first server-sent event of the replica stream, as text.
async fn first_event(app: &axum::Router, request: Request<Body>) -> Result<String, (StatusCode, Value)> {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let mut body = response.into_body();
    if status != StatusCode::OK {
        let bytes = body.collect().await.expect("body").to_bytes();
        return Err((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
    }
    let mut decoder = SseDecoder::new();
    let mut raw = String::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the snapshot in time")
            .expect("open")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            raw.push_str(&String::from_utf8_lossy(&data));
            if let Some(message) = decoder.push(&data).into_iter().next() {
                assert_eq!(message.event, "snapshot");
                return Ok(raw);
            }
        }
    }
}

fn replica_request(proof: Option<String>) -> Request<Body> {
    let mut request =
        Request::get("/api/v1/replica").header(header::AUTHORIZATION, format!("Bearer {JOIN_TOKEN}"));
    if let Some(p) = proof {
        request = request.header(proof::HEADER, p);
    }
    request.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn the_replica_goes_only_to_the_named_candidate_and_holds_no_token() {
    let f = fixture();
    let now = chrono::Utc::now().timestamp();
    let candidate = NodeKey::generate().expect("key");
    let other = NodeKey::generate().expect("key");
    f.state
        .register_node_key("candidate", "c", "http://10.0.0.2:8000", Role::Worker, candidate.public())
        .expect("register");
    f.state
        .register_node_key("other", "x", "http://10.0.0.3:8000", Role::Worker, other.public())
        .expect("register");
    assert_eq!(f.state.node("candidate").map(|n| n.rollover_priority), Some(1));

    // The join token alone is not enough.
    let (status, v) = first_event(&f.app, replica_request(None)).await.expect_err("refused");
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // A joined node that is not the candidate, with a valid proof of its own.
    let (status, v) = first_event(&f.app, replica_request(Some(proof::replica_proof(&other, "other", now))))
        .await
        .expect_err("refused");
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("not this platform's rollover candidate"),
        "{v}"
    );
    // Claiming to be the candidate without its key.
    let (status, _) =
        first_event(&f.app, replica_request(Some(proof::replica_proof(&other, "candidate", now))))
            .await
            .expect_err("refused");
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The candidate gets the snapshot: hashes of the tokens, never the tokens.
    let raw = first_event(&f.app, replica_request(Some(proof::replica_proof(&candidate, "candidate", now))))
        .await
        .expect("the candidate is served");
    assert!(!raw.contains(TOKEN), "the platform token is not in the snapshot");
    assert!(!raw.contains(JOIN_TOKEN), "the join token is not in the snapshot");
    let data = raw.lines().find_map(|l| l.strip_prefix("data:")).expect("data line");
    let snapshot: api::Snapshot = serde_json::from_str(data.trim()).expect("a snapshot");
    assert!(snapshot.token_hash.matches(TOKEN));
    assert!(snapshot.join_token_hash.matches(JOIN_TOKEN));
}
