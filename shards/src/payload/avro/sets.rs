//! Cardinality sets generated once, when the plan is built.
//!
//! Value `i` of a `cardinality` set is the field's generator run with a
//! random stream seeded by `(set seed, i)`, so it is the same every time it
//! is drawn. Generating it again per draw (seeding a stream, formatting a
//! string) costs more than the rest of a simple field; a set of plain values
//! is therefore generated once into a table of constants, and a draw writes
//! one of them. The draws, and so the data, are the same either way.

use super::plan::{set_rng, Const, Cx, Node, NodeId, Pick, Plan, StrGen, StrKind, StrPool};
use super::write::Sink;
use std::sync::Arc;

/// String pools of this many bytes and more have their picks drawn one
/// ahead (see `Cx::lag`); smaller ones (string `options`, small sets) stay
/// in the L1 cache, where that would only add work.
const LAGGED_POOL_MIN: usize = 4096;

/// Sets up to this many values are tabulated (a few MB at most).
pub const SET_TABLE_MAX: u64 = 1 << 16;

impl Plan {
    /// Replaces each small `Cardinality` over a plain value (no record,
    /// array, map, union or clock inside) by the table of its values, and
    /// `options` and sets of strings by pools of ready-encoded strings.
    pub fn tabulate(&mut self) {
        for id in 0..self.nodes.len() {
            if let Node::Cardinality { n, seed, inner } = self.nodes[id] {
                if n <= SET_TABLE_MAX && plain(&self.nodes[inner as usize]) {
                    if let Some(values) = self.set_values(n, seed, inner) {
                        self.nodes[id] = Node::Set {
                            values: values.into(),
                        };
                    }
                }
            }
            let strings = match &self.nodes[id] {
                Node::Options { values, pick } => strings(values).map(|p| (p, pick.clone())),
                Node::Set { values } => {
                    strings(values).map(|p| (p, Pick::Uniform(values.len() as u32)))
                }
                _ => None,
            };
            if let Some((pool, pick)) = strings {
                self.nodes[id] = Node::Strings {
                    pool: Arc::new(pool),
                    pick,
                };
            }
        }
        // After the above, which turns some nodes into leaves.
        for id in 0..self.nodes.len() {
            let leaf = |f: &NodeId| Plan::is_leaf(&self.nodes[*f as usize]);
            let flat_now = match &self.nodes[id] {
                Node::Record { fields, .. } => fields.iter().all(|(_, f)| leaf(f)),
                Node::Union { branches, .. } => branches.iter().all(leaf),
                _ => continue,
            };
            match &mut self.nodes[id] {
                Node::Record { flat, .. } | Node::Union { flat, .. } => *flat = flat_now,
                _ => {}
            }
        }
        // Each pool the walk picks values from, unless it is small enough
        // to stay in the L1 cache, gets its entry in `Cx::lag`.
        self.lagged = 0;
        for node in &mut self.nodes {
            let pool = match node {
                Node::Str(StrGen {
                    kind: StrKind::Pool(pool),
                    ..
                })
                | Node::Strings { pool, .. } => Arc::make_mut(pool),
                _ => continue,
            };
            if pool.footprint() >= LAGGED_POOL_MIN {
                pool.set_slot(self.lagged as u32);
                self.lagged += 1;
            }
        }
    }

    fn set_values(&self, n: u64, seed: u64, inner: NodeId) -> Option<Vec<Const>> {
        let mut cx = Cx::new(0, self.counters, 0);
        (0..n)
            .map(|i| {
                cx.rng = set_rng(seed, i);
                cx.index = Some(i);
                let mut c = Capture::default();
                self.gen_cx(inner, &mut cx, &mut c);
                c.finish()
            })
            .collect()
    }
}

/// A pool of `values` if they are all strings.
fn strings(values: &[Const]) -> Option<StrPool> {
    if values.is_empty() {
        return None;
    }
    let texts: Option<Vec<&[u8]>> = values
        .iter()
        .map(|v| match v {
            Const::Str(s) => Some(s.as_bytes()),
            _ => None,
        })
        .collect();
    Some(StrPool::new(b"", texts?))
}

/// A value that depends on nothing but its random stream and set index.
fn plain(n: &Node) -> bool {
    matches!(
        n,
        Node::Null
            | Node::Bool { .. }
            | Node::Int(_)
            | Node::Long(_)
            | Node::Float(_)
            | Node::Double(_)
            | Node::Str(_)
            | Node::Bytes { .. }
            | Node::Fixed { .. }
            | Node::Decimal { .. }
            | Node::Enum { .. }
            | Node::Options { .. }
    )
}

/// Records the one value (optionally in a union branch) a plain generator
/// writes, as the constant that writes the same.
#[derive(Default)]
struct Capture {
    branch: Option<u32>,
    value: Option<Const>,
    /// Something a constant table does not hold (a container, two values).
    unfit: bool,
}

impl Capture {
    fn put(&mut self, c: Const) {
        self.unfit |= self.value.is_some();
        self.value = Some(c);
    }

    fn finish(self) -> Option<Const> {
        if self.unfit {
            return None;
        }
        let v = self.value?;
        Some(match self.branch {
            Some(b) => Const::Union(b, Box::new(v)),
            None => v,
        })
    }
}

impl Sink for Capture {
    fn null(&mut self) {
        self.put(Const::Null);
    }
    fn boolean(&mut self, v: bool) {
        self.put(Const::Bool(v));
    }
    fn int(&mut self, v: i32) {
        self.put(Const::Int(v));
    }
    fn long(&mut self, v: i64) {
        self.put(Const::Long(v));
    }
    fn float(&mut self, v: f32) {
        self.put(Const::Float(v));
    }
    fn double(&mut self, v: f64) {
        self.put(Const::Double(v));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.put(Const::Bytes(v.to_vec()));
    }
    fn string(&mut self, v: &[u8]) {
        match String::from_utf8(v.to_vec()) {
            Ok(s) => self.put(Const::Str(s)),
            Err(_) => self.unfit = true,
        }
    }
    fn string_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let mut b = vec![0; len];
        fill(&mut b);
        self.string(&b);
    }
    fn fixed(&mut self, v: &[u8]) {
        self.put(Const::Fixed(v.to_vec()));
    }
    fn decimal(&mut self, unscaled: i128, scale: u32, size: Option<usize>) {
        self.put(Const::Decimal(unscaled, scale, size));
    }
    fn enumeration(&mut self, index: u32, symbol: &str) {
        self.put(Const::Enum(index, symbol.to_owned()));
    }
    fn record_start(&mut self) {
        self.unfit = true;
    }
    fn field(&mut self, _name: &str, _first: bool) {}
    fn record_end(&mut self) {}
    fn array_start(&mut self, _len: usize) {
        self.unfit = true;
    }
    fn item(&mut self, _first: bool) {}
    fn array_end(&mut self, _len: usize) {}
    fn map_start(&mut self, _len: usize) {
        self.unfit = true;
    }
    fn map_key(&mut self, _key: &[u8], _first: bool) {}
    fn map_end(&mut self, _len: usize) {}
    fn union_branch(&mut self, index: u32) {
        self.unfit |= self.branch.is_some() || self.value.is_some();
        self.branch = Some(index);
    }
}
