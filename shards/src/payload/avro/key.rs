//! Keys taken from a field of the generated record (`--key field:NAME`).
//!
//! The key is not generated separately: while the plan writes the datum, a
//! [`KeySink`] wrapped around the key field's writer copies that field's
//! value, in its key form, into a small reused buffer. Only the key field
//! goes through the wrapper, so the other fields (and records written
//! without a key) keep the plain writer's speed.

use super::strpool::WINDOW;
use super::write::{decimal_bytes, Sink};
use super::CompiledSchema;
use apache_avro::schema::{ResolvedSchema, Schema};

/// A top-level field of a schema's root record whose value is each record's
/// Kafka key, checked by [`CompiledSchema::key_field`].
///
/// Key forms: strings and UUIDs as their UTF-8 bytes, enums as the symbol,
/// int and long (dates, times and timestamps included) and float and double
/// as decimal text, booleans as `true` / `false`, bytes, fixed and decimals
/// as their raw bytes; a union's null branch gives a null key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyField {
    name: String,
    /// Position among the root record's fields.
    index: u32,
}

impl KeyField {
    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn index(&self) -> u32 {
        self.index
    }
}

/// Why `--key field:NAME` cannot take keys from a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFieldError {
    /// Fixed-size values have no fields.
    #[error(
        "--key field:{0} takes the key from a field of schema records; \
         it needs a schema payload (--schema, or `schema` in a run file)"
    )]
    NeedsSchema(String),
    /// The schema has no such field, or one without a key form.
    #[error("--key field:{name}: {reason}")]
    Field { name: String, reason: String },
}

const NEEDS: &str = "a key needs a string, enum, number, boolean, bytes or fixed field";

impl CompiledSchema {
    /// Checks that `name` is a top-level field of the root record with a key
    /// form (see [`KeyField`]). The error is one line for people, starting
    /// with `--key field:NAME: `.
    pub fn key_field(&self, name: &str) -> Result<KeyField, KeyFieldError> {
        let file = self.name();
        let fail = |reason: String| KeyFieldError::Field {
            name: name.to_owned(),
            reason,
        };
        let root = self.avro_schema();
        let Schema::Record(record) = root else {
            return Err(fail(format!(
                "{file} is {}, not a record; a key field needs a record schema",
                describe(root)
            )));
        };
        let Some(index) = record.fields.iter().position(|f| f.name == name) else {
            let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(fail(format!(
                "{file} has no top-level field {name:?} (its fields: {})",
                names.join(", ")
            )));
        };
        let resolved = ResolvedSchema::try_from(root).map_err(|e| fail(e.to_string()))?;
        let names = resolved.get_names();
        let resolve = |s: &'_ Schema| -> Schema {
            match s {
                Schema::Ref { name } => names.get(name).map_or(Schema::Null, |s| (*s).clone()),
                s => s.clone(),
            }
        };
        let ty = resolve(&record.fields[index].schema);
        let bad = |s: &Schema| matches!(s, Schema::Record(_) | Schema::Array(_) | Schema::Map(_));
        if bad(&ty) {
            return Err(fail(format!(
                "field {name:?} of {file} is {}; {NEEDS}",
                describe(&ty)
            )));
        }
        if let Schema::Union(u) = &ty {
            if let Some(b) = u.variants().iter().map(resolve).find(bad) {
                return Err(fail(format!(
                    "field {name:?} of {file} is a union with {} branch; {NEEDS}",
                    describe(&b)
                )));
            }
        }
        Ok(KeyField {
            name: name.to_owned(),
            index: index as u32,
        })
    }
}

/// "a record", "an array", ... for error messages.
fn describe(s: &Schema) -> &'static str {
    match s {
        Schema::Record(_) => "a record",
        Schema::Array(_) => "an array",
        Schema::Map(_) => "a map",
        Schema::Union(_) => "a union",
        Schema::Enum(_) => "an enum",
        Schema::Fixed(_) => "a fixed",
        Schema::Null => "null",
        Schema::Boolean => "a boolean",
        Schema::Int => "an int",
        Schema::Long => "a long",
        Schema::Float => "a float",
        Schema::Double => "a double",
        Schema::Bytes => "bytes",
        _ => "a string",
    }
}

/// The key form of the current record's key field; `null` for a null key.
#[derive(Default)]
pub(super) struct KeyBuf {
    pub bytes: Vec<u8>,
    pub null: bool,
}

impl KeyBuf {
    /// The key, or `None` for a Kafka null key.
    pub fn get(&self) -> Option<&[u8]> {
        (!self.null).then_some(&self.bytes[..])
    }

    #[inline]
    fn set(&mut self, v: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(v);
        self.null = false;
    }

    fn set_decimal(&mut self, v: i64) {
        self.bytes.clear();
        if v < 0 {
            self.bytes.push(b'-');
        }
        let mut tmp = [0u8; 20];
        self.bytes
            .extend_from_slice(crate::payload::decimal(v.unsigned_abs(), &mut tmp));
        self.null = false;
    }

    fn set_display(&mut self, v: impl std::fmt::Display) {
        use std::io::Write as _;
        self.bytes.clear();
        let _ = write!(self.bytes, "{v}");
        self.null = false;
    }
}

/// Forwards every value to `out` and copies the key field's value into
/// `key`. Either it wraps the key field's writer alone (`field`, the fast
/// way, when the root is a plain record), or the whole datum (`datum`, when
/// the root record carries `options` or `cardinality`) and then follows the
/// record structure to find the key field.
pub(super) struct KeySink<'a, S> {
    out: &'a mut S,
    key: &'a mut KeyBuf,
    /// Capturing: the values seen belong to the key field.
    on: bool,
    /// Tracking mode: records open, the root's current field, the key's.
    depth: u32,
    field: u32,
    target: u32,
}

impl<'a, S: Sink> KeySink<'a, S> {
    /// Around the key field's value only.
    pub fn field(out: &'a mut S, key: &'a mut KeyBuf) -> Self {
        KeySink {
            out,
            key,
            on: true,
            depth: 1,
            field: 0,
            target: 0,
        }
    }

    /// Around a whole datum whose root record has field `target` as key.
    pub fn datum(out: &'a mut S, key: &'a mut KeyBuf, target: u32) -> Self {
        KeySink {
            out,
            key,
            on: false,
            depth: 0,
            field: 0,
            target,
        }
    }
}

impl<S: Sink> Sink for KeySink<'_, S> {
    #[inline]
    fn null(&mut self) {
        if self.on {
            self.key.null = true;
        }
        self.out.null();
    }
    #[inline]
    fn boolean(&mut self, v: bool) {
        if self.on {
            self.key.set(if v { b"true" } else { b"false" });
        }
        self.out.boolean(v);
    }
    #[inline]
    fn int(&mut self, v: i32) {
        if self.on {
            self.key.set_decimal(i64::from(v));
        }
        self.out.int(v);
    }
    #[inline]
    fn long(&mut self, v: i64) {
        if self.on {
            self.key.set_decimal(v);
        }
        self.out.long(v);
    }
    fn float(&mut self, v: f32) {
        if self.on {
            self.key.set_display(v);
        }
        self.out.float(v);
    }
    fn double(&mut self, v: f64) {
        if self.on {
            self.key.set_display(v);
        }
        self.out.double(v);
    }
    #[inline]
    fn bytes(&mut self, v: &[u8]) {
        if self.on {
            self.key.set(v);
        }
        self.out.bytes(v);
    }
    #[inline]
    fn string(&mut self, v: &[u8]) {
        if self.on {
            self.key.set(v);
        }
        self.out.string(v);
    }
    #[inline]
    fn string_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let (on, key) = (self.on, &mut *self.key);
        self.out.string_with(len, |b| {
            fill(b);
            if on {
                key.set(b);
            }
        });
    }
    #[inline]
    fn encoded_string<'t>(
        &mut self,
        avro: &[u8],
        window: &[u8; WINDOW],
        text: impl FnOnce() -> &'t [u8],
    ) {
        if self.on {
            let text = text();
            self.key.set(text);
            self.out.encoded_string(avro, window, || text);
        } else {
            self.out.encoded_string(avro, window, text);
        }
    }
    #[inline]
    fn fixed(&mut self, v: &[u8]) {
        if self.on {
            self.key.set(v);
        }
        self.out.fixed(v);
    }
    fn decimal(&mut self, unscaled: i128, scale: u32, size: Option<usize>) {
        if self.on {
            // The bytes Avro carries: big-endian two's complement.
            let (be, n) = decimal_bytes(unscaled, size);
            self.key.bytes.clear();
            if n > 16 {
                let pad = if unscaled < 0 { 0xff } else { 0 };
                self.key.bytes.resize(n - 16, pad);
                self.key.bytes.extend_from_slice(&be);
            } else {
                self.key.bytes.extend_from_slice(&be[16 - n..]);
            }
            self.key.null = false;
        }
        self.out.decimal(unscaled, scale, size);
    }
    #[inline]
    fn enumeration(&mut self, index: u32, symbol: &str) {
        if self.on {
            self.key.set(symbol.as_bytes());
        }
        self.out.enumeration(index, symbol);
    }
    fn record_start(&mut self) {
        self.depth += 1;
        self.out.record_start();
    }
    fn field(&mut self, name: &str, first: bool) {
        if self.depth == 1 {
            self.field = if first { 0 } else { self.field + 1 };
            self.on = self.field == self.target;
        }
        self.out.field(name, first);
    }
    fn record_end(&mut self) {
        self.depth -= 1;
        if self.depth == 0 {
            self.on = false;
        }
        self.out.record_end();
    }
    fn array_start(&mut self, len: usize) {
        self.out.array_start(len);
    }
    fn item(&mut self, first: bool) {
        self.out.item(first);
    }
    fn array_end(&mut self, len: usize) {
        self.out.array_end(len);
    }
    fn map_start(&mut self, len: usize) {
        self.out.map_start(len);
    }
    fn map_key(&mut self, key: &[u8], first: bool) {
        self.out.map_key(key, first);
    }
    fn map_end(&mut self, len: usize) {
        self.out.map_end(len);
    }
    #[inline]
    fn union_branch(&mut self, index: u32) {
        self.out.union_branch(index);
    }
}
