//! Records per second of the value generators: every schema in schemas/,
//! live (a datum generated per record) and pooled (a pre-generated pool
//! cycled), next to fixed-size values for comparison; and orders with its
//! key taken from a field (`--key field:user_id`). Criterion reports the
//! throughput in elements per second: one element is one record.
//!
//! Time is the benchmark thread's CPU time as the scheduler counts it
//! (`/proc/thread-self/schedstat`), not wall-clock time: on a shared machine
//! the wall clock also counts the time other processes hold the core. On a
//! quiet machine the two agree. Set `GENERATORS_WALL_CLOCK=1` for wall-clock
//! time.
//!
//! `cargo bench -p datastorm-shards --bench generators`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datastorm_shards::payload::avro::{load_dir, AvroValues, CompiledSchema, Encoding};
use datastorm_shards::payload::{FixedValues, ValueSource};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const BATCH: u64 = 1000;

fn schemas() -> Vec<CompiledSchema> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// CPU time the calling thread has run so far, if the kernel says.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Times `iters` runs of `f` by the thread's CPU time (see the top of the
/// file), or the wall clock where that is not available or asked for.
fn time<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let wall = std::env::var_os("GENERATORS_WALL_CLOCK").is_some();
    match thread_cpu().filter(|_| !wall) {
        Some(start) => {
            (0..iters).for_each(|_| drop(black_box(f())));
            thread_cpu().map_or(Duration::ZERO, |end| end.saturating_sub(start))
        }
        None => {
            let start = Instant::now();
            (0..iters).for_each(|_| drop(black_box(f())));
            start.elapsed()
        }
    }
}

/// Pulls `BATCH` records, as a shard would, summing lengths so nothing is
/// optimised away.
fn pull(src: &mut dyn ValueSource, seq: &mut u64) -> usize {
    let mut total = 0;
    for _ in 0..BATCH {
        let r = src.record(*seq);
        total += r.value.len() + r.key.map_or(0, <[u8]>::len);
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
        b.iter_custom(|n| time(n, || pull(&mut fixed, &mut seq)))
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
        let keyed = (name == "orders").then(|| {
            let key = s.key_field("user_id").unwrap_or_else(|e| panic!("{e}"));
            let src: Box<dyn ValueSource> =
                Box::new(AvroValues::live(&s, Encoding::Avro, 1).with_key(key));
            ("live-avro-key-user_id", src)
        });
        for (mode, mut src) in modes.into_iter().chain(keyed) {
            let mut seq = 0;
            g.bench_function(format!("{name}/{mode}"), |b| {
                b.iter_custom(|n| time(n, || pull(src.as_mut(), &mut seq)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, generators);
criterion_main!(benches);
