//! Helpers of the browser test: start the real `kraken` binary and a headless
//! Chromium driven through ChromeDriver, make the fixture app's git repository,
//! wait for conditions in the page with deadlines, save screenshots, and clean
//! everything up (also when a test fails).

#![allow(dead_code)]

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The text the fixture app answers every request with.
pub const APP_ANSWER: &str = "hello from kraken ui test";
/// The port the fixture app listens on inside its container.
pub const APP_PORT: u16 = 3000;
/// The fixture app's `endpoint`: free metadata, a link to its home page.
pub const APP_HOME: &str = "https://example.org/kraken-ui-test";
/// The fixture app's name in its `shipwreck.toml`.
pub const APP_NAME: &str = "kraken-ui-test";
/// The branch of the fixture repository without a `shipwreck.toml`.
pub const BRANCH_WITHOUT_MANIFEST: &str = "no-manifest";

pub use kraken_test_support::free_port;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where screenshots go: `<target dir>/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).or_else(|| {
        // The test executable lives in <target>/<profile>/deps/.
        std::env::current_exe().ok().and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
    });
    let target = target.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

// ---- the fixture app ------------------------------------------------------

/// A git repository with the fixture node app on `main` and a branch without a manifest.
pub struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// Creates the repository in a fresh temporary directory.
    pub fn create() -> Fixture {
        let dir =
            tempfile::Builder::new().prefix("kraken-ui-app-").tempdir().expect("temp dir for the fixture");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = git2::Repository::init_opts(dir.path(), &opts).expect("git init of the fixture");
        let manifest = format!(
            "[app]\nname = \"{APP_NAME}\"\nversion = \"1.0.0\"\nauthor = \"Kraken tests\"\n\
             endpoint = \"{APP_HOME}\"\n\n\
             [config]\nport = {APP_PORT}\nlang = \"node\"\nrun = \"node server.js\"\n"
        );
        let server = format!(
            "const http = require(\"http\");\n\
             const port = {APP_PORT};\n\
             http.createServer((req, res) => {{\n\
             \x20 res.writeHead(200, {{ \"Content-Type\": \"text/plain\" }});\n\
             \x20 res.end(\"{APP_ANSWER}\\n\");\n\
             }}).listen(port, \"0.0.0.0\", () => console.log(`listening on ${{port}}`));\n"
        );
        std::fs::write(dir.path().join("shipwreck.toml"), manifest).expect("write shipwreck.toml");
        std::fs::write(dir.path().join("server.js"), server).expect("write server.js");

        let sig = git2::Signature::now("Kraken tests", "tests@kraken.invalid").expect("signature");
        let mut index = repo.index().expect("index");
        index.add_path(Path::new("shipwreck.toml")).expect("add shipwreck.toml");
        index.add_path(Path::new("server.js")).expect("add server.js");
        index.write().expect("write index");
        let tree = repo.find_tree(index.write_tree().expect("write tree")).expect("find tree");
        let main =
            repo.commit(Some("HEAD"), &sig, &sig, "The fixture app", &tree, &[]).expect("commit on main");

        // A branch whose tree has the app but no shipwreck.toml.
        let mut builder = repo.treebuilder(Some(&tree)).expect("tree builder");
        builder.remove("shipwreck.toml").expect("drop the manifest from the tree");
        let bare_tree = repo.find_tree(builder.write().expect("write tree")).expect("find tree");
        let parent = repo.find_commit(main).expect("main commit");
        let commit = repo
            .commit(None, &sig, &sig, "Without a manifest", &bare_tree, &[&parent])
            .expect("commit without a manifest");
        repo.reference(&format!("refs/heads/{BRANCH_WITHOUT_MANIFEST}"), commit, false, "branch")
            .expect("create the branch without a manifest");
        // The working tree stays on main.
        Fixture { dir }
    }

    /// The URL to give the platform: the repository's absolute path.
    pub fn url(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }
}

// ---- the platform ---------------------------------------------------------

/// A running `kraken up`, killed (and its containers removed) when dropped.
pub struct Platform {
    extra: Vec<String>,
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The platform token given on the command line.
    pub token: String,
    /// The node id `/ping` reported.
    pub node_id: String,
    log: PathBuf,
    _data_dir: TempDir,
    _work: TempDir,
}

impl Platform {
    /// Starts `kraken up` on a free port and waits (60 s at most) until `/ping` answers.
    pub async fn start() -> Platform {
        Self::start_with(&[]).await
    }

    /// [`Platform::start`] with `extra` arguments for `kraken up`.
    pub async fn start_with(extra: &[String]) -> Platform {
        Self::start_prepared(extra, |_| {}).await
    }

    /// [`Platform::start_with`], after `prepare` has had the data directory
    /// (to store records there before the agent starts).
    pub async fn start_prepared(extra: &[String], prepare: impl FnOnce(&Path)) -> Platform {
        let work = tempfile::Builder::new().prefix("kraken-ui-run-").tempdir().expect("temp dir");
        let data_dir = tempfile::Builder::new().prefix("kraken-ui-data-").tempdir().expect("temp data dir");
        prepare(data_dir.path());
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let token = format!("ui-test-token-{}-{port}", std::process::id());
        let log = work.path().join("kraken.log");
        let child = spawn_agent(&listen, data_dir.path(), &token, &log, extra);
        let mut platform = Platform {
            extra: extra.to_vec(),
            child,
            base: format!("http://{listen}"),
            token,
            node_id: String::new(),
            log,
            _data_dir: data_dir,
            _work: work,
        };
        platform.node_id = platform.wait_for_ping(Duration::from_secs(60)).await;
        platform
    }

    async fn wait_for_ping(&mut self, limit: Duration) -> String {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let url = format!("{}/ping", self.base);
        let deadline = Instant::now() + limit;
        let mut last;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "`kraken up` exited with {status} before answering {url}.\nIts output:\n{}",
                    tail(&self.log, 60)
                );
            }
            match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => match response.json::<Value>().await {
                    Ok(body) if body["service"] == "kraken" => {
                        return body["node_id"].as_str().unwrap_or_default().to_string();
                    }
                    Ok(body) => last = format!("unexpected /ping body {body}"),
                    Err(e) => last = format!("/ping answered something that is not JSON: {e}"),
                },
                Ok(response) => last = format!("/ping answered {}", response.status()),
                Err(e) => last = format!("{e}"),
            }
            if Instant::now() > deadline {
                panic!(
                    "`kraken up` did not answer {url} within {limit:?} (last: {last}).\nIts output:\n{}",
                    tail(&self.log, 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Kills the agent (as a crash would); its apps and data stay.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the agent again on the same address with the same data.
    pub async fn restart(&mut self) {
        let listen = self.base.trim_start_matches("http://").to_string();
        self.child = spawn_agent(&listen, self._data_dir.path(), &self.token, &self.log, &self.extra);
        self.wait_for_ping(Duration::from_secs(60)).await;
    }

    /// The last lines the agent printed (for failure messages).
    pub fn log_tail(&self) -> String {
        tail(&self.log, 80)
    }
}

fn spawn_agent(listen: &str, data_dir: &Path, token: &str, log: &Path, extra: &[String]) -> Child {
    let base_image = env_or("KRAKEN_TEST_BASE_IMAGE", "kraken-test-base:bookworm-v2");
    let out =
        std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the kraken log file");
    let err = out.try_clone().expect("clone the log file handle");
    let binary = env!("CARGO_BIN_EXE_kraken");
    Command::new(binary)
        .args(["up", "--no-discovery", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(["--token", token, "--base-image", &base_image, "--allow-local-sources"])
        .args(extra)
        .env("RUST_LOG", env_or("RUST_LOG", "info"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {binary} up: {e}"))
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.node_id.is_empty() {
            return;
        }
        // Remove the containers this node started (it was killed, so it could not).
        let listed = Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=kraken.managed=true", "--filter"])
            .arg(format!("label=kraken.node={}", self.node_id))
            .output();
        if let Ok(out) = listed {
            let ids: Vec<String> =
                String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output();
            }
        }
    }
}

// ---- the browser ----------------------------------------------------------

/// ChromeDriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: TempDir,
    log: PathBuf,
}

impl Browser {
    /// Starts ChromeDriver on a free port, waits (30 s at most) until it is ready, and opens a session.
    pub async fn start() -> Browser {
        let profile = tempfile::Builder::new().prefix("kraken-ui-chromium-").tempdir().expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let driver_path = env_or("KRAKEN_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start {driver_path} (install Debian's chromium-driver): {e}")
            });
        let mut browser = Browser { driver, client: None, _profile: profile, log };
        let url = format!("http://127.0.0.1:{port}");
        browser.wait_until_ready(&url, Duration::from_secs(30)).await;

        let user_data = browser._profile.path().join("profile");
        let chromium = env_or("KRAKEN_TEST_CHROMIUM", "/usr/bin/chromium");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    "--disable-dev-shm-usage", "--window-size=1280,800",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            }),
        );
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let connect = builder.connect(&url);
        let client = match tokio::time::timeout(Duration::from_secs(60), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                panic!("ChromeDriver could not open a Chromium session: {e}\n{}", tail(&browser.log, 30))
            }
            Err(_) => {
                panic!("ChromeDriver did not open a Chromium session within 60 s\n{}", tail(&browser.log, 30))
            }
        };
        client.set_window_size(1280, 800).await.expect("set the window size");
        browser.client = Some(client);
        browser
    }

    async fn wait_until_ready(&mut self, url: &str, limit: Duration) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("chromedriver exited with {status}\n{}", tail(&self.log, 30));
            }
            if let Ok(response) = http.get(format!("{url}/status")).send().await {
                if let Ok(body) = response.json::<Value>().await {
                    if body["value"]["ready"] == true {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "chromedriver did not become ready at {url} within {limit:?}\n{}",
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ends the session (Chromium quits), then ChromeDriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), client.close()).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // ChromeDriver was started in its own process group; end the group it leads
        // (Chromium, when a failed test could not end the session).
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.driver.id())]).output();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// ---- driving the page -----------------------------------------------------

/// What a test body gets: the browser session, the platform's address and token.
#[derive(Clone)]
pub struct Ui {
    /// The WebDriver session.
    pub client: Client,
    /// `http://127.0.0.1:<port>` of the platform.
    pub base: String,
    /// The platform token.
    pub token: String,
    /// The platform's node id.
    pub node_id: String,
    test: String,
    platform: std::sync::Arc<tokio::sync::Mutex<Platform>>,
}

impl Ui {
    /// Kills the platform's agent, as a crash would.
    pub async fn kill_platform(&self) {
        self.platform.lock().await.kill();
    }

    /// Starts the platform's agent again (same address, same data).
    pub async fn restart_platform(&self) {
        self.platform.lock().await.restart().await;
    }

    /// Opens a page of the interface by its hash route (`"#/nodes"`).
    pub async fn open(&self, route: &str) {
        self.client.goto(&format!("{}/{route}", self.base)).await.expect("open the page");
    }

    /// Waits for an element (at most `limit`).
    pub async fn element(&self, css: &str, limit: Duration) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(limit)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}` within {limit:?}: {e}"))
    }

    /// Runs a script in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Evaluates `script` until `done` accepts its value, at most `limit`; returns that value.
    /// `fail` may stop the wait early with a reason (for example an Errored deployment).
    pub async fn wait_js(
        &self,
        what: &str,
        limit: Duration,
        script: &str,
        done: impl Fn(&Value) -> bool,
        fail: impl Fn(&Value) -> Option<String>,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.client.execute(script, vec![]).await.unwrap_or(Value::Null);
            if done(&value) {
                return value;
            }
            if let Some(reason) = fail(&value) {
                self.screenshot("failure").await;
                panic!("while waiting for {what}: {reason}");
            }
            if Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!("{what} did not happen within {limit:?}; last seen: {value}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Saves `<test>-<name>-desktop.png` (1280×800) and `<test>-<name>-phone.png` (390×844).
    pub async fn screenshots(&self, name: &str) {
        for (label, width, height) in [("phone", 390, 844), ("desktop", 1280, 800)] {
            if self.client.set_window_size(width, height).await.is_err() {
                continue;
            }
            self.save(&format!("{name}-{label}")).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        self.save(name).await;
    }

    async fn save(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let path = screenshot_dir().join(format!("{}-{name}.png", self.test));
            let _ = std::fs::write(&path, png);
        }
    }
}

/// Starts the platform and the browser, runs `body`, and always cleans up;
/// a failing body leaves a screenshot and the agent's last lines in the output.
pub async fn run_ui_test<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Ui) -> Fut,
    Fut: Future<Output = ()>,
{
    run_ui_test_with(test, &[], body).await
}

/// [`run_ui_test`] with `extra` arguments for the platform's `kraken up`.
pub async fn run_ui_test_with<F, Fut>(test: &str, extra: &[String], body: F)
where
    F: FnOnce(Ui) -> Fut,
    Fut: Future<Output = ()>,
{
    run_ui_test_prepared(test, extra, |_| {}, body).await
}

/// [`run_ui_test_with`], after `prepare` has had the agent's data directory.
pub async fn run_ui_test_prepared<F, Fut>(test: &str, extra: &[String], prepare: impl FnOnce(&Path), body: F)
where
    F: FnOnce(Ui) -> Fut,
    Fut: Future<Output = ()>,
{
    let platform = Platform::start_prepared(extra, prepare).await;
    let browser = Browser::start().await;
    let ui = Ui {
        client: browser.client.clone().expect("a started browser has a session"),
        base: platform.base.clone(),
        token: platform.token.clone(),
        node_id: platform.node_id.clone(),
        test: test.to_string(),
        platform: std::sync::Arc::new(tokio::sync::Mutex::new(platform)),
    };
    let outcome = AssertUnwindSafe(body(ui.clone())).catch_unwind().await;
    if outcome.is_err() {
        ui.screenshot("failure").await;
        eprintln!("--- last lines of `kraken up` ---\n{}", ui.platform.lock().await.log_tail());
    }
    browser.close().await;
    drop(ui);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Browser tests share one machine's CPU and Docker; run them one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A runtime for one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}
