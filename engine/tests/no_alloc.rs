//! The per-record path allocates nothing once its buffers have grown:
//! appending records, sealing batches (every codec), framing requests.
//!
//! The counter sees Rust's allocator only. zstd's C library takes its
//! context's workspace from `malloc` once, when the context first
//! compresses, and keeps it (it reallocates only for a larger window or
//! after many calls that needed much less); gzip, snappy and LZ4 state is
//! Rust and counted.

use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compression, Compressor};
use datastorm_engine::wire::produce::{ProduceRequestBuilder, RequestFields};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by threads that opted in.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments; counting touches only thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

/// Builds `records` records into 64 KiB batches across 4 partitions and
/// frames one request per batch, like a shard does. Returns the number of
/// requests framed.
fn produce_path(
    records: usize,
    compression: Compression,
    builders: &mut [BatchBuilder],
    compressor: &mut Compressor,
    scratch: &mut WriteBuf,
    request: &mut ProduceRequestBuilder,
) -> usize {
    // Eight distinct printable values, so every codec has work to do.
    let values: [[u8; 100]; 8] =
        std::array::from_fn(|v| std::array::from_fn(|j| b'!' + ((v * 131 + j * 7919) % 94) as u8));
    let key = *b"0000000000000042";
    let mut sent = 0;
    for i in 0..records {
        let value = &values[i % values.len()];
        let b = &mut builders[i % builders.len()];
        if b.uncompressed_size() + 140 > 64 * 1024 {
            scratch.clear();
            b.seal(compression, compressor, scratch);
            request.add_batch((i % 4) as i32, scratch.as_slice());
            let frame = request.finish(RequestFields {
                version: 9,
                correlation_id: i as i32,
                client_id: "datastorm",
                acks: -1,
                timeout_ms: 30_000,
            });
            assert!(frame.len() > 100);
            sent += 1;
            request.reset();
        }
        b.append(
            1_700_000_000_000 + (i as i64 / 1000),
            Some(&key),
            value,
            &[],
        );
    }
    sent
}

#[test]
fn steady_state_allocates_nothing_per_record() {
    for compression in [
        Compression::Lz4,
        Compression::None,
        Compression::Gzip { level: 6 },
        Compression::Snappy,
        Compression::Zstd { level: 3 },
    ] {
        let mut builders: Vec<BatchBuilder> = (0..4)
            .map(|_| BatchBuilder::with_capacity(64 * 1024))
            .collect();
        let mut compressor = Compressor::new();
        let mut scratch = WriteBuf::with_capacity(1024);
        let mut request = ProduceRequestBuilder::new("orders", "datastorm", 1024);
        // Warm-up grows every buffer to its working size.
        produce_path(
            20_000,
            compression,
            &mut builders,
            &mut compressor,
            &mut scratch,
            &mut request,
        );
        let mut sent = 0;
        let allocs = allocations_during(|| {
            sent = produce_path(
                500_000,
                compression,
                &mut builders,
                &mut compressor,
                &mut scratch,
                &mut request,
            );
        });
        assert!(
            sent > 900,
            "the loop really sealed batches ({sent} requests)"
        );
        assert_eq!(
            allocs, 0,
            "{compression}: allocations in steady state over 500,000 records"
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_during(|| {
        let v: Vec<u8> = Vec::with_capacity(10);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}
