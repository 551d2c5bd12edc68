//! `/ping` (who answers: discovery reads it) and `/health` (liveness), on
//! the orchestrator and, in a smaller router of their own, on worker-only
//! nodes.

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::client::dto::{Health, PingAnswer};
use crate::node::GenericNode;

use super::error::ApiError;
use super::ApiContext;

/// Who answers: the service, its version, the node and its epoch.
#[utoipa::path(
    get,
    path = "/ping",
    tag = "platform",
    operation_id = "ping",
    responses((status = 200, description = "the node answers", body = PingAnswer))
)]
pub(super) async fn ping(AxumState(ctx): AxumState<ApiContext>) -> Json<PingAnswer> {
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

/// Liveness of this node.
#[utoipa::path(
    get,
    path = "/health",
    tag = "platform",
    operation_id = "health",
    responses((status = 200, description = "alive", body = Health))
)]
pub(super) async fn health(AxumState(ctx): AxumState<ApiContext>) -> Json<Health> {
    Json(Health {
        ok: true,
        node_id: ctx.node.id.clone(),
        role: "orchestrator".into(),
        epoch: ctx.node.epoch(),
    })
}

/// The small API of a worker-only node: `/ping` (which names its
/// orchestrator, so discovery can follow it) and `/health`.
pub fn worker_router(node: GenericNode) -> Router {
    Router::new()
        .route("/ping", get(worker_ping))
        .route("/health", get(worker_health))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "this is a worker node; the platform's API and UI are on its orchestrator (see /ping)",
            )
        })
        .with_state(node)
}

async fn worker_ping(AxumState(n): AxumState<GenericNode>) -> Json<PingAnswer> {
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

async fn worker_health(AxumState(n): AxumState<GenericNode>) -> Json<Health> {
    Json(Health { ok: true, node_id: n.id.clone(), role: "worker".into(), epoch: n.epoch() })
}
