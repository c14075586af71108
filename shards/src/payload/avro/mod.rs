//! Schema-driven values: Avro schemas with generation hints, compiled into
//! plans that write records straight into a buffer.
//!
//! A schema (`.avsc`) is ordinary Avro JSON; generation hints ride in a
//! `"datastorm"` attribute on fields and type objects, which other Avro
//! tools ignore. The vocabulary is documented in `docs/schema-hints.md`.
//!
//! # Shape
//!
//! 1. [`load`] / [`compile_str`] / [`compile_all`] parse the schema with
//!    apache-avro (so only valid Avro gets through), check every hint against
//!    the type it is attached to, and compile a [`CompiledSchema`]: a flat
//!    vector of generator nodes. Errors name the file, the field path and the
//!    reason (`orders.avsc: items[].price: range.min (5) is greater than
//!    range.max (1)`).
//! 2. Where the plan is not recursive, `prog` unrolls it into a flat
//!    program of operations for Avro binary, which makes the same draws as
//!    walking the plan, with one dispatch per value.
//! 3. [`AvroValues`] is the shard's [`ValueSource`]: it generates a datum
//!    per record (`live`: the program for Avro binary where there is one,
//!    the walk otherwise) or cycles a pool generated up front (`pooled`),
//!    writing Avro binary, Confluent wire format, or JSON. The same seed
//!    gives the same data in every encoding: every writer sees the same
//!    random draws.
//!
//! # Hot path and allocation
//!
//! Live generation does not allocate per record once its buffers have grown
//! to the largest record: `regex` and `fake` values (whose libraries
//! allocate a `String` per value) are drawn from per-field pools of
//! [`POOL_VALUES`] values pre-generated at compile time from the dataset
//! seed, and `uuid`, `ipv4`, `ipv6`, iteration and plain random strings are
//! generated in place in the output.
//!
//! A live record of a rich schema takes dozens of random draws and values,
//! so the per-value cost decides records per second. What keeps it low, each
//! measured: a small random generator and one-draw alias tables (`draw`);
//! string pools, string `options` and small `cardinality` sets kept
//! Avro-encoded, ready to copy as a fixed-size window (`strpool`, `sets`),
//! and picked one draw ahead so the value is prefetched (`Cx::lag`); an
//! inlined ziggurat for normal draws (`draw::Gauss`); an Avro writer into a
//! buffer sized once per datum, whose position stays in a register and whose
//! varints have no branch on their length (`write`); the plan unrolled into
//! operations specialised by type and distribution, with the datum's room
//! checked once rather than per write (`prog`).
//!
//! # Determinism
//!
//! A generator's random stream comes from the seed passed to
//! [`AvroValues::live`] / [`AvroValues::pooled`] (one per shard). Cardinality
//! sets and value pools come from the *dataset* seed given at compile time
//! ([`compile_all_seeded`]; 0 otherwise), so every shard, and every stream
//! that `ref`erences a set, sees the same set. Timestamps near "now" follow the
//! wall clock unless [`AvroValues::with_fixed_now`] pins it.

mod compile;
mod draw;
mod error;
mod hints;
mod json;
mod key;
mod plan;
mod prog;
mod sets;
mod streams;
mod strpool;
mod values;
mod write;

#[cfg(test)]
mod tests;

pub use compile::POOL_VALUES;
pub use error::SchemaError;
pub use hints::{FAKE_KINDS, HINT_ATTRIBUTE, HINT_KEYS};
pub use key::{KeyField, KeyFieldError};
pub use streams::load_streams;
pub use values::AvroValues;

use super::ValueSource;
use compile::{show, Compiler, SetInfo};
use key::KeyBuf;
use plan::{Cx, Plan};
use prog::Prog;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use write::{AvroSink, JsonSink};

/// How a generated datum is framed in the record value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Avro binary encoding of the datum, nothing else.
    Avro,
    /// Confluent Schema Registry wire format: magic byte 0, the schema id as
    /// 4 bytes big-endian, then the Avro binary datum.
    Confluent { schema_id: u32 },
    /// One JSON object (or value) per record, no trailing newline.
    Json,
}

/// A schema compiled into a generator plan. Cheap to clone (shared), and
/// `Send + Sync`: compile once, hand a clone to every shard.
#[derive(Clone)]
pub struct CompiledSchema {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    source: String,
    avro: apache_avro::Schema,
    plan: Plan,
    /// The plan unrolled for Avro binary, where it can be.
    prog: Option<Prog>,
    /// With `prog`: its datum read back as JSON, for [`Encoding::Json`].
    json: Option<json::JsonProg>,
    max_avro_len: usize,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("name", &self.inner.name)
            .field("nodes", &self.inner.plan.nodes.len())
            .finish()
    }
}

impl CompiledSchema {
    /// The file (or given) name the schema was compiled from.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The schema text as given, hints included (Avro tools ignore them).
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The schema as apache-avro parsed it.
    pub fn avro_schema(&self) -> &apache_avro::Schema {
        &self.inner.avro
    }

    /// The Parsing Canonical Form (no hints, no docs), e.g. for a registry.
    pub fn canonical_form(&self) -> String {
        self.inner.avro.canonical_form()
    }

    /// An upper bound on one datum's Avro binary size (saturating).
    pub fn max_avro_len(&self) -> usize {
        self.inner.max_avro_len
    }

    fn plan(&self) -> &Plan {
        &self.inner.plan
    }

    /// Whether Avro data is written by the unrolled program (`prog`)
    /// rather than by walking the plan.
    pub fn is_unrolled(&self) -> bool {
        self.inner.prog.is_some()
    }
}

/// Reads and compiles one schema file. Its stream name (for `ref`) is the
/// file stem: `schemas/users.avsc` is stream `users`.
pub fn load(path: &Path) -> Result<CompiledSchema, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    compile_str(&name, &text)
}

/// Reads and compiles a schema file together with the schemas its `ref`
/// hints point at, found beside it by stream name (`"ref": "users.user_id"`
/// loads `users.avsc` from the same folder), transitively.
pub fn load_with_references(path: &Path) -> Result<CompiledSchema, SchemaError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut files: Vec<(String, String)> = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        // compile_all takes stream names (file stems).
        let name = p
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string());
        if files.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(|source| SchemaError::Io {
            path: p.clone(),
            source,
        })?;
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let mut refs = Vec::new();
            collect_refs(&json, &mut refs);
            for stream in refs {
                todo.push(dir.join(format!("{stream}.avsc")));
            }
        }
        files.push((name, text));
    }
    let streams: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mut compiled = compile_all(&streams)?;
    Ok(compiled.swap_remove(0))
}

/// Compiles every `.avsc` file in `dir` together (so `ref`s between them
/// resolve), sorted by stream name.
pub fn load_dir(dir: &Path) -> Result<Vec<CompiledSchema>, SchemaError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SchemaError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "avsc") {
            let text = std::fs::read_to_string(&p).map_err(|source| SchemaError::Io {
                path: p.clone(),
                source,
            })?;
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((stem, text));
        }
    }
    files.sort();
    let streams: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    compile_all(&streams)
}

/// Stream names that `ref` hints in a schema point at.
fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(r) = m
                .get(HINT_ATTRIBUTE)
                .and_then(|h| h.get("ref"))
                .and_then(serde_json::Value::as_str)
            {
                if let Some((stream, _)) = r.split_once('.') {
                    out.push(stream.to_owned());
                }
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Compiles one schema from text; `name` is used in error messages, and its
/// stem (the part before `.avsc`) is the stream name for `ref`s.
pub fn compile_str(name: &str, json: &str) -> Result<CompiledSchema, SchemaError> {
    compile_str_seeded(name, json, 0)
}

/// [`compile_str`] with a dataset seed for cardinality sets and value pools.
pub fn compile_str_seeded(
    name: &str,
    json: &str,
    dataset_seed: u64,
) -> Result<CompiledSchema, SchemaError> {
    let stream = name.strip_suffix(".avsc").unwrap_or(name);
    let mut all = compile_named(&[(stream, name, json)], dataset_seed)?;
    Ok(all.remove(0))
}

/// Compiles several streams' schemas together, so that `ref` hints can
/// point from one to another (`"ref": "users.user_id"`). Each entry is
/// `(stream name, schema JSON)`; errors name the stream's schema as
/// `STREAM.avsc`. Returns the schemas in the order given.
pub fn compile_all(streams: &[(&str, &str)]) -> Result<Vec<CompiledSchema>, SchemaError> {
    compile_all_seeded(streams, 0)
}

/// [`compile_all`] with a dataset seed for cardinality sets and value pools.
pub fn compile_all_seeded(
    streams: &[(&str, &str)],
    dataset_seed: u64,
) -> Result<Vec<CompiledSchema>, SchemaError> {
    let files: Vec<String> = streams.iter().map(|(s, _)| format!("{s}.avsc")).collect();
    let named: Vec<(&str, &str, &str)> = streams
        .iter()
        .zip(&files)
        .map(|((s, j), f)| (*s, f.as_str(), *j))
        .collect();
    compile_named(&named, dataset_seed)
}

/// `(stream, file name, json)` per stream.
fn compile_named(
    streams: &[(&str, &str, &str)],
    dataset_seed: u64,
) -> Result<Vec<CompiledSchema>, SchemaError> {
    struct Partial<'a> {
        file: &'a str,
        source: &'a str,
        avro: apache_avro::Schema,
        compiler: Compiler<'a>,
        root: plan::NodeId,
    }
    let mut parts = Vec::with_capacity(streams.len());
    for (stream, file, json) in streams {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|source| SchemaError::Json {
                file: file.to_string(),
                source,
            })?;
        let avro = apache_avro::Schema::parse(&value).map_err(|e| SchemaError::Avro {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        let mut compiler = Compiler::new(stream, dataset_seed);
        let root = compiler
            .compile(&value, None, "", hints::Hints::default())
            .map_err(|e| SchemaError::Hint {
                file: file.to_string(),
                path: e.path,
                reason: e.reason.to_string(),
            })?;
        parts.push(Partial {
            file,
            source: json,
            avro,
            compiler,
            root,
        });
    }
    // Every stream's cardinality sets, by "stream.field.path".
    let mut sets: HashMap<String, SetInfo> = HashMap::new();
    for ((stream, _, _), p) in streams.iter().zip(&parts) {
        for (path, info) in &p.compiler.sets {
            sets.insert(format!("{stream}.{path}"), info.clone());
        }
    }
    let known: Vec<&str> = streams.iter().map(|s| s.0).collect();
    let mut out = Vec::with_capacity(parts.len());
    for mut p in parts {
        let refs = std::mem::take(&mut p.compiler.refs);
        for r in refs {
            let fail = |reason: String| SchemaError::Hint {
                file: p.file.to_owned(),
                path: show(&r.path),
                reason,
            };
            let info = sets.get(&r.target).ok_or_else(|| {
                fail(format!(
                    "unknown reference {:?}: no field with a `cardinality` hint by that name \
                     among the streams compiled together ({})",
                    r.target,
                    known.join(", ")
                ))
            })?;
            if info.container {
                return Err(fail(format!(
                    "reference {:?} is a record, array, map or union; only fields of \
                     primitive, enum or fixed types can be referenced",
                    r.target
                )));
            }
            let mine = p.compiler.signature(r.id);
            if mine != info.signature {
                return Err(fail(format!(
                    "reference {:?} has type {} but this field has type {}",
                    r.target, info.signature, mine
                )));
            }
            let inner = p
                .compiler
                .push_node(info.inner.clone(), info.signature.clone());
            p.compiler.resolve_ref(r.id, info.n, info.seed, inner);
        }
        let mut plan = p.compiler.finish(p.root);
        plan.tabulate();
        let prog = Prog::build(&plan);
        let json = prog.as_ref().and_then(|_| json::JsonProg::build(&plan));
        // Both bounds hold; the larger sizes the buffers either writer uses.
        let max_avro_len = prog
            .as_ref()
            .map_or(0, Prog::max_len)
            .max(plan.max_avro_len());
        out.push(CompiledSchema {
            inner: Arc::new(Inner {
                name: p.file.to_owned(),
                source: p.source.to_owned(),
                avro: p.avro,
                plan,
                prog,
                json,
                max_avro_len,
            }),
        });
    }
    Ok(out)
}

/// `n` records as JSON values, for showing what a schema generates
/// (`datastorm sample`). Timestamps follow the wall clock.
pub fn sample_json(schema: &CompiledSchema, seed: u64, n: usize) -> Vec<serde_json::Value> {
    let mut v = AvroValues::live(schema, Encoding::Json, seed);
    (0..n as u64)
        .map(|seq| serde_json::from_slice(v.value(seq)).unwrap_or(serde_json::Value::Null))
        .collect()
}

/// Writes one datum of `schema` in `enc` into `out` from `start` on, and
/// with `key` the key form of a root field into its buffer; returns where
/// the datum ends. Bytes of `out` past that are scratch (the Avro writer
/// keeps its buffer initialized beyond the datum, see [`AvroSink`]).
fn write_datum(
    schema: &CompiledSchema,
    cx: &mut Cx,
    enc: Encoding,
    out: &mut Vec<u8>,
    start: usize,
    key: Option<(u32, &mut KeyBuf)>,
) -> usize {
    fn emit<S: write::Sink>(
        plan: &Plan,
        cx: &mut Cx,
        out: &mut S,
        key: Option<(u32, &mut KeyBuf)>,
    ) {
        match key {
            None => plan.write(cx, out),
            Some((field, buf)) => plan.write_keyed(cx, out, field, buf),
        }
    }
    /// The Confluent wire format's magic byte and schema id.
    fn frame(sink: &mut impl write::Sink, schema_id: Option<u32>) {
        if let Some(id) = schema_id {
            let id = id.to_be_bytes();
            sink.fixed(&[0, id[0], id[1], id[2], id[3]]);
        }
    }
    fn avro<B: write::Room>(
        plan: &Plan,
        cx: &mut Cx,
        mut sink: AvroSink<B>,
        schema_id: Option<u32>,
        key: Option<(u32, &mut KeyBuf)>,
    ) -> usize {
        frame(&mut sink, schema_id);
        emit(plan, cx, &mut sink, key);
        sink.end()
    }
    let plan = schema.plan();
    let schema_id = match enc {
        Encoding::Avro => None,
        Encoding::Confluent { schema_id } => Some(schema_id),
        Encoding::Json => {
            out.truncate(start);
            match (&schema.inner.prog, &schema.inner.json) {
                (Some(prog), Some(json)) if schema.max_avro_len() <= MAX_RESERVED => {
                    // The program's Avro binary, read back as JSON.
                    let mut avro = std::mem::take(&mut cx.json_avro);
                    let need = schema.max_avro_len() + write::SLACK;
                    if avro.len() < need {
                        avro.resize(need, 0);
                    }
                    let end = prog.write(plan, cx, AvroSink::within(&mut avro, 0), key);
                    json.write(&avro[..end], out)
                        .expect("the program's datum reads back as its plan's type");
                    cx.json_avro = avro;
                }
                _ => emit(plan, cx, &mut JsonSink(out), key),
            }
            return out.len();
        }
    };
    // With a bound on the datum (most schemas: all but the recursive and
    // the huge), the buffer is made long enough once and written as a
    // slice, without a check for growth per value.
    let bound = schema.max_avro_len();
    if bound <= MAX_RESERVED {
        let need = start + 5 + bound + write::SLACK;
        if out.len() < need {
            out.resize(need, 0);
        }
        let mut sink = AvroSink::within(out, start);
        match &schema.inner.prog {
            Some(prog) => {
                frame(&mut sink, schema_id);
                prog.write(plan, cx, sink, key)
            }
            None => avro(plan, cx, sink, schema_id, key),
        }
    } else {
        avro(plan, cx, AvroSink::at(out, start), schema_id, key)
    }
}

/// Largest datum bound for which [`write_datum`] sizes its buffer up front.
const MAX_RESERVED: usize = 1 << 20;
