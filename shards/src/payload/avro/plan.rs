//! The compiled plan: a flat vector of generator nodes, and the per-record
//! walk that drives a [`Sink`].
//!
//! This is the hot path. Nothing here allocates: strings are built in the
//! generator's reusable scratch buffer, and hints whose libraries allocate
//! (`regex`, most of `fake`) were turned into per-field pools of
//! pre-generated values at compile time, so a draw is an index.

use super::draw::{Alias, Chance, Gauss, Wy, ZipfTable};
use super::key::{KeyBuf, KeySink};
pub use super::strpool::StrPool;
use super::write::Sink;
use rand::{RngCore, SeedableRng};
use rand_distr::Zipf;
use std::sync::Arc;

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
    /// Number of string pools whose picks are drawn one ahead (see
    /// [`Cx::lag`]).
    pub lagged: usize,
    /// Per node, the node whose Avro type it writes: itself, or for
    /// `options` and cardinality sets (which [`Plan::tabulate`] turns into
    /// tables of values) the typed node they were made from. What reads a
    /// datum back by type (the JSON transcoder) looks there.
    pub typed: Vec<NodeId>,
}

#[derive(Clone, Debug)]
pub enum Node {
    Null,
    Bool {
        p_true: Chance,
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
        /// Every field is a leaf (see [`Plan::tabulate`]): the fields are
        /// written inline, without a call.
        flat: bool,
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
        /// Every branch is a leaf (see [`Plan::tabulate`]): the branch is
        /// written inline, without a call.
        flat: bool,
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
    /// A `Cardinality` whose values were generated once, when the plan was
    /// built (see [`Plan::tabulate`]): a draw is an index.
    Set {
        values: Arc<[Const]>,
    },
    /// `Options` or a `Set` of strings, ready to copy (see
    /// [`Plan::tabulate`]).
    Strings {
        pool: Arc<StrPool>,
        pick: Pick,
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
    Normal(Gauss),
    Zipf(Zipf<f64>),
    /// Zipf over a range small enough for tables: O(1) draws through
    /// alias tables instead of rejection sampling with `powf` per draw.
    ZipfTable(Arc<ZipfTable>),
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
    /// Put before every generated value (pools have it built in).
    pub prefix: Box<[u8]>,
    pub kind: StrKind,
}

#[derive(Clone, Debug)]
pub enum StrKind {
    /// Random letters and digits.
    Alnum(Len),
    /// The decimal digits of an iteration.
    Iter(Iter<i64>),
    /// Pre-generated values (regex, fake), prefix included.
    Pool(Arc<StrPool>),
    Uuid,
    Ipv4,
    Ipv6,
}

#[derive(Clone, Debug)]
pub enum Pick {
    Uniform(u32),
    Weighted(Alias),
}

impl Pick {
    pub fn from_weights(w: &[f64]) -> Pick {
        if w.windows(2).all(|p| p[0] == p[1]) {
            return Pick::Uniform(w.len() as u32);
        }
        // Weights were checked: non-negative, finite, not all zero.
        Alias::new(w)
            .map(Pick::Weighted)
            .unwrap_or(Pick::Uniform(w.len() as u32))
    }

    #[inline]
    fn pick(&self, rng: &mut Wy) -> u32 {
        match self {
            Pick::Uniform(1) => 0,
            Pick::Uniform(n) => rng.below(u64::from(*n)) as u32,
            Pick::Weighted(w) => w.sample(rng.next()) as u32,
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
    pub rng: Wy,
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
    /// A datum's Avro binary on its way to JSON (see `json::JsonProg`).
    pub json_avro: Vec<u8>,
    /// Per string pool ([`StrPool::slot`]), the index its next value will
    /// have ([`NOT_DRAWN`] before the first).
    ///
    /// A pool is too large for the L1 cache, and reading a value from it
    /// was most of what a pooled string cost (a cache miss, with nothing
    /// else to do meanwhile). So each pick draws the index of the pool's
    /// *next* value, and the cache line is fetched while the rest of the
    /// record and the next are written. The draws are the same draws in the
    /// same order; a value just uses the one drawn at the previous value of
    /// its field, so values stay uniform and independent, and the data stay
    /// a function of the seed. Not used for values of a cardinality set,
    /// which must depend on the set index alone.
    pub lag: Vec<u32>,
}

/// [`Cx::lag`] of a pool that has not been picked from yet.
pub const NOT_DRAWN: u32 = u32::MAX;

/// A pick from a pool whose entry in [`Cx::lag`] is `held`: the index drawn
/// at its previous value, while this draw is kept for the next and its value
/// prefetched (see [`Cx::lag`]); with no entry, a plain draw.
#[inline(always)]
pub(super) fn pick_ahead(
    held: Option<&mut u32>,
    rng: &mut Wy,
    pick: impl Fn(&mut Wy) -> usize,
    prefetch: impl FnOnce(usize),
) -> usize {
    let Some(held) = held else {
        return pick(rng);
    };
    let now = if *held == NOT_DRAWN {
        pick(rng)
    } else {
        *held as usize
    };
    let next = pick(rng);
    *held = next as u32;
    prefetch(next);
    now
}

impl Cx {
    pub fn new(seed: u64, counters: usize, now_ms: i64) -> Cx {
        Cx {
            rng: Cx::rng_for(seed),
            counters: vec![0; counters],
            stride: (0, 1),
            index: None,
            depth: 0,
            work: 0,
            now_ms,
            scratch: Vec::with_capacity(256),
            json_avro: Vec::new(),
            lag: Vec::new(),
        }
    }

    /// Makes room for the pools of a plan with `lagged` of them.
    pub fn with_lag(mut self, lagged: usize) -> Cx {
        self.lag = vec![NOT_DRAWN; lagged];
        self
    }

    /// Index `pick` draws for a value of `pool`: the one drawn at its
    /// previous value, while this draw is kept for the next (see
    /// [`Cx::lag`]).
    #[inline(always)]
    fn lagged(&mut self, rng: &mut Wy, pool: &StrPool, pick: impl Fn(&mut Wy) -> usize) -> usize {
        if self.index.is_some() {
            return pick(rng);
        }
        let held = self.lag.get_mut(pool.slot() as usize);
        pick_ahead(held, rng, pick, |i| pool.prefetch(i))
    }

    /// The random stream of a generator seeded with `seed`.
    pub fn rng_for(seed: u64) -> Wy {
        Wy::seed_from_u64(mix(seed, 0))
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
    #[inline(always)]
    fn next(&self, rng: &mut Wy, cx: &mut Cx) -> i64 {
        match &self.dist {
            Dist::Uniform => rng.range_i64(self.min, self.max),
            Dist::Normal(n) => {
                let v = n.sample(rng).round();
                within(v as i64, self.min, self.max)
            }
            // Rank k (1 is the most frequent) becomes min + k - 1.
            Dist::Zipf(z) => self
                .min
                .saturating_add(sample(z, rng) as i64 - 1)
                .min(self.max),
            Dist::ZipfTable(t) => zipf_rank(self.min, t, rng),
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
    #[inline(always)]
    fn next(&self, rng: &mut Wy, cx: &mut Cx) -> f64 {
        match &self.dist {
            Dist::Uniform => {
                if self.min < self.max {
                    // Never overflows, unlike min + (max - min) * u.
                    let u = rng.unit();
                    self.min * (1.0 - u) + self.max * u
                } else {
                    self.min
                }
            }
            Dist::Normal(n) => within_f(n.sample(rng), self.min, self.max),
            Dist::Zipf(z) => (self.min + sample(z, rng) - 1.0).min(self.max),
            Dist::ZipfTable(t) => (self.min + t.sample(rng) as f64).min(self.max),
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

/// `v` clamped to `min..=max`, which compilation checked is not empty:
/// without `clamp`'s check of that on every value.
#[inline(always)]
pub(super) fn within(v: i64, min: i64, max: i64) -> i64 {
    v.max(min).min(max)
}

/// [`within`] for a float that is not NaN (normal draws never are).
/// Comparisons rather than `f64::max` and `min`: those also handle NaN,
/// which took four more instructions each; these are one `maxsd` and one
/// `minsd`. A NaN would still come out as `min`, as with `f64::max`.
#[inline(always)]
pub(super) fn within_f(v: f64, min: f64, max: f64) -> f64 {
    let v = if v > min { v } else { min };
    if v < max {
        v
    } else {
        max
    }
}

/// `min` plus a rank drawn from a zipf table over `min..=max`: at most
/// `max`, so the sum cannot overflow.
#[inline(always)]
pub(super) fn zipf_rank(min: i64, table: &ZipfTable, rng: &mut Wy) -> i64 {
    min.wrapping_add(table.sample(rng) as i64)
}

/// A draw from a `rand_distr` distribution (a call), through a copy of the
/// stream: the caller's stream never has its address taken, so it can stay
/// in a register.
#[inline(always)]
fn sample<T>(d: &impl rand::distr::Distribution<T>, rng: &mut Wy) -> T {
    let mut r = rng.clone();
    let v = d.sample(&mut r);
    *rng = r;
    v
}

impl Len {
    #[inline]
    pub(super) fn next(&self, rng: &mut Wy) -> usize {
        if self.min == self.max {
            self.min as usize
        } else {
            (self.min + rng.below((self.max - self.min).saturating_add(1))) as usize
        }
    }
}

impl Plan {
    /// Writes one datum of the root type.
    pub fn write<S: Sink>(&self, cx: &mut Cx, out: &mut S) {
        cx.depth = 0;
        cx.work = 0;
        self.gen_cx(self.root, cx, out);
    }

    /// Writes one datum of the root type and puts the key form of the root
    /// record's field `key_field` into `key` (null if nothing was written
    /// there).
    pub fn write_keyed<S: Sink>(&self, cx: &mut Cx, out: &mut S, key_field: u32, key: &mut KeyBuf) {
        cx.depth = 0;
        cx.work = 0;
        key.null = true;
        match &self.nodes[self.root as usize] {
            Node::Record { fields, .. } => {
                out.record_start();
                for (i, (name, f)) in fields.iter().enumerate() {
                    out.field(name, i == 0);
                    if i as u32 == key_field {
                        self.gen_cx(*f, cx, &mut KeySink::field(out, key));
                    } else {
                        self.gen_cx(*f, cx, out);
                    }
                }
                out.record_end();
            }
            // A root record with `options` or `cardinality`.
            _ => self.gen_cx(self.root, cx, &mut KeySink::datum(out, key, key_field)),
        }
    }

    /// [`Plan::gen`] with the generator's own stream.
    #[inline]
    pub(super) fn gen_cx<S: Sink>(&self, id: NodeId, cx: &mut Cx, out: &mut S) {
        let mut rng = cx.rng.clone();
        self.gen(id, cx, &mut rng, out);
        cx.rng = rng;
    }

    /// Writes the value of node `id`, drawing from `rng`.
    ///
    /// Always inlined, into the walkers of records, arrays and unions below
    /// (which are calls): a leaf value costs no call, and each container
    /// dispatches its children from its own copy of this `match`, whose
    /// jumps the CPU then predicts separately.
    ///
    /// `rng` is the calling walker's copy of `cx.rng`, a local: kept in
    /// `Cx`, behind a pointer, the stream's state would go to memory and
    /// back on every draw, chaining each draw to the one before (dozens a
    /// record). Whatever is called with `cx` gets the stream back in
    /// `cx.rng` first ([`Plan::call`]).
    #[inline(always)]
    pub(super) fn gen<S: Sink>(&self, id: NodeId, cx: &mut Cx, rng: &mut Wy, out: &mut S) {
        match &self.nodes[id as usize] {
            Node::Record { fields, flat } => {
                if *flat {
                    out.record_start();
                    for (i, (name, f)) in fields.iter().enumerate() {
                        out.field(name, i == 0);
                        self.leaf(&self.nodes[*f as usize], cx, rng, out);
                    }
                    out.record_end();
                } else {
                    call(cx, rng, |cx| self.record(fields, cx, out))
                }
            }
            Node::Array { len, item } => call(cx, rng, |cx| self.array(len, *item, cx, out)),
            Node::Union {
                branches,
                pick,
                null_branch,
                flat,
            } => {
                if *flat && !cx.exhausted() {
                    // The common nullable field (`["null", "string"]`).
                    let b = pick.pick(rng);
                    cx.work += 1;
                    cx.depth += 1;
                    out.union_branch(b);
                    self.leaf(&self.nodes[branches[b as usize] as usize], cx, rng, out);
                    cx.depth -= 1;
                } else {
                    call(cx, rng, |cx| {
                        self.union(branches, pick, *null_branch, cx, out)
                    })
                }
            }
            node => self.leaf(node, cx, rng, out),
        }
    }

    /// Whether `gen` writes node `n` through [`Plan::leaf`] (which never
    /// comes back to a record's inline loop, so those can be nested).
    pub(super) fn is_leaf(n: &Node) -> bool {
        !matches!(
            n,
            Node::Record { .. } | Node::Array { .. } | Node::Union { .. }
        )
    }

    /// Writes a value that is not a record, array or union: the common
    /// kinds inline, the others ([`Plan::rare`]) through a call.
    #[inline(always)]
    fn leaf<S: Sink>(&self, node: &Node, cx: &mut Cx, rng: &mut Wy, out: &mut S) {
        match node {
            Node::Null => out.null(),
            Node::Bool { p_true } => out.boolean(rng.chance(*p_true)),
            Node::Int(g) => out.int(g.next(rng, cx) as i32),
            Node::Long(g) => out.long(g.next(rng, cx)),
            Node::Float(g) => out.float(g.next(rng, cx) as f32),
            Node::Double(g) => out.double(g.next(rng, cx)),
            Node::Now {
                unit,
                jitter_ms,
                offset_ms,
            } => write_now(*unit, *jitter_ms, *offset_ms, cx.now_ms, rng, out),
            Node::Str(s) => match &s.kind {
                StrKind::Pool(pool) => {
                    let i = cx.lagged(rng, pool, |rng| pool.pick(rng));
                    pool.write(i, out)
                }
                StrKind::Uuid if s.prefix.is_empty() => {
                    let bits = uuid_bits(rng);
                    out.string_with(36, |b| fill_uuid(b, bits));
                }
                _ => call(cx, rng, |cx| gen_str(s, cx, &mut AsString(out))),
            },
            Node::Strings { pool, pick } => {
                let i = cx.lagged(rng, pool, |rng| pick.pick(rng) as usize);
                pool.write(i, out)
            }
            Node::Enum { symbols, pick } => {
                let i = pick.pick(rng);
                out.enumeration(i, &symbols[i as usize]);
            }
            Node::Options { values, pick } => {
                let i = pick.pick(rng);
                put_const(&values[i as usize], out);
            }
            Node::Set { values } => {
                let i = rng.below(values.len() as u64);
                put_const(&values[i as usize], out);
            }
            rare => call(cx, rng, |cx| self.rare(rare, cx, out)),
        }
    }

    #[inline(never)]
    fn record<S: Sink>(&self, fields: &[(String, NodeId)], cx: &mut Cx, out: &mut S) {
        let mut rng = cx.rng.clone();
        out.record_start();
        for (i, (name, f)) in fields.iter().enumerate() {
            out.field(name, i == 0);
            self.gen(*f, cx, &mut rng, out);
        }
        out.record_end();
        cx.rng = rng;
    }

    #[inline(never)]
    fn array<S: Sink>(&self, len: &Len, item: NodeId, cx: &mut Cx, out: &mut S) {
        let n = container_len(len, cx);
        let mut rng = cx.rng.clone();
        cx.depth += 1;
        out.array_start(n);
        for i in 0..n {
            out.item(i == 0);
            self.gen(item, cx, &mut rng, out);
        }
        out.array_end(n);
        cx.depth -= 1;
        cx.rng = rng;
    }

    #[inline(never)]
    fn union<S: Sink>(
        &self,
        branches: &[NodeId],
        pick: &Pick,
        null_branch: Option<u32>,
        cx: &mut Cx,
        out: &mut S,
    ) {
        let b = match null_branch {
            Some(nb) if cx.exhausted() => nb,
            _ if cx.exhausted() => 0,
            _ => pick.pick(&mut cx.rng),
        };
        cx.work += 1;
        cx.depth += 1;
        out.union_branch(b);
        self.gen_cx(branches[b as usize], cx, out);
        cx.depth -= 1;
    }

    /// The kinds a schema has few of per record, or that cost more than a
    /// call anyway.
    #[inline(never)]
    fn rare<S: Sink>(&self, node: &Node, cx: &mut Cx, out: &mut S) {
        match node {
            Node::Bytes { len } => {
                let n = len.next(&mut cx.rng);
                let mut buf = std::mem::take(&mut cx.scratch);
                buf.clear();
                buf.resize(n, 0);
                cx.rng.fill_bytes(&mut buf);
                out.bytes(&buf);
                cx.scratch = buf;
            }
            Node::Fixed { size, duration } => {
                let mut buf = std::mem::take(&mut cx.scratch);
                buf.clear();
                if *duration {
                    // months, days, milliseconds: little-endian u32 each.
                    let m = cx.rng.below(24) as u32;
                    let d = cx.rng.below(31) as u32;
                    let ms = cx.rng.below(86_400_000) as u32;
                    for v in [m, d, ms] {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                } else {
                    buf.resize(*size, 0);
                    cx.rng.fill_bytes(&mut buf);
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
                let mut rng = cx.rng.clone();
                let v = gen.next(&mut rng, cx);
                cx.rng = rng;
                let v = ((v * factor).round() as i128).clamp(-*limit, *limit);
                out.decimal(v, *scale, *size);
            }
            Node::Map { len, key, value } => {
                let n = container_len(len, cx);
                cx.depth += 1;
                out.map_start(n);
                for i in 0..n {
                    self.map_key(*key, cx, out, i == 0);
                    self.gen_cx(*value, cx, out);
                }
                out.map_end(n);
                cx.depth -= 1;
            }
            Node::Cardinality { n, seed, inner } => {
                let i = cx.rng.below(*n);
                let saved = std::mem::replace(&mut cx.rng, set_rng(*seed, i));
                let saved_index = cx.index.replace(i);
                self.gen_cx(*inner, cx, out);
                cx.index = saved_index;
                cx.rng = saved;
            }
            // The kinds `leaf` writes itself, and unresolved references
            // (compile time only).
            _ => out.null(),
        }
    }

    /// Map keys are strings; they go through `Sink::map_key`, not `string`.
    fn map_key<S: Sink>(&self, key: NodeId, cx: &mut Cx, out: &mut S, first: bool) {
        let mut buf = std::mem::take(&mut cx.scratch);
        buf.clear();
        match &self.nodes[key as usize] {
            Node::Str(s) => gen_str(s, cx, &mut buf),
            Node::Options { values, pick } => {
                if let Const::Str(s) = &values[pick.pick(&mut cx.rng) as usize] {
                    buf.extend_from_slice(s.as_bytes());
                }
            }
            Node::Strings { pool, pick } => {
                buf.extend_from_slice(pool.text(pick.pick(&mut cx.rng) as usize));
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

    pub(super) fn bound(&self, id: NodeId, depth: u32) -> usize {
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
                    StrKind::Pool(p) => p.max_len(),
                    StrKind::Uuid => 36,
                    StrKind::Ipv4 => 15,
                    StrKind::Ipv6 => 39,
                }),
            Node::Bytes { len } => VARINT.saturating_add(len_bound(len)),
            Node::Fixed { size, .. } => *size,
            Node::Decimal { size, .. } => size.unwrap_or(VARINT + 16),
            Node::Record { fields, .. } => fields
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
            Node::Set { values } => values.iter().map(const_len).max().unwrap_or(0),
            Node::Strings { pool, .. } => VARINT.saturating_add(pool.max_len()),
            Node::Cardinality { inner, .. } => self.bound(*inner, depth),
        }
    }
}

/// A date or timestamp within `jitter_ms` of the clock (plus `offset_ms`).
#[inline(always)]
pub(super) fn write_now<S: Sink>(
    unit: TimeUnit,
    jitter_ms: u64,
    offset_ms: i64,
    now_ms: i64,
    rng: &mut Wy,
    out: &mut S,
) {
    let j = i64::try_from(jitter_ms).unwrap_or(i64::MAX);
    let base = now_ms.saturating_add(offset_ms);
    let per_ms = match unit {
        TimeUnit::Days | TimeUnit::Millis => 1,
        TimeUnit::Micros => 1000,
        TimeUnit::Nanos => 1_000_000,
    };
    // Not a closure over `rng`: one that is not inlined takes its address.
    let sub = if j == 0 {
        0
    } else {
        let r = j.saturating_mul(per_ms);
        rng.range_i64(-r, r)
    };
    match unit {
        TimeUnit::Days => {
            let ms = base.saturating_add(sub);
            out.int(ms.div_euclid(86_400_000) as i32)
        }
        _ => out.long(base.saturating_mul(per_ms).saturating_add(sub)),
    }
}

/// Runs `f`, which draws from `cx.rng`, with the caller's local stream put
/// there first and taken back after.
#[inline(always)]
fn call<R>(cx: &mut Cx, rng: &mut Wy, f: impl FnOnce(&mut Cx) -> R) -> R {
    cx.rng = rng.clone();
    let r = f(cx);
    *rng = cx.rng.clone();
    r
}

/// The random stream that generates value `i` of a cardinality set.
pub fn set_rng(seed: u64, i: u64) -> Wy {
    Wy::seed_from_u64(mix(seed, i))
}

/// Where a generated string goes: the datum (as a string value) or a map
/// key's scratch buffer.
trait StrOut {
    fn put(&mut self, v: &[u8]);
    /// `len` bytes written in place by `fill`.
    fn put_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8]));
}

struct AsString<'a, S>(&'a mut S);

impl<S: Sink> StrOut for AsString<'_, S> {
    #[inline]
    fn put(&mut self, v: &[u8]) {
        self.0.string(v);
    }
    #[inline]
    fn put_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        self.0.string_with(len, fill);
    }
}

impl StrOut for Vec<u8> {
    fn put(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
    fn put_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let at = self.len();
        self.resize(at + len, 0);
        fill(&mut self[at..]);
    }
}

/// Generates a string straight into `out`: no scratch buffer, no second
/// copy.
#[inline(never)]
fn gen_str(s: &StrGen, cx: &mut Cx, out: &mut impl StrOut) {
    let p = &s.prefix[..];
    let with_prefix = |b: &mut [u8]| {
        if !p.is_empty() {
            b[..p.len()].copy_from_slice(p);
        }
    };
    match &s.kind {
        StrKind::Pool(pool) => out.put(pool.text(pool.pick(&mut cx.rng))),
        StrKind::Uuid => {
            let bits = uuid_bits(&mut cx.rng);
            out.put_with(p.len() + 36, |b| {
                with_prefix(b);
                fill_uuid(&mut b[p.len()..], bits);
            });
        }
        StrKind::Alnum(len) => {
            let n = len.next(&mut cx.rng);
            let rng = &mut cx.rng;
            out.put_with(p.len() + n, |b| {
                with_prefix(b);
                fill_alnum(&mut b[p.len()..], rng);
            });
        }
        StrKind::Iter(it) => {
            let mut k = cx.step(it.counter);
            if let Some(period) = it.period {
                k %= period;
            }
            let v = it.start.wrapping_add((k as i64).wrapping_mul(it.step));
            let mut tmp = [0u8; 20];
            let digits = crate::payload::decimal(v.unsigned_abs(), &mut tmp);
            let sign: &[u8] = if v < 0 { b"-" } else { b"" };
            let n = p.len() + sign.len() + digits.len();
            out.put_with(n, |b| {
                with_prefix(b);
                b[p.len()..n - digits.len()].copy_from_slice(sign);
                b[n - digits.len()..].copy_from_slice(digits);
            });
        }
        StrKind::Ipv4 => {
            let (text, n) = ipv4(&mut cx.rng);
            out.put_with(p.len() + n, |b| {
                with_prefix(b);
                b[p.len()..].copy_from_slice(&text[..n]);
            });
        }
        StrKind::Ipv6 => {
            let (text, n) = ipv6(&mut cx.rng);
            out.put_with(p.len() + n, |b| {
                with_prefix(b);
                b[p.len()..].copy_from_slice(&text[..n]);
            });
        }
    }
}

/// 128 random bits with the version 4, variant 10 bits of a UUID set.
#[inline]
pub(super) fn uuid_bits(rng: &mut Wy) -> u128 {
    let mut r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    r = (r & !(0xf << 76)) | (0x4 << 76);
    (r & !(0x3 << 62)) | (0x2 << 62)
}

/// The 36-character text of a UUID into `b`.
#[inline]
pub(super) fn fill_uuid(b: &mut [u8], bits: u128) {
    let b: &mut [u8; 36] = b.try_into().expect("36 bytes for a UUID");
    let (hi, lo) = hex_digits(bits);
    b[..8].copy_from_slice(&hi[..8]);
    b[9..13].copy_from_slice(&hi[8..12]);
    b[14..18].copy_from_slice(&hi[12..]);
    b[19..23].copy_from_slice(&lo[..4]);
    b[24..].copy_from_slice(&lo[4..]);
    for dash in [8, 13, 18, 23] {
        b[dash] = b'-';
    }
}

/// The 32 lowercase hex digits of `bits`, most significant first, as two
/// halves ([`hex32`] where there is one).
#[inline]
fn hex_digits(bits: u128) -> ([u8; 16], [u8; 16]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86_64: every CPU this code runs on has it.
    let halves = unsafe { hex32(bits) };
    #[cfg(not(target_arch = "x86_64"))]
    let halves = hex32(bits);
    halves
}

/// The 32 lowercase hex digits of `bits`, most significant first, as two
/// halves: with SSE2 (part of x86_64), all 32 at once in two vector
/// registers, about a third of the instructions of two [`hex16`]s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn hex32(bits: u128) -> ([u8; 16], [u8; 16]) {
    use std::arch::x86_64::*;
    // The 16 bytes, most significant first in memory order.
    let v = _mm_set_epi64x(
        (bits as u64).swap_bytes() as i64,
        ((bits >> 64) as u64).swap_bytes() as i64,
    );
    let nibble = _mm_set1_epi8(0x0f);
    let high = _mm_and_si128(_mm_srli_epi16::<4>(v), nibble);
    let low = _mm_and_si128(v, nibble);
    // Each byte's high nibble, then its low one.
    let ascii = |n: __m128i| {
        // '0' + n, and 'a' - '0' - 10 more where n > 9.
        let letters = _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)), _mm_set1_epi8(39));
        let v = _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8(b'0' as i8)), letters);
        let mut out = [0u8; 16];
        let (lo, hi) = (
            _mm_cvtsi128_si64(v),
            _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v)),
        );
        out[..8].copy_from_slice(&lo.to_le_bytes());
        out[8..].copy_from_slice(&hi.to_le_bytes());
        out
    };
    (
        ascii(_mm_unpacklo_epi8(high, low)),
        ascii(_mm_unpackhi_epi8(high, low)),
    )
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn hex32(bits: u128) -> ([u8; 16], [u8; 16]) {
    (hex16((bits >> 64) as u64), hex16(bits as u64))
}

/// The 16 lowercase hex digits of `v`, most significant first, computed on
/// all digits at once in one 128-bit word (SWAR) rather than by 16 table
/// lookups: a live record's UUID is one of its costlier values. (On x86_64
/// [`hex32`] does both halves with SSE2; this is its reference in tests.)
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn hex16(v: u64) -> [u8; 16] {
    const LANES: u128 = u128::MAX / 0xffff; // 0x0001 in every 16-bit lane
                                            // Byte j of v, in text order (most significant first), to byte 2j.
    let x = u128::from(v.swap_bytes());
    let x = (x | (x << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & (LANES * 0x00ff);
    // Its high nibble stays in byte 2j, its low one goes to byte 2j + 1.
    let n = ((x >> 4) & (LANES * 0x000f)) | ((x & (LANES * 0x000f)) << 8);
    // Nibbles to ASCII: '0' + n, and 'a' - '0' - 10 more from 10 on
    // (n + 6 carries into bit 4 exactly then). No byte overflows.
    let ones = u128::MAX / 0xff; // 0x01 in every byte
    let letters = ((n + ones * 6) >> 4) & ones;
    (n + ones * u128::from(b'0') + letters * u128::from(b'a' - b'0' - 10)).to_le_bytes()
}

/// Random letters and digits into `b`: each 64-bit draw gives six
/// characters, taken from the top of the draw by multiplying by 62 (the
/// leftover low part carries on to the next character).
#[inline]
fn fill_alnum(b: &mut [u8], rng: &mut Wy) {
    for chunk in b.chunks_mut(6) {
        let mut x = rng.next();
        for c in chunk {
            let m = u128::from(x) * ALNUM.len() as u128;
            *c = ALNUM[(m >> 64) as usize];
            x = m as u64;
        }
    }
}

/// A random unicast IPv4 address as text, and its length.
fn ipv4(rng: &mut Wy) -> ([u8; 15], usize) {
    let a = rng.next().to_le_bytes();
    let mut out = [0u8; 15];
    let mut n = 0;
    // First octet 1..=223: unicast, not "this network".
    for (i, o) in [1 + a[0] % 223, a[1], a[2], a[3]].into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        let mut tmp = [0u8; 20];
        let d = crate::payload::decimal(u64::from(o), &mut tmp);
        out[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    }
    (out, n)
}

/// A random global unicast IPv6 address (2000::/3) as text, and its length.
fn ipv6(rng: &mut Wy) -> ([u8; 39], usize) {
    let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    let mut out = [0u8; 39];
    let mut n = 0;
    for i in 0..8 {
        let mut v = (r >> (112 - 16 * i)) as u16;
        if i == 0 {
            v = 0x2000 | (v & 0x1fff);
        } else {
            out[n] = b':';
            n += 1;
        }
        let mut started = false;
        for s in (0..4).rev() {
            let d = ((v >> (4 * s)) & 0xf) as usize;
            if d != 0 || started || s == 0 {
                out[n] = HEX[d];
                n += 1;
                started = true;
            }
        }
    }
    (out, n)
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

/// Writes a constant: scalars inline, containers through [`write_const`].
#[inline(always)]
fn put_const<S: Sink>(c: &Const, out: &mut S) {
    match c {
        Const::Str(v) => out.string(v.as_bytes()),
        Const::Enum(i, s) => out.enumeration(*i, s),
        Const::Int(v) => out.int(*v),
        Const::Long(v) => out.long(*v),
        c => write_const(c, out),
    }
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
    let mut sink = super::write::AvroSink::at(&mut v, 0);
    write_const(c, &mut sink);
    sink.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn uuids_are_formatted_like_the_uuid_text_form() {
        let mut rng = Wy::seed_from_u64(3);
        for bits in [0, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210]
            .into_iter()
            .chain((0..1000).map(|_| uuid_bits(&mut rng)))
        {
            let hex = format!("{bits:032x}");
            let want = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            let mut b = [0u8; 36];
            fill_uuid(&mut b, bits);
            assert_eq!(
                hex_digits(bits),
                (hex16((bits >> 64) as u64), hex16(bits as u64))
            );
            assert_eq!(std::str::from_utf8(&b).unwrap(), want);
        }
    }
}
