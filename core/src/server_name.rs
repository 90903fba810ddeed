//! Server names (spec appendix "Server Name") and the first steps of "Resolving server names"
//! in the server-server API: an IP literal, or a hostname with an explicit port, is connected to
//! directly. Delegation (`.well-known/matrix/server`, SRV records) is the caller's to add; a
//! hostname without a port falls back to port 8448 here, the spec's last step.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, ErrorKind, Result};

/// The port federation uses when a server name gives none.
pub const DEFAULT_FEDERATION_PORT: u16 = 8448;

/// The host part of a server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ipv4(Ipv4Addr),
    /// Written `[…]` in a server name.
    Ipv6(Ipv6Addr),
    /// A DNS name: 1 to 255 of `A-Z a-z 0-9 - .`.
    Dns(String),
}

/// A parsed server name: `hostname [ ":" port ]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerName {
    pub host: Host,
    pub port: Option<u16>,
}

fn invalid(name: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidParameter, Some("server_name"), format!("{name:?} is not a server name: {why}"))
}

impl ServerName {
    pub fn parse(name: &str) -> Result<ServerName> {
        let (host, port) = if let Some(rest) = name.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(|| invalid(name, "an IPv6 literal lacks its ']'"))?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| invalid(name, "not an IPv6 address between '[' and ']'"))?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| invalid(name, "only \":port\" may follow ']'"))?),
            };
            (Host::Ipv6(ip), port)
        } else {
            let (host, port) = match name.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (name, None),
            };
            let host = if let Ok(ip) = host.parse::<Ipv4Addr>() {
                Host::Ipv4(ip)
            } else if !host.is_empty()
                && host.len() <= 255
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                Host::Dns(host.to_ascii_lowercase())
            } else {
                return Err(invalid(name, "the host must be an IPv4 address, [IPv6] or a DNS name of A-Z a-z 0-9 - ."));
            };
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| invalid(name, "the port is above 65535"))?)
            }
            Some(_) => return Err(invalid(name, "the port must be 1 to 5 digits")),
        };
        Ok(ServerName { host, port })
    }

    /// The port to connect to: the explicit one, else 8448.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_FEDERATION_PORT)
    }

    /// The host as a connection target (no brackets around IPv6).
    pub fn host_string(&self) -> String {
        match &self.host {
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
            Host::Dns(name) => name.clone(),
        }
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ipv4(ip) => write!(f, "{ip}")?,
            Host::Ipv6(ip) => write!(f, "[{ip}]")?,
            Host::Dns(name) => f.write_str(name)?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples_parse() {
        let ok = |s: &str| ServerName::parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.message));
        assert_eq!(ok("matrix.org"), ServerName { host: Host::Dns("matrix.org".into()), port: None });
        assert_eq!(ok("matrix.org:8888"), ServerName { host: Host::Dns("matrix.org".into()), port: Some(8888) });
        assert_eq!(ok("1.2.3.4"), ServerName { host: Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4)), port: None });
        assert_eq!(ok("1.2.3.4:1234").port_or_default(), 1234);
        assert_eq!(ok("[1234:5678::abcd]").host, Host::Ipv6("1234:5678::abcd".parse().unwrap()));
        assert_eq!(ok("[1234:5678::abcd]:5678").port, Some(5678));
        assert_eq!(ok("localhost:8448").host_string(), "localhost");
        assert_eq!(ok("127.0.0.1:39001").to_string(), "127.0.0.1:39001");
        assert_eq!(ok("[::1]:8448").to_string(), "[::1]:8448");
        assert_eq!(ok("example.org").port_or_default(), 8448);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ":8448", "exa_mple.org", "example.org:", "example.org:123456", "example.org:65536", "example.org:80a",
            "[::1", "[nope]:80", "[::1]x", "a b", "example.org:1:2", "ex%ample"]
        {
            let e = ServerName::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter, "{bad:?}");
        }
    }
}
