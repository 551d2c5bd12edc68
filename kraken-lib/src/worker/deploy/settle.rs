//! The settle phase: the app counts as started once it stays up for
//! [`SETTLE`]; then the engine is told to bring it back after a stop or a
//! reboot. An app that stops before is removed with its image, after its
//! last words reached the log.

use std::time::Duration;

use futures::TryStreamExt;
use tracing::warn;

use super::{Failed, Job};

/// How long a freshly started app must stay up to count as started.
const SETTLE: Duration = Duration::from_millis(1500);

/// Waits for the container to stay up for [`SETTLE`].
pub(super) async fn settle(job: &Job<'_>, container_id: &str) -> Result<(), Failed> {
    let runtime = &job.shared.runtime;
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut ticker = tokio::time::interval(Duration::from_millis(150));
    loop {
        ticker.tick().await;
        let stopped = match runtime.inspect(container_id).await {
            Ok(s) if !s.running || s.restart_count > 0 => Some(match s.exit_code {
                Some(code) => {
                    format!("the app exited with code {code} right after it started; its log shows why")
                }
                None => "the app stopped right after it started; its log shows why".to_string(),
            }),
            Ok(_) => None,
            Err(e) => Some(format!("the container vanished after it started: {e}")),
        };
        if let Some(reason) = stopped {
            // Let the log follower pick up the app's last words before removing it.
            let settle_logs = tokio::time::Instant::now() + Duration::from_millis(500);
            let mut logs = runtime.logs(container_id, false, false);
            while let Ok(Ok(Some(_))) = tokio::time::timeout_at(settle_logs, logs.try_next()).await {}
            job.shared.stop_following(&job.spec.deployment);
            let _ = runtime.remove_container(container_id).await;
            job.remove_image(&job.tag).await;
            return Err(Failed(reason));
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    if let Err(e) = runtime.keep_restarting(container_id).await {
        warn!(error = %e, "could not set the container's restart policy; it will not come back after a reboot");
    }
    Ok(())
}
