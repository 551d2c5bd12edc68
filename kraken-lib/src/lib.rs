//! # kraken-lib
//!
//! Everything a Kraken agent is made of, as a library: turn the spare machines
//! of a home or lab network into one small app-deployment platform. A person
//! gives a git URL and a branch whose root holds a `shipwreck.toml`; the
//! platform builds the app into a Docker image on a worker, runs it, publishes
//! its one port and keeps its status history, logs and resource use.
//!
//! The `kraken` binary is a thin layer over this crate; a custom agent (say,
//! one with a builder for a language Kraken does not ship) is a few dozen lines
//! on top of it — see the `examples/` folder of the repository.
//!
//! ## Layout
//!
//! - [`shipwreck`]: parse and validate `shipwreck.toml`.
//! - [`builder`]: the `Builder` trait, the registry, build plans as data, and one module per built-in builder.
//! - [`source`]: fetch a git URL + branch with `git2`.
//! - [`retrieval`]: read a repository for a deployment: check the request, fetch, validate
//!   the manifest, choose the builder, make the plan; trees kept so a deployment is fetched once.
//! - [`fetcher`]: bounded fetching: each fetch in a child process with time limits, a queue.
//! - [`log_sink`]: a deployment's log lines batched onto the bus through a bounded queue.
//! - [`output`]: what containers print, split into lines in bounded memory and linear time.
//! - [`runtime`]: the Docker engine through `bollard`, behind a mockable trait (build,
//!   containers, logs, stats, images; errors that keep the engine's error as their source).
//! - [`deployment`]: deployment records and the lifecycle's statuses.
//! - [`bus`]: messages between orchestrator and workers; in-process and RabbitMQ transports.
//! - [`executor`]: the `Executor` trait and its failure enums.
//! - [`node`]: `GenericNode` (what one agent's executors share) and the node runner.
//! - [`state`]: the orchestrator's persisted state (nodes, deployments, logs).
//! - [`stats`]: node statistics from `sysinfo`.
//! - [`orchestrator`]: the orchestration executor: reconcile as a pure function returning
//!   actions (placement, drain, reschedule, destroy, fencing), and the thin loop applying them.
//! - [`worker`]: the worker executor: deploy in phases (fetch, plan, build, test, start,
//!   settle), re-adopt, report, follow logs, destroy.
//! - [`proxy`]: the port proxy: each app's published port held by the agent and forwarded
//!   to its current container, so an update switches containers without a failed connection.
//! - [`discovery`]: find an orchestrator on the LAN: `--join`, mDNS, or a subnet scan.
//! - [`auth`]: tokens and their hashes, node keys, files private from creation.
//! - [`api`]: the HTTP API (axum) under `/api/v1`.
//! - [`client`]: the typed client of that API (its bodies, one address normaliser, event streams).
//! - [`openapi`]: the API's OpenAPI document.
//! - [`rollover`]: the primary candidate's replica, takeover and fencing.
//! - [`broker`]: the platform's own RabbitMQ: starting it, its credentials and URLs.
//! - [`join`]: asking an orchestrator to let this node join its platform.
//! - [`role`]: the roles an agent plays; the orchestrator's role put together once.
//! - [`retry`]: one back-off for everything tried again.
//! - [`platform`]: one entry point, `Platform::builder`, that starts an agent (combined,
//!   orchestrator-only or worker-only, with executors of one's own) with its bus and its API.
//!
//! ## Example
//!
//! A whole platform on one machine (needs a Docker engine):
//!
//! ```no_run
//! use std::sync::Arc;
//! use kraken_lib::builder::{BaseImages, BuilderRegistry};
//! use kraken_lib::node::NodeConfig;
//! use kraken_lib::platform::{NodeRole, Platform};
//! use kraken_lib::runtime::DockerRuntime;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NodeConfig::new("/var/lib/kraken", "0.0.0.0:8000".parse()?);
//! let platform = Platform::builder(config)
//!     .role(NodeRole::Combined)
//!     .registry(BuilderRegistry::with_builtins(BaseImages::defaults()))
//!     .runtime(Arc::new(DockerRuntime::connect().await?))
//!     .start()
//!     .await?;
//! println!("token: {}", platform.token().unwrap_or("(kept only as a hash)"));
//! platform.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod broker;
pub mod builder;
pub mod bus;
pub mod client;
pub mod deployment;
pub mod discovery;
pub mod executor;
pub mod fetcher;
pub mod join;
pub mod log_sink;
pub mod node;
pub mod openapi;
pub mod orchestrator;
pub mod output;
pub mod platform;
pub mod proxy;
pub mod retrieval;
pub mod retry;
pub mod role;
pub mod rollover;
pub mod runtime;
pub mod shipwreck;
pub mod source;
pub mod state;
pub mod stats;
pub mod worker;
