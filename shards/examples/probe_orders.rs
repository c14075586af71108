use datastorm_shards::payload::avro::{load_dir, AvroValues, Encoding};
use datastorm_shards::payload::ValueSource;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(20_000_000, |s| s.parse().unwrap());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let all = load_dir(&dir).unwrap();
    let want = std::env::var("SCHEMA").unwrap_or("orders.avsc".into());
    let s = all.iter().find(|s| s.name() == want).unwrap();
    let enc = if std::env::var("JSON").is_ok() {
        Encoding::Json
    } else {
        Encoding::Avro
    };
    let mut src = AvroValues::live(s, enc, 1);
    let mut best = f64::MAX;
    let mut seq = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let mut total = 0usize;
        for _ in 0..n / 7 {
            let r = src.record(seq);
            total += r.value.len();
            seq += 1;
        }
        black_box(total);
        best = best.min(t.elapsed().as_nanos() as f64 / (n / 7) as f64);
    }
    println!("best {:.1} ns/record, {:.2} M/s", best, 1e3 / best);
}
