//! Proof of delivery: read a topic back (ListOffsets, then Fetch from each
//! partition's leader) and check the `ds-seq` sequence headers: per
//! producing instance, shard and partition, which record numbers are
//! there, which are missing, doubled or out of order, and (given what the
//! producer had acknowledged) how many acknowledged records were lost.

use crate::plan::SEQUENCE_HEADER;
use bytes::Bytes;
use datastorm_engine::cluster;
use datastorm_engine::conn::{ConnectOptions, Connection};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What to read.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    pub bootstrap: Vec<String>,
    pub topic: String,
    pub client_id: String,
    pub connect_timeout: Duration,
    /// Give up reading after this long.
    pub timeout: Duration,
    /// TLS and SASL, as for producing.
    pub security: datastorm_engine::SecurityConfig,
}

/// Who produced a record: (instance, shard, partition named in the header).
pub type Producer = (u32, u32, i32);

/// The records of one producer shard in one partition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeqCheck {
    pub records: u64,
    pub distinct: u64,
    /// The highest record number seen.
    pub max_seq: Option<u64>,
    /// Numbers below the highest that are missing.
    pub gaps: u64,
    pub duplicates: u64,
    /// Records whose number is below one read before them in the partition.
    pub out_of_order: u64,
    /// The header names another partition than the one the record is in.
    pub wrong_partition: u64,
    /// Acknowledged numbers (from the producer's results) that are missing.
    pub acked_missing: u64,
    /// Acknowledged numbers checked.
    pub acked: u64,
    #[serde(skip)]
    seen: Vec<u64>,
    #[serde(skip)]
    last: Option<u64>,
}

impl SeqCheck {
    pub(crate) fn add(&mut self, seq: u64) {
        self.records += 1;
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.seen.len() {
            // Bounded by the numbers the producer wrote: 1 bit per record.
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= 1 << bit;
            self.distinct += 1;
        }
        if self.last.is_some_and(|l| seq < l) {
            self.out_of_order += 1;
        }
        self.last = Some(seq);
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    pub(crate) fn finish(&mut self) {
        self.gaps = self.max_seq.map_or(0, |m| m + 1 - self.distinct);
    }

    /// Nothing missing, doubled or misplaced (and every acked record there).
    pub fn exact(&self) -> bool {
        self.gaps == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.wrong_partition == 0
            && self.acked_missing == 0
    }
}

/// The whole check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub topic: String,
    /// Per partition: (first offset, end offset) when reading started.
    pub offsets: BTreeMap<i32, (i64, i64)>,
    pub records_read: u64,
    /// Records without a `ds-seq` header (not produced with --sequence-header).
    pub without_header: u64,
    #[serde(serialize_with = "ser_producers")]
    pub producers: BTreeMap<Producer, SeqCheck>,
    /// Acknowledged records checked against the topic, and those missing.
    pub acked_checked: u64,
    pub acked_missing: u64,
}

fn ser_producers<S: serde::Serializer>(
    m: &BTreeMap<Producer, SeqCheck>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.len()))?;
    for ((instance, shard, partition), c) in m {
        #[derive(Serialize)]
        struct Row<'a> {
            instance: u32,
            shard: u32,
            partition: i32,
            #[serde(flatten)]
            check: &'a SeqCheck,
        }
        seq.serialize_element(&Row {
            instance: *instance,
            shard: *shard,
            partition: *partition,
            check: c,
        })?;
    }
    seq.end()
}

impl VerifyReport {
    pub fn exact(&self) -> bool {
        self.producers.values().all(SeqCheck::exact) && self.acked_missing == 0
    }

    /// Checks what a producer acknowledged: per (instance, shard, partition)
    /// half-open ranges of record numbers. Call after `verify`.
    pub fn check_acked(&mut self, acked: &BTreeMap<Producer, Vec<(u64, u64)>>) {
        for (key, ranges) in acked {
            let check = self.producers.entry(*key).or_default();
            for &(start, end) in ranges {
                for seq in start..end {
                    check.acked += 1;
                    if !check.has(seq) {
                        check.acked_missing += 1;
                    }
                }
            }
            self.acked_checked += check.acked;
            self.acked_missing += check.acked_missing;
        }
    }
}

/// Parses `1/INSTANCE/SHARD/PARTITION/SEQ`.
pub fn parse_sequence_header(v: &[u8]) -> Option<(u32, u32, i32, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split('/');
    if it.next()? != "1" {
        return None;
    }
    let instance = it.next()?.parse().ok()?;
    let shard = it.next()?.parse().ok()?;
    let partition = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    it.next()
        .is_none()
        .then_some((instance, shard, partition, seq))
}

/// Reads every record of the topic present when it starts and checks the
/// sequence headers.
pub async fn verify(plan: &VerifyPlan) -> Result<VerifyReport, String> {
    let deadline = Instant::now() + plan.timeout;
    let opts = ConnectOptions::new(&plan.client_id, plan.connect_timeout, &plan.security);
    let mut boot = cluster::bootstrap_with(&plan.bootstrap, &opts)
        .await
        .map_err(|e| e.to_string())?;
    let info = cluster::metadata(&mut boot, &[&plan.topic])
        .await
        .map_err(|e| e.to_string())?;
    let leaders = info.leaders(&plan.topic).map_err(|e| e.to_string())?;
    // Partitions grouped by leader.
    let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (p, b) in &leaders {
        by_leader.entry(b.addr.clone()).or_default().push(*p);
    }
    let mut report = VerifyReport {
        topic: plan.topic.clone(),
        ..Default::default()
    };
    for (addr, partitions) in by_leader {
        let mut conn = Connection::connect_with(&addr, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let start = list_offsets(&mut conn, &plan.topic, &partitions, -2).await?;
        let end = list_offsets(&mut conn, &plan.topic, &partitions, -1).await?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for p in &partitions {
            let (s, e) = (start[p], end[p]);
            report.offsets.insert(*p, (s, e));
            if s < e {
                next.insert(*p, s);
            }
        }
        while !next.is_empty() {
            if Instant::now() > deadline {
                return Err(format!(
                    "reading {} from {addr} took longer than {:?}; {} partitions unfinished",
                    plan.topic,
                    plan.timeout,
                    next.len()
                ));
            }
            fetch_once(&mut conn, &plan.topic, &mut next, &end, &mut report).await?;
        }
    }
    for c in report.producers.values_mut() {
        c.finish();
    }
    Ok(report)
}

async fn list_offsets(
    conn: &mut Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, String> {
    let version = conn
        .version_for::<ListOffsetsRequest>((1, 7))
        .map_err(|e| e.to_string())?;
    let req = ListOffsetsRequest::default()
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
    let resp = conn
        .request(&req, version)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(format!(
                    "ListOffsets for {topic}-{} failed: {}",
                    p.partition_index,
                    datastorm_engine::wire::codes::lookup(p.error_code)
                ));
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

async fn fetch_once(
    conn: &mut Connection,
    topic: &str,
    next: &mut BTreeMap<i32, i64>,
    end: &BTreeMap<i32, i64>,
    report: &mut VerifyReport,
) -> Result<(), String> {
    let version = conn
        .version_for::<FetchRequest>((4, 12))
        .map_err(|e| e.to_string())?;
    let resp = conn
        .request(&fetch_request(topic, next), version)
        .await
        .map_err(|e| e.to_string())?;
    if resp.error_code != 0 {
        return Err(format!(
            "Fetch failed: {}",
            datastorm_engine::wire::codes::lookup(resp.error_code)
        ));
    }
    for t in resp.responses {
        for p in t.partitions {
            let pid = p.partition_index;
            if p.error_code != 0 {
                return Err(format!(
                    "Fetch of {topic}-{pid} failed: {}",
                    datastorm_engine::wire::codes::lookup(p.error_code)
                ));
            }
            let Some(bytes) = p.records else { continue };
            let from = next.get(&pid).copied().unwrap_or(i64::MAX);
            let upto = report.read_batches(bytes, pid, from, end[&pid]);
            if upto >= end[&pid] {
                next.remove(&pid);
            } else if upto > from {
                next.insert(pid, upto);
            }
        }
    }
    Ok(())
}

/// A Fetch of `topic`'s partitions in `next`, each from its next offset.
fn fetch_request(topic: &str, next: &BTreeMap<i32, i64>) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(16 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(
                next.iter()
                    .map(|(p, o)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o)
                            .with_partition_max_bytes(2 * 1024 * 1024)
                    })
                    .collect(),
            )])
}

impl VerifyReport {
    /// Counts the records of partition `pid` in the fetched `bytes` whose
    /// offsets lie in `from..end`. Returns the offset after the last one
    /// counted (`from` if none).
    fn read_batches(&mut self, mut bytes: Bytes, pid: i32, from: i64, end: i64) -> i64 {
        let mut upto = from;
        // A response may end in a partial batch: decode what is whole.
        while !bytes.is_empty() {
            let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
                break;
            };
            for r in set.records {
                if r.offset < from || r.offset >= end {
                    continue;
                }
                upto = upto.max(r.offset + 1);
                self.count(&r, pid);
            }
        }
        upto
    }

    /// Counts one record read from partition `pid` under its producer.
    fn count(&mut self, r: &Record, pid: i32) {
        self.records_read += 1;
        let header = r
            .headers
            .get(&StrBytes::from_static_str(SEQUENCE_HEADER))
            .and_then(|v| v.as_ref())
            .and_then(|v| parse_sequence_header(v));
        match header {
            Some((instance, shard, partition, seq)) => {
                let c = self
                    .producers
                    .entry((instance, shard, partition))
                    .or_default();
                c.add(seq);
                if partition != pid {
                    c.wrong_partition += 1;
                }
            }
            None => self.without_header += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_headers_parse_strictly() {
        assert_eq!(parse_sequence_header(b"1/0/3/17/42"), Some((0, 3, 17, 42)));
        assert_eq!(parse_sequence_header(b"2/0/3/17/42"), None);
        assert_eq!(parse_sequence_header(b"1/0/3/17"), None);
        assert_eq!(parse_sequence_header(b"1/0/3/17/42/9"), None);
        assert_eq!(parse_sequence_header(b"1/x/3/17/42"), None);
    }

    #[test]
    fn gaps_duplicates_and_order_are_counted() {
        let mut c = SeqCheck::default();
        for s in [0, 1, 2, 4, 4, 3, 7] {
            c.add(s);
        }
        c.finish();
        assert_eq!(c.records, 7);
        assert_eq!(c.distinct, 6);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.out_of_order, 1); // 3 after 4
        assert_eq!(c.gaps, 2); // 5 and 6
        assert!(!c.exact());
        let mut ok = SeqCheck::default();
        (0..1000).for_each(|s| ok.add(s));
        ok.finish();
        assert!(ok.exact());
    }

    #[test]
    fn acked_records_missing_from_the_topic_are_counted() {
        let mut r = VerifyReport::default();
        let c = r.producers.entry((0, 0, 1)).or_default();
        (0..10).for_each(|s| c.add(s));
        c.finish();
        let mut acked = BTreeMap::new();
        acked.insert((0, 0, 1), vec![(0, 12)]);
        r.check_acked(&acked);
        assert_eq!(r.acked_checked, 12);
        assert_eq!(r.acked_missing, 2);
        assert!(!r.exact());
    }
}
