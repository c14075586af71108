//! Reading `datastorm.run/1` reports: the layout before several streams,
//! histograms and the environment details, moved into today's places so
//! that the report types read it. What version 1 lacks stays empty; the
//! report keeps its `schema`, so readers can say what is missing.

use serde_json::{json, Map, Value};

/// The config fields that described the one stream of a version 1 run.
const STREAM_FIELDS: &[&str] = &[
    "topic",
    "payload",
    "keys",
    "headers",
    "sequence_header",
    "create_topic",
];

/// A version 1 report in today's layout.
pub fn upgrade(mut doc: Value) -> Value {
    let topic = doc["config"]["topic"].clone();
    if let Some(c) = doc["config"].as_object_mut() {
        upgrade_config(c);
    }
    if let Some(cluster) = doc["cluster"].as_object_mut() {
        if !cluster.contains_key("topics") {
            let t = json!({
                "stream": topic,
                "topic": topic,
                "partitions": cluster.remove("partitions").unwrap_or(json!([])),
                "created": cluster.remove("topic_created").unwrap_or(json!(false)),
            });
            cluster.insert("topics".into(), json!([t]));
        }
        cluster.entry("api_versions").or_insert(json!({}));
    }
    if let Some(env) = doc["environment"].as_object_mut() {
        if let Some(v) = env.remove("produce_api_versions") {
            env.entry("produce_api_versions_used").or_insert(v);
        }
    }
    for shard in doc["shards"].as_array_mut().into_iter().flatten() {
        if let Some(s) = shard.as_object_mut() {
            s.entry("stream").or_insert(json!(0));
        }
    }
    for point in doc["timeline"].as_array_mut().into_iter().flatten() {
        if let Some(p) = point.as_object_mut() {
            p.entry("phase").or_insert(json!("measure"));
            p.entry("retries").or_insert(json!(0));
            p.entry("send_delay_max_us").or_insert(json!(0));
        }
    }
    doc
}

/// One stream from the top-level stream fields, and the settings version 1
/// did not have at their defaults of the time.
fn upgrade_config(c: &mut Map<String, Value>) {
    if !c.contains_key("streams") {
        let mut stream = Map::new();
        for k in STREAM_FIELDS {
            if let Some(v) = c.remove(*k) {
                stream.insert((*k).into(), v);
            }
        }
        // The earliest reports wrote the key kind as a plain word.
        if let Some(Value::String(kind)) = stream.get("keys") {
            let keys = json!({ "kind": kind });
            stream.insert("keys".into(), keys);
        }
        let name = stream.get("topic").cloned().unwrap_or(json!(""));
        stream.insert("name".into(), name);
        stream.insert("share".into(), json!(1.0));
        c.insert("streams".into(), json!([stream]));
    }
    if c.get("rate").is_none_or(Value::is_null) {
        c.insert("rate".into(), json!({"kind": "unlimited"}));
    }
    c.entry("warmup").or_insert(json!({"secs": 0, "nanos": 0}));
    c.entry("instance").or_insert(json!(0));
    c.entry("instances").or_insert(json!(1));
}

#[cfg(test)]
mod tests {
    use crate::report::config::{Keys, Payload};
    use crate::report::{parse, SCHEMA_V1};
    use std::path::Path;

    /// A version 1 report as DataStorm wrote it (its timeline and
    /// figures trimmed).
    const V1: &str = r#"{
      "schema": "datastorm.run/1", "datastorm_version": "0.1.0", "started_at_unix_ms": 1795556815109,
      "cluster": {"brokers": [[0, "127.0.0.1:29092"]], "cluster_id": "datastorm-sink",
                  "partitions": [0, 1], "topic_created": false},
      "config": {"acks": "Leader", "batch_size": 65536, "bootstrap": ["127.0.0.1:29092"],
        "client_id": "datastorm", "compression": "lz4",
        "connect_timeout": {"nanos": 0, "secs": 10}, "cpus": [0], "create_topic": null,
        "drain_timeout": {"nanos": 0, "secs": 30}, "headers": [], "keys": {"kind": "none"},
        "linger": {"nanos": 5000000, "secs": 0}, "max_in_flight": 5,
        "payload": {"Fixed": {"pool": 1000, "record_size": 100}}, "rate": null,
        "request_timeout": {"nanos": 0, "secs": 30}, "retries": 10,
        "retry_backoff": {"nanos": 100000000, "secs": 0}, "seed": 1, "sequence_header": false,
        "stop": {"count": null, "duration": {"nanos": 0, "secs": 5}}, "topic": "datastorm"},
      "environment": {"cpu_model": "AMD EPYC", "cpus_used": [0], "crates": {"datastorm": "0.1.0"},
        "hostname": "vm", "kernel": "6.18.44", "logical_cpus": 2, "os": "Linux",
        "produce_api_versions": [12]},
      "results": {"batch_bytes_sent": 3145404103, "batches_acked": 48538, "elapsed_s": 5.0,
        "errors": 0, "failure": null, "interrupted": false,
        "latency": {"count": 28879616, "max": 6615, "mean": 1264.15, "min": 213, "p50": 1290,
          "p90": 1671, "p99": 1822, "p99_9": 2589, "p99_99": 6127, "unit": "microseconds"},
        "payload_bytes_acked": 2887961600, "payload_mb_per_s": 577.55,
        "record_bytes_acked": 3173651328, "records_acked": 28879616, "records_failed": 0,
        "records_per_s": 5775567.5, "records_sent": 28879616, "requests_acked": 22961,
        "throttle_ms": 0},
      "shards": [{"brokers": ["127.0.0.1:29092"], "counters": {"records_acked": 28879616},
        "cpu": 0, "elapsed_s": 5.0, "errors": {}, "failure": null, "index": 0,
        "latency": {"count": 28879616, "max": 6615, "mean": 1264.15, "min": 213, "p50": 1290,
          "p90": 1671, "p99": 1822, "p99_9": 2589, "p99_99": 6127, "unit": "microseconds"},
        "partitions": [0, 1], "produce_version": 12}],
      "sink": null,
      "timeline": [{"elapsed_s": 1.0, "errors": 0, "max_us": 3413, "p50_us": 1284, "p99_us": 1831,
        "payload_mb_per_s": 564.49, "records_acked": 5645360, "records_per_s": 5644972.1,
        "requests_in_flight": 2}]
    }"#;

    #[test]
    fn version_1_reads_into_todays_types() {
        let r = parse(Path::new("v1.json"), V1).expect("a v1 report reads");
        assert_eq!(r.schema, SCHEMA_V1);
        assert_eq!(r.config.streams.len(), 1);
        let st = &r.config.streams[0];
        assert_eq!(
            (st.name.as_str(), st.topic.as_str()),
            ("datastorm", "datastorm")
        );
        assert!(matches!(
            st.payload,
            Payload::Fixed {
                record_size: 100,
                ..
            }
        ));
        assert_eq!(st.keys, Keys::None);
        assert_eq!(r.cluster.topics[0].partitions, vec![0, 1]);
        assert_eq!(r.environment.produce_api_versions_used.len(), 1);
        assert_eq!(r.results.totals.records_acked, 28_879_616);
        assert!(r.results.latency.histogram.is_none());
        assert_eq!(r.timeline.len(), 1);
    }

    #[test]
    fn unknown_fields_are_ignored_and_other_versions_refused() {
        let extra = V1.replacen('{', r#"{"added_later": {"x": 1},"#, 1);
        let extra = extra.replacen(r#""results": {"#, r#""results": {"new_figure": 5,"#, 1);
        assert!(parse(Path::new("a.json"), &extra).is_ok());
        let future = V1.replace(SCHEMA_V1, "datastorm.run/9");
        let e = parse(Path::new("f.json"), &future).unwrap_err().to_string();
        assert!(
            e.contains("'datastorm.run/9'") && e.contains(crate::report::SCHEMA),
            "{e}"
        );
    }
}
