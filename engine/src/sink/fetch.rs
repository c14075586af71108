//! Fetch: whole batches from each partition's kept log (`log`) or from the
//! synthetic batch (`synthetic`), within the request's byte limits, and a
//! long poll (min_bytes, max_wait) that the connection task awaits
//! (`server::long_poll`).
//!
//! Sessions (KIP-227) are in `session`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use super::handlers::{write_response, FrameError};
use super::log::{self, OutOfRange};
use super::registry::TopicEntry;
use super::server::{ExecState, LocalTopic};
use super::session::SessionUse;
use super::stats::bump;
use crate::wire::codes as code;

/// Longest long poll the sink honours (a client asking more gets this).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A decoded Fetch request waiting to be answered.
#[derive(Debug)]
pub(crate) struct ParkedFetch {
    pub req: FetchRequest,
    pub version: i16,
    pub correlation_id: i32,
    /// When max_wait runs out.
    pub deadline: Instant,
    pub session: SessionUse,
}

impl ParkedFetch {
    pub(crate) fn new(
        req: FetchRequest,
        version: i16,
        correlation_id: i32,
        now: Instant,
        session: SessionUse,
    ) -> Self {
        let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
        ParkedFetch {
            req,
            version,
            correlation_id,
            deadline: now + wait.min(MAX_WAIT),
            session,
        }
    }
}

/// What `try_answer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The response is in `out`.
    Sent,
    /// Not enough data yet; more becomes visible at this instant, if known
    /// (batches whose Produce is still held by the ack delay).
    Wait(Option<Instant>),
}

/// Answers `parked` into `out` if it has enough data, an error, or `last`
/// (max_wait is over or the sink stops).
pub(crate) fn try_answer(
    exec: &ExecState,
    parked: &ParkedFetch,
    last: bool,
    out: &mut Vec<u8>,
) -> Result<Answer, FrameError> {
    let req = &parked.req;
    let (key, version) = (kafka_protocol::messages::ApiKey::Fetch, parked.version);
    let mut topics = exec.topics.borrow_mut();
    let mut collect = Collect {
        exec,
        max_bytes: usize::try_from(req.max_bytes).unwrap_or(0),
        read_committed: req.isolation_level == 1,
        now: Instant::now(),
        next_visible: None,
        bytes: 0,
        records: 0,
        error: false,
    };
    let mut responses = Vec::with_capacity(req.topics.len());
    let mut per_topic = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let (resp, name, records, bytes) = collect.topic(&mut topics, topic, version)?;
        responses.push(resp);
        per_topic.push((name, records, bytes));
    }
    let enough = collect.bytes >= usize::try_from(req.min_bytes).unwrap_or(0);
    if !(last || enough || collect.error || req.max_wait_ms <= 0 || req.topics.is_empty()) {
        return Ok(Answer::Wait(collect.next_visible));
    }
    let mut responses = responses;
    if let SessionUse::Full(id) | SessionUse::Incremental(id) = parked.session {
        let incremental = matches!(parked.session, SessionUse::Incremental(_));
        exec.sessions
            .borrow_mut()
            .filter(id, incremental, version, &req.topics, &mut responses);
    }
    let resp = FetchResponse::default()
        .with_error_code(code::NONE)
        .with_session_id(parked.session.id())
        .with_responses(responses);
    write_response(out, key, version, parked.correlation_id, &resp)?;
    let c = exec.counters();
    bump(&c.fetch_requests, 1);
    bump(&c.fetch_records, collect.records);
    bump(&c.fetch_bytes, collect.bytes as u64);
    for (name, records, bytes) in per_topic {
        if let Some(local) = name.and_then(|e| topics.get_mut(e.name.as_str())) {
            local.stats.fetch_records += records;
            local.stats.fetch_bytes += bytes;
        }
    }
    Ok(Answer::Sent)
}

/// One response being assembled: what it holds so far.
struct Collect<'a> {
    exec: &'a ExecState,
    max_bytes: usize,
    read_committed: bool,
    now: Instant,
    /// The earliest instant a batch not yet visible becomes visible.
    next_visible: Option<Instant>,
    bytes: usize,
    records: u64,
    error: bool,
}

/// A topic's response, the topic's name when known, its records and bytes.
type TopicAnswer = (FetchableTopicResponse, Option<Arc<TopicEntry>>, u64, u64);

impl Collect<'_> {
    fn topic(
        &mut self,
        topics: &mut HashMap<Box<str>, LocalTopic>,
        topic: &FetchTopic,
        version: i16,
    ) -> Result<TopicAnswer, FrameError> {
        let mut resp = FetchableTopicResponse::default();
        if version >= 13 {
            resp.topic_id = topic.topic_id;
        } else {
            resp.topic = topic.topic.clone();
        }
        let Some(entry) = resolve(self.exec, topics, topic, version) else {
            let error_code = if version >= 13 {
                code::UNKNOWN_TOPIC_ID
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            };
            self.error = true;
            resp.partitions = topic
                .partitions
                .iter()
                .map(|p| error_partition(p.partition, error_code, -1, -1))
                .collect();
            return Ok((resp, None, 0, 0));
        };
        let (before_records, before_bytes) = (self.records, self.bytes);
        let synthetic = self
            .exec
            .shared
            .synthetic
            .serves(&entry.name, entry.produced());
        resp.partitions = topic
            .partitions
            .iter()
            .map(|p| self.partition(&entry, p, synthetic))
            .collect();
        Ok((
            resp,
            Some(entry),
            self.records - before_records,
            (self.bytes - before_bytes) as u64,
        ))
    }

    fn partition(
        &mut self,
        entry: &TopicEntry,
        p: &FetchPartition,
        synthetic: bool,
    ) -> PartitionData {
        let Some(log) = entry.log(p.partition) else {
            self.error = true;
            return error_partition(p.partition, code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
        };
        let budget = usize::try_from(p.partition_max_bytes)
            .unwrap_or(0)
            .min(self.max_bytes.saturating_sub(self.bytes));
        let min_one = self.bytes == 0;
        let (records, count, high_watermark, log_start) = if synthetic {
            if p.fetch_offset < 0 {
                self.error = true;
                return error_partition(p.partition, code::OFFSET_OUT_OF_RANGE, 0, 0);
            }
            let read = self
                .exec
                .shared
                .synthetic
                .read(p.fetch_offset, budget, min_one);
            (read.records, read.record_count, read.high_watermark, 0)
        } else {
            match log.read(p.fetch_offset, budget, min_one, self.now) {
                Ok(read) => {
                    if let Some(t) = read.next_visible {
                        self.next_visible = Some(self.next_visible.map_or(t, |n| n.min(t)));
                    }
                    (
                        log::join(read.parts, read.bytes),
                        read.records,
                        read.high_watermark,
                        read.log_start,
                    )
                }
                Err(OutOfRange {
                    high_watermark,
                    log_start,
                }) => {
                    self.error = true;
                    return error_partition(
                        p.partition,
                        code::OFFSET_OUT_OF_RANGE,
                        high_watermark,
                        log_start,
                    );
                }
            }
        };
        self.bytes += records.len();
        self.records += count;
        PartitionData::default()
            .with_partition_index(p.partition)
            .with_error_code(code::NONE)
            .with_high_watermark(high_watermark)
            // No transactions: everything below the high watermark is stable.
            .with_last_stable_offset(high_watermark)
            .with_log_start_offset(log_start)
            .with_aborted_transactions(self.read_committed.then(Vec::new))
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(records))
    }
}

fn error_partition(partition: i32, error_code: i16, hw: i64, log_start: i64) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(error_code)
        .with_high_watermark(hw)
        .with_last_stable_offset(hw)
        .with_log_start_offset(log_start)
        .with_aborted_transactions(None)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// The topic a Fetch names (by name before v13, by id from v13), through
/// the executor's caches; Fetch creates no topic.
fn resolve(
    exec: &ExecState,
    topics: &mut HashMap<Box<str>, LocalTopic>,
    topic: &FetchTopic,
    version: i16,
) -> Option<Arc<TopicEntry>> {
    if version >= 13 {
        let id = *topic.topic_id.as_bytes();
        if let Some(entry) = exec.topic_ids.borrow().get(&id) {
            return Some(Arc::clone(entry));
        }
        let entry = exec.shared.registry.by_id(&id)?;
        exec.topic_ids.borrow_mut().insert(id, Arc::clone(&entry));
        topics
            .entry(Box::from(entry.name.as_str()))
            .or_insert_with(|| LocalTopic::new(Arc::clone(&entry)));
        return Some(entry);
    }
    let name: &str = &topic.topic.0;
    if let Some(local) = topics.get(name) {
        return Some(Arc::clone(&local.entry));
    }
    let entry = exec.shared.registry.get(name)?;
    topics.insert(Box::from(name), LocalTopic::new(Arc::clone(&entry)));
    Some(entry)
}

/// Answers a Fetch whose session fields were refused.
pub(crate) fn answer_session_error(
    exec: &ExecState,
    version: i16,
    correlation_id: i32,
    error_code: i16,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let resp = FetchResponse::default().with_error_code(error_code);
    let key = kafka_protocol::messages::ApiKey::Fetch;
    write_response(out, key, version, correlation_id, &resp)?;
    bump(&exec.counters().fetch_requests, 1);
    Ok(())
}
