//! Chaos against real containers: the `bocluster:latest` image on Docker networks of each
//! test's own, broken with the engine's own tools (kill, pause, network disconnect, container
//! replacement), with iptables packet loss inside the containers' network namespaces and with
//! a 100 ms delay on the packets they send (NFQUEUE, see `docker_common::net_delay`).
//!
//! Every test asserts the master's SHOW CLUSTER over the HTTP API (published on loopback) at
//! the end: every acknowledged entry there exactly once, nothing else, all `alive`. Each
//! prints what it measured (lines starting with MEASURED; run with `--nocapture`). The default
//! gossip interval (250 ms) and failure detector are used, so the times are the real ones.
//! Without a Docker engine every test prints a NOTICE and returns; a missing image is built
//! once with `docker/build.sh` (`BOCLUSTER_IMAGE` names another image). See `docker_common`
//! for the addresses used and the cleanup.
//!
//! After a node returns (kill/start, pause, partitions) the master's rows must stay `alive`
//! for 3 s: a row that flaps back to `dead` meanwhile fails the test, and so does a row lost
//! or duplicated.

mod docker_common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use docker_common::*;

/// A master at `.10` of `net`, its API on loopback.
fn start_master(fleet: &mut Fleet, net: &Net, opts: NodeOpts) -> Node {
    fleet.start("master", net, 10, opts)
}

/// Three clients of `master` on `net`: c1 (.11, databases c1a, c1b) and c2 (.12, c2a) register
/// themselves with `BO_MASTER=<master_ip>`; c3 (.13, c3a) is added with ADD CLIENT. Waits until
/// all are `alive` on the master; the clients and the acknowledged entries.
fn start_clients(
    fleet: &mut Fleet,
    net: &Net,
    master: &Node,
    master_ip: &str,
) -> (Vec<Node>, Vec<Entry>) {
    let c1 = fleet.start(
        "c1",
        net,
        11,
        NodeOpts::default()
            .env("BO_MASTER", master_ip)
            .env("BO_DATABASES", "c1a,c1b"),
    );
    let c2 = fleet.start(
        "c2",
        net,
        12,
        NodeOpts::default()
            .env("BO_MASTER", master_ip)
            .env("BO_DATABASES", "c2a"),
    );
    let c3 = fleet.start(
        "c3",
        net,
        13,
        NodeOpts::default().env("BO_DATABASES", "c3a"),
    );
    master.ok(&format!("ADD CLIENT ip={} db=c3a", c3.ip));
    let expected = vec![
        entry(&c1.ip, 9091, "c1a", "register", "c1"),
        entry(&c1.ip, 9091, "c1b", "register", "c1"),
        entry(&c2.ip, 9091, "c2a", "register", "c2"),
        entry(&c3.ip, 9091, "c3a", "add", "c3"),
    ];
    let took = wait_cluster(master, &expected, all_alive, DEADLINE, "cluster forms");
    eprintln!(
        "MEASURED {}: last client up -> all 4 entries alive on the master: {took:.2?}",
        fleet.name
    );
    (vec![c1, c2, c3], expected)
}

/// Waits until every node in `observers` lists every id in `ids` as `alive`; how long it took.
fn wait_views(observers: &[&Node], ids: &[&str], what: &str) -> Duration {
    let mut last = String::new();
    let done = wait_for(DEADLINE, || {
        for observer in observers {
            let seen = match observer.show_nodes() {
                Ok(seen) => seen,
                Err(e) => {
                    last = format!("{}: {e}", observer.id);
                    return None;
                }
            };
            if ids
                .iter()
                .any(|id| seen.get(*id).map(|v| v.0.as_str()) != Some("alive"))
            {
                last = format!("{} sees {seen:?}", observer.id);
                return None;
            }
        }
        Some(())
    });
    match done {
        Some(((), took)) => took,
        None => panic!("{what}: not every node sees {ids:?} alive within {DEADLINE:?}: {last}"),
    }
}

/// The end of every test: SHOW CLUSTER on the master has every acknowledged entry exactly once,
/// nothing else, all alive (waiting up to the deadline); the master lists every node alive
/// and every node lists the master alive (SHOW NODES, one row per node).
fn assert_final(master: &Node, expected: &[Entry], nodes: &[&Node]) {
    wait_cluster(master, expected, all_alive, DEADLINE, "final SHOW CLUSTER");
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    wait_views(&[master], &ids, "final SHOW NODES on the master");
    wait_views(nodes, &[&master.id], "final SHOW NODES");
    let rows = master.show_cluster().expect("final SHOW CLUSTER");
    check_cluster(&rows, expected, all_alive)
        .unwrap_or_else(|e| panic!("final SHOW CLUSTER: {e}\nmaster log:\n{}", master.logs()));
    eprintln!("final SHOW CLUSTER on the master ({} rows):", rows.len());
    for r in &rows {
        eprintln!(
            "  {}:{} {} {} {} {}",
            r.ip, r.port, r.db, r.source, r.status, r.node_id
        );
    }
}

/// How long every row must stay `alive` once a node returns (a partition heals, a paused
/// container resumes) before the test goes on.
const STABLE_AFTER_RECOVERY: Duration = Duration::from_secs(3);

/// Watches the master's SHOW CLUSTER for [`STABLE_AFTER_RECOVERY`] after every row came back
/// `alive`, polling every 100 ms, and reports each row that turns anything else meanwhile
/// (a flap: the node is live). A flap fails the test.
fn watch_stable_after_recovery(scenario: &str, master: &Node, expected: &[Entry]) {
    let start = Instant::now();
    let mut flaps: Vec<String> = Vec::new();
    while start.elapsed() < STABLE_AFTER_RECOVERY {
        if let Ok(rows) = master.show_cluster() {
            // Rows lost, duplicated or changed are never tolerated.
            check_cluster(&rows, expected, |_| ANY).unwrap_or_else(|e| {
                panic!(
                    "{scenario}: after recovery, at +{:.2?}: {e}",
                    start.elapsed()
                )
            });
            if let Err(e) = check_cluster(&rows, expected, all_alive) {
                flaps.push(format!("at +{:.2?}: {e}", start.elapsed()));
            }
        }
        std::thread::sleep(POLL);
    }
    if flaps.is_empty() {
        eprintln!(
            "MEASURED {scenario}: every row stayed alive for {STABLE_AFTER_RECOVERY:?} after recovery"
        );
        return;
    }
    let message = format!(
        "{scenario}: live clients flapped back to non-alive on the master within {STABLE_AFTER_RECOVERY:?} after recovery ({} observations): {}",
        flaps.len(),
        flaps.join("; ")
    );
    panic!("{message}");
}

/// `status` for the entries of `node_ids`, `alive` for the rest.
fn these_are<'a>(
    node_ids: &'a [&'a str],
    status: &'static str,
) -> impl Fn(&Entry) -> &'static str + 'a {
    move |e: &Entry| {
        if node_ids.contains(&e.node_id.as_str()) {
            status
        } else {
            "alive"
        }
    }
}

/// `observer`'s SHOW NODES once `listed` holds for it. A master shows a client `alive` in
/// SHOW CLUSTER as soon as they exchanged introductions, a moment before gossip lists it.
fn nodes_once(
    observer: &Node,
    what: &str,
    listed: impl Fn(&BTreeMap<String, (String, String, String)>) -> bool,
) -> BTreeMap<String, (String, String, String)> {
    let mut last = BTreeMap::new();
    let found = wait_for(DEADLINE, || {
        last = observer.show_nodes().ok()?;
        listed(&last).then(|| last.clone())
    });
    match found {
        Some((nodes, _)) => nodes,
        None => panic!(
            "SHOW NODES of {} never showed {what} within {DEADLINE:?}: {last:?}",
            observer.id
        ),
    }
}

fn generation(observer: &Node, node_id: &str) -> u64 {
    let nodes = nodes_once(observer, &format!("{node_id} alive"), |nodes| {
        nodes
            .get(node_id)
            .is_some_and(|(status, _, _)| status == "alive")
    });
    nodes
        .get(node_id)
        .and_then(|(_, _, g)| g.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{node_id}: no generation in SHOW NODES of {}: {nodes:?}",
                observer.id
            )
        })
}

#[test]
fn docker_kill_then_start_a_client() {
    if !docker_ready("docker_kill_then_start_a_client") {
        return;
    }
    let _networks = docker_common::alongside_others();
    let mut fleet = Fleet::new("kill");
    let net = fleet.network("net");
    let master = start_master(&mut fleet, &net, NodeOpts::default());
    let (clients, expected) = start_clients(&mut fleet, &net, &master, &master.ip);
    let victim = &clients[1];
    let before = generation(&master, &victim.id);

    docker_ok(&["kill", &victim.container]);
    let to_dead = wait_cluster(
        &master,
        &expected,
        these_are(&["c2"], "dead"),
        DEADLINE,
        "killed client dead",
    );
    eprintln!("MEASURED kill: docker kill -> dead on the master: {to_dead:.2?}");

    let started = Instant::now();
    docker_ok(&["start", &victim.container]);
    let healthy = victim.wait_healthy(DEADLINE).unwrap();
    wait_cluster(
        &master,
        &expected,
        all_alive,
        DEADLINE,
        "restarted client alive",
    );
    eprintln!(
        "MEASURED kill: docker start -> API up {healthy:.2?}, alive again on the master (same row) {:.2?}",
        started.elapsed()
    );
    watch_stable_after_recovery("kill", &master, &expected);
    let after = generation(&master, &victim.id);
    assert!(
        after > before,
        "generation {before} -> {after}: not a new start?"
    );
    assert_final(&master, &expected, &[&master, &clients[0], victim]);
}

#[test]
fn docker_pause_a_client_for_15s() {
    if !docker_ready("docker_pause_a_client_for_15s") {
        return;
    }
    let _networks = docker_common::alongside_others();
    let mut fleet = Fleet::new("pause");
    let net = fleet.network("net");
    let master = start_master(&mut fleet, &net, NodeOpts::default());
    let (clients, expected) = start_clients(&mut fleet, &net, &master, &master.ip);
    let victim = &clients[0];

    docker_ok(&["pause", &victim.container]);
    let paused = Instant::now();
    let to_dead = wait_cluster(
        &master,
        &expected,
        these_are(&["c1"], "dead"),
        DEADLINE,
        "paused client dead",
    );
    eprintln!("MEASURED pause: docker pause -> dead on the master: {to_dead:.2?}");
    // The scenario: paused for 15 s.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(paused.elapsed()));
    // It stays dead (and nobody else goes) while paused.
    let rows = master.show_cluster().unwrap();
    check_cluster(&rows, &expected, these_are(&["c1"], "dead"))
        .unwrap_or_else(|e| panic!("after 15 s paused: {e}"));

    docker_ok(&["unpause", &victim.container]);
    let to_alive = wait_cluster(&master, &expected, all_alive, DEADLINE, "unpaused alive");
    eprintln!("MEASURED pause: docker unpause (after 15 s) -> alive on the master: {to_alive:.2?}");
    watch_stable_after_recovery("pause", &master, &expected);
    assert_final(&master, &expected, &[&master, victim]);
}

#[test]
fn partition_master_from_clients_for_20s() {
    if !docker_ready("partition_master_from_clients_for_20s") {
        return;
    }
    let _networks = docker_common::partitions_alone();
    let mut fleet = Fleet::new("part");
    // The master's API is published through a network of its own, so it stays reachable
    // while the master is cut off from the clients' network.
    let api = fleet.network("api");
    let net = fleet.network("clients");
    let master_ip = net.ip(10);
    let master = start_master(
        &mut fleet,
        &api,
        NodeOpts::default()
            .network(&net, 10)
            .env("BO_ENDPOINT", format!("{master_ip}:9091")),
    );
    let (clients, expected) = start_clients(&mut fleet, &net, &master, &master_ip);
    let master_before = generation(&clients[0], "master");

    docker_ok(&["network", "disconnect", &net.name, &master.container]);
    let cut = Instant::now();
    let to_dead = wait_cluster(
        &master,
        &expected,
        |_| "dead",
        DEADLINE,
        "clients dead on the cut-off master",
    );
    eprintln!("MEASURED partition: master cut off -> all clients dead on it: {to_dead:.2?}");
    // The clients' side: they still see each other, and the master dead.
    let clients_side = wait_for(DEADLINE, || {
        let seen = clients[0].show_nodes().ok()?;
        let ok = seen.get("master").map(|v| v.0.as_str()) == Some("dead")
            && ["c1", "c2", "c3"]
                .iter()
                .all(|c| seen.get(*c).map(|v| v.0.as_str()) == Some("alive"));
        ok.then_some(())
    });
    clients_side.unwrap_or_else(|| {
        panic!(
            "c1 does not see the partition: {:?}\nc1 log:\n{}\nc3 log:\n{}",
            clients[0].show_nodes(),
            clients[0].logs(),
            clients[2].logs()
        )
    });
    eprintln!(
        "MEASURED partition: c1 sees the master dead (and the clients alive) by {:.2?} after the cut",
        cut.elapsed()
    );
    std::thread::sleep(Duration::from_secs(20).saturating_sub(cut.elapsed()));

    docker_ok(&[
        "network",
        "connect",
        "--ip",
        &master_ip,
        &net.name,
        &master.container,
    ]);
    let reconnected = Instant::now();
    let to_heal = wait_cluster(&master, &expected, all_alive, DEADLINE, "healed");
    eprintln!("MEASURED partition: reconnect (after 20 s) -> every row alive on the master: {to_heal:.2?}");
    let healed = wait_for(DEADLINE, || {
        (clients[0].show_nodes().ok()?.get("master")?.0 == "alive").then_some(())
    });
    healed.expect("c1 never saw the master alive again");
    eprintln!(
        "MEASURED partition: c1 sees the master alive again by {:.2?} after the reconnect",
        reconnected.elapsed()
    );
    watch_stable_after_recovery("partition", &master, &expected);
    // The master was never restarted: same generation.
    assert_eq!(generation(&clients[0], "master"), master_before);
    let all: Vec<&Node> = std::iter::once(&master).chain(clients.iter()).collect();
    assert_final(&master, &expected, &all);
}

#[test]
fn partition_splits_the_clients_in_halves() {
    if !docker_ready("partition_splits_the_clients_in_halves") {
        return;
    }
    let _networks = docker_common::partitions_alone();
    let mut fleet = Fleet::new("split");
    // Clients in two halves, each on a network of its own; the master on both (and on a
    // third that publishes its API). Cutting the master from half B leaves the fleet split in
    // {master, A} and {B}: nothing carries B's heartbeats to the master any more.
    let api = fleet.network("api");
    let half_a = fleet.network("a");
    let half_b = fleet.network("b");
    let master = start_master(
        &mut fleet,
        &api,
        NodeOpts::default()
            .network(&half_a, 10)
            .network(&half_b, 10)
            .env("BO_ENDPOINT", format!("{}:9091", half_a.ip(10))),
    );
    let mut expected = Vec::new();
    let mut nodes = Vec::new();
    for (half, tag) in [(&half_a, "a"), (&half_b, "b")] {
        let registered = fleet.start(
            &format!("{tag}1"),
            half,
            11,
            NodeOpts::default()
                .env("BO_MASTER", half.ip(10))
                .env("BO_DATABASES", format!("{tag}1db")),
        );
        let added = fleet.start(
            &format!("{tag}2"),
            half,
            12,
            NodeOpts::default()
                .env("BO_SEEDS", registered.ip.clone())
                .env("BO_DATABASES", format!("{tag}2db")),
        );
        master.ok(&format!("ADD CLIENT ip={} db={tag}2db", added.ip));
        expected.push(entry(
            &registered.ip,
            9091,
            &format!("{tag}1db"),
            "register",
            &registered.id,
        ));
        expected.push(entry(
            &added.ip,
            9091,
            &format!("{tag}2db"),
            "add",
            &added.id,
        ));
        nodes.push(registered);
        nodes.push(added);
    }
    let formed = wait_cluster(&master, &expected, all_alive, DEADLINE, "split fleet forms");
    eprintln!("MEASURED split: 4 clients on two networks alive on the master after {formed:.2?}");

    docker_ok(&["network", "disconnect", &half_b.name, &master.container]);
    let cut = Instant::now();
    let to_split = wait_cluster(
        &master,
        &expected,
        these_are(&["b1", "b2"], "dead"),
        DEADLINE,
        "half B dead, half A alive",
    );
    eprintln!("MEASURED split: master cut from half B -> B dead, A still alive: {to_split:.2?}");
    // Half B goes on by itself: b1 sees b2 alive and the master dead.
    let b_side = wait_for(DEADLINE, || {
        let seen = nodes[2].show_nodes().ok()?;
        (seen.get("b2")?.0 == "alive" && seen.get("master")?.0 == "dead").then_some(())
    });
    assert!(
        b_side.is_some(),
        "half B's view: {:?}",
        nodes[2].show_nodes()
    );
    // Half A keeps seeing the master the whole time.
    let a_view = nodes[0].show_nodes().unwrap();
    assert_eq!(a_view["master"].0, "alive", "half A's view: {a_view:?}");
    std::thread::sleep(Duration::from_secs(15).saturating_sub(cut.elapsed()));
    let rows = master.show_cluster().unwrap();
    check_cluster(&rows, &expected, these_are(&["b1", "b2"], "dead"))
        .unwrap_or_else(|e| panic!("after 15 s split: {e}"));

    docker_ok(&[
        "network",
        "connect",
        "--ip",
        &half_b.ip(10),
        &half_b.name,
        &master.container,
    ]);
    let to_heal = wait_cluster(&master, &expected, all_alive, DEADLINE, "split healed");
    eprintln!("MEASURED split: reconnect (after 15 s) -> every row alive: {to_heal:.2?}");
    watch_stable_after_recovery("split", &master, &expected);
    let mut all: Vec<&Node> = vec![&master];
    all.extend(nodes.iter());
    assert_final(&master, &expected, &all);
}

#[test]
fn registered_client_returns_with_new_ip_and_port() {
    if !docker_ready("registered_client_returns_with_new_ip_and_port") {
        return;
    }
    let _networks = docker_common::alongside_others();
    let mut fleet = Fleet::new("move");
    let net = fleet.network("net");
    let master = start_master(&mut fleet, &net, NodeOpts::default());
    let other = fleet.start(
        "other",
        &net,
        12,
        NodeOpts::default().env("BO_DATABASES", "stay"),
    );
    master.ok(&format!("ADD CLIENT ip={} db=stay", other.ip));
    let volume = fleet.volume("mover-data");
    // The mover's node id is generated at its first start and kept in its volume.
    let base = || {
        NodeOpts::default()
            .env("BO_NODE_ID", "")
            .env("BO_MASTER", master.ip.clone())
            .env("BO_DATABASES", "m1,m2")
            .volume(volume.clone())
    };
    let mover = fleet.start("mover", &net, 21, base());
    let mover_id = mover.node_id().unwrap();
    let rows_at = |ip: &str, port: u64| {
        vec![
            entry(&other.ip, 9091, "stay", "add", "other"),
            entry(ip, port, "m1", "register", &mover_id),
            entry(ip, port, "m2", "register", &mover_id),
        ]
    };
    let expected = rows_at(&mover.ip, 9091);
    wait_cluster(&master, &expected, all_alive, DEADLINE, "mover registered");

    // Move 1: a new container on the same volume at a new IP, reached through a port
    // published on the network's gateway (the host): BO_ENDPOINT=<gateway>:19094.
    docker_ok(&["rm", "-f", &mover.container]);
    let started = Instant::now();
    let gateway = net.gateway();
    let mover = fleet.start(
        "mover",
        &net,
        22,
        base()
            .publish(format!("{gateway}:19094:9091/udp"))
            .env("BO_ENDPOINT", format!("{gateway}:19094")),
    );
    assert_eq!(
        mover.node_id().unwrap(),
        mover_id,
        "the volume was not kept"
    );
    let expected = rows_at(&gateway, 19094);
    wait_cluster(
        &master,
        &expected,
        all_alive,
        DEADLINE,
        "moved to a mapped port",
    );
    eprintln!(
        "MEASURED move: new container at {} behind {gateway}:19094 -> its rows at the new endpoint, alive, no stale row: {:.2?}",
        mover.ip,
        started.elapsed()
    );

    // Move 2: again a new IP, now listening on a port of its own (no mapping).
    docker_ok(&["rm", "-f", &mover.container]);
    let started = Instant::now();
    let mover = fleet.start(
        "mover",
        &net,
        23,
        base()
            .env("BO_LISTEN", "0.0.0.0:19095")
            .env("BO_HTTP", "0.0.0.0:9090")
            .env("BO_ENDPOINT", format!("{}:19095", net.ip(23))),
    );
    let expected = rows_at(&mover.ip, 19095);
    wait_cluster(
        &master,
        &expected,
        all_alive,
        DEADLINE,
        "moved to a new IP and port",
    );
    eprintln!(
        "MEASURED move: new container at {}:19095 -> its rows there, alive, no stale row: {:.2?}",
        mover.ip,
        started.elapsed()
    );
    let moved_to = format!("{}:19095", mover.ip);
    nodes_once(&master, &format!("{mover_id} at {moved_to}"), |nodes| {
        nodes
            .get(&mover_id)
            .is_some_and(|(_, endpoint, _)| *endpoint == moved_to)
    });
    let mover = Node {
        id: mover_id,
        ..mover
    };
    assert_final(&master, &expected, &[&master, &other, &mover]);
}

#[test]
fn master_killed_and_started_on_its_volume() {
    if !docker_ready("master_killed_and_started_on_its_volume") {
        return;
    }
    let _networks = docker_common::alongside_others();
    let mut fleet = Fleet::new("master");
    let net = fleet.network("net");
    let volume = fleet.volume("master-data");
    let master_opts = || NodeOpts::default().volume(volume.clone());
    let master = start_master(&mut fleet, &net, master_opts());
    let (clients, mut expected) = start_clients(&mut fleet, &net, &master, &master.ip);
    // More acknowledged changes: a second added database, an entry whose client does not
    // exist yet, and a DROP (which must stick).
    master.ok(&format!(
        "ADD CLIENT ip={} db=extra port=9091",
        clients[2].ip
    ));
    clients[2].ok("CREATE DATABASE extra");
    expected.push(entry(&clients[2].ip, 9091, "extra", "add", "c3"));
    let late_ip = net.ip(14);
    master.ok(&format!("ADD CLIENT ip={late_ip} db=late"));
    expected.push(entry(&late_ip, 9091, "late", "add", ""));
    master.ok(&format!("DROP CLIENT ip={} db=c1b", clients[0].ip));
    expected.retain(|e| e.db != "c1b");
    let before = |e: &Entry| {
        if e.db == "late" {
            "unreachable"
        } else {
            "alive"
        }
    };
    wait_cluster(&master, &expected, before, DEADLINE, "before the kill");

    docker_ok(&["kill", &master.container]);
    docker_ok(&["rm", &master.container]);
    let started = Instant::now();
    let master = fleet.create("master", &net, 10, master_opts());
    docker_ok(&["start", &master.container]);
    let healthy = master.wait_healthy(DEADLINE).unwrap();
    let rows = master.show_cluster().unwrap();
    check_cluster(&rows, &expected, |_| ANY)
        .unwrap_or_else(|e| panic!("right after the restarted master answered /health: {e}"));
    eprintln!(
        "MEASURED master restart: new container on the same volume -> /health in {healthy:.2?}, every entry already listed"
    );
    let to_alive = wait_cluster(&master, &expected, before, DEADLINE, "statuses re-learned");
    eprintln!(
        "MEASURED master restart: /health -> every client alive again: {:.2?} (start -> all alive {:.2?})",
        to_alive,
        started.elapsed()
    );

    // The client that did not exist yet arrives.
    let late = fleet.start(
        "late",
        &net,
        14,
        NodeOpts::default().env("BO_DATABASES", "late"),
    );
    for e in expected.iter_mut().filter(|e| e.db == "late") {
        e.node_id = late.id.clone();
    }
    let mut all: Vec<&Node> = vec![&master, &late];
    all.extend(clients.iter());
    assert_final(&master, &expected, &all);
}

#[test]
fn mapped_ports_register_and_add_client() {
    if !docker_ready("mapped_ports_register_and_add_client") {
        return;
    }
    let _networks = docker_common::alongside_others();
    let mut fleet = Fleet::new("mapped");
    let net = fleet.network("net");
    // The master also answers to the name `master` on this network (Docker DNS; the node
    // resolves BO_MASTER itself).
    let master = start_master(&mut fleet, &net, NodeOpts::default().alias("master"));
    // A published port is reachable from containers on a host address they can route to:
    // the gateway of their own network (10.201.N.1) is one; 127.0.0.x is not. So QUIC is
    // published on the gateway, the HTTP API on loopback.
    let gateway = net.gateway();

    // The seed's command: docker run -d -p <lo>:9090:9090 -p <gw>:19091:9091/udp
    //   -e BO_MASTER=master -e BO_ENDPOINT=<gw>:19091 bocluster
    let started = Instant::now();
    let edge = fleet.start(
        "edge",
        &net,
        11,
        NodeOpts::default()
            .publish(format!("{gateway}:19091:9091/udp"))
            .env("BO_MASTER", "master")
            .env("BO_ENDPOINT", format!("{gateway}:19091"))
            .env("BO_DATABASES", "sales,events,logs"),
    );
    let mut expected: Vec<Entry> = ["events", "logs", "sales"]
        .iter()
        .map(|db| entry(&gateway, 19091, db, "register", "edge"))
        .collect();
    wait_cluster(
        &master,
        &expected,
        all_alive,
        DEADLINE,
        "registered through a mapped port",
    );
    eprintln!(
        "MEASURED mapped: client behind {gateway}:19091 started -> all its databases alive on the master: {:.2?}",
        started.elapsed()
    );
    // A database created later is registered too.
    let created = Instant::now();
    edge.ok("CREATE DATABASE audit");
    expected.push(entry(&gateway, 19091, "audit", "register", "edge"));
    wait_cluster(&master, &expected, all_alive, DEADLINE, "a later database");
    eprintln!(
        "MEASURED mapped: CREATE DATABASE on the client -> registered and alive: {:.2?}",
        created.elapsed()
    );

    // ADD CLIENT through a mapped port: a client that knows nothing of the master, published
    // on <gw>:19092 (19091 is taken by the first client on this host address).
    let behind = fleet.start(
        "behind",
        &net,
        12,
        NodeOpts::default()
            .publish(format!("{gateway}:19092:9091/udp"))
            .env("BO_ENDPOINT", format!("{gateway}:19092"))
            .env("BO_DATABASES", "metrics"),
    );
    let added = Instant::now();
    master.ok(&format!("ADD CLIENT ip={gateway} db=metrics port=19092"));
    expected.push(entry(&gateway, 19092, "metrics", "add", "behind"));
    wait_cluster(
        &master,
        &expected,
        all_alive,
        DEADLINE,
        "added through a mapped port",
    );
    eprintln!(
        "MEASURED mapped: ADD CLIENT ip={gateway} port=19092 -> alive: {:.2?}",
        added.elapsed()
    );
    let (edge_at, behind_at) = (format!("{gateway}:19091"), format!("{gateway}:19092"));
    nodes_once(&master, "edge and behind at their mapped ports", |nodes| {
        nodes
            .get("edge")
            .is_some_and(|(_, endpoint, _)| *endpoint == edge_at)
            && nodes
                .get("behind")
                .is_some_and(|(_, endpoint, _)| *endpoint == behind_at)
    });
    assert_final(&master, &expected, &[&master, &edge, &behind]);
}

/// Runs `cmd args` inside the network namespace of process `pid` (needs nsenter and root).
fn in_netns(pid: &str, cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("nsenter")
        .args(["-t", pid, "-n", cmd])
        .args(args)
        .output()
        .map_err(|e| format!("nsenter {cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "nsenter -t {pid} -n {cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The one-way delay added to every packet a node sends in the loss test.
const DELAY: Duration = Duration::from_millis(100);

#[test]
fn ten_percent_loss_and_100ms_delay_on_every_node_for_60s() {
    let test = "ten_percent_loss_and_100ms_delay_on_every_node_for_60s";
    if !docker_ready(test) {
        return;
    }
    let _networks = docker_common::alongside_others();
    let tools = ["nsenter", "iptables"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok());
    if !tools {
        eprintln!("NOTICE: skipping {test}: needs nsenter and iptables on the host (and root)");
        return;
    }
    let mut fleet = Fleet::new("loss");
    let net = fleet.network("net");
    let master = start_master(&mut fleet, &net, NodeOpts::default());
    let (clients, expected) = start_clients(&mut fleet, &net, &master, &master.ip);
    let nodes: Vec<&Node> = std::iter::once(&master).chain(clients.iter()).collect();
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let converged = wait_views(&nodes, &ids, "before the loss");
    eprintln!("MEASURED loss: every node sees every node alive {converged:.2?} later");

    // 10% of the UDP packets each node receives from the network are dropped, and every UDP
    // packet each node sends to the network is held 100 ms first (tc netem is not available
    // on every kernel; see docker_common::net_delay). Declared after the fleet, the delays
    // stop (and take their rules out) before the containers go, also on failure.
    let mut delays = Vec::new();
    for node in &nodes {
        let pid = node.pid();
        let rule = [
            "INPUT",
            "!",
            "-i",
            "lo",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.10",
            "-j",
            "DROP",
        ];
        let mut add = vec!["-w", "5", "-A"];
        add.extend(rule);
        if let Err(e) = in_netns(&pid, "iptables", &add) {
            eprintln!("NOTICE: skipping {test}: cannot add the loss rule ({e}); run as root");
            return;
        }
        let delay =
            net_delay::NetDelay::for_pid(&node.id, &pid, DELAY, &["!", "-o", "lo", "-p", "udp"])
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot add the {DELAY:?} delay (NFQUEUE) to {}: {e}",
                        node.id
                    )
                });
        delays.push(delay);
    }

    // For 60 s, polled every 500 ms: no alive row turns dead, on the master or anywhere, and
    // the delay stays in force.
    let start = Instant::now();
    let mut polls = 0;
    while start.elapsed() < Duration::from_secs(60) {
        for delay in &delays {
            delay
                .check()
                .unwrap_or_else(|e| panic!("at {:.1?}: {e}", start.elapsed()));
        }
        let rows = master
            .show_cluster()
            .unwrap_or_else(|e| panic!("SHOW CLUSTER at {:.1?}: {e}", start.elapsed()));
        if let Err(e) = check_cluster(&rows, &expected, all_alive) {
            panic!(
                "false alarm under 10% loss and {DELAY:?} delay at {:.1?} (poll {polls}): {e}",
                start.elapsed()
            );
        }
        for node in &nodes {
            let seen = node
                .show_nodes()
                .unwrap_or_else(|e| panic!("SHOW NODES on {}: {e}", node.id));
            assert_eq!(seen.len(), 4, "{} sees {seen:?}", node.id);
            for (id, (status, _, _)) in &seen {
                assert_eq!(
                    status,
                    "alive",
                    "false alarm under 10% loss and {DELAY:?} delay at {:.1?}: {} sees {id} {status}",
                    start.elapsed(),
                    node.id
                );
            }
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(500));
    }

    // The delay was real: every packet the rules matched was held, for about 100 ms.
    let mut delayed_total = 0u64;
    let mut hold_total = Duration::ZERO;
    for delay in delays {
        let report = delay.stop().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("MEASURED loss: delay on {report}");
        report.check().unwrap_or_else(|e| panic!("{e}"));
        // SWIM sends a few datagrams a second per node (chitchat sent dozens): tens of
        // packets a minute show the delay was applied.
        assert!(
            report.delayed > 50,
            "{}: only {} packets delayed in 60 s",
            report.label,
            report.delayed
        );
        assert!(
            report.min_hold >= DELAY && report.mean_hold < DELAY + Duration::from_millis(20),
            "{}: packets held {:.1?}..{:.1?} (mean {:.1?}), not about {DELAY:?}",
            report.label,
            report.min_hold,
            report.max_hold,
            report.mean_hold
        );
        delayed_total += report.delayed;
        hold_total += report.mean_hold * report.delayed as u32;
    }
    // The loss was real.
    let mut dropped_total = 0u64;
    for node in &nodes {
        let listing = in_netns(&node.pid(), "iptables", &["-L", "INPUT", "-v", "-n", "-x"])
            .expect("list the loss rule");
        let dropped: u64 = listing
            .lines()
            .find(|l| l.contains("DROP"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            dropped > 10,
            "{}: the loss rule dropped only {dropped} packets:\n{listing}",
            node.id
        );
        dropped_total += dropped;
    }
    eprintln!(
        "MEASURED loss: 60 s at 10% UDP loss and {DELAY:?} delay on every node ({dropped_total} packets dropped, {delayed_total} delayed, mean hold {:.1?}, {polls} polls of every node): no row ever left alive",
        hold_total / delayed_total.max(1) as u32
    );
    assert_final(&master, &expected, &nodes);
}

#[test]
fn wrong_cluster_key_never_joins() {
    if !docker_ready("wrong_cluster_key_never_joins") {
        return;
    }
    let _networks = docker_common::alongside_others();
    let mut fleet = Fleet::new("key");
    let net = fleet.network("net");
    let master = start_master(&mut fleet, &net, NodeOpts::default());
    let (clients, expected) = start_clients(&mut fleet, &net, &master, &master.ip);
    // One with another key, one with none; both name the master in BO_MASTER and seed from
    // the master and c1.
    let seeds = format!("{},{}", master.ip, clients[0].ip);
    let wrong_key = bocluster::cluster_key::generate_key().expect("a random cluster key");
    let intruders: Vec<Node> = [("wrongkey", 20, wrong_key.as_str()), ("nokey", 21, "")]
        .iter()
        .map(|(id, host, key)| {
            fleet.start(
                id,
                &net,
                *host,
                NodeOpts::default()
                    .env("BO_CLUSTER_KEY", *key)
                    .env("BO_MASTER", master.ip.clone())
                    .env("BO_SEEDS", seeds.clone())
                    .env("BO_DATABASES", format!("{id}_db")),
            )
        })
        .collect();
    let members: Vec<&Node> = std::iter::once(&master).chain(clients.iter()).collect();

    // Watched for 10 s: nobody lists them, the master's cluster stays as it was.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        for node in &members {
            let seen = node.show_nodes().unwrap();
            for intruder in &intruders {
                assert!(
                    !seen.contains_key(&intruder.id),
                    "{} lists {} in SHOW NODES: {seen:?}",
                    node.id,
                    intruder.id
                );
            }
            let rows = node.show_cluster().unwrap();
            for intruder in &intruders {
                assert!(
                    !rows.iter().any(|r| r.ip == intruder.ip
                        || r.node_id == intruder.id
                        || r.db.starts_with(&intruder.id)),
                    "{} shows {} in SHOW CLUSTER: {rows:?}",
                    node.id,
                    intruder.id
                );
            }
        }
        check_cluster(&master.show_cluster().unwrap(), &expected, all_alive)
            .unwrap_or_else(|e| panic!("the master's cluster changed: {e}"));
        std::thread::sleep(Duration::from_millis(250));
    }
    // They tried, and only know themselves.
    for intruder in &intruders {
        let seen = intruder.show_nodes().unwrap();
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            [&intruder.id],
            "{} knows: {seen:?}",
            intruder.id
        );
    }
    // The master logs the first refusal of each peer IP in a minute: the intruder's sealed
    // registration (a datagram no key of this cluster opens) or its TLS handshake, whichever
    // came first.
    let log = master.logs();
    for intruder in &intruders {
        let refused = log.lines().any(|l| {
            (l.contains("did not present a certificate of this cluster")
                || l.contains("refused a membership datagram that does not open"))
                && l.contains(&format!("{}:", intruder.ip))
        });
        assert!(
            refused,
            "the master never logged refusing {} ({}); its log:\n{log}",
            intruder.id, intruder.ip
        );
    }
    eprintln!("MEASURED key: 2 nodes with a wrong or no BO_CLUSTER_KEY (BO_MASTER=master) stayed out of every SHOW NODES / SHOW CLUSTER for 10 s; the master logged refusing both");
    assert_final(&master, &expected, &members);
}
