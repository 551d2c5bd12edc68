//! The orchestrator's side of synchronous replication in the API: the
//! candidate's confirmations (`POST /api/v1/replica/ack`), waiting for them
//! before a change is acknowledged, and the replication status the platform
//! shows.

use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{bearer, same, ApiContext, ApiError, ApiResult};
use crate::rollover::replication::{Confirmed, ReplicationStatus};

/// Checks that the request carries the join token (several machines only).
pub(super) fn join_token_checked(ctx: &ApiContext, headers: &HeaderMap) -> ApiResult<()> {
    let Some(info) = &ctx.join else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this platform has one machine; there is nothing to replicate to",
        ));
    };
    if !same(bearer(headers).unwrap_or_default().as_bytes(), info.token.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the replica stream needs the join token as `Authorization: Bearer <join token>`",
        ));
    }
    Ok(())
}

/// The body of `POST /api/v1/replica/ack`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAck {
    /// The session of the stream (from its snapshot).
    pub session: String,
    /// Every change up to this version is stored.
    pub version: u64,
}

/// A rollover candidate confirms what it stored. `404` when its session was
/// cut off: it should reconnect.
pub(super) async fn replica_ack(
    AxumState(ctx): AxumState<ApiContext>,
    headers: HeaderMap,
    body: Result<Json<ReplicaAck>, JsonRejection>,
) -> ApiResult<StatusCode> {
    join_token_checked(&ctx, &headers)?;
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
