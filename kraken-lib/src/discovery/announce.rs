//! A node's mDNS announcement, kept true to what the node is.
//!
//! [`announce_node`] announces a node as [`SERVICE_TYPE`](super::SERVICE_TYPE)
//! with its role (`orchestrator` or `worker`), the epoch it knows and the
//! orchestrator it follows, and announces again whenever one of them changes:
//! a worker that follows a new orchestrator names it, and a node that takes
//! over announces itself as the orchestrator with the new epoch. A machine
//! that joins later finds the platform through any of its nodes.

use tracing::{info, warn};

use super::{Advertisement, Advertiser};
use crate::node::GenericNode;

/// What `node` is right now, as an announcement.
pub fn advertisement_of(node: &GenericNode) -> Advertisement {
    let orchestrator = node.orchestrator();
    Advertisement {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        role: if node.is_orchestrator() { "orchestrator" } else { "worker" }.to_string(),
        epoch: node.epoch(),
        port: node.config.listen.port(),
        orchestrator,
    }
}

/// Announces `node` over mDNS until it stops, announcing again whenever its
/// role, epoch or orchestrator changes. When mDNS cannot start, says so in the
/// log and returns: other machines can still join with `--join`.
pub async fn announce_node(node: GenericNode) {
    let mut changes = node.leadership_changes();
    let mut advertiser = match Advertiser::start(advertisement_of(&node)) {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "could not announce this node on the LAN; other machines can still join with --join");
            return;
        }
    };
    loop {
        tokio::select! {
            () = node.shutdown.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
        let next = advertisement_of(&node);
        if next == *advertiser.advertisement() {
            continue;
        }
        match advertiser.update(&next.role, next.epoch, next.orchestrator.as_deref()) {
            Ok(()) => {
                info!(role = %next.role, epoch = next.epoch, orchestrator = ?next.orchestrator, "announcing this node's new role on the LAN")
            }
            Err(e) => warn!(error = %e, "could not announce this node's new role"),
        }
    }
    advertiser.shutdown().await;
}
