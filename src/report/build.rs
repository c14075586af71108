//! A run's report, from what the run measured.

use super::*;
use datastorm_engine::metrics::Counters as EngineCounters;
use datastorm_engine::sink::SinkStats;
use datastorm_engine::sleeps::Sleeps;
use datastorm_shards::plan::RunPlan;
use datastorm_shards::run::RunOutcome;
use datastorm_shards::shard::ShardResult;
use std::time::SystemTime;

/// What a run's `--verify` found, per stream: the check, or why the topic
/// could not be read back.
pub type Verification = Vec<(
    String,
    Result<datastorm_shards::verify::VerifyReport, String>,
)>;

/// The report of a finished (or failed midway) run.
pub fn build(
    plan: &RunPlan,
    o: &RunOutcome,
    sink: Option<&SinkStats>,
    started_at: SystemTime,
) -> Result<RunReport, ReportError> {
    Ok(RunReport {
        schema: SCHEMA.into(),
        datastorm_version: env!("CARGO_PKG_VERSION").into(),
        started_at_unix_ms: Some(
            started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
        config: Config::from_plan(plan).map_err(ReportError::Plan)?,
        environment: Environment::probe(o),
        // The host's tuning (tuning/profiles settings and their live
        // values), so that two runs can be compared with their settings.
        tuning: Some(crate::tune::snapshot()),
        cluster: cluster(o),
        results: results(plan, o, sink.is_some(), started_at),
        shards: o.shards.iter().map(|r| shard(plan, r)).collect(),
        timeline: o.timeline.iter().map(timeline_point).collect(),
        sink: sink.map(Sink::from),
        merge: None,
        verify: None,
        consume: None,
        consume_timeline: Vec::new(),
    })
}

/// The report's `verify` section (None when nothing was verified).
pub fn verified(v: &Verification) -> Result<Option<Vec<Verified>>, ReportError> {
    let list = v
        .iter()
        .map(|(topic, r)| Verified::of(topic, r.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!list.is_empty()).then_some(list))
}

fn cluster(o: &RunOutcome) -> Cluster {
    let p = &o.prepared;
    Cluster {
        cluster_id: p.cluster_id.clone(),
        brokers: p.brokers.clone(),
        topics: p
            .topics
            .iter()
            .map(|t| ClusterTopic {
                stream: t.stream.clone(),
                topic: t.topic.clone(),
                partitions: t.partitions.clone(),
                created: t.created,
            })
            .collect(),
        api_versions: p.api_versions.clone(),
    }
}

/// One shard's figures.
fn shard(plan: &RunPlan, r: &ShardResult) -> ShardReport {
    ShardReport {
        instance: plan.instance,
        index: r.index,
        stream: r.stream,
        cpu: r.cpu,
        partitions: r.partitions.clone(),
        brokers: r.brokers.clone(),
        produce_version: r.produce_version,
        counters: Counters::from(&r.counters),
        elapsed_s: r.elapsed.as_secs_f64(),
        latency: percentiles(&r.latency),
        send_delay: Some(percentiles(&r.send_delay)),
        errors: r.errors.clone(),
        failure: r.failure.clone(),
        producer_id: r.producer_id,
        stopped_partitions: r
            .stopped_partitions
            .iter()
            .map(|(p, why)| (p.to_string(), why.clone()))
            .collect(),
        acked_sequences: Some(
            r.acked
                .iter()
                .map(|(p, ranges)| (p.to_string(), ranges.clone()))
                .collect(),
        ),
    }
}

/// The totals of some counters over `el` seconds.
fn totals(t: &EngineCounters, el: f64) -> Totals {
    Totals {
        records_acked: t.records_acked,
        records_sent: t.records_sent,
        records_failed: t.records_failed,
        records_per_s: t.records_acked as f64 / el,
        payload_bytes_acked: t.payload_bytes_acked,
        payload_mb_per_s: t.payload_bytes_acked as f64 / el / 1e6,
        errors: t.errors,
        retries: t.retries,
    }
}

/// The run's figures after the warm-up.
fn results(plan: &RunPlan, o: &RunOutcome, with_sink: bool, started_at: SystemTime) -> Results {
    let t = &o.totals;
    let el = o.elapsed.as_secs_f64().max(1e-9);
    Results {
        elapsed_s: el,
        warmup_s: o.warmup.as_secs_f64(),
        totals: totals(t, el),
        record_bytes_acked: t.record_bytes_acked,
        batch_bytes_sent: t.batch_bytes_sent,
        batches_acked: t.batches_acked,
        requests_sent: t.requests_sent,
        requests_acked: t.requests_acked,
        errors_by_kind: o.errors.clone(),
        throttle_ms: t.throttle_ms,
        latency: distribution(&o.latency),
        send_delay: Some(distribution(&o.send_delay)),
        rate_search: o.rate_search.as_ref().map(|r| RateSearch {
            found_per_s: r.found_per_s,
            converged: r.converged,
            steps: r
                .steps
                .iter()
                .map(|s| RateStep {
                    target_per_s: s.target_per_s,
                    acked_per_s: s.acked_per_s,
                    p99_us: s.p99_us,
                    sustained: s.sustained,
                })
                .collect(),
        }),
        process_cpu: process_cpu(started_at, with_sink, t.records_acked),
        compression: Some(CompressionResult {
            codec: plan.compression.name().into(),
            level: plan.compression.level(),
            ratio: (t.batch_bytes_sent > 0)
                .then(|| t.record_bytes_acked as f64 / t.batch_bytes_sent as f64),
        }),
        failure: o.failure.clone(),
        interrupted: o.interrupted,
        executor_sleeps: Some(executor_sleeps(plan, o)),
        streams: plan
            .streams
            .iter()
            .enumerate()
            .map(|(i, st)| StreamResults {
                name: st.name.clone(),
                topic: st.topic.clone(),
                totals: totals(&o.stream_totals(i), el),
                latency: distribution(&o.stream_latency(i)),
            })
            .collect(),
    }
}

fn sleep_counts(s: &Sleeps) -> SleepCounts {
    SleepCounts {
        sleeps: s.sleeps,
        ended_by_bound: s.ended_by_bound,
        lost_wakeups: s.lost_wakeups,
    }
}

/// How the shards' executors slept: totals, and per shard (its CPU, its
/// sleeps, those ended by the bound, and the lost wake-ups among them).
fn executor_sleeps(plan: &RunPlan, o: &RunOutcome) -> ExecutorSleeps {
    let per_shard: Vec<ShardSleeps> = o
        .executor_sleeps
        .iter()
        .enumerate()
        .map(|(i, s)| ShardSleeps {
            shard: i,
            instance: None,
            cpu: plan.cpus.get(i).copied(),
            counts: sleep_counts(s),
        })
        .collect();
    ExecutorSleeps {
        counts: per_shard
            .iter()
            .fold(SleepCounts::default(), |a, s| a.plus(&s.counts)),
        per_shard,
    }
}

/// CPU time this process used, which is the client's unless an embedded
/// sink broker ran in it too; per million acked records, the cost of the
/// codec (and everything else) in CPU seconds.
pub fn process_cpu(
    started_at: SystemTime,
    includes_sink: bool,
    records: u64,
) -> Option<ProcessCpu> {
    // SAFETY: getrusage writes into the zeroed struct we pass it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (user, system) = (secs(ru.ru_utime), secs(ru.ru_stime));
    let wall = started_at.elapsed().map_or(0.0, |d| d.as_secs_f64());
    Some(ProcessCpu {
        user_s: user,
        system_s: system,
        wall_s: wall,
        cores_busy: if wall > 0.0 {
            (user + system) / wall
        } else {
            0.0
        },
        cpu_s_per_million_records: (records > 0).then(|| (user + system) / (records as f64 / 1e6)),
        includes_embedded_sink: includes_sink,
    })
}

fn timeline_point(p: &datastorm_shards::run::TimelinePoint) -> TimelinePoint {
    TimelinePoint {
        elapsed_s: p.elapsed_s,
        phase: match p.phase {
            datastorm_shards::run::Phase::Warmup => Phase::Warmup,
            datastorm_shards::run::Phase::Measure => Phase::Measure,
        },
        target_per_s: p.target_per_s,
        records_acked: p.records_acked,
        records_per_s: p.records_per_s,
        payload_mb_per_s: p.payload_mb_per_s,
        requests_in_flight: p.requests_in_flight,
        errors: p.errors,
        retries: p.retries,
        p50_us: p.p50_us,
        p99_us: p.p99_us,
        max_us: p.max_us,
        send_delay_max_us: p.send_delay_max_us,
        instances: None,
    }
}

impl From<&EngineCounters> for Counters {
    fn from(c: &EngineCounters) -> Counters {
        Counters {
            records_sent: c.records_sent,
            records_acked: c.records_acked,
            records_failed: c.records_failed,
            payload_bytes_acked: c.payload_bytes_acked,
            record_bytes_acked: c.record_bytes_acked,
            batch_bytes_sent: c.batch_bytes_sent,
            batches_acked: c.batches_acked,
            requests_sent: c.requests_sent,
            requests_acked: c.requests_acked,
            requests_in_flight: c.requests_in_flight,
            errors: c.errors,
            retries: c.retries,
            throttle_ms: c.throttle_ms,
        }
    }
}

impl From<&SinkStats> for Sink {
    fn from(s: &SinkStats) -> Sink {
        Sink {
            connections: s.connections,
            requests: s.requests,
            produce_requests: s.produce_requests,
            batches: s.batches,
            records: s.records,
            batch_bytes: s.batch_bytes,
            record_bytes: s.record_bytes,
            batches_by_codec: s.batches_by_codec.clone(),
            crc_errors: s.crc_errors,
            decode_errors: s.decode_errors,
            malformed_batches: s.malformed_batches,
            unknown_partitions: s.unknown_partitions,
            topics: s
                .topics
                .iter()
                .map(|(name, t)| {
                    let topic = SinkTopic {
                        partitions: t.partitions,
                        batches: t.batches,
                        records: t.records,
                        batch_bytes: t.batch_bytes,
                    };
                    (name.clone(), topic)
                })
                .collect(),
        }
    }
}

impl Verified {
    /// A stream's verify result. The check only serializes, so it is
    /// taken through its JSON, as the plan is.
    fn of(
        topic: &str,
        r: Result<&datastorm_shards::verify::VerifyReport, &String>,
    ) -> Result<Verified, ReportError> {
        match r {
            Ok(v) => serde_json::to_value(v)
                .and_then(serde_json::from_value)
                .map(Verified::Checked)
                .map_err(|error| ReportError::Verify {
                    topic: topic.to_owned(),
                    error,
                }),
            Err(e) => Ok(Verified::Failed {
                topic: topic.to_owned(),
                error: e.clone(),
            }),
        }
    }
}
