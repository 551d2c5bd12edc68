//! The HTTP API: JSON under `/api/v1`, server-sent events for live logs and
//! changes, `/ping` for discovery and health, and the OpenAPI document at
//! `/api/v1/openapi.json`.
//!
//! Calls that change anything need `Authorization: Bearer <token>`. Errors are
//! JSON objects `{"error": "…"}` with a message a person can act on; internal
//! details go to the log, not to the client. Bad JSON, unknown ids and
//! oversized bodies get a 4xx.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, warn};

use crate::auth::{PublicKey, TokenHash};
use crate::builder::BuilderRegistry;
use crate::deployment::{is_web_address, Deployment, DeploymentSummary, Desired, Status};
use crate::node::GenericNode;
use crate::retrieval::{check_request, retrieve};
use crate::rollover::replication::Replication;
use crate::state::{Change, Event, KeyConflict, NodeRecord, Role, State};

mod replication;

use crate::client::dto::{Accepted, Drained, Health, LogPage, PingAnswer, Validation};
pub use crate::client::dto::{JoinAnswer, JoinRequest, ReplicaAck, Snapshot, SourceRequest};
pub use crate::client::sse::{SseDecoder, SseMessage};
use replication::{candidate_checked, replica_ack, replicated, replication_status};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiContext {
    /// The orchestrator's state.
    pub state: State,
    /// The builders (for validation and the Info page).
    pub registry: BuilderRegistry,
    /// The node serving the API.
    pub node: GenericNode,
    /// The hash of the platform token (the API never holds the token itself).
    pub token: TokenHash,
    /// How other nodes join; `None` when the platform has no broker.
    pub join: Option<JoinInfo>,
    /// The copies of the state and how far they confirmed.
    pub replication: Replication,
}

/// What a joining node needs, and the token that lets it have it.
#[derive(Clone)]
pub struct JoinInfo {
    /// The hash of the join token.
    pub token: TokenHash,
    /// The broker URL handed to joining nodes (it carries the platform's credentials).
    pub amqp_url: Arc<str>,
}

impl std::fmt::Debug for JoinInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinInfo").finish_non_exhaustive()
    }
}

impl ApiContext {
    /// The context of an API served by `node`, accepting the platform token
    /// whose hash is `token`.
    pub fn new(state: State, registry: BuilderRegistry, node: GenericNode, token: TokenHash) -> Self {
        let replication = Replication::new(node.config.replication_timeout);
        Self { state, registry, node, token, join: None, replication }
    }

    /// Lets nodes join with `info`.
    pub fn with_join(mut self, info: JoinInfo) -> Self {
        self.join = Some(info);
        self
    }
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").field("node", &self.node).finish_non_exhaustive()
    }
}

/// An error answer: a status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what would be right.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        error!(error = %e, "{what}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}; the server log has the details"))
    }

    fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no deployment with id `{id}`; `GET /api/v1/deployments` lists them"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let hint = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "send the body as JSON with `Content-Type: application/json`".to_string()
            }
            StatusCode::PAYLOAD_TOO_LARGE => format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            _ => format!(
                "{}; expected a JSON object like {{\"url\": \"https://…/app.git\", \"branch\": \"main\"}}",
                r.body_text()
            ),
        };
        Self::new(status, hint)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The query of the logs call.
#[derive(Debug, Clone, Deserialize)]
pub struct LogQuery {
    /// First line to return (a `seq`).
    #[serde(default)]
    pub offset: u64,
    /// Most lines to return (default 1000, at most 5000).
    pub limit: Option<usize>,
    /// Stream new lines as server-sent events.
    #[serde(default)]
    pub follow: bool,
}

/// The API's routes, ready to be served (merge the UI's router beside it).
pub fn router(ctx: ApiContext) -> Router {
    let guarded = Router::new()
        .route("/api/v1/deployments", post(create_deployment))
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/deployments/{id}", axum::routing::delete(destroy_deployment))
        .route("/api/v1/deployments/{id}/update", post(update_deployment))
        .route("/api/v1/nodes/{id}/drain", post(drain_node))
        .route("/api/v1/nodes/{id}/undrain", post(undrain_node))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_token));
    Router::new()
        .route("/ping", get(ping))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/platform", get(platform))
        .route("/api/v1/builders", get(builders))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/join", post(join))
        .route("/api/v1/replica", get(replica))
        .route("/api/v1/replica/ack", post(replica_ack))
        .route("/health", get(health))
        .route("/api/v1/deployments", get(list_deployments))
        .route("/api/v1/deployments/{id}", get(get_deployment))
        .route("/api/v1/deployments/{id}/logs", get(logs))
        .route("/api/v1/events", get(events))
        .merge(guarded)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /api/v1/openapi.json for the API")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn require_token(
    AxumState(ctx): AxumState<ApiContext>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match bearer(&headers) {
        Some(t) if ctx.token.matches(t) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the platform token is wrong; `kraken up` printed the right one",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call changes the platform and needs `Authorization: Bearer <platform token>`",
        )
        .into_response(),
    }
}

async fn ping(AxumState(ctx): AxumState<ApiContext>) -> Json<PingAnswer> {
    Json(PingAnswer {
        service: "kraken".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node_id: ctx.node.id.clone(),
        node_name: ctx.node.name.clone(),
        role: "orchestrator".into(),
        epoch: ctx.node.epoch(),
        orchestrator: None,
        rollover_priority: None,
        replica_ready: None,
    })
}

async fn health(AxumState(ctx): AxumState<ApiContext>) -> Json<Health> {
    Json(Health {
        ok: true,
        node_id: ctx.node.id.clone(),
        role: "orchestrator".into(),
        epoch: ctx.node.epoch(),
    })
}

async fn join(
    AxumState(ctx): AxumState<ApiContext>,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> ApiResult<Json<JoinAnswer>> {
    let Json(req) = body?;
    let Some(info) = &ctx.join else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this platform runs on one machine without a message broker; restart its orchestrator with --amqp-url to let other machines join",
        ));
    };
    if !info.token.matches(req.join_token.trim()) {
        warn!(node = %req.node_id, address = %req.address, "a node with a wrong join token was refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the join token is wrong; the orchestrator printed it when it started (pass it with --join-token)",
        ));
    }
    check_joining_node(&req)?;
    let key: PublicKey = req.public_key.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the public key is not an ed25519 public key (64 hex digits); the node makes its key itself",
        )
    })?;
    let registered = ctx.state.register_node_key(&req.node_id, &req.name, &req.address, Role::Worker, key);
    match registered {
        Ok(_) => {}
        Err(KeyConflict::Other) => {
            warn!(node = %req.node_id, address = %req.address, "a node tried to join with another node's id");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "node `{}` joined this platform before with another key; a node's key is kept in its data \
                     directory beside its node-id: start it with that data directory, or remove node-id and \
                     node-key there to join as a new node",
                    req.node_id
                ),
            ));
        }
        Err(KeyConflict::State(e)) => {
            return Err(ApiError::internal("the joining node could not be stored", e))
        }
    }
    tracing::info!(node = %req.node_id, name = %req.name, address = %req.address, "a node joined");
    Ok(Json(JoinAnswer {
        amqp_url: info.amqp_url.to_string(),
        epoch: ctx.node.epoch(),
        orchestrator_id: ctx.node.id.clone(),
        orchestrator_address: ctx.node.api_address(),
        orchestrator_key: ctx.node.public_key(),
    }))
}

/// Checks the fields a joining node gives about itself: they are shown to
/// people and used by other nodes to reach it.
fn check_joining_node(req: &JoinRequest) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m));
    let id_ok = (1..=64).contains(&req.node_id.len())
        && req.node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return bad("the node id must be 1 to 64 letters, digits, `-` or `_`".into());
    }
    if req.name.trim().is_empty() || req.name.chars().count() > 64 || req.name.chars().any(char::is_control) {
        return bad("the node name must be 1 to 64 characters without control characters".into());
    }
    if !is_web_address(&req.address) {
        return bad(
            "the node address must be an http:// or https:// address such as http://192.168.1.20:8000".into(),
        );
    }
    Ok(())
}

fn broker_info(state: &State) -> Option<(String, u16, String, String)> {
    let get = |k: &str| state.meta(k).ok().flatten();
    Some((
        get("broker_image")?,
        get("broker_port")?.parse().ok()?,
        get("broker_user")?,
        get("broker_password")?,
    ))
}

/// The query of the replica stream.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplicaQuery {
    /// The candidate's node id.
    #[serde(default)]
    pub node: String,
}

/// Streams the state to a rollover candidate: a `snapshot` event, then a
/// `deployment` or `node` event with the full record for every durable
/// change, its version as the event's `id`. The candidate confirms what it
/// stored with `POST /api/v1/replica/ack`. Needs the join token as the bearer
/// token and the proof that the caller is the rollover candidate this
/// orchestrator named (every joined machine holds the join token).
async fn replica(
    AxumState(ctx): AxumState<ApiContext>,
    headers: HeaderMap,
    Query(query): Query<ReplicaQuery>,
) -> ApiResult<Response> {
    let (asking, join_token_hash) = candidate_checked(&ctx, &headers)?;
    if !query.node.is_empty() && query.node != asking {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the replica was asked for node `{}` with the proof of node `{asking}`", query.node),
        ));
    }
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(1024);
    let mut feed = ctx.state.replica_feed();
    let session = ctx.replication.open(&asking);
    let snapshot = Snapshot {
        epoch: ctx.node.epoch(),
        orchestrator_id: ctx.node.id.clone(),
        token_hash: ctx.token.clone(),
        join_token_hash,
        deployments: std::mem::take(&mut feed.deployments),
        nodes: std::mem::take(&mut feed.nodes),
        broker: broker_info(&ctx.state),
        version: feed.version,
        session: session.id.clone(),
    };
    tokio::spawn(async move {
        let Ok(first) = SseEvent::default().event("snapshot").json_data(&snapshot) else { return };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                () = session.stop.cancelled() => return,
                () = tx.closed() => return,
                next = feed.changes.recv() => next,
            };
            // Fell behind or closed: the candidate reconnects and starts from a fresh snapshot.
            let Ok(versioned) = next else { return };
            if versioned.version <= feed.version {
                continue;
            }
            let event = match &versioned.change {
                Change::Deployment(d) => SseEvent::default().event("deployment").json_data(d),
                Change::Node(n) => SseEvent::default().event("node").json_data(n),
            };
            let Ok(event) = event else { continue };
            if tx.send(Ok(event.id(versioned.version.to_string()))).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response())
}

async fn set_drained(ctx: &ApiContext, id: &str, drained: bool) -> ApiResult<(StatusCode, Json<Drained>)> {
    let node = ctx
        .state
        .update_node(id, |n| {
            let changed = n.drained != drained;
            n.drained = drained;
            changed
        })
        .map_err(|e| ApiError::internal("the change could not be stored", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no node with id `{id}`; `GET /api/v1/nodes` lists them"),
            )
        })?;
    ctx.state.notify();
    let replicated = replicated(ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Drained { id: node.id, drained: node.drained, replicated })))
}

async fn drain_node(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Drained>)> {
    set_drained(&ctx, &id, true).await
}

async fn undrain_node(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Drained>)> {
    set_drained(&ctx, &id, false).await
}

/// The small API of a worker-only node: `/ping` (which names its
/// orchestrator, so discovery can follow it) and `/health`.
pub fn worker_router(node: GenericNode) -> Router {
    let ping_node = node.clone();
    Router::new()
        .route(
            "/ping",
            get(move || {
                let n = ping_node.clone();
                async move {
                    Json(PingAnswer {
                        service: "kraken".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        node_id: n.id.clone(),
                        node_name: n.name.clone(),
                        role: "worker".into(),
                        epoch: n.epoch(),
                        orchestrator: n.orchestrator(),
                        rollover_priority: Some(n.rollover_priority()),
                        replica_ready: Some(n.replica_ready()),
                    })
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let n = node.clone();
                async move {
                    Json(Health { ok: true, node_id: n.id.clone(), role: "worker".into(), epoch: n.epoch() })
                }
            }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "this is a worker node; the platform's API and UI are on its orchestrator (see /ping)",
            )
        })
}

async fn platform(AxumState(ctx): AxumState<ApiContext>) -> Json<serde_json::Value> {
    let nodes = ctx.state.nodes();
    let deployments = ctx.state.deployments();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &deployments {
        *by_status.entry(d.status.as_str()).or_default() += 1;
    }
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "epoch": ctx.node.epoch(),
        "orchestrator": { "node_id": ctx.node.id, "name": ctx.node.name, "address": ctx.node.api_address() },
        "node_count": nodes.len(),
        "nodes_up": nodes.iter().filter(|n| n.up).count(),
        "deployment_count": deployments.len(),
        "deployments_by_status": by_status,
        "replication": replication_status(&ctx),
    }))
}

async fn builders(AxumState(ctx): AxumState<ApiContext>) -> Json<serde_json::Value> {
    let list: Vec<_> = ctx
        .registry
        .builders()
        .map(|b| json!({ "name": b.name(), "description": b.description(), "example": b.example_manifest() }))
        .collect();
    Json(json!(list))
}

async fn nodes(AxumState(ctx): AxumState<ApiContext>) -> Json<Vec<NodeRecord>> {
    Json(ctx.state.nodes())
}

async fn validate(
    AxumState(ctx): AxumState<ApiContext>,
    body: Result<Json<SourceRequest>, JsonRejection>,
) -> ApiResult<Json<Validation>> {
    let Json(req) = body?;
    check_request(&req.url, &req.branch, ctx.node.config.allow_local_sources)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let root = ctx.node.config.data_dir.join("validate");
    // A check waits in the fetch queue only while there is room; else it is
    // refused at once (503), so checks can never pile up.
    let found = retrieve(&ctx.node.fetcher, false, req.url.trim(), req.branch.trim(), &ctx.registry, &root)
        .await
        .map_err(|e| {
            let status =
                if e.is_busy() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::UNPROCESSABLE_ENTITY };
            ApiError::new(status, e.to_string())
        })?;
    Ok(Json(Validation {
        manifest: found.manifest,
        builder: found.detection.builder,
        reason: found.detection.reason,
        commit: found.commit,
        plan: *found.plan,
    }))
}

async fn create_deployment(
    AxumState(ctx): AxumState<ApiContext>,
    body: Result<Json<SourceRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let Json(req) = body?;
    check_request(&req.url, &req.branch, ctx.node.config.allow_local_sources)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let d = ctx
        .state
        .create_deployment(req.url.trim(), req.branch.trim())
        .map_err(|e| ApiError::internal("the request could not be stored", e))?;
    let replicated = replicated(&ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id: d.id, status: d.status, replicated })))
}

async fn list_deployments(AxumState(ctx): AxumState<ApiContext>) -> Json<Vec<DeploymentSummary>> {
    Json(ctx.state.deployment_summaries())
}

async fn get_deployment(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let d = ctx.state.deployment(&id).ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(d))
}

async fn update_deployment(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let mut refusal = None;
    let d = ctx
        .state
        .update_deployment(&id, |d| {
            if d.desired == Desired::Destroyed {
                refusal = Some("it was destroyed; create a new deployment instead".to_string());
                return false;
            }
            if !matches!(d.status, Status::Running | Status::Errored) {
                refusal = Some(format!("it is {}; ask again once it is Running or Errored", d.status));
                return false;
            }
            d.transition(
                Status::UpdateRequested,
                "update requested: deploying the newest commit of the branch",
                Utc::now(),
            );
            true
        })
        .map_err(|e| ApiError::internal("the request could not be stored", e))?
        .ok_or_else(|| ApiError::not_found(&id))?;
    if let Some(why) = refusal {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("cannot update deployment `{id}`: {why}")));
    }
    ctx.state.notify();
    let replicated = replicated(&ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id: d.id, status: d.status, replicated })))
}

async fn destroy_deployment(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let d = ctx
        .state
        .update_deployment(&id, |d| {
            if d.desired == Desired::Destroyed {
                return false;
            }
            d.desired = Desired::Destroyed;
            d.transition(Status::DestructionRequested, "destruction requested", Utc::now());
            true
        })
        .map_err(|e| ApiError::internal("the request could not be stored", e))?
        .ok_or_else(|| ApiError::not_found(&id))?;
    ctx.state.notify();
    let replicated = replicated(&ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id: d.id, status: d.status, replicated })))
}

async fn logs(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{}; expected ?offset=<number>&limit=<number>&follow=true|false", e.body_text()),
        )
    })?;
    if ctx.state.deployment(&id).is_none() {
        return Err(ApiError::not_found(&id));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit={limit} is out of range; ask for 1 to 5000 lines"),
        ));
    }
    if !q.follow {
        let (lines, next) = ctx
            .state
            .logs(&id, q.offset, limit)
            .map_err(|e| ApiError::internal("the log could not be read", e))?;
        return Ok(Json(LogPage { lines, next_offset: next }).into_response());
    }
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(256);
    let mut events = ctx.state.subscribe();
    let state = ctx.state.clone();
    tokio::spawn(async move {
        let mut next = q.offset;
        // Catch up from the store, then follow the broadcast; after a lag, read
        // the store again from where we were.
        'catch_up: loop {
            loop {
                let Ok((lines, after)) = state.logs(&id, next, 500) else { return };
                if lines.is_empty() {
                    break;
                }
                for line in lines {
                    let Ok(event) = SseEvent::default().event("log").json_data(&line) else { continue };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                next = after;
            }
            loop {
                match events.recv().await {
                    Ok(Event::Log { deployment, line }) if deployment == id => {
                        if line.seq < next {
                            continue;
                        }
                        next = line.seq + 1;
                        let Ok(event) = SseEvent::default().event("log").json_data(&line) else { continue };
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn events(AxumState(ctx): AxumState<ApiContext>) -> Response {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(256);
    let mut events = ctx.state.subscribe();
    let mut replication = ctx.replication.watch();
    tokio::spawn(async move {
        let mut shown = replication_status(&ctx);
        loop {
            let event = tokio::select! {
                changed = replication.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = replication_status(&ctx);
                    if now == shown {
                        continue;
                    }
                    shown = now;
                    SseEvent::default().event("replication").json_data(&shown)
                }
                next = events.recv() => match next {
                    Ok(Event::Deployment(d)) => SseEvent::default().event("deployment").json_data(&d),
                    Ok(Event::Node(n)) => {
                        // A node coming or going can change the replication status too.
                        let now = replication_status(&ctx);
                        if now != shown {
                            shown = now;
                            if let Ok(e) = SseEvent::default().event("replication").json_data(&shown) {
                                if tx.send(Ok(e)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        SseEvent::default().event("node").json_data(&n)
                    }
                    Ok(Event::Log { .. }) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "an event stream fell behind");
                        SseEvent::default().event("lagged").json_data(json!({ "missed": n }))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let Ok(event) = event else { continue };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of this API (see [`crate::openapi`]).
pub fn openapi_document() -> serde_json::Value {
    crate::openapi::document()
}
