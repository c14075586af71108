//! Fetch sessions (KIP-227), one table per executor.
//!
//! A full fetch with session id 0 and epoch 0 opens a session: the sink
//! remembers its partitions (fetch offset and limits) and answers with the
//! new id. The client then sends incremental fetches (that id, epochs 1, 2,
//! ...) naming only the partitions whose fetch position or limits changed,
//! and the topics to forget; the sink fetches every partition of the
//! session and answers only those with records, an error, or a changed
//! high watermark, last stable offset or log start offset. Epoch -1 closes
//! a session (the request is then a sessionless full fetch). A session
//! lives on the executor that opened it: a client whose next request lands
//! on another executor (a new connection) gets FETCH_SESSION_ID_NOT_FOUND
//! and starts over with a full fetch, as after a broker evicted it.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::FetchRequest;

/// Sessions one executor keeps; the least recently used goes past it.
const MAX_SESSIONS: usize = 1000;

/// Kafka's FETCH_SESSION_ID_NOT_FOUND.
pub(crate) const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
/// Kafka's INVALID_FETCH_SESSION_EPOCH.
pub(crate) const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// A topic as the request names it: by name before v13, by id from v13.
type TopicKey = (Box<str>, [u8; 16]);

fn key(topic: &FetchTopic, version: i16) -> TopicKey {
    if version >= 13 {
        (Box::from(""), *topic.topic_id.as_bytes())
    } else {
        (Box::from(&*topic.topic.0), [0; 16])
    }
}

/// What a session remembers of one partition.
#[derive(Debug)]
struct SessionPartition {
    /// The request's view of it, kept to fetch it again.
    fetch: FetchPartition,
    /// The topic's name and id as the request gave them.
    topic: FetchTopic,
    /// (high watermark, last stable offset, log start) last sent.
    sent: Option<(i64, i64, i64)>,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<(TopicKey, i32), SessionPartition>,
    used: Instant,
}

/// How a parked fetch uses a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionUse {
    /// None: every partition is answered, with session id 0.
    Sessionless,
    /// A full response that opens (or re-bases) session `id`.
    Full(i32),
    /// Session `id`: only changed partitions are answered.
    Incremental(i32),
}

impl SessionUse {
    pub(crate) fn id(self) -> i32 {
        match self {
            SessionUse::Sessionless => 0,
            SessionUse::Full(id) | SessionUse::Incremental(id) => id,
        }
    }
}

/// One executor's sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    executor: u32,
    next: u32,
    map: HashMap<i32, Session>,
}

impl Sessions {
    pub(crate) fn new(executor: usize) -> Sessions {
        Sessions {
            executor: u32::try_from(executor % 127).unwrap_or(0),
            next: 0,
            map: HashMap::new(),
        }
    }

    /// Applies `req`'s session fields: opens, updates or closes a session,
    /// and rewrites `req.topics` into every partition the fetch covers.
    /// Returns how the answer uses the session, or a top-level error code.
    pub(crate) fn apply(
        &mut self,
        req: &mut FetchRequest,
        version: i16,
        now: Instant,
    ) -> Result<SessionUse, i16> {
        match (req.session_id, req.session_epoch) {
            (0, -1) => Ok(SessionUse::Sessionless),
            (0, 0) => {
                let id = self.open(now);
                let session = self.map.get_mut(&id).ok_or(FETCH_SESSION_ID_NOT_FOUND)?;
                session.update(req, version);
                Ok(SessionUse::Full(id))
            }
            (0, _) => Err(INVALID_FETCH_SESSION_EPOCH),
            (id, -1) => {
                self.map.remove(&id);
                Ok(SessionUse::Sessionless)
            }
            (id, epoch) => {
                let session = self.map.get_mut(&id).ok_or(FETCH_SESSION_ID_NOT_FOUND)?;
                if epoch != session.next_epoch {
                    return Err(INVALID_FETCH_SESSION_EPOCH);
                }
                session.next_epoch = epoch.checked_add(1).unwrap_or(1);
                session.used = now;
                session.update(req, version);
                req.topics = session.topics();
                Ok(SessionUse::Incremental(id))
            }
        }
    }

    fn open(&mut self, now: Instant) -> i32 {
        if self.map.len() >= MAX_SESSIONS {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(&id, _)| id);
            if let Some(id) = oldest {
                self.map.remove(&id);
            }
        }
        self.next = (self.next + 1) & 0x00ff_ffff;
        // The executor in the top bits, so that ids of two executors never
        // collide; never 0, never negative.
        let id = i32::try_from((self.executor << 24) | self.next.max(1)).unwrap_or(1);
        self.map.insert(
            id,
            Session {
                next_epoch: 1,
                partitions: BTreeMap::new(),
                used: now,
            },
        );
        id
    }

    /// Keeps in `responses` what session `id` must answer (all of it for a
    /// full response, the changed partitions for an incremental one) and
    /// notes what was sent.
    pub(crate) fn filter(
        &mut self,
        id: i32,
        incremental: bool,
        version: i16,
        requested: &[FetchTopic],
        responses: &mut Vec<FetchableTopicResponse>,
    ) {
        let Some(session) = self.map.get_mut(&id) else {
            return;
        };
        for (topic, resp) in requested.iter().zip(responses.iter_mut()) {
            let topic_key = key(topic, version);
            resp.partitions.retain(|p| {
                let state = (p.high_watermark, p.last_stable_offset, p.log_start_offset);
                let Some(kept) = session
                    .partitions
                    .get_mut(&(topic_key.clone(), p.partition_index))
                else {
                    return true;
                };
                let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                let changed = has_records || p.error_code != 0 || kept.sent != Some(state);
                kept.sent = Some(state);
                changed || !incremental
            });
        }
        if incremental {
            responses.retain(|t| !t.partitions.is_empty());
        }
    }
}

impl Session {
    /// Adds or updates the request's partitions; drops the forgotten ones.
    fn update(&mut self, req: &FetchRequest, version: i16) {
        for topic in &req.topics {
            let k = key(topic, version);
            let bare = FetchTopic::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id);
            for p in &topic.partitions {
                let entry = self
                    .partitions
                    .entry((k.clone(), p.partition))
                    .or_insert_with(|| SessionPartition {
                        fetch: p.clone(),
                        topic: bare.clone(),
                        sent: None,
                    });
                entry.fetch = p.clone();
            }
        }
        for forgotten in &req.forgotten_topics_data {
            let k: TopicKey = if version >= 13 {
                (Box::from(""), *forgotten.topic_id.as_bytes())
            } else {
                (Box::from(&*forgotten.topic.0), [0; 16])
            };
            for &partition in &forgotten.partitions {
                self.partitions.remove(&(k.clone(), partition));
            }
        }
    }

    /// Every partition of the session, grouped by topic.
    fn topics(&self) -> Vec<FetchTopic> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut last: Option<&TopicKey> = None;
        for ((k, _), p) in &self.partitions {
            if last != Some(k) {
                topics.push(p.topic.clone());
                last = Some(k);
            }
            if let Some(t) = topics.last_mut() {
                t.partitions.push(p.fetch.clone());
            }
        }
        topics
    }
}
