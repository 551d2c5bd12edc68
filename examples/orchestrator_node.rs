//! Run with: `cargo run -p kraken-examples --example orchestrator_node -- AMQP_URL [DATA_DIR] [LISTEN]`
//!
//! An orchestrator-only node built from the library: it runs no apps, keeps
//! the platform's state, serves the API and the web interface on `LISTEN`
//! (default `0.0.0.0:8000`) and lets workers join through the RabbitMQ broker
//! at `AMQP_URL`. It prints the join token workers need.

use std::sync::Arc;

use anyhow::Context;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::{NodeRole, Platform};
use kraken_lib::runtime::DockerRuntime;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every fetch runs in this program started again as a helper (so that it
    // can be stopped); this line serves those runs.
    kraken_lib::fetcher::run_child_if_asked();
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let amqp_url = args.next().context("usage: orchestrator_node AMQP_URL [DATA_DIR] [LISTEN]")?;
    let data_dir = args.next().unwrap_or_else(|| "kraken-orchestrator".to_string());
    let listen =
        args.next().unwrap_or_else(|| "0.0.0.0:8000".to_string()).parse().context("LISTEN: host:port")?;

    // The runtime is only used to start a broker when none is given; the URL is given here.
    let runtime = DockerRuntime::connect().await.context("a Docker engine is needed")?;
    let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    let platform = Platform::builder(NodeConfig::new(data_dir, listen))
        .role(NodeRole::Orchestrator)
        .amqp_url(Some(amqp_url))
        .registry(registry)
        .ui(kraken_ui::router())
        .runtime(Arc::new(runtime))
        .start()
        .await?;
    println!(
        "orchestrator at {} — token {}",
        platform.api_address(),
        platform.token().unwrap_or("(kept only as a hash; see the data directory's token file)")
    );
    println!(
        "workers join with --join-token {}",
        platform.join_token().unwrap_or("(see the join-token file)")
    );
    platform
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
