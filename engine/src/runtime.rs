//! The CPU set and one pinned glommio executor per CPU.

use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid CPU list '{spec}': {why}. Use a list like 0-3,8")]
    BadCpuList { spec: String, why: String },
    #[error("CPUs {asked:?} are not available to this process (allowed: {allowed:?}); check taskset/cgroup limits")]
    NotAllowed {
        asked: Vec<usize>,
        allowed: Vec<usize>,
    },
    #[error("--cores {asked} asks for more cores than the {available} available to this process{}", if *.reserved > 0 { format!(" after reserving {} for the embedded sink", .reserved) } else { String::new() })]
    TooManyCores {
        asked: usize,
        available: usize,
        reserved: usize,
    },
    #[error("--cores must be at least 1")]
    ZeroCores,
    #[error("could not start the executor for CPU {cpu}: {detail}")]
    Executor { cpu: usize, detail: String },
    #[error("the shard on CPU {cpu} panicked")]
    ShardPanicked { cpu: usize },
}

/// How the user chose CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSpec {
    /// Every CPU the process may run on.
    All,
    /// The first N allowed CPUs.
    Count(usize),
    /// An explicit list (`0-3,8`).
    List(Vec<usize>),
}

impl FromStr for CpuSpec {
    type Err = RuntimeError;
    /// Parses a CPU list such as `0-3,8`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RuntimeError::BadCpuList {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let mut cpus = Vec::new();
        for part in spec.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad("empty item"));
            }
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: usize = lo
                .parse()
                .map_err(|_| bad(&format!("'{lo}' is not a CPU number")))?;
            let hi: usize = hi
                .parse()
                .map_err(|_| bad(&format!("'{hi}' is not a CPU number")))?;
            if lo > hi {
                return Err(bad(&format!("range {lo}-{hi} is reversed")));
            }
            if hi > 4095 {
                return Err(bad("CPU numbers stop at 4095"));
            }
            cpus.extend(lo..=hi);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuSpec::List(cpus))
    }
}

/// CPUs this process may run on (its affinity mask, so taskset and cgroup
/// limits are respected), sorted.
pub fn allowed_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if ids.is_empty() {
        ids = (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    ids.sort_unstable();
    ids
}

/// Resolves a spec against the allowed CPUs, leaving out `reserved` ones
/// (for example the embedded sink's core) when the spec does not name CPUs.
pub fn resolve_cpus(
    spec: &CpuSpec,
    allowed: &[usize],
    reserved: &[usize],
) -> Result<Vec<usize>, RuntimeError> {
    let free: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| !reserved.contains(c))
        .collect();
    let pool = if free.is_empty() {
        allowed.to_vec()
    } else {
        free
    };
    match spec {
        CpuSpec::All => Ok(pool),
        CpuSpec::Count(0) => Err(RuntimeError::ZeroCores),
        CpuSpec::Count(n) => {
            if *n > pool.len() {
                return Err(RuntimeError::TooManyCores {
                    asked: *n,
                    available: pool.len(),
                    reserved: allowed.len() - pool.len(),
                });
            }
            Ok(pool[..*n].to_vec())
        }
        CpuSpec::List(list) => {
            let bad: Vec<usize> = list
                .iter()
                .copied()
                .filter(|c| !allowed.contains(c))
                .collect();
            if !bad.is_empty() || list.is_empty() {
                return Err(RuntimeError::NotAllowed {
                    asked: bad,
                    allowed: allowed.to_vec(),
                });
            }
            Ok(list.clone())
        }
    }
}

/// The glommio executor settings a run can change (`produce
/// --ring-depth`, `--spin-before-park`, `--preempt-timer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ExecutorTuning {
    /// io_uring submission queue entries per ring (glommio's default: 128).
    pub ring_depth: usize,
    /// How long an idle executor polls before it parks (sleeps in the kernel).
    pub spin_before_park: std::time::Duration,
    /// Time slice after which a running task is asked to yield, so that
    /// the executor polls io_uring (ack readers run) during a generator loop.
    pub preempt_timer: std::time::Duration,
}

impl Default for ExecutorTuning {
    fn default() -> Self {
        ExecutorTuning {
            ring_depth: 128,
            // Short enough that ack readers run while a generator loop keeps
            // the core busy.
            preempt_timer: std::time::Duration::from_micros(500),
            // Gaps shorter than this (a loopback round trip) are spun
            // through; longer ones (waiting milliseconds for a broker's
            // acks) sleep instead of burning the core. Spinning 10 ms, the
            // earlier default, cost a whole core while waiting on a real
            // broker: 9.4-9.7 CPU s against 3.9-5.4 CPU s in a 10 s run at
            // the same rate. A sleep ends by the next timer or 10 ms at the
            // latest (vendor/glommio/PATCHES.md), even when glommio's
            // linked-ring notification is lost.
            spin_before_park: std::time::Duration::from_micros(100),
        }
    }
}

/// Starts one executor per CPU, pinned, running `make(shard_index, cpu)`'s
/// future, and waits for all of them. Results come back in shard order.
pub fn run_pinned<T, F, Fut>(cpus: &[usize], name: &str, make: F) -> Result<Vec<T>, RuntimeError>
where
    T: Send + 'static,
    F: Fn(usize, usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    run_pinned_with(cpus, name, &ExecutorTuning::default(), make)
}

/// [`run_pinned`] with executor settings other than the defaults.
pub fn run_pinned_with<T, F, Fut>(
    cpus: &[usize],
    name: &str,
    tuning: &ExecutorTuning,
    make: F,
) -> Result<Vec<T>, RuntimeError>
where
    T: Send + 'static,
    F: Fn(usize, usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let mut handles = Vec::with_capacity(cpus.len());
    for (idx, &cpu) in cpus.iter().enumerate() {
        let make = make.clone();
        let handle = tuned_executor_builder(cpu, &format!("{name}-{idx}"), tuning)
            .spawn(move || make(idx, cpu))
            .map_err(|e| RuntimeError::Executor {
                cpu,
                detail: e.to_string(),
            })?;
        handles.push((cpu, handle));
    }
    handles
        .into_iter()
        .map(|(cpu, h)| h.join().map_err(|_| RuntimeError::ShardPanicked { cpu }))
        .collect()
}

/// Runs `work` to completion on a new, unpinned executor named `name`: the
/// short jobs outside the shards (a run's setup: bootstrap, CreateTopics,
/// waiting for leaders; reading a topic back to verify it). Its sleeps are
/// bounded like every executor's (vendor/glommio/PATCHES.md), so a lost
/// wake-up delays it by 10 ms at most. `Err` if the executor cannot start.
pub fn run_unpinned<T>(name: &str, work: impl Future<Output = T>) -> Result<T, String> {
    LocalExecutorBuilder::default()
        .name(name)
        .make()
        .map_err(|e| e.to_string())
        .map(|ex| ex.run(work))
}

/// A builder for an executor pinned to `cpu`, with the settings DataStorm uses.
pub fn executor_builder(cpu: usize, name: &str) -> LocalExecutorBuilder {
    tuned_executor_builder(cpu, name, &ExecutorTuning::default())
}

/// A builder for an executor pinned to `cpu` with `tuning`.
pub fn tuned_executor_builder(
    cpu: usize,
    name: &str,
    tuning: &ExecutorTuning,
) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(name)
        .ring_depth(tuning.ring_depth.max(1))
        .preempt_timer(tuning.preempt_timer)
        .spin_before_park(tuning.spin_before_park)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(
            "0-3,8".parse::<CpuSpec>().unwrap(),
            CpuSpec::List(vec![0, 1, 2, 3, 8])
        );
        assert_eq!(
            "2, 1 ,2".parse::<CpuSpec>().unwrap(),
            CpuSpec::List(vec![1, 2])
        );
        for bad in ["", "a", "3-1", "1,,2", "0-99999"] {
            assert!(bad.parse::<CpuSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_respects_allowed_and_reserved() {
        let allowed = [0, 1, 2, 3];
        assert_eq!(
            resolve_cpus(&CpuSpec::All, &allowed, &[3]).unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(
            resolve_cpus(&CpuSpec::Count(2), &allowed, &[0]).unwrap(),
            vec![1, 2]
        );
        assert!(matches!(
            resolve_cpus(&CpuSpec::Count(4), &allowed, &[0]),
            Err(RuntimeError::TooManyCores {
                asked: 4,
                available: 3,
                reserved: 1
            })
        ));
        assert!(matches!(
            resolve_cpus(&CpuSpec::List(vec![1, 9]), &allowed, &[]),
            Err(RuntimeError::NotAllowed { .. })
        ));
        // A single-CPU machine shares the core rather than refusing to run.
        assert_eq!(resolve_cpus(&CpuSpec::All, &[0], &[0]).unwrap(), vec![0]);
    }

    #[test]
    fn executors_run_on_their_cpus() {
        let cpus: Vec<usize> = allowed_cpus().into_iter().take(2).collect();
        let out = run_pinned(&cpus, "test", |idx, cpu| async move { (idx, cpu) }).unwrap();
        let expect: Vec<(usize, usize)> = cpus.iter().copied().enumerate().collect();
        assert_eq!(out, expect);
    }
}
