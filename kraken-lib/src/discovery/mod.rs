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

mod mdns;
mod subnet;

pub use mdns::*;
pub use subnet::*;

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
mod tests;
