//! Parsing cost of each statement (runs in `cargo bench`; compiled in CI).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use bocluster::sql::parse_statement;

const STATEMENTS: [(&str, &str); 7] = [
    ("create_database", "CREATE DATABASE log1"),
    ("drop_database", "DROP DATABASE log1"),
    ("show_databases", "SHOW DATABASES"),
    ("show_nodes", "show nodes;"),
    ("show_cluster", "SHOW CLUSTER"),
    (
        "add_client",
        r#"ADD CLIENT ip="192.168.0.3" db="log2" port=19091"#,
    ),
    ("drop_client", "DROP CLIENT db=log1 ip=client-1.example"),
];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, text) in STATEMENTS {
        group.bench_function(name, |b| {
            b.iter(|| parse_statement(black_box(text)).expect("valid statement"))
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
