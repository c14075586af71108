//! Why a report could not be read or written.
//!
//! The messages carry their cause (so no variant has a `source`): they are
//! printed whole, as the one line a command fails with.

use super::{SCHEMA, SCHEMA_V1};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("could not read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("could not write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not JSON ({error}): not a DataStorm run report", path.display())]
    NotJson {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(
        "{} has no \"schema\" field: not a DataStorm run report \
         (those start with \"schema\": \"{SCHEMA}\")",
        path.display()
    )]
    NoSchema { path: PathBuf },
    #[error(
        "{} is a '{found}' report; this datastorm {} reads {SCHEMA} and {SCHEMA_V1} \
         reports. A report from a newer DataStorm needs that version's `datastorm report`.",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    Version { path: PathBuf, found: String },
    #[error("{} names its version but does not hold a run report of it: {error}", path.display())]
    Shape {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("the run plan does not fit the report's config: {0}")]
    Plan(serde_json::Error),
    #[error("the verify result of {topic} does not fit the report: {error}")]
    Verify {
        topic: String,
        error: serde_json::Error,
    },
    #[error("the histogram is not base64: {0}")]
    HistogramBase64(base64::DecodeError),
    #[error("the histogram does not decode: {0}")]
    HistogramDecode(String),
}
