//! The roles an agent plays, and how the orchestrator's role is put
//! together: its executor on a state, and the API (with the web interface
//! beside it) that serves that state.
//!
//! A platform assembles the orchestrator's role when it starts as one; a
//! rollover candidate assembles the same role from its replica when it takes
//! over. Both go through [`OrchestratorRole`], so the two cannot drift apart.

use axum::Router;

use crate::api::{self, ApiContext, JoinInfo};
use crate::auth::TokenHash;
use crate::builder::BuilderRegistry;
use crate::node::GenericNode;
use crate::orchestrator::OrchestrationExecutor;
use crate::state::State;

/// Which executors an agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeRole {
    /// Orchestrator and worker in one agent.
    Combined,
    /// Only the orchestrator (no apps run on this machine).
    Orchestrator,
    /// Only a worker of the platform whose orchestrator answers at `orchestrator`.
    Worker {
        /// The orchestrator's API address.
        orchestrator: String,
    },
}

/// The orchestrator's pieces on one state: the orchestration executor and
/// the API serving the state, with the web interface merged beside it.
///
/// # Examples
/// ```no_run
/// # fn run(state: kraken_lib::state::State, node: kraken_lib::node::GenericNode,
/// #        token: kraken_lib::auth::TokenHash) {
/// use kraken_lib::builder::{BaseImages, BuilderRegistry};
/// use kraken_lib::role::OrchestratorRole;
///
/// let role = OrchestratorRole::new(state, BuilderRegistry::with_builtins(BaseImages::defaults()), None);
/// let executor = role.executor();
/// let app = role.api(&node, token, None);
/// # let _ = (executor, app);
/// # }
/// ```
#[derive(Clone)]
pub struct OrchestratorRole {
    state: State,
    registry: BuilderRegistry,
    ui: Option<Router>,
}

impl std::fmt::Debug for OrchestratorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorRole").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl OrchestratorRole {
    /// The role on `state`, building with `registry`, serving `ui` beside the API.
    pub fn new(state: State, registry: BuilderRegistry, ui: Option<Router>) -> Self {
        Self { state, registry, ui }
    }

    /// A new orchestration executor on the role's state.
    pub fn executor(&self) -> OrchestrationExecutor {
        OrchestrationExecutor::new(self.state.clone(), self.registry.clone())
    }

    /// The API for `node` (checking the platform token against `token`, and
    /// letting nodes join when `join` is given), with the web interface.
    pub fn api(&self, node: &GenericNode, token: TokenHash, join: Option<JoinInfo>) -> Router {
        let mut ctx = ApiContext::new(self.state.clone(), self.registry.clone(), node.clone(), token);
        if let Some(join) = join {
            ctx = ctx.with_join(join);
        }
        let app = api::router(ctx);
        match &self.ui {
            Some(ui) => app.merge(ui.clone()),
            None => app,
        }
    }
}
