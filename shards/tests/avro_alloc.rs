//! Live schema-driven generation under a counting allocator: once the
//! output buffer has grown to the largest record, generating a record
//! allocates nothing, in every encoding, for every schema in schemas/, with
//! and without a key taken from a field (`--key field:NAME`).

use apache_avro::Schema;
use datastorm_shards::payload::avro::{load_dir, AvroValues, Encoding};
use datastorm_shards::payload::ValueSource;
use std::path::Path;

mod common;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

fn allocs() -> u64 {
    common::allocations()
}

#[test]
fn live_generation_does_not_allocate_per_record() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    for schema in load_dir(&dir).unwrap() {
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

#[test]
fn keyed_live_generation_does_not_allocate_per_record() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    for schema in load_dir(&dir).unwrap() {
        let Schema::Record(root) = schema.avro_schema() else {
            panic!("{}: not a record", schema.name())
        };
        // Every field that can be a key, one source each.
        let keys: Vec<_> = root
            .fields
            .iter()
            .filter_map(|f| schema.key_field(&f.name).ok())
            .collect();
        assert!(!keys.is_empty(), "{}", schema.name());
        for key in keys {
            for enc in [Encoding::Avro, Encoding::Json] {
                let mut v = AvroValues::live(&schema, enc, 3).with_key(key.clone());
                for seq in 0..20_000 {
                    v.record(seq);
                }
                let before = allocs();
                let (mut total, mut keyed) = (0, 0);
                for seq in 20_000..30_000 {
                    let r = v.record(seq);
                    total += r.value.len();
                    keyed += usize::from(r.key.is_some());
                }
                let n = allocs() - before;
                assert!(total > 0 && keyed > 0);
                assert!(
                    n <= 2,
                    "{} key {} {enc:?}: {n} allocations in 10000 records",
                    schema.name(),
                    key.name()
                );
            }
        }
    }
}
