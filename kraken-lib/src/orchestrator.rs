//! The orchestration executor: drives every deployment through its lifecycle,
//! places work on the least-loaded node, and reconciles what it wants with
//! what the workers report.
//!
//! Decisions and effects are apart. Each decision is a pure function of what
//! the orchestrator knows, unit-tested on its own: a reconciliation pass, the
//! choice of a node, what to do about work a node lost, whether to take a
//! message in or step down (see [Phases](#phases)). They return actions; a
//! thin loop here applies them (state writes, work on the bus).
//!
//! The loop wakes on a new request (the API notifies the state), on a
//! message from a worker, on the end of a repository fetch it started, and at
//! least once a second to check node health and repair what a lost message
//! broke. Each pass is idempotent: it compares the desired state of each
//! deployment with the observed one and acts on the difference.
//!
//! # Phases
//!
//! - `reconcile`: one pass as a pure function from (deployments, nodes,
//!   time, what was sent) to actions and when to pass again.
//! - `placement`: the least-loaded node that can take new work.
//! - `retrieval`: reading a repository (through [`crate::retrieval`]) in a
//!   task of its own and handing the deployment on once it is read.
//! - `reports`: what workers report; work a node lost is judged by `resume`.
//! - `resume`: what to do about a deployment its node's report does not
//!   account for.
//! - `fencing`: which messages are taken in, and when to step down;
//!   `intake` applies it to what comes off the bus (status reports stored
//!   in batches).
//! - `actions`: the actions and the code that applies them.
//! - `error`: [`OrchestratorError`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::warn;

use crate::builder::BuilderRegistry;
use crate::bus::{Channel, Subscription};
use crate::deployment::DeploymentId;
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::node::GenericNode;
use crate::state::State;

mod actions;
mod error;
mod fencing;
mod intake;
mod placement;
mod reconcile;
mod reports;
mod resume;
mod retrieval;
#[cfg(test)]
mod testing;

pub use error::OrchestratorError;

use actions::{Action, Sent};
use reconcile::{reconcile, Health, Observed};
use retrieval::RetrievalDone;

/// At most this many status reports are taken in (and stored) together.
const REPORT_BATCH: usize = 512;

/// How long a stopping orchestrator waits for the log sinks publishing at
/// that moment.
const LOG_GATE_WAIT: Duration = Duration::from_secs(5);

/// A pass this much later than planned means the orchestrator itself was held up.
const STALL: Duration = Duration::from_millis(500);

/// After the bus was down or this orchestrator started, how long nodes get
/// beyond the grace to (re)connect (the bus's longest pause between two
/// reconnection attempts).
const RECONNECT_ALLOWANCE: Duration = Duration::from_secs(5);

/// The orchestrator role of a node.
pub struct OrchestrationExecutor {
    state: State,
    registry: BuilderRegistry,
    subs: Option<[Subscription; 3]>,
    done_tx: mpsc::UnboundedSender<RetrievalDone>,
    done_rx: mpsc::UnboundedReceiver<RetrievalDone>,
    retrieving: HashSet<DeploymentId>,
    /// When work for a deployment was last sent.
    sent: HashMap<DeploymentId, Sent>,
    /// The current run of each node's agent, as its last report said.
    instances: HashMap<String, String>,
    started: Instant,
    /// Since when nodes could report: this orchestrator's start, or the end of the last bus outage.
    quiet_since: Instant,
    next_pass: Instant,
}

impl std::fmt::Debug for OrchestrationExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestrationExecutor").field("state", &self.state).finish_non_exhaustive()
    }
}

impl OrchestrationExecutor {
    /// An orchestrator keeping its state in `state` and validating apps with
    /// `registry`. Hand it to the node runner as one of the node's executors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use kraken_lib::builder::{BaseImages, BuilderRegistry};
    /// use kraken_lib::orchestrator::OrchestrationExecutor;
    /// use kraken_lib::state::{State, StateLimits};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let state = State::open(std::path::Path::new("/var/lib/kraken/state"), StateLimits::default())?;
    /// let orchestrator = OrchestrationExecutor::new(state, BuilderRegistry::with_builtins(BaseImages::defaults()));
    /// # let _ = orchestrator;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(state: State, registry: BuilderRegistry) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            state,
            registry,
            subs: None,
            done_tx,
            done_rx,
            retrieving: HashSet::new(),
            sent: HashMap::new(),
            instances: HashMap::new(),
            started: Instant::now(),
            quiet_since: Instant::now(),
            next_pass: Instant::now(),
        }
    }

    /// How the next pass is to judge node health: `None` while the bus is
    /// down (nobody can report; afterwards nodes get the whole grace period
    /// again, as they do after this orchestrator started, plus the time
    /// their own reconnection may take).
    fn health(&mut self, node: &GenericNode) -> Option<Health> {
        if !node.bus.is_connected() {
            self.quiet_since = Instant::now() + RECONNECT_ALLOWANCE;
            return None;
        }
        // Nor can nodes report to an orchestrator that was itself away (its
        // process stopped, its machine suspended): reports may wait unread. A
        // pass that comes much later than planned gives every node the grace
        // period again.
        let late = Instant::now().saturating_duration_since(self.next_pass);
        if late > STALL {
            warn!(late = ?late, "this orchestrator was held up; giving every node the grace period again");
            self.quiet_since = self.quiet_since.max(Instant::now());
        }
        let grace =
            chrono::Duration::from_std(node.config.node_grace).unwrap_or(chrono::Duration::seconds(10));
        let listened = chrono::Duration::from_std(self.quiet_since.elapsed()).unwrap_or_default();
        Some(Health { grace, listening_since: chrono::Utc::now() - listened })
    }

    /// One reconciliation pass: decide, then apply.
    async fn pass(&mut self, node: &GenericNode) {
        let health = self.health(node);
        let decision = reconcile(Observed {
            orchestrator: &node.id,
            deployments: self.state.deployments(),
            nodes: self.state.nodes(),
            sent: &self.sent,
            now: chrono::Utc::now(),
            instant: Instant::now(),
            health,
            allow_local_sources: node.config.allow_local_sources,
        });
        self.next_pass = Instant::now() + decision.requeue_after;
        // Placements are stored together (one durable commit for the pass);
        // every other action on its own, in the order decided.
        let mut places = Vec::new();
        for action in decision.actions {
            match action {
                Action::Place { deployment, node: target, message } => {
                    places.push((deployment, target, message))
                }
                other => self.apply(node, other).await,
            }
        }
        if !places.is_empty() {
            self.place_all(node, places).await;
        }
    }
}

#[async_trait::async_trait]
impl Executor for OrchestrationExecutor {
    fn name(&self) -> &str {
        "orchestrator"
    }

    async fn setup(&mut self, node: &mut GenericNode) -> Result<(), SetupFailure> {
        let sub = |c: Channel| {
            let bus = node.bus.clone();
            async move {
                bus.subscribe(&c).await.map_err(|source| {
                    SetupFailure::retry(format!("cannot subscribe to {c}"))
                        .caused_by(OrchestratorError::Subscribe { channel: c.to_string(), source })
                })
            }
        };
        let subs = [sub(Channel::Sysinfo).await?, sub(Channel::Deployment).await?, sub(Channel::Log).await?];
        self.subs = Some(subs);
        self.started = Instant::now();
        // Nodes may be starting again too (a whole machine rebooted): they get
        // the time to reconnect on top of the grace.
        self.quiet_since = Instant::now() + RECONNECT_ALLOWANCE;
        self.next_pass = Instant::now();
        self.state.notify();
        Ok(())
    }

    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        let Some([sysinfo, deployment, log]) = self.subs.as_mut() else {
            return Err(ExecutionFailure::reset("not set up").caused_by(OrchestratorError::NotSetUp));
        };
        let deadline = tokio::time::Instant::from_std(self.next_pass);
        enum Wake {
            Pass,
            Message(Channel, Option<crate::bus::Delivery>),
            Retrieved(Option<RetrievalDone>),
            Stop,
        }
        // Reports first: a pass that judges node health must not run while a
        // node's report waits here unread (say, after this loop was slow).
        let wake = tokio::select! {
            biased;
            () = node.shutdown.cancelled() => Wake::Stop,
            d = sysinfo.next() => Wake::Message(Channel::Sysinfo, d),
            d = deployment.next() => Wake::Message(Channel::Deployment, d),
            () = self.state.changed() => Wake::Pass,
            () = tokio::time::sleep_until(deadline) => Wake::Pass,
            r = self.done_rx.recv() => Wake::Retrieved(r),
            d = log.next() => Wake::Message(Channel::Log, d),
        };
        // Status reports waiting behind this one are taken in with it (one
        // durable commit for them all).
        let mut more = Vec::new();
        if matches!(wake, Wake::Message(Channel::Deployment, Some(_))) {
            while more.len() < REPORT_BATCH {
                match deployment.next().now_or_never() {
                    Some(Some(d)) => more.push(d),
                    _ => break,
                }
            }
        }
        let (channel, d) = match wake {
            Wake::Stop => {
                // The log batches this agent's workers count as published
                // are all on the bus once the gate is ours: store them, or
                // their lines would be neither stored nor sent again.
                // A sink may wait for room on the bus while it holds the
                // gate shared: take in meanwhile. The lock is fair, so no
                // sink starts publishing once this waits for it. A sink
                // stuck on an unreachable broker does not hold up the stop
                // for more than a few seconds.
                let gate = node.log_publishing.clone();
                let mut taking = std::pin::pin!(gate.write());
                let give_up = tokio::time::sleep(LOG_GATE_WAIT);
                tokio::pin!(give_up);
                let mut pending = Vec::new();
                let _gate = loop {
                    tokio::select! {
                        g = &mut taking => break Some(g),
                        Some(d) = log.next() => pending.push(d),
                        () = &mut give_up => {
                            warn!("a log sink is still publishing; stopping without its last lines");
                            break None;
                        }
                    }
                };
                while let Some(Some(d)) = log.next().now_or_never() {
                    pending.push(d);
                }
                return self.take_in_all(node, &Channel::Log, pending).await;
            }
            Wake::Retrieved(None) => return Ok(()),
            Wake::Pass => {
                self.pass(node).await;
                return Ok(());
            }
            Wake::Retrieved(Some(done)) => {
                self.on_retrieved(node, done).await;
                return Ok(());
            }
            Wake::Message(_, None) => {
                return Err(ExecutionFailure::reset("a bus subscription closed")
                    .caused_by(OrchestratorError::SubscriptionClosed))
            }
            Wake::Message(channel, Some(d)) => (channel, d),
        };
        more.insert(0, d);
        self.take_in_all(node, &channel, more).await
    }
}
