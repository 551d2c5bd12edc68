//! Run with: `cargo run -p kraken-examples --example metrics_exporter -- [DATA_DIR] [LISTEN] [METRICS_LISTEN]`
//!
//! A combined node with an executor of its own (`exporter.rs`, a few dozen
//! lines): the node and the apps it runs, in the Prometheus text format, at
//! `http://METRICS_LISTEN/metrics` (default `127.0.0.1:9100`). Set
//! `KRAKEN_BASE_IMAGE` to build every app on one local image.

mod exporter;

use std::sync::Arc;

use anyhow::Context;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::{NodeRole, Platform};
use kraken_lib::runtime::DockerRuntime;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every fetch runs in this program started again as a helper.
    kraken_lib::fetcher::run_child_if_asked();
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().unwrap_or_else(|| "kraken-data".to_string());
    let listen =
        args.next().unwrap_or_else(|| "127.0.0.1:8000".into()).parse().context("LISTEN: host:port")?;
    let metrics = args.next().unwrap_or_else(|| "127.0.0.1:9100".into());

    let images = match std::env::var("KRAKEN_BASE_IMAGE") {
        Ok(image) => BaseImages::uniform(&image),
        Err(_) => BaseImages::defaults(),
    };
    let runtime = Arc::new(DockerRuntime::connect().await.context("a Docker engine is needed")?);
    let listener =
        tokio::net::TcpListener::bind(&metrics).await.with_context(|| format!("listen on {metrics}"))?;
    println!("metrics at http://{}/metrics", listener.local_addr()?);
    let platform = Platform::builder(NodeConfig::new(data_dir, listen))
        .role(NodeRole::Combined)
        .registry(BuilderRegistry::with_builtins(images))
        .runtime(runtime.clone())
        .executor(exporter::MetricsExporter::new(listener, runtime))
        .start()
        .await?;
    println!("platform at {}", platform.api_address());
    platform
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
