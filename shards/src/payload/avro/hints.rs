//! The `"datastorm"` hint object: parsing and shape checks.
//!
//! This layer only checks what can be checked without the Avro type (known
//! keys, numbers where numbers belong, `min <= max`, probabilities in 0..=1,
//! regexes that compile). Whether a hint fits the type it is attached to is
//! checked by the compiler, which knows the type.

use serde_json::{Map, Value};

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

/// The `fake` generators, by hint name.
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

/// How numbers are drawn from their range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    Normal,
    Zipf,
}

/// An arithmetic sequence: `start, start+step, ...`, back to `start` once
/// it reaches `restart`.
#[derive(Clone, Debug)]
pub struct Iteration {
    pub start: serde_json::Number,
    pub step: serde_json::Number,
    pub restart: Option<serde_json::Number>,
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
    pub range: Option<(serde_json::Number, serde_json::Number)>,
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
    pub fake: Option<String>,
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

/// Reads the `"datastorm"` attribute of a field or type object, if any.
pub fn hints_of(obj: &Map<String, Value>) -> Result<Hints, String> {
    match obj.get(HINT_ATTRIBUTE) {
        None => Ok(Hints::default()),
        Some(v) => parse(v),
    }
}

/// Parses one hint object.
pub fn parse(v: &Value) -> Result<Hints, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`{HINT_ATTRIBUTE}` must be an object, got {v}"))?;
    let mut h = Hints::default();
    for (key, val) in obj {
        match key.as_str() {
            "range" => {
                let r = val
                    .as_object()
                    .ok_or("`range` must be an object {\"min\": .., \"max\": ..}")?;
                for k in r.keys() {
                    if k != "min" && k != "max" {
                        return Err(format!("unknown key `{k}` in `range` (expected min, max)"));
                    }
                }
                let min = number(r.get("min"), "range.min")?;
                let max = number(r.get("max"), "range.max")?;
                if min.as_f64() > max.as_f64() {
                    return Err(format!(
                        "range.min ({min}) is greater than range.max ({max})"
                    ));
                }
                h.range = Some((min, max));
            }
            "distribution" => {
                h.distribution = Some(match val.as_str() {
                    Some("uniform") => Distribution::Uniform,
                    Some("normal") => Distribution::Normal,
                    Some("zipf") => Distribution::Zipf,
                    _ => {
                        return Err(format!(
                            "`distribution` must be \"uniform\", \"normal\" or \"zipf\", got {val}"
                        ))
                    }
                })
            }
            "mean" => h.mean = Some(float(val, "mean")?),
            "stddev" => {
                let s = float(val, "stddev")?;
                if s < 0.0 {
                    return Err(format!("`stddev` must not be negative, got {s}"));
                }
                h.stddev = Some(s);
            }
            "exponent" => {
                let e = float(val, "exponent")?;
                if e < 0.0 {
                    return Err(format!("`exponent` must not be negative, got {e}"));
                }
                h.exponent = Some(e);
            }
            "options" => {
                let arr = val.as_array().ok_or("`options` must be an array")?;
                if arr.is_empty() {
                    return Err("`options` must not be empty".into());
                }
                // Weighted form when every element is {"value", "weight"}.
                let weighted = arr.iter().all(|o| {
                    o.as_object().is_some_and(|m| {
                        m.contains_key("value") && m.keys().all(|k| k == "value" || k == "weight")
                    })
                });
                let mut opts = Vec::with_capacity(arr.len());
                for o in arr {
                    if weighted {
                        let weight = match o.get("weight") {
                            None => 1.0,
                            Some(w) => float(w, "options[].weight")?,
                        };
                        if !(weight >= 0.0 && weight.is_finite()) {
                            return Err(format!("option weights must be >= 0, got {weight}"));
                        }
                        opts.push(Weighted {
                            value: o["value"].clone(),
                            weight,
                        });
                    } else {
                        opts.push(Weighted {
                            value: o.clone(),
                            weight: 1.0,
                        });
                    }
                }
                if opts.iter().all(|o| o.weight == 0.0) {
                    return Err("option weights must not all be 0".into());
                }
                h.options = Some(opts);
            }
            "regex" => {
                let re = val.as_str().ok_or("`regex` must be a string")?;
                rand_regex::Regex::compile(re, 16)
                    .map_err(|e| format!("`regex` {re:?} does not compile: {e}"))?;
                h.regex = Some(re.to_owned());
            }
            "length" => {
                let (min, max) = match val {
                    Value::Number(_) => {
                        let n = count(val, "length")?;
                        (n, n)
                    }
                    Value::Object(m) => {
                        for k in m.keys() {
                            if k != "min" && k != "max" {
                                return Err(format!(
                                    "unknown key `{k}` in `length` (expected min, max)"
                                ));
                            }
                        }
                        let min = count(m.get("min").unwrap_or(&Value::Null), "length.min")?;
                        let max = count(m.get("max").unwrap_or(&Value::Null), "length.max")?;
                        (min, max)
                    }
                    _ => {
                        return Err("`length` must be a number or {\"min\": .., \"max\": ..}".into())
                    }
                };
                if min > max {
                    return Err(format!(
                        "length.min ({min}) is greater than length.max ({max})"
                    ));
                }
                h.length = Some((min, max));
            }
            "iteration" => {
                let m = val.as_object().ok_or("`iteration` must be an object")?;
                for k in m.keys() {
                    if !["start", "step", "restart"].contains(&k.as_str()) {
                        return Err(format!(
                            "unknown key `{k}` in `iteration` (expected start, step, restart)"
                        ));
                    }
                }
                let start = match m.get("start") {
                    None => 0.into(),
                    s => number(s, "iteration.start")?,
                };
                let step = match m.get("step") {
                    None => 1.into(),
                    s => number(s, "iteration.step")?,
                };
                if step.as_f64() == Some(0.0) {
                    return Err("iteration.step must not be 0".into());
                }
                let restart = match m.get("restart") {
                    None => None,
                    s => Some(number(s, "iteration.restart")?),
                };
                if let Some(r) = &restart {
                    let (s, st, r) = (
                        start.as_f64().unwrap_or(0.0),
                        step.as_f64().unwrap_or(1.0),
                        r.as_f64().unwrap_or(0.0),
                    );
                    if (st > 0.0 && r <= s) || (st < 0.0 && r >= s) {
                        return Err(format!(
                            "iteration.restart ({r}) is never reached from start {s} by step {st}"
                        ));
                    }
                }
                h.iteration = Some(Iteration {
                    start,
                    step,
                    restart,
                });
            }
            "prefix" => {
                h.prefix = Some(val.as_str().ok_or("`prefix` must be a string")?.to_owned())
            }
            "null_probability" => h.null_probability = Some(probability(val, "null_probability")?),
            "probability" => h.probability = Some(probability(val, "probability")?),
            "weights" => {
                let arr = val
                    .as_array()
                    .ok_or("`weights` must be an array of numbers")?;
                let mut ws = Vec::with_capacity(arr.len());
                for w in arr {
                    let w = float(w, "weights[]")?;
                    if !(w >= 0.0 && w.is_finite()) {
                        return Err(format!("weights must be >= 0, got {w}"));
                    }
                    ws.push(w);
                }
                if ws.iter().all(|w| *w == 0.0) {
                    return Err("weights must not all be 0".into());
                }
                h.weights = Some(ws);
            }
            "cardinality" => {
                let n = count(val, "cardinality")?;
                if n == 0 {
                    return Err("`cardinality` must be at least 1".into());
                }
                h.cardinality = Some(n);
            }
            "fake" => {
                let f = val.as_str().ok_or("`fake` must be a string")?;
                if !FAKE_KINDS.contains(&f) {
                    return Err(format!(
                        "unknown fake generator {f:?} (expected one of: {})",
                        FAKE_KINDS.join(", ")
                    ));
                }
                h.fake = Some(f.to_owned());
            }
            "now" => {
                let m = val.as_object().ok_or("`now` must be an object")?;
                let mut jitter = 0;
                let mut offset = 0;
                for (k, v) in m {
                    match k.as_str() {
                        "jitter_ms" => jitter = count(v, "now.jitter_ms")?,
                        "offset_ms" => {
                            offset = v.as_i64().ok_or("now.offset_ms must be an integer")?
                        }
                        _ => {
                            return Err(format!(
                                "unknown key `{k}` in `now` (expected jitter_ms, offset_ms)"
                            ))
                        }
                    }
                }
                h.now = Some((jitter, offset));
            }
            "ref" => {
                let r = val
                    .as_str()
                    .ok_or("`ref` must be a string \"stream.field\"")?;
                if !r.contains('.') || r.starts_with('.') || r.ends_with('.') {
                    return Err(format!("`ref` must look like \"stream.field\", got {r:?}"));
                }
                h.reference = Some(r.to_owned());
            }
            "keys" => h.keys = Some(Box::new(parse(val).map_err(|e| format!("in `keys`: {e}"))?)),
            other => {
                return Err(format!(
                    "unknown hint `{other}` (known: {})",
                    HINT_KEYS.join(", ")
                ))
            }
        }
    }
    Ok(h)
}

fn number(v: Option<&Value>, what: &str) -> Result<serde_json::Number, String> {
    match v {
        Some(Value::Number(n)) => Ok(n.clone()),
        None => Err(format!("{what} is missing")),
        Some(other) => Err(format!("{what} must be a number, got {other}")),
    }
}

fn float(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("{what} must be a number, got {v}"))
}

fn count(v: &Value, what: &str) -> Result<u64, String> {
    match v {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => {
            Err(format!("{what} must not be negative, got {n}"))
        }
        Value::Null => Err(format!("{what} is missing")),
        other => Err(format!("{what} must be a whole number, got {other}")),
    }
}

fn probability(v: &Value, what: &str) -> Result<f64, String> {
    let p = float(v, what)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("`{what}` must be between 0 and 1, got {p}"));
    }
    Ok(p)
}
