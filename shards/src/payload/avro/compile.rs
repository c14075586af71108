//! Schema JSON + hints -> [`Plan`].
//!
//! The schema is read from its JSON (apache-avro has already checked it is
//! valid Avro) because hints live in attributes apache-avro does not keep on
//! every kind of type. Every hint is checked against the type it is attached
//! to here, once, so the per-record walk never meets a bad hint.

use super::draw::{Chance, Gauss, ZipfTable};
use super::hints::{self, Distribution, FakeKind, Hints};
use super::plan::*;
use fake::Fake;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Normal, Zipf};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Values pre-generated per field for hints whose generators allocate.
pub const POOL_VALUES: usize = 4096;

/// Zipf ranges up to this many values get alias tables (8 bytes a value).
const ZIPF_TABLE_MAX: usize = 1 << 20;

/// A compile-time error before the file name is attached: where (the
/// field path, `(root)` for the schema itself) and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Fail {
    pub path: String,
    pub reason: Reason,
}

/// Why a type in a schema cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    #[error("unknown type {0:?}")]
    UnknownType(String),
    /// A type object that is not an object.
    #[error("not a schema")]
    NotAnObject,
    /// A type that is neither a name, a union nor an object.
    #[error("not a schema: {0}")]
    NotASchema(Value),
    #[error("type object without \"type\"")]
    NoType,
    /// An array without `items` or a map without `values`.
    #[error("{0} without its item type")]
    NoItemType(String),
    #[error("record without \"fields\"")]
    NoFields,
    #[error("field is not an object")]
    FieldNotAnObject,
    #[error("field without \"type\"")]
    FieldWithoutType,
    /// The hint object itself is wrong.
    #[error(transparent)]
    Hints(#[from] hints::HintError),
    #[error("hint `{key}` does not apply to {kind} (it applies to {})", applies_to(.key))]
    NotApplicable { key: &'static str, kind: String },
    /// Two hints that exclude each other.
    #[error("`{0}` cannot be combined with `{1}`")]
    Combined(&'static str, &'static str),
    #[error("option {value} does not fit {kind}: {why}")]
    OptionMisfit {
        value: Value,
        kind: String,
        why: String,
    },
    #[error("a union needs at least one type")]
    EmptyUnion,
    /// A hint for the value on a union with several non-null branches.
    #[error("hint `{0}` on a union of several types: put it on the branch type instead")]
    UnionValueHint(&'static str),
    #[error("`null_probability` needs a union with \"null\"")]
    NoNullBranch,
    #[error("`weights` has {given} entries for a union of {branches} types")]
    WeightCount { given: usize, branches: usize },
    #[error("the union's weights leave no branch to pick")]
    NoBranchToPick,
    /// A hint whose value does not fit its type (a range, a
    /// distribution's parameters, a regex, a decimal's precision, ...).
    #[error("{0}")]
    Value(String),
}

impl Fail {
    fn at(path: &str, reason: Reason) -> Fail {
        Fail {
            path: show(path),
            reason,
        }
    }
}

struct Named {
    id: NodeId,
    def: Map<String, Value>,
    ns: Option<String>,
}

/// A `ref` waiting for every stream to be compiled.
pub struct PendingRef {
    pub id: NodeId,
    pub target: String,
    pub path: String,
}

/// A field with a cardinality set that another stream may reference.
#[derive(Clone)]
pub struct SetInfo {
    pub n: u64,
    pub seed: u64,
    pub inner: Node,
    /// What the inner node writes, to check a referencing field's type.
    pub signature: String,
    pub container: bool,
}

pub struct Compiler<'a> {
    stream: &'a str,
    seed: u64,
    pub nodes: Vec<Node>,
    counters: usize,
    named: HashMap<String, Named>,
    pub refs: Vec<PendingRef>,
    pub sets: HashMap<String, SetInfo>,
    signatures: Vec<String>,
    /// Per node, the node whose Avro type it writes (see [`Plan::typed`]).
    typed: Vec<NodeId>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

pub fn show(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The hints allowed on each kind of type, besides `options`,
/// `cardinality` and `ref` which fit every kind that can carry them.
fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "boolean" => &["probability"],
        "int" | "long" | "float" | "double" | "time-millis" | "time-micros" => &[
            "range",
            "distribution",
            "mean",
            "stddev",
            "exponent",
            "iteration",
        ],
        "date"
        | "timestamp-millis"
        | "timestamp-micros"
        | "timestamp-nanos"
        | "local-timestamp-millis"
        | "local-timestamp-micros"
        | "local-timestamp-nanos" => &[
            "range",
            "distribution",
            "mean",
            "stddev",
            "exponent",
            "iteration",
            "now",
        ],
        "decimal" => &["range", "distribution", "mean", "stddev"],
        "string" => &["regex", "length", "prefix", "iteration", "fake"],
        "bytes" | "array" => &["length"],
        "map" => &["length", "keys"],
        "union" => &["null_probability", "weights"],
        _ => &[],
    }
}

fn applies_to(key: &str) -> &'static str {
    match key {
        "range" | "distribution" | "mean" | "stddev" => {
            "int, long, float, double, decimal and date/time types"
        }
        "exponent" | "iteration" => {
            "int, long, float, double and date/time types (iteration also string)"
        }
        "regex" | "prefix" | "fake" => "string",
        "length" => "string, bytes, array and map",
        "null_probability" | "weights" => "union",
        "now" => "date and timestamp types",
        "keys" => "map",
        "probability" => "boolean",
        _ => "any type",
    }
}

impl<'a> Compiler<'a> {
    pub fn new(stream: &'a str, seed: u64) -> Self {
        Compiler {
            stream,
            seed,
            nodes: Vec::new(),
            counters: 0,
            named: HashMap::new(),
            refs: Vec::new(),
            sets: HashMap::new(),
            signatures: Vec::new(),
            typed: Vec::new(),
        }
    }

    pub fn finish(self, root: NodeId) -> Plan {
        Plan {
            nodes: self.nodes,
            root,
            counters: self.counters,
            lagged: 0,
            typed: self.typed,
        }
    }

    /// What node `id` writes, e.g. `long`, `enum:Status:A,B`.
    pub fn signature(&self, id: NodeId) -> &str {
        &self.signatures[id as usize]
    }

    pub fn push_node(&mut self, n: Node, signature: String) -> NodeId {
        self.push(n, signature)
    }

    /// Turns the `ref` placeholder `id` into a draw from another stream's
    /// cardinality set, whose values `inner` generates.
    pub fn resolve_ref(&mut self, id: NodeId, n: u64, seed: u64, inner: NodeId) {
        self.nodes[id as usize] = Node::Cardinality { n, seed, inner };
        self.typed[id as usize] = self.typed[inner as usize];
    }

    fn push(&mut self, n: Node, signature: String) -> NodeId {
        self.nodes.push(n);
        self.signatures.push(signature);
        let id = (self.nodes.len() - 1) as NodeId;
        self.typed.push(id);
        id
    }

    /// Pushes `n`, which writes values of `base`'s type (options, a
    /// cardinality set).
    fn push_over(&mut self, base: NodeId, n: Node, signature: String) -> NodeId {
        let id = self.push(n, signature);
        self.typed[id as usize] = self.typed[base as usize];
        id
    }

    fn counter(&mut self) -> usize {
        self.counters += 1;
        self.counters - 1
    }

    fn set_seed(&self, path: &str) -> u64 {
        mix(self.seed, fnv(&format!("{}.{path}", self.stream)))
    }

    /// Compiles the type `schema` found at `path`, with the hints of the
    /// field that holds it (`field`), if any.
    pub fn compile(
        &mut self,
        schema: &Value,
        ns: Option<&str>,
        path: &str,
        field: Hints,
    ) -> Result<NodeId, Fail> {
        let fail = |r| Fail::at(path, r);
        match schema {
            Value::String(name) => match name.as_str() {
                "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string" => {
                    self.primitive(name, None, &Map::new(), path, field)
                }
                _ => {
                    let full = self
                        .resolve_name(name, ns)
                        .ok_or_else(|| fail(Reason::UnknownType(name.clone())))?;
                    let named = &self.named[&full];
                    if field.is_empty() {
                        Ok(named.id)
                    } else {
                        // Hints on this use of a named type: a copy of it.
                        let def = Value::Object(named.def.clone());
                        let def_ns = named.ns.clone();
                        self.compile_object(&def, def_ns.as_deref(), path, field, false)
                    }
                }
            },
            Value::Array(branches) => self.union(branches, ns, path, field),
            Value::Object(_) => self.compile_object(schema, ns, path, field, true),
            other => Err(fail(Reason::NotASchema(other.clone()))),
        }
    }

    fn resolve_name(&self, name: &str, ns: Option<&str>) -> Option<String> {
        if let Some(ns) = ns.filter(|_| !name.contains('.')) {
            let full = format!("{ns}.{name}");
            if self.named.contains_key(&full) {
                return Some(full);
            }
        }
        self.named.contains_key(name).then(|| name.to_owned())
    }

    fn compile_object(
        &mut self,
        schema: &Value,
        ns: Option<&str>,
        path: &str,
        field: Hints,
        register: bool,
    ) -> Result<NodeId, Fail> {
        let fail = |r| Fail::at(path, r);
        let obj = schema
            .as_object()
            .ok_or_else(|| fail(Reason::NotAnObject))?;
        let own = hints::hints_of(obj).map_err(|e| fail(e.into()))?;
        let h = own.merged(field);
        let ty = obj.get("type").ok_or_else(|| fail(Reason::NoType))?;
        let ty_name = match ty {
            Value::String(s) => s.as_str(),
            // {"type": {...}} or {"type": [...]}: the hints wrap the inner type.
            inner => return self.compile(inner, ns, path, h),
        };
        match ty_name {
            "record" | "error" | "enum" | "fixed" => {
                let (full, own_ns) = full_name(obj, ns);
                if ty_name == "record" || ty_name == "error" {
                    self.record(obj, full, own_ns, path, h, register)
                } else {
                    let id = self.enum_or_fixed(ty_name, obj, path, h)?;
                    if register {
                        self.named.insert(
                            full,
                            Named {
                                id,
                                def: obj.clone(),
                                ns: own_ns,
                            },
                        );
                    }
                    Ok(id)
                }
            }
            "array" | "map" => {
                let inner = obj
                    .get(if ty_name == "array" {
                        "items"
                    } else {
                        "values"
                    })
                    .ok_or_else(|| fail(Reason::NoItemType(ty_name.to_owned())))?;
                self.container(ty_name, inner, ns, path, h)
            }
            "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string" => {
                let logical = obj.get("logicalType").and_then(Value::as_str);
                self.primitive(ty_name, logical, obj, path, h)
            }
            other => {
                // A named type used as {"type": "Name"}.
                self.compile(&Value::String(other.to_owned()), ns, path, h)
            }
        }
    }

    /// Checks `h` against `kind`, then builds the node with `build` and
    /// wraps it in `options` / `cardinality` / `ref` as asked.
    fn wrap(
        &mut self,
        kind: &str,
        path: &str,
        mut h: Hints,
        build: impl FnOnce(&mut Self, &Hints) -> Result<NodeId, String>,
    ) -> Result<NodeId, Fail> {
        let fail = |r| Fail::at(path, r);
        let ok = allowed(kind);
        for key in h.keys_present() {
            if !ok.contains(&key) && !["options", "cardinality", "ref"].contains(&key) {
                return Err(fail(Reason::NotApplicable {
                    key,
                    kind: kind.to_owned(),
                }));
            }
        }
        if let Some(target) = h.reference.take() {
            if let Some(&other) = h.keys_present().first() {
                return Err(fail(Reason::Combined("ref", other)));
            }
            let sig = kind_signature(kind);
            let id = self.push(Node::Unresolved, sig);
            self.refs.push(PendingRef {
                id,
                target,
                path: path.to_owned(),
            });
            return Ok(id);
        }
        let options = h.options.take();
        let cardinality = h.cardinality.take();
        let mut id = if options.is_some() {
            if let Some(&other) = h.keys_present().first() {
                return Err(fail(Reason::Combined("options", other)));
            }
            build(self, &Hints::default()).map_err(|e| fail(Reason::Value(e)))?
        } else {
            build(self, &h).map_err(|e| fail(Reason::Value(e)))?
        };
        if let Some(opts) = options {
            let mut values = Vec::with_capacity(opts.len());
            for o in &opts {
                let c = self.constant(id, &o.value).map_err(|why| {
                    fail(Reason::OptionMisfit {
                        value: o.value.clone(),
                        kind: kind.to_owned(),
                        why,
                    })
                })?;
                values.push(c);
            }
            let w: Vec<f64> = opts.iter().map(|o| o.weight).collect();
            let sig = self.signatures[id as usize].clone();
            let node = Node::Options {
                values,
                pick: Pick::from_weights(&w),
            };
            id = self.push_over(id, node, sig);
        }
        if let Some(n) = cardinality {
            let seed = self.set_seed(path);
            let sig = self.signatures[id as usize].clone();
            let container = matches!(kind, "record" | "array" | "map" | "union");
            self.sets.insert(
                path.to_owned(),
                SetInfo {
                    n,
                    seed,
                    inner: self.nodes[id as usize].clone(),
                    signature: sig.clone(),
                    container,
                },
            );
            id = self.push_over(id, Node::Cardinality { n, seed, inner: id }, sig);
        }
        Ok(id)
    }

    fn primitive(
        &mut self,
        ty: &str,
        logical: Option<&str>,
        obj: &Map<String, Value>,
        path: &str,
        h: Hints,
    ) -> Result<NodeId, Fail> {
        let kind = primitive_kind(ty, logical);
        let sig = kind_signature(ty);
        self.wrap(kind, path, h, move |c, h| {
            let node = c.primitive_node(kind, h, obj, path)?;
            Ok(c.push(node, sig))
        })
    }

    /// The node of a primitive type, or of the logical type `kind` over
    /// one, at `path` (`obj` is its schema object, for a decimal's
    /// precision and scale).
    fn primitive_node(
        &mut self,
        kind: &str,
        h: &Hints,
        obj: &Map<String, Value>,
        path: &str,
    ) -> Result<Node, String> {
        let seed = self.seed;
        Ok(match kind {
            "null" => Node::Null,
            "boolean" => Node::Bool {
                p_true: Chance::new(h.probability.unwrap_or(0.5)),
            },
            "int" => Node::Int(self.int_gen(h, i64::from(i32::MIN), i64::from(i32::MAX), true)?),
            "long" => Node::Long(self.int_gen(h, i64::MIN, i64::MAX, false)?),
            "time-millis" => Node::Int(self.int_gen(h, 0, 86_399_999, true)?),
            "time-micros" => Node::Long(self.int_gen(h, 0, 86_399_999_999, false)?),
            "float" => Node::Float(self.float_gen(h, 0.0, 1.0)?),
            "double" => Node::Double(self.float_gen(h, 0.0, 1.0)?),
            "date"
            | "timestamp-millis"
            | "timestamp-micros"
            | "timestamp-nanos"
            | "local-timestamp-millis"
            | "local-timestamp-micros"
            | "local-timestamp-nanos" => self.date_time(kind, h)?,
            "uuid" => Node::Str(StrGen {
                prefix: Box::default(),
                kind: StrKind::Uuid,
            }),
            "string" => Node::Str(self.str_gen(h, path, seed)?),
            "bytes" => Node::Bytes {
                len: len_of(h, 8, 16),
            },
            "decimal" => self.decimal(h, obj, None)?,
            other => return Err(format!("unsupported type {other}")),
        })
    }

    /// A date or timestamp (`kind`): values around the clock at the time
    /// of writing, or, with `range` or `iteration`, drawn as an int (date)
    /// or a long.
    fn date_time(&mut self, kind: &str, h: &Hints) -> Result<Node, String> {
        if h.range.is_some() || h.iteration.is_some() {
            if h.now.is_some() {
                return Err("`now` cannot be combined with `range` or `iteration`".into());
            }
            return Ok(if kind == "date" {
                Node::Int(self.int_gen(h, i64::from(i32::MIN), i64::from(i32::MAX), true)?)
            } else {
                Node::Long(self.int_gen(h, i64::MIN, i64::MAX, false)?)
            });
        }
        if h.distribution.is_some() {
            return Err("`distribution` needs a `range`".into());
        }
        let unit = match kind {
            "date" => TimeUnit::Days,
            k if k.ends_with("millis") => TimeUnit::Millis,
            k if k.ends_with("micros") => TimeUnit::Micros,
            _ => TimeUnit::Nanos,
        };
        let default_jitter = if unit == TimeUnit::Days {
            30 * 86_400_000
        } else {
            1_000
        };
        let (jitter_ms, offset_ms) = h.now.unwrap_or((default_jitter, 0));
        Ok(Node::Now {
            unit,
            jitter_ms,
            offset_ms,
        })
    }

    fn int_gen(&mut self, h: &Hints, lo: i64, hi: i64, int: bool) -> Result<NumGen<i64>, String> {
        let what = if int { "int" } else { "long" };
        let as_int = |n: &serde_json::Number, name: &str| -> Result<i64, String> {
            let v = n
                .as_i64()
                .ok_or_else(|| format!("{name} must be a whole number for {what}, got {n}"))?;
            if int && i32::try_from(v).is_err() {
                return Err(format!("{name} ({v}) is out of range for {what}"));
            }
            Ok(v)
        };
        let (min, max) = match &h.range {
            Some((a, b)) => (as_int(a, "range.min")?, as_int(b, "range.max")?),
            None => (lo, hi),
        };
        if let Some(it) = &h.iteration {
            if h.range.is_some() || h.distribution.is_some() {
                return Err("`iteration` cannot be combined with `range` or `distribution`".into());
            }
            let start = as_int(&it.start, "iteration.start")?;
            let step = as_int(&it.step, "iteration.step")?;
            let period = match &it.restart {
                Some(r) => {
                    let r = as_int(r, "iteration.restart")?;
                    let span = (i128::from(r) - i128::from(start)).unsigned_abs();
                    let st = i128::from(step).unsigned_abs();
                    Some(span.div_ceil(st) as u64)
                }
                None => None,
            };
            let counter = self.counter();
            return Ok(NumGen {
                min,
                max,
                dist: Dist::Iter(Iter {
                    start,
                    step,
                    period,
                    counter,
                }),
            });
        }
        let dist = self.dist(h, min as f64, max as f64)?;
        Ok(NumGen { min, max, dist })
    }

    fn float_gen(&mut self, h: &Hints, lo: f64, hi: f64) -> Result<NumGen<f64>, String> {
        let f = |n: &serde_json::Number| n.as_f64().unwrap_or(0.0);
        let (min, max) = match &h.range {
            Some((a, b)) => (f(a), f(b)),
            None => (lo, hi),
        };
        if let Some(it) = &h.iteration {
            if h.range.is_some() || h.distribution.is_some() {
                return Err("`iteration` cannot be combined with `range` or `distribution`".into());
            }
            let (start, step) = (f(&it.start), f(&it.step));
            let period = it
                .restart
                .as_ref()
                .map(|r| ((f(r) - start) / step).abs().ceil().max(1.0) as u64);
            let counter = self.counter();
            return Ok(NumGen {
                min,
                max,
                dist: Dist::Iter(Iter {
                    start,
                    step,
                    period,
                    counter,
                }),
            });
        }
        let dist = self.dist(h, min, max)?;
        Ok(NumGen { min, max, dist })
    }

    fn dist<T>(&self, h: &Hints, min: f64, max: f64) -> Result<Dist<T>, String> {
        let d = h.distribution.unwrap_or(Distribution::Uniform);
        if d != Distribution::Normal && (h.mean.is_some() || h.stddev.is_some()) {
            return Err("`mean` and `stddev` need \"distribution\": \"normal\"".into());
        }
        if d != Distribution::Zipf && h.exponent.is_some() {
            return Err("`exponent` needs \"distribution\": \"zipf\"".into());
        }
        if d != Distribution::Uniform && h.range.is_none() {
            return Err("`distribution` needs a `range`".into());
        }
        Ok(match d {
            Distribution::Uniform => Dist::Uniform,
            Distribution::Normal => {
                let mean = h.mean.unwrap_or((min + max) / 2.0);
                let sd = h.stddev.unwrap_or((max - min) / 6.0);
                // rand_distr checks the parameters; the plan draws with
                // its own ziggurat (see `draw::Gauss`).
                let n =
                    Normal::new(mean, sd).map_err(|e| format!("bad normal distribution: {e}"))?;
                Dist::Normal(Gauss::new(n.mean(), n.std_dev()))
            }
            Distribution::Zipf => {
                let n = (max - min).floor() + 1.0;
                let s = h.exponent.unwrap_or(1.0);
                if n <= ZIPF_TABLE_MAX as f64 {
                    let t = ZipfTable::new(n as usize, s)
                        .ok_or("bad zipf distribution: weights too small")?;
                    return Ok(Dist::ZipfTable(Arc::new(t)));
                }
                Dist::Zipf(
                    Zipf::new(n, h.exponent.unwrap_or(1.0))
                        .map_err(|e| format!("bad zipf distribution: {e}"))?,
                )
            }
        })
    }

    fn str_gen(&mut self, h: &Hints, path: &str, seed: u64) -> Result<StrGen, String> {
        let prefix: Box<[u8]> = h.prefix.as_deref().unwrap_or("").as_bytes().into();
        let exclusive = [
            ("regex", h.regex.is_some()),
            ("fake", h.fake.is_some()),
            ("iteration", h.iteration.is_some()),
            ("length", h.length.is_some()),
        ];
        let set: Vec<&str> = exclusive.iter().filter(|e| e.1).map(|e| e.0).collect();
        if set.len() > 1 {
            return Err(format!("`{}` cannot be combined with `{}`", set[0], set[1]));
        }
        let mut rng =
            SmallRng::seed_from_u64(mix(seed, fnv(&format!("{}.{path}#pool", self.stream))));
        let kind = if let Some(re) = &h.regex {
            let re = rand_regex::Regex::compile(re, 16)
                .map_err(|e| format!("`regex` {re:?} does not compile: {e}"))?;
            StrKind::Pool(Arc::new(StrPool::new(
                &prefix,
                (0..POOL_VALUES).map(|_| {
                    let s: String = rand::distr::Distribution::sample(&re, &mut rng);
                    s.into_bytes()
                }),
            )))
        } else if let Some(f) = h.fake {
            match f {
                FakeKind::Uuid => StrKind::Uuid,
                FakeKind::Ipv4 => StrKind::Ipv4,
                FakeKind::Ipv6 => StrKind::Ipv6,
                f => StrKind::Pool(Arc::new(StrPool::new(
                    &prefix,
                    (0..POOL_VALUES).map(|_| fake_value(f, &mut rng).into_bytes()),
                ))),
            }
        } else if let Some(it) = &h.iteration {
            let int = |n: &serde_json::Number, name: &str| {
                n.as_i64()
                    .ok_or_else(|| format!("{name} must be a whole number for string, got {n}"))
            };
            let start = int(&it.start, "iteration.start")?;
            let step = int(&it.step, "iteration.step")?;
            let period = match &it.restart {
                Some(r) => {
                    let r = int(r, "iteration.restart")?;
                    Some(
                        (i128::from(r) - i128::from(start))
                            .unsigned_abs()
                            .div_ceil(i128::from(step).unsigned_abs())
                            as u64,
                    )
                }
                None => None,
            };
            StrKind::Iter(Iter {
                start,
                step,
                period,
                counter: self.counter(),
            })
        } else {
            StrKind::Alnum(len_of(h, 8, 16))
        };
        // Pools hold their values with the prefix already in front.
        let prefix = match kind {
            StrKind::Pool(_) => Box::default(),
            _ => prefix,
        };
        Ok(StrGen { prefix, kind })
    }

    fn decimal(
        &mut self,
        h: &Hints,
        obj: &Map<String, Value>,
        size: Option<usize>,
    ) -> Result<Node, String> {
        let precision = obj
            .get("precision")
            .and_then(Value::as_u64)
            .ok_or("decimal without a whole-number \"precision\"")?;
        let scale = obj.get("scale").and_then(Value::as_u64).unwrap_or(0);
        if !(1..=38).contains(&precision) {
            return Err(format!(
                "decimal precision {precision} is not supported (1 to 38)"
            ));
        }
        if scale > precision {
            return Err(format!(
                "decimal scale {scale} is greater than its precision {precision}"
            ));
        }
        if let Some(n) = size {
            // Largest precision a fixed of n bytes can hold.
            let max = ((8.0 * n as f64 - 1.0) * 2f64.log10()).floor() as u64;
            if precision > max {
                return Err(format!(
                    "decimal precision {precision} does not fit in fixed size {n} (at most {max})"
                ));
            }
        }
        let limit = 10i128.pow(precision as u32) - 1;
        let factor = 10f64.powi(scale as i32);
        let whole = 10f64.powi((precision - scale) as i32);
        let gen = self.float_gen(h, 0.0, whole.min(1000.0))?;
        if let Some((a, b)) = &h.range {
            for v in [a, b] {
                if v.as_f64().unwrap_or(0.0).abs() * factor > limit as f64 {
                    return Err(format!(
                        "range bound {v} does not fit decimal({precision}, {scale})"
                    ));
                }
            }
        }
        Ok(Node::Decimal {
            gen,
            factor,
            limit,
            scale: scale as u32,
            size,
        })
    }

    fn enum_or_fixed(
        &mut self,
        ty: &str,
        obj: &Map<String, Value>,
        path: &str,
        h: Hints,
    ) -> Result<NodeId, Fail> {
        if ty == "enum" {
            let symbols: Vec<String> = obj
                .get("symbols")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let name = obj.get("name").and_then(Value::as_str).unwrap_or("enum");
            let sig = format!("enum:{name}:{}", symbols.join(","));
            return self.wrap("enum", path, h, move |c, _| {
                if symbols.is_empty() {
                    return Err("enum without symbols".into());
                }
                let pick = Pick::Uniform(symbols.len() as u32);
                Ok(c.push(Node::Enum { symbols, pick }, sig))
            });
        }
        let size = obj.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
        let logical = obj.get("logicalType").and_then(Value::as_str);
        let sig = format!("fixed:{size}");
        let obj = obj.clone();
        match logical {
            Some("decimal") => self.wrap("decimal", path, h, move |c, h| {
                let node = c.decimal(h, &obj, Some(size))?;
                Ok(c.push(node, sig))
            }),
            _ => self.wrap("fixed", path, h, move |c, _| {
                let duration = logical == Some("duration") && size == 12;
                Ok(c.push(Node::Fixed { size, duration }, sig))
            }),
        }
    }

    fn record(
        &mut self,
        obj: &Map<String, Value>,
        full: String,
        own_ns: Option<String>,
        path: &str,
        h: Hints,
        register: bool,
    ) -> Result<NodeId, Fail> {
        let fail = |r| Fail::at(path, r);
        let fields = obj
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| fail(Reason::NoFields))?
            .clone();
        let sig = format!("record:{full}");
        // Reserve the node first so the fields can refer to the record.
        let id = self.push(
            Node::Record {
                fields: Vec::new(),
                flat: false,
            },
            sig.clone(),
        );
        if register {
            self.named.insert(
                full,
                Named {
                    id,
                    def: obj.clone(),
                    ns: own_ns.clone(),
                },
            );
        }
        let mut compiled = Vec::with_capacity(fields.len());
        for f in &fields {
            let fo = f
                .as_object()
                .ok_or_else(|| fail(Reason::FieldNotAnObject))?;
            let name = fo
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let fpath = join(path, &name);
            let field_fail = |r| Fail::at(&fpath, r);
            let fh = hints::hints_of(fo).map_err(|e| field_fail(e.into()))?;
            let ty = fo
                .get("type")
                .ok_or_else(|| field_fail(Reason::FieldWithoutType))?;
            let fid = self.compile(ty, own_ns.as_deref(), &fpath, fh)?;
            compiled.push((name, fid));
        }
        self.nodes[id as usize] = Node::Record {
            fields: compiled,
            flat: false,
        };
        if h.is_empty() {
            return Ok(id);
        }
        self.wrap("record", path, h, move |_, _| Ok(id))
    }

    fn container(
        &mut self,
        ty: &str,
        inner: &Value,
        ns: Option<&str>,
        path: &str,
        h: Hints,
    ) -> Result<NodeId, Fail> {
        let inner_path = format!("{path}{}", if ty == "array" { "[]" } else { "{}" });
        let item = self.compile(inner, ns, &inner_path, Hints::default())?;
        let key_hints = h.keys.as_deref().cloned();
        let sig = format!("{ty}:{}", self.signatures[item as usize]);
        let path_owned = path.to_owned();
        let seed = self.seed;
        self.wrap(ty, path, h, move |c, h| {
            let len = len_of(h, 0, 5);
            let node = if ty == "array" {
                Node::Array { len, item }
            } else {
                let kh = key_hints.unwrap_or_default();
                let key = c
                    .compile_key(kh, &path_owned, seed)
                    .map_err(|e| format!("in `keys`: {e}"))?;
                Node::Map {
                    len,
                    key,
                    value: item,
                }
            };
            Ok(c.push(node, sig))
        })
    }

    fn compile_key(&mut self, mut h: Hints, path: &str, seed: u64) -> Result<NodeId, String> {
        let kind = "string";
        for key in h.keys_present() {
            if !allowed(kind).contains(&key) && key != "options" {
                return Err(format!("hint `{key}` does not apply to map keys"));
            }
        }
        if let Some(opts) = h.options.take() {
            let mut values = Vec::new();
            for o in &opts {
                let s = o
                    .value
                    .as_str()
                    .ok_or_else(|| format!("option {} is not a string", o.value))?;
                values.push(Const::Str(s.to_owned()));
            }
            let w: Vec<f64> = opts.iter().map(|o| o.weight).collect();
            return Ok(self.push(
                Node::Options {
                    values,
                    pick: Pick::from_weights(&w),
                },
                "string".into(),
            ));
        }
        if h.length.is_none() && h.regex.is_none() && h.fake.is_none() && h.iteration.is_none() {
            h.length = Some((8, 8));
        }
        let g = self.str_gen(&h, &format!("{path}#keys"), seed)?;
        Ok(self.push(Node::Str(g), "string".into()))
    }

    fn union(
        &mut self,
        branches: &[Value],
        ns: Option<&str>,
        path: &str,
        h: Hints,
    ) -> Result<NodeId, Fail> {
        let fail = |r| Fail::at(path, r);
        if branches.is_empty() {
            return Err(fail(Reason::EmptyUnion));
        }
        let is_null = |b: &Value| {
            b.as_str() == Some("null") || b.get("type").and_then(Value::as_str) == Some("null")
        };
        let null_branch = branches.iter().position(is_null);
        let others = branches.len() - usize::from(null_branch.is_some());
        let (h, mut branch_hints) = split_union_hints(h, others).map_err(fail)?;
        check_union_hints(&h, branches.len(), null_branch).map_err(fail)?;
        let mut ids = Vec::with_capacity(branches.len());
        for (i, b) in branches.iter().enumerate() {
            let bh = if Some(i) != null_branch && others == 1 {
                std::mem::take(&mut branch_hints)
            } else {
                Hints::default()
            };
            ids.push(self.compile(b, ns, path, bh)?);
        }
        let sig = format!(
            "union:{}",
            ids.iter()
                .map(|i| self.signatures[*i as usize].as_str())
                .collect::<Vec<_>>()
                .join("|")
        );
        let weights = union_weights(&h, branches.len(), null_branch);
        if weights.iter().all(|w| *w == 0.0) {
            return Err(fail(Reason::NoBranchToPick));
        }
        self.wrap("union", path, h, move |c, _| {
            Ok(c.push(
                Node::Union {
                    branches: ids,
                    pick: Pick::from_weights(&weights),
                    null_branch: null_branch.map(|b| b as u32),
                    flat: false,
                },
                sig,
            ))
        })
    }

    /// Reads an `options` value as a constant of node `id`'s type.
    fn constant(&self, id: NodeId, v: &Value) -> Result<Const, String> {
        let want = |what: &str| expected(what, v);
        Ok(match &self.nodes[id as usize] {
            Node::Null => match v {
                Value::Null => Const::Null,
                _ => return Err(want("null")),
            },
            Node::Bool { .. } => Const::Bool(v.as_bool().ok_or_else(|| want("true or false"))?),
            Node::Int(_)
            | Node::Now {
                unit: TimeUnit::Days,
                ..
            } => Const::Int(int_constant(v)?),
            Node::Long(_) | Node::Now { .. } => {
                Const::Long(v.as_i64().ok_or_else(|| want("a long"))?)
            }
            Node::Float(_) => Const::Float(v.as_f64().ok_or_else(|| want("a number"))? as f32),
            Node::Double(_) => Const::Double(v.as_f64().ok_or_else(|| want("a number"))?),
            Node::Str(_) => Const::Str(v.as_str().ok_or_else(|| want("a string"))?.to_owned()),
            Node::Bytes { .. } => Const::Bytes(latin1(v).ok_or_else(|| want("a string of bytes"))?),
            Node::Fixed { size, .. } => Const::Fixed(fixed_constant(v, *size)?),
            Node::Decimal {
                factor,
                limit,
                scale,
                size,
                ..
            } => Const::Decimal(decimal_constant(v, *factor, *limit)?, *scale, *size),
            Node::Enum { symbols, .. } => {
                let (i, s) = enum_constant(v, symbols)?;
                Const::Enum(i, s)
            }
            Node::Record { fields, .. } => Const::Record(self.record_constant(fields, v)?),
            Node::Array { item, .. } => Const::Array(
                v.as_array()
                    .ok_or_else(|| want("an array"))?
                    .iter()
                    .map(|x| self.constant(*item, x))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map { value, .. } => Const::Map(
                v.as_object()
                    .ok_or_else(|| want("an object"))?
                    .iter()
                    .map(|(k, x)| Ok((k.clone(), self.constant(*value, x)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Node::Union { branches, .. } => return self.union_constant(branches, v),
            Node::Options { .. }
            | Node::Cardinality { .. }
            | Node::Set { .. }
            | Node::Strings { .. }
            | Node::Unresolved => return Err("options cannot be given here".into()),
        })
    }

    /// [`Self::constant`] for a record of `fields`: every field, by name,
    /// and no other.
    fn record_constant(
        &self,
        fields: &[(String, NodeId)],
        v: &Value,
    ) -> Result<Vec<(String, Const)>, String> {
        let o = v.as_object().ok_or_else(|| expected("an object", v))?;
        if let Some(k) = o.keys().find(|k| !fields.iter().any(|(n, _)| n == *k)) {
            return Err(format!("the record has no field {k:?}"));
        }
        let mut out = Vec::with_capacity(fields.len());
        for (name, f) in fields {
            let fv = o
                .get(name)
                .ok_or_else(|| format!("field {name:?} is missing"))?;
            out.push((name.clone(), self.constant(*f, fv)?));
        }
        Ok(out)
    }

    /// [`Self::constant`] for a union: the first of `branches` that `v`
    /// fits.
    fn union_constant(&self, branches: &[NodeId], v: &Value) -> Result<Const, String> {
        let mut last = String::new();
        for (i, b) in branches.iter().enumerate() {
            match self.constant(*b, v) {
                Ok(c) => return Ok(Const::Union(i as u32, Box::new(c))),
                Err(e) => last = e,
            }
        }
        Err(format!("fits no branch of the union ({last})"))
    }
}

/// The reason a constant `v` is not `what` was expected.
fn expected(what: &str, v: &Value) -> String {
    format!("expected {what}, got {v}")
}

/// An `options` value of an int (or date).
fn int_constant(v: &Value) -> Result<i32, String> {
    let i = v.as_i64().ok_or_else(|| expected("an int", v))?;
    i32::try_from(i).map_err(|_| expected("an int", v))
}

/// An `options` value of a fixed of `size` bytes.
fn fixed_constant(v: &Value, size: usize) -> Result<Vec<u8>, String> {
    let b = latin1(v).ok_or_else(|| expected("a string of bytes", v))?;
    if b.len() != size {
        return Err(format!("expected {size} bytes, got {}", b.len()));
    }
    Ok(b)
}

/// An `options` value of a decimal, as its unscaled integer (`v` times
/// `factor`), which must be within `limit`.
fn decimal_constant(v: &Value, factor: f64, limit: i128) -> Result<i128, String> {
    let x = v.as_f64().ok_or_else(|| expected("a number", v))?;
    let u = (x * factor).round() as i128;
    if u.abs() > limit {
        return Err(format!("{v} does not fit the decimal's precision"));
    }
    Ok(u)
}

/// An `options` value of an enum: the index of its symbol, and the symbol.
fn enum_constant(v: &Value, symbols: &[String]) -> Result<(u32, String), String> {
    let s = v.as_str().ok_or_else(|| expected("a symbol", v))?;
    let i = symbols
        .iter()
        .position(|x| x == s)
        .ok_or_else(|| format!("{s:?} is not one of the symbols {}", symbols.join(", ")))?;
    Ok((i as u32, s.to_owned()))
}

fn full_name(obj: &Map<String, Value>, ns: Option<&str>) -> (String, Option<String>) {
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    if let Some((space, _)) = name.rsplit_once('.') {
        return (name.to_owned(), Some(space.to_owned()));
    }
    let own_ns = obj
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| ns.map(str::to_owned))
        .filter(|s| !s.is_empty());
    match &own_ns {
        Some(n) => (format!("{n}.{name}"), own_ns.clone()),
        None => (name.to_owned(), None),
    }
}

fn kind_signature(kind: &str) -> String {
    match kind {
        "date" | "time-millis" => "int".into(),
        k if k.contains("time") => "long".into(),
        "uuid" => "string".into(),
        "decimal" => "bytes".into(),
        k => k.into(),
    }
}

/// What a primitive type `ty` with the logical type `logical` generates:
/// the logical type where it fits `ty`, else `ty` (the Avro spec says
/// readers ignore logical types that do not fit).
fn primitive_kind<'t>(ty: &'t str, logical: Option<&'t str>) -> &'t str {
    match (ty, logical) {
        ("int", Some(l @ ("date" | "time-millis"))) => l,
        (
            "long",
            Some(
                l @ ("time-micros"
                | "timestamp-millis"
                | "timestamp-micros"
                | "timestamp-nanos"
                | "local-timestamp-millis"
                | "local-timestamp-micros"
                | "local-timestamp-nanos"),
            ),
        ) => l,
        ("string", Some("uuid")) => "uuid",
        ("bytes", Some("decimal")) => "decimal",
        _ => ty,
    }
}

/// Splits a union's hints into its own (`null_probability`, `weights`,
/// `options`) and the rest, which are for the value and go to its one
/// non-null branch (`others` is how many non-null branches it has).
fn split_union_hints(mut h: Hints, others: usize) -> Result<(Hints, Hints), Reason> {
    let union_keys = ["null_probability", "weights", "options"];
    let passes: Vec<&str> = h
        .keys_present()
        .into_iter()
        .filter(|k| !union_keys.contains(k))
        .collect();
    if passes.is_empty() {
        return Ok((h, Hints::default()));
    }
    if others != 1 {
        return Err(Reason::UnionValueHint(passes[0]));
    }
    let union_part = Hints {
        null_probability: h.null_probability.take(),
        weights: h.weights.take(),
        options: h.options.take(),
        ..Hints::default()
    };
    let branch = std::mem::replace(&mut h, union_part);
    Ok((h, branch))
}

/// Checks a union's own hints against its `n` branches, `null_branch`
/// the null one if it has one.
fn check_union_hints(h: &Hints, n: usize, null_branch: Option<usize>) -> Result<(), Reason> {
    if h.null_probability.is_some() && null_branch.is_none() {
        return Err(Reason::NoNullBranch);
    }
    if let Some(w) = &h.weights {
        if w.len() != n {
            return Err(Reason::WeightCount {
                given: w.len(),
                branches: n,
            });
        }
        if h.null_probability.is_some() {
            return Err(Reason::Combined("weights", "null_probability"));
        }
    }
    Ok(())
}

/// The weights of a union's `n` branches: its `weights`, or
/// `null_probability` on the null branch and the rest shared evenly, or
/// even.
fn union_weights(h: &Hints, n: usize, null_branch: Option<usize>) -> Vec<f64> {
    match (&h.weights, h.null_probability, null_branch) {
        (Some(w), _, _) => w.clone(),
        (None, Some(p), Some(nb)) => (0..n)
            .map(|i| {
                if i == nb {
                    p
                } else {
                    (1.0 - p) / (n - 1).max(1) as f64
                }
            })
            .collect(),
        _ => vec![1.0; n],
    }
}

fn len_of(h: &Hints, min: u64, max: u64) -> Len {
    let (min, max) = h.length.unwrap_or((min, max));
    Len { min, max }
}

fn latin1(v: &Value) -> Option<Vec<u8>> {
    v.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// A pooled `fake` value. uuid, ipv4 and ipv6 are drawn live instead
/// (`StrKind`), so they have no pool.
fn fake_value(kind: FakeKind, rng: &mut SmallRng) -> String {
    use fake::faker::{
        address::en::*, company::en::*, internet::en::*, lorem::en::*, name::en::*,
        phone_number::en::*,
    };
    match kind {
        FakeKind::Name => Name().fake_with_rng(rng),
        FakeKind::FirstName => FirstName().fake_with_rng(rng),
        FakeKind::LastName => LastName().fake_with_rng(rng),
        FakeKind::Email => FreeEmail().fake_with_rng(rng),
        FakeKind::StreetAddress => {
            let n: String = BuildingNumber().fake_with_rng(rng);
            let s: String = StreetName().fake_with_rng(rng);
            format!("{n} {s}")
        }
        FakeKind::City => CityName().fake_with_rng(rng),
        FakeKind::Country => CountryName().fake_with_rng(rng),
        FakeKind::CountryCode => CountryCode().fake_with_rng(rng),
        FakeKind::Phone => PhoneNumber().fake_with_rng(rng),
        FakeKind::UserAgent => UserAgent().fake_with_rng(rng),
        FakeKind::Url => {
            let host: String = Word().fake_with_rng(rng);
            let tld: String = DomainSuffix().fake_with_rng(rng);
            let page: String = Word().fake_with_rng(rng);
            format!("https://www.{host}.{tld}/{page}")
        }
        FakeKind::Word => Word().fake_with_rng(rng),
        FakeKind::Sentence => Sentence(4..10).fake_with_rng(rng),
        FakeKind::Company => CompanyName().fake_with_rng(rng),
        FakeKind::Zip => ZipCode().fake_with_rng(rng),
        FakeKind::Uuid | FakeKind::Ipv4 | FakeKind::Ipv6 => String::new(),
    }
}
