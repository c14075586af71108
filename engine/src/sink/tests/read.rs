//! The read side: Fetch (kept and synthetic data, limits, long poll) and
//! ListOffsets, through the same blocking client as the other sink tests.
//! Fetched batches are decoded by kafka-protocol's `RecordBatchDecoder`
//! (which checks each batch's CRC-32C): a reader that is not the sink's.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceResponse,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{config, produce_request, start, topic_name, Client, IO_TIMEOUT};
use crate::sink::handlers::topic_uuid;
use crate::sink::{SinkConfig, SinkHandle, SyntheticConfig, SyntheticTopics};
use crate::wire::codes as code;

/// A batch of `n` records whose values are `val(first + i)`, all stamped
/// `ts` (same-width values, so batches of `n` records are the same size).
fn batch(first: usize, n: usize, ts: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: ts,
            key: None,
            value: Some(Bytes::from(val(first + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode batch");
    buf.freeze()
}

/// Produces `records` to `topic`/`partition`; returns (base offset, log start).
fn produce(c: &mut Client, topic: &str, partition: i32, records: Bytes) -> (i64, i64) {
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request(topic, partition, records, 1),
    );
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, code::NONE, "produce to {topic}/{partition}");
    (p.base_offset, p.log_start_offset)
}

/// Registers `topic` (Metadata auto-creation) and returns its id.
fn topic_id(c: &mut Client, topic: &str) -> Id {
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
    ]));
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req);
    assert_eq!(resp.topics[0].error_code, code::NONE);
    assert!(!resp.topics[0].topic_id.is_nil());
    *resp.topics[0].topic_id.as_bytes()
}

/// A topic id's bytes.
type Id = [u8; 16];

fn fetch_request(topic: &str, id: Id, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_topic_id(topic_uuid(&id).expect("uuid"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])])
}

/// The only partition of a Fetch response.
fn only(resp: &FetchResponse) -> &PartitionData {
    assert_eq!(resp.error_code, code::NONE);
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].partitions.len(), 1);
    &resp.responses[0].partitions[0]
}

/// Every record of a partition's batches, decoded (CRCs checked).
fn decode(p: &PartitionData) -> Vec<Record> {
    let mut bytes = p.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes)
        .expect("fetched batches decode")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

fn val(n: usize) -> String {
    format!("value-{n:05}")
}

fn value(r: &Record) -> String {
    String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).expect("utf-8 value")
}

#[test]
fn produced_records_are_fetched_back_with_their_offsets() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "kept");
    let codecs = [Compression::None, Compression::Lz4, Compression::Zstd];
    for (i, codec) in codecs.into_iter().enumerate() {
        let (base, start) = produce(&mut c, "kept", 1, batch(i * 5, 5, 1_000, codec));
        assert_eq!((base, start), (i as i64 * 5, 0));
    }
    // By name (v12) and by topic id (v13+), from the start.
    for version in [4, 12, 13, 18] {
        let resp: FetchResponse = c.call(ApiKey::Fetch, version, &fetch_request("kept", id, 1, 0));
        let p = only(&resp);
        assert_eq!(p.error_code, code::NONE, "v{version}");
        assert_eq!((p.high_watermark, p.last_stable_offset), (15, 15));
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let records = decode(p);
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..15).collect::<Vec<_>>(), "v{version}");
        let values: Vec<String> = records.iter().map(value).collect();
        let expected: Vec<String> = (0..15).map(val).collect();
        assert_eq!(values, expected, "v{version}");
    }
    // From the middle: whole batches from the one holding the offset.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("kept", id, 1, 7));
    let first = decode(only(&resp))[0].offset;
    assert_eq!(first, 5);
    // At the high watermark: nothing, no error.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("kept", id, 1, 15));
    assert_eq!(only(&resp).error_code, code::NONE);
    assert!(decode(only(&resp)).is_empty());
    let stats = sink.stop();
    assert_eq!(stats.fetch_requests, 6);
    assert_eq!(stats.fetch_records, 4 * 15 + 10);
    assert_eq!(stats.topics["kept"].fetch_records, 4 * 15 + 10);
    assert!(stats.fetch_bytes > 0);
}

#[test]
fn batches_of_one_produce_request_get_consecutive_offsets() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "multi");
    produce(&mut c, "multi", 0, batch(0, 2, 0, Compression::None));
    let mut two = BytesMut::new();
    two.extend_from_slice(&batch(2, 3, 0, Compression::Lz4));
    two.extend_from_slice(&batch(5, 4, 0, Compression::None));
    assert_eq!(produce(&mut c, "multi", 0, two.freeze()), (2, 0));
    // From inside the first batch of the request: both of its batches (one
    // range of its buffer), offsets 2..9.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("multi", id, 0, 3));
    let records = decode(only(&resp));
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (2..9).collect::<Vec<_>>());
    assert_eq!(value(&records[6]), val(8));
    sink.stop();
}

#[test]
fn byte_limits_cut_at_whole_batches_but_always_return_one() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "limits");
    for i in 0..4 {
        produce(&mut c, "limits", 0, batch(i * 10, 10, 0, Compression::None));
    }
    let mut req = fetch_request("limits", id, 0, 0);
    // Smaller than one batch: one batch all the same (as Kafka).
    req.topics[0].partitions[0].partition_max_bytes = 10;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    assert_eq!(decode(only(&resp)).len(), 10);
    // Room for two batches and a bit.
    let one = only(&resp).records.as_ref().map_or(0, |r| r.len()) as i32;
    req.topics[0].partitions[0].partition_max_bytes = 2 * one + one / 2;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    assert_eq!(decode(only(&resp)).len(), 20);
    // The request's max_bytes bounds it too.
    req.topics[0].partitions[0].partition_max_bytes = 1 << 20;
    req.max_bytes = 3 * one;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    assert_eq!(decode(only(&resp)).len(), 30);
    sink.stop();
}

#[test]
fn synthetic_topics_serve_valid_batches_with_growing_offsets() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "never-produced");
    let mut offset = 0i64;
    for round in 0..3 {
        let resp: FetchResponse = c.call(ApiKey::Fetch, 13, &fetch_request("", id, 3, offset));
        let p = only(&resp);
        assert_eq!(p.error_code, code::NONE);
        let records = decode(p);
        assert!(
            records.len() >= 500,
            "round {round}: {} records",
            records.len()
        );
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, offset + i as i64, "round {round}");
            assert_eq!(r.value.as_ref().map(|v| v.len()), Some(100));
        }
        offset += records.len() as i64;
        assert!(p.high_watermark > offset, "the high watermark stays ahead");
    }
    // A fetch inside a batch gets the whole batch.
    let resp: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &fetch_request("never-produced", id, 0, 750),
    );
    let records = decode(only(&resp));
    assert_eq!(records[0].offset, 500);
    let stats = sink.stop();
    assert_eq!(stats.fetch_records as i64, offset + records.len() as i64);
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "range");
    produce(&mut c, "range", 0, batch(0, 5, 0, Compression::None));
    for offset in [6, 1_000, -1] {
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("range", id, 0, offset));
        let p = only(&resp);
        assert_eq!(p.error_code, code::OFFSET_OUT_OF_RANGE, "offset {offset}");
        assert_eq!((p.high_watermark, p.log_start_offset), (5, 0));
    }
    // Unknown partition and unknown topic (by name and by id).
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("range", id, 99, 0));
    assert_eq!(only(&resp).error_code, code::UNKNOWN_TOPIC_OR_PARTITION);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("nope", id, 0, 0));
    assert_eq!(only(&resp).error_code, code::UNKNOWN_TOPIC_OR_PARTITION);
    let unknown = [7; 16];
    let resp: FetchResponse = c.call(ApiKey::Fetch, 13, &fetch_request("", unknown, 0, 0));
    assert_eq!(only(&resp).error_code, code::UNKNOWN_TOPIC_ID);
    // A session the sink never made.
    let resp: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &fetch_request("range", id, 0, 0)
            .with_session_id(42)
            .with_session_epoch(1),
    );
    assert_eq!(resp.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    sink.stop();
}

#[test]
fn the_keep_bound_drops_the_oldest_batches() {
    let one = batch(0, 10, 0, Compression::None).len();
    let sink = SinkHandle::start(SinkConfig {
        keep_per_partition: 3 * one,
        ..config()
    })
    .expect("sink starts");
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "bounded");
    let mut last = (0, 0);
    for i in 0..5 {
        last = produce(
            &mut c,
            "bounded",
            0,
            batch(i * 10, 10, 0, Compression::None),
        );
    }
    assert_eq!(last, (40, 20), "three batches kept: offsets 20..50");
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("bounded", id, 0, 0));
    assert_eq!(only(&resp).error_code, code::OFFSET_OUT_OF_RANGE);
    assert_eq!(only(&resp).log_start_offset, 20);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("bounded", id, 0, 20));
    let values: Vec<String> = decode(only(&resp)).iter().map(value).collect();
    assert_eq!(values.len(), 30);
    assert_eq!(values[0], val(20));
    assert_eq!(list_offset(&mut c, "bounded", -2), (-1, 20));
    sink.stop();
}

/// (timestamp, offset) ListOffsets v7 answers for `topic`/0 and `query`.
fn list_offset(c: &mut Client, topic: &str, query: i64) -> (i64, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(query)])]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, code::NONE, "{topic} query {query}");
    (p.timestamp, p.offset)
}

#[test]
fn list_offsets_answers_earliest_latest_and_by_timestamp() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    topic_id(&mut c, "times");
    for (i, ts) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        produce(&mut c, "times", 0, batch(i * 4, 4, ts, Compression::Lz4));
    }
    assert_eq!(list_offset(&mut c, "times", -2), (-1, 0));
    assert_eq!(list_offset(&mut c, "times", -1), (-1, 12));
    assert_eq!(list_offset(&mut c, "times", 1_500), (2_000, 4));
    assert_eq!(list_offset(&mut c, "times", 3_000), (3_000, 8));
    assert_eq!(list_offset(&mut c, "times", 9_000), (-1, -1));
    assert_eq!(list_offset(&mut c, "times", -3), (3_000, 11));
    // A synthetic topic reads from 0 whatever is asked.
    topic_id(&mut c, "synthetic");
    assert_eq!(list_offset(&mut c, "synthetic", -1).1, 0);
    // Every version decodes.
    for version in 1..=10 {
        let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("times"))
            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
        let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, version, &req);
        assert_eq!(resp.topics[0].partitions[0].offset, 12, "v{version}");
    }
    assert_eq!(sink.stop().list_offsets_requests, 17);
}

#[test]
fn a_long_poll_waits_about_max_wait_then_answers_empty() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "idle");
    produce(&mut c, "idle", 0, batch(0, 3, 0, Compression::None));
    let req = fetch_request("idle", id, 0, 3).with_max_wait_ms(300);
    let started = Instant::now();
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    let waited = started.elapsed();
    assert!(decode(only(&resp)).is_empty());
    // Never early; late only by what a busy host adds.
    assert!(waited >= Duration::from_millis(290), "waited {waited:?}");
    assert!(waited < IO_TIMEOUT, "waited {waited:?}");
    // Requests behind it are answered after it, in order.
    let c1 = c.send(ApiKey::Fetch, 12, &req.clone().with_max_wait_ms(100));
    let c2 = c.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(c.recv::<FetchResponse>(ApiKey::Fetch, 12).0, c1);
    assert_eq!(c.recv::<MetadataResponse>(ApiKey::Metadata, 12).0, c2);
    sink.stop();
}

#[test]
fn a_produce_wakes_a_long_poll() {
    let sink = start();
    let mut consumer = Client::connect(sink.local_addr());
    let mut producer = Client::connect(sink.local_addr());
    let id = topic_id(&mut producer, "wake");
    produce(&mut producer, "wake", 0, batch(0, 2, 0, Compression::None));
    let started = Instant::now();
    let correlation = consumer.send(
        ApiKey::Fetch,
        12,
        &fetch_request("wake", id, 0, 2).with_max_wait_ms(4_000),
    );
    std::thread::sleep(Duration::from_millis(200));
    produce(&mut producer, "wake", 0, batch(2, 3, 0, Compression::None));
    let (got, resp) = consumer.recv::<FetchResponse>(ApiKey::Fetch, 12);
    let waited = started.elapsed();
    assert_eq!(got, correlation);
    let values: Vec<String> = decode(only(&resp)).iter().map(value).collect();
    assert_eq!(values, [val(2), val(3), val(4)]);
    assert!(
        waited >= Duration::from_millis(150),
        "answered before the produce: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(3_000),
        "not woken: {waited:?}"
    );
    sink.stop();
}

#[test]
fn stop_is_prompt_during_a_long_poll() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let id = topic_id(&mut c, "stopping");
    produce(&mut c, "stopping", 0, batch(0, 1, 0, Compression::None));
    c.send(
        ApiKey::Fetch,
        12,
        &fetch_request("stopping", id, 0, 1).with_max_wait_ms(30_000),
    );
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    sink.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn only_named_topics_are_synthetic_when_asked() {
    let sink = SinkHandle::start(SinkConfig {
        synthetic: SyntheticConfig {
            topics: SyntheticTopics::Only(vec!["fake".into()]),
            record_size: 10,
            records_per_batch: 7,
            compression: crate::batch::Compression::None,
        },
        ..config()
    })
    .expect("sink starts");
    let mut c = Client::connect(sink.local_addr());
    let fake = topic_id(&mut c, "fake");
    let real = topic_id(&mut c, "real");
    // Produced to but not kept: still synthetic.
    produce(&mut c, "fake", 0, batch(0, 3, 0, Compression::None));
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("fake", fake, 0, 0));
    let records = decode(only(&resp));
    assert_eq!(records.len() % 7, 0);
    assert_eq!(records[0].value.as_ref().map(|v| v.len()), Some(10));
    // Never produced to, not named: an empty kept log.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request("real", real, 0, 0));
    assert_eq!(only(&resp).error_code, code::NONE);
    assert!(decode(only(&resp)).is_empty());
    sink.stop();
}

/// Connections each executor has accepted so far.
fn per_executor(sink: &SinkHandle) -> Vec<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    sink.shared
        .counters
        .iter()
        .map(|c| c.connections.load(Relaxed))
        .collect()
}

/// A produce on one executor wakes a fetch waiting on another (glommio
/// queues the waker to the other executor's thread).
#[test]
fn a_produce_on_another_executor_wakes_a_long_poll() {
    let sink = SinkHandle::start(SinkConfig {
        cpus: vec![0, 1],
        ..config()
    })
    .expect("2-cpu sink starts");
    let mut consumer = Client::connect(sink.local_addr());
    let id = topic_id(&mut consumer, "across");
    let counts = per_executor(&sink);
    let consumer_exec = counts.iter().position(|&n| n == 1).expect("one executor");
    // Connect until a connection lands on the other executor (the kernel
    // spreads them by a hash of the address pair).
    let mut producer = None;
    for _ in 0..64 {
        let mut c = Client::connect(sink.local_addr());
        let _: MetadataResponse = c.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        let now = per_executor(&sink);
        if now[1 - consumer_exec] > counts[1 - consumer_exec] {
            producer = Some(c);
            break;
        }
    }
    let mut producer = producer.expect("a connection on the other executor");
    // Produced to: a kept topic (not synthetic), offset 1 is its end.
    produce(
        &mut consumer,
        "across",
        0,
        batch(0, 1, 0, Compression::None),
    );
    let started = Instant::now();
    consumer.send(
        ApiKey::Fetch,
        12,
        &fetch_request("across", id, 0, 1).with_max_wait_ms(4_000),
    );
    std::thread::sleep(Duration::from_millis(200));
    produce(
        &mut producer,
        "across",
        0,
        batch(0, 4, 0, Compression::None),
    );
    let (_, resp) = consumer.recv::<FetchResponse>(ApiKey::Fetch, 12);
    let waited = started.elapsed();
    assert_eq!(decode(only(&resp)).len(), 4);
    assert!(
        waited < Duration::from_millis(3_000),
        "not woken: {waited:?}"
    );
    sink.stop();
}

/// A Fetch naming `partitions` ((partition, offset)) of `topic`, in session
/// `id` at `epoch`, forgetting `forget`.
fn session_fetch(
    topic: &str,
    partitions: &[(i32, i64)],
    id: i32,
    epoch: i32,
    forget: &[i32],
) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    let mut req = fetch_request(topic, [0; 16], 0, 0)
        .with_session_id(id)
        .with_session_epoch(epoch);
    req.topics[0].partitions = partitions
        .iter()
        .map(|&(p, offset)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    if partitions.is_empty() {
        req.topics.clear();
    }
    if !forget.is_empty() {
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(forget.to_vec())];
    }
    req
}

/// (partition, records) of every partition in a response.
fn answered(resp: &FetchResponse) -> Vec<(i32, usize)> {
    assert_eq!(resp.error_code, code::NONE);
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, decode(p).len()))
        .collect()
}

#[test]
fn fetch_sessions_answer_only_what_changed() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    topic_id(&mut c, "sess");
    produce(&mut c, "sess", 0, batch(0, 5, 0, Compression::None));
    // Epoch 0 opens a session: a full answer.
    let resp: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &session_fetch("sess", &[(0, 0), (1, 0)], 0, 0, &[]),
    );
    let id = resp.session_id;
    assert!(id > 0, "a session id");
    assert_eq!(answered(&resp), [(0, 5), (1, 0)]);
    // Partition 0 moves on; nothing changed anywhere: an empty answer.
    let resp: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &session_fetch("sess", &[(0, 5)], id, 1, &[]),
    );
    assert_eq!((resp.session_id, answered(&resp)), (id, vec![]));
    // New records on partition 1: only it is answered.
    produce(&mut c, "sess", 1, batch(0, 3, 0, Compression::None));
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &session_fetch("sess", &[], id, 2, &[]));
    assert_eq!(answered(&resp), [(1, 3)]);
    // Forgotten partitions are not fetched any more.
    let resp: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &session_fetch("sess", &[(1, 3)], id, 3, &[1]),
    );
    assert_eq!(answered(&resp), []);
    produce(&mut c, "sess", 1, batch(3, 2, 0, Compression::None));
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &session_fetch("sess", &[], id, 4, &[]));
    assert_eq!(answered(&resp), []);
    // A wrong epoch; then epoch -1 closes the session.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &session_fetch("sess", &[], id, 9, &[]));
    assert_eq!(resp.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let resp: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &session_fetch("sess", &[(1, 3)], id, -1, &[]),
    );
    assert_eq!((resp.session_id, answered(&resp)), (0, vec![(1, 2)]));
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &session_fetch("sess", &[], id, 5, &[]));
    assert_eq!(resp.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    sink.stop();
}

/// The structural guard accepts every valid Fetch and ListOffsets body,
/// refuses an array length the body cannot hold, and never panics on a
/// truncated one.
#[test]
fn fetch_and_list_offsets_guards_follow_every_version() {
    use crate::sink::guard;
    use kafka_protocol::protocol::Encodable;
    let fetch = session_fetch("guarded", &[(0, 1), (1, 2)], 0, -1, &[3]).with_rack_id("r".into());
    for version in 4..=18i16 {
        let mut body = BytesMut::new();
        let mut req = fetch.clone();
        if version < 7 {
            req.forgotten_topics_data.clear();
        }
        if version < 11 {
            req.rack_id = Default::default();
        }
        req.encode(&mut body, version).expect("encode");
        assert_eq!(guard::fetch(&body, version), Ok(()), "Fetch v{version}");
        for cut in 0..body.len() {
            let _ = guard::fetch(&body[..cut], version);
        }
    }
    let list = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name("guarded"))
        .with_partitions(vec![ListOffsetsPartition::default(); 2])]);
    for version in 1..=10i16 {
        let mut body = BytesMut::new();
        list.encode(&mut body, version).expect("encode");
        assert_eq!(
            guard::list_offsets(&body, version),
            Ok(()),
            "ListOffsets v{version}"
        );
        for cut in 0..body.len() {
            let _ = guard::list_offsets(&body[..cut], version);
        }
    }
    // Fetch v4 claiming 2^31-1 topics in a 30-byte body.
    let mut huge = vec![0u8; 17];
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    huge.extend_from_slice(&[0; 9]);
    assert!(guard::fetch(&huge, 4).is_err());
}

/// With held Produce responses (ack delay), a long poll still waits, is
/// woken by a produce, and responses stay in request order.
#[test]
fn a_long_poll_on_a_paced_sink() {
    let sink = SinkHandle::start(SinkConfig {
        ack_delay: Duration::from_millis(50),
        ..config()
    })
    .expect("sink starts");
    let mut consumer = Client::connect(sink.local_addr());
    let mut producer = Client::connect(sink.local_addr());
    let id = topic_id(&mut producer, "paced");
    produce(&mut producer, "paced", 0, batch(0, 1, 0, Compression::None));
    // A held Produce response, then a fetch behind it on one connection.
    let p = consumer.send(
        ApiKey::Produce,
        9,
        &produce_request("paced", 0, batch(1, 1, 0, Compression::None), 1),
    );
    let f = consumer.send(
        ApiKey::Fetch,
        12,
        &fetch_request("paced", id, 0, 2).with_max_wait_ms(4_000),
    );
    let started = Instant::now();
    assert_eq!(consumer.recv::<ProduceResponse>(ApiKey::Produce, 9).0, p);
    std::thread::sleep(Duration::from_millis(200));
    produce(&mut producer, "paced", 0, batch(2, 2, 0, Compression::None));
    let (got, resp) = consumer.recv::<FetchResponse>(ApiKey::Fetch, 12);
    assert_eq!(got, f);
    assert_eq!(decode(only(&resp)).len(), 2);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(3_000),
        "{waited:?}"
    );
    sink.stop();
}

/// With an ack delay, consumers see records when their Produce is
/// acknowledged, not before (as with acks=all on a broker): the high
/// watermark stays put meanwhile, and a long poll is answered then.
#[test]
fn records_become_visible_when_their_produce_is_acknowledged() {
    let sink = SinkHandle::start(SinkConfig {
        ack_delay: Duration::from_millis(300),
        ..config()
    })
    .expect("sink starts");
    let mut consumer = Client::connect(sink.local_addr());
    let mut producer = Client::connect(sink.local_addr());
    let id = topic_id(&mut consumer, "held");
    let started = Instant::now();
    let p = producer.send(
        ApiKey::Produce,
        9,
        &produce_request("held", 0, batch(0, 3, 0, Compression::None), 1),
    );
    // Wait until the sink has the batch (counted), then look: not visible.
    super::wait_for(&sink, "the batch", |s| s.records == 3);
    let resp: FetchResponse = consumer.call(ApiKey::Fetch, 12, &fetch_request("held", id, 0, 0));
    if started.elapsed() < Duration::from_millis(250) {
        assert_eq!(only(&resp).high_watermark, 0);
        assert!(decode(only(&resp)).is_empty());
        assert_eq!(list_offset(&mut consumer, "held", -1), (-1, 0));
    }
    let resp: FetchResponse = consumer.call(
        ApiKey::Fetch,
        12,
        &fetch_request("held", id, 0, 0).with_max_wait_ms(4_000),
    );
    let seen = started.elapsed();
    assert_eq!(decode(only(&resp)).len(), 3);
    assert_eq!(only(&resp).high_watermark, 3);
    assert!(seen >= Duration::from_millis(290), "visible after {seen:?}");
    assert!(
        seen < Duration::from_millis(3_000),
        "visible after {seen:?}"
    );
    assert_eq!(producer.recv::<ProduceResponse>(ApiKey::Produce, 9).0, p);
    sink.stop();
}
