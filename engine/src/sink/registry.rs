//! The topic registry, shared by all executors. It is touched by Metadata,
//! CreateTopics and the first Produce to a topic on an executor (which then
//! caches the entry), never per batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::log::PartitionLog;
use std::sync::{Arc, Mutex, MutexGuard};

/// Most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 100_000;
/// Most partitions all topics together may have (bounds the memory a client
/// can make the sink allocate through CreateTopics/Metadata).
const MAX_TOTAL_PARTITIONS: usize = 1 << 20;
/// Longest topic name Kafka allows.
const MAX_TOPIC_NAME: usize = 249;

#[derive(Debug)]
pub(crate) struct TopicEntry {
    pub name: String,
    pub partitions: i32,
    pub id: [u8; 16],
    /// Set by the first Produce to the topic (or its creation through
    /// CreateTopics): from then on it is served from its kept logs, not
    /// synthetic data (see `synthetic`).
    produced: AtomicBool,
    logs: Box<[PartitionLog]>,
}

impl TopicEntry {
    fn new(name: &str, partitions: i32) -> TopicEntry {
        let logs = (0..partitions).map(|_| PartitionLog::default()).collect();
        TopicEntry {
            name: name.to_string(),
            partitions,
            id: topic_id(name),
            produced: AtomicBool::new(false),
            logs,
        }
    }

    /// Partition `partition`'s log, or `None` if it does not exist.
    pub(crate) fn log(&self, partition: i32) -> Option<&PartitionLog> {
        self.logs.get(usize::try_from(partition).ok()?)
    }

    pub(crate) fn produced(&self) -> bool {
        self.produced.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_produced(&self) {
        if !self.produced() {
            self.produced.store(true, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryError {
    InvalidName,
    InvalidPartitions,
    /// Exists with this partition count (different from the one asked).
    AlreadyExists(i32),
    Full,
}

#[derive(Debug, Default)]
struct Inner {
    topics: BTreeMap<String, Arc<TopicEntry>>,
    total_partitions: usize,
}

#[derive(Debug)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    default_partitions: i32,
}

impl Registry {
    pub(crate) fn new(default_partitions: i32) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            default_partitions,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding
        // it; the map itself is always consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The topic, registered with the default partition count if new.
    pub(crate) fn get_or_create(&self, name: &str) -> Result<Arc<TopicEntry>, RegistryError> {
        let mut inner = self.lock();
        if let Some(t) = inner.topics.get(name) {
            return Ok(Arc::clone(t));
        }
        check_name(name)?;
        insert(&mut inner, name, self.default_partitions)
    }

    /// CreateTopics: `partitions` -1 means the default. An existing topic
    /// with the same count is fine (idempotent setup), with another count it
    /// is `AlreadyExists`. Returns the partition count and topic id.
    pub(crate) fn create(
        &self,
        name: &str,
        partitions: i32,
        validate_only: bool,
    ) -> Result<(i32, [u8; 16]), RegistryError> {
        check_name(name)?;
        let partitions = if partitions == -1 {
            self.default_partitions
        } else {
            partitions
        };
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(RegistryError::InvalidPartitions);
        }
        let mut inner = self.lock();
        if let Some(t) = inner.topics.get(name) {
            return if t.partitions == partitions {
                if !validate_only {
                    t.mark_produced();
                }
                Ok((t.partitions, t.id))
            } else {
                Err(RegistryError::AlreadyExists(t.partitions))
            };
        }
        if validate_only {
            if inner.total_partitions + partitions as usize > MAX_TOTAL_PARTITIONS {
                return Err(RegistryError::Full);
            }
            return Ok((partitions, topic_id(name)));
        }
        insert(&mut inner, name, partitions).map(|t| {
            t.mark_produced();
            (t.partitions, t.id)
        })
    }

    /// The topic, if registered (Fetch and ListOffsets create nothing).
    pub(crate) fn get(&self, name: &str) -> Option<Arc<TopicEntry>> {
        self.lock().topics.get(name).cloned()
    }

    pub(crate) fn by_id(&self, id: &[u8; 16]) -> Option<Arc<TopicEntry>> {
        self.lock().topics.values().find(|t| &t.id == id).cloned()
    }

    /// All topics, sorted by name.
    pub(crate) fn all(&self) -> Vec<Arc<TopicEntry>> {
        self.lock().topics.values().cloned().collect()
    }
}

fn insert(
    inner: &mut Inner,
    name: &str,
    partitions: i32,
) -> Result<Arc<TopicEntry>, RegistryError> {
    let n = usize::try_from(partitions).map_err(|_| RegistryError::InvalidPartitions)?;
    if inner.total_partitions + n > MAX_TOTAL_PARTITIONS {
        return Err(RegistryError::Full);
    }
    let entry = Arc::new(TopicEntry::new(name, partitions));
    inner.total_partitions += n;
    inner.topics.insert(name.to_string(), Arc::clone(&entry));
    Ok(entry)
}

/// Kafka's rule: 1..=249 characters out of `[a-zA-Z0-9._-]`, not "." or "..".
pub(crate) fn check_name(name: &str) -> Result<(), RegistryError> {
    let legal = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if legal {
        Ok(())
    } else {
        Err(RegistryError::InvalidName)
    }
}

/// A stable topic id derived from the name: two FNV-1a 64-bit hashes, with
/// the UUID version (8, "custom") and variant bits set, never nil.
pub(crate) fn topic_id(name: &str) -> [u8; 16] {
    fn fnv1a(seed: u64, data: &[u8]) -> u64 {
        let mut h = seed;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
    let hi = fnv1a(0xcbf2_9ce4_8422_2325, name.as_bytes());
    let lo = fnv1a(0x84222325_cbf29ce4 ^ hi.rotate_left(17), name.as_bytes());
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hi.to_be_bytes());
    id[8..].copy_from_slice(&lo.to_be_bytes());
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}
