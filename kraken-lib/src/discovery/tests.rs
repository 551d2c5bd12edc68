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
    let addr =
        |name: &str, ip: [u8; 4], prefix| InterfaceAddr { name: name.into(), ip: Ipv4Addr::from(ip), prefix };
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
    let list = vec![found("http://h3:8000", "orchestrator", 5), found("http://h2:8000", "orchestrator", 2)];
    let options = DiscoveryOptions { exclude: vec!["h3".into()], ..Default::default() };
    assert_eq!(choose(list.clone(), &options).unwrap().address, "http://h2:8000");
    let options = DiscoveryOptions { own_node_id: Some("id-http://h2:8000".into()), ..Default::default() };
    assert_eq!(choose(list.clone(), &options).unwrap().address, "http://h3:8000");
    let options =
        DiscoveryOptions { exclude: vec!["http://h2:8000".into(), "h3:8000".into()], ..Default::default() };
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
