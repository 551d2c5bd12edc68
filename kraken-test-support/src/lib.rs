//! Helpers shared by the tests of Kraken's crates: the local base image the
//! tests build on, what `docker` prints, TCP ports that no other test (in
//! this process or another) is given at the same time, and waiting for a
//! condition with a deadline.
//!
//! ## Ports without a race
//!
//! A test that starts a server in its own process binds port 0 and hands the
//! listener over ([`reserve_listener`]): nothing can take the port between
//! choosing and binding it. A test that starts an agent in another process
//! must name the port; [`free_port`] then gives one that
//!
//! - lies below the kernel's ephemeral range (`ip_local_port_range`), so the
//!   kernel never hands it to another program's port-0 bind or outgoing
//!   connection meanwhile;
//! - is claimed by this test process in a claim file under the temporary
//!   directory, created exclusively, so no other test process is given it
//!   while this one lives (a claim whose process is gone is taken over);
//! - could be bound when it was handed out.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The local image the tests build on: `KRAKEN_TEST_BASE_IMAGE`, else
/// `kraken-test-base:bookworm-v2`.
pub fn base_image() -> String {
    std::env::var("KRAKEN_TEST_BASE_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kraken-test-base:bookworm-v2".to_string())
}

/// The non-empty lines `docker <args>` prints (none when it fails).
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A listener on 127.0.0.1 on a port the kernel chose; hand it to the server
/// under test (`tokio::net::TcpListener::from_std` after `set_nonblocking`).
///
/// # Panics
/// When nothing can be bound on 127.0.0.1 (the test cannot run).
pub fn reserve_listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a port on 127.0.0.1")
}

/// The lowest port handed out.
const FIRST: u16 = 20_000;

/// A port on 127.0.0.1 for an agent in another process to listen on; see the
/// module's documentation for why no other test is given it meanwhile.
///
/// # Panics
/// When no port below the ephemeral range can be claimed.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let (end, _) = ephemeral_range();
    let span = end.saturating_sub(FIRST).max(1);
    // Start where this process's id points, so concurrent test processes
    // mostly look in different places.
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let offset = (start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))) % span;
        let port = FIRST + offset;
        if claim(port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port between {FIRST} and {end} could be claimed");
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`),
/// or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut parts = text.split_whitespace().filter_map(|p| p.parse::<u16>().ok());
    match (parts.next(), parts.next()) {
        (Some(low), Some(high)) if low > FIRST + 100 => (low, high),
        _ => (32_768, 60_999),
    }
}

fn claims_dir() -> PathBuf {
    std::env::temp_dir().join("kraken-test-ports")
}

/// Claims `port` for this process: creates its claim file exclusively, or
/// takes over a claim whose process is gone.
fn claim(port: u16) -> bool {
    let dir = claims_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let file = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&file) {
            Ok(mut f) => return write!(f, "{}", std::process::id()).is_ok(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&file).unwrap_or_default();
                let alive = owner.trim().parse::<u32>().is_ok_and(|pid| {
                    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
                });
                // A claim being written has no pid yet: leave it to its owner.
                if alive || owner.trim().is_empty() || std::fs::remove_file(&file).is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Asks `check` every 100 ms until it gives a value, and returns it; fails
/// the test, naming `what`, when `timeout` passes first.
///
/// # Panics
/// When `check` gave nothing within `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_handed_out_differ_lie_below_the_ephemeral_range_and_are_claimed() {
        let (low, _) = ephemeral_range();
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for port in &ports {
            assert!((FIRST..low).contains(port), "{port} outside {FIRST}..{low}");
            let owner = std::fs::read_to_string(claims_dir().join(port.to_string())).expect("claim file");
            assert_eq!(owner, std::process::id().to_string());
        }
    }

    #[test]
    fn a_claim_of_a_process_that_is_gone_is_taken_over() {
        let port = free_port();
        // No process has this id (above Linux's pid_max limit of 2^22).
        std::fs::write(claims_dir().join(port.to_string()), "4194400").expect("write a stale claim");
        assert!(claim(port));
        let owner = std::fs::read_to_string(claims_dir().join(port.to_string())).expect("claim file");
        assert_eq!(owner, std::process::id().to_string());
    }
}
