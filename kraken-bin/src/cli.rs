//! Command-line parsing and the commands: `up` runs a platform; the rest talk
//! to a platform's API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::node::NodeConfig;
use kraken_lib::platform::{NodeRole, Platform, JOIN_TOKEN_FILE, TOKEN_FILE};
use kraken_lib::runtime::{AppLimits, DockerRuntime, LogRotation};
use serde_json::Value;

/// Turn the spare machines on your network into one small app platform.
#[derive(Debug, Parser)]
#[command(name = "kraken", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The platform's address (client commands).
    #[arg(long, global = true, env = "KRAKEN_SERVER", default_value = "http://127.0.0.1:8000")]
    server: String,
    /// The platform token; default: read from the data directory.
    #[arg(long, global = true, env = "KRAKEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The data directory (holds the state and the token).
    #[arg(long, global = true, env = "KRAKEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text (client commands).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Kraken on this machine: join the platform given by --join, or
    /// start one here (orchestrator and worker, with its UI and API).
    Up(UpArgs),
    /// Run only the orchestrator of a platform (no apps run on this machine).
    Orchestrator(UpArgs),
    /// Run only a worker that joins the platform given by --join.
    Worker(UpArgs),
    /// Deploy a branch of a git repository whose root holds a shipwreck.toml.
    Deploy {
        /// The git URL (https://, git://, file:// or a local path).
        url: String,
        /// The branch.
        #[arg(long, short, default_value = "main")]
        branch: String,
        /// Follow the deployment's progress and build log until it runs or fails.
        #[arg(long, short)]
        follow: bool,
    },
    /// Check a repository and its shipwreck.toml without deploying.
    Validate {
        /// The git URL.
        url: String,
        /// The branch.
        #[arg(long, short, default_value = "main")]
        branch: String,
    },
    /// List deployments.
    Ps {
        /// Include destroyed deployments.
        #[arg(long, short)]
        all: bool,
    },
    /// Show one deployment with its status history.
    Inspect {
        /// The deployment id.
        id: String,
    },
    /// Print a deployment's log.
    Logs {
        /// The deployment id.
        id: String,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
    },
    /// Redeploy the newest commit of a deployment's branch.
    Update {
        /// The deployment id.
        id: String,
        /// Wait until it runs again or fails.
        #[arg(long, short)]
        follow: bool,
    },
    /// Destroy a deployment.
    Rm {
        /// The deployment id.
        id: String,
        /// Wait until it is destroyed.
        #[arg(long, short)]
        wait: bool,
    },
    /// List the platform's nodes.
    Nodes,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Where the UI and API listen.
    #[arg(long, env = "KRAKEN_LISTEN", default_value = "0.0.0.0:8000")]
    listen: SocketAddr,
    /// A name for this node (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// The host name or address others reach this machine by (default: detected).
    #[arg(long)]
    advertise: Option<String>,
    /// The host address apps' ports are published on.
    #[arg(long, default_value = "0.0.0.0")]
    publish_ip: String,
    /// Use this image as the base of every built-in builder.
    #[arg(long, env = "KRAKEN_BASE_IMAGE")]
    base_image: Option<String>,
    /// Base image of one builder, as BUILDER=IMAGE (repeatable); `{version}` in
    /// the image is replaced by the version the app pins, e.g. node=node:{version}-alpine.
    #[arg(long = "image", value_name = "BUILDER=IMAGE")]
    images: Vec<String>,
    /// A PEM file of CA certificates that builds trust (repeatable): for a
    /// network whose proxy or private CA the base images do not know. npm,
    /// pip and OpenSSL in the build use it with this machine's system bundle.
    #[arg(long = "build-ca", value_name = "FILE")]
    build_ca: Vec<PathBuf>,
    /// Seconds a node may stay silent before it is marked down (and the
    /// orchestrator before its rollover candidate takes over).
    #[arg(long, default_value_t = 2.0)]
    node_grace: f64,
    /// RabbitMQ URL for a platform of several machines (amqp://user:password@host:5672/vhost).
    #[arg(long, env = "KRAKEN_AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// The broker URL joining machines should use, when it differs from --amqp-url.
    #[arg(long, env = "KRAKEN_AMQP_ADVERTISE_URL", hide_env_values = true)]
    amqp_advertise_url: Option<String>,
    /// Join the platform whose orchestrator answers at this address (host, host:port or http://host:port).
    #[arg(long, env = "KRAKEN_JOIN")]
    join: Option<String>,
    /// The platform's join token (printed by its orchestrator).
    #[arg(long, env = "KRAKEN_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Neither look for a platform on the LAN nor announce this one (mDNS and subnet scan).
    #[arg(long, env = "KRAKEN_NO_DISCOVERY")]
    no_discovery: bool,
    /// Look for a platform only by scanning this subnet (repeatable, e.g. 192.168.1.0/24), without mDNS.
    #[arg(long = "scan-subnet", value_name = "CIDR")]
    scan_subnets: Vec<String>,
    /// Without --amqp-url: start a RabbitMQ broker in a container so other machines can join
    /// (always so for `kraken orchestrator`).
    #[arg(long)]
    start_broker: bool,
    /// The image of the broker container.
    #[arg(long, env = "KRAKEN_BROKER_IMAGE", default_value = "rabbitmq:3")]
    broker_image: String,
    /// The host port of the broker container.
    #[arg(long, default_value_t = 5672)]
    broker_port: u16,
    /// Also deploy and check repositories on this machine's disk (local paths
    /// and file:// URLs); off by default, since anyone with the token could
    /// then make the agent read its own disk.
    #[arg(long, env = "KRAKEN_ALLOW_LOCAL_SOURCES")]
    allow_local_sources: bool,
    /// How many processes and threads each app may run (0: no limit).
    #[arg(long, default_value_t = 512)]
    app_pids_limit: i64,
    /// The size in MiB of one file of an app's output that Docker keeps on this machine.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    app_log_file_mib: u64,
    /// Seconds a fetch may go without progress (no connection, no data) before it is stopped.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    fetch_idle_timeout: u64,
    /// Seconds a whole fetch may take.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    fetch_timeout: u64,
    /// The most MiB a repository may download and check out, together.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    max_repository_mib: u64,
    /// How many such files Docker keeps per app (the oldest output is dropped).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    app_log_files: u32,
}

/// Prints a build plan: the base image and each step with why it was chosen.
fn print_plan(plan: &Value) {
    let line = |kind: &str, step: &Value| {
        println!("{kind:<8} {}", s(step, "command"));
        println!("{:<8}   because: {}", "", s(step, "reason"));
    };
    if plan.is_null() {
        return;
    }
    println!("context  {}", s(plan, "context"));
    line("image", &plan["base_image"]);
    for (kind, key) in [("install", "install"), ("build", "build")] {
        for step in plan[key].as_array().into_iter().flatten() {
            line(kind, step);
        }
    }
    if !plan["start"].is_null() {
        line("start", &plan["start"]);
    }
}

/// A failure with an exit code of its own.
#[derive(Debug)]
pub enum Failure {
    /// The platform could not be reached.
    Unreachable(String),
    /// The platform refused the request.
    Refused(String),
    /// The operation ran and failed.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(m) | Failure::Refused(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// The process exit code for this failure.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Unreachable(_) => 3,
            Failure::Refused(_) => 4,
        }
    }
}

impl Cli {
    /// Whether this runs an agent (which logs at info) rather than a client command.
    pub fn is_agent(&self) -> bool {
        matches!(self.command, Command::Up(_) | Command::Orchestrator(_) | Command::Worker(_))
    }
}

fn default_data_dir() -> PathBuf {
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/kraken");
    }
    if let Ok(xdg) = std::env::var("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("kraken");
    }
    match std::env::var("HOME") {
        Ok(home) => PathBuf::from(home).join(".local/share/kraken"),
        Err(_) => PathBuf::from(".kraken"),
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let data_dir = cli.client.data_dir.clone().unwrap_or_else(default_data_dir);
    match cli.command {
        Command::Up(args) => {
            let role = match &args.join {
                // Any node of the platform will do: a worker leads to its orchestrator.
                Some(address) => NodeRole::Worker { orchestrator: address.clone() },
                None if args.no_discovery => NodeRole::Combined,
                None => match look_for_platform(&args).await? {
                    Some(address) => NodeRole::Worker { orchestrator: address },
                    None => NodeRole::Combined,
                },
            };
            up(args, role, data_dir, cli.client.token).await
        }
        Command::Orchestrator(args) => up(args, NodeRole::Orchestrator, data_dir, cli.client.token).await,
        Command::Worker(args) => {
            let Some(address) = &args.join else {
                return Err(anyhow::anyhow!(
                    "a worker needs its orchestrator: pass --join <address> and --join-token <token>"
                ));
            };
            let role = NodeRole::Worker { orchestrator: address.clone() };
            up(args, role, data_dir, cli.client.token).await
        }
        command => {
            let client = Client::new(&cli.client, &data_dir)?;
            client_command(&client, command, cli.client.json).await
        }
    }
}

/// Looks for a platform on the LAN (mDNS, then a scan of this machine's own
/// subnets). Finding one without a join token is an error that says what to do.
async fn look_for_platform(args: &UpArgs) -> Result<Option<String>> {
    let mut options = kraken_lib::discovery::DiscoveryOptions {
        port: args.listen.port(),
        exclude: vec![format!("http://{}", args.listen)],
        ..Default::default()
    };
    if !args.scan_subnets.is_empty() {
        let subnets = args
            .scan_subnets
            .iter()
            .map(|s| s.parse().map_err(|e| anyhow::anyhow!("--scan-subnet {s}: {e}")))
            .collect::<Result<Vec<kraken_lib::discovery::Subnet>>>()?;
        options.subnets = Some(subnets);
        options.mdns = false;
    }
    eprintln!("looking for a Kraken platform on the LAN…");
    let found = match kraken_lib::discovery::discover(&options).await {
        Ok(found) => found,
        Err(e) => {
            eprintln!("discovery failed ({e}); starting a platform here");
            None
        }
    };
    let Some(found) = found else { return Ok(None) };
    if args.join_token.is_none() {
        return Err(anyhow::anyhow!(
            "found the Kraken platform at {} (node {}); to join it pass --join-token <token> (its orchestrator printed it), \
             or start a separate platform with --no-discovery",
            found.address,
            found.node_name
        ));
    }
    eprintln!("found the platform at {}; joining it as a worker", found.address);
    Ok(Some(found.orchestrator.clone().unwrap_or(found.address)))
}

async fn up(args: UpArgs, role: NodeRole, data_dir: PathBuf, token: Option<String>) -> Result<ExitCode> {
    let mut images = match &args.base_image {
        Some(image) => BaseImages::uniform(image),
        None => BaseImages::defaults(),
    };
    for pair in &args.images {
        let (builder, image) = pair.split_once('=').with_context(|| {
            format!("--image {pair}: expected BUILDER=IMAGE, e.g. --image node=node:22-slim")
        })?;
        images.set(builder.trim(), image.trim());
    }
    let mut config = NodeConfig::new(&data_dir, args.listen);
    if let Some(host) = args.advertise {
        config.advertise_host = host;
    }
    config.publish_ip = args.publish_ip;
    if !(0.5..=3600.0).contains(&args.node_grace) {
        return Err(anyhow::anyhow!(
            "--node-grace {}: give a number of seconds between 0.5 and 3600 (default 2)",
            args.node_grace
        ));
    }
    config.node_grace = Duration::from_secs_f64(args.node_grace);
    config.build_ca = args.build_ca;
    config.allow_local_sources = args.allow_local_sources;
    config.fetch_limits.idle_timeout = Duration::from_secs(args.fetch_idle_timeout);
    config.fetch_limits.timeout = Duration::from_secs(args.fetch_timeout);
    config.fetch_limits.max_bytes = args.max_repository_mib * 1024 * 1024;
    config.app_limits = AppLimits {
        pids: args.app_pids_limit.max(0),
        log_rotation: LogRotation {
            max_file_bytes: args.app_log_file_mib * 1024 * 1024,
            max_files: args.app_log_files,
        },
    };
    let runtime = DockerRuntime::connect().await.context(
        "Kraken runs apps in Docker containers; install Docker (Debian: apt-get install docker.io) and start it",
    )?;
    let is_worker = matches!(role, NodeRole::Worker { .. });
    let starts_broker_by_default = role == NodeRole::Orchestrator;
    let broker_image = (args.amqp_url.is_none() && (args.start_broker || starts_broker_by_default))
        .then(|| args.broker_image.clone());
    let mut platform = Platform::builder(config)
        .role(role)
        .token(token)
        .name(args.name)
        .registry(BuilderRegistry::with_builtins(images))
        .ui(kraken_ui::router())
        .runtime(Arc::new(runtime))
        .amqp_url(args.amqp_url)
        .amqp_advertise_url(args.amqp_advertise_url)
        .join_token(args.join_token)
        .announce(!args.no_discovery);
    if let Some(image) = broker_image {
        platform = platform.broker(image, args.broker_port);
    }
    let platform = platform.start().await?;
    let address = platform.api_address();
    if is_worker {
        println!(
            "Kraken worker {} is up and joined the platform at {}.",
            platform.node_id(),
            platform.orchestrator().unwrap_or_default()
        );
        println!("  data:        {}", data_dir.display());
    } else {
        println!("Kraken is up.");
        println!("  UI and API:  {address}/");
        match platform.token() {
            Some(t) => println!("  token:       {t}"),
            None => println!(
                "  token:       kept only as a hash, and {} is gone; the old token still works; \
                 start with --token <new token> to set a new one",
                data_dir.join(TOKEN_FILE).display()
            ),
        }
        match (platform.joinable(), platform.join_token()) {
            (true, Some(j)) => {
                println!("  join token:  {j}   (other machines: kraken up --join {address} --join-token {j})")
            }
            (true, None) => println!(
                "  join token:  kept only as a hash, and {} is gone; start with --join-token <new token> to set a new one",
                data_dir.join(JOIN_TOKEN_FILE).display()
            ),
            (false, _) => println!(
                "  single machine (no message broker): start with --amqp-url to let other machines join"
            ),
        }
        println!("  data:        {}", data_dir.display());
        println!("Deploy from this machine with: kraken deploy <git url> --branch main --follow");
    }
    platform.run(shutdown_signal()).await?;
    println!("Kraken stopped; running apps keep running and are adopted at the next start.");
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    fn new(args: &ClientArgs, data_dir: &std::path::Path) -> Result<Self> {
        let token = args.token.clone().or_else(|| {
            std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok().map(|t| t.trim().to_string())
        });
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self { http, server: args.server.trim_end_matches('/').to_string(), token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            Failure::Unreachable(format!(
                "cannot reach the platform at {} ({e}); is `kraken up` running there? (--server or KRAKEN_SERVER)",
                self.server
            ))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body.get("error").and_then(Value::as_str).unwrap_or("no details").to_string();
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            " (no token found: pass --token or KRAKEN_TOKEN)"
        } else {
            ""
        };
        Err(Failure::Refused(format!("the platform refused ({status}): {message}{hint}")).into())
    }

    async fn get(&self, path: &str) -> Result<Value> {
        Ok(self.send(self.http.get(self.url(path))).await?.json().await?)
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self.http.post(self.url(path));
        if let Some(b) = body {
            request = request.json(&b);
        }
        Ok(self.send(request).await?.json().await?)
    }

    async fn delete(&self, path: &str) -> Result<Value> {
        Ok(self.send(self.http.delete(self.url(path))).await?.json().await?)
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

async fn client_command(client: &Client, command: Command, json: bool) -> Result<ExitCode> {
    match command {
        Command::Up(_) | Command::Orchestrator(_) | Command::Worker(_) => {
            Err(anyhow::anyhow!("agent commands are not client commands"))
        }
        Command::Deploy { url, branch, follow } => {
            let url = local_path_to_absolute(&url);
            let created = client
                .post("/api/v1/deployments", Some(serde_json::json!({ "url": url, "branch": branch })))
                .await?;
            let id = s(&created, "id").to_string();
            if !follow {
                if json {
                    println!("{created}");
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                println!("deployment {id} requested");
            }
            watch(client, &id, json, |status| matches!(status, "Running" | "Errored" | "Destroyed")).await
        }
        Command::Validate { url, branch } => {
            let url = local_path_to_absolute(&url);
            let v = client
                .post("/api/v1/validate", Some(serde_json::json!({ "url": url, "branch": branch })))
                .await?;
            if json {
                println!("{v}");
            } else {
                let app = &v["manifest"]["app"];
                let config = &v["manifest"]["config"];
                println!(
                    "ok: `{}` on port {} built by the {} builder ({})",
                    s(app, "name"),
                    config["port"],
                    s(&v, "builder"),
                    s(&v, "reason")
                );
                println!("commit {}", s(&v, "commit"));
                print_plan(&v["plan"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ps { all } => {
            let list = client.get("/api/v1/deployments").await?;
            let items: Vec<&Value> = list
                .as_array()
                .map(|a| a.iter().filter(|d| all || s(d, "status") != "Destroyed").collect())
                .unwrap_or_default();
            if json {
                println!("{}", Value::Array(items.into_iter().cloned().collect()));
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<14} {:<20} {:<26} {:<12} {:<9} ADDRESS", "ID", "NAME", "STATUS", "NODE", "COMMIT");
            for d in items {
                let commit = s(d, "commit");
                println!(
                    "{:<14} {:<20} {:<26} {:<12} {:<9} {}",
                    s(d, "id"),
                    s(d, "name"),
                    s(d, "status"),
                    s(d, "node"),
                    commit.get(..8).unwrap_or(commit),
                    s(d, "address")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { id } => {
            let d = client.get(&format!("/api/v1/deployments/{id}")).await?;
            if json {
                println!("{d}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} ({}) {} {}@{}",
                s(&d, "id"),
                s(&d, "name"),
                s(&d, "status"),
                s(&d, "url"),
                s(&d, "branch")
            );
            println!("address: {}   node: {}   commit: {}", s(&d, "address"), s(&d, "node"), s(&d, "commit"));
            for c in d["status_history"].as_array().into_iter().flatten() {
                println!("  {}  {:<26} {}", s(c, "at"), s(c, "status"), s(c, "message"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { id, follow } => {
            if follow {
                follow_logs(client, &id, 0, json).await?;
            } else {
                let mut offset = 0u64;
                loop {
                    let page = client
                        .get(&format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=5000"))
                        .await?;
                    let lines = page["lines"].as_array().cloned().unwrap_or_default();
                    for l in &lines {
                        print_line(l, json);
                    }
                    offset = page["next_offset"].as_u64().unwrap_or(offset);
                    if lines.len() < 5000 {
                        break;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Update { id, follow } => {
            client.post(&format!("/api/v1/deployments/{id}/update"), None).await?;
            if !follow {
                if !json {
                    println!("update of {id} requested");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let before = client.get(&format!("/api/v1/deployments/{id}")).await?;
            let seen = before["status_history"].as_array().map_or(0, Vec::len);
            watch_from(client, &id, json, seen.saturating_sub(1), |status| {
                matches!(status, "Running" | "Errored" | "Destroyed")
            })
            .await
        }
        Command::Rm { id, wait } => {
            client.delete(&format!("/api/v1/deployments/{id}")).await?;
            if !wait {
                if !json {
                    println!("destruction of {id} requested");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let before = client.get(&format!("/api/v1/deployments/{id}")).await?;
            let seen = before["status_history"].as_array().map_or(0, Vec::len);
            watch_from(client, &id, json, seen.saturating_sub(1), |status| {
                matches!(status, "Destroyed" | "Errored")
            })
            .await
        }
        Command::Nodes => {
            let nodes = client.get("/api/v1/nodes").await?;
            if json {
                println!("{nodes}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<12} {:<16} {:<13} {:<5} {:>5} {:>13} {:>4} {:>4} ADDRESS",
                "ID", "NAME", "ROLE", "UP", "CPU%", "MEMORY", "APPS", "PRIO"
            );
            for n in nodes.as_array().into_iter().flatten() {
                let st = &n["stats"];
                let gib = |v: &Value| v.as_f64().unwrap_or(0.0) / (1u64 << 30) as f64;
                println!(
                    "{:<12} {:<16} {:<13} {:<5} {:>5.1} {:>5.1}/{:<5.1}GiB {:>4} {:>4} {}",
                    s(n, "id"),
                    s(n, "name"),
                    s(n, "role"),
                    if n["up"].as_bool().unwrap_or(false) { "yes" } else { "no" },
                    st["cpu_percent"].as_f64().unwrap_or(0.0),
                    gib(&st["memory_used_bytes"]),
                    gib(&st["memory_total_bytes"]),
                    n["deployments"].as_array().map_or(0, Vec::len),
                    n["rollover_priority"],
                    s(n, "address")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A relative local path means the directory here, not on the server: make it absolute.
fn local_path_to_absolute(url: &str) -> String {
    if url.contains("://") || url.starts_with('/') {
        return url.to_string();
    }
    match std::fs::canonicalize(url) {
        Ok(p) if p.is_dir() => p.display().to_string(),
        _ => url.to_string(),
    }
}

fn print_line(l: &Value, json: bool) {
    if json {
        println!("{l}");
    } else {
        let stream = s(l, "stream");
        let line = s(l, "line");
        match stream {
            "stdout" => println!("{line}"),
            other => println!("[{other}] {line}"),
        }
    }
}

async fn watch(client: &Client, id: &str, json: bool, done: impl Fn(&str) -> bool) -> Result<ExitCode> {
    watch_from(client, id, json, 0, done).await
}

/// Prints status changes and log lines until `done(status)`, polling the API.
async fn watch_from(
    client: &Client,
    id: &str,
    json: bool,
    mut seen: usize,
    done: impl Fn(&str) -> bool,
) -> Result<ExitCode> {
    // Following a deployment that already has a past: print only what comes next.
    let mut offset = if seen > 0 { latest_offset(client, id).await? } else { 0 };
    let mut ticker = tokio::time::interval(Duration::from_millis(300));
    loop {
        ticker.tick().await;
        let page = client.get(&format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=5000")).await?;
        for l in page["lines"].as_array().into_iter().flatten() {
            print_line(l, json);
        }
        offset = page["next_offset"].as_u64().unwrap_or(offset);
        let d = client.get(&format!("/api/v1/deployments/{id}")).await?;
        let history = d["status_history"].as_array().cloned().unwrap_or_default();
        let mut finished = None;
        for c in history.iter().skip(seen) {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "status": c["status"], "at": c["at"], "message": c["message"] })
                );
            } else {
                println!("==> {:<26} {}", s(c, "status"), s(c, "message"));
            }
            if done(s(c, "status")) {
                finished = Some(s(c, "status").to_string());
            }
        }
        seen = history.len();
        if let Some(status) = finished.filter(|_| done(s(&d, "status"))) {
            // Print what was logged up to the end.
            let page =
                client.get(&format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=5000")).await?;
            for l in page["lines"].as_array().into_iter().flatten() {
                print_line(l, json);
            }
            if status == "Errored" {
                let reason = s(&d, "error").to_string();
                return Err(Failure::Failed(format!("deployment {id} failed: {reason}")).into());
            }
            if !json && status == "Running" {
                println!("{id} is running at {}", s(&d, "address"));
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
}

async fn latest_offset(client: &Client, id: &str) -> Result<u64> {
    let mut offset = 0;
    loop {
        let page = client.get(&format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=5000")).await?;
        let n = page["lines"].as_array().map_or(0, Vec::len);
        offset = page["next_offset"].as_u64().unwrap_or(offset);
        if n < 5000 {
            return Ok(offset);
        }
    }
}

/// Follows a deployment's log through the API's server-sent events.
async fn follow_logs(client: &Client, id: &str, offset: u64, json: bool) -> Result<()> {
    let response = client
        .send(
            client
                .http
                .get(client.url(&format!("/api/v1/deployments/{id}/logs?follow=true&offset={offset}"))),
        )
        .await?;
    let mut body = response.bytes_stream();
    let mut decoder = kraken_lib::api::SseDecoder::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the log stream broke off")?;
        for message in decoder.push(&chunk) {
            if let Ok(v) = serde_json::from_str::<Value>(&message.data) {
                print_line(&v, json);
            }
        }
    }
    Ok(())
}
