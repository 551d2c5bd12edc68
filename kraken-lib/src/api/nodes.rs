//! The node calls: the list of nodes, and draining a node (nothing new is
//! placed on it and its deployments move elsewhere) or letting it take
//! work again.

use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::Json;

use crate::client::dto::{Drained, ErrorBody};
use crate::state::NodeRecord;

use super::auth::Authorized;
use super::error::{ApiError, ApiResult};
use super::replication::replicated;
use super::ApiContext;

/// Every node with its role, address, statistics, history, deployments,
/// heartbeat and rollover priority.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "nodes",
    operation_id = "listNodes",
    responses((status = 200, description = "every node, by id", body = Vec<NodeRecord>))
)]
pub(super) async fn nodes(AxumState(ctx): AxumState<ApiContext>) -> Json<Vec<NodeRecord>> {
    Json(ctx.state.nodes())
}

/// Places nothing new on a node and moves its deployments elsewhere.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{id}/drain",
    tag = "nodes",
    operation_id = "drainNode",
    security(("token" = [])),
    params(("id" = String, Path, description = "the node's id")),
    responses(
        (status = 202, description = "drained", body = Drained),
        (status = 401, description = "the platform token is missing or wrong", body = ErrorBody),
        (status = 404, description = "no such node", body = ErrorBody),
        (status = 500, description = "the change could not be stored", body = ErrorBody),
    )
)]
pub(super) async fn drain_node(
    _: Authorized,
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Drained>)> {
    set_drained(&ctx, &id, true).await
}

/// Lets a drained node take deployments again.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{id}/undrain",
    tag = "nodes",
    operation_id = "undrainNode",
    security(("token" = [])),
    params(("id" = String, Path, description = "the node's id")),
    responses(
        (status = 202, description = "undrained", body = Drained),
        (status = 401, description = "the platform token is missing or wrong", body = ErrorBody),
        (status = 404, description = "no such node", body = ErrorBody),
        (status = 500, description = "the change could not be stored", body = ErrorBody),
    )
)]
pub(super) async fn undrain_node(
    _: Authorized,
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Drained>)> {
    set_drained(&ctx, &id, false).await
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
