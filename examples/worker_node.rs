//! Run with: `cargo run -p kraken-examples --example worker_node -- ORCHESTRATOR JOIN_TOKEN [DATA_DIR] [LISTEN]`
//!
//! A worker-only node built from the library: it joins the platform whose
//! orchestrator answers at `ORCHESTRATOR` (e.g. `http://192.168.1.10:8000`)
//! with `JOIN_TOKEN`, then builds and runs the apps placed on it. It also
//! watches the orchestrator and takes over if it is the primary rollover
//! candidate when the orchestrator's machine dies.

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
    let usage = "usage: worker_node ORCHESTRATOR JOIN_TOKEN [DATA_DIR] [LISTEN]";
    let orchestrator = args.next().context(usage)?;
    let join_token = args.next().context(usage)?;
    let data_dir = args.next().unwrap_or_else(|| "kraken-worker".to_string());
    let listen =
        args.next().unwrap_or_else(|| "0.0.0.0:8000".to_string()).parse().context("LISTEN: host:port")?;

    let images = match std::env::var("KRAKEN_BASE_IMAGE") {
        Ok(image) => BaseImages::uniform(&image),
        Err(_) => BaseImages::defaults(),
    };
    let runtime = DockerRuntime::connect().await.context("a Docker engine is needed")?;
    let platform = Platform::builder(NodeConfig::new(data_dir, listen))
        .role(NodeRole::Worker { orchestrator })
        .join_token(Some(join_token))
        .registry(BuilderRegistry::with_builtins(images))
        .ui(kraken_ui::router())
        .runtime(Arc::new(runtime))
        .start()
        .await?;
    println!(
        "worker {} joined the platform at {}",
        platform.node_id(),
        platform.orchestrator().unwrap_or_default()
    );
    platform
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
