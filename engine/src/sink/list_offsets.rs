//! ListOffsets: earliest (-2, and -4 "earliest local"), latest (-1), max
//! timestamp (-3) and offsets by timestamp, from each partition's kept log.
//!
//! A timestamp query answers the base offset of the first kept batch whose
//! max timestamp is at least the one asked (Kafka answers the first record
//! with such a timestamp inside it: a consumer starting at the batch's base
//! reads that record too, with a few before it). Max timestamp answers the
//! last offset of the batch holding the largest timestamp.
//!
//! A synthetic partition has no end to seek to: every query answers offset
//! 0, so a consumer asking for latest reads the synthetic stream from its
//! start like one asking for earliest.

use kafka_protocol::messages::list_offsets_request::ListOffsetsTopic;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::log::PartitionLog;
use super::server::ExecState;
use super::stats::bump;
use crate::wire::codes as code;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(crate) fn handle(
    exec: &ExecState,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    bump(&exec.counters().list_offsets_requests, 1);
    let topics = req.topics.iter().map(|t| topic(exec, t, version)).collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn topic(exec: &ExecState, t: &ListOffsetsTopic, version: i16) -> ListOffsetsTopicResponse {
    let entry = exec.shared.registry.get(&t.name.0);
    let synthetic = entry
        .as_ref()
        .is_some_and(|e| exec.shared.synthetic.serves(&e.name, e.produced()));
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            let resp = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                // The field exists from v4 (an error to set before).
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let Some(log) = entry.as_ref().and_then(|e| e.log(p.partition_index)) else {
                return resp
                    .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_timestamp(-1)
                    .with_offset(-1);
            };
            let (timestamp, offset) = if synthetic {
                (-1, 0)
            } else {
                lookup(log, p.timestamp)
            };
            resp.with_error_code(code::NONE)
                .with_timestamp(timestamp)
                .with_offset(offset)
        })
        .collect();
    ListOffsetsTopicResponse::default()
        .with_name(t.name.clone())
        .with_partitions(partitions)
}

/// (timestamp, offset) for a query; (-1, -1) when nothing matches.
fn lookup(log: &PartitionLog, query: i64) -> (i64, i64) {
    let (log_start, high_watermark) = log.bounds(std::time::Instant::now());
    match query {
        LATEST => (-1, high_watermark),
        EARLIEST | EARLIEST_LOCAL => (-1, log_start),
        MAX_TIMESTAMP => log
            .max_timestamp()
            .map_or((-1, -1), |(offset, ts)| (ts, offset)),
        ts if ts >= 0 => log
            .offset_for_timestamp(ts)
            .map_or((-1, -1), |(offset, ts)| (ts, offset)),
        _ => (-1, -1),
    }
}
