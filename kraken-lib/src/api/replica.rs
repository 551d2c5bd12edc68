//! The replica for the rollover candidate: a stream of the whole state and
//! then every durable change (`GET /api/v1/replica`), and the candidate's
//! confirmations of what it stored (`POST /api/v1/replica/ack`). Both need
//! the join token and the candidate's signed proof that it is the node this
//! orchestrator named.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

use crate::auth::{proof, TokenHash};
use crate::client::dto::{ErrorBody, ReplicaAck, Snapshot};
use crate::state::{Change, State};

use super::auth::bearer;
use super::error::{ApiError, ApiResult, BodyErrors};
use super::ApiContext;

/// The query of the replica stream.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplicaQuery {
    /// The candidate's node id (it must match the proof's).
    #[serde(default)]
    pub node: String,
}

/// Streams the state to a rollover candidate: a `snapshot` event, then a
/// `deployment` or `node` event with the full record for every durable
/// change, its version as the event's `id`. The candidate confirms what it
/// stored with `POST /api/v1/replica/ack`. Needs the join token as the bearer
/// token and the proof that the caller is the rollover candidate this
/// orchestrator named (every joined machine holds the join token).
#[utoipa::path(
    get,
    path = "/api/v1/replica",
    tag = "replication",
    operation_id = "replica",
    security(("join_token" = [], "node_proof" = [])),
    params(ReplicaQuery),
    responses(
        (status = 200, description = "server-sent events: `snapshot` (a Snapshot), then `deployment` (a Deployment) and `node` (a NodeRecord), each with its version as the event id",
            content((String = "text/event-stream"))),
        (status = 401, description = "the join token is missing or wrong", body = ErrorBody),
        (status = 403, description = "the caller is not this platform's rollover candidate, or its proof is missing or not valid", body = ErrorBody),
        (status = 409, description = "this platform has one machine: there is nothing to replicate to", body = ErrorBody),
    )
)]
pub(super) async fn replica(
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

/// A rollover candidate confirms what it stored. `404` when its session was
/// cut off: it should reconnect.
#[utoipa::path(
    post,
    path = "/api/v1/replica/ack",
    tag = "replication",
    operation_id = "replicaAck",
    security(("join_token" = [], "node_proof" = [])),
    request_body = ReplicaAck,
    responses(
        (status = 204, description = "confirmed"),
        (status = 401, description = "the join token is missing or wrong", body = ErrorBody),
        (status = 403, description = "the caller is not this platform's rollover candidate, or its proof is missing or not valid", body = ErrorBody),
        (status = 404, description = "no such replica session (it ended); open the replica stream again", body = ErrorBody),
        (status = 409, description = "this platform has one machine: there is nothing to replicate to", body = ErrorBody),
        BodyErrors,
    )
)]
pub(super) async fn replica_ack(
    AxumState(ctx): AxumState<ApiContext>,
    headers: HeaderMap,
    body: Result<Json<ReplicaAck>, JsonRejection>,
) -> ApiResult<StatusCode> {
    candidate_checked(&ctx, &headers)?;
    let Json(ack) = body?;
    if ctx.replication.ack(&ack.session, ack.version, ctx.state.version()) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such replica session (it ended); open the replica stream again",
        ))
    }
}

/// Checks that the request comes from this platform's rollover candidate: it
/// carries the join token and the proof (both looked for first; the token
/// itself is checked on a platform of several machines only), signed with
/// the node key the candidate registered when it joined, that it is the node
/// this orchestrator named as its candidate (every joined machine holds the
/// join token). Returns the candidate's node id and the join token's hash.
fn candidate_checked(ctx: &ApiContext, headers: &HeaderMap) -> ApiResult<(String, TokenHash)> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the replica stream needs the join token as `Authorization: Bearer <join token>`",
        ));
    };
    let Some(proof) = headers.get(proof::HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the replica goes only to the rollover candidate, which shows its proof in the `{}` header",
                proof::HEADER
            ),
        ));
    };
    let Some(info) = &ctx.join else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this platform has one machine; there is nothing to replicate to",
        ));
    };
    if !info.token.matches(token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the replica stream needs the join token as `Authorization: Bearer <join token>`",
        ));
    }
    let state = &ctx.state;
    let asking = proof::check_replica_proof(proof, Utc::now().timestamp(), |id| {
        state.node(id).and_then(|n| n.public_key)
    })
    .map_err(|why| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the replica goes only to the rollover candidate: {why}"),
        )
    })?;
    if state.node(&asking).is_none_or(|n| n.rollover_priority != 1) {
        warn!(node = %asking, "a node that is not the rollover candidate asked for the replica");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "node `{asking}` is not this platform's rollover candidate; the replica goes only to the candidate"
            ),
        ));
    }
    Ok((asking, info.token.clone()))
}

/// The broker the platform started itself, as the state keeps it.
fn broker_info(state: &State) -> Option<(String, u16, String, String)> {
    let get = |k: &str| state.meta(k).ok().flatten();
    Some((
        get("broker_image")?,
        get("broker_port")?.parse().ok()?,
        get("broker_user")?,
        get("broker_password")?,
    ))
}
