//! Tests: a real sink on 127.0.0.1:0 driven by a blocking std client that
//! encodes requests and decodes responses with kafka-protocol. Every socket
//! has read/write timeouts, so no test can hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{self, BatchError};
use super::handlers;
use super::pace::{self, Pacing, RecordBucket};
use super::server::{FrameBuf, Shared};
use super::stall::{Stall, StallWindow};
use super::{SinkConfig, SinkError, SinkHandle, SinkStats};
use crate::wire::codes as code;

mod read;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn config() -> SinkConfig {
    SinkConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..SinkConfig::default()
    }
}

fn start() -> SinkHandle {
    SinkHandle::start(config()).expect("sink starts")
}

struct Client {
    stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            next_correlation: 1,
        }
    }

    fn encode<Req: Encodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> (i32, Vec<u8>) {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sink-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .expect("encode header");
        req.encode(&mut body, version).expect("encode request");
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        (correlation_id, frame)
    }

    fn send<Req: Encodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> i32 {
        let (correlation_id, frame) = self.encode(key, version, req);
        self.stream.write_all(&frame).expect("send request");
        correlation_id
    }

    fn recv_frame(&mut self) -> std::io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        assert!((0..64 << 20).contains(&size), "response size {size}");
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    fn recv<Resp: Decodable>(&mut self, key: ApiKey, version: i16) -> (i32, Resp) {
        let mut frame = self.recv_frame().expect("response");
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .expect("response header");
        let resp = Resp::decode(&mut frame, version).expect("response body");
        assert!(
            frame.is_empty(),
            "{} trailing bytes in {key:?} v{version}",
            frame.len()
        );
        (header.correlation_id, resp)
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let correlation_id = self.send(key, version, req);
        let (got, resp) = self.recv(key, version);
        assert_eq!(got, correlation_id, "correlation id");
        resp
    }

    /// True if the sink closed the connection (EOF or reset) within the
    /// read timeout.
    fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn record_batch(n: usize, value_len: usize) -> Bytes {
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
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// (error code, base offset) of the only partition in a produce response.
fn only_partition(resp: &ProduceResponse) -> (i16, i64) {
    assert_eq!(resp.responses.len(), 1);
    let parts = &resp.responses[0].partition_responses;
    assert_eq!(parts.len(), 1);
    (parts[0].error_code, parts[0].base_offset)
}

fn wait_for(sink: &SinkHandle, what: &str, cond: impl Fn(&SinkStats) -> bool) -> SinkStats {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let stats = sink.stats();
        if cond(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn api_versions_v3_lists_supported_apis() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let resp: ApiVersionsResponse = c.call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("test"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    );
    assert_eq!(resp.error_code, 0);
    let range = |key: ApiKey| {
        resp.api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::Produce), Some((3, 12)));
    assert_eq!(range(ApiKey::Metadata), Some((0, 12)));
    assert_eq!(range(ApiKey::ApiVersions), Some((0, 4)));
    assert_eq!(range(ApiKey::CreateTopics), Some((2, 7)));
    assert_eq!(range(ApiKey::InitProducerId), Some((0, 5)));
    // The read side (tests/read.rs); FindCoordinator is listed for
    // librdkafka's feature detection and answered with an error.
    assert_eq!(range(ApiKey::Fetch), Some((4, 18)));
    assert_eq!(range(ApiKey::ListOffsets), Some((1, 10)));
    assert_eq!(range(ApiKey::FindCoordinator), Some((0, 3)));
    // Older versions too, on the same connection.
    for v in [0, 1, 2, 4] {
        let resp: ApiVersionsResponse =
            c.call(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.api_keys.len(), handlers::SUPPORTED_APIS.len());
    }
    assert_eq!(sink.stop().requests, 5);
}

#[test]
fn empty_fetch_and_find_coordinator() {
    use kafka_protocol::messages::{
        FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    };
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    for v in [4, 7, 12, 18] {
        // No topics: answered at once, whatever max_wait says.
        let req = FetchRequest::default()
            .with_max_wait_ms(10_000)
            .with_min_bytes(1);
        let resp: FetchResponse = c.call(ApiKey::Fetch, v, &req);
        assert_eq!(resp.error_code, code::NONE, "Fetch v{v}");
        assert_eq!(resp.session_id, 0, "Fetch v{v}: no session made");
        assert!(resp.responses.is_empty());
    }
    for v in [0, 3] {
        let resp: FindCoordinatorResponse = c.call(
            ApiKey::FindCoordinator,
            v,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("group")),
        );
        assert_eq!(
            resp.error_code,
            code::COORDINATOR_NOT_AVAILABLE,
            "FindCoordinator v{v}"
        );
    }
    // The connection stays usable.
    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(resp.error_code, 0);
    assert_eq!(sink.stop().decode_errors, 0);
}

#[test]
fn api_versions_too_new_gets_v0_unsupported_version() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    // A v5 ApiVersions request the sink cannot decode (flexible header, some body).
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::ApiVersions as i16);
    body.put_i16(5);
    body.put_i32(77);
    body.put_i16(-1); // client id
    body.put_u8(0); // header tags
    body.put_slice(&[3, b'a', b'b', 2, b'1', 0]);
    let mut frame = Vec::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    c.stream.write_all(&frame).unwrap();
    let (correlation_id, resp): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0);
    assert_eq!(correlation_id, 77);
    assert_eq!(resp.error_code, code::UNSUPPORTED_VERSION);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    // The connection stays usable.
    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
    assert_eq!(resp.error_code, 0);
    let stats = sink.stop();
    assert_eq!(stats.decode_errors, 0);
}

#[test]
fn metadata_auto_registers_topic_with_default_partitions() {
    let sink = start();
    let addr = sink.local_addr();
    let mut c = Client::connect(addr);
    for version in 0..=12 {
        let topic = MetadataRequestTopic::default().with_name(Some(topic_name("t")));
        let req = MetadataRequest::default().with_topics(Some(vec![topic]));
        let resp: MetadataResponse = c.call(ApiKey::Metadata, version, &req);
        assert_eq!(resp.brokers.len(), 1, "v{version}");
        let b = &resp.brokers[0];
        assert_eq!(b.node_id.0, 0);
        assert_eq!(&*b.host, "127.0.0.1");
        assert_eq!(b.port, i32::from(addr.port()));
        if version >= 1 {
            assert_eq!(resp.controller_id.0, 0);
        }
        if version >= 2 {
            assert_eq!(resp.cluster_id.as_deref(), Some("datastorm-sink"));
        }
        assert_eq!(resp.topics.len(), 1);
        let t = &resp.topics[0];
        assert_eq!(t.error_code, 0);
        assert_eq!(t.name.as_ref().map(|n| &*n.0), Some("t"));
        if version >= 10 {
            assert!(!t.topic_id.is_nil());
        }
        assert_eq!(t.partitions.len(), 8);
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition_index, i as i32);
            assert_eq!(p.leader_id.0, 0);
            assert_eq!(p.error_code, 0);
            assert_eq!(
                p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                vec![0]
            );
            assert_eq!(p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0]);
        }
    }
    // All topics (null list) now includes "t"; the topic id is stable.
    let all: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(all.topics.len(), 1);
    let id = all.topics[0].topic_id;
    let again: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(again.topics[0].topic_id, id);
    // Lookup by topic id (v12, null name).
    let by_id: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(id)])),
    );
    assert_eq!(by_id.topics[0].error_code, 0);
    assert_eq!(by_id.topics[0].partitions.len(), 8);
    // An invalid name is an error, not a registration.
    let bad: MetadataResponse = c.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("bad name!")))
        ])),
    );
    assert_eq!(bad.topics[0].error_code, code::INVALID_TOPIC_EXCEPTION);
    let stats = sink.stop();
    assert_eq!(stats.topics.len(), 1);
    assert_eq!(stats.topics["t"].partitions, 8);
}

#[test]
fn create_topics_then_metadata() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    for version in 2..=7 {
        let name = format!("created-v{version}");
        let create = |partitions: i32, validate_only: bool| {
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)])
                .with_timeout_ms(1000)
                .with_validate_only(validate_only)
        };
        // validate_only registers nothing.
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, version, &create(5, true));
        assert_eq!(resp.topics[0].error_code, 0, "v{version}");
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, version, &create(3, false));
        assert_eq!(resp.topics.len(), 1);
        assert_eq!(&*resp.topics[0].name.0, name);
        assert_eq!(resp.topics[0].error_code, 0, "v{version}");
        if version >= 5 {
            assert_eq!(resp.topics[0].num_partitions, 3);
        }
        if version >= 7 {
            assert!(!resp.topics[0].topic_id.is_nil());
        }
        let md: MetadataResponse = c.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(&name)))
            ])),
        );
        assert_eq!(md.topics[0].partitions.len(), 3, "v{version}");
        // Same count again: fine; another count: TOPIC_ALREADY_EXISTS.
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, version, &create(3, false));
        assert_eq!(resp.topics[0].error_code, 0);
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, version, &create(4, false));
        assert_eq!(resp.topics[0].error_code, code::TOPIC_ALREADY_EXISTS);
        // -1 means the default count; 0 is invalid.
        let resp: CreateTopicsResponse = c.call(
            ApiKey::CreateTopics,
            version,
            &CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(&format!("{name}-default")))
                    .with_num_partitions(-1),
                CreatableTopic::default()
                    .with_name(topic_name(&format!("{name}-zero")))
                    .with_num_partitions(0),
            ]),
        );
        assert_eq!(resp.topics[0].error_code, 0);
        assert_eq!(resp.topics[1].error_code, code::INVALID_PARTITIONS);
    }
    let stats = sink.stop();
    assert_eq!(stats.topics["created-v7"].partitions, 3);
    assert_eq!(stats.topics["created-v2-default"].partitions, 8);
    assert!(!stats.topics.contains_key("created-v2-zero"));
    assert_eq!(stats.topics.len(), 12);
}

#[test]
fn produce_v9_offsets_and_stats() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(10, 100);
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("p", 0, batch.clone(), -1),
    );
    assert_eq!(only_partition(&resp), (0, 0));
    assert_eq!(&*resp.responses[0].name.0, "p");
    assert_eq!(
        resp.responses[0].partition_responses[0].log_append_time_ms,
        -1
    );
    assert_eq!(resp.responses[0].partition_responses[0].log_start_offset, 0);
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("p", 0, batch.clone(), -1),
    );
    assert_eq!(only_partition(&resp), (0, 10));
    let live = sink.stats();
    assert_eq!(live.records, 20);
    assert_eq!(live.batches, 2);
    assert_eq!(live.produce_requests, 2);
    assert_eq!(live.batch_bytes, 2 * batch.len() as u64);
    assert_eq!(live.crc_errors, 0);
    // Two batches in one partition's records: both counted, offsets advance by 20.
    let mut two = BytesMut::new();
    two.extend_from_slice(&batch);
    two.extend_from_slice(&batch);
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("p", 0, two.freeze(), 1),
    );
    assert_eq!(only_partition(&resp), (0, 20));
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("p", 0, batch.clone(), 1),
    );
    assert_eq!(only_partition(&resp), (0, 40));
    // Another partition has its own offsets.
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("p", 7, batch.clone(), 1),
    );
    assert_eq!(only_partition(&resp), (0, 0));
    // A partition that does not exist.
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("p", 8, batch.clone(), 1),
    );
    assert_eq!(only_partition(&resp).0, code::UNKNOWN_TOPIC_OR_PARTITION);
    let stats = sink.stop();
    assert_eq!(stats.records, 60);
    assert_eq!(stats.batches, 6);
    assert_eq!(stats.unknown_partitions, 1);
    let t = &stats.topics["p"];
    assert_eq!((t.partitions, t.batches, t.records), (8, 6, 60));
    assert_eq!(t.batch_bytes, 6 * batch.len() as u64);
}

#[test]
fn produce_every_supported_version() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(3, 10);
    for (i, version) in (3..=12).enumerate() {
        let resp: ProduceResponse = c.call(
            ApiKey::Produce,
            version,
            &produce_request("versions", 1, batch.clone(), -1),
        );
        assert_eq!(only_partition(&resp), (0, 3 * i as i64), "v{version}");
    }
    let stats = sink.stop();
    assert_eq!(stats.records, 30);
    assert_eq!(stats.decode_errors, 0);
}

#[test]
fn corrupted_batch_gets_corrupt_message() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let good = record_batch(10, 100);
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x5a;
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("c", 2, bad.freeze(), -1),
    );
    assert_eq!(only_partition(&resp).0, code::CORRUPT_MESSAGE);
    // Not a v2 batch (magic 1) and a truncated batch: malformed.
    let mut magic1 = BytesMut::from(&good[..]);
    magic1[16] = 1;
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("c", 2, magic1.freeze(), -1),
    );
    assert_eq!(only_partition(&resp).0, code::CORRUPT_MESSAGE);
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("c", 2, good.slice(..good.len() - 1), -1),
    );
    assert_eq!(only_partition(&resp).0, code::CORRUPT_MESSAGE);
    // The partition still works, from offset 0.
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("c", 2, good.clone(), -1),
    );
    assert_eq!(only_partition(&resp), (0, 0));
    let stats = sink.stop();
    assert_eq!(stats.crc_errors, 1);
    assert_eq!(stats.malformed_batches, 2);
    assert_eq!(stats.records, 10);
    assert_eq!(stats.decode_errors, 0);
}

#[test]
fn acks_zero_gets_no_response_but_is_counted() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(10, 100);
    c.send(
        ApiKey::Produce,
        9,
        &produce_request("z", 0, batch.clone(), 0),
    );
    c.send(
        ApiKey::Produce,
        7,
        &produce_request("z", 0, batch.clone(), 0),
    );
    // The next response on the wire is the ApiVersions one.
    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(resp.error_code, 0);
    let stats = wait_for(&sink, "acks=0 records", |s| s.records == 20);
    assert_eq!(stats.produce_requests, 2);
    // Offsets advanced although nobody was told.
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_request("z", 0, batch, 1));
    assert_eq!(only_partition(&resp), (0, 20));
    sink.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(5, 50);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let (corr, frame) = if i % 3 == 0 {
            c.encode(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        } else {
            c.encode(
                ApiKey::Produce,
                9,
                &produce_request("pipe", 0, batch.clone(), -1),
            )
        };
        wire.extend_from_slice(&frame);
        expected.push((corr, i % 3 == 0));
    }
    // One write holding all 20 requests, cut at odd places by the kernel.
    c.stream.write_all(&wire).unwrap();
    let mut next_offset = 0;
    for (corr, is_versions) in expected {
        if is_versions {
            let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3);
            assert_eq!(got, corr);
        } else {
            let (got, resp): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9);
            assert_eq!(got, corr);
            assert_eq!(only_partition(&resp), (0, next_offset));
            next_offset += 5;
        }
    }
    sink.stop();
}

#[test]
fn init_producer_id_hands_out_increasing_ids() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let mut ids = Vec::new();
    for version in 0..=5 {
        let resp: InitProducerIdResponse = c.call(
            ApiKey::InitProducerId,
            version,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        );
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.producer_epoch, 0);
        ids.push(resp.producer_id.0);
    }
    assert_eq!(ids, (1000..1006).collect::<Vec<_>>());
    sink.stop();
}

fn expect_closed(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut c = Client::connect(addr);
    // The sink may close while we are still writing: ignore write errors.
    let _ = c.stream.write_all(bytes);
    assert!(c.closed_by_peer(), "{what}: connection not closed");
}

#[test]
fn bad_input_closes_the_connection_and_the_sink_keeps_serving() {
    let sink = start();
    let addr = sink.local_addr();
    // A long-lived client, used before and after the bad ones.
    let mut good = Client::connect(addr);
    let _: ApiVersionsResponse = good.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "http garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("huge size prefix", 0x7fff_ffffu32.to_be_bytes().to_vec()),
        (
            "just over the limit",
            ((100 << 20) + 1u32).to_be_bytes().to_vec(),
        ),
        ("negative size prefix", (-5i32).to_be_bytes().to_vec()),
        ("frame shorter than a header", vec![0, 0, 0, 3, 0, 18, 0]),
        ("empty frame", vec![0, 0, 0, 0]),
    ];
    let frame = |key: i16, version: i16, body: &[u8]| {
        let mut f = Vec::new();
        f.put_i32((8 + 2 + body.len()) as i32);
        f.put_i16(key);
        f.put_i16(version);
        f.put_i32(9);
        f.put_i16(-1);
        f.extend_from_slice(body);
        f
    };
    cases.push(("unknown api key", frame(999, 0, &[])));
    cases.push(("unsupported api (OffsetCommit)", frame(8, 5, &[0; 32])));
    cases.push(("unsupported Fetch version", frame(1, 3, &[0; 32])));
    cases.push(("unsupported Produce version", frame(0, 2, &[0; 32])));
    cases.push(("Produce v13", frame(0, 13, &[0; 32])));
    cases.push(("truncated Metadata body", frame(3, 1, &[0, 0])));
    // Arrays claiming 2^31-1 elements: must not make the decoder allocate.
    cases.push((
        "Metadata v1 huge array",
        frame(3, 1, &0x7fff_ffffi32.to_be_bytes()),
    ));
    cases.push((
        "Produce v3 huge array",
        frame(
            0,
            3,
            &[0xff, 0xff, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff],
        ),
    ));
    cases.push((
        "CreateTopics v4 huge array",
        frame(19, 4, &0x7fff_fff0i32.to_be_bytes()),
    ));
    // Not UTF-8 topic name.
    cases.push((
        "Metadata v1 bad utf8",
        frame(3, 1, &[0, 0, 0, 1, 0, 2, 0xff, 0xfe]),
    ));
    let n = cases.len() as u64;
    for (what, bytes) in &cases {
        expect_closed(addr, bytes, what);
    }
    let stats = wait_for(&sink, "decode errors", |s| s.decode_errors == n);
    assert_eq!(stats.decode_errors, n);
    // Old and new connections still work.
    let _: ApiVersionsResponse = good.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let mut c = Client::connect(addr);
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("after", 0, record_batch(2, 1), -1),
    );
    assert_eq!(only_partition(&resp), (0, 0));
    sink.stop();
}

#[test]
fn peer_closing_mid_frame_is_not_an_error() {
    let sink = start();
    let addr = sink.local_addr();
    {
        let mut c = Client::connect(addr);
        c.stream.write_all(&[0, 0, 1, 0, 0, 18]).unwrap();
    }
    let mut c = Client::connect(addr);
    let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let stats = sink.stop();
    assert_eq!(stats.decode_errors, 0);
    assert_eq!(stats.connections, 2);
}

#[test]
fn stop_returns_per_topic_stats() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(4, 20);
    for topic in ["a", "b", "b"] {
        let resp: ProduceResponse = c.call(
            ApiKey::Produce,
            12,
            &produce_request(topic, 0, batch.clone(), -1),
        );
        assert_eq!(only_partition(&resp).0, 0);
    }
    assert!(sink.stats().topics.is_empty());
    let stats = sink.stop();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.topics.len(), 2);
    assert_eq!(stats.topics["a"].records, 4);
    assert_eq!(stats.topics["b"].records, 8);
    assert_eq!(stats.topics["b"].batches, 2);
    assert_eq!(stats.topics["b"].batch_bytes, 2 * batch.len() as u64);
    assert_eq!(stats.topics["b"].partitions, 8);
    let json = format!("{:?}", stats);
    assert!(json.contains("topics"));
}

#[test]
fn stop_is_prompt_with_idle_connections() {
    let sink = start();
    let addr = sink.local_addr();
    let mut idle: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    let _: ApiVersionsResponse =
        idle[0].call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    // One client stuck in the middle of a frame.
    idle[1].stream.write_all(&[0, 0, 0, 100, 0]).unwrap();
    wait_for(&sink, "connections", |s| s.connections == 4);
    let t0 = Instant::now();
    let stats = sink.stop();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(stats.connections, 4);
    for c in &mut idle {
        assert!(c.closed_by_peer());
    }
}

#[test]
fn two_cpu_sink_serves_two_connections() {
    let cfg = SinkConfig {
        cpus: vec![0, 1],
        ..config()
    };
    let sink = SinkHandle::start(cfg).expect("2-cpu sink starts");
    let addr = sink.local_addr();
    assert_ne!(addr.port(), 0);
    let batch = record_batch(10, 100);
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let batch = batch.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let _: MetadataResponse = c.call(
                    ApiKey::Metadata,
                    12,
                    &MetadataRequest::default().with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic_name("two"))),
                    ])),
                );
                for _ in 0..10 {
                    let resp: ProduceResponse = c.call(
                        ApiKey::Produce,
                        9,
                        &produce_request("two", i, batch.clone(), -1),
                    );
                    assert_eq!(only_partition(&resp).0, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    // More connections than executors: all served, whichever executor gets them.
    for _ in 0..8 {
        let mut c = Client::connect(addr);
        let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    }
    let stats = sink.stop();
    assert_eq!(stats.connections, 10);
    assert_eq!(stats.records, 200);
    assert_eq!(stats.topics["two"].records, 200);
    assert_eq!(stats.topics["two"].batches, 20);
}

#[test]
fn bind_conflict_and_bad_config_are_errors() {
    let sink = start();
    // glommio binds with SO_REUSEPORT, so a plain std listener holding the
    // port is what makes a bind fail.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = std_listener.local_addr().unwrap();
    match SinkHandle::start(SinkConfig {
        listen: taken,
        ..config()
    }) {
        Err(SinkError::Bind { addr, .. }) => assert_eq!(addr, taken),
        other => panic!("expected a bind error, got {other:?}"),
    }
    match SinkHandle::start(SinkConfig {
        default_partitions: 0,
        ..config()
    }) {
        Err(SinkError::Config(_)) => {}
        other => panic!("expected a config error, got {other:?}"),
    }
    match SinkHandle::start(SinkConfig {
        cpus: vec![4096],
        ..config()
    }) {
        Err(SinkError::Config(_)) => {}
        other => panic!("expected a config error, got {other:?}"),
    }
    sink.stop();
}

#[test]
fn batch_scan_edge_cases() {
    let b = record_batch(10, 100);
    let scan = batch::scan(&b).unwrap();
    assert_eq!(
        (scan.batches, scan.records, scan.offsets, scan.bytes),
        (1, 10, 10, b.len() as u64)
    );
    assert!(matches!(
        batch::scan(&[]),
        Err(BatchError::Malformed { .. })
    ));
    assert!(matches!(
        batch::scan(&b[..60]),
        Err(BatchError::Malformed { .. })
    ));
    let mut neg = b.to_vec();
    neg[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        batch::scan(&neg),
        Err(BatchError::Malformed { .. })
    ));
    let mut short = b.to_vec();
    short[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(
        batch::scan(&short),
        Err(BatchError::Malformed { .. })
    ));
    let mut long = b.to_vec();
    long[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        batch::scan(&long),
        Err(BatchError::Malformed { .. })
    ));
    let mut crc = b.to_vec();
    crc[17] ^= 1;
    assert_eq!(batch::scan(&crc), Err(BatchError::Crc { batch: 0 }));
    let mut two = b.to_vec();
    two.extend_from_slice(&crc);
    assert_eq!(batch::scan(&two), Err(BatchError::Crc { batch: 1 }));
}

#[test]
fn frame_buf_splits_frames_across_reads() {
    let mut wire = Vec::new();
    for len in [8usize, 0, 300_000, 17] {
        wire.put_i32(len as i32);
        wire.extend((0..len).map(|i| (i % 251) as u8));
    }
    for chunk in [1usize, 3, 1000, 70_000, usize::MAX] {
        let mut fb = FrameBuf::default();
        let mut fed = 0;
        let mut got = Vec::new();
        while fed < wire.len() || got.len() < 4 {
            while let Some(f) = fb.next_frame().unwrap() {
                got.push(f);
            }
            if fed == wire.len() {
                break;
            }
            let space = fb.read_buf();
            let n = space.len().min(chunk).min(wire.len() - fed);
            assert!(n > 0);
            space[..n].copy_from_slice(&wire[fed..fed + n]);
            fb.filled(n);
            fed += n;
        }
        let lens: Vec<usize> = got.iter().map(|f| f.len()).collect();
        assert_eq!(lens, vec![8, 0, 300_000, 17], "chunk {chunk}");
        assert!(got[2]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
    }
    let mut fb = FrameBuf::default();
    fb.read_buf()[..4].copy_from_slice(&(-1i32).to_be_bytes());
    fb.filled(4);
    assert!(fb.next_frame().is_err());
}

#[test]
fn large_produce_requests_are_served() {
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    // 3 MB (allocated at once) and 20 MB (grown as it arrives) requests.
    let mut next = 0;
    for (records, value_len) in [(300, 10_000), (2_000, 10_000)] {
        let batch = record_batch(records, value_len);
        let resp: ProduceResponse =
            c.call(ApiKey::Produce, 9, &produce_request("big", 3, batch, -1));
        assert_eq!(only_partition(&resp), (0, next));
        next += records as i64;
    }
    // And small ones after them on the same connection.
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("big", 3, record_batch(1, 1), -1),
    );
    assert_eq!(only_partition(&resp), (0, next));
    let stats = sink.stop();
    assert_eq!(stats.records, 2_301);
    assert!(stats.batch_bytes > 23_000_000);
}

// ---- Pacing: ack delay and record-rate limit ----

#[test]
fn defaults_pace_nothing() {
    let d = SinkConfig::default();
    assert_eq!(d.ack_delay, Duration::ZERO);
    assert_eq!(d.max_records_per_s, None);
    assert!(Pacing::new(d.ack_delay, d.max_records_per_s).is_none());
    assert_eq!(Shared::new(&d, 2).executor_rate, None);
    // Default sink: pipelined Produce responses come back unthrottled.
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(1_000, 10);
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..10 {
        let (corr, frame) = c.encode(
            ApiKey::Produce,
            9,
            &produce_request("plain", 0, batch.clone(), -1),
        );
        wire.extend_from_slice(&frame);
        sent.push(corr);
    }
    c.stream.write_all(&wire).unwrap();
    for corr in sent {
        let (got, resp): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9);
        assert_eq!(got, corr);
        assert_eq!(resp.throttle_time_ms, 0);
        assert_eq!(only_partition(&resp).0, 0);
    }
    assert_eq!(sink.stop().records, 10_000);
}

#[test]
fn pacing_config_is_validated_and_rate_split_between_executors() {
    for cfg in [
        SinkConfig {
            max_records_per_s: Some(0.5),
            ..config()
        },
        SinkConfig {
            max_records_per_s: Some(f64::NAN),
            ..config()
        },
        SinkConfig {
            ack_delay: super::MAX_ACK_DELAY + Duration::from_millis(1),
            ..config()
        },
    ] {
        match SinkHandle::start(cfg.clone()) {
            Err(SinkError::Config(_)) => {}
            other => panic!("expected a config error for {cfg:?}, got {other:?}"),
        }
    }
    let cfg = SinkConfig {
        max_records_per_s: Some(100_000.0),
        ..config()
    };
    assert_eq!(Shared::new(&cfg, 1).executor_rate, Some(100_000.0));
    assert_eq!(Shared::new(&cfg, 4).executor_rate, Some(25_000.0));
}

#[test]
fn record_bucket_holds_what_exceeds_the_burst() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    // 1000 records/s: the 10 ms burst is 10 records.
    let mut b = RecordBucket::new(1_000.0);
    assert_eq!(b.reserve(t0, 5), Duration::ZERO);
    assert_eq!(b.reserve(t0, 5), Duration::ZERO);
    assert_eq!(b.reserve(t0, 10), ms(10));
    // First come, first served: a request behind waits for those before it.
    assert_eq!(b.reserve(t0, 0), ms(10));
    assert_eq!(b.reserve(t0 + ms(4), 1), ms(7));
    // Steady state: 100 records per 100 ms.
    assert_eq!(b.reserve(t0 + ms(11), 100), ms(100));
    // Idle time refills at most the burst.
    let later = t0 + Duration::from_secs(10);
    assert_eq!(b.reserve(later, 10), Duration::ZERO);
    assert_eq!(b.reserve(later, 10), ms(10));
    // Absurd requests are capped rather than overflowing.
    let mut tiny = RecordBucket::new(1.0);
    assert!(tiny.reserve(t0, u64::MAX) <= Duration::from_secs(24 * 3600));
    assert_eq!(pace::throttle_ms(Duration::from_micros(1_499)), 1);
    assert_eq!(pace::throttle_ms(Duration::from_micros(1_500)), 2);
    assert_eq!(pace::throttle_ms(Duration::ZERO), 0);
    assert_eq!(pace::throttle_ms(Duration::from_secs(1 << 40)), i32::MAX);
}

/// Sends `frames` from a second thread, `gap` apart, while this thread
/// reads `frames.len()` responses; returns (send time, receive time, frame)
/// per request, in order.
fn timed_pipeline(
    c: &mut Client,
    frames: Vec<(i32, Vec<u8>)>,
    gap: Duration,
) -> Vec<(Instant, Instant, i32, Bytes)> {
    let mut writer = c.stream.try_clone().expect("clone socket");
    let n = frames.len();
    let sender = std::thread::spawn(move || {
        let mut sent = Vec::with_capacity(frames.len());
        for (i, (corr, frame)) in frames.into_iter().enumerate() {
            if i > 0 {
                std::thread::sleep(gap);
            }
            sent.push((Instant::now(), corr));
            writer.write_all(&frame).expect("send request");
        }
        sent
    });
    let received: Vec<(Instant, Bytes)> = (0..n)
        .map(|_| {
            let frame = c.recv_frame().expect("response");
            (Instant::now(), frame)
        })
        .collect();
    let sent = sender.join().expect("sender thread");
    sent.into_iter()
        .zip(received)
        .map(|((at, corr), (got, frame))| (at, got, corr, frame))
        .collect()
}

#[test]
fn ack_delay_holds_each_response_without_serializing() {
    const DELAY: Duration = Duration::from_millis(30);
    // Generous for a loaded 2-core machine, and still far below what a
    // serialized connection would show (see below).
    const SLACK: Duration = Duration::from_millis(45);
    let sink = SinkHandle::start(SinkConfig {
        ack_delay: DELAY,
        ..config()
    })
    .expect("sink starts");
    let mut c = Client::connect(sink.local_addr());
    // Other APIs are answered at once.
    let t = Instant::now();
    let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(t.elapsed() < DELAY, "ApiVersions took {:?}", t.elapsed());
    let batch = record_batch(10, 20);
    // Eight Produce requests 8 ms apart on one connection, an ApiVersions
    // request after the fourth: each Produce answer comes DELAY after its
    // own request (a serialized connection would answer the last one about
    // 8 * 30 - 7 * 8 = 184 ms after it was sent), all in request order, and
    // the ApiVersions answer waits for the Produce answer before it.
    let mut frames = Vec::new();
    for i in 0..8 {
        frames.push(c.encode(
            ApiKey::Produce,
            9,
            &produce_request("slow", 0, batch.clone(), -1),
        ));
        if i == 3 {
            frames.push(c.encode(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()));
        }
    }
    let t0 = Instant::now();
    let results = timed_pipeline(&mut c, frames, Duration::from_millis(8));
    let total = t0.elapsed();
    let mut next_offset = 0;
    let mut prev_recv = None;
    for (i, (sent, recv, corr, mut frame)) in results.into_iter().enumerate() {
        let latency = recv - sent;
        if i == 4 {
            let header = ResponseHeader::decode(&mut frame, 0).unwrap();
            assert_eq!(header.correlation_id, corr, "ApiVersions in order");
            let held_behind: Instant = prev_recv.unwrap();
            assert!(recv >= held_behind);
            continue;
        }
        let header =
            ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(9)).unwrap();
        assert_eq!(header.correlation_id, corr, "response {i} in order");
        let resp = ProduceResponse::decode(&mut frame, 9).unwrap();
        assert_eq!(only_partition(&resp), (0, next_offset));
        assert_eq!(resp.throttle_time_ms, 0);
        next_offset += 10;
        assert!(
            latency >= DELAY && latency < DELAY + SLACK,
            "response {i}: {latency:?} after its request (want {DELAY:?})"
        );
        prev_recv = Some(recv);
    }
    // 7 gaps of 8 ms plus one delay (86 ms), not 8 delays (240 ms and
    // more): judged against the serialized time, so that a host pause of
    // tens of milliseconds (CI saw the pipeline take 150 ms once) cannot
    // break it while a serializing sink still fails it.
    assert!(total < DELAY * 8, "pipeline took {total:?}");
    assert_eq!(sink.stop().records, 80);
}

#[test]
fn held_responses_do_not_delay_stop() {
    let sink = SinkHandle::start(SinkConfig {
        ack_delay: Duration::from_secs(30),
        max_records_per_s: Some(1.0),
        ..config()
    })
    .expect("sink starts");
    let mut c = Client::connect(sink.local_addr());
    c.send(
        ApiKey::Produce,
        9,
        &produce_request("held", 0, record_batch(100, 10), -1),
    );
    wait_for(&sink, "the produce request", |s| s.records == 100);
    let t0 = Instant::now();
    let stats = sink.stop();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(stats.records, 100);
    assert!(c.closed_by_peer());
}

#[test]
fn max_rate_limits_acknowledged_records() {
    const RATE: f64 = 50_000.0;
    const RUN: Duration = Duration::from_secs(2);
    const IN_FLIGHT: usize = 4;
    const PER_REQUEST: u64 = 250;
    let sink = SinkHandle::start(SinkConfig {
        max_records_per_s: Some(RATE),
        ..config()
    })
    .expect("sink starts");
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(PER_REQUEST as usize, 10);
    let request = produce_request("quota", 0, batch, -1);
    let mut in_flight = std::collections::VecDeque::new();
    let mut acked = 0u64;
    let mut max_throttle = 0;
    let t0 = Instant::now();
    // As fast as the acks allow, with IN_FLIGHT requests outstanding;
    // bounded in time, and in count (at 10x the rate it would take 2 s).
    for _ in 0..(RATE as u64 * 20 / PER_REQUEST) {
        while in_flight.len() < IN_FLIGHT && t0.elapsed() < RUN {
            in_flight.push_back(c.send(ApiKey::Produce, 9, &request));
        }
        let Some(corr) = in_flight.pop_front() else {
            break;
        };
        let (got, resp): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9);
        assert_eq!(got, corr);
        assert_eq!(only_partition(&resp).0, 0);
        max_throttle = max_throttle.max(resp.throttle_time_ms);
        acked += PER_REQUEST;
    }
    let elapsed = t0.elapsed();
    assert!(in_flight.is_empty(), "count bound reached: not throttled?");
    let rate = acked as f64 / elapsed.as_secs_f64();
    assert!(
        (rate - RATE).abs() < RATE * 0.1,
        "{acked} records acked in {elapsed:?}: {rate:.0}/s, want {RATE}/s"
    );
    // Steady state: each response waits for the IN_FLIGHT - 1 before it
    // (5 ms each), and says so.
    assert!(
        (5..=40).contains(&max_throttle),
        "max throttle_time_ms {max_throttle}"
    );
    assert_eq!(sink.stop().records, acked);
}

/// A batch of `n` records sealed by DataStorm's own builder with `compression`.
fn sealed_batch(n: usize, compression: crate::batch::Compression) -> Bytes {
    let mut b = crate::batch::BatchBuilder::with_capacity(64 * 1024);
    for i in 0..n {
        let value = format!(
            "{{\"id\":{i},\"status\":\"shipped\",\"sku\":\"A-{}\"}}",
            i % 7
        );
        b.append(1_700_000_000_000 + i as i64, None, value.as_bytes(), &[]);
    }
    let mut out = crate::arena::WriteBuf::default();
    b.seal(compression, &mut crate::batch::Compressor::new(), &mut out);
    Bytes::copy_from_slice(out.as_slice())
}

/// A batch of `n` records encoded and compressed by kafka-protocol (other
/// implementations of every codec: C LZ4 and zstd, flate2's GzEncoder).
fn kafka_protocol_batch(n: usize, compression: Compression) -> Bytes {
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
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("key-{}", i % 10))),
            value: Some(Bytes::from(format!("value {i} value {i} value {i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// Rewrites a batch's CRC after a test changed it on purpose.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn every_codec_is_decompressed_validated_and_counted() {
    use crate::batch::Compression as C;
    let sink = start();
    let mut c = Client::connect(sink.local_addr());
    let codecs = [
        C::None,
        C::Gzip { level: 1 },
        C::Gzip { level: 9 },
        C::Snappy,
        C::Lz4,
        C::Zstd { level: -1 },
        C::Zstd { level: 3 },
        C::Zstd { level: 19 },
    ];
    let mut wire = 0;
    let mut records_bytes = 0;
    for (i, codec) in codecs.into_iter().enumerate() {
        let batch = sealed_batch(500, codec);
        let resp: ProduceResponse = c.call(
            ApiKey::Produce,
            9,
            &produce_request("codecs", 0, batch.clone(), -1),
        );
        assert_eq!(only_partition(&resp), (0, 500 * i as i64), "{codec:?}");
        let scan = batch::scan(&batch).unwrap();
        assert_eq!(scan.by_codec[codec.attribute_bits() as usize], 1);
        assert_eq!(scan.records, 500);
        if codec == C::None {
            assert_eq!(scan.record_bytes, scan.bytes - 61);
        } else {
            assert!(scan.record_bytes > 3 * scan.bytes, "{codec:?} compresses");
        }
        wire += batch.len() as u64;
        records_bytes += scan.record_bytes;
    }
    // Batches written by kafka-protocol's encoders (other implementations).
    for (i, codec) in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let batch = kafka_protocol_batch(300, codec);
        let resp: ProduceResponse = c.call(
            ApiKey::Produce,
            9,
            &produce_request("codecs", 1, batch.clone(), -1),
        );
        assert_eq!(only_partition(&resp), (0, 300 * i as i64), "{codec:?}");
        wire += batch.len() as u64;
        records_bytes += batch::scan(&batch).unwrap().record_bytes;
    }
    let stats = sink.stop();
    assert_eq!(stats.records, 8 * 500 + 4 * 300);
    assert_eq!(stats.malformed_batches, 0);
    assert_eq!(stats.batch_bytes, wire);
    assert_eq!(stats.record_bytes, records_bytes);
    let by_codec: Vec<(&str, u64)> = stats
        .batches_by_codec
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_codec,
        [
            ("gzip", 3),
            ("lz4", 2),
            ("none", 1),
            ("snappy", 2),
            ("zstd", 4)
        ]
    );
    let ratio = stats.compression_ratio().unwrap();
    assert!(ratio > 3.0, "ratio {ratio}");
}

#[test]
fn damaged_compressed_records_are_malformed_even_with_a_good_crc() {
    use crate::batch::Compression as C;
    for codec in [
        C::Gzip { level: 6 },
        C::Snappy,
        C::Lz4,
        C::Zstd { level: 3 },
    ] {
        let good = sealed_batch(200, codec).to_vec();
        // Compressed bytes cut short (batch length and CRC made to match).
        let mut cut = good[..good.len() - 10].to_vec();
        let len = (cut.len() - 12) as i32;
        cut[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut cut);
        assert!(
            matches!(batch::scan(&cut), Err(BatchError::Malformed { .. })),
            "{codec:?} truncated"
        );
        // A recordsCount that the records do not bear out.
        for (count, last_delta) in [(201i32, 200i32), (199, 198)] {
            let mut lying = good.clone();
            lying[57..61].copy_from_slice(&count.to_be_bytes());
            lying[23..27].copy_from_slice(&last_delta.to_be_bytes());
            fix_crc(&mut lying);
            assert_eq!(
                batch::scan(&lying),
                Err(BatchError::Malformed {
                    batch: 0,
                    reason: "recordsCount does not match the records in the batch"
                }),
                "{codec:?} count {count}"
            );
        }
        // The codec id of another codec.
        let mut other = good.clone();
        other[22] = (other[22] & !7) | if codec == C::Snappy { 4 } else { 2 };
        fix_crc(&mut other);
        assert!(
            matches!(batch::scan(&other), Err(BatchError::Malformed { .. })),
            "{codec:?} read as another codec"
        );
    }
    // lastOffsetDelta must agree with recordsCount, as Kafka requires.
    let mut skewed = sealed_batch(10, C::None).to_vec();
    skewed[23..27].copy_from_slice(&5i32.to_be_bytes());
    fix_crc(&mut skewed);
    assert!(matches!(
        batch::scan(&skewed),
        Err(BatchError::Malformed { .. })
    ));
}

// ---- Stall: a broker that hangs with its connections open ----

/// A response may come this much before the stall's end by our clock and
/// still count as held until it (the sink fixes its window a moment after
/// `start_stalled` reads the clock, never before).
const STALL_EARLY: Duration = Duration::from_millis(5);

/// A sink that stalls `after` its start for `lasting`, and bounds on its
/// window: it began between `from.0` and `from.1` and ends between
/// `until.0` and `until.1` (the sink fixes it while `start` runs).
struct StalledSink {
    sink: SinkHandle,
    from: (Instant, Instant),
    until: (Instant, Instant),
}

fn start_stalled(after: Duration, lasting: Duration, ack_delay: Duration) -> StalledSink {
    let before = Instant::now();
    let sink = SinkHandle::start(SinkConfig {
        ack_delay,
        stall: Some(Stall { after, lasting }),
        ..config()
    })
    .expect("sink starts");
    let started = Instant::now();
    StalledSink {
        sink,
        from: (before + after, started + after),
        until: (before + after + lasting, started + after + lasting),
    }
}

#[test]
fn stall_config_is_validated_and_its_window_computed() {
    let ms = Duration::from_millis;
    for stall in [
        Stall {
            after: Duration::ZERO,
            lasting: ms(10),
        },
        Stall {
            after: ms(10),
            lasting: Duration::ZERO,
        },
        Stall {
            after: ms(10),
            lasting: super::MAX_STALL_LASTING + ms(1),
        },
        Stall {
            after: super::MAX_STALL_AFTER + ms(1),
            lasting: ms(10),
        },
    ] {
        let cfg = SinkConfig {
            stall: Some(stall),
            ..config()
        };
        match SinkHandle::start(cfg) {
            Err(SinkError::Config(m)) => assert!(m.contains("stall"), "{m}"),
            other => panic!("expected a config error for {stall:?}, got {other:?}"),
        }
    }
    assert_eq!(SinkConfig::default().stall, None);
    assert_eq!(Shared::new(&config(), 1).stall, None);
    let t0 = Instant::now();
    let w = Stall {
        after: ms(200),
        lasting: ms(600),
    }
    .window(t0);
    assert_eq!(
        w,
        StallWindow {
            from: t0 + ms(200),
            until: t0 + ms(800)
        }
    );
    assert_eq!(w.ahead(t0), Some(ms(200)));
    assert_eq!(w.remaining(t0), None);
    assert_eq!(w.ahead(t0 + ms(200)), None);
    assert_eq!(w.remaining(t0 + ms(200)), Some(ms(600)));
    assert_eq!(w.remaining(t0 + ms(799)), Some(ms(1)));
    assert_eq!(w.remaining(t0 + ms(800)), None);
    assert_eq!(w.ahead(t0 + ms(800)), None);
    // Every executor gets the same window.
    let cfg = SinkConfig {
        stall: Some(Stall {
            after: ms(200),
            lasting: ms(600),
        }),
        ..config()
    };
    let before = Instant::now();
    let w = Shared::new(&cfg, 4).stall.expect("a window");
    assert!(w.from >= before + ms(200) && w.until == w.from + ms(600));
}

/// Requests sent inside the stall (on a connection opened before it and on
/// one opened during it) are neither read nor answered until it ends; then
/// they are answered in order and the sink serves normally. With an ack
/// delay too, a Produce response that fell due inside the stall waits for
/// its end.
#[test]
fn requests_sent_during_a_stall_are_answered_when_it_ends() {
    const AFTER: Duration = Duration::from_millis(200);
    const LASTING: Duration = Duration::from_millis(600);
    const DEADLINE: Duration = Duration::from_secs(5);
    let batch = record_batch(10, 20);
    for ack_delay in [Duration::ZERO, Duration::from_millis(150)] {
        let StalledSink { sink, from, until } = start_stalled(AFTER, LASTING, ack_delay);
        assert!(
            from.1 + Duration::from_millis(200) < until.0,
            "the sink took {:?} to start",
            from.1 - from.0
        );
        let mut c = Client::connect(sink.local_addr());
        let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        // With the ack delay: a Produce read before the stall whose
        // response falls due inside it.
        let due_inside = (!ack_delay.is_zero()).then(|| {
            std::thread::sleep(
                (from.1 + Duration::from_millis(50))
                    .saturating_duration_since(Instant::now() + ack_delay),
            );
            c.send(
                ApiKey::Produce,
                9,
                &produce_request("stall", 0, batch.clone(), -1),
            )
        });
        // Inside the stall: a Produce and an ApiVersions, pipelined, and a
        // new connection with an ApiVersions.
        std::thread::sleep(
            (from.1 + Duration::from_millis(50)).saturating_duration_since(Instant::now()),
        );
        let seen = sink.stats();
        let produce = c.send(
            ApiKey::Produce,
            9,
            &produce_request("stall", 0, batch.clone(), -1),
        );
        let versions = c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut late = Client::connect(sink.local_addr());
        let late_versions = late.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() + STALL_EARLY < until.0 {
            // Nothing new was read (a stalled sink cannot count it).
            assert_eq!(
                sink.stats().requests,
                seen.requests,
                "ack delay {ack_delay:?}"
            );
        }
        // (on the late connection, correlation id, a Produce) in the order
        // each connection must answer.
        let mut order: Vec<(bool, i32, bool)> = Vec::new();
        order.extend(due_inside.map(|corr| (false, corr, true)));
        order.extend([
            (false, produce, true),
            (false, versions, false),
            (true, late_versions, false),
        ]);
        let mut next_offset = 0;
        for (on_late, corr, is_produce) in order {
            let client = if on_late { &mut late } else { &mut c };
            let got = if is_produce {
                let (got, resp): (i32, ProduceResponse) = client.recv(ApiKey::Produce, 9);
                assert_eq!(only_partition(&resp), (0, next_offset));
                next_offset += 10;
                got
            } else {
                let (got, _): (i32, ApiVersionsResponse) = client.recv(ApiKey::ApiVersions, 3);
                got
            };
            let at = Instant::now();
            assert_eq!(got, corr, "in order (ack delay {ack_delay:?})");
            assert!(
                at + STALL_EARLY >= until.0,
                "answered {:?} before the stall ended (ack delay {ack_delay:?})",
                until.0 - at
            );
            assert!(at < until.1 + DEADLINE, "answered late: {at:?}");
        }
        // Resumed: answered at once again.
        let t = Instant::now();
        let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(sink.stop().records, next_offset as u64);
    }
}

/// Before the stall the sink answers at once, and after it as well.
#[test]
fn requests_before_a_stall_are_answered_at_once() {
    let StalledSink { sink, from, until } = start_stalled(
        Duration::from_millis(500),
        Duration::from_millis(200),
        Duration::ZERO,
    );
    let mut c = Client::connect(sink.local_addr());
    let batch = record_batch(10, 20);
    for i in 0..3 {
        let t = Instant::now();
        let _: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let resp: ProduceResponse = c.call(
            ApiKey::Produce,
            9,
            &produce_request("early", 0, batch.clone(), -1),
        );
        assert_eq!(only_partition(&resp), (0, i * 10));
        let at = Instant::now();
        assert!(
            at < from.0 && at - t < Duration::from_millis(250),
            "request {i}: answered after {:?}",
            at - t
        );
    }
    // And normally again once the stall is over.
    std::thread::sleep(
        (until.1 + Duration::from_millis(20)).saturating_duration_since(Instant::now()),
    );
    let t = Instant::now();
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("early", 0, batch.clone(), -1),
    );
    assert_eq!(only_partition(&resp), (0, 30));
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(sink.stop().records, 40);
}

/// A stall does not hold up a stop, nor close connections by itself.
#[test]
fn stop_is_prompt_during_a_stall() {
    let StalledSink { sink, from, .. } = start_stalled(
        Duration::from_millis(50),
        super::MAX_STALL_LASTING,
        Duration::from_millis(10),
    );
    let mut c = Client::connect(sink.local_addr());
    std::thread::sleep(
        (from.1 + Duration::from_millis(20)).saturating_duration_since(Instant::now()),
    );
    c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    // Open and unanswered: the read times out rather than seeing a close.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    match c.stream.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected no answer and an open connection, got {other:?}"),
    }
    c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let t0 = Instant::now();
    sink.stop();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(c.closed_by_peer());
}
