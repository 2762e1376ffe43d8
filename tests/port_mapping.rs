//! Port mapping as Docker does it (`-p 19091:9091/udp`): the client listens on 9091 but is
//! reached at 19091, which it advertises as BO_ENDPOINT and which masters dial.
//!
//! The test thread moves into a private network namespace (unshare) where an iptables DNAT
//! rule maps 127.0.38.x:19091 to :9091, exactly like Docker's port publishing. Needs root and
//! iptables; without them it prints a notice and skips.

mod common;

use std::process::Command;

use common::*;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A private namespace where `<ip>:<public>` (UDP) is forwarded to `<ip>:9091`.
fn namespace_with_mappings(mappings: &[(&str, u16)]) -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    run("ip", &["link", "set", "lo", "up"])?;
    for (ip, public) in mappings {
        let port = public.to_string();
        let to = format!("{ip}:9091");
        run(
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "udp",
                "-d",
                ip,
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ],
        )?;
    }
    Ok(())
}

fn cluster(master: &LocalNode) -> Vec<(String, u64, String, String, String)> {
    master
        .query("SHOW CLUSTER")
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                s("ip"),
                r["port"].as_u64().unwrap_or(0),
                s("db"),
                s("source"),
                s("status"),
            )
        })
        .collect()
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
    let _registered = start(spec(
        dir.path(),
        38,
        2,
        &[
            ("BO_MASTER", "127.0.38.1"),
            ("BO_ENDPOINT", "127.0.38.2:19091"),
            ("BO_DATABASES", "log1,log2"),
        ],
    ));
    // Added by the master through its mapped port.
    let _added = start(spec(
        dir.path(),
        38,
        3,
        &[
            ("BO_ENDPOINT", "127.0.38.3:19092"),
            ("BO_DATABASES", "log9"),
        ],
    ));
    let (status, body) = sql(&master, "ADD CLIENT ip=127.0.38.3 db=log9 port=19092");
    assert_eq!(status, 200, "{body}");
    let want = vec![
        (
            "127.0.38.2".to_string(),
            19091,
            "log1".to_string(),
            "register".to_string(),
            "alive".to_string(),
        ),
        (
            "127.0.38.2".to_string(),
            19091,
            "log2".to_string(),
            "register".to_string(),
            "alive".to_string(),
        ),
        (
            "127.0.38.3".to_string(),
            19092,
            "log9".to_string(),
            "add".to_string(),
            "alive".to_string(),
        ),
    ];
    let seen = wait_for(DEADLINE, || (cluster(&master) == want).then_some(()));
    assert!(
        seen.is_some(),
        "SHOW CLUSTER: {:?}\nlog:\n{}",
        cluster(&master),
        master.log()
    );
}
