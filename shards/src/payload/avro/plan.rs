//! The compiled plan: a flat vector of generator nodes, and the per-record
//! walk that drives a [`Sink`].
//!
//! This is the hot path. Nothing here allocates: strings are built in the
//! generator's reusable scratch buffer, and hints whose libraries allocate
//! (`regex`, most of `fake`) were turned into per-field pools of
//! pre-generated values at compile time, so a draw is an index.

use super::write::Sink;
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Normal, Zipf};

pub type NodeId = u32;

/// Unions and arrays deeper than this stop recursing: unions take their
/// null branch (or their first branch), arrays and maps are empty. Only
/// recursive schemas get this deep.
pub const MAX_DEPTH: u32 = 24;

/// Array items, map entries and union branches one datum may hold before
/// every further union takes its null branch and arrays and maps are empty:
/// a recursive schema could otherwise grow exponentially within the depth
/// limit.
pub const MAX_WORK: u32 = 4096;

#[derive(Clone, Debug)]
pub struct Plan {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    /// Number of iteration counters the walk needs.
    pub counters: usize,
}

#[derive(Clone, Debug)]
pub enum Node {
    Null,
    Bool {
        p_true: f64,
    },
    Int(NumGen<i64>),
    Long(NumGen<i64>),
    Float(NumGen<f64>),
    Double(NumGen<f64>),
    /// A date, timestamp or local timestamp near the wall clock.
    Now {
        unit: TimeUnit,
        jitter_ms: u64,
        offset_ms: i64,
    },
    Str(StrGen),
    Bytes {
        len: Len,
    },
    Fixed {
        size: usize,
        duration: bool,
    },
    Decimal {
        gen: NumGen<f64>,
        /// 10^scale, to turn a generated amount into its unscaled integer.
        factor: f64,
        /// Largest unscaled magnitude the precision allows.
        limit: i128,
        scale: u32,
        size: Option<usize>,
    },
    Enum {
        symbols: Vec<String>,
        pick: Pick,
    },
    Record {
        fields: Vec<(String, NodeId)>,
    },
    Array {
        len: Len,
        item: NodeId,
    },
    Map {
        len: Len,
        key: NodeId,
        value: NodeId,
    },
    Union {
        branches: Vec<NodeId>,
        pick: Pick,
        null_branch: Option<u32>,
    },
    Options {
        values: Vec<Const>,
        pick: Pick,
    },
    /// Values drawn from a fixed set of `n`: value `i` is `inner` generated
    /// with a random stream seeded by `(seed, i)`, so the set is the same on
    /// every shard and in every stream that references it.
    Cardinality {
        n: u64,
        seed: u64,
        inner: NodeId,
    },
    /// A `ref` not resolved yet (compile-time only).
    Unresolved,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeUnit {
    Days,
    Millis,
    Micros,
    Nanos,
}

/// A sequence `start + k * step`, `k` counting this node's values.
#[derive(Clone, Debug)]
pub struct Iter<T> {
    pub start: T,
    pub step: T,
    /// Values per cycle when `restart` was given.
    pub period: Option<u64>,
    pub counter: usize,
}

#[derive(Clone, Debug)]
pub enum Dist<T> {
    Uniform,
    Normal(Normal<f64>),
    Zipf(Zipf<f64>),
    /// Zipf over a range small enough for a table: O(1) draws through an
    /// alias table instead of rejection sampling with `powf` per draw.
    ZipfTable(std::sync::Arc<WeightedAliasIndex<f64>>),
    Iter(Iter<T>),
}

#[derive(Clone, Debug)]
pub struct NumGen<T> {
    pub min: T,
    pub max: T,
    pub dist: Dist<T>,
}

#[derive(Clone, Copy, Debug)]
pub struct Len {
    pub min: u64,
    pub max: u64,
}

#[derive(Clone, Debug)]
pub struct StrGen {
    pub prefix: Box<[u8]>,
    pub kind: StrKind,
}

#[derive(Clone, Debug)]
pub enum StrKind {
    /// Random letters and digits.
    Alnum(Len),
    /// The decimal digits of an iteration.
    Iter(Iter<i64>),
    /// Pre-generated values (regex, fake).
    Pool(Vec<Box<[u8]>>),
    Uuid,
    Ipv4,
    Ipv6,
}

#[derive(Clone, Debug)]
pub enum Pick {
    Uniform(u32),
    Weighted(WeightedIndex<f64>),
}

impl Pick {
    pub fn from_weights(w: &[f64]) -> Pick {
        if w.windows(2).all(|p| p[0] == p[1]) {
            return Pick::Uniform(w.len() as u32);
        }
        // Weights were checked: non-negative, finite, not all zero.
        WeightedIndex::new(w)
            .map(Pick::Weighted)
            .unwrap_or(Pick::Uniform(w.len() as u32))
    }

    #[inline]
    fn pick(&self, rng: &mut SmallRng) -> u32 {
        match self {
            Pick::Uniform(1) => 0,
            Pick::Uniform(n) => rng.random_range(0..*n),
            Pick::Weighted(w) => w.sample(rng) as u32,
        }
    }
}

/// A typed constant, from an `options` hint.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(Vec<u8>),
    Str(String),
    Fixed(Vec<u8>),
    Decimal(i128, u32, Option<usize>),
    Enum(u32, String),
    Record(Vec<(String, Const)>),
    Array(Vec<Const>),
    Map(Vec<(String, Const)>),
    Union(u32, Box<Const>),
}

/// One generator's mutable state: its random stream, iteration counters,
/// clock and scratch space. Owned by one shard.
pub struct Cx {
    pub rng: SmallRng,
    pub counters: Vec<u64>,
    /// Shard `i` of `n` takes iteration steps `i, i+n, i+2n, ...`.
    pub stride: (u64, u64),
    /// Set while generating value `i` of a cardinality set.
    pub index: Option<u64>,
    pub depth: u32,
    /// Elements generated in the current datum (see [`MAX_WORK`]).
    pub work: u32,
    pub now_ms: i64,
    pub scratch: Vec<u8>,
}

impl Cx {
    pub fn new(seed: u64, counters: usize, now_ms: i64) -> Cx {
        Cx {
            rng: SmallRng::seed_from_u64(seed),
            counters: vec![0; counters],
            stride: (0, 1),
            index: None,
            depth: 0,
            work: 0,
            now_ms,
            scratch: Vec::with_capacity(256),
        }
    }

    #[inline]
    fn exhausted(&self) -> bool {
        self.depth >= MAX_DEPTH || self.work >= MAX_WORK
    }

    /// The step number of an iteration: the cardinality index inside a set,
    /// else this shard's next counter value.
    #[inline]
    fn step(&mut self, counter: usize) -> u64 {
        if let Some(i) = self.index {
            return i;
        }
        let c = &mut self.counters[counter];
        let k = *c;
        *c += 1;
        k.wrapping_mul(self.stride.1).wrapping_add(self.stride.0)
    }
}

pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8; 16] = b"0123456789abcdef";

impl NumGen<i64> {
    #[inline]
    fn next(&self, cx: &mut Cx) -> i64 {
        match &self.dist {
            Dist::Uniform => cx.rng.random_range(self.min..=self.max),
            Dist::Normal(n) => {
                let v = n.sample(&mut cx.rng).round();
                (v as i64).clamp(self.min, self.max)
            }
            // Rank k (1 is the most frequent) becomes min + k - 1.
            Dist::Zipf(z) => self
                .min
                .saturating_add(z.sample(&mut cx.rng) as i64 - 1)
                .min(self.max),
            Dist::ZipfTable(t) => self.min.saturating_add(t.sample(&mut cx.rng) as i64),
            Dist::Iter(it) => {
                let mut k = cx.step(it.counter);
                if let Some(p) = it.period {
                    k %= p;
                }
                it.start.wrapping_add((k as i64).wrapping_mul(it.step))
            }
        }
    }
}

impl NumGen<f64> {
    #[inline]
    fn next(&self, cx: &mut Cx) -> f64 {
        match &self.dist {
            Dist::Uniform => {
                if self.min < self.max {
                    cx.rng.random_range(self.min..self.max)
                } else {
                    self.min
                }
            }
            Dist::Normal(n) => n.sample(&mut cx.rng).clamp(self.min, self.max),
            Dist::Zipf(z) => (self.min + z.sample(&mut cx.rng) - 1.0).min(self.max),
            Dist::ZipfTable(t) => (self.min + t.sample(&mut cx.rng) as f64).min(self.max),
            Dist::Iter(it) => {
                let mut k = cx.step(it.counter);
                if let Some(p) = it.period {
                    k %= p;
                }
                it.start + k as f64 * it.step
            }
        }
    }
}

impl Len {
    #[inline]
    fn next(&self, rng: &mut SmallRng) -> usize {
        if self.min == self.max {
            self.min as usize
        } else {
            rng.random_range(self.min..=self.max) as usize
        }
    }
}

impl Plan {
    /// Writes one datum of the root type.
    pub fn write<S: Sink>(&self, cx: &mut Cx, out: &mut S) {
        cx.depth = 0;
        cx.work = 0;
        self.gen(self.root, cx, out);
    }

    fn gen<S: Sink>(&self, id: NodeId, cx: &mut Cx, out: &mut S) {
        match &self.nodes[id as usize] {
            Node::Null => out.null(),
            Node::Bool { p_true } => out.boolean(cx.rng.random_bool(*p_true)),
            Node::Int(g) => out.int(g.next(cx) as i32),
            Node::Long(g) => out.long(g.next(cx)),
            Node::Float(g) => out.float(g.next(cx) as f32),
            Node::Double(g) => out.double(g.next(cx)),
            Node::Now {
                unit,
                jitter_ms,
                offset_ms,
            } => {
                let j = *jitter_ms as i64;
                let base = cx.now_ms.saturating_add(*offset_ms);
                let sub = |rng: &mut SmallRng, per_ms: i64| {
                    if j == 0 {
                        0
                    } else {
                        rng.random_range(-j * per_ms..=j * per_ms)
                    }
                };
                match unit {
                    TimeUnit::Days => {
                        let ms = base.saturating_add(sub(&mut cx.rng, 1));
                        out.int(ms.div_euclid(86_400_000) as i32)
                    }
                    TimeUnit::Millis => out.long(base.saturating_add(sub(&mut cx.rng, 1))),
                    TimeUnit::Micros => out.long(
                        base.saturating_mul(1000)
                            .saturating_add(sub(&mut cx.rng, 1000)),
                    ),
                    TimeUnit::Nanos => out.long(
                        base.saturating_mul(1_000_000)
                            .saturating_add(sub(&mut cx.rng, 1_000_000)),
                    ),
                }
            }
            Node::Str(s) => {
                let mut buf = std::mem::take(&mut cx.scratch);
                buf.clear();
                buf.extend_from_slice(&s.prefix);
                gen_str(&s.kind, cx, &mut buf);
                out.string(&buf);
                cx.scratch = buf;
            }
            Node::Bytes { len } => {
                let n = len.next(&mut cx.rng);
                let mut buf = std::mem::take(&mut cx.scratch);
                buf.clear();
                buf.resize(n, 0);
                cx.rng.fill(&mut buf[..]);
                out.bytes(&buf);
                cx.scratch = buf;
            }
            Node::Fixed { size, duration } => {
                let mut buf = std::mem::take(&mut cx.scratch);
                buf.clear();
                if *duration {
                    // months, days, milliseconds: little-endian u32 each.
                    let m: u32 = cx.rng.random_range(0..24);
                    let d: u32 = cx.rng.random_range(0..31);
                    let ms: u32 = cx.rng.random_range(0..86_400_000);
                    for v in [m, d, ms] {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                } else {
                    buf.resize(*size, 0);
                    cx.rng.fill(&mut buf[..]);
                }
                out.fixed(&buf);
                cx.scratch = buf;
            }
            Node::Decimal {
                gen,
                factor,
                limit,
                scale,
                size,
            } => {
                let v = ((gen.next(cx) * factor).round() as i128).clamp(-*limit, *limit);
                out.decimal(v, *scale, *size);
            }
            Node::Enum { symbols, pick } => {
                let i = pick.pick(&mut cx.rng);
                out.enumeration(i, &symbols[i as usize]);
            }
            Node::Record { fields } => {
                out.record_start();
                for (i, (name, f)) in fields.iter().enumerate() {
                    out.field(name, i == 0);
                    self.gen(*f, cx, out);
                }
                out.record_end();
            }
            Node::Array { len, item } => {
                let n = container_len(len, cx);
                cx.depth += 1;
                out.array_start(n);
                for i in 0..n {
                    out.item(i == 0);
                    self.gen(*item, cx, out);
                }
                out.array_end(n);
                cx.depth -= 1;
            }
            Node::Map { len, key, value } => {
                let n = container_len(len, cx);
                cx.depth += 1;
                out.map_start(n);
                for i in 0..n {
                    self.map_key(*key, cx, out, i == 0);
                    self.gen(*value, cx, out);
                }
                out.map_end(n);
                cx.depth -= 1;
            }
            Node::Union {
                branches,
                pick,
                null_branch,
            } => {
                let b = match null_branch {
                    Some(nb) if cx.exhausted() => *nb,
                    _ if cx.exhausted() => 0,
                    _ => pick.pick(&mut cx.rng),
                };
                cx.work += 1;
                cx.depth += 1;
                out.union_branch(b);
                self.gen(branches[b as usize], cx, out);
                cx.depth -= 1;
            }
            Node::Options { values, pick } => {
                let i = pick.pick(&mut cx.rng);
                write_const(&values[i as usize], out);
            }
            Node::Cardinality { n, seed, inner } => {
                let i = cx.rng.random_range(0..*n);
                let set_rng = SmallRng::seed_from_u64(mix(*seed, i));
                let saved = std::mem::replace(&mut cx.rng, set_rng);
                let saved_index = cx.index.replace(i);
                self.gen(*inner, cx, out);
                cx.index = saved_index;
                cx.rng = saved;
            }
            Node::Unresolved => out.null(),
        }
    }

    /// Map keys are strings; they go through `Sink::map_key`, not `string`.
    fn map_key<S: Sink>(&self, key: NodeId, cx: &mut Cx, out: &mut S, first: bool) {
        let mut buf = std::mem::take(&mut cx.scratch);
        buf.clear();
        match &self.nodes[key as usize] {
            Node::Str(s) => {
                buf.extend_from_slice(&s.prefix);
                gen_str(&s.kind, cx, &mut buf);
            }
            Node::Options { values, pick } => {
                if let Const::Str(s) = &values[pick.pick(&mut cx.rng) as usize] {
                    buf.extend_from_slice(s.as_bytes());
                }
            }
            _ => {}
        }
        out.map_key(&buf, first);
        cx.scratch = buf;
    }

    /// An upper bound on the Avro binary size of a datum, saturating at
    /// `usize::MAX` for schemas that recurse without a way out.
    pub fn max_avro_len(&self) -> usize {
        self.bound(self.root, 0)
    }

    fn bound(&self, id: NodeId, depth: u32) -> usize {
        const VARINT: usize = 10;
        if depth > MAX_DEPTH + 8 {
            return usize::MAX;
        }
        let len_bound = |l: &Len| l.max as usize;
        match &self.nodes[id as usize] {
            Node::Null | Node::Unresolved => 0,
            Node::Bool { .. } => 1,
            Node::Int(_) | Node::Long(_) | Node::Now { .. } | Node::Enum { .. } => VARINT,
            Node::Float(_) => 4,
            Node::Double(_) => 8,
            Node::Str(s) => VARINT
                .saturating_add(s.prefix.len())
                .saturating_add(match &s.kind {
                    StrKind::Alnum(l) => len_bound(l),
                    StrKind::Iter(_) => 20,
                    StrKind::Pool(p) => p.iter().map(|v| v.len()).max().unwrap_or(0),
                    StrKind::Uuid => 36,
                    StrKind::Ipv4 => 15,
                    StrKind::Ipv6 => 39,
                }),
            Node::Bytes { len } => VARINT.saturating_add(len_bound(len)),
            Node::Fixed { size, .. } => *size,
            Node::Decimal { size, .. } => size.unwrap_or(VARINT + 16),
            Node::Record { fields } => fields
                .iter()
                .fold(0usize, |a, (_, f)| a.saturating_add(self.bound(*f, depth))),
            Node::Array { len, item } => {
                if depth >= MAX_DEPTH {
                    return 1;
                }
                let each = self.bound(*item, depth + 1);
                (2 * VARINT).saturating_add(each.saturating_mul(len_bound(len)))
            }
            Node::Map { len, key, value } => {
                if depth >= MAX_DEPTH {
                    return 1;
                }
                let each = self
                    .bound(*key, depth + 1)
                    .saturating_add(self.bound(*value, depth + 1));
                (2 * VARINT).saturating_add(each.saturating_mul(len_bound(len)))
            }
            Node::Union {
                branches,
                null_branch,
                ..
            } => {
                let b = if depth >= MAX_DEPTH {
                    let nb = null_branch.unwrap_or(0) as usize;
                    self.bound(branches[nb], depth + 1)
                } else {
                    branches
                        .iter()
                        .map(|b| self.bound(*b, depth + 1))
                        .max()
                        .unwrap_or(0)
                };
                VARINT.saturating_add(b)
            }
            Node::Options { values, .. } => values.iter().map(const_len).max().unwrap_or(0),
            Node::Cardinality { inner, .. } => self.bound(*inner, depth),
        }
    }
}

#[inline]
fn gen_str(kind: &StrKind, cx: &mut Cx, buf: &mut Vec<u8>) {
    match kind {
        StrKind::Alnum(len) => {
            let n = len.next(&mut cx.rng);
            for _ in 0..n {
                buf.push(ALNUM[cx.rng.random_range(0..ALNUM.len())]);
            }
        }
        StrKind::Iter(it) => {
            let mut k = cx.step(it.counter);
            if let Some(p) = it.period {
                k %= p;
            }
            let v = it.start.wrapping_add((k as i64).wrapping_mul(it.step));
            push_decimal(buf, v);
        }
        StrKind::Pool(p) => buf.extend_from_slice(&p[cx.rng.random_range(0..p.len())]),
        StrKind::Uuid => {
            let mut r: u128 = cx.rng.random();
            // Version 4, variant 10.
            r = (r & !(0xf << 76)) | (0x4 << 76);
            r = (r & !(0x3 << 62)) | (0x2 << 62);
            for i in 0..32 {
                if matches!(i, 8 | 12 | 16 | 20) {
                    buf.push(b'-');
                }
                buf.push(HEX[((r >> (124 - 4 * i)) & 0xf) as usize]);
            }
        }
        StrKind::Ipv4 => {
            let a: [u8; 4] = cx.rng.random();
            // First octet 1..=223: unicast, not "this network".
            let first = 1 + a[0] % 223;
            push_decimal(buf, i64::from(first));
            for o in &a[1..] {
                buf.push(b'.');
                push_decimal(buf, i64::from(*o));
            }
        }
        StrKind::Ipv6 => {
            let g: [u16; 8] = cx.rng.random();
            // Global unicast (2000::/3).
            let first = 0x2000 | (g[0] & 0x1fff);
            for (i, v) in std::iter::once(first)
                .chain(g[1..].iter().copied())
                .enumerate()
            {
                if i > 0 {
                    buf.push(b':');
                }
                let mut started = false;
                for s in (0..4).rev() {
                    let d = ((v >> (4 * s)) & 0xf) as usize;
                    if d != 0 || started || s == 0 {
                        buf.push(HEX[d]);
                        started = true;
                    }
                }
            }
        }
    }
}

/// How many items an array or map gets: none once the record hit its depth
/// or work bound (so recursive schemas end), else a draw from `len`; the
/// items count towards the record's work.
fn container_len(len: &Len, cx: &mut Cx) -> usize {
    let n = if cx.exhausted() {
        0
    } else {
        len.next(&mut cx.rng)
    };
    cx.work += n as u32;
    n
}

fn push_decimal(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(crate::payload::decimal(v.unsigned_abs(), &mut [0u8; 20]));
}

pub fn write_const<S: Sink>(c: &Const, out: &mut S) {
    match c {
        Const::Null => out.null(),
        Const::Bool(b) => out.boolean(*b),
        Const::Int(v) => out.int(*v),
        Const::Long(v) => out.long(*v),
        Const::Float(v) => out.float(*v),
        Const::Double(v) => out.double(*v),
        Const::Bytes(v) => out.bytes(v),
        Const::Str(v) => out.string(v.as_bytes()),
        Const::Fixed(v) => out.fixed(v),
        Const::Decimal(v, scale, size) => out.decimal(*v, *scale, *size),
        Const::Enum(i, s) => out.enumeration(*i, s),
        Const::Record(fields) => {
            out.record_start();
            for (i, (name, v)) in fields.iter().enumerate() {
                out.field(name, i == 0);
                write_const(v, out);
            }
            out.record_end();
        }
        Const::Array(items) => {
            out.array_start(items.len());
            for (i, v) in items.iter().enumerate() {
                out.item(i == 0);
                write_const(v, out);
            }
            out.array_end(items.len());
        }
        Const::Map(entries) => {
            out.map_start(entries.len());
            for (i, (k, v)) in entries.iter().enumerate() {
                out.map_key(k.as_bytes(), i == 0);
                write_const(v, out);
            }
            out.map_end(entries.len());
        }
        Const::Union(b, v) => {
            out.union_branch(*b);
            write_const(v, out);
        }
    }
}

fn const_len(c: &Const) -> usize {
    let mut v = Vec::new();
    write_const(c, &mut super::write::AvroSink(&mut v));
    v.len()
}
