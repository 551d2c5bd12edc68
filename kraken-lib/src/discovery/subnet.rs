//! Subnets: the machine's own small IPv4 subnets and a scan of them for
//! agents answering `GET /ping`.

use super::*;

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
pub(super) fn is_container_interface(name: &str) -> bool {
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
