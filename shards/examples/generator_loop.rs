//! One schema's live generator in a plain loop, for comparing two builds
//! of the generator on a noisy machine (see docs/benchmarks.md, "A note on
//! noise"): build each, then run the two binaries in turn several times and
//! compare their medians; or run it under callgrind, whose instruction
//! counts do not move with the host.
//!
//! ```sh
//! cargo build --release -p datastorm-shards --example generator_loop
//! target/release/examples/generator_loop [SCHEMA.avsc] [RECORDS] [--json] [--key FIELD]
//! ```
//!
//! Generates RECORDS records (3,500,000 by default) of `schemas/SCHEMA.avsc`
//! (`orders.avsc` by default) in 7 rounds and prints the best round's
//! nanoseconds a record, by the wall clock.

use datastorm_shards::payload::avro::{load_dir, AvroValues, Encoding};
use datastorm_shards::payload::ValueSource;
use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const ROUNDS: u64 = 7;

fn main() -> ExitCode {
    let (mut schema, mut records, mut enc, mut key) =
        ("orders.avsc".to_owned(), 3_500_000u64, Encoding::Avro, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => enc = Encoding::Json,
            "--key" => key = args.next(),
            _ if a.ends_with(".avsc") => schema = a,
            _ => match a.parse() {
                Ok(n) => records = n,
                Err(_) => {
                    eprintln!("generator_loop: unknown argument {a:?}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let all = match load_dir(&dir) {
        Ok(all) => all,
        Err(e) => {
            eprintln!("generator_loop: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(s) = all.iter().find(|s| s.name() == schema) else {
        eprintln!("generator_loop: no {schema} in schemas/");
        return ExitCode::from(2);
    };
    let mut src = AvroValues::live(s, enc, 1);
    if let Some(k) = key {
        match s.key_field(&k) {
            Ok(k) => src = src.with_key(k),
            Err(e) => {
                eprintln!("generator_loop: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let per_round = (records / ROUNDS).max(1);
    let mut best = f64::MAX;
    let mut seq = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut total = 0usize;
        for _ in 0..per_round {
            let r = src.record(seq);
            total += r.value.len() + r.key.map_or(0, <[u8]>::len);
            seq += 1;
        }
        black_box(total);
        best = best.min(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    println!(
        "{schema}: best of {ROUNDS} rounds {best:.1} ns a record ({:.2}M records/s)",
        1e3 / best
    );
    ExitCode::SUCCESS
}
