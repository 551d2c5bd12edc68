//! Run with: `cargo run -p kraken-examples --example combined_node -- [DATA_DIR] [LISTEN]`
//!
//! A whole platform on one machine, built from the library: an orchestrator
//! and a worker in one process, the in-process bus, the API and the web
//! interface on `LISTEN` (default `127.0.0.1:8000`). Set `KRAKEN_BASE_IMAGE`
//! to build every app on one local image instead of the official ones, and
//! `KRAKEN_ALLOW_LOCAL_SOURCES=1` to deploy repositories from this machine's
//! disk (paths, `file://` URLs).

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
    let data_dir = args.next().unwrap_or_else(|| "kraken-data".to_string());
    let listen =
        args.next().unwrap_or_else(|| "127.0.0.1:8000".to_string()).parse().context("LISTEN: host:port")?;

    let images = match std::env::var("KRAKEN_BASE_IMAGE") {
        Ok(image) => BaseImages::uniform(&image),
        Err(_) => BaseImages::defaults(),
    };
    let runtime = DockerRuntime::connect().await.context("a Docker engine is needed")?;
    let mut config = NodeConfig::new(data_dir, listen);
    // Repositories on this machine's disk only when asked for.
    config.allow_local_sources = std::env::var_os("KRAKEN_ALLOW_LOCAL_SOURCES").is_some();
    let platform = Platform::builder(config)
        .role(NodeRole::Combined)
        .registry(BuilderRegistry::with_builtins(images))
        .ui(kraken_ui::router())
        .runtime(Arc::new(runtime))
        .start()
        .await?;
    println!(
        "platform at {} — token {}",
        platform.api_address(),
        platform.token().unwrap_or("(kept only as a hash; see the data directory's token file)")
    );
    platform
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
