//! Produce requests written by hand around already-sealed batches, and
//! Produce responses read without allocating.
//!
//! kafka-protocol's `ProduceRequest` takes each batch as `Bytes` and copies it
//! again while encoding; its response decoder allocates maps and strings per
//! partition. Both sit on the hot path, so this module writes and reads the
//! flexible Produce versions (v9 to v12 share one wire layout) directly. The
//! tests check both against kafka-protocol's own codec.

use super::cursor::Cursor;
use super::WireError;
use crate::arena::WriteBuf;
use crate::wire::varint::uvarint_len;

/// Produce API key.
pub const PRODUCE: i16 = 0;
/// Versions this writer speaks: flexible, topics by name (v13 uses ids).
pub const MIN_VERSION: i16 = 9;
pub const MAX_VERSION: i16 = 12;

/// The fields of one Produce request besides its topic and batches, which
/// [`ProduceRequestBuilder::finish`] writes ahead of the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFields<'a> {
    /// Produce version, `MIN_VERSION..=MAX_VERSION`.
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: &'a str,
    /// -1 (all in-sync replicas), 0 (no response) or 1 (the leader).
    pub acks: i16,
    pub timeout_ms: i32,
}

/// Accumulates one topic's sealed batches for one broker, then frames them as
/// a single Produce request.
///
/// Entries are written after a headroom; `finish` writes the request prefix
/// (size, header, body fields, array counts) right-aligned into that
/// headroom, so the request goes out as one contiguous slice with no copy of
/// the batches.
#[derive(Debug)]
pub struct ProduceRequestBuilder {
    buf: WriteBuf,
    /// The request prefix, built at `finish` and copied into the headroom.
    prefix: WriteBuf,
    headroom: usize,
    topic: String,
    partitions: u32,
    start: usize,
}

impl ProduceRequestBuilder {
    pub fn new(topic: &str, client_id: &str, capacity: usize) -> Self {
        // size + api key/version + correlation id + client id + tags
        // + transactional id + acks + timeout + 2 counts + topic name
        let headroom = 4 + 8 + 2 + client_id.len() + 1 + 1 + 2 + 4 + 5 + 5 + topic.len() + 5 + 5;
        let mut buf = WriteBuf::with_capacity(capacity.max(headroom + 64));
        buf.spare(headroom);
        buf.advance(headroom);
        Self {
            buf,
            prefix: WriteBuf::with_capacity(headroom),
            headroom,
            topic: topic.to_owned(),
            partitions: 0,
            start: headroom,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.partitions == 0
    }

    /// Bytes of batches and their entry framing so far.
    #[inline]
    pub fn body_len(&self) -> usize {
        self.buf.len() - self.headroom
    }

    /// Adds one partition's sealed batch. A partition may appear once per
    /// request. Returns where the batch lies in this request, for `batch`.
    pub fn add_batch(&mut self, partition: i32, batch: &[u8]) -> std::ops::Range<usize> {
        self.buf.put_i32(partition);
        self.buf.put_uvarint(batch.len() as u32 + 1);
        let start = self.buf.len();
        self.buf.put_slice(batch);
        self.buf.put_u8(0); // partition tagged fields
        self.partitions += 1;
        start..start + batch.len()
    }

    /// A batch added earlier (until `reset`), by the range `add_batch` returned.
    pub fn batch(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf.as_slice()[range]
    }

    /// Frames the request and returns the bytes to write. Call `reset` after
    /// the write completes.
    pub fn finish(&mut self, fields: RequestFields<'_>) -> &[u8] {
        debug_assert!((MIN_VERSION..=MAX_VERSION).contains(&fields.version));
        self.buf.put_u8(0); // topic tagged fields
        self.buf.put_u8(0); // request tagged fields

        self.prefix.clear();
        prefix_into(&mut self.prefix, &fields, &self.topic, self.partitions);
        let p = self.prefix.as_slice();
        assert!(p.len() <= self.headroom, "produce prefix exceeds headroom");
        let start = self.headroom - p.len();
        let total = self.buf.len() - start - 4;
        let out = self.buf.as_mut_slice();
        out[start..self.headroom].copy_from_slice(p);
        out[start..start + 4].copy_from_slice(&(total as i32).to_be_bytes());
        self.start = start;
        &self.buf.as_slice()[start..]
    }

    /// Empties the request for reuse.
    pub fn reset(&mut self) {
        self.buf.truncate(self.headroom);
        self.partitions = 0;
        self.start = self.headroom;
    }
}

fn prefix_into(out: &mut WriteBuf, fields: &RequestFields<'_>, topic: &str, partitions: u32) {
    let RequestFields {
        version,
        correlation_id,
        client_id,
        acks,
        timeout_ms,
    } = *fields;
    out.put_i32(0); // size, filled by the caller
    out.put_i16(PRODUCE);
    out.put_i16(version);
    out.put_i32(correlation_id);
    // Request header v2 keeps client_id as a classic (non-compact) string.
    out.put_i16(client_id.len() as i16);
    out.put_slice(client_id.as_bytes());
    out.put_u8(0); // header tagged fields
    out.put_uvarint(0); // transactional_id: null
    out.put_i16(acks);
    out.put_i32(timeout_ms);
    out.put_uvarint(2); // one topic
    out.put_uvarint(topic.len() as u32 + 1);
    out.put_slice(topic.as_bytes());
    out.put_uvarint(partitions + 1);
    debug_assert!(out.len() <= 40 + client_id.len() + topic.len() + uvarint_len(partitions + 1));
}

/// One partition's answer in a Produce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAck<'a> {
    pub topic: &'a [u8],
    pub partition: i32,
    pub error_code: i16,
    pub base_offset: i64,
    pub error_message: Option<&'a [u8]>,
}

/// Reads a Produce response body (after the response header) of a flexible
/// version, calling `on_partition` for each partition. Returns the broker's
/// throttle time in milliseconds.
pub fn read_produce_response(
    body: &[u8],
    version: i16,
    mut on_partition: impl FnMut(PartitionAck<'_>),
) -> Result<i32, WireError> {
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(WireError::UnsupportedVersion {
            api: "Produce",
            version,
        });
    }
    let mut c = Cursor::new(body);
    let topics = c.compact_len()?;
    for _ in 0..topics {
        let topic = c.compact_bytes()?;
        let partitions = c.compact_len()?;
        for _ in 0..partitions {
            let partition = c.i32()?;
            let error_code = c.i16()?;
            let base_offset = c.i64()?;
            let _log_append_time = c.i64()?;
            let _log_start_offset = c.i64()?;
            let record_errors = c.compact_len()?;
            for _ in 0..record_errors {
                let _batch_index = c.i32()?;
                let _message = c.compact_nullable_bytes()?;
                c.skip_tagged_fields()?;
            }
            let error_message = c.compact_nullable_bytes()?;
            c.skip_tagged_fields()?;
            on_partition(PartitionAck {
                topic,
                partition,
                error_code,
                base_offset,
                error_message,
            });
        }
        c.skip_tagged_fields()?;
    }
    let throttle_ms = c.i32()?;
    c.skip_tagged_fields()?;
    Ok(throttle_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    #[test]
    fn request_decodes_with_kafka_protocol_for_every_version() {
        for version in MIN_VERSION..=MAX_VERSION {
            let mut b = ProduceRequestBuilder::new("orders", "datastorm", 256);
            let r3 = b.add_batch(3, b"batch-three");
            b.add_batch(7, &[1u8; 300]);
            assert_eq!(b.batch(r3.clone()), b"batch-three");
            let frame = b
                .finish(RequestFields {
                    version,
                    correlation_id: 42,
                    client_id: "datastorm",
                    acks: -1,
                    timeout_ms: 30_000,
                })
                .to_vec();
            let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(size, frame.len() - 4);
            let mut body = Bytes::from(frame[4..].to_vec());
            let header = RequestHeader::decode(&mut body, 2).unwrap();
            assert_eq!(header.request_api_key, PRODUCE);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.correlation_id, 42);
            assert_eq!(header.client_id.as_deref(), Some("datastorm"));
            let req = ProduceRequest::decode(&mut body, version).unwrap();
            assert!(body.is_empty(), "trailing bytes");
            assert_eq!(req.acks, -1);
            assert_eq!(req.timeout_ms, 30_000);
            assert_eq!(req.transactional_id, None);
            assert_eq!(req.topic_data.len(), 1);
            let topic = &req.topic_data[0];
            assert_eq!(&*topic.name, "orders");
            let parts: Vec<_> = topic
                .partition_data
                .iter()
                .map(|p| (p.index, p.records.clone().unwrap().len()))
                .collect();
            assert_eq!(parts, vec![(3, 11), (7, 300)]);
            assert_eq!(
                b.batch(r3),
                b"batch-three",
                "framing leaves batches in place"
            );
            b.reset();
            assert!(b.is_empty());
        }
    }

    #[test]
    fn reused_builder_writes_the_same_bytes() {
        let fields = RequestFields {
            version: 9,
            correlation_id: 1,
            client_id: "c",
            acks: 1,
            timeout_ms: 100,
        };
        let mut b = ProduceRequestBuilder::new("t", "c", 64);
        b.add_batch(0, b"xyz");
        let first = b.finish(fields).to_vec();
        b.reset();
        b.add_batch(0, b"xyz");
        assert_eq!(b.finish(fields), &first[..]);
    }

    fn encoded_response(version: i16) -> Vec<u8> {
        let p = |index, error_code, base_offset, msg: Option<&str>| {
            PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(error_code)
                .with_base_offset(base_offset)
                .with_error_message(msg.map(|m| StrBytes::from_string(m.to_owned())))
        };
        let resp = ProduceResponse::default()
            .with_throttle_time_ms(17)
            .with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_responses(vec![
                    p(0, 0, 100, None),
                    p(5, 10, -1, Some("too large")),
                ])]);
        let mut out = bytes::BytesMut::new();
        resp.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    #[test]
    fn response_reader_agrees_with_kafka_protocol() {
        for version in MIN_VERSION..=MAX_VERSION {
            let body = encoded_response(version);
            let mut seen = Vec::new();
            let throttle = read_produce_response(&body, version, |a| {
                seen.push((
                    a.topic.to_vec(),
                    a.partition,
                    a.error_code,
                    a.base_offset,
                    a.error_message.map(<[u8]>::to_vec),
                ))
            })
            .unwrap();
            assert_eq!(throttle, 17);
            assert_eq!(
                seen,
                vec![
                    (b"orders".to_vec(), 0, 0, 100, None),
                    (b"orders".to_vec(), 5, 10, -1, Some(b"too large".to_vec())),
                ]
            );
        }
    }

    #[test]
    fn truncated_responses_are_errors_not_panics() {
        let body = encoded_response(9);
        for cut in 0..body.len() {
            assert!(
                read_produce_response(&body[..cut], 9, |_| {}).is_err(),
                "cut {cut}"
            );
        }
    }
}
