//! Port mapping as Docker does it (`-p 19091:9091/udp`): the client listens on 9091 but is
//! reached at 19091, which it advertises as BO_ENDPOINT and which masters dial.
//!
//! The test thread moves into a private network namespace (unshare) where an iptables DNAT
//! rule maps 127.0.38.x:19091 to :9091, exactly like Docker's port publishing. Needs root and
//! iptables; without them it prints a notice and skips.

mod common;

use common::*;

/// A private namespace where `<ip>:<public>` (UDP) is forwarded to `<ip>:9091`.
fn namespace_with_mappings(mappings: &[(&str, u16)]) -> Result<(), String> {
    enter_private_netns()?;
    for (ip, public) in mappings {
        let port = public.to_string();
        let to = format!("{ip}:9091");
        let rule = [
            "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-d", ip, "--dport", &port,
        ];
        let target = ["-j", "DNAT", "--to-destination", &to];
        run_cmd("iptables", &[&rule[..], &target[..]].concat())?;
    }
    Ok(())
}

#[test]
fn clients_behind_a_mapped_port_register_and_are_reached() {
    if let Err(e) = namespace_with_mappings(&[("127.0.38.2", 19091), ("127.0.38.3", 19092)]) {
        eprintln!("NOTICE: skipping the port-mapping test: cannot set up a namespace with DNAT ({e}); run as root with iptables installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let master = start(spec(dir.path(), 38, 1, &[]));
    // Registers itself: listens on 9091, advertises the mapped 19091.
    let registered = [
        ("BO_MASTER", "127.0.38.1"),
        ("BO_ENDPOINT", "127.0.38.2:19091"),
        ("BO_DATABASES", "log1,log2"),
    ];
    let _registered = start(spec(dir.path(), 38, 2, &registered));
    // Added by the master through its mapped port; it knows nothing of the master.
    let added = [
        ("BO_ENDPOINT", "127.0.38.3:19092"),
        ("BO_DATABASES", "log9"),
    ];
    let _added = start(spec(dir.path(), 38, 3, &added));
    ok(&master, "ADD CLIENT ip=127.0.38.3 db=log9 port=19092");
    let want = expected_rows(&[
        ("127.0.38.2", 19091, "log1", "register", "alive", "n38-2"),
        ("127.0.38.2", 19091, "log2", "register", "alive", "n38-2"),
        ("127.0.38.3", 19092, "log9", "add", "alive", "n38-3"),
    ]);
    let seen = wait_for(DEADLINE, || (show_cluster(&master) == want).then_some(()));
    assert!(
        seen.is_some(),
        "SHOW CLUSTER: {:?}\nlog:\n{}",
        show_cluster(&master),
        master.log()
    );
}
