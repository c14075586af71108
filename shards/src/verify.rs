//! Proof of delivery: read a topic back (the consumer engine, from the
//! earliest offsets to the ends the topic had when reading started) and
//! check the `ds-seq` sequence headers: per
//! producing instance, shard and partition, which record numbers are
//! there, which are missing, doubled or out of order, and (given what the
//! producer had acknowledged) how many acknowledged records were lost.

use crate::consume::{run_consume, ConsumePlan, PartitionEnd, StartFrom};
use datastorm_engine::runtime::allowed_cpus;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

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

/// Reads every record of the topic present when it starts, through the
/// consumer engine (one fetch path for `consume` and `verify`: fetch
/// sessions, CRCs checked, every codec, leader moves ridden out), on one
/// core, and checks the sequence headers.
pub fn verify(plan: &VerifyPlan) -> Result<VerifyReport, String> {
    let mut cp = ConsumePlan::new(plan.bootstrap.clone(), plan.topic.clone());
    cp.client_id.clone_from(&plan.client_id);
    cp.security = plan.security.clone();
    cp.connect_timeout = plan.connect_timeout;
    cp.cpus = vec![allowed_cpus().first().copied().unwrap_or(0)];
    cp.from = StartFrom::Earliest;
    cp.stop.until_end = true;
    cp.stop.duration = Some(plan.timeout);
    cp.check_sequences = true;
    let o = run_consume(cp, Arc::new(AtomicBool::new(false)), |_| {}).map_err(|e| e.to_string())?;
    if let Some(f) = o.failure {
        return Err(f);
    }
    let parts: Vec<&PartitionEnd> = o.shards.iter().flat_map(|s| &s.partitions).collect();
    let unfinished = parts
        .iter()
        .filter(|p| p.end_offset.is_some_and(|end| p.next_offset < end))
        .count();
    if unfinished > 0 {
        return Err(format!(
            "reading {} took longer than {:?}; {unfinished} partitions unfinished",
            plan.topic, plan.timeout
        ));
    }
    let with_header: u64 = o.sequences.values().map(|c| c.records).sum();
    Ok(VerifyReport {
        topic: plan.topic.clone(),
        offsets: parts
            .iter()
            .map(|p| {
                let end = p.end_offset.unwrap_or(p.high_watermark);
                (p.partition, (p.start_offset.min(end), end))
            })
            .collect(),
        records_read: o.totals.records,
        without_header: o.totals.records.saturating_sub(with_header),
        producers: o.sequences,
        ..VerifyReport::default()
    })
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
