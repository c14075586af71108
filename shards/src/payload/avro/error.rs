//! Why a schema could not be compiled into a generator plan.

use std::path::PathBuf;

/// A schema that cannot be generated from, with where and why.
///
/// Every variant names the schema (its file name, or the name given to
/// `compile_str`), and the hint errors name the field path inside it
/// (`orders.avsc: items[].price: ...`), so the message alone is enough to
/// find and fix the problem.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema file could not be read.
    #[error("{}: cannot read the schema file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The schema is not JSON.
    #[error("{file}: not valid JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// The schema is JSON but not a valid Avro schema.
    #[error("{file}: not a valid Avro schema: {reason}")]
    Avro { file: String, reason: String },
    /// A generation hint (or the type it is attached to) is wrong.
    #[error("{file}: {path}: {reason}")]
    Hint {
        file: String,
        path: String,
        reason: String,
    },
}
