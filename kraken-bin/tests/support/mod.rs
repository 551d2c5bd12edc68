//! Shared helpers of the binary's end-to-end tests: a real `kraken up` on a
//! loopback port with its own data directory, the CLI run as a process, and
//! HTTP calls to the API.

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "e2e-platform-token";

pub use kraken_test_support::{base_image, docker_lines, free_port};

/// A running `kraken up`.
pub struct Agent {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    pub ip: String,
}

impl Agent {
    /// Starts an agent with a fresh data directory.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("kraken-e2e-").tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut agent = Self::start_in(&data_dir, free_port());
        agent._dir = Some(dir);
        agent
    }

    /// Starts an agent on `port` with `data_dir` (which may hold an earlier agent's data).
    pub fn start_in(data_dir: &Path, port: u16) -> Self {
        Self::spawn("up", data_dir, "127.0.0.1", port, &[]).expect("kraken up answers")
    }

    /// Starts `kraken <command>` listening on `ip:port` with `data_dir` and
    /// `extra` arguments; waits for `/ping`. Returns the agent's log on failure.
    pub fn spawn(
        command: &str,
        data_dir: &Path,
        ip: &str,
        port: u16,
        extra: &[String],
    ) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log_path = data_dir.with_extension(format!("{port}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kraken"))
            .args([
                command,
                "--listen",
                &format!("{ip}:{port}"),
                "--publish-ip",
                ip,
                "--name",
                &format!("e2e-{ip}"),
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--token", TOKEN, "--base-image", &base_image(), "--allow-local-sources"])
            .args(extra)
            // No discovery on the machine's real network in tests, unless a test scans loopback itself.
            .args(if extra.iter().any(|a| a == "--scan-subnet") { None } else { Some("--no-discovery") })
            .env("KRAKEN_LOG", "info,kraken_lib=debug")
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("kraken starts");
        let mut agent = Self {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
            log_path,
            ip: ip.to_string(),
        };
        // Generous: an agent that starts its own broker waits for RabbitMQ,
        // which takes long on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(v) = get_json_at(&agent.ip, agent.port, "/ping") {
                if v["service"] == "kraken" {
                    return Ok(agent);
                }
            }
            if let Some(child) = agent.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    agent.child = None;
                    return Err(format!("kraken {command} exited with {status}:\n{}", agent.log()));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("kraken {command} did not answer /ping within 120 s:\n{}", agent.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn server(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    pub fn node_id(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node-id")).expect("node id").trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.server(), TOKEN, args)
    }

    /// Stops the agent with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("kraken did not stop within 20 s of SIGTERM");
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the agent's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the agent runs");
        let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    /// Kills the agent with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes every container this agent's node made.
    pub fn remove_containers(&self) {
        let filter = format!("label=kraken.node={}", self.node_id());
        for id in docker_lines(&["ps", "-aq", "--filter", &filter]) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }

    /// Removes the images this agent's node built (by their tags, so an
    /// image another agent tagged too stays for that one).
    pub fn remove_images(&self) {
        let filter = format!("reference=kraken/{}/*", self.node_id());
        let tags = docker_lines(&["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", &filter]);
        if !tags.is_empty() {
            let _ = Command::new("docker").arg("rmi").args(&tags).output();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if self.data_dir.join("node-id").exists() {
            self.remove_containers();
            self.remove_images();
        }
    }
}

pub fn cli(server: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kraken"))
        .args(["--server", server, "--token", token])
        .args(args)
        .env_remove("KRAKEN_DATA_DIR")
        .output()
        .expect("the CLI runs")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

pub fn get_json(port: u16, path: &str) -> Result<Value, String> {
    get_json_at("127.0.0.1", port, path)
}

pub fn get_json_at(ip: &str, port: u16, path: &str) -> Result<Value, String> {
    let resp = client().get(format!("http://{ip}:{port}{path}")).send().map_err(|e| e.to_string())?;
    resp.json().map_err(|e| e.to_string())
}

/// Sends a request with the platform token; returns status and JSON body.
pub fn call(port: u16, method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let c = client();
    let mut req = match method {
        "POST" => c.post(url),
        "DELETE" => c.delete(url),
        _ => c.get(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().expect("the API answers");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Waits until deployment `id` reaches `status` (panics on Errored unless that is the goal).
pub fn wait_status(agent: &Agent, id: &str, status: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(d) = get_json(agent.port, &format!("/api/v1/deployments/{id}")) {
            if d["status"] == status {
                return d;
            }
            if d["status"] == "Errored" && status != "Errored" {
                panic!("deployment {id} errored: {}\n{d:#}\nagent log:\n{}", d["error"], agent.log());
            }
            last = d;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "deployment {id} did not reach {status} within {timeout:?}; last: {last:#}\nagent log:\n{}",
        agent.log()
    );
}

/// GETs `address` until it answers 200, returning the body.
pub fn http_body(address: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match client().get(address).send() {
            Ok(r) if r.status().is_success() => return r.text().unwrap_or_default(),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{address} did not answer within {timeout:?}: {last}");
}

/// All log lines of a deployment, joined.
pub fn log_text(agent: &Agent, id: &str) -> String {
    let v = get_json(agent.port, &format!("/api/v1/deployments/{id}/logs?limit=5000")).expect("logs");
    v["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["line"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the deployment's log contains `needle`.
pub fn wait_log(agent: &Agent, id: &str, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = log_text(agent, id);
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "the log of {id} never contained {needle:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The fetch helper `kraken` runs, built beside it.
pub fn fetch_helper() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kraken")).with_file_name("kraken-fetch")
}

/// The containers of deployment `id` on the engine.
pub fn containers_of(id: &str) -> Vec<String> {
    docker_lines(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=kraken.deployment={id}")])
}

/// The one container of deployment `id`, once there is only one: an update
/// is reported `Running` at the switch, and the previous container is
/// removed after that (once its open connections end, at most the stop
/// timeout). Returns them as they are after 30 s when more than one stay,
/// for the caller's assertion to list.
pub fn the_one_container_of(id: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = containers_of(id);
        if found.len() <= 1 || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A virtual host and a user of its own on the local broker, removed at the end.
pub struct BrokerAccount {
    vhost: String,
    user: String,
    password: String,
}

impl BrokerAccount {
    pub fn new() -> Self {
        let id = format!("{}-{:08x}", std::process::id(), rand_u32());
        let account = Self {
            vhost: format!("kraken-e2e-{id}"),
            user: format!("kraken-e2e-{id}"),
            password: format!("pw-{}", rand_u32()),
        };
        rabbitmqctl(&["add_vhost", &account.vhost]);
        rabbitmqctl(&["add_user", &account.user, &account.password]);
        rabbitmqctl(&["set_permissions", "-p", &account.vhost, &account.user, ".*", ".*", ".*"]);
        account
    }

    pub fn url(&self) -> String {
        format!("amqp://{}:{}@127.0.0.1:5672/{}", self.user, self.password, self.vhost)
    }

    /// Makes the broker unreachable for this account only: its connections
    /// are closed and new ones refused, as if the broker were away.
    pub fn block(&self) {
        rabbitmqctl(&["clear_permissions", "-p", &self.vhost, &self.user]);
        rabbitmqctl(&["close_all_user_connections", &self.user, "a test makes the broker unreachable"]);
    }

    /// Lets this account in again.
    pub fn unblock(&self) {
        rabbitmqctl(&["set_permissions", "-p", &self.vhost, &self.user, ".*", ".*", ".*"]);
    }
}

impl Drop for BrokerAccount {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["delete_vhost", &self.vhost]).output();
        let _ = Command::new("rabbitmqctl").args(["delete_user", &self.user]).output();
    }
}

pub fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    u32::from_le_bytes(b)
}

/// The statuses a deployment went through, oldest first.
pub fn history(d: &Value) -> Vec<String> {
    d["status_history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["status"].as_str().map(String::from))
        .collect()
}

/// Requests a deployment of `url` (branch `main`) from `agent`; its id.
pub fn deploy(agent: &Agent, url: &str) -> String {
    let body = serde_json::json!({"url": url, "branch": "main"});
    let (status, v) = call(agent.port, "POST", "/api/v1/deployments", Some(body), Some(TOKEN));
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("id").to_string()
}

/// Stores `n` deployments that failed to fetch in the state under
/// `data_dir`, before an agent starts there (as an agent that has run a long
/// time would hold them); returns their ids, oldest request first.
pub fn seed_failed_deployments(data_dir: &Path, n: usize) -> Vec<String> {
    use kraken_lib::deployment::Status;
    use kraken_lib::state::{State, StateLimits};
    std::fs::create_dir_all(data_dir).expect("data dir");
    let state = State::open(&data_dir.join("state"), StateLimits::default()).expect("the state opens");
    (0..n)
        .map(|i| {
            let d = state
                .create_deployment(&format!("https://git.example.invalid/app-{i}.git"), "main")
                .expect("stored");
            state
                .update_deployment(&d.id, |d| {
                    d.transition(Status::Errored, "the repository could not be fetched", chrono::Utc::now());
                    true
                })
                .expect("stored");
            d.id
        })
        .collect()
}
