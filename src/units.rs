//! Parsers for the human-friendly numbers flags take.

use std::time::Duration;

/// A number a flag cannot take, with the text as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("empty duration")]
    EmptyDuration,
    #[error("'{0}' lacks a unit (ms, s, m, h)")]
    NoUnit(String),
    #[error("'{0}' is not a duration like 10s, 500ms or 2m")]
    NotADuration(String),
    #[error("unknown unit '{unit}' in '{text}' (use ms, s, m, h)")]
    DurationUnit { unit: String, text: String },
    #[error("'{0}' is not a positive duration")]
    NegativeDuration(String),
    #[error("'{0}' is not a size like 16384, 64KiB or 1MiB")]
    NotASize(String),
    #[error("unknown size unit '{unit}' in '{text}' (use KiB or MiB)")]
    SizeUnit { unit: String, text: String },
    #[error("'{0}' is too large")]
    TooLarge(String),
    #[error("'{0}' is not a number like 1000000, 100k or 1.5M")]
    NotACount(String),
    #[error("'{0}' must be a positive number")]
    NegativeCount(String),
}

/// Durations like `10s`, `500ms`, `2m`, `1h`, `1m30s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs, s);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| UnitError::NoUnit(s.into()))?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let n: f64 = num.parse().map_err(|_| UnitError::NotADuration(s.into()))?;
        total += n * match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(UnitError::DurationUnit {
                    unit: unit.into(),
                    text: s.into(),
                })
            }
        };
        rest = tail;
    }
    secs_to_duration(total, s)
}

fn secs_to_duration(secs: f64, s: &str) -> Result<Duration, UnitError> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(UnitError::NegativeDuration(s.into()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Byte sizes like `65536`, `64k`, `64KiB`, `1MiB`, `1MB` (k and KiB are 1024).
pub fn parse_bytes(s: &str) -> Result<usize, UnitError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| UnitError::NotASize(s.into()))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => {
            return Err(UnitError::SizeUnit {
                unit: unit.into(),
                text: s.into(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(s.into()))
}

/// Counts and rates like `1000000`, `100k`, `1.5M`, `2G` (powers of 1000).
pub fn parse_count(s: &str) -> Result<f64, UnitError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let n: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| UnitError::NotACount(s.into()))?;
    if !n.is_finite() || n < 0.0 {
        return Err(UnitError::NegativeCount(s.into()));
    }
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(parse_bytes("64KiB").unwrap(), 65536);
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("16384").unwrap(), 16384);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(parse_count("100k").unwrap(), 100_000.0);
        assert_eq!(parse_count("1.5M").unwrap(), 1_500_000.0);
        assert_eq!(parse_count("1_000").unwrap(), 1000.0);
        assert!(parse_count("fast").is_err());
    }
}
