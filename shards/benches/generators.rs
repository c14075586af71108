//! Records per second of the value generators: every schema in schemas/,
//! live (a datum generated per record) and pooled (a pre-generated pool
//! cycled), next to fixed-size values for comparison.
//!
//! `cargo bench -p datastorm-shards --bench generators`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datastorm_shards::payload::avro::{load_dir, AvroValues, CompiledSchema, Encoding};
use datastorm_shards::payload::{FixedValues, ValueSource};
use std::hint::black_box;
use std::path::Path;

const BATCH: u64 = 1000;

fn schemas() -> Vec<CompiledSchema> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Pulls `BATCH` values, as a shard would, summing lengths so nothing is
/// optimised away.
fn pull(src: &mut dyn ValueSource, seq: &mut u64) -> usize {
    let mut total = 0;
    for _ in 0..BATCH {
        total += src.value(*seq).len();
        *seq += 1;
    }
    total
}

fn generators(c: &mut Criterion) {
    let mut g = c.benchmark_group("generators");
    g.throughput(Throughput::Elements(BATCH));
    let mut fixed = FixedValues::new(100, 1024, 1);
    let mut seq = 0;
    g.bench_function("fixed-100B/pool", |b| {
        b.iter(|| black_box(pull(&mut fixed, &mut seq)))
    });
    for s in schemas() {
        let name = s.name().trim_end_matches(".avsc").to_owned();
        let modes: [(&str, Box<dyn ValueSource>); 4] = [
            (
                "live-avro",
                Box::new(AvroValues::live(&s, Encoding::Avro, 1)),
            ),
            (
                "live-confluent",
                Box::new(AvroValues::live(
                    &s,
                    Encoding::Confluent { schema_id: 1 },
                    1,
                )),
            ),
            (
                "live-json",
                Box::new(AvroValues::live(&s, Encoding::Json, 1)),
            ),
            (
                "pool-avro",
                Box::new(AvroValues::pooled(&s, Encoding::Avro, 1, 1024)),
            ),
        ];
        for (mode, mut src) in modes {
            let mut seq = 0;
            g.bench_function(format!("{name}/{mode}"), |b| {
                b.iter(|| black_box(pull(src.as_mut(), &mut seq)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, generators);
criterion_main!(benches);
