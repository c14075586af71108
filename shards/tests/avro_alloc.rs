//! Live schema-driven generation under a counting allocator: once the
//! output buffer has grown to the largest record, generating a record
//! allocates nothing, in every encoding, for every schema in schemas/.

use datastorm_shards::payload::avro::{compile_all, AvroValues, Encoding};
use datastorm_shards::payload::ValueSource;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn live_generation_does_not_allocate_per_record() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let mut streams: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "avsc").then(|| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                (stem, std::fs::read_to_string(&p).unwrap())
            })
        })
        .collect();
    streams.sort();
    let refs: Vec<(&str, &str)> = streams
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for schema in compile_all(&refs).unwrap() {
        for enc in [
            Encoding::Avro,
            Encoding::Confluent { schema_id: 7 },
            Encoding::Json,
        ] {
            let mut v = AvroValues::live(&schema, enc, 3);
            // Warm up: let the buffers grow to the largest record seen.
            for seq in 0..20_000 {
                v.value(seq);
            }
            let before = allocs();
            let mut total = 0;
            for seq in 20_000..30_000 {
                total += v.value(seq).len();
            }
            let n = allocs() - before;
            assert!(total > 0);
            // A rare record larger than any before may still grow the buffer.
            assert!(
                n <= 2,
                "{} {enc:?}: {n} allocations in 10000 records",
                schema.name()
            );
        }
    }
}
