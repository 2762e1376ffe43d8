//! Fallback fuzzer for machines where `cargo fuzz` cannot run (no cargo-fuzz, or no way to
//! build libFuzzer): a bounded, deterministic mutation loop over the seed inputs, on plain
//! stable cargo, calling the same checks as the libFuzzer targets.
//!
//! `fuzz_loop TARGET SECONDS [SEED_DIR...]` with TARGET `parse_statement`, `wire_messages`
//! or `sealed_datagrams`.
//! Runs every seed file, then mutated inputs from a fixed PRNG seed (`FUZZ_LOOP_SEED`
//! overrides it) until SECONDS pass. A failing check is written to
//! `artifacts/TARGET/crash-<hash>` (relative to the current directory) and the exit code is 1.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Longest input the loop builds (libFuzzer's default -max_len is 4096).
const MAX_LEN: usize = 8192;

/// Pieces the mutator inserts: the grammar's words and punctuation, tokenizer corner cases,
/// and the magic bytes of the binary formats.
const TOKENS: &[&[u8]] = &[
    b"CREATE",
    b"DROP",
    b"DATABASE",
    b"DATABASES",
    b"SHOW",
    b"NODES",
    b"CLUSTER",
    b"ADD",
    b"CLIENT",
    b"ip",
    b"db",
    b"port",
    b"=",
    b";",
    b" ",
    b"\n",
    b"\t",
    b"\"",
    b"'",
    b"`",
    b"--",
    b"/*",
    b"*/",
    b"\\",
    b"::1",
    b"[::1]",
    b"127.0.0.1",
    b"xn--bcher-kva.example",
    b"65535",
    b"65536",
    b"0",
    "\u{e9}".as_bytes(),
    "\u{2028}".as_bytes(),
    "\u{1f600}".as_bytes(),
    b"\xff",
    b"\x00",
    b"\x53\xb0\x00",
    b"\x00\x00",
    b"\x01",
    b"\x02",
    b"\x03",
    b"\xff\xff",
    b"\x28\xb5\x2f\xfd",
];

/// splitmix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                input.drain(at..at + n);
            }
            4 if len > 0 => {
                // Repeat a piece many times: the deep and long inputs.
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                let piece = input[at..at + n].to_vec();
                let times = 1 + rng.below(200);
                let mut repeated = Vec::with_capacity(n * times);
                for _ in 0..times {
                    repeated.extend_from_slice(&piece);
                }
                input.splice(at..at, repeated);
            }
            5 | 6 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            7 if !pool.is_empty() => {
                // Splice with another input.
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                input.truncate(rng.below(len));
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(MAX_LEN);
}

fn read_seeds(dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        seeds.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    input.hash(&mut hasher);
    let dir = Path::new("artifacts").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:016x}", hasher.finish()));
    if let Err(e) = std::fs::write(&path, input) {
        eprintln!("fuzz_loop: cannot write {}: {e}", path.display());
    }
    path
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(target), Some(seconds)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: fuzz_loop parse_statement|wire_messages|sealed_datagrams SECONDS [SEED_DIR...]"
        );
        return ExitCode::from(2);
    };
    let check: fn(&[u8]) = match target.as_str() {
        "parse_statement" => bocluster_fuzz::check_statement,
        "wire_messages" => bocluster_fuzz::check_wire,
        "sealed_datagrams" => bocluster_fuzz::check_sealed,
        other => {
            eprintln!("fuzz_loop: unknown target {other:?}");
            return ExitCode::from(2);
        }
    };
    let Ok(seconds) = seconds.parse::<u64>() else {
        eprintln!("fuzz_loop: SECONDS must be a whole number, got {seconds:?}");
        return ExitCode::from(2);
    };
    let dirs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
    let seed = std::env::var("FUZZ_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x626f_636c_7573_7465);
    let mut rng = Rng(seed);
    let mut pool = read_seeds(&dirs);

    let run = |input: &[u8]| std::panic::catch_unwind(|| check(input)).is_ok();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut executions = 0u64;
    for input in &pool {
        executions += 1;
        if !run(input) {
            let path = save_crash(target, input);
            eprintln!(
                "fuzz_loop: {target}: a seed fails; saved as {}",
                path.display()
            );
            return ExitCode::from(1);
        }
    }
    while Instant::now() < deadline {
        for _ in 0..256 {
            let mut input = pool[rng.below(pool.len())].clone();
            mutate(&mut rng, &mut input, &pool);
            executions += 1;
            if !run(&input) {
                let path = save_crash(target, &input);
                eprintln!(
                    "fuzz_loop: {target}: crash after {executions} inputs (seed {seed}); saved as {}",
                    path.display()
                );
                return ExitCode::from(1);
            }
            // Keep some mutants as parents, so mutations stack up (bounded pool).
            if rng.below(64) == 0 {
                if pool.len() < 4096 {
                    pool.push(input);
                } else {
                    let i = rng.below(pool.len());
                    pool[i] = input;
                }
            }
        }
    }
    println!("fuzz_loop: {target}: {executions} inputs in {seconds} s, no failure (seed {seed})");
    ExitCode::SUCCESS
}
