//! Latency histograms in reports: percentiles, and the histogram itself in
//! HdrHistogram's compact form (V2 encoding, DEFLATE, base64).

use super::{Distribution, Microseconds, Percentiles, ReportError};
use base64::Engine as _;
use datastorm_engine::metrics::latency_histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// A histogram in HdrHistogram's compact form: V2 encoding, DEFLATE, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec only fails for histograms that cannot be
    // encoded at all (none that DataStorm makes).
    if V2DeflateSerializer::new().serialize(h, &mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`encode_histogram`]; an empty string is an empty histogram.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, ReportError> {
    if text.is_empty() {
        return Ok(latency_histogram());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(ReportError::HistogramBase64)?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| ReportError::HistogramDecode(format!("{e:?}")))
}

/// Percentiles of a histogram (microseconds), without the histogram itself.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let q = |x: f64| h.value_at_quantile(x);
    Percentiles {
        unit: Microseconds::Microseconds,
        count: h.len(),
        min: h.min(),
        mean: h.mean(),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
        p99_99: q(0.9999),
        max: h.max(),
    }
}

/// Percentiles plus the full histogram, so that readers can draw the
/// percentile curve and merge reports exactly.
pub fn distribution(h: &Histogram<u64>) -> Distribution {
    Distribution {
        percentiles: percentiles(h),
        histogram: Some(encode_histogram(h)),
    }
}

/// Why a distribution cannot be added to others exactly.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("a latency distribution has no histogram")]
    NoHistogram,
    #[error(transparent)]
    Decode(ReportError),
    #[error("cannot add: {0}")]
    Add(String),
}

impl Distribution {
    /// The stored histogram, decoded (None in datastorm.run/1 reports).
    pub fn decoded(&self) -> Option<Result<Histogram<u64>, ReportError>> {
        self.histogram.as_deref().map(decode_histogram)
    }

    /// Adds the stored histogram into `sum`, exactly (what merging
    /// reports needs). A distribution of nothing adds nothing, with or
    /// without a histogram.
    pub fn add_into(&self, sum: &mut Histogram<u64>) -> Result<(), AddError> {
        match self.decoded() {
            Some(h) => {
                let h = h.map_err(AddError::Decode)?;
                sum.add(&h).map_err(|e| AddError::Add(format!("{e:?}")))
            }
            None if self.percentiles.count == 0 => Ok(()),
            None => Err(AddError::NoHistogram),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_encoding() {
        let mut h = latency_histogram();
        for v in [1u64, 5, 900, 12_345, 3_000_000] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let text = encode_histogram(&h);
        assert!(text.starts_with("HISTF"), "{text}");
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back, h);
        assert!(decode_histogram("").unwrap().is_empty());
        assert!(decode_histogram("not base64!").is_err());
    }
}
