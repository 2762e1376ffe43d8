//! Parsing cost of each statement, and of rejecting MiB-long ones (runs in `cargo bench`;
//! compiled in CI). `cargo bench --bench statements -- reject` runs only the latter.

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

/// Statements near the 1 MiB body limit that are not statements: how long a node takes to say
/// so (one of these used to cost the parser over a second and ~100 MiB of tokens).
fn reject(c: &mut Criterion) {
    let cases = [
        (
            "ip_of_450k_one_letter_tokens",
            format!("ADD CLIENT db=x ip={}", "a.".repeat(450_000)),
        ),
        ("show_x_100k", "SHOW ".repeat(100_000)),
        ("open_paren_x_500k", "(".repeat(500_000)),
        (
            "db_x_50k",
            format!("ADD CLIENT ip=1.2.3.4 {}", "db=x ".repeat(50_000)),
        ),
    ];
    let mut group = c.benchmark_group("reject");
    group.sample_size(10);
    for (name, text) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| parse_statement(black_box(text)).expect_err("not a statement"))
        });
    }
    group.finish();
}

criterion_group!(benches, parse, reject);
criterion_main!(benches);
