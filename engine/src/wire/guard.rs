//! A structural pre-check of control-plane response bodies before
//! kafka-protocol decodes them (the client-side twin of `sink::guard`).
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)`
//! with the count `n` read off the wire before it decodes any element, so a
//! broker (or anything that answers on its port) sending a few bytes that
//! claim 2^31 brokers makes the client allocate hundreds of GiB and abort.
//! This walks every field the decoder will read, in the same order and with
//! the same varint and length rules, without allocating, and rejects an
//! array whose count exceeds the bytes left (every element takes at least
//! one byte). A body it accepts has all its array elements present, so the
//! decoder's allocations stay proportional to the frame.
//!
//! Known tagged fields (which kafka-protocol decodes from the stream,
//! ignoring their size prefix) must fill exactly their declared size.
//!
//! Only the responses the client decodes are walked (ApiVersions, Metadata,
//! CreateTopics, InitProducerId, the SASL exchange, and ListOffsets and Fetch
//! for `datastorm verify`); any other API is refused rather than decoded
//! unchecked, so adding a request type means adding its walk here first.

use super::WireError;
use kafka_protocol::messages::ApiKey;

type R<T> = Result<T, WireError>;

fn malformed(what: &'static str) -> WireError {
    WireError::Malformed(what)
}

struct Walk<'a> {
    buf: &'a [u8],
    /// Flexible version: compact lengths and tagged fields.
    flex: bool,
}

impl<'a> Walk<'a> {
    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn skip(&mut self, n: usize) -> R<()> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn u8(&mut self) -> R<u8> {
        let (&b, rest) = self.buf.split_first().ok_or(WireError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    fn i16(&mut self) -> R<i16> {
        let hi = self.u8()?;
        let lo = self.u8()?;
        Ok(i16::from_be_bytes([hi, lo]))
    }

    fn i32(&mut self) -> R<i32> {
        let mut b = [0u8; 4];
        for x in &mut b {
            *x = self.u8()?;
        }
        Ok(i32::from_be_bytes(b))
    }

    /// Same algorithm as kafka-protocol's `UnsignedVarInt`: at most five
    /// bytes, bits past 32 dropped, a continuation bit on the fifth ignored.
    fn uvarint(&mut self) -> R<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A (nullable) string: compact, or an i16 length (-1 = null).
    fn string(&mut self) -> R<()> {
        if self.flex {
            let n = self.uvarint()?;
            if n > 0 {
                self.skip((n - 1) as usize)?;
            }
            return Ok(());
        }
        match self.i16()? {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            _ => Err(malformed("negative string length")),
        }
    }

    /// (Nullable) bytes: compact, or an i32 length (-1 = null).
    fn bytes(&mut self) -> R<()> {
        if self.flex {
            return self.string();
        }
        match self.i32()? {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            _ => Err(malformed("negative bytes length")),
        }
    }

    /// An array's element count (0 for null), bounded by the bytes left.
    fn array(&mut self) -> R<usize> {
        let n = if self.flex {
            match self.uvarint()? {
                0 => 0,
                n => (n - 1) as usize,
            }
        } else {
            match self.i32()? {
                -1 => 0,
                n if n >= 0 => n as usize,
                _ => return Err(malformed("negative array length")),
            }
        };
        if n > self.remaining() {
            return Err(malformed("array longer than the response"));
        }
        Ok(n)
    }

    /// An array of i32.
    fn i32_array(&mut self) -> R<()> {
        let n = self.array()?;
        self.skip(n.checked_mul(4).ok_or(malformed("array too long"))?)
    }

    /// Tagged fields without known tags.
    fn tagged(&mut self) -> R<()> {
        self.tagged_with(|_, _| Ok(false))
    }

    /// Tagged fields; `known` walks the tags the decoder understands (and
    /// returns true for them) inside a walker limited to the field's size.
    fn tagged_with(&mut self, mut known: impl FnMut(u32, &mut Walk<'a>) -> R<bool>) -> R<()> {
        if !self.flex {
            return Ok(());
        }
        let n = self.uvarint()?;
        if n as usize > self.remaining() {
            return Err(malformed("more tagged fields than bytes"));
        }
        for _ in 0..n {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            if size > self.remaining() {
                return Err(WireError::Truncated);
            }
            let (field, rest) = self.buf.split_at(size);
            let mut inner = Walk {
                buf: field,
                flex: self.flex,
            };
            if known(tag, &mut inner)? && !inner.buf.is_empty() {
                return Err(malformed("tagged field size does not match its contents"));
            }
            self.buf = rest;
        }
        Ok(())
    }
}

fn version_in(api: &'static str, version: i16, min: i16, max: i16) -> R<()> {
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion { api, version })
    }
}

/// Checks a response body (after the response header) of API `key` in
/// `version` before kafka-protocol decodes it.
pub(crate) fn check_response(key: i16, body: &[u8], version: i16) -> R<()> {
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => api_versions(body, version),
        Ok(ApiKey::Metadata) => metadata(body, version),
        Ok(ApiKey::CreateTopics) => create_topics(body, version),
        Ok(ApiKey::SaslHandshake) => sasl_handshake(body, version),
        Ok(ApiKey::ListOffsets) => list_offsets(body, version),
        Ok(ApiKey::Fetch) => fetch(body, version),
        // Fixed-size fields, strings and bytes (kafka-protocol slices them
        // off the frame without copying) and tagged fields: nothing to bound.
        Ok(ApiKey::SaslAuthenticate) => version_in("SaslAuthenticate", version, 0, 2),
        Ok(ApiKey::InitProducerId) => version_in("InitProducerId", version, 0, 6),
        _ => Err(WireError::Decode {
            api: super::control::api_name(key),
            detail: "no structural pre-check for this response (wire/guard.rs)".to_owned(),
        }),
    }
}

/// ListOffsets v1..=10.
fn list_offsets(body: &[u8], version: i16) -> R<()> {
    version_in("ListOffsets", version, 1, 10)?;
    let mut w = Walk {
        buf: body,
        flex: version >= 6,
    };
    if version >= 2 {
        w.skip(4)?; // throttle_time_ms
    }
    for _ in 0..w.array()? {
        w.string()?; // name
        for _ in 0..w.array()? {
            w.skip(4 + 2 + 8 + 8)?; // index, error_code, timestamp, offset
            if version >= 4 {
                w.skip(4)?; // leader_epoch
            }
            w.tagged()?;
        }
        w.tagged()?;
    }
    w.tagged()
}

/// Fetch v4..=18.
fn fetch(body: &[u8], version: i16) -> R<()> {
    version_in("Fetch", version, 4, 18)?;
    let mut w = Walk {
        buf: body,
        flex: version >= 12,
    };
    w.skip(4)?; // throttle_time_ms
    if version >= 7 {
        w.skip(2 + 4)?; // error_code, session_id
    }
    for _ in 0..w.array()? {
        if version <= 12 {
            w.string()?; // topic
        } else {
            w.skip(16)?; // topic_id
        }
        for _ in 0..w.array()? {
            // partition_index, error_code, high_watermark, last_stable_offset
            w.skip(4 + 2 + 8 + 8)?;
            if version >= 5 {
                w.skip(8)?; // log_start_offset
            }
            for _ in 0..w.array()? {
                w.skip(8 + 8)?; // aborted: producer_id, first_offset
                w.tagged()?;
            }
            if version >= 11 {
                w.skip(4)?; // preferred_read_replica
            }
            w.bytes()?; // records
                        // Known tags, which kafka-protocol decodes from the stream.
            w.tagged_with(|tag, f| {
                let fixed = match tag {
                    0 => 4 + 8, // diverging_epoch: epoch, end_offset
                    1 => 4 + 4, // current_leader: leader_id, leader_epoch
                    2 => 8 + 4, // snapshot_id: end_offset, epoch
                    _ => return Ok(false),
                };
                f.skip(fixed)?;
                f.tagged()?;
                Ok(true)
            })?;
        }
        w.tagged()?;
    }
    w.tagged_with(|tag, f| match tag {
        // node_endpoints (v16+; kafka-protocol refuses the tag before)
        0 if version >= 16 => {
            for _ in 0..f.array()? {
                f.skip(4)?; // node_id
                f.string()?; // host
                f.skip(4)?; // port
                f.string()?; // rack
                f.tagged()?;
            }
            Ok(true)
        }
        _ => Ok(false),
    })
}

/// SaslHandshake v0..=1.
fn sasl_handshake(body: &[u8], version: i16) -> R<()> {
    version_in("SaslHandshake", version, 0, 1)?;
    let mut w = Walk {
        buf: body,
        flex: false,
    };
    w.skip(2)?; // error_code
    for _ in 0..w.array()? {
        w.string()?; // mechanism
    }
    Ok(())
}

/// ApiVersions v0..=4.
fn api_versions(body: &[u8], version: i16) -> R<()> {
    version_in("ApiVersions", version, 0, 4)?;
    let mut w = Walk {
        buf: body,
        flex: version >= 3,
    };
    w.skip(2)?; // error_code
    for _ in 0..w.array()? {
        w.skip(6)?; // api_key, min_version, max_version
        w.tagged()?;
    }
    if version >= 1 {
        w.skip(4)?; // throttle_time_ms
    }
    w.tagged_with(|tag, f| match tag {
        // supported_features (min, max) / finalized_features (max, min level)
        0 | 2 => {
            for _ in 0..f.array()? {
                f.string()?; // name
                f.skip(4)?;
                f.tagged()?;
            }
            Ok(true)
        }
        1 => f.skip(8).map(|()| true), // finalized_features_epoch
        3 => f.skip(1).map(|()| true), // zk_migration_ready
        _ => Ok(false),
    })
}

/// Metadata v0..=13.
fn metadata(body: &[u8], version: i16) -> R<()> {
    version_in("Metadata", version, 0, 13)?;
    let mut w = Walk {
        buf: body,
        flex: version >= 9,
    };
    if version >= 3 {
        w.skip(4)?; // throttle_time_ms
    }
    for _ in 0..w.array()? {
        w.skip(4)?; // node_id
        w.string()?; // host
        w.skip(4)?; // port
        if version >= 1 {
            w.string()?; // rack
        }
        w.tagged()?;
    }
    if version >= 2 {
        w.string()?; // cluster_id
    }
    if version >= 1 {
        w.skip(4)?; // controller_id
    }
    for _ in 0..w.array()? {
        w.skip(2)?; // error_code
        w.string()?; // name
        if version >= 10 {
            w.skip(16)?; // topic_id
        }
        if version >= 1 {
            w.skip(1)?; // is_internal
        }
        for _ in 0..w.array()? {
            w.skip(2 + 4 + 4)?; // error_code, partition_index, leader_id
            if version >= 7 {
                w.skip(4)?; // leader_epoch
            }
            w.i32_array()?; // replica_nodes
            w.i32_array()?; // isr_nodes
            if version >= 5 {
                w.i32_array()?; // offline_replicas
            }
            w.tagged()?;
        }
        if version >= 8 {
            w.skip(4)?; // topic_authorized_operations
        }
        w.tagged()?;
    }
    if (8..=10).contains(&version) {
        w.skip(4)?; // cluster_authorized_operations
    }
    if version >= 13 {
        w.skip(2)?; // error_code
    }
    w.tagged()
}

/// CreateTopics v2..=7.
fn create_topics(body: &[u8], version: i16) -> R<()> {
    version_in("CreateTopics", version, 2, 7)?;
    let mut w = Walk {
        buf: body,
        flex: version >= 5,
    };
    w.skip(4)?; // throttle_time_ms
    for _ in 0..w.array()? {
        w.string()?; // name
        if version >= 7 {
            w.skip(16)?; // topic_id
        }
        w.skip(2)?; // error_code
        w.string()?; // error_message
        if version >= 5 {
            w.skip(4 + 2)?; // num_partitions, replication_factor
            for _ in 0..w.array()? {
                w.string()?; // name
                w.string()?; // value
                w.skip(3)?; // read_only, config_source, is_sensitive
                w.tagged()?;
            }
        }
        // topic_config_error_code
        w.tagged_with(|tag, f| match tag {
            0 => f.skip(2).map(|()| true),
            _ => Ok(false),
        })?;
    }
    w.tagged()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::{
        ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
    };
    use kafka_protocol::messages::create_topics_response::{
        CreatableTopicConfigs, CreatableTopicResult,
    };
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        ApiVersionsResponse, BrokerId, CreateTopicsResponse, FetchResponse, ListOffsetsResponse,
        MetadataResponse, ProducerId, SaslHandshakeResponse, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn enc<M: Encodable>(m: &M, version: i16) -> Vec<u8> {
        let mut out = BytesMut::new();
        m.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    fn api_versions_sample() -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_api_keys(vec![
                ApiVersion::default().with_api_key(0).with_max_version(12),
                ApiVersion::default().with_api_key(3).with_max_version(12),
            ])
            .with_throttle_time_ms(3)
            .with_supported_features(vec![SupportedFeatureKey::default()
                .with_name(s("metadata.version"))
                .with_max_version(20)])
            .with_finalized_features_epoch(7)
            .with_finalized_features(vec![FinalizedFeatureKey::default()
                .with_name(s("metadata.version"))
                .with_max_version_level(20)])
            .with_zk_migration_ready(true)
    }

    fn metadata_sample() -> MetadataResponse {
        let part = |p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)])
                .with_offline_replicas(vec![BrokerId(2)])
        };
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(s("localhost"))
                .with_port(9092)
                .with_rack(Some(s("r1")))])
            .with_cluster_id(Some(s("cluster")))
            .with_controller_id(BrokerId(1))
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(s("orders"))))
                .with_partitions(vec![part(0), part(1)])])
    }

    fn create_topics_sample(version: i16) -> CreateTopicsResponse {
        let mut t = CreatableTopicResult::default()
            .with_name(TopicName(s("orders")))
            .with_error_message(Some(s("nope")));
        if version >= 5 {
            t = t
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_topic_config_error_code(9)
                .with_configs(Some(vec![CreatableTopicConfigs::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1")))]));
        } else {
            t = t.with_configs(None);
        }
        CreateTopicsResponse::default().with_topics(vec![t])
    }

    fn list_offsets_sample() -> ListOffsetsResponse {
        use kafka_protocol::messages::list_offsets_response::{
            ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
        };
        ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(0)
                    .with_offset(42),
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(1)
                    .with_offset(7),
            ])])
    }

    fn fetch_sample(version: i16) -> FetchResponse {
        use kafka_protocol::messages::fetch_response::{
            AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch,
            NodeEndpoint, PartitionData, SnapshotId,
        };
        let mut p = PartitionData::default()
            .with_partition_index(3)
            .with_high_watermark(100)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(ProducerId(5))
                .with_first_offset(9)]))
            .with_records(Some(bytes::Bytes::from_static(b"record batches")));
        if version >= 12 {
            p = p
                .with_diverging_epoch(EpochEndOffset::default().with_epoch(2).with_end_offset(8))
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(1))
                        .with_leader_epoch(4),
                )
                .with_snapshot_id(SnapshotId::default().with_end_offset(6).with_epoch(1));
        }
        let mut t = FetchableTopicResponse::default().with_partitions(vec![p]);
        if version <= 12 {
            t.topic = TopicName(s("orders"));
        }
        let mut r = FetchResponse::default().with_responses(vec![t]);
        if version >= 16 {
            r.node_endpoints = vec![NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(s("broker-1"))
                .with_port(9092)
                .with_rack(Some(s("r1")))];
        }
        r
    }

    fn accepts_then_survives_every_cut(key: ApiKey, body: &[u8], version: i16) {
        check_response(key as i16, body, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version} refused: {e}"));
        // No strict prefix panics (most fail here; the rest fail decoding).
        for cut in 0..body.len() {
            let _ = check_response(key as i16, &body[..cut], version);
        }
    }

    #[test]
    fn accepts_what_kafka_protocol_encodes() {
        for v in 0..=4 {
            let body = enc(&api_versions_sample(), v);
            accepts_then_survives_every_cut(ApiKey::ApiVersions, &body, v);
        }
        for v in 0..=13 {
            let body = enc(&metadata_sample(), v);
            accepts_then_survives_every_cut(ApiKey::Metadata, &body, v);
        }
        for v in 2..=7 {
            let body = enc(&create_topics_sample(v), v);
            accepts_then_survives_every_cut(ApiKey::CreateTopics, &body, v);
        }
        for v in 1..=10 {
            let body = enc(&list_offsets_sample(), v);
            accepts_then_survives_every_cut(ApiKey::ListOffsets, &body, v);
        }
        for v in 4..=18 {
            let body = enc(&fetch_sample(v), v);
            accepts_then_survives_every_cut(ApiKey::Fetch, &body, v);
        }
        let handshake =
            SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")]);
        for v in 0..=1 {
            let body = enc(&handshake, v);
            accepts_then_survives_every_cut(ApiKey::SaslHandshake, &body, v);
        }
    }

    #[test]
    fn huge_array_counts_are_refused() {
        // Metadata v12: throttle, then a compact broker count of 2^31.
        let body = [0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x08];
        assert!(check_response(ApiKey::Metadata as i16, &body, 12).is_err());
        // Metadata v4: throttle, then an i32 broker count of i32::MAX.
        let body = [0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(check_response(ApiKey::Metadata as i16, &body, 4).is_err());
        // ApiVersions v3: the supported_features tagged field claims 2^28
        // elements inside a 5-byte field.
        let body = [0, 0, 1, 0, 0, 0, 0, 1, 0, 5, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(check_response(ApiKey::ApiVersions as i16, &body, 3).is_err());
    }

    #[test]
    fn known_tagged_fields_must_fill_their_size() {
        let mut body = enc(&api_versions_sample(), 3);
        // The last tagged field is zk_migration_ready (tag 3, size 1).
        let n = body.len();
        assert_eq!(&body[n - 3..n - 1], &[3, 1]);
        body[n - 2] = 2;
        body.push(0);
        assert!(check_response(ApiKey::ApiVersions as i16, &body, 3).is_err());
    }

    #[test]
    fn fetch_partition_known_tags_are_walked() {
        // kafka-protocol decodes diverging_epoch (tag 0) from the stream
        // whatever its declared size: a size that lies must be refused, or
        // the walk and the decoder would part ways.
        let body = enc(&fetch_sample(12), 12);
        let at = body
            .windows(3)
            .position(|w| w == [3, 0, 13])
            .expect("three tagged fields, the first 13 bytes long");
        for size in [0u8, 12, 14] {
            let mut bad = body.clone();
            bad[at + 2] = size;
            assert!(check_response(ApiKey::Fetch as i16, &bad, 12).is_err());
        }
    }

    #[test]
    fn unknown_apis_and_versions_are_refused() {
        assert!(check_response(ApiKey::Produce as i16, &[], 9).is_err());
        assert!(check_response(-7, &[], 0).is_err());
        assert!(check_response(ApiKey::Metadata as i16, &[0; 64], 14).is_err());
    }
}
