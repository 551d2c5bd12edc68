//! Command-line parsing and the commands: `up` runs a platform; the rest talk
//! to a platform's API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use kraken_lib::builder::{BaseImages, BuilderRegistry};
use kraken_lib::fetcher::FetchProgram;
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
pub(crate) enum Command {
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
pub(crate) struct UpArgs {
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
    /// The program that fetches git repositories for this agent (default:
    /// `kraken-fetch` in the folder of this `kraken`, where the installers
    /// put it).
    #[arg(long, env = "KRAKEN_FETCH_HELPER", value_name = "PATH")]
    fetch_helper: Option<PathBuf>,
    /// Seconds a whole fetch may take.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    fetch_timeout: u64,
    /// The most MiB a repository may download and check out, together.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    max_repository_mib: u64,
    /// How many such files Docker keeps per app (the oldest output is dropped).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    app_log_files: u32,
    /// Seconds a stopping app (on update or destroy) gets to exit after
    /// SIGTERM before it is killed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    app_stop_timeout: u64,
    /// Seconds a started app may take to accept connections on its port
    /// before its deployment fails.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    app_ready_timeout: u64,
}

/// Prints a build plan: the base image and each step with why it was chosen.
fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

pub(crate) fn print_plan(plan: &Value) {
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
            let token = cli.client.token.clone().or_else(|| {
                std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok().map(|t| t.trim().to_string())
            });
            let mut client = kraken_lib::client::Client::new(&cli.client.server)
                .map_err(|e| Failure::Unreachable(format!("{e} (--server or KRAKEN_SERVER)")))?;
            if let Some(token) = token {
                client = client.with_token(token);
            }
            crate::commands::client_command(&crate::commands::Api { client }, command, cli.client.json).await
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

/// The fetch helper: the one named, or `kraken-fetch` beside this program;
/// an error that says how to get it when it is not there.
fn fetch_helper(named: Option<PathBuf>) -> Result<PathBuf> {
    let beside = || std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("kraken-fetch")));
    let Some(helper) = named.or_else(beside) else {
        anyhow::bail!("cannot tell where this program is; name the fetch helper with --fetch-helper PATH");
    };
    let runnable = std::fs::metadata(&helper).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    if !runnable {
        anyhow::bail!(
            "the fetch helper {} is missing or not executable: kraken fetches git repositories through \
             `kraken-fetch`, which is built and installed beside `kraken` (scripts/run.sh and the \
             installers do; by hand: `cargo build --release -p kraken-bin -p kraken-lib --bins`), or name \
             it with --fetch-helper PATH",
            helper.display()
        );
    }
    Ok(helper)
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
    config.fetch_program = FetchProgram::Program(fetch_helper(args.fetch_helper)?);
    config.app_limits = AppLimits {
        pids: args.app_pids_limit.max(0),
        log_rotation: LogRotation {
            max_file_bytes: args.app_log_file_mib * 1024 * 1024,
            max_files: args.app_log_files,
        },
        stop_timeout: Duration::from_secs(args.app_stop_timeout),
        ready_timeout: Duration::from_secs(args.app_ready_timeout),
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
