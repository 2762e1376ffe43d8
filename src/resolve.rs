//! Host-name resolution done in Rust.
//!
//! The container image is a static binary in an empty filesystem: glibc's `getaddrinfo` there
//! cannot load its NSS modules, so names would not resolve. hickory reads `/etc/resolv.conf`
//! and `/etc/hosts` itself (Docker provides both, with its embedded DNS for service names).
//! Where no resolver configuration exists, the system's resolver is used instead.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tracing::debug;

/// One resolution attempt's time limit.
const LOOKUP_LIMIT: Duration = Duration::from_secs(3);

fn resolver() -> Option<&'static TokioResolver> {
    static RESOLVER: OnceLock<Option<TokioResolver>> = OnceLock::new();
    RESOLVER
        .get_or_init(
            || match TokioResolver::builder_tokio().and_then(|b| b.build()) {
                Ok(resolver) => Some(resolver),
                Err(e) => {
                    debug!(error = %e, "no resolver configuration; using the system resolver");
                    None
                }
            },
        )
        .as_ref()
}

/// The addresses of `host` (an IP literal, `localhost`, or a DNS name).
pub async fn resolve_host(host: &str) -> io::Result<Vec<IpAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let lookup = async {
        match resolver() {
            Some(resolver) => resolver
                .lookup_ip(host)
                .await
                .map(|answer| answer.iter().collect::<Vec<IpAddr>>())
                .map_err(|e| io::Error::other(format!("cannot resolve {host}: {e}"))),
            None => tokio::net::lookup_host((host, 0))
                .await
                .map(|addrs| addrs.map(|a| a.ip()).collect()),
        }
    };
    let mut ips = tokio::time::timeout(LOOKUP_LIMIT, lookup)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("resolving {host} timed out"),
            )
        })??;
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(ips)
}

/// The socket addresses of `host:port` (as validated by the config: IPv6 in brackets).
pub async fn resolve_host_port(host_port: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) = host_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host_port:?} is not host:port"),
            )
        })?;
    Ok(resolve_host(host)
        .await?
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_localhost_resolve() {
        assert_eq!(
            resolve_host_port("127.0.0.9:9091").await.unwrap(),
            ["127.0.0.9:9091".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve_host("[::1]").await.unwrap(),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        let local = resolve_host_port("localhost:9091").await.unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9091),
            "{local:?}"
        );
        assert!(resolve_host_port("nonsense").await.is_err());
    }
}
