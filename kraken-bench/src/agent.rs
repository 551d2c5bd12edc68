//! A real `kraken up` on loopback for a benchmark: its own data directory,
//! its own port, the platform token; and the API calls the benchmarks make.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// The platform token the benchmark agents use.
pub const TOKEN: &str = "kraken-bench-token";

/// What every benchmark needs to start an agent.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `kraken` binary.
    pub kraken: PathBuf,
    /// The agent's base image.
    pub base_image: String,
}

/// A running agent; killed, and its containers removed, when dropped.
pub struct Agent {
    child: Child,
    /// The API's address, `http://127.0.0.1:port`.
    pub server: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Agent {
    /// Starts `kraken up` with a fresh data directory; `prepare` may fill the
    /// directory first (stored deployments).
    pub async fn start(setup: &Setup, prepare: impl FnOnce(&Path) -> Result<()>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("kraken-bench-").tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        prepare(&data_dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&setup.kraken)
            .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--publish-ip", "127.0.0.1"])
            .args(["--name", "kraken-bench", "--token", TOKEN, "--base-image", &setup.base_image])
            .args(["--allow-local-sources", "--no-discovery"])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", setup.kraken.display()))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let mut agent =
            Self { child, server: format!("http://127.0.0.1:{port}"), data_dir, log_path, _dir: dir, http };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = agent.http.get(format!("{}/ping", agent.server)).send().await {
                if r.status().is_success() {
                    return Ok(agent);
                }
            }
            if let Some(status) = agent.child.try_wait()? {
                bail!("kraken up exited with {status}:\n{}", agent.log());
            }
            if Instant::now() > deadline {
                bail!("kraken up did not answer /ping within 60 s:\n{}", agent.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET path` with the token, as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(format!("{}{path}", self.server)).bearer_auth(TOKEN).send().await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    }

    /// Requests a deployment of `url` (branch `main`); returns its id.
    pub async fn deploy(&self, url: &str) -> Result<String> {
        let r = self
            .http
            .post(format!("{}/api/v1/deployments", self.server))
            .bearer_auth(TOKEN)
            .json(&json!({ "url": url, "branch": "main" }))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        match body["id"].as_str() {
            Some(id) if status.is_success() => Ok(id.to_string()),
            _ => bail!("POST /api/v1/deployments: {status}: {body}"),
        }
    }

    /// Waits until the deployment's status is one of `wanted` (or Errored,
    /// which is an error unless wanted); returns the deployment.
    pub async fn wait_for(&self, id: &str, wanted: &[&str], within: Duration) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let d = self.get(&format!("/api/v1/deployments/{id}")).await?;
            let status = d["status"].as_str().unwrap_or_default();
            if wanted.contains(&status) {
                return Ok(d);
            }
            if status == "Errored" {
                bail!("deployment {id} failed: {}", d["error"]);
            }
            if Instant::now() > deadline {
                bail!("deployment {id} is {status}, not {wanted:?}, after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Removes a deployment and waits until it is gone.
    pub async fn destroy(&self, id: &str) -> Result<()> {
        let r = self
            .http
            .delete(format!("{}/api/v1/deployments/{id}", self.server))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("DELETE deployment {id}: {}", r.status());
        }
        self.wait_for(id, &["Destroyed"], Duration::from_secs(60)).await.map(|_| ())
    }

    /// Removes every container this agent's node made (on drop, and when a
    /// benchmark stops early).
    fn remove_containers(&self) {
        let Ok(node) = std::fs::read_to_string(self.data_dir.join("node-id")) else { return };
        let filter = format!("label=kraken.node={}", node.trim());
        let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_containers();
    }
}

/// The resident memory of process `pid`, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The peak resident memory of process `pid`, in bytes (`VmHWM`).
pub fn hwm_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The CPU time process `pid` has used (user + system).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux the agent runs on.
    Some(Duration::from_millis(ticks * 10))
}
