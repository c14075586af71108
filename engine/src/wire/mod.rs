//! The Kafka wire: framing, the hand-written Produce path, kafka-protocol for
//! everything else, and Kafka's error codes.

pub mod codes;
pub mod control;
mod cursor;
pub mod fetch;
pub mod frame;
mod guard;
pub mod produce;
pub mod varint;

/// A response that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("response ended early")]
    Truncated,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("{api} v{version} is not supported by this reader")]
    UnsupportedVersion { api: &'static str, version: i16 },
    #[error("frame of {size} bytes is over the {limit}-byte limit")]
    FrameTooLarge { size: i64, limit: usize },
    #[error("response to correlation id {got}, expected {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("could not decode {api} response: {detail}")]
    Decode { api: &'static str, detail: String },
    #[error("could not encode {api} request: {detail}")]
    Encode { api: &'static str, detail: String },
}
