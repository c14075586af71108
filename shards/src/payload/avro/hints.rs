//! The `"datastorm"` hint object: parsing and shape checks.
//!
//! serde reads the object into typed structs that refuse unknown keys and
//! wrong types, naming the key path (`range.min`); this layer then checks
//! what the types cannot say (`min <= max`, probabilities in 0..=1, regexes
//! that compile). Whether a hint fits the type it is attached to is checked
//! by the compiler, which knows the type.

use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// The attribute that carries generation hints on fields and type objects.
pub const HINT_ATTRIBUTE: &str = "datastorm";

/// Every key a hint object may have.
pub const HINT_KEYS: &[&str] = &[
    "range",
    "distribution",
    "mean",
    "stddev",
    "exponent",
    "options",
    "regex",
    "length",
    "iteration",
    "prefix",
    "null_probability",
    "weights",
    "cardinality",
    "fake",
    "now",
    "ref",
    "keys",
    "probability",
];

/// The `fake` generators, by hint name (as `FakeKind` spells them).
pub const FAKE_KINDS: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "email",
    "street_address",
    "city",
    "country",
    "country_code",
    "phone",
    "ipv4",
    "ipv6",
    "user_agent",
    "url",
    "uuid",
    "word",
    "sentence",
    "company",
    "zip",
];

/// A `fake` generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FakeKind {
    Name,
    FirstName,
    LastName,
    Email,
    StreetAddress,
    City,
    Country,
    CountryCode,
    Phone,
    Ipv4,
    Ipv6,
    UserAgent,
    Url,
    Uuid,
    Word,
    Sentence,
    Company,
    Zip,
}

/// How numbers are drawn from their range.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Normal,
    Zipf,
}

/// An arithmetic sequence: `start, start+step, ...`, back to `start` once
/// it reaches `restart`.
#[derive(Clone, Debug)]
pub struct Iteration {
    pub start: Number,
    pub step: Number,
    pub restart: Option<Number>,
}

/// One option and its weight (1 when not given).
#[derive(Clone, Debug)]
pub struct Weighted {
    pub value: Value,
    pub weight: f64,
}

/// Parsed hints of one field or type. Every member is optional.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    pub range: Option<(Number, Number)>,
    pub distribution: Option<Distribution>,
    pub mean: Option<f64>,
    pub stddev: Option<f64>,
    pub exponent: Option<f64>,
    pub options: Option<Vec<Weighted>>,
    pub regex: Option<String>,
    pub length: Option<(u64, u64)>,
    pub iteration: Option<Iteration>,
    pub prefix: Option<String>,
    pub null_probability: Option<f64>,
    pub weights: Option<Vec<f64>>,
    pub cardinality: Option<u64>,
    pub fake: Option<FakeKind>,
    /// `(jitter_ms, offset_ms)`.
    pub now: Option<(u64, i64)>,
    pub reference: Option<String>,
    pub keys: Option<Box<Hints>>,
    pub probability: Option<f64>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        self.keys_present().is_empty()
    }

    /// The hint keys that are set, in vocabulary order.
    pub fn keys_present(&self) -> Vec<&'static str> {
        let set = [
            self.range.is_some(),
            self.distribution.is_some(),
            self.mean.is_some(),
            self.stddev.is_some(),
            self.exponent.is_some(),
            self.options.is_some(),
            self.regex.is_some(),
            self.length.is_some(),
            self.iteration.is_some(),
            self.prefix.is_some(),
            self.null_probability.is_some(),
            self.weights.is_some(),
            self.cardinality.is_some(),
            self.fake.is_some(),
            self.now.is_some(),
            self.reference.is_some(),
            self.keys.is_some(),
            self.probability.is_some(),
        ];
        HINT_KEYS
            .iter()
            .zip(set)
            .filter(|(_, s)| *s)
            .map(|(k, _)| *k)
            .collect()
    }

    /// `self` with every hint `over` sets replaced by `over`'s.
    pub fn merged(mut self, over: Hints) -> Hints {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            range,
            distribution,
            mean,
            stddev,
            exponent,
            options,
            regex,
            length,
            iteration,
            prefix,
            null_probability,
            weights,
            cardinality,
            fake,
            now,
            reference,
            keys,
            probability
        );
        self
    }
}

/// Why a hint object is refused: the key path inside it (empty for the
/// object itself) and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct HintError {
    pub path: String,
    pub reason: String,
}

impl HintError {
    fn new(reason: impl Into<String>) -> Self {
        HintError {
            path: String::new(),
            reason: reason.into(),
        }
    }
}

/// A reason about the hint object as a whole (the checks after parsing
/// name the keys in the reason).
impl From<String> for HintError {
    fn from(reason: String) -> Self {
        HintError::new(reason)
    }
}

impl From<&str> for HintError {
    fn from(reason: &str) -> Self {
        HintError::new(reason)
    }
}

/// Reads the `"datastorm"` attribute of a field or type object, if any.
pub fn hints_of(obj: &Map<String, Value>) -> Result<Hints, HintError> {
    match obj.get(HINT_ATTRIBUTE) {
        None => Ok(Hints::default()),
        Some(v) => parse(v),
    }
}

/// Parses one hint object.
pub fn parse(v: &Value) -> Result<Hints, HintError> {
    if !v.is_object() {
        return Err(HintError::new(format!(
            "`{HINT_ATTRIBUTE}` must be an object, got {v}"
        )));
    }
    let written: HintObject = serde_path_to_error::deserialize(v).map_err(|e| {
        let mut path = e.path().to_string();
        let reason = e.into_inner().to_string();
        // The path of an unknown key ends in that key, which the reason names.
        if reason.starts_with("unknown field") {
            path.truncate(path.rfind('.').unwrap_or(0));
        }
        if path == "." {
            path.clear();
        }
        HintError { path, reason }
    })?;
    written.check()
}

/// The hint object as written: every key optional, no other keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HintObject {
    range: Option<MinMax<Number>>,
    distribution: Option<Distribution>,
    mean: Option<f64>,
    stddev: Option<f64>,
    exponent: Option<f64>,
    /// Values of the field's type, checked against it by the compiler; or
    /// `{"value": .., "weight": ..}` objects.
    options: Option<Vec<Value>>,
    regex: Option<String>,
    length: Option<Length>,
    iteration: Option<IterationObject>,
    prefix: Option<String>,
    null_probability: Option<f64>,
    weights: Option<Vec<f64>>,
    cardinality: Option<Whole>,
    fake: Option<FakeKind>,
    now: Option<NowObject>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    keys: Option<Box<HintObject>>,
    probability: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinMax<T> {
    min: T,
    max: T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IterationObject {
    start: Option<Number>,
    step: Option<Number>,
    restart: Option<Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NowObject {
    #[serde(default)]
    jitter_ms: Whole,
    #[serde(default)]
    offset_ms: i64,
}

/// A count: a whole number, not negative.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(try_from = "Number")]
struct Whole(u64);

impl TryFrom<Number> for Whole {
    type Error = String;
    fn try_from(n: Number) -> Result<Self, String> {
        match n.as_u64() {
            Some(w) => Ok(Whole(w)),
            None if n.as_i64().is_some_and(|i| i < 0) => {
                Err(format!("must not be negative, got {n}"))
            }
            None => Err(format!("must be a whole number, got {n}")),
        }
    }
}

/// `length`: a number, or `{"min": .., "max": ..}`.
enum Length {
    Exact(Whole),
    Between(MinMax<Whole>),
}

impl<'de> Deserialize<'de> for Length {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LengthVisitor)
    }
}

/// Reads either form of `length`, keeping the key path of a bad bound.
struct LengthVisitor;

impl<'de> serde::de::Visitor<'de> for LengthVisitor {
    type Value = Length;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a whole number or {\"min\": .., \"max\": ..}")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Length, E> {
        Ok(Length::Exact(Whole(n)))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Length, E> {
        Whole::try_from(Number::from(n))
            .map(Length::Exact)
            .map_err(E::custom)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Length, A::Error> {
        MinMax::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Length::Between)
    }
}

impl HintObject {
    /// The hints, once the values make sense together.
    fn check(self) -> Result<Hints, HintError> {
        if let Some(r) = &self.range {
            if r.min.as_f64() > r.max.as_f64() {
                return Err(format!(
                    "range.min ({}) is greater than range.max ({})",
                    r.min, r.max
                )
                .into());
            }
        }
        for (name, v) in [("stddev", self.stddev), ("exponent", self.exponent)] {
            if let Some(v) = v.filter(|v| *v < 0.0) {
                return Err(format!("`{name}` must not be negative, got {v}").into());
            }
        }
        if let Some(re) = &self.regex {
            rand_regex::Regex::compile(re, 16)
                .map_err(|e| format!("`regex` {re:?} does not compile: {e}"))?;
        }
        for (name, p) in [
            ("null_probability", self.null_probability),
            ("probability", self.probability),
        ] {
            if let Some(p) = p.filter(|p| !(0.0..=1.0).contains(p)) {
                return Err(format!("`{name}` must be between 0 and 1, got {p}").into());
            }
        }
        if let Some(ws) = &self.weights {
            check_weights(ws, "weights")?;
        }
        if self.cardinality.is_some_and(|c| c.0 == 0) {
            return Err("`cardinality` must be at least 1".into());
        }
        if let Some(r) = &self.reference {
            if !r.contains('.') || r.starts_with('.') || r.ends_with('.') {
                return Err(format!("`ref` must look like \"stream.field\", got {r:?}").into());
            }
        }
        Ok(Hints {
            range: self.range.map(|r| (r.min, r.max)),
            distribution: self.distribution,
            mean: self.mean,
            stddev: self.stddev,
            exponent: self.exponent,
            options: self.options.map(options).transpose()?,
            regex: self.regex,
            length: self.length.map(Length::bounds).transpose()?,
            iteration: self.iteration.map(IterationObject::check).transpose()?,
            prefix: self.prefix,
            null_probability: self.null_probability,
            weights: self.weights,
            cardinality: self.cardinality.map(|c| c.0),
            fake: self.fake,
            now: self.now.map(|n| (n.jitter_ms.0, n.offset_ms)),
            reference: self.reference,
            keys: match self.keys {
                None => None,
                Some(k) => Some(Box::new(k.check().map_err(|e| format!("in `keys`: {e}"))?)),
            },
            probability: self.probability,
        })
    }
}

impl Length {
    fn bounds(self) -> Result<(u64, u64), HintError> {
        let (min, max) = match self {
            Length::Exact(n) => (n.0, n.0),
            Length::Between(m) => (m.min.0, m.max.0),
        };
        if min > max {
            return Err(format!("length.min ({min}) is greater than length.max ({max})").into());
        }
        Ok((min, max))
    }
}

impl IterationObject {
    fn check(self) -> Result<Iteration, HintError> {
        let start = self.start.unwrap_or_else(|| 0.into());
        let step = self.step.unwrap_or_else(|| 1.into());
        if step.as_f64() == Some(0.0) {
            return Err("iteration.step must not be 0".into());
        }
        if let Some(r) = &self.restart {
            let (s, st, r) = (
                start.as_f64().unwrap_or(0.0),
                step.as_f64().unwrap_or(1.0),
                r.as_f64().unwrap_or(0.0),
            );
            if (st > 0.0 && r <= s) || (st < 0.0 && r >= s) {
                return Err(format!(
                    "iteration.restart ({r}) is never reached from start {s} by step {st}"
                )
                .into());
            }
        }
        Ok(Iteration {
            start,
            step,
            restart: self.restart,
        })
    }
}

/// `options`: plain values, or `{"value", "weight"}` objects when every
/// element is one (a weight defaults to 1).
fn options(arr: Vec<Value>) -> Result<Vec<Weighted>, HintError> {
    if arr.is_empty() {
        return Err("`options` must not be empty".into());
    }
    let weighted = arr.iter().all(|o| {
        o.as_object().is_some_and(|m| {
            m.contains_key("value") && m.keys().all(|k| k == "value" || k == "weight")
        })
    });
    if !weighted {
        return Ok(arr
            .into_iter()
            .map(|value| Weighted { value, weight: 1.0 })
            .collect());
    }
    let mut opts = Vec::with_capacity(arr.len());
    for (i, mut o) in arr.into_iter().enumerate() {
        let weight = match o.get("weight") {
            None => 1.0,
            Some(w) => w
                .as_f64()
                .ok_or_else(|| format!("options[{i}].weight must be a number, got {w}"))?,
        };
        opts.push(Weighted {
            value: o["value"].take(),
            weight,
        });
    }
    let weights: Vec<f64> = opts.iter().map(|o| o.weight).collect();
    check_weights(&weights, "option weights")?;
    Ok(opts)
}

fn check_weights(ws: &[f64], what: &str) -> Result<(), HintError> {
    if let Some(w) = ws.iter().find(|w| !(**w >= 0.0 && w.is_finite())) {
        return Err(format!("{what} must be >= 0, got {w}").into());
    }
    if ws.iter().all(|w| *w == 0.0) {
        return Err(format!("{what} must not all be 0").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fake_name_is_a_distinct_kind() {
        let kinds: Vec<FakeKind> = FAKE_KINDS
            .iter()
            .map(|name| serde_json::from_value(Value::from(*name)).expect(name))
            .collect();
        for (i, k) in kinds.iter().enumerate() {
            assert!(!kinds[..i].contains(k), "{k:?}");
        }
    }
}
