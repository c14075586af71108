//! JSON records through the compiled program: the program writes a datum's
//! Avro binary (its fast path), and a reader compiled from the same plan
//! turns those bytes into JSON as [`JsonSink`] writes the walk's values.
//!
//! The walk writes JSON at about a tenth of the program's rate: each value
//! goes through the plan's generic generators. Avro binary holds every
//! value the JSON text needs (enum indices name their symbols, decimals
//! their unscaled integers), so reading it back costs little next to the
//! text itself. The same seed gives the same JSON either way; a test checks
//! it on every schema in `schemas/` and on random ones.
//!
//! Hand-written rather than through apache-avro's reader: that builds a
//! `Value` tree per datum (allocations on the hot path), and its schema
//! cannot tell a `uuid` fixed from a `uuid` string, which this plan can.

use super::plan::{Const, Node, NodeId, Plan};
use super::write::{put, JsonSink, Sink};
use std::collections::HashMap;

/// How to read one Avro type and write it as JSON.
#[derive(Debug)]
enum J {
    Null,
    Bool,
    /// Int and long (dates, times and timestamps too): a zig-zag varint.
    Long,
    Float,
    Double,
    /// String and uuid.
    Str,
    Bytes,
    Fixed(usize),
    Decimal {
        scale: u32,
        size: Option<usize>,
    },
    /// Each symbol as its JSON text, quotes included.
    Enum(Box<[Box<[u8]>]>),
    /// Per field, the JSON before its value (`{"name":`, then `,"name":`)
    /// and its type; `{}` for a record without fields.
    Record(Box<[(Box<[u8]>, u32)]>),
    Array(u32),
    Map(u32),
    Union(Box<[u32]>),
}

/// A plan's reader from Avro binary to JSON.
#[derive(Debug)]
pub struct JsonProg {
    types: Vec<J>,
    root: u32,
}

impl JsonProg {
    /// The reader for `plan`'s root type; `None` where a node's type cannot
    /// be told from the plan (then the walk writes the JSON).
    pub fn build(plan: &Plan) -> Option<JsonProg> {
        let mut b = Builder {
            plan,
            types: Vec::new(),
            seen: HashMap::new(),
        };
        let root = b.of(plan.root)?;
        Some(JsonProg {
            types: b.types,
            root,
        })
    }

    /// Writes the datum whose Avro binary is `avro` as JSON. `None` if the
    /// bytes do not hold exactly one datum of the plan's type (which would
    /// be a bug in the program that wrote them).
    pub fn write(&self, avro: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let mut r = Reader { buf: avro, pos: 0 };
        self.value(self.root, &mut r, &mut JsonSink(out))?;
        (r.pos == avro.len()).then_some(())
    }

    fn value(&self, t: u32, r: &mut Reader, out: &mut JsonSink) -> Option<()> {
        match &self.types[t as usize] {
            J::Null => out.null(),
            J::Bool => out.boolean(r.byte()? != 0),
            J::Long => out.long(r.long()?),
            J::Float => out.float(f32::from_le_bytes(r.array()?)),
            J::Double => out.double(f64::from_le_bytes(r.array()?)),
            J::Str => {
                let n = r.len()?;
                out.string(r.take(n)?)
            }
            J::Bytes => {
                let n = r.len()?;
                out.bytes(r.take(n)?)
            }
            J::Fixed(n) => out.fixed(r.take(*n)?),
            J::Decimal { scale, size } => {
                let n = match size {
                    Some(n) => *n,
                    None => r.len()?,
                };
                out.decimal(unscaled(r.take(n)?), *scale, *size)
            }
            J::Enum(symbols) => {
                let i = usize::try_from(r.long()?).ok()?;
                put(out.0, symbols.get(i)?)
            }
            J::Record(fields) => {
                if fields.is_empty() {
                    out.0.extend_from_slice(b"{}");
                } else {
                    for (before, f) in fields.iter() {
                        put(out.0, before);
                        self.value(*f, r, out)?;
                    }
                    out.record_end();
                }
            }
            J::Array(item) => {
                out.array_start(0);
                let mut first = true;
                while let Some(n) = r.block()? {
                    for _ in 0..n {
                        out.item(first);
                        first = false;
                        self.value(*item, r, out)?;
                    }
                }
                out.array_end(0);
            }
            J::Map(value) => {
                out.map_start(0);
                let mut first = true;
                while let Some(n) = r.block()? {
                    for _ in 0..n {
                        let len = r.len()?;
                        out.map_key(r.take(len)?, first);
                        first = false;
                        self.value(*value, r, out)?;
                    }
                }
                out.map_end(0);
            }
            J::Union(branches) => {
                let b = usize::try_from(r.long()?).ok()?;
                self.value(*branches.get(b)?, r, out)?;
            }
        }
        Some(())
    }
}

/// A decimal's unscaled integer from its two's complement big-endian bytes
/// (a fixed wider than 16 bytes holds only sign copies past its last 16).
fn unscaled(be: &[u8]) -> i128 {
    let low = &be[be.len().saturating_sub(16)..];
    let fill = if low.first().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut bytes = [fill; 16];
    bytes[16 - low.len()..].copy_from_slice(low);
    i128::from_be_bytes(bytes)
}

struct Builder<'p> {
    plan: &'p Plan,
    types: Vec<J>,
    /// Typed node to its entry, so that named types used twice (and
    /// recursive ones) are built once.
    seen: HashMap<NodeId, u32>,
}

impl Builder<'_> {
    fn of(&mut self, id: NodeId) -> Option<u32> {
        let mut id = *self.plan.typed.get(id as usize)?;
        // A set drawn from (a reference's) is read as what it holds.
        while let Node::Cardinality { inner, .. } = self.plan.nodes[id as usize] {
            id = *self.plan.typed.get(inner as usize)?;
        }
        if let Some(&t) = self.seen.get(&id) {
            return Some(t);
        }
        let t = self.types.len() as u32;
        // Reserved first, so that a recursive type can refer to itself.
        self.types.push(J::Null);
        self.seen.insert(id, t);
        let j = match &self.plan.nodes[id as usize] {
            Node::Null => J::Null,
            Node::Bool { .. } => J::Bool,
            Node::Int(_) | Node::Long(_) | Node::Now { .. } => J::Long,
            Node::Float(_) => J::Float,
            Node::Double(_) => J::Double,
            Node::Str(_) | Node::Strings { .. } => J::Str,
            Node::Bytes { .. } => J::Bytes,
            Node::Fixed { size, .. } => J::Fixed(*size),
            Node::Decimal { scale, size, .. } => J::Decimal {
                scale: *scale,
                size: *size,
            },
            Node::Enum { symbols, .. } => J::Enum(
                symbols
                    .iter()
                    .enumerate()
                    .map(|(i, s)| text(|o| o.enumeration(i as u32, s)))
                    .collect(),
            ),
            Node::Record { fields, .. } => {
                let mut out = Vec::with_capacity(fields.len());
                for (i, (name, f)) in fields.iter().enumerate() {
                    let before = text(|o| {
                        if i == 0 {
                            o.record_start();
                        }
                        o.field(name, i == 0);
                    });
                    out.push((before, self.of(*f)?));
                }
                J::Record(out.into())
            }
            Node::Array { item, .. } => J::Array(self.of(*item)?),
            Node::Map { value, .. } => J::Map(self.of(*value)?),
            Node::Union { branches, .. } => J::Union(
                branches
                    .iter()
                    .map(|b| self.of(*b))
                    .collect::<Option<_>>()?,
            ),
            // Options and sets left without their typed node (a reference
            // to a field with both `options` and `cardinality`): scalars of
            // one kind can be read; others stay with the walk.
            Node::Options { values, .. } => of_consts(values)?,
            Node::Set { values } => of_consts(values)?,
            Node::Cardinality { .. } | Node::Unresolved => return None,
        };
        self.types[t as usize] = j;
        Some(t)
    }
}

/// The type of a table of constants, where they are scalars of one kind.
fn of_consts(values: &[Const]) -> Option<J> {
    let kind = |c: &Const| match c {
        Const::Null => Some(0),
        Const::Bool(_) => Some(1),
        Const::Int(_) | Const::Long(_) => Some(2),
        Const::Float(_) => Some(3),
        Const::Double(_) => Some(4),
        Const::Str(_) => Some(5),
        _ => None,
    };
    let first = kind(values.first()?)?;
    if values.iter().any(|v| kind(v) != Some(first)) {
        return None;
    }
    Some(match first {
        0 => J::Null,
        1 => J::Bool,
        2 => J::Long,
        3 => J::Float,
        4 => J::Double,
        _ => J::Str,
    })
}

/// What `write` puts into a JSON sink, as bytes.
fn text(write: impl FnOnce(&mut JsonSink)) -> Box<[u8]> {
    let mut out = Vec::new();
    write(&mut JsonSink(&mut out));
    out.into()
}

/// Reads Avro binary that this crate's writers wrote.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A zig-zag varint.
    #[inline]
    fn long(&mut self) -> Option<i64> {
        let mut z = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        None
    }

    /// A length: a varint that is not negative.
    #[inline]
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.long()?).ok()
    }

    /// The item count of an array's or map's next block; `None` inside
    /// the `Some` after the last. A negative count is followed by the
    /// block's size in bytes, which is not needed here.
    fn block(&mut self) -> Option<Option<u64>> {
        let n = self.long()?;
        if n < 0 {
            self.long()?;
        }
        Some((n != 0).then_some(n.unsigned_abs()))
    }
}
