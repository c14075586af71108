//! Why `produce` refuses its flags or run file before anything starts
//! (exit code 2). Each message is one line for people.

use super::workload::WorkloadError;
use datastorm_shards::payload::avro::{KeyFieldError, SchemaError};
use datastorm_shards::payload::registry::RegistryError;
use datastorm_shards::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Key(#[from] KeyFieldError),
    /// `--compression-level` that the codec does not take (the engine's words).
    #[error("{0}")]
    Compression(String),
    #[error(transparent)]
    Security(#[from] super::security::SecurityFlagError),
    #[error(
        "invalid topic name '{0}': use letters, digits, '.', '_' and '-', at most 249 characters"
    )]
    Topic(String),
    #[error("--schema-registry registers the --schema; give one")]
    RegistryWithoutSchema,
    #[error("--schema-registry registers the streams' schemas, but no stream of {0} has a schema")]
    RegistryWithoutSchemaStreams(String),
    #[error("--encoding confluent needs --schema-id N or --schema-registry URL")]
    ConfluentWithoutId,
    #[error("--idempotent needs --acks all (Kafka only deduplicates fully replicated writes)")]
    IdempotentWithoutAcksAll,
    #[error("--backlog-drain-ratio {0} is not between 0 and 1")]
    DrainRatio(f64),
    #[error(
        "the idempotent producer keeps order with at most 5 requests in flight per connection \
         (--max-in-flight {0}); lower it or add --no-idempotent"
    )]
    IdempotentInFlight(usize),
    #[error("--partitions must be at least 1")]
    Partitions,
    #[error("--replication-factor must be at least 1")]
    ReplicationFactor,
    #[error("--max-in-flight must be at least 1")]
    MaxInFlight,
    #[error("--batch-size must be between 1KiB and 64MiB")]
    BatchSize,
    #[error("--record-size must be at most 16MiB")]
    RecordSize,
    #[error("--count must be a whole number of records, at least 1")]
    Count,
    #[error("partitions and replication_factor must be at least 1")]
    StreamTopicSpec,
    #[error("record_size must be at most 16MiB")]
    StreamRecordSize,
    /// A mistake in one stream of a run file.
    #[error("{file}: stream {number} ({name}): {source}")]
    Stream {
        file: String,
        number: usize,
        name: String,
        source: Box<ProduceError>,
    },
}
