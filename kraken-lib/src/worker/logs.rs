//! A deployment's log on the worker: the container's output followed into
//! the deployment's log, one follower per deployment.

use futures::TryStreamExt;

use super::Shared;
use crate::log_sink::LogSink;

impl Shared {
    /// Starts forwarding a container's output to the deployment's log (only
    /// what it prints from now on with `since_now`), in place of the
    /// deployment's earlier follower.
    pub(super) fn follow_logs(&self, deployment: &str, generation: u64, container_id: &str, since_now: bool) {
        let logs = self.runtime.logs(container_id, true, since_now);
        let sink = LogSink::start(self.node.clone(), deployment.to_string(), generation);
        let handle = tokio::spawn(async move {
            let mut logs = logs;
            while let Ok(Some(line)) = logs.try_next().await {
                sink.send(&line.stream, line.line);
            }
        });
        if let Some(old) = self.tasks().logs.insert(deployment.to_string(), handle) {
            old.abort();
        }
    }

    /// Stops following the deployment's container.
    pub(super) fn stop_following(&self, deployment: &str) {
        if let Some(h) = self.tasks().logs.remove(deployment) {
            h.abort();
        }
    }
}
