//! The plan compiled once more, for Avro binary: a flat program of
//! operations specialised by type and distribution, run by one loop.
//!
//! The walk in [`super::plan`] interprets the node tree: per value it
//! dispatches on the node, then on the leaf kind, then on the
//! distribution, and it calls a function per record, array and union,
//! handing the random stream and the output position over through memory
//! each time. A live `orders.avsc` record spent about a third of its time
//! there (a hand-written generator for it, with the same draws, took 116 ns
//! a record where the walk took 176).
//!
//! A [`Prog`] is what is left when the tree is unrolled at compile time:
//! records disappear (their fields follow each other), every leaf is one
//! operation that already knows its type and distribution, arrays and
//! unions are jumps. The loop keeps the random stream, the output position,
//! the work count and the array counters in locals, so in registers, and
//! makes one dispatch per value.
//!
//! The program makes exactly the walk's draws in the walk's order, so a
//! seed gives the same bytes either way (tested for every shipped schema and
//! hundreds of random ones): it is a faster way to run the same plan, not a
//! second generator. What it has no operation for (maps, bytes, fixed,
//! decimals, cardinality sets generated live, iterations, rejection-sampled
//! zipf, ...) runs through the walk from inside the program. Schemas it
//! cannot unroll (recursive ones, and ones over [`MAX_OPS`] operations)
//! have no program and are walked.

use super::draw::{Alias, AliasValues, Chance, Gauss, Wy, ZipfTable};
use super::key::{KeyBuf, KeySink};
use super::plan::{
    fill_uuid, pick_ahead, uuid_bits, within, within_f, write_const, write_now, zipf_rank, Const,
    Cx, Dist, Len, Node, NodeId, NumGen, Pick, Plan, StrKind, TimeUnit, MAX_DEPTH, MAX_WORK,
};
use super::strpool::StrPool;
use super::write::{self, AvroSink, Prechecked, Sink, SLACK};
use std::sync::Arc;

/// Programs whose datum bound is over this are not built (the caller
/// writes those with a growing buffer, by the walk).
pub const MAX_LEN: usize = 1 << 20;

/// Programs longer than this are not built: a schema that uses one named
/// type in many places unrolls into a copy per place.
pub const MAX_OPS: usize = 1 << 14;

/// Constants (from `options` and sets) up to this many encoded bytes are
/// copied as one word.
const CONST_WORD: usize = 16;

#[derive(Clone, Debug)]
pub struct Prog {
    ops: Box<[Op]>,
    /// Per top-level field of a record at the root: its node, where its
    /// operations start and end, and its part of `max_len` (for keys taken
    /// from a field, which is walked).
    fields: Box<[(NodeId, u32, u32, usize)]>,
    /// A bound on the bytes a datum takes (as [`Plan::max_avro_len`] is
    /// for the walk), computed with the operations from what each writes.
    max_len: usize,
}

/// How an operation picks one of `n` choices: the walk's [`Pick`], and the
/// uniform draw of string pools and sets (which draws even when `n` is 1,
/// as the walk does there).
#[derive(Clone, Debug)]
enum Draw {
    /// One choice, no draw.
    Zero,
    Below(u64),
    Alias(Alias),
}

impl Draw {
    fn of(pick: &Pick) -> Draw {
        match pick {
            Pick::Uniform(1) => Draw::Zero,
            Pick::Uniform(n) => Draw::Below(u64::from(*n)),
            Pick::Weighted(a) => Draw::Alias(a.clone()),
        }
    }

    #[inline(always)]
    fn draw(&self, rng: &mut Wy) -> usize {
        match self {
            Draw::Zero => 0,
            Draw::Below(n) => rng.below(*n) as usize,
            Draw::Alias(a) => a.sample(rng.next()),
        }
    }
}

/// `repr(u8)`: a plain tag byte, so a dispatch is a load and a jump (the
/// default layout hides the tag in a field's spare values, and decoding it
/// took a few more instructions on every value).
#[derive(Clone, Debug)]
#[repr(u8)]
enum Op {
    Bool(Chance),
    /// An int (whose range fits an int) or a long.
    IntUniform {
        min: i64,
        max: i64,
    },
    IntNormal {
        gauss: Gauss,
        min: i64,
        max: i64,
    },
    IntZipf {
        min: i64,
        table: Arc<ZipfTable>,
    },
    /// [`Op::IntZipf`] over ints whose varints take one or two bytes: the
    /// table holds their bytes (as a little-endian word), so a draw is a
    /// table read and a store.
    ZipfVarint(AliasValues),
    DoubleUniform {
        min: f64,
        max: f64,
    },
    DoubleNormal {
        gauss: Gauss,
        min: f64,
        max: f64,
    },
    Now {
        unit: TimeUnit,
        jitter_ms: u64,
        offset_ms: i64,
    },
    Uuid,
    /// A string from a pool, picked one draw ahead ([`Cx::lag`]) if `lag`
    /// is its entry there (`u32::MAX`, past the end: none;
    /// [`StrPool::slot`]).
    Pool {
        pool: Arc<StrPool>,
        draw: Draw,
        lag: u32,
    },
    /// [`Op::Pool`] for the common case: values in slots of `1 << shift`
    /// bytes, drawn uniformly from `n` (no dispatch on the pool's layout
    /// or the kind of draw).
    Slots {
        pool: Arc<StrPool>,
        shift: u32,
        n: u64,
        lag: u32,
    },
    Enum(Draw),
    /// Constants, each Avro-encoded in a word, and their lengths.
    Const {
        words: Arc<[[u8; CONST_WORD]]>,
        lens: Arc<[u8]>,
        draw: Draw,
    },
    /// Writes the branch drawn (or `exhausted` once the datum's work bound
    /// is reached) and goes to its operations, `to[branch]`.
    Union {
        draw: Draw,
        exhausted: u32,
        to: Box<[u32]>,
    },
    /// A union of null and one other type (the common optional field):
    /// its operations follow, and `end` is past them. Null skips them on a
    /// conditional branch, where a general union's jump table would make
    /// the next dispatch unpredictable.
    Nullable {
        draw: Draw,
        exhausted: u32,
        null: u32,
        end: u32,
    },
    Jump(u32),
    /// Draws the item count; with none, writes the end and goes to `end`,
    /// else counts the items down in [`ArrayEnd`](Op::ArrayEnd).
    ArrayStart {
        len: Len,
        end: u32,
    },
    /// Back to the first item operation, `body`, while items are left.
    ArrayEnd {
        body: u32,
    },
    /// A node the program has no operation for, written by the walk at the
    /// depth it has there, through a bounds-checked sink; `bound` is the
    /// walk's bound on what it writes ([`Plan::bound`]), which the program's
    /// own bound counted on and [`Prog::write`] checks.
    Walk {
        id: NodeId,
        depth: u32,
        bound: usize,
    },
}

impl Prog {
    /// The program of `plan`, or `None` where it cannot be unrolled.
    pub fn build(plan: &Plan) -> Option<Prog> {
        let mut ops = Vec::new();
        let mut fields = Vec::new();
        let max_len = match &plan.nodes[plan.root as usize] {
            Node::Record { fields: root, .. } => {
                let mut bound = 0usize;
                for (_, f) in root {
                    let from = to_u32(ops.len());
                    let b = emit(plan, *f, 0, &mut ops)?;
                    fields.push((*f, from, to_u32(ops.len()), b));
                    bound = bound.saturating_add(b);
                }
                bound
            }
            _ => emit(plan, plan.root, 0, &mut ops)?,
        };
        (max_len <= MAX_LEN).then(|| Prog {
            ops: ops.into(),
            fields: fields.into(),
            max_len,
        })
    }

    /// A bound on the bytes one datum takes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Writes one datum of the root type, as [`Plan::write`] does, at the
    /// sink's position, and returns where it ends; with `key`, as
    /// [`Plan::write_keyed`] does, the key form of that top-level field into
    /// its buffer. The sink must have room for [`Prog::max_len`] bytes and
    /// [`SLACK`] more (it panics if not).
    ///
    /// Always inlined: with a second caller (JSON through the program),
    /// the compiler stopped inlining it into the Avro path, which then ran
    /// 2 to 4% slower (users, clickstream: interleaved runs).
    #[inline(always)]
    pub fn write(
        &self,
        plan: &Plan,
        cx: &mut Cx,
        sink: AvroSink<&mut [u8]>,
        key: Option<(u32, &mut KeyBuf)>,
    ) -> usize {
        let (buf, start) = sink.into_parts();
        assert!(
            buf.len().saturating_sub(start) >= self.max_len + SLACK,
            "a datum's buffer is shorter than its bound"
        );
        cx.work = 0;
        // Each path makes its own sink: one sink handed to the keyed path's
        // call would live in memory, and the unkeyed loop would store its
        // position there after every value.
        match key {
            None => {
                // SAFETY: see `sink`.
                let out = unsafe { Self::sink(buf, start) };
                self.run(&self.ops, 0, plan, cx, out).end()
            }
            Some((field, key)) => self.write_keyed(plan, cx, buf, start, field, key),
        }
    }

    /// The sink a datum is written through, unchecked.
    ///
    /// # Safety
    ///
    /// `buf` has room for [`Prog::max_len`] bytes and [`SLACK`] more from
    /// `start` on ([`Prog::write`] asserts it). Then every operation moves
    /// the position by at most what `emit` counted for it (`reach`, and for
    /// containers the sum over their items or the widest branch), and
    /// writes at most SLACK bytes past the position; walked values (and a
    /// walked key field) are checked against their part of that bound as
    /// they are written. So no write ends past start + max_len + SLACK,
    /// which is within `buf`.
    #[inline(always)]
    unsafe fn sink(buf: &mut [u8], start: usize) -> AvroSink<Prechecked<'_>> {
        // SAFETY: the caller upholds this function's contract, which is
        // `prechecked`'s.
        unsafe { AvroSink::prechecked(buf, start) }
    }

    /// [`Prog::write`] with a key from top-level field `field`. Not inlined
    /// there, so that the unkeyed path has one copy of the loop.
    #[inline(never)]
    fn write_keyed(
        &self,
        plan: &Plan,
        cx: &mut Cx,
        buf: &mut [u8],
        start: usize,
        field: u32,
        key: &mut KeyBuf,
    ) -> usize {
        // SAFETY: `Prog::write` checked the room.
        let mut out = unsafe { Self::sink(buf, start) };
        key.null = true;
        let Some(&(id, from, to, bound)) = self.fields.get(field as usize) else {
            // A root that is not a plain record (one with `options` or a
            // cardinality, whose key the walk takes from the whole datum):
            // walked, through a checked sink.
            let mut checked = out.checked();
            plan.write_keyed(cx, &mut checked, field, key);
            return checked.end();
        };
        // The fields before the key field, the key field by the walk (which
        // copies its key form as it writes it), the fields after it.
        out = self.run(&self.ops[..from as usize], 0, plan, cx, out);
        let before = out.end();
        let end = {
            let mut checked = out.checked();
            cx.depth = 0;
            plan.gen_cx(id, cx, &mut KeySink::field(&mut checked, key));
            checked.end()
        };
        assert!(end - before <= bound, "a key field passed its bound");
        out.resume(end);
        self.run(&self.ops, to as usize, plan, cx, out).end()
    }

    /// Runs `ops` from operation `from` to their end, from `cx`'s random
    /// stream and work count (and back into them), writing into `out`.
    /// `ops` is the program or a prefix of it that ends where a field ends.
    /// Always inlined: called, it would take the sink in memory, and the
    /// position would stay there.
    ///
    /// One function, over the length rules allow elsewhere, because it is
    /// the per-record hot path: one dispatch loop whose state (random
    /// stream, position, work count, array counters) lives in its locals,
    /// so in registers. Splitting its arms into functions would add a call
    /// per operation and move that state through memory.
    #[inline(always)]
    fn run<'b>(
        &self,
        ops: &[Op],
        from: usize,
        plan: &Plan,
        cx: &mut Cx,
        // By value, and back: by reference, the position would live in
        // memory.
        mut out: AvroSink<Prechecked<'b>>,
    ) -> AvroSink<Prechecked<'b>> {
        let mut rng = cx.rng.clone();
        let mut work = cx.work;
        // Items left in the innermost array being written, and in the
        // arrays around it (`open` of them).
        let mut left = 0u32;
        let mut outer = [0u32; MAX_DEPTH as usize];
        let mut open = 0usize;
        // An iterator rather than an index: the next operation is one
        // pointer increment away, not a multiply and a bounds check.
        let mut next = ops[from..].iter();
        while let Some(op) = next.next() {
            match op {
                Op::ZipfVarint(table) => {
                    let word = table.sample(rng.next());
                    // A second byte where the first has its continuation
                    // bit.
                    out.put_word(&word.to_le_bytes(), 1 + usize::from(word >> 7 & 1))
                }
                Op::IntZipf { min, table } => out.put_long(zipf_rank(*min, table, &mut rng)),
                Op::DoubleNormal { gauss, min, max } => {
                    out.double(within_f(gauss.sample(&mut rng), *min, *max))
                }
                Op::IntUniform { min, max } => out.put_long(rng.range_i64(*min, *max)),
                Op::IntNormal { gauss, min, max } => {
                    out.put_long(within(gauss.sample(&mut rng).round() as i64, *min, *max))
                }
                Op::DoubleUniform { min, max } => {
                    let v = if min < max {
                        // As `NumGen::next`: never overflows.
                        let u = rng.unit();
                        min * (1.0 - u) + max * u
                    } else {
                        *min
                    };
                    out.double(v)
                }
                Op::Bool(p) => out.boolean(rng.chance(*p)),
                Op::Now {
                    unit,
                    jitter_ms,
                    offset_ms,
                } => write_now(*unit, *jitter_ms, *offset_ms, cx.now_ms, &mut rng, &mut out),
                Op::Uuid => {
                    let bits = uuid_bits(&mut rng);
                    out.string_with(36, |b| fill_uuid(b, bits));
                }
                Op::Pool { pool, draw, lag } => {
                    // As `Cx::lagged`, knowing that no cardinality value is
                    // being generated (those are walked).
                    let held = cx.lag.get_mut(*lag as usize);
                    let i = pick_ahead(held, &mut rng, |r| draw.draw(r), |i| pool.prefetch(i));
                    pool.write(i, &mut out)
                }
                Op::Slots {
                    pool,
                    shift,
                    n,
                    lag,
                } => {
                    let held = cx.lag.get_mut(*lag as usize);
                    let pick = |r: &mut Wy| r.below(*n) as usize;
                    let i = pick_ahead(held, &mut rng, pick, |i| pool.prefetch_slot(i, *shift));
                    pool.write_slot(i, *shift, &mut out)
                }
                Op::Enum(draw) => out.enumeration(draw.draw(&mut rng) as u32, ""),
                Op::Const { words, lens, draw } => {
                    let i = draw.draw(&mut rng);
                    out.put_word(&words[i], usize::from(lens[i]))
                }
                Op::Union {
                    draw,
                    exhausted,
                    to,
                } => {
                    let b = branch(draw, *exhausted, &mut work, &mut rng);
                    out.union_branch(b as u32);
                    next = ops[to[b] as usize..].iter();
                }
                Op::Nullable {
                    draw,
                    exhausted,
                    null,
                    end,
                } => {
                    let b = branch(draw, *exhausted, &mut work, &mut rng);
                    out.union_branch(b as u32);
                    if b as u32 == *null {
                        next = ops[*end as usize..].iter();
                    }
                }
                Op::Jump(to) => next = ops[*to as usize..].iter(),
                Op::ArrayStart { len, end } => {
                    let n = if work >= MAX_WORK {
                        0
                    } else {
                        len.next(&mut rng)
                    };
                    work += n as u32;
                    if n == 0 {
                        out.array_end(0);
                        next = ops[*end as usize..].iter();
                    } else {
                        out.array_start(n);
                        outer[open] = left;
                        open += 1;
                        left = n as u32;
                    }
                }
                Op::ArrayEnd { body } => {
                    left -= 1;
                    if left > 0 {
                        next = ops[*body as usize..].iter();
                    } else {
                        open -= 1;
                        left = outer[open];
                        out.array_end(0);
                    }
                }
                Op::Walk { id, depth, bound } => {
                    cx.rng = rng;
                    cx.depth = *depth;
                    cx.work = work;
                    let before = out.end();
                    let end = walk(plan, *id, cx, out.checked());
                    // What the program's bound counted on.
                    assert!(end - before <= *bound, "a walked value passed its bound");
                    out.resume(end);
                    rng = cx.rng.clone();
                    work = cx.work;
                }
            }
        }
        cx.rng = rng;
        cx.depth = 0;
        cx.work = work;
        out
    }
}

/// The branch a union takes, as in the walk: drawn, or `exhausted` once the
/// datum's work bound is reached; it counts towards the work.
#[inline(always)]
fn branch(draw: &Draw, exhausted: u32, work: &mut u32, rng: &mut Wy) -> usize {
    let b = if *work >= MAX_WORK {
        exhausted as usize
    } else {
        draw.draw(rng)
    };
    *work += 1;
    b
}

/// Writes node `id` by the walk; returns where it ends. A call, so that the
/// walk is not inlined into the program's loop, and with the sink by value,
/// so that the loop's sink never has its address taken.
#[inline(never)]
fn walk(plan: &Plan, id: NodeId, cx: &mut Cx, mut out: AvroSink<&mut [u8]>) -> usize {
    plan.gen_cx(id, cx, &mut out);
    out.end()
}

/// Appends the operations of node `id`, at `depth` (arrays and unions
/// count it, as in the walk), and returns a bound on the bytes they write
/// (see [`Prog::write`]); `None` if the schema cannot be unrolled.
fn emit(plan: &Plan, id: NodeId, depth: u32, ops: &mut Vec<Op>) -> Option<usize> {
    if ops.len() >= MAX_OPS {
        return None;
    }
    match &plan.nodes[id as usize] {
        Node::Null => Some(0),
        Node::Record { fields, .. } => {
            let mut bound = 0usize;
            for (_, f) in fields {
                bound = bound.saturating_add(emit(plan, *f, depth, ops)?);
            }
            Some(bound)
        }
        Node::Array { len, item } => emit_array(plan, *len, *item, depth, ops),
        Node::Union {
            branches,
            pick,
            null_branch,
            ..
        } => emit_union(plan, branches, pick, *null_branch, depth, ops),
        node => {
            let op = leaf_op(plan, id, node, depth);
            let bound = reach(&op);
            ops.push(op);
            Some(bound)
        }
    }
}

/// The one operation that writes leaf `node` (node `id`): a specialised
/// one where there is one for its type and distribution, else a walk.
fn leaf_op(plan: &Plan, id: NodeId, node: &Node, depth: u32) -> Op {
    // Only for the nodes walked: a bound walks the node's whole subtree.
    let walked = || Op::Walk {
        id,
        depth,
        bound: plan.bound(id, depth),
    };
    match node {
        Node::Bool { p_true } => Op::Bool(*p_true),
        // An int is written as `value as i32`; within the int range that
        // is the value itself, as a long would write it.
        Node::Int(g) if fits_int(g) => int_op(g).unwrap_or_else(walked),
        Node::Long(g) => int_op(g).unwrap_or_else(walked),
        Node::Double(g) => match &g.dist {
            Dist::Uniform => Op::DoubleUniform {
                min: g.min,
                max: g.max,
            },
            Dist::Normal(gauss) => Op::DoubleNormal {
                gauss: gauss.clone(),
                min: g.min,
                max: g.max,
            },
            _ => walked(),
        },
        Node::Now {
            unit,
            jitter_ms,
            offset_ms,
        } => Op::Now {
            unit: *unit,
            jitter_ms: *jitter_ms,
            offset_ms: *offset_ms,
        },
        Node::Str(s) => match &s.kind {
            StrKind::Uuid if s.prefix.is_empty() => Op::Uuid,
            // The prefix is in the pool's values.
            StrKind::Pool(pool) => pool_op(pool, Draw::Below(pool.count() as u64)),
            _ => walked(),
        },
        Node::Strings { pool, pick } => pool_op(pool, Draw::of(pick)),
        Node::Enum { pick, .. } => Op::Enum(Draw::of(pick)),
        Node::Options { values, pick } => consts(values, Draw::of(pick)).unwrap_or_else(walked),
        Node::Set { values } => {
            consts(values, Draw::Below(values.len() as u64)).unwrap_or_else(walked)
        }
        _ => walked(),
    }
}

/// [`emit`] for an array of `item`s: its start, the item's operations,
/// its end.
fn emit_array(plan: &Plan, len: Len, item: NodeId, depth: u32, ops: &mut Vec<Op>) -> Option<usize> {
    // Recursive schemas end here, at the walk's depth bound.
    if depth >= MAX_DEPTH {
        return None;
    }
    let start = ops.len();
    ops.push(Op::Jump(0));
    let each = emit(plan, item, depth + 1, ops)?;
    ops.push(Op::ArrayEnd {
        body: to_u32(start + 1),
    });
    ops[start] = Op::ArrayStart {
        len,
        end: to_u32(ops.len()),
    };
    // The count, the items, the end.
    let items = usize::try_from(len.max).unwrap_or(usize::MAX);
    Some((VARINT + 1).saturating_add(each.saturating_mul(items)))
}

/// [`emit`] for a union: an [`Op::Nullable`] where it is null and one
/// other type, else an [`Op::Union`] that jumps to its branches'
/// operations, each of which jumps past the last.
fn emit_union(
    plan: &Plan,
    branches: &[NodeId],
    pick: &Pick,
    null_branch: Option<u32>,
    depth: u32,
    ops: &mut Vec<Op>,
) -> Option<usize> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let start = ops.len();
    ops.push(Op::Jump(0));
    let is_null = |b: &NodeId| matches!(plan.nodes[*b as usize], Node::Null);
    if let [a, b] = branches[..] {
        if is_null(&a) != is_null(&b) {
            let (null, other) = if is_null(&a) { (0, b) } else { (1, a) };
            let bound = emit(plan, other, depth + 1, ops)?;
            ops[start] = Op::Nullable {
                draw: Draw::of(pick),
                exhausted: null_branch.unwrap_or(0),
                null,
                end: to_u32(ops.len()),
            };
            return Some(VARINT.saturating_add(bound));
        }
    }
    let mut to = Vec::with_capacity(branches.len());
    let mut jumps = Vec::with_capacity(branches.len());
    let mut widest = 0;
    for b in branches {
        to.push(to_u32(ops.len()));
        widest = widest.max(emit(plan, *b, depth + 1, ops)?);
        jumps.push(ops.len());
        ops.push(Op::Jump(0));
    }
    let end = to_u32(ops.len());
    for j in jumps {
        ops[j] = Op::Jump(end);
    }
    ops[start] = Op::Union {
        draw: Draw::of(pick),
        exhausted: null_branch.unwrap_or(0),
        to: to.into(),
    };
    Some(VARINT.saturating_add(widest))
}

/// The most a leaf operation moves the position by (what it writes past
/// that, a word or a window, is within [`SLACK`]).
fn reach(op: &Op) -> usize {
    match op {
        Op::Bool(_) => 1,
        Op::IntUniform { .. } | Op::IntNormal { .. } | Op::IntZipf { .. } => VARINT,
        Op::ZipfVarint(_) => 2,
        Op::DoubleUniform { .. } | Op::DoubleNormal { .. } => 8,
        Op::Now { .. } | Op::Enum(_) => VARINT,
        // Its length (one byte), its text.
        Op::Uuid => 1 + 36,
        Op::Pool { pool, .. } | Op::Slots { pool, .. } => VARINT.saturating_add(pool.max_len()),
        Op::Const { .. } => CONST_WORD,
        Op::Walk { bound, .. } => *bound,
        // Containers and jumps are bounded where they are emitted.
        Op::Union { .. }
        | Op::Nullable { .. }
        | Op::Jump(_)
        | Op::ArrayStart { .. }
        | Op::ArrayEnd { .. } => 0,
    }
}

/// The longest varint.
const VARINT: usize = 10;

/// The operation that picks from `pool` by `draw`.
fn pool_op(pool: &Arc<StrPool>, draw: Draw) -> Op {
    let lag = pool.slot();
    match (pool.slot_shift(), draw) {
        (Some(shift), Draw::Below(n)) => Op::Slots {
            pool: pool.clone(),
            shift,
            n,
            lag,
        },
        (_, draw) => Op::Pool {
            pool: pool.clone(),
            draw,
            lag,
        },
    }
}

fn to_u32(i: usize) -> u32 {
    u32::try_from(i).expect("programs are under MAX_OPS operations")
}

fn fits_int(g: &NumGen<i64>) -> bool {
    let int = i64::from(i32::MIN)..=i64::from(i32::MAX);
    int.contains(&g.min) && int.contains(&g.max)
}

fn int_op(g: &NumGen<i64>) -> Option<Op> {
    Some(match &g.dist {
        Dist::Uniform => Op::IntUniform {
            min: g.min,
            max: g.max,
        },
        Dist::Normal(gauss) => Op::IntNormal {
            gauss: gauss.clone(),
            min: g.min,
            max: g.max,
        },
        Dist::ZipfTable(table) => match table
            .single()
            .and_then(|t| AliasValues::new(t, |i| short_varint(g.min, i)))
        {
            Some(words) => Op::ZipfVarint(words),
            None => Op::IntZipf {
                min: g.min,
                table: table.clone(),
            },
        },
        _ => return None,
    })
}

/// The Avro bytes of `min + rank` (as the writer encodes them) as a
/// little-endian word, if they are one or two bytes.
fn short_varint(min: i64, rank: usize) -> Option<u16> {
    let v = min.checked_add(i64::try_from(rank).ok()?)?;
    let mut bytes = Vec::with_capacity(10);
    write::put_small(&mut bytes, v);
    match bytes[..] {
        [a] => Some(u16::from(a)),
        [a, b] => Some(u16::from_le_bytes([a, b])),
        _ => None,
    }
}

/// Constants as Avro-encoded words, if each fits one.
fn consts(values: &[Const], draw: Draw) -> Option<Op> {
    if values.is_empty() {
        return None;
    }
    let mut words = Vec::with_capacity(values.len());
    let mut lens = Vec::with_capacity(values.len());
    for c in values {
        let mut v = Vec::new();
        let mut sink = AvroSink::at(&mut v, 0);
        write_const(c, &mut sink);
        let n = sink.end();
        if n > CONST_WORD {
            return None;
        }
        let mut word = [0u8; CONST_WORD];
        word[..n].copy_from_slice(&v[..n]);
        words.push(word);
        lens.push(n as u8);
    }
    Some(Op::Const {
        words: words.into(),
        lens: lens.into(),
        draw,
    })
}
