//! Real apps deployed through a real platform: each fixture of
//! `tests/fixtures/apps/` that no earlier builder could run is validated (the
//! whole plan, with the inferred commands), deployed by an in-process
//! platform (orchestrator and worker) on the real Docker engine, installs its
//! dependencies from npm or PyPI inside the build (trusting the machine's CA
//! bundle through the node's build CA option), and answers HTTP. Then a
//! source-only change is deployed as an update, which must reuse the install
//! layer. Cold and update build times are printed for docs/benchmarks.md.

#[path = "common/apps.rs"]
mod apps;
#[path = "common/docker.rs"]
mod docker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::Platform;
use kraken_lib::runtime::DockerRuntime;
use serde_json::{json, Value};

use apps::AppRepo;

/// One fixture: what the plan must say and what the app must answer.
struct Case {
    /// Folder under `tests/fixtures/apps/`.
    dir: &'static str,
    /// The builder detection (or `lang`) must choose.
    builder: &'static str,
    /// The start command the plan must infer (or take from `run`).
    start: &'static str,
    /// Something the start step's reason must say.
    start_reason: &'static str,
    /// The body the app must answer on `/`.
    body: &'static str,
    /// A source file changed by the update: (path, text replaced, replacement).
    change: (&'static str, &'static str, &'static str),
}

const CASES: &[Case] = &[
    Case {
        dir: "node-express",
        builder: "node",
        start: "npm start",
        start_reason: "scripts.start in package.json",
        body: "hello from express",
        change: ("server.js", "hello from express", "hello again from express"),
    },
    Case {
        dir: "node-typescript",
        builder: "node",
        start: "npm start",
        start_reason: "scripts.start in package.json (\"node dist/index.js\")",
        body: "hello from typescript",
        change: ("src/index.ts", "hello from typescript", "hello again from typescript"),
    },
    Case {
        dir: "node-pnpm",
        builder: "node",
        start: "pnpm run start",
        start_reason: "scripts.start in package.json",
        body: "hello from pnpm, a minute is 1m",
        change: ("index.js", "hello from pnpm", "hello again from pnpm"),
    },
    Case {
        dir: "node-vite-spa",
        builder: "node",
        start: "exec busybox httpd -f -v -p 8080 -h /site",
        start_reason: "a single-page app, built and served as static files (vite builds into dist/)",
        body: "hello from a vite single-page app",
        change: ("index.html", "hello from a vite", "hello again from a vite"),
    },
    Case {
        dir: "python-flask",
        builder: "python",
        start: "gunicorn app:app --bind 0.0.0.0:$PORT",
        start_reason:
            "app.py makes a WSGI app `app = Flask(…)`, served by gunicorn (gunicorn is installed for it)",
        body: "hello from flask",
        change: ("app.py", "hello from flask", "hello again from flask"),
    },
    Case {
        dir: "python-fastapi-pyproject",
        builder: "python",
        start: "uvicorn main:app --host 0.0.0.0 --port $PORT",
        start_reason: "main.py makes an ASGI app `app = FastAPI(…)`, served by uvicorn",
        body: "hello from fastapi",
        change: ("main.py", "hello from fastapi", "hello again from fastapi"),
    },
    Case {
        dir: "python-django",
        builder: "python",
        start: "gunicorn hello.wsgi:application --bind 0.0.0.0:$PORT",
        start_reason: "manage.py found: a Django project",
        body: "hello from django",
        change: ("hello/urls.py", "hello from django", "hello again from django"),
    },
    Case {
        dir: "static-public",
        builder: "static",
        start: "busybox httpd -f -v -p 8080 -h /site",
        start_reason: "index.html found in public/",
        body: "hello from public/",
        change: ("public/index.html", "hello from public/", "hello again from public/"),
    },
    Case {
        dir: "monorepo-subfolder",
        builder: "node",
        start: "node server.js",
        start_reason: "main in package.json names \"server.js\"",
        body: "hello from services/api",
        change: ("services/api/server.js", "hello from services/api", "hello again from services/api"),
    },
    Case {
        dir: "original-format",
        builder: "node",
        start: "npm start",
        start_reason: "`run` in shipwreck.toml",
        body: "hello from scapenode",
        change: ("index.js", "hello from scapenode", "hello again from scapenode"),
    },
];

/// Deployed first, before the others start (see the test).
const FIRST: &[&str] = &["original-format", "static-public"];

/// How long one deployment may take (a cold build installs from the registries).
const DEPLOY: Duration = Duration::from_secs(900);

/// The machine's CA bundle: what lets containers reach npm and PyPI here.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client of the platform's API.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn deployment(&self, id: &str) -> Value {
        self.send(reqwest::Method::GET, &format!("/api/v1/deployments/{id}"), None).await.1
    }

    /// Waits until the deployment is Running at `commit` (or fails on Errored).
    async fn wait_running(&self, id: &str, commit: &str, what: &str) -> Value {
        let deadline = Instant::now() + DEPLOY;
        loop {
            let d = self.deployment(id).await;
            if d["status"] == "Running" && d["commit"] == commit && d["address"].is_string() {
                return d;
            }
            if d["status"] == "Errored" {
                let log = self.log(id, 0).await.join("\n");
                panic!("{what} errored: {}\n--- log ---\n{log}", d["error"]);
            }
            assert!(Instant::now() < deadline, "{what} not Running within {DEPLOY:?}: {d}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The deployment's log lines from `offset` on.
    async fn log(&self, id: &str, mut offset: u64) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let path = format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=5000");
            let (_, page) = self.send(reqwest::Method::GET, &path, None).await;
            let lines = page["lines"].as_array().cloned().unwrap_or_default();
            out.extend(lines.iter().filter_map(|l| l["line"].as_str().map(String::from)));
            let next = page["next_offset"].as_u64().unwrap_or(offset);
            if lines.is_empty() || next == offset {
                return out;
            }
            offset = next;
        }
    }

    async fn log_end(&self, id: &str) -> u64 {
        let path = format!("/api/v1/deployments/{id}/logs?offset=0&limit=5000");
        let mut offset = 0;
        loop {
            let (_, page) = self
                .send(reqwest::Method::GET, &path.replace("offset=0", &format!("offset={offset}")), None)
                .await;
            let next = page["next_offset"].as_u64().unwrap_or(offset);
            if next == offset {
                return offset;
            }
            offset = next;
        }
    }
}

/// GETs `address` until it answers 200; returns the body.
async fn body_of(address: &str) -> String {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match client.get(address).send().await {
            Ok(r) if r.status().is_success() => return r.text().await.unwrap_or_default(),
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "GET {address} did not answer 200: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the build log shows the step running `command` taken from the cache.
fn step_cached(log: &[String], command: &str) -> Option<bool> {
    let at = log.iter().position(|l| l.contains("RUN ") && l.contains(command))?;
    log[at + 1..].iter().map(|l| l.trim()).find(|l| !l.is_empty()).map(|l| l.contains("Using cache"))
}

/// What one fixture's run measured.
struct Measured {
    dir: &'static str,
    cold: Duration,
    update: Duration,
    cold_install_cached: Option<bool>,
}

async fn deploy_and_update(api: Api, case: &'static Case) -> Measured {
    let repo = AppRepo::new(case.dir);
    let url = repo.url();

    // validate makes the whole plan and shows what was inferred and why.
    let (status, v) = api
        .send(reqwest::Method::POST, "/api/v1/validate", Some(json!({"url": url, "branch": "main"})))
        .await;
    assert_eq!(status, 200, "{}: validate: {v}", case.dir);
    assert_eq!(v["builder"], case.builder, "{}: {v}", case.dir);
    let plan = &v["plan"];
    let start = plan["start"]["command"].as_str().unwrap_or_default();
    assert!(start.contains(case.start), "{}: start {start:?}", case.dir);
    let reason = plan["start"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(case.start_reason), "{}: start reason {reason:?}", case.dir);
    assert!(plan["dockerfile"].as_str().is_some_and(|d| d.starts_with("FROM ")), "{}: {plan}", case.dir);
    let install = plan["install"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["command"].as_str())
        .map(String::from);

    let began = Instant::now();
    let (status, created) = api
        .send(reqwest::Method::POST, "/api/v1/deployments", Some(json!({"url": url, "branch": "main"})))
        .await;
    assert_eq!(status, 202, "{}: {created}", case.dir);
    let id = created["id"].as_str().expect("id").to_string();
    let d = api.wait_running(&id, &repo.head(), case.dir).await;
    let cold = began.elapsed();
    let address = d["address"].as_str().expect("address").to_string();
    let body = body_of(&address).await;
    assert!(body.contains(case.body), "{} answered {body:?}", case.dir);
    let cold_log = api.log(&id, 0).await;
    let cold_install_cached = install.as_deref().and_then(|c| step_cached(&cold_log, c));

    // A change of source only: the install layer is reused.
    let (file, from, to) = case.change;
    let text = std::fs::read_to_string(repo.path().join(file)).expect("fixture file");
    assert!(text.contains(from), "{}: {file} has {from:?}", case.dir);
    let offset = api.log_end(&id).await;
    let head = repo.commit(&[(file, &text.replace(from, to))], "change the source only");
    let began = Instant::now();
    let (status, answer) =
        api.send(reqwest::Method::POST, &format!("/api/v1/deployments/{id}/update"), None).await;
    assert_eq!(status, 202, "{}: update: {answer}", case.dir);
    let d = api.wait_running(&id, &head, &format!("{} update", case.dir)).await;
    let update = began.elapsed();
    let body = body_of(d["address"].as_str().expect("address")).await;
    assert!(
        body.contains(&case.body.replace(from, to)) || body.contains(to),
        "{} after update answered {body:?}",
        case.dir
    );
    if let Some(command) = &install {
        let log = api.log(&id, offset).await;
        assert_eq!(
            step_cached(&log, command),
            Some(true),
            "{}: the install step `{command}` was not taken from the cache after a source-only change:\n{}",
            case.dir,
            log.join("\n")
        );
    }

    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/api/v1/deployments/{id}"), None).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    while api.deployment(&id).await["status"] != "Destroyed" {
        assert!(Instant::now() < deadline, "{} was not destroyed", case.dir);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Measured { dir: case.dir, cold, update, cold_install_cached }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_apps_build_install_their_dependencies_and_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = NodeConfig::new(dir.path().join("data"), "127.0.0.1:0".parse().expect("address"));
    config.publish_ip = "127.0.0.1".to_string();
    // The fixtures are repositories on this machine's disk, fetched by the
    // library's own small fetch program (this test binary is not one).
    config.allow_local_sources = true;
    config.fetch_program =
        kraken_lib::fetcher::FetchProgram::Program(PathBuf::from(env!("CARGO_BIN_EXE_kraken-fetch")));
    if std::path::Path::new(SYSTEM_BUNDLE).is_file() {
        config.build_ca = vec![PathBuf::from(SYSTEM_BUNDLE)];
    }
    let registry = BuilderRegistry::with_builtins(BaseImages::uniform(&docker::base_image()));
    let runtime = DockerRuntime::connect().await.expect("docker");
    let platform = Platform::builder(config)
        .registry(registry)
        .runtime(Arc::new(runtime))
        .start()
        .await
        .expect("platform");
    let node_id =
        std::fs::read_to_string(dir.path().join("data/node-id")).expect("node id").trim().to_string();
    let _cleanup = docker::NodeCleanup(node_id);
    let api = Api {
        http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client"),
        base: format!("http://{}", platform.local_addr()),
        token: platform.token().expect("the agent that made the token knows it").to_string(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(platform.run(async {
        let _ = stopped.await;
    }));

    // Two quick apps first, alone: they make the layers every app shares
    // (the base, the CA bundle, the working folders). Builds running at the
    // same time with none of them cached would each make twins of those, and a
    // later build may then continue from the other app's twin and miss its own
    // cached install (the engine takes the newest matching layer).
    let began = Instant::now();
    let (first, rest): (Vec<&'static Case>, Vec<&'static Case>) =
        CASES.iter().partition(|c| FIRST.contains(&c.dir));
    let mut failures = Vec::new();
    let mut measured = Vec::new();
    let waves: Vec<Vec<&'static Case>> = first.into_iter().map(|c| vec![c]).chain([rest]).collect();
    for wave in waves {
        let runs: Vec<_> =
            wave.iter().map(|case| (case.dir, tokio::spawn(deploy_and_update(api.clone(), case)))).collect();
        for (dir, run) in runs {
            match run.await {
                Ok(m) => measured.push(m),
                Err(e) => failures.push(format!("{dir}: {e}")),
            }
        }
    }
    let total = began.elapsed();
    let _ = stop.send(());
    let _ = running.await;

    eprintln!(
        "fixture | cold build to Running | after a source-only change | install cached on the cold build"
    );
    for m in &measured {
        eprintln!(
            "{} | {:.1} s | {:.1} s | {}",
            m.dir,
            m.cold.as_secs_f64(),
            m.update.as_secs_f64(),
            m.cold_install_cached.map_or("-".to_string(), |c| c.to_string())
        );
    }
    eprintln!(
        "all {} fixtures ({} first, then the rest concurrently): {:.1} s",
        CASES.len(),
        FIRST.join(" and "),
        total.as_secs_f64()
    );
    assert!(failures.is_empty(), "fixtures that failed:\n{}", failures.join("\n"));
}
