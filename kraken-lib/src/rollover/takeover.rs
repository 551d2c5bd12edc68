//! The primary candidate's takeover, in steps that can fail and be tried again.
//!
//! Nothing another node can see changes before the new orchestrator can
//! serve: the replica stays where it is, the epoch is decided once and only
//! written to the replica, the orchestration executor is set up (its bus
//! subscriptions made) — and only then are the epoch raised, the full API
//! switched on and the other nodes told. A step that fails undoes what the
//! attempt prepared (the subscriptions are dropped, so the broker hands their
//! unacknowledged messages to the next consumer) and the attempt is made
//! again after a back-off (250 ms doubling to 5 s), as long as the old
//! orchestrator stays silent. The steps, in order:
//!
//! 1. [`TakeoverStep::Broker`]: the bus reaches the broker; when the platform
//!    had started its broker itself and it died with the old orchestrator's
//!    machine, it is started again here (its port may be busy).
//! 2. [`TakeoverStep::Orchestrator`]: the orchestration executor is set up on
//!    the replica.
//! 3. [`TakeoverStep::State`]: the replica records the new epoch, this node as
//!    orchestrator and the old one as down.
//! 4. [`TakeoverStep::Serve`]: the full API and UI are built; then the node's
//!    epoch is raised and they are switched on (this cannot fail).
//! 5. [`TakeoverStep::Announce`]: every node is told on its work queue. A node
//!    that misses it finds the new orchestrator by asking the nodes it knew,
//!    so a failure here is logged, not undone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::TakeoverKit;
use crate::api::JoinInfo;
use crate::auth::TokenHash;
use crate::bus::{Body, Channel, WorkRequest};
use crate::executor::Executor;
use crate::node::GenericNode;
use crate::orchestrator::OrchestrationExecutor;
use crate::retry::Backoff;
use crate::role::OrchestratorRole;
use crate::state::{Role, State};

/// One step of a takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TakeoverStep {
    /// Reaching the broker (starting the platform's own broker again if needed).
    Broker,
    /// Setting up the orchestration executor on the replica.
    Orchestrator,
    /// Recording the takeover in the replica.
    State,
    /// Building and switching on the full API.
    Serve,
    /// Telling the other nodes.
    Announce,
}

impl std::fmt::Display for TakeoverStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TakeoverStep::Broker => "reaching the broker",
            TakeoverStep::Orchestrator => "starting the orchestrator",
            TakeoverStep::State => "recording the takeover in the replica",
            TakeoverStep::Serve => "serving the platform's API",
            TakeoverStep::Announce => "telling the other nodes",
        })
    }
}

/// Faults to inject into takeovers, for tests of their recovery: called
/// before each step, an `Err` makes that step fail with it.
pub type TakeoverFaults = Arc<dyn Fn(TakeoverStep) -> Result<(), InjectedFault> + Send + Sync>;

/// A fault injected into a takeover step ([`TakeoverFaults`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InjectedFault {
    /// What the step is to fail with.
    pub message: String,
}

impl InjectedFault {
    /// A fault failing a step with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// Why a takeover attempt failed.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed: {cause}")]
pub struct TakeoverError {
    /// The step that failed.
    pub step: TakeoverStep,
    /// Why.
    #[source]
    pub cause: TakeoverCause,
}

/// What made a takeover step fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TakeoverCause {
    /// A fault a test injected ([`TakeoverFaults`]).
    #[error("{0}")]
    Injected(#[source] InjectedFault),
    /// The broker is unreachable and the platform did not start it, so it
    /// cannot be started here either.
    #[error("the broker is unreachable and the platform did not start it; waiting for it to come back")]
    ForeignBrokerGone,
    /// The platform's broker could not be started again here.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The bus could not be pointed at the broker started here.
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// The broker started here did not accept connections in time.
    #[error("the broker started here did not accept connections within {0:?}")]
    BrokerSilent(Duration),
    /// The orchestration executor could not be set up on the replica.
    #[error(transparent)]
    Setup(#[from] crate::executor::SetupFailure),
    /// The replica could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The replica holds no hash of a token: it never received a snapshot.
    #[error("the replica holds no `{0}`; it never received a snapshot")]
    NoTokenHash(String),
    /// A token's hash in the replica cannot be read.
    #[error("the replica's `{key}`: {source}")]
    BadTokenHash {
        /// The replica's key.
        key: String,
        /// Why it cannot be read.
        #[source]
        source: crate::auth::AuthError,
    },
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the broker step waits for a broker it started to accept connections.
const BROKER_WAIT: Duration = Duration::from_secs(60);

/// A takeover under way: what stays the same from one attempt to the next.
#[derive(Debug)]
pub(crate) struct Takeover {
    /// The epoch this takeover leads with, decided at the first attempt.
    pub(crate) epoch: u64,
    /// The orchestrator the replica came from.
    previous: Option<String>,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    backoff: Backoff,
    /// When the next attempt may start.
    pub(crate) next_attempt: Instant,
}

impl Takeover {
    /// A takeover with the replica in `state`, from a node at `node_epoch`.
    pub(crate) fn begin(state: &State, node_epoch: u64) -> Self {
        let known: u64 = state.meta("epoch").ok().flatten().and_then(|e| e.parse().ok()).unwrap_or(1);
        Self {
            epoch: known.max(node_epoch) + 1,
            previous: state.meta("orchestrator_id").ok().flatten(),
            attempts: 0,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            next_attempt: Instant::now(),
        }
    }

    /// Schedules the next attempt after a failure.
    pub(crate) fn failed(&mut self, error: &TakeoverError) {
        let pause = self.backoff.next_pause();
        warn!(attempt = self.attempts, retry_in = ?pause, %error, "the takeover failed; nothing was changed, trying again");
        self.next_attempt = Instant::now() + pause;
    }

    /// One attempt. On success the returned orchestration executor is set up
    /// and this node serves as the orchestrator; on failure nothing another
    /// node can see has changed.
    pub(crate) async fn attempt(
        &mut self,
        node: &mut GenericNode,
        state: &State,
        kit: &mut TakeoverKit,
    ) -> Result<OrchestrationExecutor, TakeoverError> {
        self.attempts += 1;
        let faults = kit.faults.clone();
        let check = |step: TakeoverStep| match &faults {
            Some(f) => f(step).map_err(|fault| TakeoverError { step, cause: TakeoverCause::Injected(fault) }),
            None => Ok(()),
        };
        check(TakeoverStep::Broker)?;
        reach_broker(node, state, kit).await?;

        check(TakeoverStep::Orchestrator)?;
        // The same role a platform starting as orchestrator puts together.
        let role = OrchestratorRole::new(state.clone(), kit.registry.clone(), kit.ui.clone());
        let mut leader = role.executor();
        leader
            .setup(node)
            .await
            .map_err(|e| TakeoverError { step: TakeoverStep::Orchestrator, cause: e.into() })?;

        check(TakeoverStep::State)?;
        let (token, join_token) =
            self.record(node, state).map_err(|cause| TakeoverError { step: TakeoverStep::State, cause })?;

        check(TakeoverStep::Serve)?;
        // The replica holds the tokens' hashes only: enough to check them.
        let join = JoinInfo { token: join_token, amqp_url: kit.amqp_url.clone() };
        let app = role.api(node, token, Some(join));
        // The point of no return: from here on this node leads.
        node.set_epoch(self.epoch);
        node.set_rollover_priority(0);
        node.set_replica_ready(false);
        node.set_orchestrator(Some(node.api_address()));
        // This node's worker takes work from this node from now on.
        node.update_trust(|t| {
            t.orchestrator = node.public_key();
            t.candidate = None;
        });
        kit.switch.set(app);
        info!(epoch = self.epoch, address = %node.api_address(), previous = ?self.previous, attempts = self.attempts, "took over as the platform's orchestrator");

        match check(TakeoverStep::Announce) {
            Ok(()) => self.announce(node, state).await,
            Err(e) => {
                warn!(error = %e, "could not tell the other nodes; they find the new orchestrator themselves")
            }
        }
        Ok(leader)
    }

    /// Writes the takeover into the replica (each write repeats harmlessly on
    /// the next attempt); returns the hashes of the platform and join tokens.
    fn record(&self, node: &GenericNode, state: &State) -> Result<(TokenHash, TokenHash), TakeoverCause> {
        let e = TakeoverCause::State;
        state.set_meta("epoch", &self.epoch.to_string()).map_err(e)?;
        if let Some(old) = self.previous.as_deref().filter(|old| *old != node.id) {
            state
                .update_node(old, |n| {
                    let changed = n.role != Role::Worker || n.up;
                    n.role = Role::Worker;
                    n.up = false;
                    changed
                })
                .map_err(e)?;
        }
        state
            .update_node(&node.id, |n| {
                let changed = n.role != Role::Orchestrator || n.rollover_priority != 0;
                n.role = Role::Orchestrator;
                n.rollover_priority = 0;
                changed
            })
            .map_err(e)?;
        state.set_meta("orchestrator_id", &node.id).map_err(e)?;
        let hash = |key: &str| -> Result<TokenHash, TakeoverCause> {
            let text = state.meta(key)?.ok_or_else(|| TakeoverCause::NoTokenHash(key.to_string()))?;
            text.parse().map_err(|source| TakeoverCause::BadTokenHash { key: key.to_string(), source })
        };
        Ok((hash("token_hash")?, hash("join_token_hash")?))
    }

    async fn announce(&self, node: &GenericNode, state: &State) {
        let address = node.api_address();
        for n in state.nodes() {
            if n.id == node.id || Some(&n.id) == self.previous.as_ref() {
                continue;
            }
            let work = Body::Work(WorkRequest::Orchestrator { epoch: self.epoch, address: address.clone() });
            if let Err(e) = node.publish(&Channel::Work(n.id.clone()), work).await {
                warn!(node = %n.id, error = %e, "could not announce the new orchestrator");
            }
        }
    }
}

/// Makes sure the bus reaches a broker: when the platform started its broker
/// itself and it is gone, starts it again here (same credentials) and points
/// this node's bus and the join answers at it.
async fn reach_broker(node: &GenericNode, state: &State, kit: &mut TakeoverKit) -> Result<(), TakeoverError> {
    let fail = |cause: TakeoverCause| TakeoverError { step: TakeoverStep::Broker, cause };
    let Some(amqp) = kit.amqp.clone() else { return Ok(()) };
    if amqp.is_connected() {
        return Ok(());
    }
    let get = |k: &str| state.meta(k).ok().flatten();
    let (Some(image), Some(port)) =
        (get("broker_image"), get("broker_port").and_then(|p| p.parse::<u16>().ok()))
    else {
        return Err(fail(TakeoverCause::ForeignBrokerGone));
    };
    let urls = crate::broker::start(state, kit.runtime.as_ref(), &image, port, &node.id, &node.config)
        .await
        .map_err(|e| fail(e.into()))?;
    if *kit.amqp_url != *urls.advertised {
        amqp.redirect(&urls.local).await.map_err(|e| fail(e.into()))?;
        kit.amqp_url = Arc::from(urls.advertised.as_str());
    }
    match tokio::time::timeout(BROKER_WAIT, amqp.wait_connected()).await {
        Ok(true) => {
            info!("started the platform's broker on this machine");
            Ok(())
        }
        _ => Err(fail(TakeoverCause::BrokerSilent(BROKER_WAIT))),
    }
}
