//! Finding an orchestrator on the local network.
//!
//! A new agent looks for an orchestrator in three ways, in this order:
//!
//! 1. an explicit address (`--join host[:port]`), checked with [`join`];
//! 2. mDNS: orchestrators announce the service type [`SERVICE_TYPE`] with an
//!    [`Advertiser`]; [`browse_mdns`] listens for them;
//! 3. the seed's method: [`scan_subnets`] asks every address of the machine's
//!    own small subnets ([`local_subnets`]) for `GET /ping` on the API port.
//!
//! Every candidate is confirmed with [`probe`], which asks `GET /ping` and
//! accepts only an answer with `"service": "kraken"`. Every node of a
//! platform of several machines announces itself ([`announce::announce_node`]):
//! its role, the current epoch and the orchestrator it follows, kept up to
//! date as they change (a promoted node announces itself as the orchestrator). [`discover`] runs the
//! three steps and picks one answer: orchestrators first, the highest epoch
//! first. Finding nothing means the agent becomes the orchestrator itself.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use futures::stream::{self, FuturesUnordered, StreamExt};
use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::client::{self, Client, ClientError};

pub mod announce;

/// The API port an agent listens on unless told otherwise.
pub use crate::client::DEFAULT_PORT;

/// The mDNS service type Kraken agents announce.
pub const SERVICE_TYPE: &str = "_kraken._tcp.local.";

/// How long one `/ping` may take during a subnet scan by default.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// How many `/ping` requests a subnet scan keeps in flight by default.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How long [`discover`] listens for mDNS announcements by default.
pub const DEFAULT_MDNS_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long [`join`] waits for the `/ping` answer.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The shortest prefix [`scan_subnets`] accepts: a /20 has 4094 hosts.
pub const MIN_SCAN_PREFIX: u8 = 20;

/// The shortest prefix [`local_subnets`] keeps as it is; a shorter one is
/// trimmed to the /24 around the machine's address.
pub const MIN_LOCAL_PREFIX: u8 = 22;

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The address to join is not `host`, `host:port` or `http://host:port`.
    #[error("cannot use `{address}` as an agent address: {reason}; expected `host`, `host:port` or `http://host:port` (the port defaults to {DEFAULT_PORT})")]
    BadAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subnet is not written `a.b.c.d/nn`.
    #[error(
        "cannot read `{text}` as an IPv4 subnet: {reason}; expected `a.b.c.d/nn` such as `192.168.1.0/24`"
    )]
    BadSubnet {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing accepted the connection (refused, no route, bad host name).
    #[error("no agent answered at {address}: {source}; check the address and that the agent runs and listens on that port")]
    Unreachable {
        /// The address asked.
        address: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection or the answer took longer than allowed.
    #[error("{address} did not answer `GET /ping` within {timeout:?}; check the address, or that no firewall drops the port")]
    Timeout {
        /// The address asked.
        address: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// Something answered, but not as a Kraken agent.
    #[error("{address} answered, but not as a Kraken agent: {detail}; check the address and port")]
    NotKraken {
        /// The address asked.
        address: String,
        /// What the answer looked like.
        detail: String,
    },
    /// A worker answered but it does not know an orchestrator to follow.
    #[error("{address} is a Kraken worker {detail}; give the orchestrator's address instead")]
    NoOrchestrator {
        /// The worker's address.
        address: String,
        /// Why it could not be followed.
        detail: String,
    },
    /// The mDNS service could not be started or used.
    #[error("mDNS failed while {what}: {source}")]
    Mdns {
        /// What was being done.
        what: String,
        /// The error of the mDNS library.
        #[source]
        source: mdns_sd::Error,
    },
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client for discovery: {0}")]
    Client(#[source] reqwest::Error),
}

/// How an agent was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum How {
    /// From the address given to `--join`.
    Join,
    /// From an mDNS announcement.
    Mdns,
    /// By scanning a subnet for the API port.
    Scan,
}

/// An agent that answered `GET /ping` as a Kraken agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its API, as `http://host:port`.
    pub address: String,
    /// Its node id.
    pub node_id: String,
    /// Its node name.
    pub node_name: String,
    /// Its role, such as `orchestrator` or `worker`.
    pub role: String,
    /// Its epoch: higher means a later orchestrator.
    pub epoch: u64,
    /// The orchestrator a worker says it follows (`http://host:port`), if any.
    pub orchestrator: Option<String>,
    /// How it was found.
    pub how: How,
}

impl Found {
    /// Whether it said it is an orchestrator.
    pub fn is_orchestrator(&self) -> bool {
        self.role == "orchestrator"
    }
}

/// Turns `host`, `host:port` or `http://host:port` (with or without a trailing
/// `/`) into `http://host:port`; the port defaults to [`DEFAULT_PORT`]. IPv6
/// addresses are written in brackets (`[fd00::1]:8000`); a bare IPv6 address
/// without a port is accepted too.
///
/// # Errors
///
/// [`DiscoveryError::BadAddress`] for an empty host, a bad port, a path, or a
/// scheme other than `http`.
///
/// # Examples
///
/// ```
/// use kraken_lib::discovery::normalize_address;
/// assert_eq!(normalize_address("pi4").unwrap(), "http://pi4:8000");
/// assert_eq!(normalize_address("10.0.0.7:9000").unwrap(), "http://10.0.0.7:9000");
/// assert_eq!(normalize_address("http://pi4:8000/").unwrap(), "http://pi4:8000");
/// ```
pub fn normalize_address(input: &str) -> Result<String, DiscoveryError> {
    let bad = |reason: String| DiscoveryError::BadAddress { address: input.to_string(), reason };
    let address = client::normalize_address(input).map_err(|e| bad(e.reason))?;
    if !address.starts_with("http://") {
        return Err(bad(
            "the scheme is not `http`; the Kraken API speaks plain `http` on the LAN".to_string()
        ));
    }
    Ok(address)
}

/// The HTTP client of discovery: no proxy (a LAN address must be asked
/// directly), no redirects, short timeouts.
fn client(timeout: Duration) -> Result<reqwest::Client, DiscoveryError> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(DiscoveryError::Client)
}

/// Asks `<address>/ping` and checks that a Kraken agent answered.
///
/// `address` is `http://host:port` (see [`normalize_address`]); the answer's
/// [`Found::how`] is [`How::Join`] — callers that found the address another
/// way set it themselves.
///
/// # Errors
///
/// [`DiscoveryError::Unreachable`] when nothing accepts the connection,
/// [`DiscoveryError::Timeout`] when the answer takes longer than `timeout`,
/// [`DiscoveryError::NotKraken`] when the answer is not a Kraken `/ping`.
pub async fn probe(address: &str, timeout: Duration) -> Result<Found, DiscoveryError> {
    let client = client(timeout)?;
    probe_with(&client, address, timeout, How::Join).await
}

async fn probe_with(
    client: &reqwest::Client,
    address: &str,
    timeout: Duration,
    how: How,
) -> Result<Found, DiscoveryError> {
    let not_kraken = |detail: String| DiscoveryError::NotKraken { address: address.to_string(), detail };
    let client = Client::with_http(address, client.clone())
        .map_err(|e| DiscoveryError::BadAddress { address: address.to_string(), reason: e.to_string() })?;
    // The client's own timeout covers each request; this one also bounds a
    // server that trickles its body.
    let answer = match tokio::time::timeout(timeout, client.ping()).await {
        Err(_) | Ok(Err(ClientError::TimedOut { .. })) => {
            return Err(DiscoveryError::Timeout { address: address.to_string(), timeout })
        }
        Ok(Err(ClientError::Unreachable { source, .. })) => {
            return Err(DiscoveryError::Unreachable { address: address.to_string(), source })
        }
        Ok(Err(ClientError::Refused { status, .. })) => {
            return Err(not_kraken(format!("`GET /ping` answered HTTP {status}")))
        }
        Ok(Err(ClientError::BadAnswer { reason, .. })) => return Err(not_kraken(reason)),
        Ok(Err(e)) => return Err(not_kraken(format!("a broken answer ({e})"))),
        Ok(Ok(answer)) => answer,
    };
    let orchestrator = match answer.orchestrator.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(o) => Some(
            normalize_address(o)
                .map_err(|e| not_kraken(format!("its `orchestrator` field is unusable: {e}")))?,
        ),
    };
    Ok(Found {
        address: address.trim_end_matches('/').to_string(),
        node_id: answer.node_id,
        node_name: answer.node_name,
        role: answer.role,
        epoch: answer.epoch,
        orchestrator,
        how,
    })
}

/// Checks the agent at `address` (`host`, `host:port` or `http://host:port`)
/// for `--join`. When a worker answers and names its orchestrator, that
/// orchestrator is asked instead (once: a worker naming a worker is an error).
///
/// # Errors
///
/// [`DiscoveryError::BadAddress`] for an unusable address, the errors of
/// [`probe`], and [`DiscoveryError::NoOrchestrator`] when a worker answers
/// without naming a reachable orchestrator.
pub async fn join(address: &str) -> Result<Found, DiscoveryError> {
    let address = normalize_address(address)?;
    let client = client(JOIN_TIMEOUT)?;
    let found = probe_with(&client, &address, JOIN_TIMEOUT, How::Join).await?;
    if found.role != "worker" {
        return Ok(found);
    }
    let Some(next) = found.orchestrator.clone() else {
        return Err(DiscoveryError::NoOrchestrator {
            address,
            detail: "and does not name its orchestrator".to_string(),
        });
    };
    info!(worker = %address, orchestrator = %next, "a worker answered; asking the orchestrator it names");
    let followed = probe_with(&client, &next, JOIN_TIMEOUT, How::Join).await?;
    if followed.role == "worker" {
        return Err(DiscoveryError::NoOrchestrator {
            address,
            detail: format!("and names {next} as its orchestrator, which is a worker too"),
        });
    }
    Ok(followed)
}

/// An IPv4 subnet such as `192.168.1.0/24`; the host bits are cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    net: ipnet::Ipv4Net,
}

impl Subnet {
    /// The subnet of prefix length `prefix` (0 to 32) that holds `addr`.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::BadSubnet`] when `prefix` is above 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, DiscoveryError> {
        if prefix > 32 {
            return Err(DiscoveryError::BadSubnet {
                text: format!("{addr}/{prefix}"),
                reason: format!("the prefix {prefix} is longer than 32"),
            });
        }
        let net = ipnet::Ipv4Net::new(addr, prefix).map_err(|e| DiscoveryError::BadSubnet {
            text: format!("{addr}/{prefix}"),
            reason: e.to_string(),
        })?;
        Ok(Self { net: net.trunc() })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        self.net.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.net.prefix_len()
    }

    /// Whether `addr` lies in this subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.net.contains(&addr)
    }

    /// How many addresses [`Subnet::hosts`] yields.
    pub fn host_count(&self) -> u64 {
        match self.prefix() {
            32 => 1,
            31 => 2,
            p => (1u64 << (32 - p)) - 2,
        }
    }

    /// The host addresses: all but the network and broadcast addresses; both
    /// addresses of a /31 (point-to-point links) and the one of a /32.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.net.hosts()
    }

    /// The subnet an interface with `addr/prefix` would scan: itself when the
    /// prefix is at least [`MIN_LOCAL_PREFIX`], otherwise the /24 around `addr`.
    pub fn trimmed_around(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = if (MIN_LOCAL_PREFIX..=32).contains(&prefix) { prefix } else { 24 };
        match ipnet::Ipv4Net::new(addr, prefix) {
            Ok(net) => Self { net: net.trunc() },
            // The prefix is at most 32 here; a /32 of the address is the safe answer.
            Err(_) => Self { net: ipnet::Ipv4Net::from(addr) },
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.net)
    }
}

impl FromStr for Subnet {
    type Err = DiscoveryError;

    /// Reads `a.b.c.d/nn`; host bits are allowed and cleared.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| DiscoveryError::BadSubnet { text: text.to_string(), reason };
        let (addr, prefix) =
            text.trim().split_once('/').ok_or_else(|| bad("the `/nn` prefix is missing".into()))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad(format!("`{addr}` is not an IPv4 address")))?;
        let prefix: u8 =
            prefix.parse().map_err(|_| bad(format!("`{prefix}` is not a prefix length (0 to 32)")))?;
        if prefix > 32 {
            return Err(bad(format!("the prefix {prefix} is longer than 32")));
        }
        Self::new(addr, prefix)
    }
}

/// One IPv4 address of a network interface, as [`subnets_of`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The interface's name, such as `eth0`.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The prefix length of its subnet.
    pub prefix: u8,
}

/// Whether an interface belongs to the container engine (its bridges and
/// their veth ends): the apps' containers live there, not other agents.
fn is_container_interface(name: &str) -> bool {
    name == "docker0" || name.starts_with("br-") || name.starts_with("veth")
}

/// The subnets to scan for these interface addresses: loopback, container
/// bridges and unspecified addresses are left out, prefixes shorter than
/// [`MIN_LOCAL_PREFIX`] are trimmed to the /24 around the address, and each
/// subnet appears once.
pub fn subnets_of(interfaces: &[InterfaceAddr]) -> Vec<Subnet> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for i in interfaces {
        if i.ip.is_loopback()
            || i.ip.is_unspecified()
            || i.ip.is_multicast()
            || is_container_interface(&i.name)
        {
            continue;
        }
        let subnet = Subnet::trimmed_around(i.ip, i.prefix);
        if seen.insert(subnet) {
            out.push(subnet);
        }
    }
    out
}

/// The machine's own IPv4 subnets to scan (see [`subnets_of`]); empty when
/// the interfaces cannot be read (the reason is logged).
pub fn local_subnets() -> Vec<Subnet> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => {
            let addrs: Vec<InterfaceAddr> = interfaces
                .into_iter()
                .filter(|i| !i.is_loopback())
                .filter_map(|i| match i.addr {
                    if_addrs::IfAddr::V4(v4) => {
                        Some(InterfaceAddr { name: i.name, ip: v4.ip, prefix: v4.prefixlen })
                    }
                    if_addrs::IfAddr::V6(_) => None,
                })
                .collect();
            subnets_of(&addrs)
        }
        Err(e) => {
            warn!(error = %e, "cannot list the network interfaces; no subnet will be scanned");
            Vec::new()
        }
    }
}

/// Asks `GET /ping` on `port` of every host address of `subnets`, at most
/// `concurrency` at a time, each within `timeout`, and returns the Kraken
/// agents that answered, best first (see [`sort_by_preference`]).
///
/// Subnets with a prefix shorter than [`MIN_SCAN_PREFIX`] are skipped with a
/// warning: scanning them would take too long and reach too far.
pub async fn scan_subnets(
    subnets: &[Subnet],
    port: u16,
    concurrency: usize,
    timeout: Duration,
) -> Vec<Found> {
    let client = match client(timeout) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot scan");
            return Vec::new();
        }
    };
    let mut seen = HashSet::new();
    let mut hosts = Vec::new();
    for subnet in subnets {
        if subnet.prefix() < MIN_SCAN_PREFIX {
            warn!(%subnet, "not scanning a subnet larger than /{MIN_SCAN_PREFIX}; give a smaller one");
            continue;
        }
        hosts.extend(subnet.hosts().filter(|h| seen.insert(*h)));
    }
    let started = Instant::now();
    let asked = hosts.len();
    let client = &client;
    let mut found: Vec<Found> = stream::iter(hosts)
        .map(|host| async move {
            let address = format!("http://{host}:{port}");
            match probe_with(client, &address, timeout, How::Scan).await {
                Ok(f) => Some(f),
                Err(e @ DiscoveryError::NotKraken { .. }) => {
                    debug!(error = %e, "ignoring a non-Kraken answer");
                    None
                }
                Err(_) => None,
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|f| async move { f })
        .collect()
        .await;
    sort_by_preference(&mut found);
    debug!(asked, answered = found.len(), took = ?started.elapsed(), "subnet scan done");
    found
}

/// Orders agents best first: orchestrators before other roles, then the
/// highest epoch, then by address (so the order does not depend on timing).
pub fn sort_by_preference(found: &mut [Found]) {
    found.sort_by(|a, b| {
        b.is_orchestrator()
            .cmp(&a.is_orchestrator())
            .then(b.epoch.cmp(&a.epoch))
            .then_with(|| a.address.cmp(&b.address))
    });
}

/// What an [`Advertiser`] announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The node's id (TXT `node_id`).
    pub node_id: String,
    /// The node's name: the mDNS instance name.
    pub node_name: String,
    /// The node's role (TXT `role`).
    pub role: String,
    /// The node's epoch (TXT `epoch`).
    pub epoch: u64,
    /// The API port.
    pub port: u16,
    /// The orchestrator the node follows, `http://host:port` (TXT
    /// `orchestrator`; an orchestrator names itself).
    pub orchestrator: Option<String>,
}

/// Announces this agent over mDNS as [`SERVICE_TYPE`] until dropped or
/// [`Advertiser::shutdown`].
///
/// The instance name is the node name; the TXT records carry `node_id`,
/// `role`, `epoch`, `orchestrator` (when known) and `version`; the addresses
/// are those of the machine's interfaces, each announced on its own interface.
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
    advertisement: Advertisement,
    stopped: bool,
}

impl fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .field("advertisement", &self.advertisement)
            .finish_non_exhaustive()
    }
}

/// The mDNS host name of a node: `kraken-<id>.local.` with the id reduced to
/// letters, digits and dashes.
fn host_name(node_id: &str) -> String {
    let id: String = node_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    format!("kraken-{id}.local.")
}

fn service_info(ad: &Advertisement) -> Result<ServiceInfo, DiscoveryError> {
    let epoch = ad.epoch.to_string();
    let mut properties = vec![
        ("node_id", ad.node_id.as_str()),
        ("role", ad.role.as_str()),
        ("epoch", epoch.as_str()),
        ("version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(orchestrator) = &ad.orchestrator {
        properties.push(("orchestrator", orchestrator.as_str()));
    }
    ServiceInfo::new(SERVICE_TYPE, &ad.node_name, &host_name(&ad.node_id), "", ad.port, &properties[..])
        .map(ServiceInfo::enable_addr_auto)
        .map_err(|source| DiscoveryError::Mdns {
            what: format!("describing the service `{}`", ad.node_name),
            source,
        })
}

impl Advertiser {
    /// Starts announcing `advertisement`.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Mdns`] when the mDNS service cannot start or the
    /// announcement is invalid (say, an empty node name). Multicast problems
    /// of the network show up later, in the log of the mDNS library.
    pub fn start(advertisement: Advertisement) -> Result<Self, DiscoveryError> {
        let info = service_info(&advertisement)?;
        let fullname = info.get_fullname().to_string();
        let daemon = ServiceDaemon::new()
            .map_err(|source| DiscoveryError::Mdns { what: "starting the mDNS service".into(), source })?;
        daemon
            .register(info)
            .map_err(|source| DiscoveryError::Mdns { what: format!("announcing `{fullname}`"), source })?;
        info!(service = %fullname, port = advertisement.port, "announcing this agent over mDNS");
        Ok(Self { daemon, fullname, advertisement, stopped: false })
    }

    /// The announced full name, `<node name>._kraken._tcp.local.`.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// What is being announced.
    pub fn advertisement(&self) -> &Advertisement {
        &self.advertisement
    }

    /// Announces a new role, epoch and orchestrator (say, after a promotion).
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Mdns`] when the mDNS service has stopped.
    pub fn update(
        &mut self,
        role: &str,
        epoch: u64,
        orchestrator: Option<&str>,
    ) -> Result<(), DiscoveryError> {
        let mut next = self.advertisement.clone();
        next.role = role.to_string();
        next.epoch = epoch;
        next.orchestrator = orchestrator.map(str::to_string);
        let info = service_info(&next)?;
        self.daemon.register(info).map_err(|source| DiscoveryError::Mdns {
            what: format!("announcing `{}` again", self.fullname),
            source,
        })?;
        self.advertisement = next;
        Ok(())
    }

    /// Withdraws the announcement (peers are told it is gone) and stops the
    /// mDNS service. Dropping the advertiser does the same without waiting.
    pub async fn shutdown(mut self) {
        self.stopped = true;
        match self.daemon.unregister(&self.fullname) {
            Ok(status) => {
                if tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await.is_err() {
                    warn!(service = %self.fullname, "mDNS did not confirm the withdrawal within 2 s");
                }
            }
            Err(e) => warn!(error = %e, service = %self.fullname, "cannot withdraw the mDNS announcement"),
        }
        match self.daemon.shutdown() {
            Ok(status) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await;
            }
            Err(e) => debug!(error = %e, "the mDNS service had already stopped"),
        }
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Err(e) = self.daemon.unregister(&self.fullname) {
            debug!(error = %e, service = %self.fullname, "cannot withdraw the mDNS announcement");
        }
        if let Err(e) = self.daemon.shutdown() {
            debug!(error = %e, "the mDNS service had already stopped");
        }
    }
}

/// The addresses to try for an announced service, best first: IPv4 before
/// IPv6, other hosts' addresses before loopback; link-local IPv6 is left out
/// (it needs an interface scope a URL cannot carry portably).
fn candidate_addresses(addresses: impl IntoIterator<Item = IpAddr>, port: u16) -> Vec<String> {
    let mut ips: Vec<IpAddr> = addresses
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast(),
            IpAddr::V6(v6) => {
                !v6.is_unspecified() && !v6.is_multicast() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), ip.is_loopback(), *ip));
    ips.dedup();
    ips.into_iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("http://{v4}:{port}"),
            IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        })
        .collect()
}

/// Confirms one announced service: the first of its addresses whose `/ping`
/// answers as a Kraken agent.
async fn confirm(client: reqwest::Client, service: Box<ResolvedService>, timeout: Duration) -> Option<Found> {
    let ips = service.addresses.iter().map(|a| a.to_ip_addr());
    for address in candidate_addresses(ips, service.port) {
        match probe_with(&client, &address, timeout, How::Mdns).await {
            Ok(found) => return Some(found),
            Err(e) => debug!(service = %service.fullname, error = %e, "an announced address did not confirm"),
        }
    }
    debug!(service = %service.fullname, "no announced address answered as a Kraken agent");
    None
}

/// Listens for `timeout` for agents announcing [`SERVICE_TYPE`] over mDNS and
/// returns those whose `/ping` confirms them, best first, one per node.
///
/// Never fails: when mDNS cannot start (say, no multicast), the reason is
/// logged and the result is empty.
pub async fn browse_mdns(timeout: Duration) -> Vec<Found> {
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "cannot start mDNS; not looking for announced agents");
            return Vec::new();
        }
    };
    let found = browse_with(&daemon, timeout).await;
    if let Ok(status) = daemon.shutdown() {
        let _ = tokio::time::timeout(Duration::from_secs(1), status.recv_async()).await;
    }
    found
}

async fn browse_with(daemon: &ServiceDaemon, timeout: Duration) -> Vec<Found> {
    // Loopback announcements are the same machine's; they are useful (an
    // agent started beside an orchestrator) and cost nothing.
    if let Err(e) = daemon.enable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]) {
        debug!(error = %e, "cannot listen on loopback for mDNS");
    }
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot browse mDNS for {SERVICE_TYPE}");
            return Vec::new();
        }
    };
    let probe_timeout = Duration::from_secs(1).min(timeout.max(DEFAULT_PROBE_TIMEOUT));
    let client = match client(probe_timeout) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot confirm mDNS answers");
            return Vec::new();
        }
    };
    let deadline = Instant::now() + timeout;
    let mut confirming = FuturesUnordered::new();
    let mut asked = HashSet::new();
    let mut confirmed: HashMap<String, Found> = HashMap::new();
    loop {
        tokio::select! {
            event = tokio::time::timeout_at(deadline, events.recv_async()) => match event {
                Ok(Ok(ServiceEvent::ServiceResolved(service))) => {
                    debug!(service = %service.fullname, port = service.port, "mDNS announcement");
                    let key = (service.fullname.clone(), service.port, {
                        let mut a: Vec<IpAddr> = service.addresses.iter().map(|a| a.to_ip_addr()).collect();
                        a.sort();
                        a
                    });
                    if asked.insert(key) {
                        confirming.push(confirm(client.clone(), service, probe_timeout));
                    }
                }
                Ok(Ok(other)) => debug!(event = ?other, "mDNS event"),
                Ok(Err(_)) => {
                    warn!("the mDNS service stopped while browsing");
                    break;
                }
                Err(_) => break,
            },
            Some(found) = confirming.next(), if !confirming.is_empty() => {
                if let Some(f) = found {
                    confirmed.entry(f.node_id.clone()).or_insert(f);
                }
            }
        }
    }
    if let Err(e) = daemon.stop_browse(SERVICE_TYPE) {
        debug!(error = %e, "cannot stop browsing mDNS");
    }
    // Confirmations still running get their own (short) timeout.
    while let Some(found) = confirming.next().await {
        if let Some(f) = found {
            confirmed.entry(f.node_id.clone()).or_insert(f);
        }
    }
    let mut out: Vec<Found> = confirmed.into_values().collect();
    sort_by_preference(&mut out);
    out
}

/// How [`discover`] looks for an orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryOptions {
    /// An explicit address (`--join`): when set, only it is tried.
    pub join: Option<String>,
    /// Whether to listen for mDNS announcements.
    pub mdns: bool,
    /// How long to listen for mDNS announcements.
    pub mdns_timeout: Duration,
    /// Whether to scan subnets when mDNS found nothing.
    pub scan: bool,
    /// The subnets to scan; `None` means [`local_subnets`].
    pub subnets: Option<Vec<Subnet>>,
    /// The API port to scan.
    pub port: u16,
    /// How many `/ping`s a scan keeps in flight.
    pub concurrency: usize,
    /// How long one `/ping` of a scan may take.
    pub probe_timeout: Duration,
    /// Addresses to ignore (`host:port` or `http://host:port`): this agent's own.
    pub exclude: Vec<String>,
    /// A node id to ignore: this agent's own.
    pub own_node_id: Option<String>,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            join: None,
            mdns: true,
            mdns_timeout: DEFAULT_MDNS_TIMEOUT,
            scan: true,
            subnets: None,
            port: DEFAULT_PORT,
            concurrency: DEFAULT_CONCURRENCY,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            exclude: Vec::new(),
            own_node_id: None,
        }
    }
}

/// Picks the agent to join from `found`: drops this agent itself (by address
/// or node id), then takes the best by [`sort_by_preference`].
pub fn choose(mut found: Vec<Found>, options: &DiscoveryOptions) -> Option<Found> {
    let excluded: HashSet<String> =
        options.exclude.iter().filter_map(|a| normalize_address(a).ok()).collect();
    found.retain(|f| {
        !excluded.contains(&f.address) && options.own_node_id.as_deref().is_none_or(|own| own != f.node_id)
    });
    sort_by_preference(&mut found);
    found.into_iter().next()
}

/// Looks for an orchestrator: the `join` address if given; otherwise mDNS,
/// then (when mDNS found no one) a scan of the subnets. `Ok(None)` means no
/// agent answered: this agent should become the orchestrator.
///
/// When the best answer is a worker that names its orchestrator, that
/// orchestrator is asked and returned instead if it answers.
///
/// # Errors
///
/// Only with `join`: the errors of [`join`], so a mistyped address is
/// reported instead of silently starting a new platform.
pub async fn discover(options: &DiscoveryOptions) -> Result<Option<Found>, DiscoveryError> {
    if let Some(address) = &options.join {
        return join(address).await.map(Some);
    }
    let mut best = None;
    if options.mdns {
        best = choose(browse_mdns(options.mdns_timeout).await, options);
        match &best {
            Some(f) => info!(address = %f.address, node = %f.node_name, "found an agent over mDNS"),
            None => debug!("no agent announced itself over mDNS"),
        }
    }
    if best.is_none() && options.scan {
        let subnets = options.subnets.clone().unwrap_or_else(local_subnets);
        info!(subnets = ?subnets.iter().map(Subnet::to_string).collect::<Vec<_>>(), port = options.port, "scanning for agents");
        let found = scan_subnets(&subnets, options.port, options.concurrency, options.probe_timeout).await;
        best = choose(found, options);
    }
    let Some(found) = best else { return Ok(None) };
    if found.is_orchestrator() {
        return Ok(Some(found));
    }
    if let Some(next) = &found.orchestrator {
        match probe(next, options.probe_timeout.max(Duration::from_secs(1))).await {
            Ok(o) if o.is_orchestrator() => return Ok(Some(Found { how: found.how, ..o })),
            Ok(o) => debug!(address = %o.address, role = %o.role, "the named orchestrator is not one"),
            Err(e) => debug!(error = %e, "the orchestrator a worker names does not answer"),
        }
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn found(address: &str, role: &str, epoch: u64) -> Found {
        Found {
            address: address.to_string(),
            node_id: format!("id-{address}"),
            node_name: address.to_string(),
            role: role.to_string(),
            epoch,
            orchestrator: None,
            how: How::Scan,
        }
    }

    #[test]
    fn normalizes_through_the_clients_normaliser() {
        assert_eq!(normalize_address("pi4").unwrap(), "http://pi4:8000");
        assert_eq!(normalize_address("fd00::1").unwrap(), "http://[fd00::1]:8000");
    }

    #[test]
    fn rejects_bad_addresses() {
        // The forms are the client's (see client::address); discovery adds
        // that a LAN agent speaks plain http.
        for bad in ["", "https://host:8000", "host:8000/api"] {
            let err = normalize_address(bad).unwrap_err();
            assert!(matches!(err, DiscoveryError::BadAddress { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("expected `host`"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_subnets_and_clears_host_bits() {
        let s: Subnet = "192.168.1.77/24".parse().unwrap();
        assert_eq!(s.network(), Ipv4Addr::new(192, 168, 1, 0));
        assert_eq!(s.prefix(), 24);
        assert_eq!(s.to_string(), "192.168.1.0/24");
        assert!(s.contains(Ipv4Addr::new(192, 168, 1, 255)));
        assert!(!s.contains(Ipv4Addr::new(192, 168, 2, 1)));
        assert_eq!("0.0.0.0/0".parse::<Subnet>().unwrap().network(), Ipv4Addr::UNSPECIFIED);
        for bad in ["192.168.1.0", "192.168.1.0/33", "192.168.1/24", "x/24", "10.0.0.0/-1", "10.0.0.0/a"] {
            assert!(matches!(bad.parse::<Subnet>(), Err(DiscoveryError::BadSubnet { .. })), "{bad}");
        }
    }

    #[test]
    fn enumerates_hosts() {
        let s: Subnet = "10.0.0.0/28".parse().unwrap();
        let hosts: Vec<Ipv4Addr> = s.hosts().collect();
        assert_eq!(hosts.len(), 14);
        assert_eq!(s.host_count(), 14);
        assert_eq!(hosts[0], Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(hosts[13], Ipv4Addr::new(10, 0, 0, 14));
        let p2p: Vec<Ipv4Addr> = "10.0.0.4/31".parse::<Subnet>().unwrap().hosts().collect();
        assert_eq!(p2p, [Ipv4Addr::new(10, 0, 0, 4), Ipv4Addr::new(10, 0, 0, 5)]);
        let one: Vec<Ipv4Addr> = "10.0.0.9/32".parse::<Subnet>().unwrap().hosts().collect();
        assert_eq!(one, [Ipv4Addr::new(10, 0, 0, 9)]);
        let top: Vec<Ipv4Addr> = "255.255.255.252/30".parse::<Subnet>().unwrap().hosts().collect();
        assert_eq!(top, [Ipv4Addr::new(255, 255, 255, 253), Ipv4Addr::new(255, 255, 255, 254)]);
        assert_eq!("10.0.0.0/24".parse::<Subnet>().unwrap().hosts().count(), 254);
    }

    #[test]
    fn trims_large_local_subnets_to_the_24_around_the_address() {
        let addr = |name: &str, ip: [u8; 4], prefix| InterfaceAddr {
            name: name.into(),
            ip: Ipv4Addr::from(ip),
            prefix,
        };
        let subnets = subnets_of(&[
            addr("eth0", [192, 168, 1, 20], 24),
            addr("eth1", [10, 20, 30, 40], 8),
            addr("wlan0", [172, 16, 5, 9], 22),
            addr("wlan1", [172, 20, 5, 9], 21),
            addr("lo", [127, 0, 0, 1], 8),
            addr("docker0", [172, 17, 0, 1], 16),
            addr("br-1a2b", [172, 18, 0, 1], 16),
            addr("eth0:1", [192, 168, 1, 21], 24),
        ]);
        let shown: Vec<String> = subnets.iter().map(Subnet::to_string).collect();
        assert_eq!(shown, ["192.168.1.0/24", "10.20.30.0/24", "172.16.4.0/22", "172.20.5.0/24"]);
    }

    #[test]
    fn prefers_orchestrators_then_the_highest_epoch() {
        let mut list = vec![
            found("http://h1:8000", "worker", 9),
            found("http://h2:8000", "orchestrator", 2),
            found("http://h3:8000", "orchestrator", 5),
            found("http://h0:8000", "orchestrator", 5),
            found("http://h4:8000", "worker", 1),
        ];
        sort_by_preference(&mut list);
        let order: Vec<&str> = list.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(
            order,
            ["http://h0:8000", "http://h3:8000", "http://h2:8000", "http://h1:8000", "http://h4:8000"]
        );
    }

    #[test]
    fn choose_skips_this_agent() {
        let list =
            vec![found("http://h3:8000", "orchestrator", 5), found("http://h2:8000", "orchestrator", 2)];
        let options = DiscoveryOptions { exclude: vec!["h3".into()], ..Default::default() };
        assert_eq!(choose(list.clone(), &options).unwrap().address, "http://h2:8000");
        let options =
            DiscoveryOptions { own_node_id: Some("id-http://h2:8000".into()), ..Default::default() };
        assert_eq!(choose(list.clone(), &options).unwrap().address, "http://h3:8000");
        let options = DiscoveryOptions {
            exclude: vec!["http://h2:8000".into(), "h3:8000".into()],
            ..Default::default()
        };
        assert_eq!(choose(list, &options), None);
    }

    #[test]
    fn reads_ping_answers() {
        let ok = br#"{"service":"kraken","version":"0.1.0","node_id":"n1","node_name":"pi","role":"orchestrator","epoch":4}"#;
        let a = crate::client::parse_ping(ok).unwrap();
        assert_eq!(
            (a.node_id.as_str(), a.node_name.as_str(), a.role.as_str(), a.epoch),
            ("n1", "pi", "orchestrator", 4)
        );
        assert!(crate::client::parse_ping(b"<html>").unwrap_err().contains("not JSON"));
        assert!(crate::client::parse_ping(br#"{"service":"other"}"#).unwrap_err().contains("`other`"));
        assert!(crate::client::parse_ping(br#"{"status":"ok"}"#).unwrap_err().contains("no `service`"));
        assert!(crate::client::parse_ping(br#"{"service":"kraken","node_id":"n1"}"#)
            .unwrap_err()
            .contains("lacks a field"));
    }

    #[test]
    fn orders_announced_addresses() {
        let ips: Vec<IpAddr> = ["fe80::1", "127.0.0.1", "fd00::2", "192.168.1.9", "0.0.0.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            candidate_addresses(ips, 8000),
            ["http://192.168.1.9:8000", "http://127.0.0.1:8000", "http://[fd00::2]:8000"]
        );
    }

    #[test]
    fn host_names_are_dns_labels() {
        assert_eq!(host_name("n_AB.c 1"), "kraken-n-ab-c-1.local.");
    }
}
