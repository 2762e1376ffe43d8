//! Typed operator statements, produced by [`crate::sql::parse_statement`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::db_name::DatabaseName;

/// Port used for a client entry when the operator gives no `port=`.
pub const DEFAULT_CLIENT_PORT: u16 = 9091;

/// Longest accepted DNS name, in bytes (RFC 1035, without the trailing dot).
const MAX_DNS_NAME_LEN: usize = 253;

/// Longest accepted DNS label, in bytes (RFC 1035).
const MAX_DNS_LABEL_LEN: usize = 63;

/// One parsed operator statement; all names and endpoints in it are already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    CreateDatabase { name: DatabaseName },
    DropDatabase { name: DatabaseName },
    ShowDatabases,
    ShowNodes,
    ShowCluster,
    AddClient(ClientSpec),
    DropClient(ClientSpec),
}

/// One (client endpoint, database) entry as typed by an operator; ordered and hashable so
/// client lists can be kept as sets and shown in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientSpec {
    pub host: ClientHost,
    pub port: u16,
    pub db: DatabaseName,
}

/// Where a client is reached: a literal address, or a DNS name (stored lowercase, since DNS
/// is case-insensitive) that is resolved when the client is contacted.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum ClientHost {
    Ip(IpAddr),
    Dns(String),
}

/// Why a string is neither an IP address nor a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientHostError {
    #[error("client host is empty")]
    Empty,
    #[error("{0:?} is not a valid IPv4 address")]
    BadIpv4(String),
    #[error("{0:?} is not a valid IPv6 address")]
    BadIpv6(String),
    #[error("{name:?} is not a valid DNS name: {reason}")]
    BadDnsName { name: String, reason: String },
}

impl fmt::Display for ClientHost {
    /// IPv4 as is, IPv6 without brackets, DNS names as stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHost::Ip(ip) => write!(f, "{ip}"),
            ClientHost::Dns(name) => f.write_str(name),
        }
    }
}

impl TryFrom<String> for ClientHost {
    type Error = ClientHostError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ClientHost> for String {
    fn from(host: ClientHost) -> String {
        host.to_string()
    }
}

impl FromStr for ClientHost {
    type Err = ClientHostError;

    /// Accepts an IPv4 literal, an IPv6 literal (optionally in `[brackets]`) or a DNS name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ClientHostError::Empty);
        }
        if let Some(inner) = s.strip_prefix('[') {
            return inner
                .strip_suffix(']')
                .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
                .map(|ip| ClientHost::Ip(IpAddr::V6(ip)))
                .ok_or_else(|| ClientHostError::BadIpv6(s.to_string()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(ClientHost::Ip(ip));
        }
        if s.contains(':') {
            return Err(ClientHostError::BadIpv6(s.to_string()));
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(ClientHostError::BadIpv4(s.to_string()));
        }
        check_dns_name(s).map_err(|reason| ClientHostError::BadDnsName {
            name: s.to_string(),
            reason,
        })?;
        Ok(ClientHost::Dns(s.to_ascii_lowercase()))
    }
}

/// Checks RFC 1123 host name syntax: dot-separated labels of letters, digits and '-'.
fn check_dns_name(name: &str) -> Result<(), String> {
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "it contains {bad:?}; only letters, digits, '-' and '.' are allowed"
        ));
    }
    if name.len() > MAX_DNS_NAME_LEN {
        return Err(format!("it is longer than {MAX_DNS_NAME_LEN} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(
                "it has an empty label (two dots in a row, or a leading or trailing dot)"
                    .to_string(),
            );
        }
        if label.len() > MAX_DNS_LABEL_LEN {
            return Err(format!(
                "label {label:?} is longer than {MAX_DNS_LABEL_LEN} characters"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Result<ClientHost, ClientHostError> {
        s.parse()
    }

    #[test]
    fn parses_ip_literals() {
        assert_eq!(
            host("192.168.0.3"),
            Ok(ClientHost::Ip("192.168.0.3".parse().unwrap()))
        );
        assert_eq!(host("::1"), Ok(ClientHost::Ip("::1".parse().unwrap())));
        assert_eq!(host("[::1]"), Ok(ClientHost::Ip("::1".parse().unwrap())));
        assert_eq!(
            host("[2001:db8::1]"),
            Ok(ClientHost::Ip("2001:db8::1".parse().unwrap()))
        );
    }

    #[test]
    fn parses_dns_names_lowercased() {
        assert_eq!(
            host("Client-1.Example"),
            Ok(ClientHost::Dns("client-1.example".into()))
        );
        assert_eq!(
            host("xn--bcher-kva.example"),
            Ok(ClientHost::Dns("xn--bcher-kva.example".into()))
        );
        assert_eq!(host("localhost"), Ok(ClientHost::Dns("localhost".into())));
        let longest_label = "a".repeat(63);
        assert!(host(&longest_label).is_ok());
    }

    #[test]
    fn rejects_bad_hosts() {
        assert_eq!(host(""), Err(ClientHostError::Empty));
        for bad in ["999.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1..2"] {
            assert_eq!(
                host(bad),
                Err(ClientHostError::BadIpv4(bad.into())),
                "{bad}"
            );
        }
        for bad in ["[::1", "[1.2.3.4]", ":::1", "fe80::1%eth0", "host:80"] {
            assert_eq!(
                host(bad),
                Err(ClientHostError::BadIpv6(bad.into())),
                "{bad}"
            );
        }
        for bad in [
            "-a.example",
            "a-.example",
            "a..b",
            "a.",
            ".a",
            "a_b",
            "a b",
            "ü.example",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert!(
                matches!(host(bad), Err(ClientHostError::BadDnsName { .. })),
                "{bad}: {:?}",
                host(bad)
            );
        }
        assert_eq!(
            host("999.1.1.1").unwrap_err().to_string(),
            "\"999.1.1.1\" is not a valid IPv4 address"
        );
    }

    #[test]
    fn displays_hosts_without_brackets() {
        assert_eq!(host("10.0.0.1").unwrap().to_string(), "10.0.0.1");
        assert_eq!(host("[fe80::1]").unwrap().to_string(), "fe80::1");
        assert_eq!(host("A.example").unwrap().to_string(), "a.example");
    }
}
