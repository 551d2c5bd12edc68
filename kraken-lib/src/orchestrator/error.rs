//! Why something the orchestrator does failed: typed, with the cause kept as
//! the source, so the loop can choose between logging, setting up again and
//! stepping down, and a library user can match on it.

use crate::bus::BusError;
use crate::state::StateError;

/// Why an orchestrator action or round failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// Subscribing to one of the channels the orchestrator reads failed.
    #[error("cannot subscribe to {channel}")]
    Subscribe {
        /// The channel.
        channel: String,
        /// What the bus said.
        #[source]
        source: BusError,
    },
    /// One of its subscriptions closed (the bus connection was lost).
    #[error("a bus subscription closed")]
    SubscriptionClosed,
    /// `execute` was called before `setup` succeeded.
    #[error("the orchestrator is not set up")]
    NotSetUp,
    /// Storing a change about a deployment or node in the state failed.
    #[error("could not store a change to {what}")]
    Store {
        /// The deployment or node.
        what: String,
        /// What the state said.
        #[source]
        source: StateError,
    },
    /// Sending work to a node failed.
    #[error("could not send work for deployment {deployment} to node {node}")]
    Send {
        /// The deployment.
        deployment: String,
        /// The node.
        node: String,
        /// What the bus said.
        #[source]
        source: BusError,
    },
    /// A node speaks for a newer epoch than this orchestrator's: another
    /// orchestrator leads the platform, and this one steps down.
    #[error(
        "node {from} speaks for epoch {epoch} but this orchestrator has epoch {ours}: another orchestrator leads the platform; \
         stepping down (start this agent again to join it as a worker)"
    )]
    Superseded {
        /// The node (the rollover candidate this orchestrator named).
        from: String,
        /// Its epoch.
        epoch: u64,
        /// This orchestrator's epoch.
        ours: u64,
    },
}
