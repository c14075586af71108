//! A stable-toolchain fuzzer for the targets in `datastorm_fuzz`: blind
//! mutation (no coverage feedback) of valid seeds, of inputs a decoder
//! accepted, and of random bytes, for a fixed time. cargo-fuzz (libFuzzer,
//! coverage-guided) runs the same functions where a nightly toolchain is
//! available; `scripts/fuzz` picks.
//!
//! Usage: fuzz-driver [SECONDS] [--target NAME] [--seed N] [--max-len N]
//!        fuzz-driver --write-seeds DIR     (seed corpora for cargo-fuzz)
//!
//! A broken property panics: the input is printed in hex, saved under
//! artifacts/<target>/ and the driver exits with status 1. A refused huge
//! allocation aborts the process after printing the input.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use datastorm_fuzz::{mutate, seeds, Counting, Rng, TARGETS};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Inputs a decoder accepted are kept (up to this many per target) as
/// starting points for more mutation.
const MAX_POOL: usize = 4096;

struct Target {
    name: &'static str,
    run: fn(&[u8]) -> bool,
    pool: Vec<Vec<u8>>,
    execs: u64,
    accepted: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60u64;
    let mut only: Option<String> = None;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut max_len = 4096usize;
    while let Some(a) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{what} needs a value"))
        };
        match a.as_str() {
            "--target" => only = Some(value("--target")),
            "--seed" => seed = value("--seed").parse().expect("--seed N"),
            "--max-len" => max_len = value("--max-len").parse().expect("--max-len N"),
            "--write-seeds" => {
                let dir = PathBuf::from(value("--write-seeds"));
                for (name, _) in TARGETS {
                    let d = dir.join(name);
                    std::fs::create_dir_all(&d).expect("create the corpus folder");
                    for (i, s) in seeds(name, 64, 1).iter().enumerate() {
                        std::fs::write(d.join(format!("seed-{i:03}")), s).expect("write a seed");
                    }
                }
                return;
            }
            "-h" | "--help" => {
                println!(
                    "fuzz-driver [SECONDS] [--target NAME] [--seed N] [--max-len N] | --write-seeds DIR"
                );
                return;
            }
            s => seconds = s.parse().unwrap_or_else(|_| panic!("unknown argument {s}")),
        }
    }

    let mut targets: Vec<Target> = TARGETS
        .iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .map(|&(name, run)| Target {
            name,
            run,
            pool: seeds(name, 256, seed),
            execs: 0,
            accepted: 0,
        })
        .collect();
    assert!(!targets.is_empty(), "no target named {only:?}");
    for t in &targets {
        // Every seed must be accepted, or the seeds are wrong.
        let ok = t.pool.iter().filter(|s| (t.run)(s)).count();
        assert_eq!(ok, t.pool.len(), "{}: only {ok} seeds accepted", t.name);
    }
    println!(
        "fuzz-driver: {} target(s), {seconds} s, seed {seed}, max input {max_len} bytes (stable runner, no coverage feedback)",
        targets.len()
    );

    // Panics are reported by the loop below, with the input.
    panic::set_hook(Box::new(|_| {}));
    let mut g = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut next_report = Instant::now() + Duration::from_secs(10);
    let mut crashed = false;
    'outer: while Instant::now() < deadline {
        for t in &mut targets {
            for _ in 0..256 {
                let input = match g.below(8) {
                    0 => {
                        let len = g.below(max_len.min(600)) + 1;
                        g.bytes(len)
                    }
                    _ => {
                        let mut input = t.pool[g.below(t.pool.len())].clone();
                        let other = t.pool[g.below(t.pool.len())].clone();
                        mutate(&mut g, &mut input, &other, max_len);
                        input
                    }
                };
                t.execs += 1;
                match panic::catch_unwind(AssertUnwindSafe(|| (t.run)(&input))) {
                    Ok(true) => {
                        t.accepted += 1;
                        if t.pool.len() < MAX_POOL {
                            t.pool.push(input);
                        } else {
                            let i = g.below(MAX_POOL);
                            t.pool[i] = input;
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let dir = PathBuf::from("artifacts").join(t.name);
                        let _ = std::fs::create_dir_all(&dir);
                        let path = dir.join(format!("crash-{}", hex(&input[..input.len().min(8)])));
                        let _ = std::fs::write(&path, &input);
                        eprintln!("fuzz-driver: {} panicked: {msg}", t.name);
                        eprintln!(
                            "input ({} bytes, saved to {}): {}",
                            input.len(),
                            path.display(),
                            hex(&input)
                        );
                        crashed = true;
                        break 'outer;
                    }
                }
            }
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            let total: u64 = targets.iter().map(|t| t.execs).sum();
            println!("fuzz-driver: {total} execs");
        }
    }
    let _ = panic::take_hook();
    for t in &targets {
        println!(
            "fuzz-driver: {:<17} {:>10} execs, {:>9} accepted, pool {}",
            t.name,
            t.execs,
            t.accepted,
            t.pool.len()
        );
    }
    if crashed {
        std::process::exit(1);
    }
    println!("fuzz-driver: no crash");
}
