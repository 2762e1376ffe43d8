//! The master's view at scale: building SHOW CLUSTER with 10,000 entries, applying a
//! registration, persisting a change at 10, 1,000, 10,000 and 100,000 entries, and a
//! `GET /metrics` scrape (entries and members counted by status from the snapshots) (runs in
//! `cargo bench`; compiled in CI).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion};

use bocluster::cluster::{cluster_rows, ClusterState, ClusterView};
use bocluster::db_name::DatabaseName;
use bocluster::membership::{Member, MemberStatus};
use bocluster::sql::{ClientHost, ClientSpec};

const HOSTS: usize = 250;
const DBS_PER_HOST: usize = 40;

fn ip(host: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        (host / 62_500) as u8,
        (host / 250 % 250) as u8,
        (host % 250) as u8 + 1,
    ))
}

fn spec(host: usize, db: usize) -> ClientSpec {
    ClientSpec {
        host: ClientHost::Ip(ip(host)),
        port: 9091,
        db: DatabaseName::new(&format!("db{db}")).expect("valid name"),
    }
}

fn ten_thousand() -> ClusterState {
    let mut state = ClusterState::default();
    for host in 0..HOSTS {
        for db in 0..DBS_PER_HOST {
            state.add(&spec(host, db), None);
        }
    }
    state
}

fn members() -> Vec<Member> {
    (0..HOSTS)
        .map(|host| Member {
            node_id: format!("node-{host}"),
            generation: 1,
            endpoint: SocketAddr::new(ip(host), 9091),
            status: if host % 10 == 0 {
                MemberStatus::Dead
            } else {
                MemberStatus::Alive
            },
            databases: (0..DBS_PER_HOST)
                .step_by(2)
                .map(|db| format!("db{db}"))
                .collect(),
            masters: vec![],
            version: "0.1.0".into(),
            api: String::new(),
            host: format!("host-{host}"),
            is_self: false,
        })
        .collect()
}

fn cluster(c: &mut Criterion) {
    let state = ten_thousand();
    let members = members();
    let resolved = Default::default();
    c.bench_function("show_cluster_10k_entries", |b| {
        b.iter(|| cluster_rows(black_box(&state), black_box(&members), &resolved))
    });

    let databases: Vec<DatabaseName> = (0..DBS_PER_HOST)
        .map(|db| DatabaseName::new(&format!("r{db}")).expect("valid"))
        .collect();
    c.bench_function("apply_registration_40_dbs_into_10k", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| s.apply_registration("client", SocketAddr::new(ip(999), 19091), &databases),
            criterion::BatchSize::LargeInput,
        )
    });

    persist_one_change(c, "persist_one_change_at_10k_entries", &state);

    // What `GET /metrics` does per scrape: SHOW CLUSTER's rows from the snapshot, then every
    // family encoded, the status gauges counted from the rows and the members.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = serde_json::to_vec(&state).expect("serialize");
    std::fs::write(dir.path().join("cluster.json"), file).expect("write");
    let view = ClusterView::open(dir.path()).expect("open");
    let metrics = bocluster::metrics::Metrics::new();
    metrics.statement("show_cluster", "ok", std::time::Duration::from_micros(300));
    c.bench_function("metrics_scrape_10k_entries", |b| {
        b.iter(|| {
            let rows = view.rows(black_box(&members));
            metrics.encode(&members, &rows, &Default::default())
        })
    });
}

/// A state of `n` entries (ADD CLIENT of `n` distinct hosts).
fn entries(n: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for host in 0..n {
        state.add(&spec(host, 0), None);
    }
    assert_eq!(state.len(), n);
    state
}

/// ADD CLIENT and DROP CLIENT in turn on a master holding `state`: the durable cost of one
/// change (issue 11: the same at 10 and at 100,000 entries).
fn persist_one_change(c: &mut Criterion, name: &str, state: &ClusterState) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = serde_json::to_vec(state).expect("serialize");
    std::fs::write(dir.path().join("cluster.json"), file).expect("write");
    let view = ClusterView::open(dir.path()).expect("open");
    let extra = spec(300_000, 1);
    let mut toggle = false;
    c.bench_function(name, |b| {
        b.iter(|| {
            toggle = !toggle;
            if toggle {
                view.add_client(&extra, &[]).expect("add");
            } else {
                view.drop_client(&extra, &[]).expect("drop");
            }
        })
    });
}

fn changes(c: &mut Criterion) {
    for n in [10, 1_000, 100_000] {
        persist_one_change(
            c,
            &format!("persist_one_change_at_{n}_entries"),
            &entries(n),
        );
    }
}

criterion_group!(benches, cluster, changes);
criterion_main!(benches);
