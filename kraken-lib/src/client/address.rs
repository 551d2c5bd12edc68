//! The one place where an agent's address is read: `host`, `host:port` or
//! `http://host:port` become `http://host:port`, parsed by the `url` crate.

use std::net::Ipv6Addr;

use url::Url;

/// The port of Kraken's API when an address names none.
pub const DEFAULT_PORT: u16 = 8000;

/// Why an address could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot use `{address}` as an agent address: {reason}; expected `host`, `host:port` or `http://host:port` (the port defaults to {DEFAULT_PORT})")]
pub struct AddressError {
    /// The address as given.
    pub address: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Turns `host`, `host:port`, `http://host:port` or `https://host:port`
/// (with or without a trailing `/`) into `scheme://host:port`; the port
/// defaults to [`DEFAULT_PORT`]. IPv6 addresses are written in brackets
/// (`[fd00::1]:8000`); a bare IPv6 address without a port is accepted too.
///
/// # Errors
///
/// [`AddressError`] for an empty host, a bad port, a path, user information,
/// or a scheme other than `http` and `https`.
///
/// # Examples
///
/// ```
/// use kraken_lib::client::normalize_address;
/// assert_eq!(normalize_address("pi4").unwrap(), "http://pi4:8000");
/// assert_eq!(normalize_address("10.0.0.7:9000").unwrap(), "http://10.0.0.7:9000");
/// assert_eq!(normalize_address("http://pi4:80/").unwrap(), "http://pi4:80");
/// assert!(normalize_address("pi4:8000/api").is_err());
/// ```
pub fn normalize_address(input: &str) -> Result<String, AddressError> {
    let bad = |reason: &str| AddressError { address: input.to_string(), reason: reason.to_string() };
    let text = input.trim();
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), text),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad(&format!("the scheme `{scheme}` is not supported; the Kraken API speaks `http`")));
    }
    // A bare IPv6 address has colons that are not a port's.
    let rest = match rest.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => rest.to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let after_host = authority.rsplit_once(']').map_or(authority, |(_, tail)| tail);
    if after_host.ends_with(':') {
        return Err(bad("a `:` without a port follows the host"));
    }
    let explicit_port = after_host.contains(':');
    let url = Url::parse(&format!("{scheme}://{rest}")).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it has user information; give only the host and port"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a path; give only the host and port"));
    }
    let host = match url.host() {
        Some(host) if !host.to_string().is_empty() => host.to_string(),
        _ => return Err(bad("the host is empty")),
    };
    let port = match url.port() {
        Some(0) => return Err(bad("the port is 0")),
        Some(port) => port,
        None if explicit_port => url.port_or_known_default().unwrap_or(DEFAULT_PORT),
        None => DEFAULT_PORT,
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_host_forms() {
        for (given, expected) in [
            ("pi4", "http://pi4:8000"),
            (" pi4.local ", "http://pi4.local:8000"),
            ("10.1.2.3:9000", "http://10.1.2.3:9000"),
            ("http://10.1.2.3:9000", "http://10.1.2.3:9000"),
            ("HTTP://host:81/", "http://host:81"),
            ("http://host", "http://host:8000"),
            ("http://host:80", "http://host:80"),
            ("https://host", "https://host:8000"),
            ("[fd00::1]:9000", "http://[fd00::1]:9000"),
            ("[fd00::1]", "http://[fd00::1]:8000"),
            ("fd00::1", "http://[fd00::1]:8000"),
        ] {
            assert_eq!(normalize_address(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn rejects_bad_addresses_saying_why() {
        for bad in [
            "",
            "http://",
            ":8000",
            "host:",
            "host:0",
            "host:70000",
            "host:x",
            "ftp://host:8000",
            "host:8000/api",
            "host:8000?x=1",
            "user@host",
            "[fd00::1",
            "[nope]:80",
            "a b:80",
            "a:b:c",
        ] {
            let err = normalize_address(bad).expect_err(bad);
            assert_eq!(err.address, bad);
            assert!(err.to_string().contains("expected `host`"), "{bad}: {err}");
        }
    }
}
