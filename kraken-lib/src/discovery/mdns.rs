//! mDNS: announcing this agent ([`Advertiser`]) and browsing for others
//! ([`browse_mdns`]), each answer confirmed with `GET /ping`.

use super::*;

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
pub(super) fn host_name(node_id: &str) -> String {
    let id: String = node_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    format!("kraken-{id}.local.")
}

pub(super) fn service_info(ad: &Advertisement) -> Result<ServiceInfo, DiscoveryError> {
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
pub(super) fn candidate_addresses(addresses: impl IntoIterator<Item = IpAddr>, port: u16) -> Vec<String> {
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
pub(super) async fn confirm(
    client: reqwest::Client,
    service: Box<ResolvedService>,
    timeout: Duration,
) -> Option<Found> {
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

pub(super) async fn browse_with(daemon: &ServiceDaemon, timeout: Duration) -> Vec<Found> {
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
