//! Kafka error codes by name, whether a retry can help, and what a user can do.

/// A broker error code with its protocol name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaCode {
    pub code: i16,
    pub name: &'static str,
    pub retriable: bool,
    /// What to change, for the errors a load test commonly hits.
    pub hint: Option<&'static str>,
}

impl std::fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.code)
    }
}

/// The one table of Kafka error codes: each row defines a constant named
/// after the code (for matching and answering) and its entry in [`lookup`].
macro_rules! codes {
    ($($code:literal $name:ident $retriable:literal $hint:expr;)*) => {
        $(pub const $name: i16 = $code;)*

        /// Looks up a Kafka error code.
        pub fn lookup(code: i16) -> KafkaCode {
            match code {
                $($code => KafkaCode { code, name: stringify!($name), retriable: $retriable, hint: $hint },)*
                _ => KafkaCode { code, name: "UNKNOWN_ERROR_CODE", retriable: false, hint: None },
            }
        }
    };
}

codes! {
    -1 UNKNOWN_SERVER_ERROR false None;
    0 NONE false None;
    1 OFFSET_OUT_OF_RANGE false None;
    2 CORRUPT_MESSAGE true Some("the broker found a batch with a bad CRC or framing; report this as a DataStorm bug");
    3 UNKNOWN_TOPIC_OR_PARTITION true Some("create the topic first (add --create-topic, or use kafka-topics.sh --create)");
    4 INVALID_FETCH_SIZE false None;
    5 LEADER_NOT_AVAILABLE true None;
    6 NOT_LEADER_OR_FOLLOWER true None;
    7 REQUEST_TIMED_OUT true Some("the brokers could not replicate in time: lower --rate or raise the broker's capacity");
    8 BROKER_NOT_AVAILABLE false None;
    9 REPLICA_NOT_AVAILABLE true None;
    10 MESSAGE_TOO_LARGE false Some("a batch is larger than the broker's message.max.bytes (1 MB by default): use a smaller --batch-size, or raise max.message.bytes on the topic");
    13 NETWORK_EXCEPTION true None;
    14 COORDINATOR_LOAD_IN_PROGRESS true None;
    15 COORDINATOR_NOT_AVAILABLE true None;
    16 NOT_COORDINATOR true None;
    17 INVALID_TOPIC_EXCEPTION false Some("topic names use letters, digits, '.', '_' and '-', at most 249 characters");
    18 RECORD_LIST_TOO_LARGE false Some("the request is larger than the broker accepts: use a smaller --batch-size");
    19 NOT_ENOUGH_REPLICAS true Some("fewer in-sync replicas than min.insync.replicas: check the brokers, or use --acks 1");
    20 NOT_ENOUGH_REPLICAS_AFTER_APPEND true None;
    21 INVALID_REQUIRED_ACKS false Some("--acks takes 0, 1 or all");
    22 ILLEGAL_GENERATION false None;
    29 TOPIC_AUTHORIZATION_FAILED false Some("the principal may not write to this topic: check the broker's ACLs");
    31 CLUSTER_AUTHORIZATION_FAILED false None;
    32 INVALID_TIMESTAMP false Some("record timestamps are outside the topic's message.timestamp.*.ms bounds");
    33 UNSUPPORTED_SASL_MECHANISM false None;
    35 UNSUPPORTED_VERSION false Some("the broker does not speak a Produce version DataStorm writes (v9 to v12, Kafka 2.8 or later)");
    36 TOPIC_ALREADY_EXISTS false None;
    37 INVALID_PARTITIONS false Some("--partitions must be at least 1");
    38 INVALID_REPLICATION_FACTOR false Some("--replication-factor is larger than the number of brokers");
    39 INVALID_REPLICA_ASSIGNMENT false None;
    40 INVALID_CONFIG false None;
    41 NOT_CONTROLLER true None;
    42 INVALID_REQUEST false None;
    43 UNSUPPORTED_FOR_MESSAGE_FORMAT false None;
    44 POLICY_VIOLATION false None;
    45 OUT_OF_ORDER_SEQUENCE_NUMBER false None;
    46 DUPLICATE_SEQUENCE_NUMBER false None;
    47 INVALID_PRODUCER_EPOCH false None;
    53 TRANSACTIONAL_ID_AUTHORIZATION_FAILED false None;
    55 INVALID_PRODUCER_ID_MAPPING false None;
    56 KAFKA_STORAGE_ERROR true None;
    58 SASL_AUTHENTICATION_FAILED false None;
    59 UNKNOWN_PRODUCER_ID false None;
    74 FENCED_LEADER_EPOCH true None;
    75 UNKNOWN_LEADER_EPOCH true None;
    76 UNSUPPORTED_COMPRESSION_TYPE false Some("the topic or broker does not accept this compression: try --compression none");
    87 INVALID_RECORD false None;
    89 THROTTLING_QUOTA_EXCEEDED true None;
    100 UNKNOWN_TOPIC_ID true None;
}

/// Errors after which a partition's leader may have moved: a producer
/// refreshes its metadata before sending to the partition again.
pub const STALE_METADATA: [i16; 6] = [
    UNKNOWN_TOPIC_OR_PARTITION,
    LEADER_NOT_AVAILABLE,
    NOT_LEADER_OR_FOLLOWER,
    KAFKA_STORAGE_ERROR,
    FENCED_LEADER_EPOCH,
    UNKNOWN_LEADER_EPOCH,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hints() {
        let c = lookup(10);
        assert_eq!(c.name, "MESSAGE_TOO_LARGE");
        assert!(c.hint.unwrap().contains("--batch-size"));
        assert!(lookup(6).retriable);
        assert_eq!(lookup(12345).name, "UNKNOWN_ERROR_CODE");
        assert_eq!(lookup(3).to_string(), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(
            lookup(NOT_LEADER_OR_FOLLOWER).name,
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(UNKNOWN_SERVER_ERROR, -1);
    }
}
