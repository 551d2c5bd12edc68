//! What the API's handlers share: the state, the builders, the node serving
//! the API, the token hashes, and the copies of the deployment list and of
//! each deployment's record, encoded once per change for the read calls.

use std::sync::Arc;

use crate::auth::TokenHash;
use crate::builder::BuilderRegistry;
use crate::node::GenericNode;
use crate::rollover::replication::Replication;
use crate::state::State;

use super::detail_cache::DetailCache;
use super::list_cache::ListCache;

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
    /// The list of deployments as last encoded, with the state's version then.
    pub(super) list: ListCache,
    /// Each deployment's record as last encoded, with the mark of its content.
    pub(super) details: DetailCache,
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
        Self {
            state,
            registry,
            node,
            token,
            join: None,
            replication,
            list: ListCache::default(),
            details: DetailCache::default(),
        }
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
