//! A deployment's log on the worker: the container's output followed into
//! the deployment's log, one follower per deployment.
//!
//! Each follower keeps where the last line it published stands in the
//! container's output (a [`LogPosition`]) in a file of its own,
//! `logs/<container id>` under the node's data folder, written after each
//! batch is published. An agent started again adopts the container and
//! follows it after that position: what the app printed while no agent
//! ran is picked up, and nothing already published is sent twice.

use std::path::PathBuf;

use futures::TryStreamExt;
use tracing::warn;

use super::Shared;
use crate::log_sink::LogSink;
use crate::runtime::LogPosition;

impl Shared {
    /// Starts forwarding a container's output to the deployment's log, in
    /// place of the deployment's earlier follower: from its first line, or,
    /// with `adopted`, after the last line an earlier agent published (only
    /// what it prints from now on when no earlier agent said where it left).
    pub(super) fn follow_logs(&self, deployment: &str, generation: u64, container_id: &str, adopted: bool) {
        let file = self.log_position_file(container_id);
        let after = if adopted {
            let kept = std::fs::read_to_string(&file).ok().and_then(|t| LogPosition::from_text(&t));
            Some(kept.unwrap_or_else(LogPosition::now))
        } else {
            None
        };
        let logs = self.runtime.follow_after(container_id, after);
        let sink = LogSink::start_marked(self.node.clone(), deployment.to_string(), generation, move |at| {
            keep_position(&file, at);
        });
        let handle = tokio::spawn(async move {
            let mut logs = logs;
            while let Ok(Some((line, at))) = logs.try_next().await {
                sink.send_at(&line.stream, line.line, at);
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

    /// Removes the kept positions of every container but `followed` (the
    /// ones adopted): the others are gone.
    pub(super) fn forget_log_positions(&self, followed: &[&str]) {
        let dir = self.node.config.data_dir.join("logs");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if !followed.iter().any(|id| name.to_str() == Some(id)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Where the position of `container_id`'s last published line is kept.
    fn log_position_file(&self, container_id: &str) -> PathBuf {
        // Engine ids are hex; anything else is kept out of the path.
        let name: String = container_id.chars().filter(char::is_ascii_alphanumeric).collect();
        self.node.config.data_dir.join("logs").join(name)
    }
}

/// Writes `at` to `file` (through a file beside it, renamed over it, so a
/// reader never finds half a position).
fn keep_position(file: &std::path::Path, at: &LogPosition) {
    let written = file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
        let part = file.with_extension("part");
        std::fs::write(&part, at.to_text())?;
        std::fs::rename(&part, file)
    });
    if let Err(e) = written {
        warn!(file = %file.display(), error = %e, "could not keep where the log stands; a restart may repeat lines");
    }
}
