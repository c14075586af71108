//! The consumer's side of the wire: Fetch requests with fetch sessions
//! (KIP-227), ListOffsets, and the topic id Fetch v13+ addresses topics by.
//!
//! Requests go through kafka-protocol (`control::encode_request`, one
//! allocation per request, never per record) and responses through
//! `control::decode_response`, whose structural walk (`guard`) refuses
//! hostile counts before kafka-protocol allocates. The records of a
//! partition stay one `Bytes` slice of the response for the batch reader.

use crate::conn::{ConnError, Connection};
use crate::wire::codes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
pub use uuid::Uuid;

/// Fetch versions this client speaks: v4 (the oldest kafka-protocol
/// encodes) to v18; sessions from v7, topic ids from v13.
pub const FETCH_VERSIONS: (i16, i16) = (4, 18);
/// ListOffsets versions (v2 adds the isolation level).
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 10);
/// Metadata versions that carry topic ids.
const METADATA_ID_VERSIONS: (i16, i16) = (10, 12);

/// ListOffsets' "earliest offset" timestamp.
pub const EARLIEST: i64 = -2;
/// ListOffsets' "latest offset" (high watermark, or last stable offset
/// under read_committed) timestamp.
pub const LATEST: i64 = -1;

/// Fetch-session errors after which the next request must be a full one.
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// Which records a consumer may see (Kafka's isolation.level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions, up to the last stable offset.
    ReadCommitted,
}

impl Isolation {
    /// The wire value.
    pub fn level(self) -> i8 {
        match self {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        }
    }
}

/// A Fetch request's limits; the defaults are the Java consumer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FetchLimits {
    /// fetch.min.bytes: the broker answers once this much is there...
    pub min_bytes: i32,
    /// fetch.max.wait.ms: ...or once this long has passed.
    pub max_wait: Duration,
    /// fetch.max.bytes: a response's size (soft: one batch always comes back).
    pub max_bytes: i32,
    /// max.partition.fetch.bytes: per partition in a response (soft, as above).
    pub partition_max_bytes: i32,
    pub isolation: Isolation,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            min_bytes: 1,
            max_wait: Duration::from_millis(500),
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
            isolation: Isolation::ReadUncommitted,
        }
    }
}

/// A topic as Fetch addresses it: by name up to v12, by id from v13.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicRef {
    pub name: String,
    /// `Uuid::nil()` when the broker gave none (Metadata before v10).
    pub id: Uuid,
}

impl FetchTopicRef {
    fn topic_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.name.clone()))
    }

    /// Whether a response's topic is this one.
    pub fn matches(&self, t: &FetchableTopicResponse, version: i16) -> bool {
        if version >= 13 {
            t.topic_id == self.id
        } else {
            *t.topic == *self.name
        }
    }
}

/// The Fetch version to use with `conn`: the highest both sides speak,
/// but at most v12 when the topic's id is unknown (v13+ names topics by id).
pub fn fetch_version(conn: &Connection, topic: &FetchTopicRef) -> Result<i16, ConnError> {
    let v = conn.version_for::<FetchRequest>(FETCH_VERSIONS)?;
    if v < 13 || !topic.id.is_nil() {
        return Ok(v);
    }
    conn.version_for::<FetchRequest>((FETCH_VERSIONS.0, 12))
}

/// What the session bookkeeping puts into the next Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    pub session_id: i32,
    pub epoch: i32,
    /// A full request lists every partition; an incremental one only those
    /// that are new or whose fetch offset moved.
    pub full: bool,
    /// (partition, fetch offset) to send.
    pub partitions: Vec<(i32, i64)>,
    /// Partitions to drop from the broker's session.
    pub forgotten: Vec<i32>,
}

/// One connection's fetch session (KIP-227). The first request is full
/// (session id 0, epoch 0) and asks the broker for a session; while the
/// broker keeps one, each request carries its id and the next epoch and
/// lists only what changed. FETCH_SESSION_ID_NOT_FOUND,
/// INVALID_FETCH_SESSION_EPOCH, any other top-level error or a lost
/// connection start over with a full request. A broker that answers with
/// session id 0 keeps no session: every request is then full (and asks
/// again, as the Java client does). Before Fetch v7 there are no sessions
/// (epoch -1 on the wire, every request full).
#[derive(Debug, Clone)]
pub struct FetchSession {
    sessions: bool,
    id: i32,
    /// The epoch of the next incremental request.
    epoch: i32,
    /// The partitions the broker's session holds, with the fetch offset it
    /// was last sent.
    cached: BTreeMap<i32, i64>,
    /// The request in flight was full.
    last_full: bool,
}

impl FetchSession {
    /// A session for a connection speaking `version`.
    pub fn new(version: i16) -> Self {
        FetchSession {
            sessions: version >= 7,
            id: 0,
            epoch: 0,
            cached: BTreeMap::new(),
            last_full: true,
        }
    }

    /// The broker's session id (0: none).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The epoch the next incremental request will carry.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// What the next request for `wanted` (partition, next offset) carries.
    pub fn next_request(&mut self, wanted: &[(i32, i64)]) -> SessionRequest {
        if !self.sessions || self.id == 0 {
            self.last_full = true;
            self.cached = wanted.iter().copied().collect();
            return SessionRequest {
                session_id: 0,
                epoch: if self.sessions { 0 } else { -1 },
                full: true,
                partitions: wanted.to_vec(),
                forgotten: Vec::new(),
            };
        }
        self.last_full = false;
        let partitions: Vec<(i32, i64)> = wanted
            .iter()
            .copied()
            .filter(|(p, o)| self.cached.get(p) != Some(o))
            .collect();
        let forgotten: Vec<i32> = self
            .cached
            .keys()
            .copied()
            .filter(|p| !wanted.iter().any(|(w, _)| w == p))
            .collect();
        self.cached = wanted.iter().copied().collect();
        SessionRequest {
            session_id: self.id,
            epoch: self.epoch,
            full: false,
            partitions,
            forgotten,
        }
    }

    /// Takes a response's top-level error code and session id.
    pub fn on_response(&mut self, error: i16, session_id: i32) {
        if !self.sessions {
            return;
        }
        if error != 0 {
            // FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH and
            // anything else at the top: the broker's session (if any) is
            // not what we think it is.
            self.reset();
            return;
        }
        if self.last_full {
            self.id = session_id;
            self.epoch = 1;
        } else {
            // Epochs run 1..=i32::MAX and wrap to 1 (0 asks for a new session).
            self.epoch = if self.epoch == i32::MAX {
                1
            } else {
                self.epoch + 1
            };
        }
    }

    /// Forgets the session (a lost connection, an error): the next request is full.
    pub fn reset(&mut self) {
        self.id = 0;
        self.epoch = 0;
        self.cached.clear();
        self.last_full = true;
    }
}

/// The Fetch request for one topic, as the session says.
pub fn fetch_request(
    version: i16,
    topic: &FetchTopicRef,
    limits: &FetchLimits,
    s: &SessionRequest,
) -> FetchRequest {
    let partitions = s
        .partitions
        .iter()
        .map(|&(p, offset)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(limits.partition_max_bytes)
        })
        .collect();
    let mut t = FetchTopic::default().with_partitions(partitions);
    t = if version >= 13 {
        t.with_topic_id(topic.id)
    } else {
        t.with_topic(topic.topic_name())
    };
    let mut req = FetchRequest::default()
        .with_max_wait_ms(limits.max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(limits.isolation.level())
        .with_session_id(s.session_id)
        .with_session_epoch(s.epoch);
    // An incremental request with nothing changed carries no topic at all.
    if !s.partitions.is_empty() || s.full {
        req = req.with_topics(vec![t]);
    }
    if !s.forgotten.is_empty() && version >= 7 {
        let mut f = ForgottenTopic::default().with_partitions(s.forgotten.clone());
        f = if version >= 13 {
            f.with_topic_id(topic.id)
        } else {
            f.with_topic(topic.topic_name())
        };
        req = req.with_forgotten_topics_data(vec![f]);
    }
    req
}

/// One partition's answer to ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub partition: i32,
    pub error: i16,
    /// -1 when no record has a timestamp at or after the one asked for.
    pub offset: i64,
}

/// Asks `conn` (the partitions' leader) for the offset of `timestamp`
/// (`EARLIEST`, `LATEST` or milliseconds since the epoch) in each partition.
pub async fn list_offsets(
    conn: &mut Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    isolation: Isolation,
) -> Result<Vec<ListedOffset>, ConnError> {
    let version = conn.version_for::<ListOffsetsRequest>(LIST_OFFSETS_VERSIONS)?;
    let mut req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    if version >= 2 {
        req = req.with_isolation_level(isolation.level());
    }
    let resp = conn.request(&req, version).await?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| ListedOffset {
            partition: p.partition_index,
            error: p.error_code,
            offset: p.offset,
        })
        .collect())
}

/// The topic's id (Metadata v10+), or nil where the broker has none to give.
pub async fn topic_id(conn: &mut Connection, topic: &str) -> Result<Uuid, ConnError> {
    let key = <MetadataRequest as kafka_protocol::protocol::Request>::KEY;
    let Some(version) = conn.versions().pick(key, METADATA_ID_VERSIONS) else {
        return Ok(Uuid::nil());
    };
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_owned())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let resp = conn.request(&req, version).await?;
    Ok(resp
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| &**n) == Some(topic) && t.error_code == 0)
        .map_or(Uuid::nil(), |t| t.topic_id))
}

/// What a partition error in a Fetch response asks the consumer to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionFault {
    /// The leader moved or is unknown: refresh metadata and refetch there.
    Leader,
    /// The fetch offset is outside the log: reset it by policy.
    OutOfRange,
    /// Retriable: try again.
    Retry,
    /// Neither retriable nor handled: stop.
    Fatal,
}

/// Classifies a non-zero partition error code of a Fetch response.
pub fn partition_fault(code: i16) -> PartitionFault {
    match code {
        // NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
        // LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH,
        // REPLICA_NOT_AVAILABLE, KAFKA_STORAGE_ERROR, UNKNOWN_TOPIC_ID,
        // INCONSISTENT_TOPIC_ID, OFFSET_NOT_AVAILABLE.
        6 | 3 | 5 | 74 | 75 | 9 | 56 | 100 | 103 | 78 => PartitionFault::Leader,
        1 => PartitionFault::OutOfRange,
        c if codes::lookup(c).retriable => PartitionFault::Retry,
        _ => PartitionFault::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::control::{decode_response, encode_request};
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_response::PartitionData;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn first_request_is_full_then_incremental_with_changes_only() {
        let mut s = FetchSession::new(12);
        let r = s.next_request(&[(0, 10), (1, 20)]);
        assert_eq!((r.session_id, r.epoch, r.full), (0, 0, true));
        assert_eq!(r.partitions, vec![(0, 10), (1, 20)]);
        s.on_response(0, 77);
        assert_eq!((s.id(), s.epoch()), (77, 1));
        // Partition 0 moved on; 1 did not; 2 is new.
        let r = s.next_request(&[(0, 15), (1, 20), (2, 0)]);
        assert_eq!((r.session_id, r.epoch, r.full), (77, 1, false));
        assert_eq!(r.partitions, vec![(0, 15), (2, 0)]);
        assert!(r.forgotten.is_empty());
        s.on_response(0, 77);
        assert_eq!(s.epoch(), 2);
        // Nothing moved: an empty incremental request. Partition 1 left.
        let r = s.next_request(&[(0, 15), (2, 0)]);
        assert!(r.partitions.is_empty());
        assert_eq!(r.forgotten, vec![1]);
        assert_eq!(r.epoch, 2);
    }

    #[test]
    fn session_errors_and_sessionless_brokers_fall_back_to_full() {
        for code in [FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH] {
            let mut s = FetchSession::new(12);
            s.next_request(&[(0, 1)]);
            s.on_response(0, 5);
            s.next_request(&[(0, 2)]);
            s.on_response(code, 0);
            let r = s.next_request(&[(0, 2)]);
            assert_eq!((r.session_id, r.epoch, r.full), (0, 0, true), "{code}");
            assert_eq!(r.partitions, vec![(0, 2)]);
        }
        // Session id 0 in a full response: no session, full every time.
        let mut s = FetchSession::new(12);
        for _ in 0..3 {
            let r = s.next_request(&[(0, 1), (3, 4)]);
            assert!(r.full && r.partitions.len() == 2 && r.epoch == 0);
            s.on_response(0, 0);
        }
        // Before v7: sessionless on the wire (epoch -1).
        let mut s = FetchSession::new(6);
        let r = s.next_request(&[(0, 1)]);
        assert_eq!((r.session_id, r.epoch, r.full), (0, -1, true));
        s.on_response(0, 9);
        assert!(s.next_request(&[(0, 1)]).full);
    }

    #[test]
    fn epochs_wrap_to_one() {
        let mut s = FetchSession::new(12);
        s.next_request(&[]);
        s.on_response(0, 3);
        s.epoch = i32::MAX;
        s.next_request(&[]);
        s.on_response(0, 3);
        assert_eq!(s.epoch(), 1);
    }

    fn topic() -> FetchTopicRef {
        FetchTopicRef {
            name: "t".into(),
            id: Uuid::from_u128(0x1234),
        }
    }

    #[test]
    fn requests_encode_in_every_version() {
        let mut s = FetchSession::new(12);
        let full = s.next_request(&[(0, 5), (1, 6)]);
        s.on_response(0, 9);
        let inc = s.next_request(&[(0, 7)]);
        for v in FETCH_VERSIONS.0..=FETCH_VERSIONS.1 {
            for sr in [&full, &inc] {
                let sr = if v < 7 {
                    FetchSession::new(v).next_request(&sr.partitions)
                } else {
                    sr.clone()
                };
                let req = fetch_request(v, &topic(), &FetchLimits::default(), &sr);
                let frame = encode_request(&req, v, 1, "c").unwrap_or_else(|e| panic!("v{v}: {e}"));
                // Skip size, then the request header.
                let mut body = bytes::Bytes::copy_from_slice(&frame[4..]);
                use kafka_protocol::protocol::HeaderVersion;
                kafka_protocol::messages::RequestHeader::decode(
                    &mut body,
                    FetchRequest::header_version(v),
                )
                .unwrap();
                let back = FetchRequest::decode(&mut body, v).unwrap();
                assert_eq!(back.max_wait_ms, 500);
                if v >= 13 {
                    assert_eq!(back.topics.first().map(|t| t.topic_id), Some(topic().id));
                }
                if v >= 7 && !sr.forgotten.is_empty() {
                    assert_eq!(back.forgotten_topics_data[0].partitions, vec![1]);
                }
            }
        }
    }

    #[test]
    fn responses_decode_through_the_guard_and_match_the_topic() {
        let t = topic();
        for v in [4, 7, 11, 12, 13, 16, 18] {
            let mut topic_resp =
                FetchableTopicResponse::default().with_partitions(vec![PartitionData::default()
                    .with_partition_index(3)
                    .with_high_watermark(42)
                    .with_records(Some(bytes::Bytes::from_static(b"abc")))]);
            topic_resp = if v >= 13 {
                topic_resp.with_topic_id(t.id)
            } else {
                topic_resp.with_topic(t.topic_name())
            };
            let resp = FetchResponse::default()
                .with_session_id(if v >= 7 { 9 } else { 0 })
                .with_responses(vec![topic_resp]);
            let mut body = BytesMut::new();
            body.extend_from_slice(&5i32.to_be_bytes());
            use kafka_protocol::protocol::HeaderVersion;
            if FetchResponse::header_version(v) >= 1 {
                body.extend_from_slice(&[0]); // no header tags
            }
            resp.encode(&mut body, v).unwrap();
            let got = decode_response::<FetchRequest>(&body, v, 5).unwrap();
            assert!(t.matches(&got.responses[0], v), "v{v}");
            let p = &got.responses[0].partitions[0];
            assert_eq!((p.partition_index, p.high_watermark), (3, 42));
            assert_eq!(p.records.as_deref(), Some(&b"abc"[..]));
            // Every truncation is an error, not a panic.
            for cut in 0..body.len() {
                let _ = decode_response::<FetchRequest>(&body[..cut], v, 5);
            }
        }
    }

    #[test]
    fn partition_errors_are_classified() {
        assert_eq!(partition_fault(6), PartitionFault::Leader);
        assert_eq!(partition_fault(74), PartitionFault::Leader);
        assert_eq!(partition_fault(3), PartitionFault::Leader);
        assert_eq!(partition_fault(1), PartitionFault::OutOfRange);
        assert_eq!(partition_fault(29), PartitionFault::Fatal); // TOPIC_AUTHORIZATION_FAILED
    }
}
