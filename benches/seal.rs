//! Cost of sealing and opening one membership datagram (src/seal.rs), at a probe's size and at
//! the full plaintext budget, and of refusing one that no key opens (runs in `cargo bench`;
//! compiled in CI). `cargo bench --bench seal` runs it.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use bocluster::cluster_key::ClusterKeys;
use bocluster::seal::{DatagramSeal, ReplayGuard, MAX_PLAINTEXT};

const K1: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
const K2: &str = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";

fn seal_open(c: &mut Criterion) {
    let sealer = DatagramSeal::new(&ClusterKeys::parse(K1).expect("strong key"));
    // Mid-rotation, the worst case for a datagram of the old key: the second key opens it.
    let rotating = DatagramSeal::new(&ClusterKeys::parse(&format!("{K2},{K1}")).expect("keys"));
    let stranger = DatagramSeal::new(&ClusterKeys::parse(K2).expect("strong key"));
    let from: SocketAddr = "127.0.0.1:9091".parse().expect("address");
    let mut group = c.benchmark_group("seal");
    for (name, len) in [("probe_64", 64usize), ("full_1155", MAX_PLAINTEXT)] {
        let plaintext = vec![0x5a; len];
        group.throughput(Throughput::Bytes(len as u64));
        let mut out = Vec::with_capacity(1200);
        let mut seq = 0u64;
        group.bench_function(format!("seal_{name}"), |b| {
            b.iter(|| {
                seq += 1;
                sealer
                    .seal(1, seq, [7; 12], black_box(&plaintext), &mut out)
                    .expect("fits")
            })
        });
        let mut datagram = Vec::new();
        sealer
            .seal(1, 1, [7; 12], &plaintext, &mut datagram)
            .expect("fits");
        group.bench_function(format!("open_{name}"), |b| {
            b.iter_batched(
                || ReplayGuard::new(1),
                |mut guard| sealer.open(from, black_box(&datagram), &mut guard),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("open_second_key_{name}"), |b| {
            b.iter_batched(
                || ReplayGuard::new(1),
                |mut guard| rotating.open(from, black_box(&datagram), &mut guard),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("refuse_other_key_{name}"), |b| {
            let mut guard = ReplayGuard::new(1);
            b.iter(|| stranger.open(from, black_box(&datagram), &mut guard))
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
