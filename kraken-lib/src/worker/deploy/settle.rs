//! The settle phase: the app counts as ready as soon as it accepts a TCP
//! connection on its port (reached on the container's own address, not
//! through the published port, which the engine's proxy answers for any
//! container) and, when the manifest names a `health` path, answers a GET of
//! it with a status below 500. (The engine is told to bring it back after a
//! stop or a reboot once the deployment is reported running, [`keep_running`]:
//! that request takes the engine 15–120 ms, which the app's first answer
//! need not wait for.) An app that stops first, or never listens within the node's
//! `ready_timeout`, is removed with its image, after its last words reached
//! the log, and its deployment fails with its exit code and the end of its
//! log.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use futures::TryStreamExt;
use tracing::warn;

use super::{Failed, Job};

/// How often the container's state and port are looked at while it starts.
const POLL: Duration = Duration::from_millis(25);
/// How long one connection attempt may take.
const CONNECT: Duration = Duration::from_secs(1);
/// How many of a failed app's last log lines its error shows.
const LOG_LINES: usize = 10;
/// How long a failed app's output may take to read.
const LOG_READ: Duration = Duration::from_secs(5);
/// The most characters of one such line shown.
const LOG_LINE_CHARS: usize = 300;

/// Waits until the container accepts connections on the app's port; returns
/// the container's address. `following`: whether its output is followed
/// into the deployment's log already.
pub(super) async fn settle(job: &Job<'_>, container_id: &str, following: bool) -> Result<IpAddr, Failed> {
    let runtime = &job.shared.runtime;
    let port = job.spec.manifest.config.port;
    let timeout = job.shared.node.config.app_limits.ready_timeout;
    let health = job.spec.manifest.config.health.as_deref();
    let client = reqwest::Client::builder().timeout(CONNECT).no_proxy().build().unwrap_or_default();
    let mut last_answer = None;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        ticker.tick().await;
        match runtime.inspect(container_id).await {
            Ok(s) if !s.running || s.restart_count > 0 => {
                break match s.exit_code {
                    Some(code) => format!("the app exited with code {code} right after it started"),
                    None => "the app stopped right after it started".to_string(),
                }
            }
            Ok(s) => {
                if let Some(address) = s.address {
                    let connect = tokio::net::TcpStream::connect((address, port));
                    let listens = matches!(tokio::time::timeout(CONNECT, connect).await, Ok(Ok(_)));
                    let healthy = match health.filter(|_| listens) {
                        Some(path) => {
                            let url = format!("http://{}{path}", std::net::SocketAddr::from((address, port)));
                            let answer = client.get(&url).send().await.map(|r| r.status());
                            last_answer = Some(match &answer {
                                Ok(status) => format!("it last answered {status}"),
                                Err(e) => format!("it last answered: {e}"),
                            });
                            answer.is_ok_and(|status| !status.is_server_error())
                        }
                        None => listens,
                    };
                    if healthy {
                        return Ok(address);
                    }
                }
            }
            Err(e) => break format!("the container vanished after it started: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            if let (Some(path), Some(answer)) = (health, &last_answer) {
                break format!(
                    "the app never answered its health path {path} on port {port} with a status below 500 \
                     within {} s ({answer})",
                    timeout.as_secs_f64()
                );
            }
            break format!(
                "the app never listened on port {port} within {} s (the manifest's `port` must be the \
                 one it listens on, on all addresses, not only 127.0.0.1)",
                timeout.as_secs_f64()
            );
        }
    };
    let tail = log_tail(job, container_id, !following).await;
    if following {
        job.shared.stop_following(&job.spec.deployment);
    }
    let _ = runtime.remove_container(container_id).await;
    job.remove_image(&job.tag).await;
    Err(Failed(match tail {
        Some(tail) => format!("{reason}; the end of its log:\n{tail}"),
        None => format!("{reason}; it printed nothing"),
    }))
}

/// From now on the engine brings the started app back when it stops. An
/// agent stopped before this finds the container running at its next start
/// and asks again (`worker::adopt`).
pub(super) async fn keep_running(job: &Job<'_>, container_id: &str) {
    if let Err(e) = job.shared.runtime.keep_restarting(container_id).await {
        warn!(error = %e, "could not set the container's restart policy; it will not come back after a reboot");
    }
}

/// Returns the last [`LOG_LINES`] lines the container printed, if any; with
/// `copy`, copies all it printed into the deployment's log (for a container
/// nothing followed). Reading also gives a follower time to pick up the
/// app's last words.
async fn log_tail(job: &Job<'_>, container_id: &str, copy: bool) -> Option<String> {
    let until = tokio::time::Instant::now() + LOG_READ;
    let mut logs = job.shared.runtime.logs(container_id, false, false);
    let mut tail = VecDeque::with_capacity(LOG_LINES);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(until, logs.try_next()).await {
        if tail.len() == LOG_LINES {
            tail.pop_front();
        }
        if copy {
            job.sink.send(&line.stream, line.line.clone());
        }
        tail.push_back(
            line.line.chars().filter(|c| !c.is_control()).take(LOG_LINE_CHARS).collect::<String>(),
        );
    }
    (!tail.is_empty()).then(|| Vec::from(tail).join("\n"))
}
