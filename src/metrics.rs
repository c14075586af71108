//! `--metrics-addr`: Prometheus text format over HTTP while a run goes on.
//!
//! The coordinator's once-a-second progress feeds a small shared state (the
//! run's totals and a cumulative latency histogram); a scrape renders it.
//! Nothing here touches the shards: they only ever write their own atomic
//! counters. The exposition format is a few lines per metric, so it is
//! written here rather than through a metrics registry whose types would
//! duplicate the counters the engine already keeps.

use datastorm_engine::metrics::{latency_histogram, Counters};
use datastorm_shards::consume::{ConsumeCounts, ConsumeProgress};
use datastorm_shards::run::Progress;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Latency bucket bounds, microseconds (Prometheus `le`, in seconds).
const BUCKETS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Why the endpoint could not start. The messages carry their cause (no
/// variant has a `source`): each is printed whole, as one line.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot serve metrics on {addr}: not an IP address")]
    NotIp { addr: SocketAddr },
    /// The server thread could not be spawned.
    #[error("{0}")]
    Thread(std::io::Error),
}

#[derive(Default)]
struct State {
    totals: Counters,
    latency: Option<Histogram<u64>>,
    target_rate: Option<f64>,
    acked_rate: f64,
    elapsed_s: f64,
    warmup: bool,
    /// Consumers (`consume`, `produce --consumers`) by group, once they
    /// report.
    consume: BTreeMap<usize, ConsumeState>,
}

#[derive(Default)]
struct ConsumeState {
    totals: ConsumeCounts,
    e2e: Option<Histogram<u64>>,
    rate: f64,
}

/// A handle a group of consumers updates the endpoint through.
#[derive(Clone)]
pub struct ConsumeMetrics {
    state: Arc<Mutex<State>>,
    group: usize,
}

impl ConsumeMetrics {
    /// The handle of another group (their figures are added up).
    pub fn for_group(&self, group: usize) -> ConsumeMetrics {
        ConsumeMetrics {
            state: self.state.clone(),
            group,
        }
    }

    /// Takes in one second of the consumers' progress.
    pub fn update(&self, p: &ConsumeProgress) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let c = s.consume.entry(self.group).or_default();
        c.totals = p.totals;
        let _ = c.e2e.get_or_insert_with(latency_histogram).add(&p.e2e);
        c.rate = p.delta.records as f64 / p.interval.as_secs_f64().max(1e-9);
    }
}

/// The endpoint's shared state and its server thread.
pub struct MetricsServer {
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` and serves `/metrics` (any path, in fact).
    pub fn start(addr: SocketAddr, instance: u32) -> Result<Self, MetricsError> {
        let server =
            tiny_http::Server::http(addr).map_err(|error| MetricsError::Bind { addr, error })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or(MetricsError::NotIp { addr })?;
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State::default()));
        let thread = {
            let server = server.clone();
            let state = state.clone();
            std::thread::Builder::new()
                .name("datastorm-metrics".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        let body = {
                            let s = state.lock().unwrap_or_else(|e| e.into_inner());
                            render(&s, instance)
                        };
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        )
                        .expect("static header");
                        let _ = request
                            .respond(tiny_http::Response::from_string(body).with_header(header));
                    }
                })
                .map_err(MetricsError::Thread)?
        };
        Ok(Self {
            state,
            server,
            thread: Some(thread),
            addr: local,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes in one second of progress.
    pub fn update(&self, p: &Progress) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.totals = p.totals;
        let h = s.latency.get_or_insert_with(latency_histogram);
        let _ = h.add(&p.latency);
        s.target_rate = p.target_rate;
        s.acked_rate = p.delta.records_acked as f64 / p.interval.as_secs_f64().max(1e-9);
        s.elapsed_s = p.elapsed.as_secs_f64();
        s.warmup = p.warmup;
    }

    /// A handle for the consumers' figures.
    pub fn consumers(&self) -> ConsumeMetrics {
        ConsumeMetrics {
            state: self.state.clone(),
            group: 0,
        }
    }

    /// Stops serving.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The exposition of `s`; `instance` labels every sample.
fn render(s: &State, instance: u32) -> String {
    let mut out = String::with_capacity(4096);
    let l = format!("instance=\"{instance}\"");
    write_counters(&mut out, &l, &s.totals);
    write_gauges(&mut out, &l, s);
    if s.latency.is_some() || s.consume.is_empty() {
        write_latency(&mut out, &l, PRODUCE_LATENCY, s.latency.as_ref());
    }
    if !s.consume.is_empty() {
        write_consume(&mut out, &l, &added(s.consume.values()));
    }
    out
}

/// The producers' latency histogram: name and help.
const PRODUCE_LATENCY: (&str, &str) = (
    "datastorm_latency_seconds",
    "Record latency, intended send time (or creation) to acknowledgement.",
);

/// The groups' figures added up (lag too: unread records of every group).
fn added<'a>(groups: impl Iterator<Item = &'a ConsumeState>) -> ConsumeState {
    let mut sum = ConsumeState::default();
    for g in groups {
        sum.totals = sum.totals.plus(&g.totals);
        sum.rate += g.rate;
        if let Some(h) = &g.e2e {
            let _ = sum.e2e.get_or_insert_with(latency_histogram).add(h);
        }
    }
    sum
}

/// What the consumers read, their lag and end-to-end latency.
fn write_consume(out: &mut String, l: &str, c: &ConsumeState) {
    let t = &c.totals;
    let counters: [(&str, &str, u64); 5] = [
        ("consumed_records", "Records consumers read.", t.records),
        (
            "consumed_bytes",
            "Record batch bytes consumers read (as on the wire).",
            t.bytes,
        ),
        (
            "fetch_requests",
            "Fetch requests written.",
            t.fetch_requests,
        ),
        (
            "consume_errors",
            "Fetch error answers and connection failures.",
            t.errors,
        ),
        (
            "e2e_untimed_records",
            "Records read without this host's ds-t stamp.",
            t.records_untimed,
        ),
    ];
    for (name, help, v) in counters {
        write_counter(out, l, name, help, v);
    }
    for (name, help, v) in [
        (
            "consumer_lag_records",
            "Records between the consumers' positions and the high watermarks.",
            t.lag as f64,
        ),
        (
            "consumed_records_per_second",
            "Records read per second over the last second.",
            c.rate,
        ),
    ] {
        write_gauge(out, l, name, help, v);
    }
    write_latency(
        out,
        l,
        (
            "datastorm_e2e_latency_seconds",
            "End-to-end latency, intended send time to the fetch that read the record.",
        ),
        c.e2e.as_ref(),
    );
}

/// One counter, `datastorm_NAME_total`, with its help and type lines.
fn write_counter(out: &mut String, l: &str, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP datastorm_{name}_total {help}");
    let _ = writeln!(out, "# TYPE datastorm_{name}_total counter");
    let _ = writeln!(out, "datastorm_{name}_total{{{l}}} {v}");
}

/// One gauge, `datastorm_NAME`, with its help and type lines.
fn write_gauge(out: &mut String, l: &str, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP datastorm_{name} {help}");
    let _ = writeln!(out, "# TYPE datastorm_{name} gauge");
    let _ = writeln!(out, "datastorm_{name}{{{l}}} {v}");
}

/// The run's totals, as `_total` counters; `l` is the label set.
fn write_counters(out: &mut String, l: &str, t: &Counters) {
    let counters: [(&str, &str, u64); 11] = [
        (
            "records_sent",
            "Records written to sockets.",
            t.records_sent,
        ),
        (
            "records_acked",
            "Records the brokers acknowledged.",
            t.records_acked,
        ),
        (
            "records_failed",
            "Records answered with an error.",
            t.records_failed,
        ),
        (
            "payload_bytes_acked",
            "Key and value bytes acknowledged.",
            t.payload_bytes_acked,
        ),
        (
            "batch_bytes_sent",
            "Record batch bytes written (compressed).",
            t.batch_bytes_sent,
        ),
        (
            "requests_sent",
            "Produce requests written.",
            t.requests_sent,
        ),
        (
            "requests_acked",
            "Produce responses received.",
            t.requests_acked,
        ),
        (
            "errors",
            "Error responses and connection failures.",
            t.errors,
        ),
        ("retries", "Batches sent again.", t.retries),
        (
            "throttle_milliseconds",
            "Throttle time the brokers reported.",
            t.throttle_ms,
        ),
        (
            "batches_acked",
            "Record batches acknowledged.",
            t.batches_acked,
        ),
    ];
    for (name, help, v) in counters {
        write_counter(out, l, name, help, v);
    }
}

/// The run's rates, in-flight requests, elapsed time and warm-up flag.
fn write_gauges(out: &mut String, l: &str, s: &State) {
    let mut gauge = |name: &str, help: &str, v: f64| write_gauge(out, l, name, help, v);
    gauge(
        "requests_in_flight",
        "Produce requests awaiting a response.",
        s.totals.requests_in_flight as f64,
    );
    gauge(
        "acked_records_per_second",
        "Acknowledged records per second over the last second.",
        s.acked_rate,
    );
    gauge(
        "target_records_per_second",
        "This instance's target rate (0 when unpaced).",
        s.target_rate.unwrap_or(0.0),
    );
    gauge(
        "elapsed_seconds",
        "Time since the run started.",
        s.elapsed_s,
    );
    gauge(
        "warmup",
        "1 during the warm-up, 0 after.",
        if s.warmup { 1.0 } else { 0.0 },
    );
}

/// The cumulative latency histogram (empty before the first second).
fn write_latency(
    out: &mut String,
    l: &str,
    (name, help): (&str, &str),
    latency: Option<&Histogram<u64>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let empty = latency_histogram();
    let h = latency.unwrap_or(&empty);
    for b in BUCKETS_US {
        let n = if h.is_empty() {
            0
        } else {
            h.count_between(0, b)
        };
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {n}", b as f64 / 1e6);
    }
    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.len());
    let sum_s = if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / 1e6
    };
    let _ = writeln!(out, "{name}_sum{{{l}}} {sum_s}");
    let _ = writeln!(out, "{name}_count{{{l}}} {}", h.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_gauges_and_a_cumulative_histogram() {
        let mut s = State::default();
        s.totals.records_acked = 1234;
        let mut h = latency_histogram();
        h.record_n(800, 10).unwrap();
        h.record_n(40_000, 5).unwrap();
        s.latency = Some(h);
        let text = render(&s, 2);
        assert!(text.contains("datastorm_records_acked_total{instance=\"2\"} 1234"));
        assert!(text.contains("# TYPE datastorm_requests_in_flight gauge"));
        assert!(text.contains("datastorm_latency_seconds_bucket{instance=\"2\",le=\"0.001\"} 10"));
        assert!(text.contains("datastorm_latency_seconds_bucket{instance=\"2\",le=\"0.05\"} 15"));
        assert!(text.contains("datastorm_latency_seconds_bucket{instance=\"2\",le=\"+Inf\"} 15"));
        assert!(text.contains("datastorm_latency_seconds_count{instance=\"2\"} 15"));
        // Every sample line is `name{labels} number`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let v = line.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn consumers_add_their_counters_lag_and_end_to_end_histogram() {
        let mut e2e = latency_histogram();
        e2e.record_n(2_000, 7).unwrap();
        let mut s = State {
            consume: BTreeMap::from([(
                0,
                ConsumeState {
                    totals: ConsumeCounts {
                        records: 5_000,
                        lag: 42,
                        ..ConsumeCounts::default()
                    },
                    e2e: Some(e2e),
                    rate: 1_000.0,
                },
            )]),
            ..State::default()
        };
        let text = render(&s, 0);
        assert!(text.contains("datastorm_consumed_records_total{instance=\"0\"} 5000"));
        assert!(text.contains("datastorm_consumer_lag_records{instance=\"0\"} 42"));
        assert!(
            text.contains("datastorm_e2e_latency_seconds_bucket{instance=\"0\",le=\"0.0025\"} 7")
        );
        // A consume-only endpoint has no producer latency histogram...
        assert!(!text.contains("datastorm_latency_seconds"));
        // ...a produce run with consumers has both.
        s.latency = Some(latency_histogram());
        assert!(render(&s, 0).contains("datastorm_latency_seconds_count"));
    }
}
