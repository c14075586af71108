//! Request decoding, dispatch and the per-API handlers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest,
    CreateTopicsResponse, FetchRequest, FindCoordinatorResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};

use super::batch::{self, BatchError};
use super::fetch::{self, Answer, ParkedFetch};
use super::guard;
use super::list_offsets;
use super::log::Staged;
use super::pace;
use super::registry::{RegistryError, TopicEntry};
use super::server::{ExecState, LocalTopic};
use super::stats::{bump, ProduceTally};
use super::CLUSTER_ID;
use crate::wire::codes as code;

/// The APIs and versions the sink serves (and advertises in ApiVersions).
///
/// Fetch (v4 up, whole batches from what the sink keeps or synthetic ones,
/// see `fetch`) and FindCoordinator also matter to librdkafka, which derives
/// its protocol features from this list: it writes record batches v2
/// (MsgVer2) only when the broker lists Fetch v4+ besides Produce v3+, and
/// compresses with LZ4 only when it lists FindCoordinator; against a list
/// without them it falls back to uncompressed v0 message sets, which the
/// sink rejects. The sink coordinates nothing, so FindCoordinator is
/// answered COORDINATOR_NOT_AVAILABLE without reading the request body.
pub(crate) const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 5),
];

/// Largest frame accepted for anything but Produce: bounds the memory a
/// small-but-dense request can make the decoder allocate.
const MAX_CONTROL_FRAME: usize = 8 << 20;

/// FindCoordinator's error message: the sink runs no groups or transactions.
const NO_COORDINATOR: &str = "the DataStorm sink has no group or transaction coordinator";

/// First producer id handed out by InitProducerId.
pub(crate) const FIRST_PRODUCER_ID: i64 = 1000;

/// A frame the sink cannot serve: the connection is closed.
#[derive(Debug)]
pub(crate) struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> FrameError {
    FrameError(msg.into())
}

/// Per-connection facts the handlers need.
pub(crate) struct ConnInfo {
    /// The address the client connected to (reported as the broker's).
    pub local_addr: SocketAddr,
}

fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// What `handle_frame` appended to `out`.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Nothing (a Produce request with acks=0).
    None,
    /// A response to anything but Produce: due at once.
    Control,
    /// A Produce response, to be held `throttle` (already reported in its
    /// throttle_time_ms) plus the ack delay.
    Produce { throttle: Duration },
    /// Nothing yet: a Fetch that waits for data (long poll). The connection
    /// answers it (`fetch::try_answer`) before any later request.
    FetchWait(Box<ParkedFetch>),
}

/// Handles one request frame (without its size prefix), appending the
/// response, if any, to `out`. `read_at` (when the connection paces its
/// responses) is when the frame was read: Produce records are reserved in
/// the executor's record bucket, if any, at that time.
pub(crate) fn handle_frame(
    exec: &ExecState,
    conn: &ConnInfo,
    frame: Bytes,
    out: &mut Vec<u8>,
    read_at: Option<Instant>,
) -> Result<Reply, FrameError> {
    let Some(key) = check_frame(exec, &frame, out)? else {
        return Ok(Reply::Control);
    };
    let version = be_i16(&frame[2..4]);
    let mut buf = frame;
    let header = decode_request_header_from_buffer(&mut buf)
        .map_err(|e| err(format!("bad {key:?} v{version} request header: {e}")))?;
    bump(&exec.counters().requests, 1);
    let req = Request {
        key,
        version,
        correlation_id: header.correlation_id,
    };
    if key == ApiKey::Produce {
        return answer_produce(exec, &req, buf, out, read_at);
    }
    if key == ApiKey::Fetch {
        return answer_fetch(exec, &req, buf, out, read_at);
    }
    answer_control(exec, conn, &req, buf, out)?;
    Ok(Reply::Control)
}

/// A request's API, version and correlation id, from its header.
struct Request {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
}

impl Request {
    fn bad_body(&self, e: impl std::fmt::Display) -> FrameError {
        err(format!("bad {:?} v{} request: {e}", self.key, self.version))
    }
}

/// The API of a frame the sink serves, or None when the frame was already
/// answered (an ApiVersions request in a version the sink does not know).
/// Refuses short frames, unknown APIs and versions, and oversized control
/// requests.
fn check_frame(
    exec: &ExecState,
    frame: &Bytes,
    out: &mut Vec<u8>,
) -> Result<Option<ApiKey>, FrameError> {
    // api_key i16, api_version i16, correlation_id i32: present in every
    // request header version; kafka-protocol's header decoder slices the
    // first four bytes without checking the length.
    if frame.len() < 8 {
        return Err(err(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let raw_key = be_i16(&frame[0..2]);
    let version = be_i16(&frame[2..4]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| err(format!("unknown API key {raw_key}")))?;
    let Some((min, max)) = supported_range(key) else {
        return Err(err(format!("unsupported API {key:?} v{version}")));
    };
    if !(min..=max).contains(&version) {
        if key == ApiKey::ApiVersions {
            // Like Kafka: answer in v0 with UNSUPPORTED_VERSION and the list,
            // so that the client retries with a version both sides know.
            bump(&exec.counters().requests, 1);
            let body = api_versions_body(code::UNSUPPORTED_VERSION);
            write_response(out, key, 0, correlation_id, &body)?;
            return Ok(None);
        }
        return Err(err(format!(
            "unsupported version {version} of {key:?} (sink serves {min}..={max})"
        )));
    }
    if key != ApiKey::Produce && frame.len() > MAX_CONTROL_FRAME {
        return Err(err(format!(
            "{key:?} request of {} bytes is larger than {MAX_CONTROL_FRAME}",
            frame.len()
        )));
    }
    Ok(Some(key))
}

/// Decodes and counts a Produce request and writes its response (none for
/// acks=0), with the throttle time the record bucket, if any, asks for.
fn answer_produce(
    exec: &ExecState,
    req: &Request,
    mut buf: Bytes,
    out: &mut Vec<u8>,
    read_at: Option<Instant>,
) -> Result<Reply, FrameError> {
    let version = req.version;
    guard::produce(&buf, version).map_err(|e| req.bad_body(e.0))?;
    let produce = ProduceRequest::decode(&mut buf, version).map_err(|e| req.bad_body(e))?;
    bump(&exec.counters().produce_requests, 1);
    let acks = produce.acks;
    // Consumers see the records when the producer gets its ack (as with
    // acks=all on a broker, where both wait for the high watermark).
    let visible_at = read_at
        .filter(|_| !exec.shared.ack_delay.is_zero())
        .map(|t| t + exec.shared.ack_delay);
    let (mut resp, records) = handle_produce(exec, produce, version, visible_at);
    if acks == 0 {
        return Ok(Reply::None);
    }
    let throttle = match (
        read_at,
        exec.pacing.as_ref().and_then(|p| p.bucket.as_ref()),
    ) {
        (Some(now), Some(bucket)) => bucket.borrow_mut().reserve(now, records),
        _ => Duration::ZERO,
    };
    resp.throttle_time_ms = pace::throttle_ms(throttle);
    write_response(out, req.key, version, req.correlation_id, &resp)?;
    Ok(Reply::Produce { throttle })
}

/// Decodes a Fetch request and answers it at once if it can, or parks it.
fn answer_fetch(
    exec: &ExecState,
    req: &Request,
    mut buf: Bytes,
    out: &mut Vec<u8>,
    read_at: Option<Instant>,
) -> Result<Reply, FrameError> {
    guard::fetch(&buf, req.version).map_err(|e| req.bad_body(e.0))?;
    let mut decoded = FetchRequest::decode(&mut buf, req.version).map_err(|e| req.bad_body(e))?;
    let now = read_at.unwrap_or_else(Instant::now);
    let applied = exec
        .sessions
        .borrow_mut()
        .apply(&mut decoded, req.version, now);
    let session = match applied {
        Ok(session) => session,
        Err(error_code) => {
            let (v, id) = (req.version, req.correlation_id);
            fetch::answer_session_error(exec, v, id, error_code, out)?;
            return Ok(Reply::Control);
        }
    };
    let parked = ParkedFetch::new(decoded, req.version, req.correlation_id, now, session);
    match fetch::try_answer(exec, &parked, false, out)? {
        Answer::Sent => Ok(Reply::Control),
        Answer::Wait(_) => Ok(Reply::FetchWait(Box::new(parked))),
    }
}

/// Decodes a control request (every API but Produce and Fetch) and writes its
/// response.
fn answer_control(
    exec: &ExecState,
    conn: &ConnInfo,
    req: &Request,
    mut buf: Bytes,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let (key, version, correlation_id) = (req.key, req.version, req.correlation_id);
    match key {
        ApiKey::Metadata => {
            guard::metadata(&buf, version).map_err(|e| req.bad_body(e.0))?;
            let decoded =
                MetadataRequest::decode(&mut buf, version).map_err(|e| req.bad_body(e))?;
            let resp = handle_metadata(exec, conn, decoded, version)?;
            write_response(out, key, version, correlation_id, &resp)
        }
        ApiKey::ApiVersions => {
            ApiVersionsRequest::decode(&mut buf, version).map_err(|e| req.bad_body(e))?;
            let resp = api_versions_body(code::NONE);
            write_response(out, key, version, correlation_id, &resp)
        }
        ApiKey::CreateTopics => {
            guard::create_topics(&buf, version).map_err(|e| req.bad_body(e.0))?;
            let decoded =
                CreateTopicsRequest::decode(&mut buf, version).map_err(|e| req.bad_body(e))?;
            let resp = handle_create_topics(exec, decoded, version)?;
            write_response(out, key, version, correlation_id, &resp)
        }
        ApiKey::InitProducerId => {
            InitProducerIdRequest::decode(&mut buf, version).map_err(|e| req.bad_body(e))?;
            let producer_id = exec
                .shared
                .next_producer_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let resp = InitProducerIdResponse::default()
                .with_error_code(code::NONE)
                .with_producer_id(producer_id.into())
                .with_producer_epoch(0);
            write_response(out, key, version, correlation_id, &resp)
        }
        ApiKey::ListOffsets => {
            guard::list_offsets(&buf, version).map_err(|e| req.bad_body(e.0))?;
            let decoded =
                ListOffsetsRequest::decode(&mut buf, version).map_err(|e| req.bad_body(e))?;
            let resp = list_offsets::handle(exec, decoded, version);
            write_response(out, key, version, correlation_id, &resp)
        }
        ApiKey::FindCoordinator => {
            let resp = FindCoordinatorResponse::default()
                .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
                .with_error_message(Some(StrBytes::from_static_str(NO_COORDINATOR)))
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            write_response(out, key, version, correlation_id, &resp)
        }
        _ => Err(err(format!("unsupported API {key:?}"))),
    }
}

/// Appends size prefix, response header and body to `out`.
pub(crate) fn write_response<M: Encodable>(
    out: &mut Vec<u8>,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(out, key.response_header_version(version))
        .and_then(|()| body.encode(out, version));
    if let Err(e) = encoded {
        out.truncate(start);
        return Err(err(format!(
            "cannot encode {key:?} v{version} response: {e}"
        )));
    }
    let size = out.len() - start - 4;
    let Ok(size) = i32::try_from(size) else {
        out.truncate(start);
        return Err(err(format!("{key:?} response too large ({size} bytes)")));
    };
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

pub(crate) fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

/// The response and the number of records accepted.
fn handle_produce(
    exec: &ExecState,
    req: ProduceRequest,
    version: i16,
    visible_at: Option<Instant>,
) -> (ProduceResponse, u64) {
    let acks = req.acks;
    let mut tally = ProduceTally::default();
    let mut responses = Vec::with_capacity(if acks == 0 { 0 } else { req.topic_data.len() });
    let mut topics = exec.topics.borrow_mut();
    let keep = exec.shared.keep_per_partition;
    for topic in req.topic_data {
        let name: &str = &topic.name.0;
        let keeps = keep > 0 && !exec.shared.synthetic.forced(name);
        let mut local = topics.get_mut(name);
        if local.is_none() {
            match exec.shared.registry.get_or_create(name) {
                Ok(entry) => {
                    topics.insert(name.into(), LocalTopic::new(entry));
                    local = topics.get_mut(name);
                }
                Err(e) => tracing::debug!(topic = name, error = ?e, "produce to an invalid topic"),
            }
        }
        let mut partition_responses = Vec::with_capacity(if acks == 0 {
            0
        } else {
            topic.partition_data.len()
        });
        for part in topic.partition_data {
            let (error_code, base_offset, log_start) = produce_partition(
                local.as_deref_mut(),
                part.index,
                part.records.as_deref(),
                keeps.then_some((keep, visible_at)),
                &mut tally,
            );
            if acks != 0 {
                partition_responses.push(
                    PartitionProduceResponse::default()
                        .with_index(part.index)
                        .with_error_code(error_code)
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(if version >= 5 { log_start } else { -1 }),
                );
            }
        }
        if acks != 0 {
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_partition_responses(partition_responses),
            );
        }
    }
    drop(topics);
    tally.publish(exec.counters());
    if tally.batches > 0 {
        exec.shared.wake_fetches();
    }
    (
        ProduceResponse::default().with_responses(responses),
        tally.records,
    )
}

/// Verifies, counts and (with `keep`: at most that many bytes per
/// partition) keeps one partition's batches; returns (error code, base
/// offset, log start offset).
fn produce_partition(
    local: Option<&mut LocalTopic>,
    partition: i32,
    records: Option<&[u8]>,
    keep: Option<(usize, Option<Instant>)>,
    tally: &mut ProduceTally,
) -> (i16, i64, i64) {
    let Some(local) = local else {
        tally.unknown_partitions += 1;
        return (code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
    };
    let Some(log) = local.entry.log(partition) else {
        tally.unknown_partitions += 1;
        return (code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
    };
    let records = records.unwrap_or_default();
    let scan = match batch::scan(records) {
        Ok(scan) => scan,
        Err(BatchError::Crc { batch }) => {
            tracing::debug!(topic = %local.entry.name, partition, batch, "record batch CRC mismatch");
            tally.crc_errors += 1;
            return (code::CORRUPT_MESSAGE, -1, -1);
        }
        Err(BatchError::Malformed { batch, reason }) => {
            tracing::debug!(topic = %local.entry.name, partition, batch, reason, "malformed record batch");
            tally.malformed_batches += 1;
            return (code::CORRUPT_MESSAGE, -1, -1);
        }
    };
    local.entry.mark_produced();
    let (base_offset, log_start) = match keep {
        Some((keep, visible_at)) => log.append(Staged::copy(records), keep, visible_at),
        None => log.skip(scan.offsets),
    };
    local.stats.batches += scan.batches;
    local.stats.records += scan.records;
    local.stats.batch_bytes += scan.bytes;
    tally.add(&scan);
    (code::NONE, base_offset, log_start)
}

/// The topic id as kafka-protocol's `Uuid` (the `uuid` crate's, which the
/// sink cannot name without depending on it: built through `FromStr`).
pub(crate) fn topic_uuid<T: std::str::FromStr>(id: &[u8; 16]) -> Result<T, FrameError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for b in id {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex.parse().map_err(|_| err("cannot build a topic id"))
}

fn metadata_topic(node_id: i32, entry: &TopicEntry) -> Result<MetadataResponseTopic, FrameError> {
    let partitions = (0..entry.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(code::NONE)
                .with_partition_index(p)
                .with_leader_id(BrokerId(node_id))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(node_id)])
                .with_isr_nodes(vec![BrokerId(node_id)])
        })
        .collect();
    Ok(MetadataResponseTopic::default()
        .with_error_code(code::NONE)
        .with_name(Some(TopicName(StrBytes::from_string(entry.name.clone()))))
        .with_topic_id(topic_uuid(&entry.id)?)
        .with_partitions(partitions))
}

fn handle_metadata(
    exec: &ExecState,
    conn: &ConnInfo,
    req: MetadataRequest,
    version: i16,
) -> Result<MetadataResponse, FrameError> {
    let node_id = exec.shared.node_id;
    let registry = &exec.shared.registry;
    let mut topics = Vec::new();
    match req.topics {
        // null (v1+) or, in v0, an empty list: all known topics.
        None => {
            for entry in registry.all() {
                topics.push(metadata_topic(node_id, &entry)?);
            }
        }
        Some(list) if list.is_empty() && version == 0 => {
            for entry in registry.all() {
                topics.push(metadata_topic(node_id, &entry)?);
            }
        }
        Some(list) => {
            for t in list {
                // v10+ may name a topic by id only (null or empty name).
                let name = t
                    .name
                    .clone()
                    .filter(|n| !n.0.is_empty() || t.topic_id.is_nil());
                let found = match &name {
                    Some(name) => registry
                        .get_or_create(&name.0)
                        .map_err(|e| (Some(name.clone()), e)),
                    None if !t.topic_id.is_nil() => registry
                        .by_id(t.topic_id.as_bytes())
                        .ok_or((None, RegistryError::InvalidName)),
                    None => Err((None, RegistryError::InvalidName)),
                };
                match found {
                    Ok(entry) => topics.push(metadata_topic(node_id, &entry)?),
                    Err((name, e)) => {
                        let error_code = match (&name, e) {
                            (None, _) if !t.topic_id.is_nil() => code::UNKNOWN_TOPIC_ID,
                            (_, RegistryError::InvalidName) => code::INVALID_TOPIC_EXCEPTION,
                            _ => code::UNKNOWN_TOPIC_OR_PARTITION,
                        };
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_error_code(error_code)
                                .with_name(name)
                                .with_topic_id(t.topic_id),
                        );
                    }
                }
            }
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(node_id))
        .with_host(StrBytes::from_string(conn.local_addr.ip().to_string()))
        .with_port(i32::from(conn.local_addr.port()));
    Ok(MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(node_id))
        .with_topics(topics))
}

fn handle_create_topics(
    exec: &ExecState,
    req: CreateTopicsRequest,
    version: i16,
) -> Result<CreateTopicsResponse, FrameError> {
    let registry = &exec.shared.registry;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = t.num_partitions;
        if partitions == -1 && !t.assignments.is_empty() {
            partitions = i32::try_from(t.assignments.len()).unwrap_or(i32::MAX);
        }
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        match registry.create(&t.name.0, partitions, req.validate_only) {
            Ok((count, id)) => {
                result.error_code = code::NONE;
                result.error_message = None;
                if version >= 5 {
                    result.num_partitions = count;
                    result.replication_factor = 1;
                }
                if version >= 7 {
                    result.topic_id = topic_uuid(&id)?;
                }
            }
            Err(e) => {
                let (error_code, message) = match e {
                    RegistryError::InvalidName => (
                        code::INVALID_TOPIC_EXCEPTION,
                        "invalid topic name".to_string(),
                    ),
                    RegistryError::InvalidPartitions => (
                        code::INVALID_PARTITIONS,
                        format!(
                            "partition count must be -1 or 1..={}",
                            super::MAX_PARTITIONS
                        ),
                    ),
                    RegistryError::AlreadyExists(n) => (
                        code::TOPIC_ALREADY_EXISTS,
                        format!("topic '{}' already exists with {n} partitions", &*t.name.0),
                    ),
                    RegistryError::Full => (
                        code::POLICY_VIOLATION,
                        "the sink's partition limit is reached".to_string(),
                    ),
                };
                result.error_code = error_code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        if version < 5 {
            result.configs = None;
        }
        results.push(result);
    }
    Ok(CreateTopicsResponse::default().with_topics(results))
}
