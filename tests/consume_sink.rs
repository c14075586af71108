//! Consumers against the DataStorm sink (no Kafka needed): produce with
//! consumers on the embedded sink, end-to-end latency that follows a delay
//! the sink adds, the consumer's ceiling run on synthetic records.

mod common;

use common::*;

/// `produce --consumers 1` against `sink` (None: the embedded one); the
/// report's consume section.
fn produce_with_a_consumer(sink: Option<&str>, name: &str) -> (u64, serde_json::Value) {
    let report = scratch(name).join("report.json");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--rate",
        "2k",
        "--duration",
        "3s",
        "--cores",
        "1",
    ])
    .args(["--consumers", "1", "-q", "--report"])
    .arg(&report);
    if let Some(addr) = sink {
        cmd.args(["--bootstrap", addr]);
    }
    run_ok(cmd, "produce --consumers 1");
    let r = read_json(&report);
    let acked = r["results"]["records_acked"].as_u64().expect("acked");
    (acked, r["consume"].clone())
}

#[test]
fn the_embedded_sink_serves_a_runs_consumers_every_record() {
    let (acked, c) = produce_with_a_consumer(None, "consume-embedded");
    assert!(acked >= 5_000, "{acked} acked in 3 s at 2k/s");
    assert_eq!(c["records"].as_u64(), Some(acked), "{c:#}");
    assert_eq!(c["e2e_latency"]["count"].as_u64(), Some(acked), "{c:#}");
}

#[test]
fn end_to_end_latency_grows_by_the_delay_the_sink_adds() {
    // The sink makes records visible when it acknowledges them: a 40 ms
    // ack delay is 40 ms more from intended send time to the fetch.
    let plain = SinkProcess::start(&[]);
    let delayed = SinkProcess::start(&["--delay", "40ms"]);
    let (_, fast) = produce_with_a_consumer(Some(&plain.addr), "e2e-plain");
    let (_, slow) = produce_with_a_consumer(Some(&delayed.addr), "e2e-delayed");
    let p50 = |c: &serde_json::Value| c["e2e_latency"]["p50"].as_u64().expect("p50");
    // Medians: a host pause moves a few records, not half of them. The
    // delay is a floor under every delayed record; the undelayed median is
    // far below it on any host that runs this suite.
    assert!(p50(&slow) >= 40_000, "delayed p50 {} us", p50(&slow));
    assert!(
        p50(&slow) >= p50(&fast) + 20_000,
        "p50 {} us with a 40 ms delay, {} us without",
        p50(&slow),
        p50(&fast)
    );
}

#[test]
fn consume_reads_synthetic_records_without_a_broker() {
    let report = scratch("consume-synthetic").join("report.json");
    let mut cmd = datastorm();
    cmd.args(["consume", "--duration", "2s", "-q", "--report"])
        .arg(&report);
    let stdout = run_ok(cmd, "consume");
    assert!(stdout.contains("embedded sink"), "{stdout}");
    let r = read_json(&report);
    assert_eq!(r["schema"], "datastorm.consume/1");
    let c = &r["consume"];
    // Synthetic records: read and walked, never timed.
    assert!(c["records"].as_u64().expect("records") > 10_000, "{c:#}");
    assert_eq!(c["records_timed"].as_u64(), Some(0));
    assert!(r["process_cpu"]["includes_embedded_sink"]
        .as_bool()
        .expect("flag"));
}
