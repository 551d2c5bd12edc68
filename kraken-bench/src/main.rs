//! `kraken-bench`: Kraken's benchmarks, one subcommand each. Every benchmark
//! starts the `kraken` binary it is given (a real agent on loopback, with its
//! own data directory), measures, and prints a Markdown report with the
//! machine it ran on and the command that reproduces it. Benchmarks measure;
//! they do not judge: the report states each target next to the figure.
//!
//! `--tiny` runs every benchmark in a configuration small enough for the test
//! suite's smoke test (`tests/smoke.rs`), which checks only that each one
//! produces its report.

mod acted;
mod agent;
mod api;
mod app;
mod deploy;
mod footprint;
mod logs;
mod place;
mod report;
mod update;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Kraken's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "kraken-bench", version)]
struct Cli {
    /// The `kraken` binary to measure (default: `kraken` next to this program).
    #[arg(long, global = true)]
    kraken: Option<PathBuf>,
    /// A tiny configuration of each benchmark (for the smoke test): few
    /// rounds, few requests. Its figures mean little.
    #[arg(long, global = true)]
    tiny: bool,
    /// The image the agent uses as its base image.
    #[arg(
        long,
        global = true,
        env = "KRAKEN_TEST_BASE_IMAGE",
        default_value = "kraken-test-base:bookworm-v2"
    )]
    base_image: String,
    /// Gives up (and stops the agent it started) after this many seconds;
    /// no limit when not given.
    #[arg(long, global = true)]
    deadline_secs: Option<u64>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Deploy overhead: `git clone` + `docker build` + `docker run` by hand
    /// against `POST /api/v1/deployments`, same app, request to first HTTP 200.
    Deploy {
        /// Rounds of each path (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
    /// Update after a one-file commit: request to the new page served, and
    /// the requests a client looping on the app saw fail meanwhile.
    Update {
        /// Updates to measure (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Request stored → acted on: from a deployment's stored request to the
    /// orchestrator's first step on it, from its status history.
    Acted {
        /// Requests to measure.
        #[arg(long, default_value_t = 50)]
        requests: usize,
    },
    /// API latency of `GET /api/v1/deployments` and `GET
    /// /api/v1/deployments/{id}` with many deployments stored and many
    /// concurrent clients, idle and while an app floods its log.
    Api {
        /// Deployments stored before the agent starts.
        #[arg(long, default_value_t = 1000)]
        deployments: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Requests per client and endpoint.
        #[arg(long, default_value_t = 40)]
        requests: usize,
    },
    /// Log ingest: lines per second stored from one app printing as fast as
    /// it can, and the agent's memory meanwhile.
    Logs {
        /// Seconds of the measuring window.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Placement throughput: the real orchestrator and in-process bus with
    /// simulated nodes, for each number of nodes and of deployments.
    Place {
        /// Simulated nodes (each size is run with each number of deployments).
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
        nodes: Vec<usize>,
        /// Deployments to place.
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
        deployments: Vec<usize>,
    },
    /// An idle agent's resident memory and CPU, and the binary's size.
    Idle {
        /// Seconds over which CPU use is measured.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Every benchmark above, one after the other, with its defaults (or tiny).
    All,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let kraken = match &cli.kraken {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("finding this program's path")?.with_file_name("kraken"),
    };
    let helper = kraken.with_file_name("kraken-fetch");
    anyhow::ensure!(
        kraken.is_file() && helper.is_file(),
        "no kraken binary at {} with kraken-fetch beside it: build them (`cargo build --release -p kraken-bin \
         -p kraken-lib --bins`) or pass --kraken PATH",
        kraken.display()
    );
    let ctx = agent::Setup { kraken, base_image: cli.base_image.clone() };
    let tiny = cli.tiny;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("{}", report::machine(&ctx.kraken, &command));
    let run = run(cli.bench, &ctx, tiny);
    match cli.deadline_secs {
        // On the deadline the benchmark's future is dropped, and with it the
        // agent it started (stopped, its containers removed).
        Some(secs) => tokio::time::timeout(std::time::Duration::from_secs(secs), run)
            .await
            .map_err(|_| anyhow::anyhow!("the benchmark did not finish within {secs} s"))?,
        None => run.await,
    }
}

/// Runs benchmark `bench`.
async fn run(bench: Bench, ctx: &agent::Setup, tiny: bool) -> Result<()> {
    match bench {
        Bench::Deploy { rounds } => deploy::run(ctx, if tiny { 1 } else { rounds }).await?,
        Bench::Update { rounds } => update::run(ctx, if tiny { 1 } else { rounds }).await?,
        Bench::Acted { requests } => acted::run(ctx, if tiny { 2 } else { requests }).await?,
        Bench::Api { deployments, clients, requests } => {
            let shape = if tiny {
                api::Shape { deployments: 20, clients: 3, requests: 3 }
            } else {
                api::Shape { deployments, clients, requests }
            };
            api::run(ctx, shape).await?;
        }
        Bench::Logs { seconds } => logs::run(ctx, if tiny { 1 } else { seconds }).await?,
        Bench::Place { nodes, deployments } => place::run(&place_shapes(tiny, &nodes, &deployments)).await?,
        Bench::Idle { seconds } => footprint::run(ctx, if tiny { 1 } else { seconds }).await?,
        Bench::All => {
            deploy::run(ctx, if tiny { 1 } else { 7 }).await?;
            update::run(ctx, if tiny { 1 } else { 5 }).await?;
            acted::run(ctx, if tiny { 2 } else { 50 }).await?;
            let shape = if tiny {
                api::Shape { deployments: 20, clients: 3, requests: 3 }
            } else {
                api::Shape { deployments: 1000, clients: 50, requests: 40 }
            };
            api::run(ctx, shape).await?;
            logs::run(ctx, if tiny { 1 } else { 10 }).await?;
            place::run(&place_shapes(tiny, &[100, 1000], &[1000, 10000])).await?;
            footprint::run(ctx, if tiny { 1 } else { 20 }).await?;
        }
    }
    Ok(())
}

/// Every number of nodes with every number of deployments (or one tiny run).
fn place_shapes(tiny: bool, nodes: &[usize], deployments: &[usize]) -> Vec<place::Shape> {
    if tiny {
        return vec![place::Shape { nodes: 5, deployments: 20 }];
    }
    nodes
        .iter()
        .flat_map(|&n| deployments.iter().map(move |&d| place::Shape { nodes: n, deployments: d }))
        .collect()
}
