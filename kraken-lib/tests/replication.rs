//! Synchronous replication over real HTTP: the API served on a loopback port,
//! and this test in the role of the rollover candidate (it reads the replica
//! stream and confirms versions, or does not).
//!
//! A change is answered `202` only once the candidate confirmed it; a
//! candidate that stays silent past the timeout is cut off and the platform
//! says it runs degraded, until a copy has caught up again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kraken_lib::api::{self, ApiContext, JoinInfo, SseDecoder, SseMessage};
use kraken_lib::auth::{proof, NodeKey, TokenHash};
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::bus::memory::MemoryBus;
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity};
use kraken_lib::state::{Role, State, StateLimits};
use serde_json::{json, Value};

const TOKEN: &str = "replication-token";
const JOIN: &str = "replication-join";
/// The node id of the candidate this test plays.
const CANDIDATE: &str = "candidate";

/// The candidate's node key (one for the whole test binary).
fn candidate_key() -> &'static NodeKey {
    static KEY: std::sync::OnceLock<NodeKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| NodeKey::generate().expect("a key"))
}

/// The candidate's proof that it is the candidate, for the proof header.
fn candidate_proof() -> String {
    proof::replica_proof(candidate_key(), CANDIDATE, chrono::Utc::now().timestamp())
}

struct Served {
    base: String,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(timeout: Duration) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = NodeConfig::new(dir.path(), addr);
    config.replication_timeout = timeout;
    let node = GenericNode::new(
        NodeIdentity { id: "n1".into(), name: "primary".into() },
        config,
        Arc::new(MemoryBus::new()),
    );
    // The candidate joined with its key, and the orchestrator named it (priority 1).
    state
        .register_node_key(CANDIDATE, "copy", "http://127.0.0.9:8000", Role::Worker, candidate_key().public())
        .expect("the candidate's key");
    state
        .update_node(CANDIDATE, |n| {
            n.rollover_priority = 1;
            true
        })
        .expect("the candidate's priority");
    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let join = JoinInfo { token: TokenHash::of(JOIN).expect("hash"), amqp_url: Arc::from("amqp://unused") };
    let ctx = ApiContext::new(state, registry, node, TokenHash::of(TOKEN).expect("hash")).with_join(join);
    let app = api::router(ctx);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Served { base: format!("http://{addr}"), _dir: dir, task }
}

/// The replica stream, read message by message.
struct Stream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: SseDecoder,
    pending: std::collections::VecDeque<SseMessage>,
}

impl Stream {
    async fn open(base: &str) -> Self {
        let response = reqwest::Client::new()
            .get(format!("{base}/api/v1/replica?node={CANDIDATE}"))
            .bearer_auth(JOIN)
            .header(proof::HEADER, candidate_proof())
            .send()
            .await
            .expect("the replica stream opens");
        assert!(response.status().is_success(), "{}", response.status());
        Self {
            body: response.bytes_stream().boxed(),
            decoder: SseDecoder::new(),
            pending: Default::default(),
        }
    }

    /// The next message; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.body.next())
                .await
                .expect("the stream says something within a minute")?;
            self.pending.extend(self.decoder.push(&chunk.ok()?));
        }
    }
}

async fn ack(base: &str, session: &str, version: u64) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/replica/ack"))
        .bearer_auth(JOIN)
        .header(proof::HEADER, candidate_proof())
        .json(&json!({ "session": session, "version": version }))
        .send()
        .await
        .expect("ack answered")
        .status()
}

async fn platform(base: &str) -> Value {
    reqwest::get(format!("{base}/api/v1/platform")).await.expect("platform").json().await.expect("json")
}

fn create(base: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = format!("{base}/api/v1/deployments");
    tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .json(&json!({ "url": "https://example.org/app.git", "branch": "main" }))
            .send()
            .await
            .expect("create answered");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_acknowledged_only_once_the_candidate_stored_it() {
    let served = serve(Duration::from_secs(60)).await;
    let base = served.base.as_str();
    assert_eq!(platform(base).await["replication"]["state"], "off", "no candidate, no other node");

    let mut stream = Stream::open(base).await;
    let snapshot = stream.next().await.expect("a snapshot");
    assert_eq!(snapshot.event, "snapshot");
    let snapshot: Value = serde_json::from_str(&snapshot.data).expect("json");
    let session = snapshot["session"].as_str().expect("a session").to_string();
    assert_eq!(ack(base, &session, snapshot["version"].as_u64().expect("version")).await, 204);

    let request = create(base);
    let event = stream.next().await.expect("the new deployment is streamed");
    assert_eq!(event.event, "deployment");
    let version: u64 = event.id.as_deref().and_then(|v| v.parse().ok()).expect("a version as the id");
    let streamed: Value = serde_json::from_str(&event.data).expect("json");
    assert!(!request.is_finished(), "no answer before the candidate confirmed");
    // Confirming an older version does not release it either.
    assert_eq!(ack(base, &session, version - 1).await, 204);
    assert!(!request.is_finished(), "still no answer: version {} is not confirmed", version);
    assert_eq!(ack(base, &session, version).await, 204);
    let (status, body) = request.await.expect("joins");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replicated"], true);
    assert_eq!(body["id"], streamed["id"], "the streamed record is the created deployment");
    let replication = platform(base).await["replication"].clone();
    assert_eq!(replication["state"], "synchronous", "{replication}");
    assert_eq!(replication["candidate"], "candidate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_candidate_is_cut_off_and_the_platform_says_it_runs_degraded() {
    let served = serve(Duration::from_millis(300)).await;
    let base = served.base.as_str();
    let mut stream = Stream::open(base).await;
    let snapshot: Value = serde_json::from_str(&stream.next().await.expect("snapshot").data).expect("json");
    let session = snapshot["session"].as_str().expect("session").to_string();
    // Until it has stored its snapshot, a candidate is no copy: nothing waits for it.
    assert_eq!(
        platform(base).await["replication"]["reason"],
        "the rollover candidate is still copying the state"
    );
    let (status, body) = create(base).await.expect("joins");
    assert_eq!((status, body["replicated"].clone()), (202, json!(false)));
    assert_eq!(ack(base, &session, snapshot["version"].as_u64().expect("version")).await, 204);

    // Then it stops confirming: the next request is answered after the timeout, unreplicated.
    let (status, body) = create(base).await.expect("joins");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replicated"], false);
    let replication = platform(base).await["replication"].clone();
    assert_eq!(replication["state"], "degraded", "{replication}");
    assert!(replication["reason"].as_str().unwrap_or("").contains("did not confirm"), "{replication}");
    // Its stream was ended and its session forgotten.
    while let Some(m) = stream.next().await {
        assert_ne!(m.event, "snapshot");
    }
    assert_eq!(ack(base, &session, 1_000).await, 404);

    // While degraded, changes are not held up by a missing copy.
    let (status, body) = create(base).await.expect("joins");
    assert_eq!((status, body["replicated"].clone()), (202, json!(false)));

    // A candidate that connects again and confirms everything ends the degraded period.
    let mut again = Stream::open(base).await;
    let snapshot: Value = serde_json::from_str(&again.next().await.expect("snapshot").data).expect("json");
    assert_eq!(snapshot["deployments"].as_array().map(Vec::len), Some(3), "every request is in the snapshot");
    let session = snapshot["session"].as_str().expect("session");
    assert_eq!(ack(base, session, snapshot["version"].as_u64().expect("version")).await, 204);
    assert_eq!(platform(base).await["replication"]["state"], "synchronous");
}
