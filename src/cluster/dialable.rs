//! Addresses a master may dial for an entry. `ADD CLIENT` lets its caller aim the master's
//! packets: an unspecified, multicast or broadcast address would have the master send them
//! to no one in particular or to a whole network, so such entries are refused, and such DNS
//! answers are never dialled.

use std::net::{IpAddr, Ipv4Addr};

/// Why the master must never dial `ip`, or `None` when it may.
pub fn undialable_reason(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        // ::ffff:a.b.c.d is the IPv4 address a.b.c.d on a dual-stack socket.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_unspecified() {
        return Some("an unspecified address (it names no host)");
    }
    if ip.is_multicast() {
        return Some("a multicast address (it reaches a group of hosts)");
    }
    if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Some("the broadcast address (it reaches every host of the network)");
    }
    None
}

/// `Err` with a message naming `ip` and what it is, when the master must never dial it.
pub fn check_dialable(ip: IpAddr) -> Result<(), String> {
    match undialable_reason(ip) {
        Some(reason) => Err(format!(
            "{ip} is {reason}; a master dials each client at its own address"
        )),
        None => Ok(()),
    }
}

/// `Err` naming `name` and its answers when every address it resolved to is one the master
/// must never dial (a name that resolves to nothing yet may still come to resolve).
pub fn check_resolved(name: &str, ips: &[IpAddr]) -> Result<(), String> {
    if ips.is_empty() || ips.iter().any(|ip| undialable_reason(*ip).is_none()) {
        return Ok(());
    }
    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let first = undialable_reason(ips[0]).unwrap_or("an address a master must not dial");
    Err(format!(
        "{name} resolves only to addresses a master must never dial ({}; {} is {first})",
        list.join(", "),
        ips[0]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ip: &str) -> Result<(), String> {
        check_dialable(ip.parse().unwrap())
    }

    #[test]
    fn unspecified_multicast_and_broadcast_are_refused_with_the_address() {
        for (ip, what) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("ff05::1:3", "multicast"),
            ("::ffff:224.0.0.251", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:255.255.255.255", "broadcast"),
        ] {
            let err = check(ip).expect_err(ip);
            assert!(err.contains(ip) && err.contains(what), "{ip}: {err}");
        }
    }

    #[test]
    fn a_name_is_refused_only_when_all_its_answers_are() {
        let ips =
            |list: &[&str]| -> Vec<IpAddr> { list.iter().map(|s| s.parse().unwrap()).collect() };
        let err =
            check_resolved("evil.example", &ips(&["255.255.255.255", "224.0.0.1"])).unwrap_err();
        assert!(
            err.contains("evil.example") && err.contains("255.255.255.255"),
            "{err}"
        );
        assert!(err.contains("broadcast"), "{err}");
        assert_eq!(
            check_resolved("mixed.example", &ips(&["0.0.0.0", "10.0.0.1"])),
            Ok(())
        );
        assert_eq!(check_resolved("later.example", &[]), Ok(()));
    }

    #[test]
    fn ordinary_addresses_are_dialable() {
        for ip in [
            "127.0.0.1",
            "10.0.0.255",
            "192.168.1.255",
            "8.8.8.8",
            "::1",
            "2001:db8::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(check(ip), Ok(()), "{ip}");
        }
    }
}
