//! A Fetch response taken in: partition errors, high watermarks, and each
//! partition's records walked in place (end-to-end latency, sequence
//! headers), once per response under one borrow of the shard's state.

use super::link::Ctx;
use super::state::{ConsumeCounters, Need, Shared};
use crate::e2e::{self, now_unix_us, E2E_HEADER};
use crate::plan::SEQUENCE_HEADER;
use crate::verify::{parse_sequence_header, Producer, SeqCheck};
use datastorm_engine::batch::read::{RecordView, WalkOptions};
use datastorm_engine::wire::codes;
use datastorm_engine::wire::fetch::{partition_fault, PartitionFault};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchResponse;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// What one response added up to.
#[derive(Default)]
struct Tally {
    records: u64,
    bytes: u64,
    batches: u64,
    control_batches: u64,
    timed: u64,
    untimed: u64,
}

/// Takes in one Fetch response. `Err` for what cannot be consumed: a
/// non-retriable partition error or a corrupt batch.
pub(crate) fn take_response(ctx: &Ctx, resp: &FetchResponse, version: i16) -> Result<(), String> {
    // One clock read per response, not per record: every record of the
    // response arrived at this moment.
    let now_us = now_unix_us();
    let mut tally = Tally::default();
    let mut st = ctx.shared.borrow_mut();
    for t in resp
        .responses
        .iter()
        .filter(|t| ctx.topic.matches(t, version))
    {
        for p in &t.partitions {
            take_partition(ctx, &mut st, p, now_us, &mut tally)?;
        }
    }
    let c = &ctx.counters;
    ConsumeCounters::add(&c.records, tally.records);
    ConsumeCounters::add(&c.bytes, tally.bytes);
    ConsumeCounters::add(&c.batches, tally.batches);
    ConsumeCounters::add(&c.control_batches, tally.control_batches);
    ConsumeCounters::add(&c.records_timed, tally.timed);
    ConsumeCounters::add(&c.records_untimed, tally.untimed);
    c.lag.store(st.lag(), Relaxed);
    if tally.records > 0 {
        ctx.consumed.fetch_add(tally.records, Relaxed);
    }
    Ok(())
}

fn take_partition(
    ctx: &Ctx,
    st: &mut Shared,
    p: &PartitionData,
    now_us: u64,
    tally: &mut Tally,
) -> Result<(), String> {
    let id = p.partition_index;
    let Some(idx) = st.parts.iter().position(|x| x.id == id) else {
        return Ok(());
    };
    if p.error_code != 0 {
        return partition_error(ctx, st, idx, p.error_code);
    }
    let Shared {
        parts,
        reader,
        e2e: hist,
        sequences,
        ..
    } = st;
    let part = &mut parts[idx];
    part.confirmed |= part.need == Need::Ready;
    if p.high_watermark >= 0 {
        part.hw = p.high_watermark;
    }
    // Records fetched before the partition was sent for a reset are stale.
    let Some(records) = p.records.as_deref().filter(|_| part.need == Need::Ready) else {
        return Ok(());
    };
    let opts = WalkOptions {
        check_crc: ctx.plan.check_crcs,
        from_offset: part.next,
    };
    let (across, host, check) = (
        ctx.plan.e2e_across_hosts,
        ctx.host,
        ctx.plan.check_sequences,
    );
    let (mut timed, mut untimed) = (0u64, 0u64);
    let walked = reader
        .walk(records, opts, |_, r| {
            match r
                .header(E2E_HEADER.as_bytes())
                .flatten()
                .and_then(e2e::decode)
            {
                Some((t, origin)) if across || origin == host => {
                    hist.saturating_record(now_us.saturating_sub(t).max(1));
                    timed += 1;
                }
                _ => untimed += 1,
            }
            if check {
                count_sequence(sequences, r, id);
            }
        })
        .map_err(|e| format!("{}-{id}: {e}", ctx.topic.name))?;
    if let Some(n) = walked.next_offset {
        part.next = part.next.max(n);
    }
    part.records += walked.records;
    tally.records += walked.records;
    tally.bytes += walked.bytes;
    tally.batches += walked.batches;
    tally.control_batches += walked.control_batches;
    tally.timed += timed;
    tally.untimed += untimed;
    Ok(())
}

/// A partition answered with an error: leader moves mark it leaderless and
/// ask for metadata; OFFSET_OUT_OF_RANGE sends it to be reset; retriable
/// errors wait for the next fetch; the rest fail the shard.
fn partition_error(ctx: &Ctx, st: &mut Shared, idx: usize, code: i16) -> Result<(), String> {
    let kc = codes::lookup(code);
    st.count_error(kc.name);
    ConsumeCounters::add(&ctx.counters.errors, 1);
    let part = &mut st.parts[idx];
    match partition_fault(code) {
        PartitionFault::Leader => {
            part.leader = -1;
            st.stale = true;
        }
        PartitionFault::OutOfRange => part.need = Need::Reset,
        PartitionFault::Retry => {}
        PartitionFault::Fatal => {
            return Err(format!(
                "fetching {}-{} failed: {kc}{}",
                ctx.topic.name,
                part.id,
                kc.hint.map(|h| format!(". {h}")).unwrap_or_default()
            ))
        }
    }
    Ok(())
}

/// Books a record's `ds-seq` header under its producer.
fn count_sequence(seqs: &mut BTreeMap<Producer, SeqCheck>, r: &RecordView<'_>, partition: i32) {
    let Some(Some(v)) = r.header(SEQUENCE_HEADER.as_bytes()) else {
        return;
    };
    let Some((instance, shard, part, seq)) = parse_sequence_header(v) else {
        return;
    };
    let c = seqs.entry((instance, shard, part)).or_default();
    c.add(seq);
    if part != partition {
        c.wrong_partition += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::plan::ConsumePlan;
    use crate::consume::state::Part;
    use bytes::{Bytes, BytesMut};
    use datastorm_engine::wire::fetch::{FetchTopicRef, Uuid};
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    fn ctx(across: bool) -> Ctx {
        let mut plan = ConsumePlan::new(vec![], "t");
        plan.e2e_across_hosts = across;
        plan.check_sequences = true;
        let mut part = Part::new(0, 1);
        part.need = Need::Ready;
        part.confirmed = true;
        part.next = 0;
        Ctx {
            plan: Arc::new(plan),
            topic: FetchTopicRef {
                name: "t".into(),
                id: Uuid::nil(),
            },
            shared: RefCell::new(Shared::new(vec![part], Default::default())),
            counters: Arc::default(),
            consumed: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            host: 7,
        }
    }

    /// Ten records: 0-4 stamped 5 ms ago by host 7, 5-7 by host 8, 8-9
    /// without a stamp; all with sequence headers 0..10.
    fn batch(now_us: u64) -> Bytes {
        let records: Vec<Record> = (0..10i64)
            .map(|i| {
                let mut headers = kafka_protocol::indexmap::IndexMap::new();
                let seq = format!("1/0/0/0/{i}");
                headers.insert(StrBytes::from_static_str("ds-seq"), Some(Bytes::from(seq)));
                if i < 8 {
                    let mut v = (now_us - 5_000).to_be_bytes().to_vec();
                    v.extend_from_slice(&(if i < 5 { 7u32 } else { 8 }).to_be_bytes());
                    headers.insert(StrBytes::from_static_str("ds-t"), Some(Bytes::from(v)));
                }
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32,
                    timestamp: 0,
                    key: None,
                    value: Some(Bytes::from_static(b"v")),
                    headers,
                }
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
        buf.freeze()
    }

    fn response(error: i16, records: Option<Bytes>) -> FetchResponse {
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(0)
                .with_error_code(error)
                .with_high_watermark(12)
                .with_records(records)])])
    }

    #[test]
    fn records_are_counted_timed_and_sequenced() {
        let c = ctx(false);
        let resp = response(0, Some(batch(now_unix_us())));
        take_response(&c, &resp, 12).unwrap();
        let snap = c.counters.snapshot();
        assert_eq!((snap.records, snap.batches), (10, 1));
        assert_eq!((snap.records_timed, snap.records_untimed), (5, 5));
        assert_eq!(snap.lag, 2, "high watermark 12, next 10");
        let st = c.shared.borrow();
        assert_eq!(st.e2e.len(), 5);
        assert!(st.e2e.min() >= 4_990, "5 ms ago: {}", st.e2e.min());
        assert_eq!(st.parts[0].next, 10);
        assert_eq!(st.sequences[&(0, 0, 0)].distinct, 10);
        drop(st);
        // The same response again: nothing below the next offset twice.
        take_response(&c, &resp, 12).unwrap();
        assert_eq!(c.counters.snapshot().records, 10);
        assert_eq!(c.consumed.load(Relaxed), 10);
    }

    #[test]
    fn across_hosts_times_every_stamped_record() {
        let c = ctx(true);
        take_response(&c, &response(0, Some(batch(now_unix_us()))), 12).unwrap();
        assert_eq!(c.counters.snapshot().records_timed, 8);
    }

    #[test]
    fn partition_errors_reset_move_or_fail() {
        let c = ctx(false);
        take_response(&c, &response(1, None), 12).unwrap();
        assert_eq!(c.shared.borrow().parts[0].need, Need::Reset);
        let c = ctx(false);
        take_response(&c, &response(6, None), 12).unwrap();
        let st = c.shared.borrow();
        assert!(st.stale && st.parts[0].leader == -1);
        assert_eq!(st.errors["NOT_LEADER_OR_FOLLOWER"], 1);
        drop(st);
        let err = take_response(&ctx(false), &response(29, None), 12).unwrap_err();
        assert!(err.contains("TOPIC_AUTHORIZATION_FAILED"), "{err}");
    }
}
