//! The orchestration executor: drives every deployment through its lifecycle,
//! places work on the least-loaded node, and reconciles what it wants with
//! what the workers report.
//!
//! It wakes on a new request (the API notifies the state), on a message from
//! a worker, on the end of a repository fetch it started, and at least once a
//! second to check node health and repair what a lost message broke. Each
//! pass is idempotent: it compares the desired state of each deployment with
//! the observed one and acts on the difference.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::builder::{BuildPlan, BuilderRegistry, Detection};
use crate::bus::{Body, Channel, DeploySpec, DeploymentReport, Subscription, WorkRequest};
use crate::deployment::{is_web_address, Deployment, DeploymentId, Desired, Status};
use crate::executor::{ExecutionFailure, Executor, SetupFailure};
use crate::fetcher::Fetcher;
use crate::node::GenericNode;
use crate::shipwreck::{Manifest, FILE_NAME};
use crate::source;
use crate::state::{NodeRecord, Role, State};

mod resume;

/// How often a reconciliation pass runs when nothing wakes the orchestrator sooner.
const PASS_EVERY: Duration = Duration::from_secs(1);

/// A pass this much later than planned means the orchestrator itself was held up.
const STALL: Duration = Duration::from_millis(500);

/// After the bus was down or this orchestrator started, how long nodes get
/// beyond the grace to (re)connect (the bus's longest pause between two
/// reconnection attempts).
const RECONNECT_ALLOWANCE: Duration = Duration::from_secs(5);

/// How long a worker may hold work without mentioning it before it is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(15);

/// What reading a repository found.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The commit read.
    pub commit: String,
    /// The validated manifest.
    pub manifest: Manifest,
    /// The builder chosen and why.
    pub detection: Detection,
    /// The whole build plan (base image, install, build and start steps with
    /// their reasons, the Dockerfile), made here so that a request whose plan
    /// fails is refused before anything is delegated.
    pub plan: Box<BuildPlan>,
}

/// Why reading a repository failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetrieveError {
    /// Too many repositories are being fetched; asking again later may succeed.
    #[error("{0}")]
    Busy(String),
    /// The repository or its manifest cannot be deployed; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// Fetches `branch` of `url` with `fetcher` into a temporary directory under
/// `work_root`, validates its `shipwreck.toml`, chooses its builder and makes
/// the whole build plan. With
/// `wait`, waits for a place in the fetch queue; without, is refused with
/// [`RetrieveError::Busy`] when the queue is full.
///
/// # Errors
/// [`RetrieveError`] with a message a person can act on (naming no path of
/// this machine beyond what was given).
pub async fn retrieve(
    fetcher: &Fetcher,
    wait: bool,
    url: &str,
    branch: &str,
    registry: &BuilderRegistry,
    work_root: &std::path::Path,
) -> Result<Retrieved, RetrieveError> {
    let refused = RetrieveError::Refused;
    let dir = crate::auth::files::private_dir(work_root)
        .and_then(|()| tempfile::Builder::new().prefix("fetch-").tempdir_in(work_root))
        .map_err(|e| {
            warn!(root = %work_root.display(), error = %e, "cannot make a directory for a checkout");
            refused(format!(
                "this machine cannot make a directory for the checkout ({e}); its log has the details"
            ))
        })?;
    let dest = dir.path().join("src");
    let fetched = if wait {
        fetcher.fetch(url, branch, None, &dest).await
    } else {
        fetcher.try_fetch(url, branch, None, &dest).await
    };
    let checkout = fetched.map_err(|e| {
        if e.is_busy() {
            RetrieveError::Busy(e.to_string())
        } else {
            refused(e.to_string())
        }
    })?;
    let registry = registry.clone();
    let hide = fetcher.clone();
    tokio::task::spawn_blocking(move || {
        let refused = |e: String| refused(hide.hide_paths(&e, &dest));
        let manifest = Manifest::parse(FILE_NAME, &checkout.manifest_text, &registry.names())
            .map_err(|e| refused(e.to_string()))?;
        let (plan, detection) = registry
            .plan(&checkout.dir, &manifest)
            .map_err(|e| refused(format!("could not prepare the build: {e}")))?;
        // The checkout goes with `dir`, here, once it was read; the plan is
        // kept as data (what validate shows and the history records).
        drop(dir);
        Ok(Retrieved { commit: checkout.commit, manifest, detection, plan: Box::new(plan) })
    })
    .await
    .map_err(|e| refused(format!("reading the checkout failed: {e}")))?
}

/// Checks a deployment request's fields before anything is fetched; local
/// sources (paths, `file://`) only when `allow_local`.
///
/// # Errors
/// What is wrong and what would be right.
pub fn check_request(url: &str, branch: &str, allow_local: bool) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("the git URL is empty; give an https://, http:// or git:// URL".into());
    }
    if url.len() > 2048 {
        return Err("the git URL is longer than 2048 characters".into());
    }
    source::check_allowed(url.trim(), allow_local).map_err(|e| e.to_string())?;
    if branch.trim().is_empty() {
        return Err("the branch is empty; give a branch name such as main".into());
    }
    if branch.chars().count() > 255 {
        return Err("the branch name is longer than 255 characters".into());
    }
    // Through the source's own check: it refuses control characters (a NUL
    // would make git's name check panic) before asking git.
    source::validate_branch(branch).map_err(|e| e.to_string())
}

/// When work for a deployment was last sent, and to which run of its node's agent.
#[derive(Debug, Clone)]
struct Sent {
    /// By the clock here.
    at: Instant,
    /// By the wall clock (compared with the time of a report).
    wall: chrono::DateTime<Utc>,
    /// The node it was sent to.
    target: String,
    /// The run of the node's agent that was current then, if one had reported.
    instance: Option<String>,
}

struct RetrievalDone {
    deployment: DeploymentId,
    update: bool,
    result: Result<Retrieved, String>,
}

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
    /// An orchestrator keeping its state in `state` and validating apps with `registry`.
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

    fn transition(&self, id: &str, status: Status, message: impl Into<String>) {
        let message = message.into();
        info!(deployment = %id, %status, %message, "status");
        if let Err(e) = self.state.update_deployment(id, |d| {
            d.transition(status, message, Utc::now());
            true
        }) {
            warn!(deployment = %id, error = %e, "could not store a status change");
        }
    }

    fn start_retrieval(&mut self, node: &GenericNode, d: &Deployment, update: bool) {
        if !self.retrieving.insert(d.id.clone()) {
            return;
        }
        let (url, branch, registry) = (d.url.clone(), d.branch.clone(), self.registry.clone());
        let fetcher = node.fetcher.clone();
        let root: PathBuf = node.config.data_dir.join("fetch");
        let tx = self.done_tx.clone();
        let deployment = d.id.clone();
        tokio::spawn(async move {
            // The platform's own work waits its turn in the fetch queue.
            let result =
                retrieve(&fetcher, true, &url, &branch, &registry, &root).await.map_err(|e| e.to_string());
            let _ = tx.send(RetrievalDone { deployment, update, result });
        });
    }

    /// Whether `d` is signed by the key registered for the node it names as
    /// sender (this node's own key for its own reports).
    fn signed_by_its_sender(&self, node: &GenericNode, d: &crate::bus::Delivery) -> bool {
        let from = &d.envelope.from;
        let expected = if *from == node.id {
            node.public_key()
        } else {
            self.state.node(from).and_then(|n| n.public_key)
        };
        crate::bus::trust::from_sender(d, expected)
    }

    /// Whether `id` is the rollover candidate this orchestrator named: the
    /// only node whose newer epoch makes it step down.
    fn is_candidate(&self, id: &str) -> bool {
        self.state.node(id).is_some_and(|n| n.rollover_priority == 1)
    }

    /// Chooses the node for new work: the least loaded of the nodes that are up
    /// and not drained. Returns the node and the reason.
    fn place(&self, exclude: Option<&str>) -> Option<(NodeRecord, String)> {
        let deployments = self.state.deployments();
        let count = |node: &str| {
            deployments
                .iter()
                .filter(|d| {
                    d.node.as_deref() == Some(node)
                        && d.desired == Desired::Running
                        && d.status != Status::Errored
                })
                .count()
        };
        let candidates: Vec<NodeRecord> = self
            .state
            .nodes()
            .into_iter()
            .filter(|n| n.up && n.runs_apps && !n.drained && Some(n.id.as_str()) != exclude)
            .collect();
        let total = candidates.len();
        candidates
            .into_iter()
            .map(|n| {
                let mem = if n.stats.memory_total_bytes > 0 {
                    n.stats.memory_used_bytes as f64 / n.stats.memory_total_bytes as f64
                } else {
                    0.0
                };
                let c = count(&n.id);
                let score = n.stats.cpu_percent / 100.0 + mem + 0.5 * c as f64;
                (score, c, mem, n)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.3.id.cmp(&b.3.id)))
            .map(|(_, c, mem, n)| {
                let reason = format!(
                    "least loaded of {total} node{} (cpu {:.0}%, memory {:.0}%, {c} deployment{})",
                    if total == 1 { "" } else { "s" },
                    n.stats.cpu_percent,
                    mem * 100.0,
                    if c == 1 { "" } else { "s" }
                );
                (n, reason)
            })
    }

    async fn send_work(&mut self, node: &GenericNode, target: &str, work: WorkRequest) {
        let id = work.deployment().to_string();
        // A cancel goes to a node that should not hold the deployment: it says
        // nothing about the work its own node holds.
        let holds = !matches!(work, WorkRequest::Cancel { .. });
        match node.publish(&Channel::Work(target.to_string()), Body::Work(work)).await {
            Ok(()) if holds => {
                let instance = self.instances.get(target).cloned();
                let sent =
                    Sent { at: Instant::now(), wall: Utc::now(), target: target.to_string(), instance };
                self.sent.insert(id, sent);
            }
            Ok(()) => {}
            Err(e) => {
                warn!(deployment = %id, error = %e, "could not send work; it is sent again on a later pass")
            }
        }
    }

    fn spec(d: &Deployment) -> Option<DeploySpec> {
        Some(DeploySpec {
            deployment: d.id.clone(),
            generation: d.generation,
            url: d.url.clone(),
            branch: d.branch.clone(),
            commit: d.commit.clone()?,
            manifest: d.manifest.clone()?,
            builder: d.builder.clone()?,
        })
    }

    /// Places a deployment whose app data is known and hands it to the chosen node.
    async fn delegate(&mut self, node: &GenericNode, id: &str, exclude: Option<&str>, why: &str) {
        let Some((target, reason)) = self.place(exclude) else {
            let d = self.state.deployment(id);
            if d.as_ref().is_some_and(|d| d.status != Status::DelegatingDeployment || d.node.is_some()) {
                let _ = self.state.update_deployment(id, |d| {
                    d.node = None;
                    d.transition(
                        Status::DelegatingDeployment,
                        format!("{why}waiting for a node to run it"),
                        Utc::now(),
                    );
                    true
                });
            }
            return;
        };
        let message = format!("{why}placed on {} ({reason})", target.name);
        let updated = self.state.update_deployment(id, |d| {
            d.generation += 1;
            d.node = Some(target.id.clone());
            d.container_id = None;
            d.transition(Status::DelegatingDeployment, message, Utc::now());
            true
        });
        match updated {
            Ok(Some(d)) => {
                if let Some(spec) = Self::spec(&d) {
                    self.send_work(node, &target.id, WorkRequest::Deploy(spec)).await;
                }
            }
            Ok(None) => {}
            Err(e) => warn!(deployment = %id, error = %e, "could not store the placement"),
        }
    }

    async fn on_retrieved(&mut self, node: &GenericNode, done: RetrievalDone) {
        self.retrieving.remove(&done.deployment);
        let Some(d) = self.state.deployment(&done.deployment) else { return };
        if d.desired != Desired::Running {
            return;
        }
        let expected = if done.update { Status::UpdateRequested } else { Status::RetrievingApplicationData };
        if d.status != expected {
            debug!(deployment = %d.id, status = %d.status, "a fetch finished for a deployment that moved on");
            return;
        }
        let r = match done.result {
            Ok(r) => r,
            Err(reason) => {
                if done.update && d.container_id.is_some() {
                    self.transition(
                        &d.id,
                        Status::Running,
                        format!("update not possible, still running the previous commit: {reason}"),
                    );
                    let _ = self.state.update_deployment(&d.id, |d| {
                        d.error = Some(reason.clone());
                        true
                    });
                } else {
                    self.transition(&d.id, Status::Errored, reason);
                }
                return;
            }
        };
        let short = r.commit.get(..8).unwrap_or(&r.commit).to_string();
        if done.update && d.commit.as_deref() == Some(r.commit.as_str()) && d.container_id.is_some() {
            self.transition(&d.id, Status::Running, format!("already at the newest commit {short}"));
            return;
        }
        let starts =
            r.plan.start.as_ref().map(|s| format!("; starts with `{}`", s.command)).unwrap_or_default();
        let message = format!(
            "{} `{}` at commit {short}: {} builder ({}){starts}",
            if done.update { "updating to" } else { "read" },
            r.manifest.app.name,
            r.detection.builder,
            r.detection.reason
        );
        let stored = self.state.update_deployment(&d.id, |d| {
            d.name = Some(r.manifest.app.name.clone());
            d.commit = Some(r.commit.clone());
            d.builder = Some(r.detection.builder.clone());
            d.builder_reason = Some(r.detection.reason.clone());
            d.manifest = Some(r.manifest.clone());
            d.error = None;
            true
        });
        if let Err(e) = stored {
            warn!(deployment = %d.id, error = %e, "could not store the app data");
            return;
        }
        let on_live_node = d.node.as_deref().and_then(|n| self.state.node(n)).filter(|n| n.up);
        match (done.update, on_live_node, d.container_id.is_some()) {
            (true, Some(target), true) => {
                let message = format!("{message}; handing the update to {}", target.name);
                let updated = self.state.update_deployment(&d.id, |d| {
                    d.generation += 1;
                    d.transition(Status::DelegatingDeployment, message, Utc::now());
                    true
                });
                if let Ok(Some(d)) = updated {
                    if let Some(spec) = Self::spec(&d) {
                        self.send_work(node, &target.id, WorkRequest::Update(spec)).await;
                    }
                }
            }
            _ => {
                self.transition(&d.id, Status::DelegatingDeployment, message);
                self.delegate(node, &d.id, None, "").await;
            }
        }
    }

    fn on_deployment_report(&mut self, from: &str, r: DeploymentReport) {
        let Some(d) = self.state.deployment(&r.deployment) else {
            debug!(deployment = %r.deployment, "a report about an unknown deployment");
            return;
        };
        if r.generation != d.generation || d.node.as_deref() != Some(from) {
            debug!(deployment = %d.id, generation = r.generation, current = d.generation, "ignoring a stale report");
            return;
        }
        if d.desired == Desired::Destroyed && !r.status.is_destruction() && r.status != Status::Errored {
            // Work finished after destruction was asked for: keep the ids for clean-up.
            let _ = self.state.update_deployment(&d.id, |d| {
                d.container_id = r.container_id.clone().or(d.container_id.take());
                true
            });
            return;
        }
        if d.status == r.status && d.status_history.last().is_some_and(|c| c.message == r.message) {
            return;
        }
        if r.address.as_ref().is_some_and(|a| !is_web_address(a)) {
            warn!(deployment = %d.id, node = %from, "ignoring an app address that is not an http(s) address");
        }
        self.sent.remove(&d.id);
        let _ = self.state.update_deployment(&d.id, |d| {
            if let Some(c) = &r.container_id {
                d.container_id = Some(c.clone());
            }
            if let Some(p) = r.host_port {
                d.host_port = Some(p);
            }
            if let Some(a) = r.address.as_ref().filter(|a| is_web_address(a)) {
                d.address = Some(a.clone());
            }
            if let Some(c) = &r.commit {
                d.commit = Some(c.clone());
            }
            if r.status == Status::Destroyed {
                d.container_id = None;
                d.address = None;
                d.host_port = None;
            }
            if r.status == Status::Running && r.container_id.is_some() {
                d.error = None;
            }
            d.transition(r.status, r.message.clone(), Utc::now());
            true
        });
    }

    async fn on_node_report(&mut self, node: &GenericNode, from: &str, report: crate::bus::NodeReport) {
        if report.node != from || !is_web_address(&report.address) {
            warn!(from, about = %report.node, "ignoring a node report about another node or with a bad address");
            return;
        }
        let role = if report.node == node.id { Role::Orchestrator } else { Role::Worker };
        if let Err(e) = self.state.record_report(&report, role, Utc::now()) {
            warn!(node = %report.node, error = %e, "could not store a node report");
        }
        for w in &report.deployments {
            let Some(d) = self.state.deployment(&w.deployment) else {
                if !w.in_progress {
                    info!(deployment = %w.deployment, node = %from, "removing a container of an unknown deployment");
                    self.send_work(node, from, WorkRequest::Cancel { deployment: w.deployment.clone() })
                        .await;
                }
                continue;
            };
            let ours = d.node.as_deref() == Some(from);
            if ours && w.generation == d.generation {
                if let Some(stats) = w.stats {
                    self.state.record_stats(&d.id, stats);
                }
                if d.status == Status::Running && w.container_id.is_some() && !w.running && !w.in_progress {
                    self.transition(&d.id, Status::Errored, "the app's container stopped; its log shows why");
                } else if d.status == Status::Errored && w.running && w.container_id.is_some() {
                    self.transition(&d.id, Status::Running, "the app's container runs again");
                }
            }
            // An older generation on the right node is about to be replaced by
            // work already on its way, so only a container on the wrong node counts.
            let misplaced = !ours;
            let unwanted = d.desired == Desired::Destroyed && d.status == Status::Destroyed;
            if (misplaced || unwanted) && !w.in_progress && self.started.elapsed() > Duration::from_secs(2) {
                info!(deployment = %d.id, node = %from, "removing a container the platform no longer wants there");
                self.send_work(node, from, WorkRequest::Cancel { deployment: d.id.clone() }).await;
            }
        }
        // What the node should hold but does not account for: lost with a
        // restart of its agent, or not mentioned for a while.
        let fresh = report.instance.is_empty()
            || self.instances.insert(from.to_string(), report.instance.clone()).as_deref()
                != Some(report.instance.as_str());
        let held: HashMap<&str, &crate::bus::WorkerDeployment> =
            report.deployments.iter().map(|w| (w.deployment.as_str(), w)).collect();
        let now = Instant::now();
        for d in self.state.deployments() {
            if d.node.as_deref() != Some(from) {
                continue;
            }
            let sent = self.sent.get(&d.id).filter(|s| s.target == from);
            let restarted = !report.instance.is_empty()
                && match sent.map(|s| &s.instance) {
                    Some(Some(instance)) => *instance != report.instance,
                    // Sent before the node's first report here: it may still be on its way.
                    Some(None) => false,
                    None => fresh,
                };
            let waited = sent.map_or(now.duration_since(self.started), |t| now.duration_since(t.at));
            // Only a report made after the work was sent (with a second for clock
            // differences) can show that the node lost it.
            let report_is_newer = sent.is_none_or(|t| report.at > t.wall + chrono::Duration::seconds(1));
            let seen = resume::Seen { restarted, overdue: waited > RESEND_AFTER && report_is_newer };
            let repair = resume::judge(&d, held.get(d.id.as_str()).copied(), seen);
            self.repair(node, &d, from, repair).await;
        }
    }

    /// Marks down the nodes silent for longer than the grace; returns when
    /// the next node that is up would be, if it stays silent.
    async fn check_nodes(&mut self, node: &GenericNode) -> Option<Instant> {
        let grace =
            chrono::Duration::from_std(node.config.node_grace).unwrap_or(chrono::Duration::seconds(10));
        let now = Utc::now();
        // While the bus is down nobody can report; afterwards nodes get the whole
        // grace period again, as they do after this orchestrator started, plus
        // the time their own reconnection may take.
        if !node.bus.is_connected() {
            self.quiet_since = Instant::now() + RECONNECT_ALLOWANCE;
            return None;
        }
        // Nor can an orchestrator that was itself away (its process stopped,
        // its machine suspended): reports may wait unread. A pass that comes
        // much later than planned gives every node the grace period again.
        let late = Instant::now().saturating_duration_since(self.next_pass);
        if late > STALL {
            warn!(late = ?late, "this orchestrator was held up; giving every node the grace period again");
            self.quiet_since = self.quiet_since.max(Instant::now());
        }
        let since_start = chrono::Duration::from_std(self.quiet_since.elapsed()).unwrap_or_default();
        let mut next: Option<chrono::Duration> = None;
        for n in self.state.nodes() {
            let heard = n.last_heartbeat.map_or(now - since_start, |t| t.max(now - since_start));
            let silent = now - heard > grace;
            if n.up && silent {
                warn!(node = %n.id, silent_ms = (now - heard).num_milliseconds(), "no report within the grace period; marking the node down");
                let _ = self.state.update_node(&n.id, |n| {
                    n.up = false;
                    true
                });
            } else if n.up {
                let left = heard + grace - now;
                next = Some(next.map_or(left, |d| d.min(left)));
            }
        }
        let left = next?.to_std().unwrap_or_default();
        Some(Instant::now() + left + Duration::from_millis(10))
    }

    /// Keeps the rollover priorities dense: 0 for this orchestrator, then 1, 2, …
    /// for the nodes that are up, in their current order. So a primary
    /// candidate (1) exists whenever another node is up.
    fn reassign_priorities(&self, node: &GenericNode) {
        let mut others: Vec<NodeRecord> =
            self.state.nodes().into_iter().filter(|n| n.id != node.id).collect();
        // Nodes that are up first (so the candidate is one that answers), down ones last.
        others.sort_by(|a, b| {
            b.up.cmp(&a.up).then(a.rollover_priority.cmp(&b.rollover_priority)).then_with(|| a.id.cmp(&b.id))
        });
        let wanted = std::iter::once((node.id.clone(), 0))
            .chain(others.iter().enumerate().map(|(i, n)| (n.id.clone(), i as u32 + 1)));
        for (id, priority) in wanted {
            let stored = self.state.update_node(&id, |n| {
                let differs = n.rollover_priority != priority;
                n.rollover_priority = priority;
                differs
            });
            if let Err(e) = stored {
                warn!(node = %id, error = %e, "could not store a rollover priority");
            }
        }
    }

    /// One reconciliation pass over every deployment.
    async fn reconcile(&mut self, node: &GenericNode) {
        let deadline = self.check_nodes(node).await;
        // The next pass comes when the next node would be overdue, or in a second.
        let every = Instant::now() + PASS_EVERY;
        self.next_pass = deadline.map_or(every, |d| d.min(every));
        self.reassign_priorities(node);
        // Each node's (up, drained), read once per pass rather than per deployment.
        let health: HashMap<String, (bool, bool)> =
            self.state.nodes().into_iter().map(|n| (n.id, (n.up, n.drained))).collect();
        for d in self.state.deployments() {
            let (node_up, node_drained) =
                d.node.as_deref().and_then(|n| health.get(n)).copied().unwrap_or((false, false));
            match (d.desired, d.status) {
                (Desired::Running, Status::DeploymentRequested) => {
                    self.transition(&d.id, Status::ValidatingDeploymentData, "checking the URL and branch");
                    match check_request(&d.url, &d.branch, node.config.allow_local_sources) {
                        Ok(()) => {
                            self.transition(
                                &d.id,
                                Status::RetrievingApplicationData,
                                format!("fetching {} ({}) and reading its shipwreck.toml", d.url, d.branch),
                            );
                            if let Some(d) = self.state.deployment(&d.id) {
                                self.start_retrieval(node, &d, false);
                            }
                        }
                        Err(reason) => self.transition(&d.id, Status::Errored, reason),
                    }
                }
                (Desired::Running, Status::ValidatingDeploymentData | Status::RetrievingApplicationData) => {
                    if d.status == Status::ValidatingDeploymentData {
                        self.transition(
                            &d.id,
                            Status::RetrievingApplicationData,
                            "fetching the repository again",
                        );
                    }
                    self.start_retrieval(node, &d, false);
                }
                (Desired::Running, Status::UpdateRequested) => self.start_retrieval(node, &d, true),
                (Desired::Running, Status::DelegatingDeployment) if d.node.is_none() || !node_up => {
                    if d.commit.is_some() && d.manifest.is_some() {
                        self.delegate(node, &d.id, d.node.as_deref(), "").await;
                    } else {
                        self.transition(
                            &d.id,
                            Status::RetrievingApplicationData,
                            "fetching the repository again",
                        );
                        self.start_retrieval(node, &d, false);
                    }
                }
                (Desired::Running, Status::Running)
                    if node_up && node_drained && self.place(d.node.as_deref()).is_some() =>
                {
                    let from = d.node.clone().unwrap_or_default();
                    let name = self.state.node(&from).map(|n| n.name).unwrap_or(from.clone());
                    self.delegate(node, &d.id, Some(&from), &format!("node {name} is drained; ")).await;
                }
                (Desired::Running, s)
                    if (s.is_with_worker() || s == Status::Running) && !node_up && d.node.is_some() =>
                {
                    let from = d.node.clone().unwrap_or_default();
                    let name = self.state.node(&from).map(|n| n.name).unwrap_or(from.clone());
                    self.delegate(node, &d.id, Some(&from), &format!("node {name} is down; ")).await;
                }
                (Desired::Destroyed, Status::DestructionRequested) => {
                    match d.node.clone().filter(|_| node_up) {
                        Some(target) => {
                            let name = self.state.node(&target).map(|n| n.name).unwrap_or(target.clone());
                            self.transition(
                                &d.id,
                                Status::DelegatingDestruction,
                                format!("asking {name} to remove it"),
                            );
                            self.send_work(
                                node,
                                &target,
                                WorkRequest::Destroy { deployment: d.id.clone(), generation: d.generation },
                            )
                            .await;
                        }
                        None if d.node.is_some() => {
                            self.transition(
                                &d.id,
                                Status::Destroyed,
                                "its node is down; its container is removed when the node returns",
                            );
                        }
                        None => self.transition(
                            &d.id,
                            Status::Destroyed,
                            "it was never started; nothing to remove",
                        ),
                    }
                }
                (Desired::Destroyed, Status::DelegatingDestruction | Status::DestructionInProgress) => {
                    let waited = self.sent.get(&d.id).map(|t| t.at.elapsed()).unwrap_or(RESEND_AFTER);
                    if !node_up {
                        self.transition(
                            &d.id,
                            Status::Destroyed,
                            "its node is down; its container is removed when the node returns",
                        );
                    } else if waited >= RESEND_AFTER {
                        if let Some(target) = d.node.clone() {
                            self.send_work(
                                node,
                                &target,
                                WorkRequest::Destroy { deployment: d.id.clone(), generation: d.generation },
                            )
                            .await;
                        }
                    }
                }
                _ => {}
            }
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
                bus.subscribe(&c)
                    .await
                    .map_err(|e| SetupFailure::Retry(format!("cannot subscribe to {c}: {e}")))
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
            return Err(ExecutionFailure::Reset("not set up".into()));
        };
        let deadline = tokio::time::Instant::from_std(self.next_pass);
        enum Wake {
            Pass,
            Sysinfo(Option<crate::bus::Delivery>),
            Deployment(Option<crate::bus::Delivery>),
            Log(Option<crate::bus::Delivery>),
            Retrieved(Option<RetrievalDone>),
            Stop,
        }
        // Reports first: a pass that judges node health must not run while a
        // node's report waits here unread (say, after this loop was slow).
        let wake = tokio::select! {
            biased;
            () = node.shutdown.cancelled() => Wake::Stop,
            d = sysinfo.next() => Wake::Sysinfo(d),
            d = deployment.next() => Wake::Deployment(d),
            () = self.state.changed() => Wake::Pass,
            () = tokio::time::sleep_until(deadline) => Wake::Pass,
            r = self.done_rx.recv() => Wake::Retrieved(r),
            d = log.next() => Wake::Log(d),
        };
        match wake {
            Wake::Stop => {}
            Wake::Pass => self.reconcile(node).await,
            Wake::Retrieved(Some(done)) => self.on_retrieved(node, done).await,
            Wake::Retrieved(None) => {}
            Wake::Deployment(None) | Wake::Log(None) | Wake::Sysinfo(None) => {
                return Err(ExecutionFailure::Reset("a bus subscription closed".into()));
            }
            Wake::Deployment(Some(d)) | Wake::Log(Some(d)) | Wake::Sysinfo(Some(d))
                if !self.signed_by_its_sender(node, &d) =>
            {
                warn!(
                    from = %d.envelope.from,
                    origin = ?d.origin,
                    "dropping a message not signed by the node it names as sender"
                );
                d.ack().await;
            }
            Wake::Deployment(Some(d)) | Wake::Log(Some(d)) | Wake::Sysinfo(Some(d))
                if d.envelope.epoch > node.epoch() && !self.is_candidate(&d.envelope.from) =>
            {
                warn!(
                    from = %d.envelope.from,
                    epoch = d.envelope.epoch,
                    "dropping a message of a newer epoch from a node that is not the rollover candidate"
                );
                d.ack().await;
            }
            Wake::Deployment(Some(d)) | Wake::Log(Some(d)) | Wake::Sysinfo(Some(d))
                if d.envelope.epoch > node.epoch() =>
            {
                let epoch = d.envelope.epoch;
                let from = d.envelope.from.clone();
                d.ack().await;
                return Err(ExecutionFailure::Fatal(format!(
                    "node {from} speaks for epoch {epoch} but this orchestrator has epoch {}: another orchestrator leads the platform; \
                     stepping down (start this agent again to join it as a worker)",
                    node.epoch()
                )));
            }
            Wake::Deployment(Some(d)) => {
                let from = d.envelope.from.clone();
                match d.envelope.body.clone() {
                    Body::Deployment(r) => self.on_deployment_report(&from, r),
                    other => warn!(?other, "dropping an unexpected message on the deployment channel"),
                }
                d.ack().await;
            }
            Wake::Log(Some(d)) => {
                match &d.envelope.body {
                    Body::Log(batch) => {
                        // Only the node running the deployment writes to its log.
                        let current = self.state.deployment(&batch.deployment);
                        if current.is_some_and(|c| c.node.as_deref() == Some(d.envelope.from.as_str())) {
                            if let Err(e) = self.state.append_logs(&batch.deployment, &batch.lines) {
                                warn!(error = %e, "could not store log lines");
                            }
                        }
                    }
                    other => warn!(?other, "dropping an unexpected message on the log channel"),
                }
                d.ack().await;
            }
            Wake::Sysinfo(Some(d)) => {
                let from = d.envelope.from.clone();
                match d.envelope.body.clone() {
                    Body::Sysinfo(report) => self.on_node_report(node, &from, report).await,
                    other => warn!(?other, "dropping an unexpected message on the sysinfo channel"),
                }
                d.ack().await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_fetching() {
        assert!(check_request("https://example.org/app.git", "main", false).is_ok());
        assert!(check_request("", "main", false).unwrap_err().contains("empty"));
        assert!(check_request("/srv/app", "", true).unwrap_err().contains("branch"));
        assert!(check_request("/srv/app", "bad..name", true).unwrap_err().contains("not a valid branch"));
        assert!(check_request(&"x".repeat(3000), "main", false).unwrap_err().contains("2048"));
        assert!(check_request("/srv/app", "main", false).unwrap_err().contains("--allow-local-sources"));
        assert!(check_request("file:///srv/app", "main", false)
            .unwrap_err()
            .contains("--allow-local-sources"));
        assert!(check_request("/srv/app", "main", true).is_ok());
    }
}
