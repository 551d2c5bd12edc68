//! The orchestrator's side of synchronous replication in the API: waiting
//! for the rollover candidate's confirmation before a change is
//! acknowledged, and the replication status the platform shows.

use crate::rollover::replication::{Confirmed, ReplicationStatus};

use super::ApiContext;

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
