//! The pacer's two calls on the hot path, for each rate profile: `due(now)`
//! (how many records are due, once per loop turn) and `intended(n)` (record
//! n's intended send time, once per record for its latency). Criterion
//! reports calls per second (elements), 1,000 calls per iteration.
//!
//! `cargo bench -p datastorm-shards --bench pacer`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datastorm_shards::pacer::{Pacer, Profile};
use std::hint::black_box;
use std::time::{Duration, Instant};

const CALLS: u64 = 1000;

fn profiles() -> Vec<(&'static str, Profile)> {
    vec![
        ("fixed", Profile::Fixed(1_000_000.0)),
        (
            "ramp",
            Profile::Ramp {
                from: 100_000.0,
                to: 2_000_000.0,
                over: 60.0,
            },
        ),
        (
            "steps-8",
            Profile::Steps {
                rates: (1..=8)
                    .map(|i| i as f64 * 250_000.0)
                    .collect::<Vec<_>>()
                    .into(),
                step: 30.0,
            },
        ),
    ]
}

fn pacer(c: &mut Criterion) {
    let mut g = c.benchmark_group("pacer");
    g.throughput(Throughput::Elements(CALLS));
    let start = Instant::now();
    for (name, profile) in profiles() {
        let p = Pacer::with_profile(profile, 0.5, start);
        // `due` at instants spread over the profile's first 4 minutes (past
        // the ramp and into the last step), so every branch is taken.
        let instants: Vec<Instant> = (0..CALLS)
            .map(|i| start + Duration::from_millis(i * 240))
            .collect();
        g.bench_function(format!("due/{name}"), |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for &t in &instants {
                    sum = sum.wrapping_add(p.due(black_box(t)));
                }
                sum
            })
        });
        // `intended` for consecutive records, as a shard asks, from a
        // record deep in the run.
        let mut n = 50_000_000u64;
        g.bench_function(format!("intended/{name}"), |b| {
            b.iter(|| {
                let mut last = start;
                for _ in 0..CALLS {
                    last = last.max(p.intended(black_box(n)));
                    n = (n + 1) % 200_000_000;
                }
                last
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pacer);
criterion_main!(benches);
