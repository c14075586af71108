#![no_main]

#[global_allocator]
static ALLOC: datastorm_fuzz::Counting = datastorm_fuzz::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    datastorm_fuzz::record_batches(data);
});
