//! Batch build and seal per record size: `BatchBuilder::append` of a
//! 64 KiB batch's worth of records, then `seal` (LZ4 frame, or none, and the
//! CRC), as a shard does for one partition. Criterion reports records per
//! second (elements); value bytes per second are that times the size.
//!
//! Values are printable random bytes from a pool of 1,000 per size, cycled,
//! as `datastorm produce --record-size N` sends them.
//!
//! `cargo bench -p datastorm-engine --bench batch`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compression, Compressor};
use std::hint::black_box;

/// The batch size a shard seals at by default (`--batch-size 64KiB`).
const BATCH_BYTES: usize = 64 << 10;
const SIZES: [usize; 6] = [16, 100, 256, 1024, 4096, 16384];
const POOL: usize = 1000;

/// `POOL` values of `size` printable random bytes (xorshift, fixed seed).
fn values(size: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..POOL)
        .map(|_| (0..size).map(|_| b'!' + (next() % 94) as u8).collect())
        .collect()
}

/// Records of `size` bytes that fill one batch (at least one).
fn records_per_batch(size: usize) -> usize {
    (BATCH_BYTES / (size + 8)).max(1)
}

/// Builds and seals one batch of `n` records; returns the wire size.
fn build_and_seal(
    builder: &mut BatchBuilder,
    compressor: &mut Compressor,
    out: &mut WriteBuf,
    compression: Compression,
    pool: &[Vec<u8>],
    next: &mut usize,
    n: usize,
) -> usize {
    for _ in 0..n {
        builder.append(1_700_000_000_000, None, &pool[*next], &[]);
        *next = (*next + 1) % pool.len();
    }
    out.clear();
    builder.seal(compression, compressor, out).wire_bytes
}

fn bench(c: &mut Criterion, compression: Compression, name: &str) {
    let mut g = c.benchmark_group(format!("batch-{name}"));
    for size in SIZES {
        let pool = values(size);
        let n = records_per_batch(size);
        g.throughput(Throughput::Elements(n as u64));
        let mut builder = BatchBuilder::with_capacity(BATCH_BYTES + size + 64);
        let mut compressor = Compressor::for_codec(compression);
        let mut out = WriteBuf::with_capacity(2 * BATCH_BYTES + 2 * size + 1024);
        let mut next = 0;
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{size}B")),
            &n,
            |b, &n| {
                b.iter(|| {
                    black_box(build_and_seal(
                        &mut builder,
                        &mut compressor,
                        &mut out,
                        compression,
                        &pool,
                        &mut next,
                        n,
                    ))
                })
            },
        );
    }
    g.finish();
}

fn batches(c: &mut Criterion) {
    bench(c, Compression::Lz4, "lz4");
    bench(c, Compression::None, "none");
}

criterion_group!(benches, batches);
criterion_main!(benches);
