//! Discovery and rollover over mDNS between two network namespaces the test
//! creates (joined by a veth pair, so no multicast reaches the machine's real
//! network), with real `kraken` agents inside them:
//!
//! - an orchestrator in namespace A announces itself (role, epoch 1, its own
//!   address);
//! - a machine in namespace B finds it over mDNS, joins, and announces itself
//!   as a worker naming its orchestrator;
//! - `kraken up --join <that worker's address>` in namespace A follows the
//!   worker to the orchestrator;
//! - when the orchestrator is killed, the worker that takes over announces
//!   itself as the orchestrator with epoch 2, and the other worker announces
//!   that it follows it.
//!
//! The broker (the machine's RabbitMQ on 127.0.0.1) is reached from inside the
//! namespaces through a tunnel: a forwarder on each namespace's loopback
//! passes connections through a Unix socket to the real broker.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{base_image, BrokerAccount, TOKEN};

const ROLE_ENV: &str = "KRAKEN_E2E_NETNS_ROLE";
const SOCKET_ENV: &str = "KRAKEN_E2E_NETNS_SOCKET";
const TEST: &str = "a_node_found_over_mdns_is_joined_followed_and_a_promoted_one_announces_itself";
const ADDR_A: &str = "10.213.79.1";
const ADDR_B: &str = "10.213.79.2";
const JOIN_TOKEN: &str = "netns-join-token";
/// The broker port inside the namespaces (their own loopback).
const BROKER_PORT: u16 = 5672;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("cannot run `ip` (iproute2 is needed)");
    assert!(
        out.status.success(),
        "`ip {}` failed (this test needs root to create network namespaces): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair, and the tunnel to the broker;
/// removed on drop.
struct Namespaces {
    a: String,
    b: String,
    socket: PathBuf,
    children: Vec<Child>,
}

impl Namespaces {
    fn create() -> Self {
        let id = std::process::id();
        let ns = Self {
            a: format!("krk-e2e-a-{id}"),
            b: format!("krk-e2e-b-{id}"),
            socket: std::env::temp_dir().join(format!("kraken-e2e-broker-{id}.sock")),
            children: Vec::new(),
        };
        let (va, vb) = (format!("kea{id}"), format!("keb{id}"));
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &ns.a]);
        ip(&["link", "set", &vb, "netns", &ns.b]);
        for (name, dev, addr) in [(&ns.a, &va, ADDR_A), (&ns.b, &vb, ADDR_B)] {
            ip(&["-n", name, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", name, "link", "set", dev, "up"]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ns
    }

    /// Starts this test binary inside `ns` in `role`.
    fn spawn_role(&mut self, ns: &str, role: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(std::env::current_exe().expect("the test binary"))
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(SOCKET_ENV, &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test binary starts in the namespace")
    }

    /// Starts `kraken <args>` inside `ns`, its output going to `log`.
    fn kraken(ns: &str, args: &[String], log: &Path) -> Child {
        let file = std::fs::File::create(log).expect("log file");
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(env!("CARGO_BIN_EXE_kraken"))
            .args(args)
            .env("KRAKEN_LOG", "info,kraken_lib=debug")
            .stdout(Stdio::from(file.try_clone().expect("clone")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("kraken starts in the namespace")
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace deletes the veth end inside it, and its peer.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Copies both ways between two connections (each given twice: a handle
/// per direction) until either closes.
fn splice<A, B>(a: A, a2: A, b: B, b2: B)
where
    A: std::io::Read + std::io::Write + Send + 'static,
    B: std::io::Read + std::io::Write + Send + 'static,
{
    let (mut from_a, mut to_b) = (a, b);
    let (mut from_b, mut to_a) = (b2, a2);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_a, &mut to_b);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_b, &mut to_a);
    });
}

/// Outside the namespaces: connections on the Unix socket go to the broker.
fn tunnel_to_broker(socket: &Path) {
    let listener = UnixListener::bind(socket).expect("the tunnel's socket");
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let Ok(tcp) = std::net::TcpStream::connect(("127.0.0.1", 5672)) else { continue };
            let (Ok(conn2), Ok(tcp2)) = (conn.try_clone(), tcp.try_clone()) else { continue };
            splice(conn, conn2, tcp, tcp2);
        }
    });
}

/// Inside a namespace: connections to its loopback's broker port go through the tunnel.
fn forward_role() {
    let socket = PathBuf::from(std::env::var(SOCKET_ENV).expect("the tunnel's socket"));
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", BROKER_PORT)).expect("the broker port in the namespace");
    println!("KRAKEN-FORWARDING");
    for conn in listener.incoming().map_while(Result::ok) {
        let Ok(unix) = UnixStream::connect(&socket) else { continue };
        let (Ok(conn2), Ok(unix2)) = (conn.try_clone(), unix.try_clone()) else { continue };
        splice(conn, conn2, unix, unix2);
    }
}

/// Inside a namespace: prints every announcement seen, as
/// `KRAKEN-SEEN <node name> <role> <epoch> <orchestrator>`.
fn browse_role() {
    let daemon = mdns_sd::ServiceDaemon::new().expect("mDNS");
    let events = daemon.browse(kraken_lib::discovery::SERVICE_TYPE).expect("browse");
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let Ok(event) = events.recv_timeout(Duration::from_secs(1)) else { continue };
        if let mdns_sd::ServiceEvent::ServiceResolved(s) = event {
            let txt = |k: &str| s.txt_properties.get_property_val_str(k).unwrap_or("-").to_string();
            let name = s.fullname.split('.').next().unwrap_or_default().to_string();
            println!("KRAKEN-SEEN {name} {} {} {}", txt("role"), txt("epoch"), txt("orchestrator"));
        }
    }
}

fn marked_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("KRAKEN-") {
                if tx.send(line[at + "KRAKEN-".len()..].to_string()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// The announcements the browser printed so far.
struct Seen {
    lines: mpsc::Receiver<String>,
    all: Vec<String>,
}

impl Seen {
    /// Waits for the announcement `<name> <role> <epoch> <orchestrator>`
    /// (announcements of different nodes arrive in any order); shows the log
    /// of the agent that should make it when it does not come.
    fn expect(&mut self, want: &str, within: Duration, log: &Path) {
        let want = format!("SEEN {want}");
        let deadline = Instant::now() + within;
        while !self.all.contains(&want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.all.push(line),
                Err(_) => panic!(
                    "no announcement `{want}` within {within:?}; seen: {:#?}\n{}",
                    self.all,
                    std::fs::read_to_string(log).unwrap_or_default()
                ),
            }
        }
    }
}

fn wait_log(log: &Path, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never logged {needle:?}:\n{text}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent_args(
    dir: &Path,
    name: &str,
    addr: &str,
    port: u16,
    account_url: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> =
        ["up", "--listen", &format!("{addr}:{port}"), "--publish-ip", addr, "--name", name]
            .map(String::from)
            .to_vec();
    args.extend(["--data-dir".to_string(), dir.join(name).display().to_string()]);
    args.extend(
        ["--token", TOKEN, "--join-token", JOIN_TOKEN, "--base-image", &base_image()].map(String::from),
    );
    args.extend(["--amqp-url".to_string(), account_url.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn a_node_found_over_mdns_is_joined_followed_and_a_promoted_one_announces_itself() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("forward") => return forward_role(),
        Ok("browse") => return browse_role(),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
    let account = BrokerAccount::new();
    // The agents reach the broker on their namespace's loopback.
    let url = account.url().replace("127.0.0.1:5672", &format!("127.0.0.1:{BROKER_PORT}"));
    let dir = tempfile::Builder::new().prefix("kraken-netns-").tempdir().expect("tempdir");
    let mut ns = Namespaces::create();
    tunnel_to_broker(&ns.socket);
    for name in [ns.a.clone(), ns.b.clone()] {
        let mut forwarder = ns.spawn_role(&name, "forward");
        let ready = marked_lines(&mut forwarder);
        assert_eq!(ready.recv_timeout(Duration::from_secs(30)).expect("the forwarder starts"), "FORWARDING");
        ns.children.push(forwarder);
    }
    let mut browser = ns.spawn_role(&ns.b.clone(), "browse");
    let mut seen = Seen { lines: marked_lines(&mut browser), all: Vec::new() };
    ns.children.push(browser);

    // The first machine finds nobody and starts the platform; it announces itself.
    let (o_port, c_port, d_port) = (18451, 18452, 18453);
    let o_address = format!("http://{ADDR_A}:{o_port}");
    let o_log = dir.path().join("o.log");
    let o_index = ns.children.len();
    ns.children.push(Namespaces::kraken(
        &ns.a.clone(),
        &agent_args(dir.path(), "e2e-o", ADDR_A, o_port, &url, &[]),
        &o_log,
    ));
    wait_log(&o_log, "platform up", Duration::from_secs(120));
    seen.expect(&format!("e2e-o orchestrator 1 {o_address}"), Duration::from_secs(60), &o_log);

    // The second finds it over mDNS and joins; it announces that it follows it.
    let c_address = format!("http://{ADDR_B}:{c_port}");
    let c_log = dir.path().join("c.log");
    ns.children.push(Namespaces::kraken(
        &ns.b.clone(),
        &agent_args(dir.path(), "e2e-c", ADDR_B, c_port, &url, &[]),
        &c_log,
    ));
    let joined = wait_log(&c_log, "joining it as a worker", Duration::from_secs(120));
    assert!(joined.contains(&format!("found the platform at {o_address}")), "{joined}");
    seen.expect(&format!("e2e-c worker 1 {o_address}"), Duration::from_secs(60), &c_log);

    // `--join` with the worker's address leads to the orchestrator.
    let d_log = dir.path().join("d.log");
    let d_args = agent_args(dir.path(), "e2e-d", ADDR_A, d_port, &url, &["--join", &c_address]);
    ns.children.push(Namespaces::kraken(&ns.a.clone(), &d_args, &d_log));
    let followed = wait_log(&d_log, "joined the platform at", Duration::from_secs(120));
    assert!(
        followed.contains(&format!("joining the platform of this orchestrator orchestrator={o_address}"))
            || followed.contains(&format!("joined the platform at {o_address}")),
        "--join {c_address} led to the orchestrator:\n{followed}"
    );
    seen.expect(&format!("e2e-d worker 1 {o_address}"), Duration::from_secs(60), &d_log);

    // The orchestrator dies; the candidate (the first worker) takes over and says so.
    wait_log(&c_log, "replica in sync", Duration::from_secs(60));
    let o = &mut ns.children[o_index];
    let _ = o.kill();
    let _ = o.wait();
    seen.expect(&format!("e2e-c orchestrator 2 {c_address}"), Duration::from_secs(60), &c_log);
    seen.expect(&format!("e2e-d worker 2 {c_address}"), Duration::from_secs(60), &d_log);
    drop(ns);
    let _ = dir;
}
