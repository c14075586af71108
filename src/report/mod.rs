//! The JSON run report, `datastorm.run/2`: configuration, environment,
//! results with full latency histograms, per-second timeline.
//!
//! [`RunReport`] and the types under it are the format: `produce` builds
//! one ([`build()`]), `report merge` makes one from several, and every reader
//! (`report show|compare|plot|merge`, `sweep`, `verify --report`) reads
//! files back into it ([`read`]). docs/report.schema.json is generated from
//! these types (see `schema`) and docs/reports.md describes them. `schema`
//! names the version so that old reports are read or refused by name.
//! Histograms are stored in HdrHistogram's compact encoding (V2, DEFLATE,
//! base64): the one HdrHistogram's own log files use, so other HdrHistogram
//! tools decode them, and so reports of several instances can be merged
//! exactly.

mod build;
mod config;
mod consume;
mod environment;
mod error;
mod histogram;
mod model;
pub mod schema;
pub mod summary;
mod v1;

pub use build::{build, process_cpu, verified, Verification};
pub use config::{Acks, Config};
pub use consume::{
    merge_consume, BacklogResult, ConsumeConfig, ConsumePoint, ConsumeReport, ConsumeResults,
    CONSUME_SCHEMA,
};
pub use environment::{Environment, ProfileVerdict, Tuning};
pub use error::ReportError;
pub use histogram::{distribution, percentiles, AddError};
pub use model::*;

use std::path::Path;

/// The version this build writes.
pub const SCHEMA: &str = "datastorm.run/2";
/// The previous version: no histograms, no environment details. Still read.
pub const SCHEMA_V1: &str = "datastorm.run/1";

/// Writes `report` as pretty JSON.
pub fn write<T: serde::Serialize>(path: &Path, report: &T) -> Result<(), ReportError> {
    let write_error = |error| ReportError::Write {
        path: path.to_owned(),
        error,
    };
    let text =
        serde_json::to_string_pretty(report).map_err(|e| write_error(std::io::Error::other(e)))?;
    std::fs::write(path, text + "\n").map_err(write_error)
}

/// Reads a report, refusing files that are not DataStorm run reports of a
/// version this build understands.
pub fn read(path: &Path) -> Result<RunReport, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|error| ReportError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &text)
}

/// Reads a `datastorm consume` report, or `None` when `path` holds a
/// report of another kind (a run report: [`read`] it).
pub fn read_consume(path: &Path) -> Result<Option<ConsumeReport>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|error| ReportError::Read {
        path: path.to_owned(),
        error,
    })?;
    if schema_of(path, &text)?.as_deref() != Some(CONSUME_SCHEMA) {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| ReportError::Shape {
            path: path.to_owned(),
            error,
        })
}

/// The version a report names (its `schema`), read alone so that a report
/// of another version is told by name before its shape is judged.
fn schema_of(path: &Path, text: &str) -> Result<Option<String>, ReportError> {
    #[derive(serde::Deserialize)]
    struct Version {
        schema: Option<serde_json::Value>,
    }
    let version: Version = serde_json::from_str(text).map_err(|error| ReportError::NotJson {
        path: path.to_owned(),
        error,
    })?;
    Ok(version.schema.and_then(|v| v.as_str().map(str::to_owned)))
}

/// [`read`] of text already read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<RunReport, ReportError> {
    let schema = schema_of(path, text)?;
    let shape = |error| ReportError::Shape {
        path: path.to_owned(),
        error,
    };
    match schema.as_deref() {
        Some(SCHEMA) => serde_json::from_str(text).map_err(shape),
        Some(SCHEMA_V1) => {
            let doc = serde_json::from_str(text).map_err(shape)?;
            serde_json::from_value(v1::upgrade(doc)).map_err(shape)
        }
        Some(other) => Err(ReportError::Version {
            path: path.to_owned(),
            found: other.to_owned(),
        }),
        None => Err(ReportError::NoSchema {
            path: path.to_owned(),
        }),
    }
}

impl RunReport {
    /// A `datastorm.run/1` report: no histograms, send delay or environment details.
    pub fn is_v1(&self) -> bool {
        self.schema == SCHEMA_V1
    }
}
