//! Helpers for tests against the real Docker engine: the local base image,
//! unique names, a guard that removes what a test made, and an HTTP GET that
//! retries until a deadline.
//!
//! Everything a test creates carries the label [`TEST_LABEL`]` = <its run id>`;
//! the [`Cleanup`] guard removes containers and images with that label when
//! it is dropped, also when the test panics.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Label put on every container and image a test makes, valued with the test's run id.
pub const TEST_LABEL: &str = "kraken.test";

pub use kraken_test_support::base_image;

/// A name no other test run uses: `kt-<prefix>-<pid>-<time>-<counter>`, lowercase
/// so it is valid as a container name and an image tag.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("kt-{}-{}-{:x}-{}", prefix.to_lowercase(), std::process::id(), nanos, n)
}

/// Removes, when dropped, every container and image labelled
/// [`TEST_LABEL`]` = id`, every container whose command contains `id`, and
/// the image tags it was told about.
#[derive(Debug)]
pub struct Cleanup {
    /// The run id the label carries.
    pub id: String,
    tags: Vec<String>,
}

impl Cleanup {
    /// A guard for the run id `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), tags: Vec::new() }
    }

    /// The label pair `(TEST_LABEL, id)`.
    pub fn label(&self) -> (String, String) {
        (TEST_LABEL.to_string(), self.id.clone())
    }

    /// Also removes the image tag `tag` at the end.
    pub fn track_tag(&mut self, tag: impl Into<String>) {
        self.tags.push(tag.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={TEST_LABEL}={}", self.id);
        // Labelled containers, and unlabelled ones whose command names the run
        // id (a failed build's intermediate containers, should any survive).
        let mut ids = docker_lines(&["ps", "-aq", "--filter", &filter]);
        ids.extend(
            all_containers()
                .into_iter()
                .filter(|c| c.contains(&self.id))
                .filter_map(|c| c.split_whitespace().next().map(String::from)),
        );
        for id in ids {
            let _ = Command::new("docker").args(["rm", "-f", "-v", &id]).output();
        }
        for id in docker_lines(&["images", "-q", "--filter", &filter]) {
            let _ = Command::new("docker").args(["rmi", "-f", &id]).output();
        }
        for tag in &self.tags {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
        }
    }
}

pub use kraken_test_support::docker_lines;

/// Ids and full commands of all containers on the engine, `<id> <command>` per line.
pub fn all_containers() -> Vec<String> {
    docker_lines(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"])
}

/// GETs `http://127.0.0.1:<port><path>` until it answers 200 or `timeout`
/// passes; returns the body.
///
/// # Panics
/// When no 200 answer came in time, with the last error.
pub async fn http_get(port: u16, path: &str, timeout: Duration) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => return resp.text().await.unwrap(),
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "GET {url} did not answer 200 within {timeout:?}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`
/// naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes, when dropped, every container and image that Kraken made for the
/// node with id `.0` (containers by their `kraken.node` label, images by
/// their `kraken/<node>/…` tag), so a failed run of an in-process platform
/// leaves nothing behind.
pub struct NodeCleanup(pub String);

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let filter = format!("label=kraken.node={}", self.0);
        for id in docker_lines(&["ps", "-aq", "--filter", &filter]) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
        let images = format!("reference=kraken/{}/*", self.0);
        for id in docker_lines(&["images", "-q", "--filter", &images]) {
            let _ = Command::new("docker").args(["rmi", "-f", &id]).output();
        }
    }
}
