//! A machine joining the platform as a worker: it shows the join token and
//! its key, and gets the broker's address and the orchestrator's key.

use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::Json;
use tracing::warn;

use crate::auth::PublicKey;
use crate::client::dto::{ErrorBody, JoinAnswer, JoinRequest};
use crate::deployment::is_web_address;
use crate::state::{KeyConflict, Role};

use super::error::{ApiError, ApiResult, BodyErrors};
use super::ApiContext;

/// Joins the platform as a worker (the join token is in the body).
#[utoipa::path(
    post,
    path = "/api/v1/join",
    tag = "nodes",
    operation_id = "join",
    request_body = JoinRequest,
    responses(
        (status = 200, description = "the broker URL, the orchestrator and its key", body = JoinAnswer),
        (status = 401, description = "the join token is wrong", body = ErrorBody),
        (status = 409, description = "this platform cannot be joined, or the node id joined before with another key", body = ErrorBody),
        (status = 422, description = "the node id, name, address or key is not acceptable", body = ErrorBody),
        (status = 500, description = "the joining node could not be stored", body = ErrorBody),
        BodyErrors,
    )
)]
pub(super) async fn join(
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
