//! The typed client against the real API served on a loopback port: every
//! call reads the server's own bodies, refusals carry the server's message,
//! ids are percent-encoded, and the event and log streams bring changes as
//! they happen.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kraken_lib::api::{self, ApiContext};
use kraken_lib::auth::TokenHash;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::bus::memory::MemoryBus;
use kraken_lib::bus::LogEntry;
use kraken_lib::client::{ApiEvent, Client, ClientError, SourceRequest};
use kraken_lib::deployment::Status;
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity};
use kraken_lib::state::{State, StateLimits};
use reqwest::StatusCode;

const TOKEN: &str = "s3cret-token-for-the-client";
/// A generous bound for a change to come through a stream on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

struct Served {
    _dir: tempfile::TempDir,
    state: State,
    address: String,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(&dir.path().join("state"), StateLimits::default()).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let local = listener.local_addr().expect("local address");
    let config = NodeConfig::new(dir.path(), local);
    let node = GenericNode::new(
        NodeIdentity { id: "n1".into(), name: "box".into() },
        config,
        Arc::new(MemoryBus::new()),
    );
    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let hash = TokenHash::of(TOKEN).expect("hash");
    let app = api::router(ApiContext::new(state.clone(), registry, node, hash));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Served { _dir: dir, state, address: format!("{}:{}", local.ip(), local.port()) }
}

fn source() -> SourceRequest {
    SourceRequest { url: "https://example.invalid/app.git".into(), branch: "main".into() }
}

#[tokio::test]
async fn the_client_creates_lists_reads_and_destroys_deployments() {
    let served = serve().await;
    // The address without a scheme is normalised to http://host:port.
    let client = Client::new(&served.address).expect("client").with_token(TOKEN);
    assert_eq!(client.address(), format!("http://{}", served.address));

    let ping = client.ping().await.expect("ping");
    assert_eq!(
        (ping.service.as_str(), ping.node_id.as_str(), ping.role.as_str()),
        ("kraken", "n1", "orchestrator")
    );

    let created = client.create(&source()).await.expect("created");
    assert_eq!(created.status, Status::DeploymentRequested);
    let listed = client.deployments().await.expect("listed");
    assert_eq!(listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [created.id.as_str()]);
    let read = client.deployment(&created.id).await.expect("read");
    assert_eq!(read.url, "https://example.invalid/app.git");
    assert_eq!(read.status_history.first().map(|c| c.status), Some(Status::DeploymentRequested));

    let destroyed = client.destroy(&created.id).await.expect("destroyed");
    assert_eq!(destroyed.status, Status::DestructionRequested);
    // The node list reads as the server's own records.
    client.nodes().await.expect("nodes");
}

#[tokio::test]
async fn the_client_follows_the_pages_of_the_list() {
    let served = serve().await;
    let client = Client::new(&served.address).expect("client");
    // One more than the largest page, so the whole list takes two pages.
    let total = api::MAX_PAGE + 1;
    for i in 0..total {
        served
            .state
            .create_deployment(&format!("https://example.invalid/app-{i}.git"), "main")
            .expect("stored");
    }
    let stored: Vec<String> = served.state.deployment_summaries().into_iter().map(|d| d.id).collect();
    let listed: Vec<String> = client.deployments().await.expect("listed").into_iter().map(|d| d.id).collect();
    assert_eq!(listed.len(), total, "every deployment, over two pages");
    assert_eq!(listed, stored, "in the list's order, each once");

    let first = client.deployment_page(None, None).await.expect("first page");
    assert_eq!(first.items.len(), api::DEFAULT_PAGE);
    let next = first.next.expect("a next page");
    let second = client.deployment_page(Some(3), Some(&next)).await.expect("second page");
    let ids: Vec<&str> = second.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, stored[api::DEFAULT_PAGE..api::DEFAULT_PAGE + 3]);

    let err = client.deployment_page(Some(0), None).await.expect_err("limit 0");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert!(err.to_string().contains("from 1 to 1000"), "{err}");
}

#[tokio::test]
async fn refusals_carry_the_servers_status_and_message() {
    let served = serve().await;
    let anonymous = Client::new(&served.address).expect("client");
    let err = anonymous.create(&source()).await.expect_err("no token");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(err.to_string().contains("Authorization: Bearer"), "{err}");

    // An id with a slash and a space stays one path segment.
    let err = anonymous.deployment("no/such id").await.expect_err("unknown id");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(err.to_string().contains("`no/such id`"), "{err}");

    let bad = SourceRequest { url: "not a url".into(), branch: "main".into() };
    let client = Client::new(&served.address).expect("client").with_token(TOKEN);
    let err = client.create(&bad).await.expect_err("a bad url");
    assert_eq!(err.status(), Some(StatusCode::UNPROCESSABLE_ENTITY), "{err}");
}

#[tokio::test]
async fn an_address_where_nothing_listens_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    let err = Client::new(&address).expect("client").ping().await.expect_err("nothing listens");
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    let err = Client::new("http://host/with/a/path").expect_err("a path");
    assert!(matches!(err, ClientError::BadAddress(_)), "{err}");
}

#[tokio::test]
async fn the_event_stream_brings_each_change_of_a_deployment() {
    let served = serve().await;
    let client = Client::new(&served.address).expect("client").with_token(TOKEN);
    let mut events = client.events().await.expect("events");
    let created = client.create(&source()).await.expect("created");
    client.destroy(&created.id).await.expect("destroyed");
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let ApiEvent::Deployment(d) = event.expect("an event") {
                if d.id == created.id {
                    seen.push(d.status);
                    if d.status == Status::DestructionRequested {
                        return;
                    }
                }
            }
        }
        panic!("the event stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no DestructionRequested event within {WAIT:?}; saw {seen:?}"));
    assert_eq!(seen.first(), Some(&Status::DeploymentRequested), "{seen:?}");
}

#[tokio::test]
async fn logs_come_in_pages_and_as_a_live_stream() {
    let served = serve().await;
    let client = Client::new(&served.address).expect("client").with_token(TOKEN);
    let created = client.create(&source()).await.expect("created");
    let entries = |range: std::ops::Range<u32>| -> Vec<LogEntry> {
        range.map(|i| LogEntry { stream: "stdout".into(), line: format!("line {i}") }).collect()
    };
    served.state.append_logs(&created.id, entries(0..3)).expect("append");

    let page = client.logs(&created.id, 1, 5000).await.expect("page");
    assert_eq!(page.lines.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["line 1", "line 2"]);
    assert_eq!(page.next_offset, 3);

    let mut live = client.follow_logs(&created.id, 2).await.expect("follow");
    served.state.append_logs(&created.id, entries(3..5)).expect("append");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        while got.len() < 3 {
            got.push(live.next().await.expect("a line").expect("a log line").line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the live stream brought only {got:?} within {WAIT:?}"));
    assert_eq!(got, ["line 2", "line 3", "line 4"]);
}

#[tokio::test]
async fn a_live_log_stream_that_falls_behind_still_gets_every_line_once() {
    let served = serve().await;
    let client = Client::new(&served.address).expect("client").with_token(TOKEN);
    let created = client.create(&source()).await.expect("created");
    let mut live = client.follow_logs(&created.id, 0).await.expect("follow");
    // Far more batches than a listener may fall behind by, appended while
    // nothing reads the stream (this test's runtime has one thread).
    for b in 0..100u32 {
        let batch: Vec<LogEntry> = (b * 10..b * 10 + 10)
            .map(|i| LogEntry { stream: "stdout".into(), line: format!("line {i}") })
            .collect();
        served.state.append_logs(&created.id, batch).expect("append");
    }
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        while got.len() < 1000 {
            got.push(live.next().await.expect("a line").expect("a log line").line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the live stream brought only {} lines within {WAIT:?}", got.len()));
    let expected: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn control_characters_in_a_request_get_an_answer_not_a_dropped_connection() {
    let served = serve().await;
    let client = Client::new(&served.address).expect("client").with_token(TOKEN);
    let odd = SourceRequest { url: "htTpS://\u{f}".into(), branch: "N\u{e7}\u{1d}\u{0}N\u{10}v".into() };
    let err = client.create(&odd).await.expect_err("refused");
    assert_eq!(err.status(), Some(StatusCode::UNPROCESSABLE_ENTITY), "{err}");
}
