//! Why a stream task could not open or keep its broker connections.

use datastorm_engine::cluster::ClusterError;
use datastorm_engine::conn::ConnError;
use datastorm_engine::wire::codes::KafkaCode;

/// A stream task's setup or connection-upkeep failure. Its text is what the
/// run reports as the stream's failure.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    /// Connecting to a broker, or a request on that connection, failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// Bootstrapping or reading the cluster's metadata failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("topic {topic} missing from metadata")]
    TopicMissing { topic: String },
    #[error("some partitions have no leader yet")]
    LeadersMissing,
    #[error("{addr} refused an idempotent producer id: {code} (see --idempotent)")]
    ProducerIdRefused { addr: String, code: KafkaCode },
    /// The stream had already failed for this reason (from its books), which
    /// explains the failure better than the error that ended the attempt.
    #[error("{0}")]
    Failed(String),
}
