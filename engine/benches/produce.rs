//! Produce request encoding with `ProduceRequestBuilder`, 100-byte records,
//! LZ4, one 64 KiB batch for each of 8 partitions per request (what a shard
//! sends to one broker at the default settings):
//!
//! * `frame`: adding 8 already-sealed batches and framing the request (the
//!   copy of each batch into the request buffer, the prefix, `reset`);
//! * `full`: appending every record, sealing each partition's batch (LZ4,
//!   CRC) and framing the request: the producer's whole encode path, without
//!   the generator or the socket.
//!
//! Criterion reports records per second (elements).
//!
//! `cargo bench -p datastorm-engine --bench produce`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compression, Compressor};
use datastorm_engine::wire::produce::{ProduceRequestBuilder, RequestFields};
use std::hint::black_box;

const PARTITIONS: usize = 8;
const BATCH_BYTES: usize = 64 << 10;
const RECORD: usize = 100;
const RECORDS_PER_BATCH: usize = BATCH_BYTES / (RECORD + 8);
const POOL: usize = 1000;

fn values() -> Vec<Vec<u8>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..POOL)
        .map(|_| (0..RECORD).map(|_| b'!' + (next() % 94) as u8).collect())
        .collect()
}

struct Encoder {
    pool: Vec<Vec<u8>>,
    next: usize,
    builders: Vec<BatchBuilder>,
    compressor: Compressor,
    sealed: Vec<WriteBuf>,
    request: ProduceRequestBuilder,
    correlation_id: i32,
}

impl Encoder {
    fn new() -> Self {
        Encoder {
            pool: values(),
            next: 0,
            builders: (0..PARTITIONS)
                .map(|_| BatchBuilder::with_capacity(BATCH_BYTES + 1024))
                .collect(),
            compressor: Compressor::for_codec(Compression::Lz4),
            sealed: (0..PARTITIONS)
                .map(|_| WriteBuf::with_capacity(2 * BATCH_BYTES))
                .collect(),
            request: ProduceRequestBuilder::new(
                "datastorm",
                "datastorm",
                PARTITIONS * BATCH_BYTES * 2,
            ),
            correlation_id: 0,
        }
    }

    /// Appends a batch's worth of records to every partition and seals them.
    fn fill_and_seal(&mut self) {
        for (builder, out) in self.builders.iter_mut().zip(&mut self.sealed) {
            for _ in 0..RECORDS_PER_BATCH {
                builder.append(1_700_000_000_000, None, &self.pool[self.next], &[]);
                self.next = (self.next + 1) % POOL;
            }
            out.clear();
            builder.seal(Compression::Lz4, &mut self.compressor, out);
        }
    }

    /// Frames the sealed batches as one request; returns its length.
    fn frame(&mut self) -> usize {
        self.request.reset();
        for (p, out) in self.sealed.iter().enumerate() {
            self.request.add_batch(p as i32, out.as_slice());
        }
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.request
            .finish(RequestFields {
                version: 12,
                correlation_id: self.correlation_id,
                client_id: "datastorm",
                acks: 1,
                timeout_ms: 30_000,
            })
            .len()
    }
}

fn produce(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce-request");
    g.throughput(Throughput::Elements(
        (PARTITIONS * RECORDS_PER_BATCH) as u64,
    ));
    let mut enc = Encoder::new();
    enc.fill_and_seal();
    g.bench_function("frame/8x64KiB-lz4-100B", |b| {
        b.iter(|| black_box(enc.frame()))
    });
    let mut enc = Encoder::new();
    g.bench_function("full/8x64KiB-lz4-100B", |b| {
        b.iter(|| {
            enc.fill_and_seal();
            black_box(enc.frame())
        })
    });
    g.finish();
}

criterion_group!(benches, produce);
criterion_main!(benches);
