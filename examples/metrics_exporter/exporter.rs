//! An executor of one's own: exports the node and the apps it runs in the
//! Prometheus text format, on a port of its own.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kraken_lib::executor::{ExecutionFailure, Executor, SetupFailure};
use kraken_lib::node::GenericNode;
use kraken_lib::runtime::{Runtime, LABEL_DEPLOYMENT, ROLE_APP};

/// How often the metrics are gathered again.
const EVERY: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on its listener; gathers the numbers every [`EVERY`].
pub struct MetricsExporter {
    listener: Option<tokio::net::TcpListener>,
    runtime: Arc<dyn Runtime>,
    // The last text gathered; the HTTP handler only clones it (never held across an await).
    text: Arc<Mutex<String>>,
}

impl MetricsExporter {
    /// An exporter serving on `listener` (already bound: no other program can take its port).
    pub fn new(listener: tokio::net::TcpListener, runtime: Arc<dyn Runtime>) -> Self {
        Self { listener: Some(listener), runtime, text: Arc::default() }
    }

    async fn gather(&self, node: &GenericNode) -> Result<String, kraken_lib::runtime::RuntimeError> {
        let mut out = String::new();
        let role = if node.is_orchestrator() { "orchestrator" } else { "worker" };
        let _ =
            writeln!(out, "# HELP kraken_node_info The node this agent is.\n# TYPE kraken_node_info gauge");
        let _ = writeln!(
            out,
            "kraken_node_info{{node=\"{}\",name=\"{}\",role=\"{role}\"}} 1",
            node.id, node.name
        );
        let _ = writeln!(out, "# HELP kraken_node_epoch The platform's epoch as this node knows it.");
        let _ = writeln!(out, "# TYPE kraken_node_epoch gauge\nkraken_node_epoch {}", node.epoch());
        let _ = writeln!(out, "# HELP kraken_app_running Whether a deployment's app runs on this node.");
        let _ = writeln!(out, "# TYPE kraken_app_running gauge");
        let mut memory = String::new();
        for c in self.runtime.list_managed(Some(node.id.clone())).await? {
            let Some(deployment) = c.labels.get(LABEL_DEPLOYMENT).filter(|_| c.role() == ROLE_APP) else {
                continue;
            };
            let _ =
                writeln!(out, "kraken_app_running{{deployment=\"{deployment}\"}} {}", u8::from(c.running));
            if let Ok(stats) = self.runtime.stats(&c.id).await {
                let _ = writeln!(
                    memory,
                    "kraken_app_memory_bytes{{deployment=\"{deployment}\"}} {}",
                    stats.memory_bytes
                );
            }
        }
        let _ = writeln!(out, "# HELP kraken_app_memory_bytes Memory a deployment's app uses.");
        let _ = write!(out, "# TYPE kraken_app_memory_bytes gauge\n{memory}");
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Executor for MetricsExporter {
    fn name(&self) -> &str {
        "metrics"
    }

    async fn setup(&mut self, node: &mut GenericNode) -> Result<(), SetupFailure> {
        let Some(listener) = self.listener.take() else { return Ok(()) };
        let text = self.text.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = text.lock().map(|t| t.clone()).unwrap_or_default();
                async move { ([("content-type", "text/plain; version=0.0.4")], body) }
            }),
        );
        let stop = node.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "the metrics server stopped");
            }
        });
        Ok(())
    }

    async fn execute(&mut self, node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        let text = self
            .gather(node)
            .await
            .map_err(|e| ExecutionFailure::transient("reading the node's apps").caused_by(e))?;
        if let Ok(mut shared) = self.text.lock() {
            *shared = text;
        }
        tokio::select! {
            () = node.shutdown.cancelled() => {}
            () = tokio::time::sleep(EVERY) => {}
        }
        Ok(())
    }
}
