//! Discovery over real sockets: `/ping` probes, `--join`, subnet scans and
//! `discover` against small HTTP servers on loopback addresses (127.0.0.0/8
//! only), and mDNS announce + browse between two network namespaces joined
//! by a veth pair that the test creates and removes itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use kraken_lib::discovery::{
    browse_mdns, discover, join, probe, scan_subnets, Advertisement, Advertiser, DiscoveryError,
    DiscoveryOptions, How, Subnet, SERVICE_TYPE,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A tiny HTTP server answering `GET /ping` with a fixed body; stops on drop.
struct FakeAgent {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeAgent {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ping_body(id: &str, name: &str, role: &str, epoch: u64) -> Value {
    json!({"service": "kraken", "version": "0.1.0", "node_id": id, "node_name": name, "role": role, "epoch": epoch})
}

/// Serves `body` (JSON, or raw text when it is a JSON string) at `/ping` on
/// an already bound listener.
fn serve(listener: TcpListener, body: Value) -> FakeAgent {
    let addr = listener.local_addr().unwrap();
    let app = match body {
        Value::String(text) => Router::new().route("/ping", get(move || async move { text })),
        body => Router::new().route("/ping", get(move || async move { Json(body) })),
    };
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FakeAgent { addr, task }
}

/// Binds a listener on each of `ips`, all on the same (free) port.
async fn bind_same_port(ips: &[Ipv4Addr]) -> Vec<TcpListener> {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == ips.len() {
            return all;
        }
    }
    panic!("no port was free on all of {ips:?}");
}

/// A port nothing listens on and no other test is given.
async fn free_port() -> u16 {
    kraken_test_support::free_port()
}

fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

#[tokio::test]
async fn probe_reads_a_kraken_ping() {
    let agent =
        serve(TcpListener::bind((lo(1), 0)).await.unwrap(), ping_body("n42", "pi4", "orchestrator", 3));
    let found = probe(&agent.url(), Duration::from_secs(2)).await.unwrap();
    assert_eq!(found.address, agent.url());
    assert_eq!(found.node_id, "n42");
    assert_eq!(found.node_name, "pi4");
    assert_eq!(found.role, "orchestrator");
    assert_eq!(found.epoch, 3);
    assert_eq!(found.orchestrator, None);
}

#[tokio::test]
async fn probe_tells_apart_unreachable_slow_and_foreign_answers() {
    let port = free_port().await;
    let err = probe(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");

    // Accepts connections and never answers.
    let silent = TcpListener::bind((lo(1), 0)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let err = probe(&format!("http://{silent_addr}"), Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "the timeout was not kept: {:?}", started.elapsed());
    holder.abort();

    let other =
        serve(TcpListener::bind((lo(1), 0)).await.unwrap(), json!({"service": "grafana", "ok": true}));
    let err = probe(&other.url(), Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::NotKraken { .. }), "{err}");
    assert!(err.to_string().contains("grafana"), "{err}");

    let html = serve(TcpListener::bind((lo(1), 0)).await.unwrap(), json!("<html>hello</html>"));
    let err = probe(&html.url(), Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::NotKraken { .. }), "{err}");
}

#[tokio::test]
async fn join_accepts_every_address_form_and_follows_a_worker() {
    let orchestrator =
        serve(TcpListener::bind((lo(1), 0)).await.unwrap(), ping_body("n-orch", "big", "orchestrator", 2));
    let port = orchestrator.addr.port();
    for form in
        [format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{port}/")]
    {
        let found = join(&form).await.unwrap();
        assert_eq!(found.node_id, "n-orch", "{form}");
        assert_eq!(found.address, format!("http://127.0.0.1:{port}"), "{form}");
        assert_eq!(found.how, How::Join);
    }

    let mut body = ping_body("n-work", "small", "worker", 2);
    body["orchestrator"] = json!(format!("127.0.0.1:{port}"));
    let worker = serve(TcpListener::bind((lo(1), 0)).await.unwrap(), body);
    let found = join(&worker.url()).await.unwrap();
    assert_eq!(found.node_id, "n-orch");
    assert_eq!(found.address, orchestrator.url());

    let lost = serve(TcpListener::bind((lo(1), 0)).await.unwrap(), ping_body("n-lost", "lost", "worker", 1));
    let err = join(&lost.url()).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::NoOrchestrator { .. }), "{err}");

    let err = join("127.0.0.1:notaport").await.unwrap_err();
    assert!(matches!(err, DiscoveryError::BadAddress { .. }), "{err}");
}

#[tokio::test]
async fn scan_finds_exactly_the_kraken_agents_of_a_loopback_subnet() {
    let mut listeners = bind_same_port(&[lo(5), lo(9), lo(7), lo(11)]).await.into_iter();
    let port = listeners.as_ref()[0].local_addr().unwrap().port();
    let _five = serve(listeners.next().unwrap(), ping_body("n5", "five", "worker", 1));
    let _nine = serve(listeners.next().unwrap(), ping_body("n9", "nine", "orchestrator", 4));
    let _foreign = serve(listeners.next().unwrap(), json!({"service": "something-else"}));
    let _html = serve(listeners.next().unwrap(), json!("<html>not an agent</html>"));

    let subnet: Subnet = "127.0.0.0/28".parse().unwrap();
    let found = scan_subnets(&[subnet], port, 64, Duration::from_millis(300)).await;
    let seen: Vec<(&str, &str, How)> =
        found.iter().map(|f| (f.address.as_str(), f.node_id.as_str(), f.how)).collect();
    let nine = format!("http://127.0.0.9:{port}");
    let five = format!("http://127.0.0.5:{port}");
    // Best first: the orchestrator, then the worker.
    assert_eq!(seen, [(nine.as_str(), "n9", How::Scan), (five.as_str(), "n5", How::Scan)]);

    // A subnet larger than /20 is refused rather than scanned.
    let too_large: Subnet = "127.0.0.0/19".parse().unwrap();
    assert!(scan_subnets(&[too_large], port, 64, Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn scans_with_nothing_listening_find_nothing_quickly() {
    let port = free_port().await;
    for subnet in ["127.0.0.0/28", "127.0.1.0/24"] {
        let subnet: Subnet = subnet.parse().unwrap();
        let started = Instant::now();
        let found = scan_subnets(&[subnet], port, 64, Duration::from_millis(300)).await;
        println!(
            "scan of {subnet} ({} hosts) on port {port} took {:?}",
            subnet.host_count(),
            started.elapsed()
        );
        assert!(found.is_empty(), "{found:?}");
    }
}

#[tokio::test]
async fn discover_joins_scans_and_skips_itself() {
    let mut listeners = bind_same_port(&[lo(3), lo(6), lo(10)]).await.into_iter();
    let port = listeners.as_ref()[0].local_addr().unwrap().port();
    let _old = serve(listeners.next().unwrap(), ping_body("n3", "old", "orchestrator", 1));
    let _new = serve(listeners.next().unwrap(), ping_body("n6", "new", "orchestrator", 5));
    let _me = serve(listeners.next().unwrap(), ping_body("n10", "me", "orchestrator", 9));
    let base = DiscoveryOptions {
        mdns: false,
        subnets: Some(vec!["127.0.0.0/28".parse().unwrap()]),
        port,
        exclude: vec![format!("127.0.0.10:{port}")],
        ..Default::default()
    };

    // Highest epoch among the others; this agent (127.0.0.10) is skipped.
    let found = discover(&base).await.unwrap().unwrap();
    assert_eq!((found.node_id.as_str(), found.how), ("n6", How::Scan));

    let by_id = DiscoveryOptions { exclude: vec![], own_node_id: Some("n6".into()), ..base.clone() };
    assert_eq!(discover(&by_id).await.unwrap().unwrap().node_id, "n10");

    let joined = DiscoveryOptions { join: Some(format!("127.0.0.3:{port}")), ..base.clone() };
    let found = discover(&joined).await.unwrap().unwrap();
    assert_eq!((found.node_id.as_str(), found.how), ("n3", How::Join));

    let dead = DiscoveryOptions { join: Some(format!("127.0.0.4:{port}")), ..base.clone() };
    assert!(matches!(discover(&dead).await, Err(DiscoveryError::Unreachable { .. })));

    let empty = DiscoveryOptions { subnets: Some(vec!["127.0.2.0/28".parse().unwrap()]), ..base };
    assert_eq!(discover(&empty).await.unwrap(), None);
}

// ---- mDNS between two network namespaces -------------------------------

const ROLE_ENV: &str = "KRAKEN_DISCOVERY_NETNS_ROLE";
const PORT_ENV: &str = "KRAKEN_DISCOVERY_NETNS_PORT";
const MDNS_TEST: &str = "mdns_announce_and_browse_between_namespaces";
const ADDR_A: &str = "10.213.77.1";
const ADDR_B: &str = "10.213.77.2";

/// Two network namespaces joined by a veth pair; removed on drop.
struct NetnsPair {
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("cannot run `ip` (iproute2 is needed)");
    assert!(
        out.status.success(),
        "`ip {}` failed (the mDNS test needs root to create network namespaces): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetnsPair {
    fn create() -> Self {
        let id = std::process::id();
        let pair = Self { a: format!("krk-disc-a-{id}"), b: format!("krk-disc-b-{id}") };
        let (va, vb) = (format!("kda{id}"), format!("kdb{id}"));
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &pair.a]);
        ip(&["link", "set", &vb, "netns", &pair.b]);
        for (ns, dev, addr) in [(&pair.a, &va, ADDR_A), (&pair.b, &vb, ADDR_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// Runs this test binary's mDNS test inside `ns`, in `role`.
    fn spawn(&self, ns: &str, role: &str, port: u16) -> Child {
        let exe = std::env::current_exe().unwrap();
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["--exact", MDNS_TEST, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(PORT_ENV, port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and its peer.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Lines a child printed with the `KRAKEN-` marker, read on a thread.
fn marked_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness may print `test … ... ` before it on the same line.
            if let Some(at) = line.find("KRAKEN-") {
                if tx.send(line[at + "KRAKEN-".len()..].to_string()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

fn expect_line(lines: &mpsc::Receiver<String>, want: &str, within: Duration) -> String {
    let line = lines
        .recv_timeout(within)
        .unwrap_or_else(|e| panic!("no `KRAKEN-{want}` line within {within:?}: {e}"));
    assert!(line.starts_with(want), "expected `KRAKEN-{want}…`, got `KRAKEN-{line}`");
    line
}

fn wait_success(mut child: Child, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the {what} run failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the {what} run did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Inside namespace A: a fake agent on `ADDR_A` and an mDNS announcement of
/// it; `stop` withdraws the announcement (the agent keeps answering),
/// `exit` ends.
async fn advertise_role() {
    let listener = TcpListener::bind((ADDR_A.parse::<Ipv4Addr>().unwrap(), 0)).await.unwrap();
    let agent = serve(listener, ping_body("n-alpha", "alpha node", "orchestrator", 7));
    let advertiser = Advertiser::start(Advertisement {
        node_id: "n-alpha".into(),
        node_name: "alpha node".into(),
        role: "orchestrator".into(),
        epoch: 7,
        port: agent.addr.port(),
        orchestrator: None,
    })
    .unwrap();
    assert_eq!(advertiser.fullname(), format!("alpha node.{SERVICE_TYPE}"));
    println!("KRAKEN-READY {}", agent.addr.port());
    // Commands arrive one per line on stdin.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut advertiser = Some(advertiser);
    while let Some(command) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap() {
        match command.as_str() {
            "stop" => {
                advertiser.take().unwrap().shutdown().await;
                println!("KRAKEN-STOPPED");
            }
            "exit" => break,
            other => panic!("unknown command {other}"),
        }
    }
    drop(agent);
}

/// Inside namespace B: find the agent of namespace A over mDNS.
async fn browse_role(port: u16) {
    let expected = format!("http://{ADDR_A}:{port}");

    // The announcement itself: instance name, port, address and TXT records.
    let daemon = mdns_sd::ServiceDaemon::new().unwrap();
    let events = daemon.browse(SERVICE_TYPE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let service = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_async_timeout(left).await {
            Some(mdns_sd::ServiceEvent::ServiceResolved(s)) => break s,
            Some(_) => continue,
            None => panic!("no mDNS announcement of {SERVICE_TYPE} within 10 s"),
        }
    };
    assert_eq!(service.fullname, format!("alpha node.{SERVICE_TYPE}"));
    assert_eq!(service.port, port);
    assert!(
        service.addresses.iter().any(|a| a.to_ip_addr() == ADDR_A.parse::<std::net::IpAddr>().unwrap()),
        "{:?}",
        service.addresses
    );
    let txt = |k: &str| service.txt_properties.get_property_val_str(k).map(str::to_string);
    assert_eq!(txt("node_id").as_deref(), Some("n-alpha"));
    assert_eq!(txt("role").as_deref(), Some("orchestrator"));
    assert_eq!(txt("epoch").as_deref(), Some("7"));
    assert_eq!(txt("version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let _ = daemon.shutdown();

    let found = browse_mdns(Duration::from_secs(3)).await;
    let seen: Vec<(&str, &str, u64, How)> =
        found.iter().map(|f| (f.address.as_str(), f.node_id.as_str(), f.epoch, f.how)).collect();
    assert_eq!(seen, [(expected.as_str(), "n-alpha", 7, How::Mdns)]);

    let options =
        DiscoveryOptions { mdns_timeout: Duration::from_secs(3), scan: false, ..Default::default() };
    let best = discover(&options).await.unwrap().unwrap();
    assert_eq!((best.address.as_str(), best.how), (expected.as_str(), How::Mdns));
    println!("KRAKEN-FOUND {} {}", best.address, best.node_name);
}

/// Inside namespace B, after the announcement was withdrawn: nothing is
/// found, though the agent itself still answers `/ping`.
async fn browse_gone_role(port: u16) {
    let address = format!("http://{ADDR_A}:{port}");
    assert_eq!(probe(&address, Duration::from_secs(2)).await.unwrap().node_id, "n-alpha");
    let found = browse_mdns(Duration::from_secs(2)).await;
    assert!(found.is_empty(), "{found:?}");
    println!("KRAKEN-GONE");
}

trait RecvTimeout<T> {
    async fn recv_async_timeout(&self, within: Duration) -> Option<T>;
}

impl<T> RecvTimeout<T> for mdns_sd::Receiver<T> {
    async fn recv_async_timeout(&self, within: Duration) -> Option<T> {
        tokio::time::timeout(within, self.recv_async()).await.ok()?.ok()
    }
}

/// mDNS stays inside two namespaces made here: no multicast reaches the
/// machine's real network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_announce_and_browse_between_namespaces() {
    let port = || std::env::var(PORT_ENV).unwrap().parse::<u16>().unwrap();
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("advertise") => return advertise_role().await,
        Ok("browse") => return browse_role(port()).await,
        Ok("browse-gone") => return browse_gone_role(port()).await,
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
    tokio::task::spawn_blocking(|| {
        let pair = NetnsPair::create();
        let mut advertiser = pair.spawn(&pair.a, "advertise", 0);
        let lines = marked_lines(&mut advertiser);
        let ready = expect_line(&lines, "READY ", Duration::from_secs(20));
        let port: u16 = ready["READY ".len()..].parse().unwrap();

        let mut browser = pair.spawn(&pair.b, "browse", port);
        let found = marked_lines(&mut browser);
        let line = expect_line(&found, "FOUND ", Duration::from_secs(30));
        assert_eq!(line, format!("FOUND http://{ADDR_A}:{port} alpha node"));
        wait_success(browser, "browse", Duration::from_secs(10));

        let mut stdin = advertiser.stdin.take().unwrap();
        writeln!(stdin, "stop").unwrap();
        expect_line(&lines, "STOPPED", Duration::from_secs(10));
        let mut gone = pair.spawn(&pair.b, "browse-gone", port);
        let gone_lines = marked_lines(&mut gone);
        expect_line(&gone_lines, "GONE", Duration::from_secs(20));
        wait_success(gone, "browse-gone", Duration::from_secs(10));

        writeln!(stdin, "exit").unwrap();
        drop(stdin);
        wait_success(advertiser, "advertise", Duration::from_secs(10));
        drop(pair);
    })
    .await
    .unwrap();
}
