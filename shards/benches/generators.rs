//! Records per second of the value generators: every schema in schemas/,
//! live (a datum generated per record) and pooled (a pre-generated pool
//! cycled), next to fixed-size values for comparison; and orders with its
//! key taken from a field (`--key field:user_id`). Criterion reports the
//! throughput in elements per second: one element is one record.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall-clock time: on a shared machine the wall clock also counts the time
//! other processes hold the core. On a quiet machine the two agree. Set
//! `GENERATORS_WALL_CLOCK=1` for wall-clock time.
//!
//! A third group, `orders-field/FIELD`, generates records of `orders.avsc`
//! cut down to one of its fields (live, Avro): what each field costs, for
//! finding where a live orders record spends its time. A record of one
//! field also pays the per-record overhead; `orders-field/gift` (one
//! boolean) is about that overhead alone.
//!
//! `cargo bench -p datastorm-shards --bench generators`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datastorm_shards::payload::avro::{
    compile_all, load_dir, AvroValues, CompiledSchema, Encoding,
};
use datastorm_shards::payload::{FixedValues, ValueSource};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const BATCH: u64 = 1000;

fn schemas() -> Vec<CompiledSchema> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// CPU time the calling thread has run so far.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: libc's clock_gettime writes one timespec (two 64-bit fields
    // on the 64-bit Linux targets this runs on) into `ts`, which outlives
    // the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.sec as u64, ts.nsec as u32))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Option<Duration> {
    None
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

/// `orders.avsc` cut down to each of its fields in turn, compiled together
/// with `users.avsc` (which `user_id` references): `(field, schema)`.
fn orders_by_field() -> Vec<(String, CompiledSchema)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let (orders, users) = (read("orders.avsc"), read("users.avsc"));
    let full: serde_json::Value = serde_json::from_str(&orders).expect("orders.avsc is JSON");
    let fields = full["fields"]
        .as_array()
        .expect("orders has fields")
        .clone();
    fields
        .iter()
        .map(|f| {
            let mut one = full.clone();
            one["fields"] = serde_json::Value::Array(vec![f.clone()]);
            let text = one.to_string();
            let compiled = compile_all(&[("orders", &text), ("users", &users)])
                .unwrap_or_else(|e| panic!("{e}"));
            let name = f["name"].as_str().expect("a field name").to_owned();
            (name, compiled.into_iter().next().expect("orders"))
        })
        .collect()
}

fn orders_fields(c: &mut Criterion) {
    let mut g = c.benchmark_group("orders-field");
    g.throughput(Throughput::Elements(BATCH));
    for (field, s) in orders_by_field() {
        let mut src = AvroValues::live(&s, Encoding::Avro, 1);
        let mut seq = 0;
        g.bench_function(field, |b| {
            b.iter_custom(|n| time(n, || pull(&mut src, &mut seq)))
        });
    }
    g.finish();
}

criterion_group!(benches, generators, orders_fields);
criterion_main!(benches);
