//! The orchestrator's side of synchronous replication in the API: the
//! candidate's confirmations (`POST /api/v1/replica/ack`), waiting for them
//! before a change is acknowledged, and the replication status the platform
//! shows.

use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use chrono::Utc;
use tracing::warn;

use super::{bearer, ApiContext, ApiError, ApiResult, ReplicaAck};
use crate::auth::{proof, TokenHash};
use crate::rollover::replication::{Confirmed, ReplicationStatus};

/// Checks that the request comes from this platform's rollover candidate: it
/// carries the join token (several machines only) and the proof, signed with
/// the node key the candidate registered when it joined, that it is the node
/// this orchestrator named as its candidate (every joined machine holds the
/// join token). Returns the candidate's node id and the join token's hash.
pub(super) fn candidate_checked(ctx: &ApiContext, headers: &HeaderMap) -> ApiResult<(String, TokenHash)> {
    let Some(info) = &ctx.join else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this platform has one machine; there is nothing to replicate to",
        ));
    };
    if !info.token.matches(bearer(headers).unwrap_or_default()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the replica stream needs the join token as `Authorization: Bearer <join token>`",
        ));
    }
    let proof = headers.get(proof::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
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

/// A rollover candidate confirms what it stored. `404` when its session was
/// cut off: it should reconnect.
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

/// Waits until the rollover candidate holds the change just stored (at most
/// the replication timeout) and says whether it does.
pub(super) async fn replicated(ctx: &ApiContext) -> bool {
    match ctx.replication.confirm(ctx.state.version()).await {
        Confirmed::Replicated => true,
        Confirmed::Local(why) => {
            tracing::debug!(%why, "a change acknowledged without a copy");
            false
        }
    }
}

/// The replication status, judged with the nodes that are up now.
pub(super) fn replication_status(ctx: &ApiContext) -> ReplicationStatus {
    let others_up = ctx.join.is_some() && ctx.state.nodes().iter().any(|n| n.up && n.id != ctx.node.id);
    ctx.replication.status(others_up)
}
