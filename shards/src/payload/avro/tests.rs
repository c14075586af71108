//! Every datum must decode with apache-avro against its schema, match its
//! JSON twin, and respect its hints.

use super::*;
use apache_avro::schema::{ResolvedSchema, Schema};
use apache_avro::types::Value as AV;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as JV};
use std::collections::HashSet;

const NOW: i64 = 1_750_000_000_000;

fn schemas_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// Decodes one Avro binary datum, checking that it uses every byte.
fn decode(schema: &Schema, bytes: &[u8]) -> AV {
    let mut r = bytes;
    let v = apache_avro::from_avro_datum(schema, &mut r, None)
        .unwrap_or_else(|e| panic!("datum does not decode: {e}; bytes {bytes:?}"));
    assert!(r.is_empty(), "{} trailing bytes after the datum", r.len());
    v
}

fn latin1(b: &[u8]) -> JV {
    JV::String(b.iter().map(|&c| char::from(c)).collect())
}

/// apache-avro's value in the JSON shape `JsonSink` writes.
fn to_json(v: &AV, s: &Schema, names: &apache_avro::schema::NamesRef) -> JV {
    let s = match s {
        Schema::Ref { name } => names[name],
        s => s,
    };
    match (v, s) {
        (AV::Union(i, inner), Schema::Union(u)) => {
            to_json(inner, &u.variants()[*i as usize], names)
        }
        (AV::Record(fields), Schema::Record(r)) => JV::Object(
            fields
                .iter()
                .zip(&r.fields)
                .map(|((n, v), f)| (n.clone(), to_json(v, &f.schema, names)))
                .collect(),
        ),
        (AV::Array(items), Schema::Array(a)) => {
            JV::Array(items.iter().map(|v| to_json(v, &a.items, names)).collect())
        }
        (AV::Map(m), Schema::Map(ms)) => JV::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_json(v, &ms.types, names)))
                .collect(),
        ),
        (AV::Decimal(d), Schema::Decimal(ds)) => {
            let bytes: Vec<u8> = d.try_into().unwrap();
            let mut be = [if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                0xff
            } else {
                0
            }; 16];
            let n = bytes.len().min(16);
            be[16 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
            let mut text = Vec::new();
            write::Sink::decimal(
                &mut write::JsonSink(&mut text),
                i128::from_be_bytes(be),
                ds.scale as u32,
                None,
            );
            serde_json::from_slice(&text).unwrap()
        }
        (AV::Null, _) => JV::Null,
        (AV::Boolean(b), _) => json!(b),
        (AV::Int(i) | AV::Date(i) | AV::TimeMillis(i), _) => json!(i),
        (
            AV::Long(i)
            | AV::TimeMicros(i)
            | AV::TimestampMillis(i)
            | AV::TimestampMicros(i)
            | AV::TimestampNanos(i)
            | AV::LocalTimestampMillis(i)
            | AV::LocalTimestampMicros(i)
            | AV::LocalTimestampNanos(i),
            _,
        ) => json!(i),
        (AV::Float(f), _) => serde_json::from_str(&format!("{f}")).unwrap(),
        (AV::Double(f), _) => serde_json::from_str(&format!("{f}")).unwrap(),
        (AV::Bytes(b) | AV::Fixed(_, b), _) => latin1(b),
        (AV::String(s) | AV::Enum(_, s), _) => json!(s),
        (AV::Uuid(u), _) => json!(u.to_string()),
        (AV::Duration(d), _) => {
            let mut b = Vec::new();
            for x in [
                u32::from(d.months()),
                u32::from(d.days()),
                u32::from(d.millis()),
            ] {
                b.extend_from_slice(&x.to_le_bytes());
            }
            latin1(&b)
        }
        (other, s) => panic!("unexpected value {other:?} for {s:?}"),
    }
}

/// Generates `n` data in Avro and JSON from the same seed; checks every
/// datum decodes and both encodings agree. Returns the decoded values.
fn check_schema(c: &CompiledSchema, seed: u64, n: usize) -> Vec<AV> {
    let schema = c.avro_schema();
    let resolved = ResolvedSchema::try_from(schema).unwrap();
    let names = resolved.get_names();
    let mut avro = AvroValues::live(c, Encoding::Avro, seed).with_fixed_now(NOW);
    let mut js = AvroValues::live(c, Encoding::Json, seed).with_fixed_now(NOW);
    let mut out = Vec::with_capacity(n);
    for seq in 0..n as u64 {
        let bytes = avro.value(seq).to_vec();
        assert!(
            bytes.len() <= avro.max_len(),
            "{} > max_len {}",
            bytes.len(),
            avro.max_len()
        );
        let v = decode(schema, &bytes);
        let text = js.value(seq).to_vec();
        let parsed: JV = serde_json::from_slice(&text).unwrap_or_else(|e| {
            panic!(
                "{}: bad JSON {e}: {}",
                c.name(),
                String::from_utf8_lossy(&text)
            )
        });
        let expect = to_json(&v, schema, names);
        assert!(
            same(&parsed, &expect),
            "{}: JSON {parsed} != Avro {expect}",
            c.name()
        );
        out.push(v);
    }
    out
}

/// JSON equality, with floats compared to a relative 1e-12.
fn same(a: &JV, b: &JV) -> bool {
    match (a, b) {
        (JV::Number(x), JV::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1e-300)
        }
        (JV::Array(x), JV::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (JV::Object(x), JV::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn field<'a>(v: &'a AV, name: &str) -> &'a AV {
    match v {
        AV::Record(fs) => &fs.iter().find(|(n, _)| n == name).unwrap().1,
        other => panic!("not a record: {other:?}"),
    }
}

fn unwrap_union(v: &AV) -> &AV {
    match v {
        AV::Union(_, inner) => inner,
        v => v,
    }
}

/// A record with one field `f` of type `ty` and field hints `hints`.
fn one_field(ty: JV, hints: JV) -> String {
    let mut f = json!({"name": "f", "type": ty});
    if !hints.is_null() {
        f["datastorm"] = hints;
    }
    json!({"type": "record", "name": "R", "fields": [f]}).to_string()
}

fn gen_field(ty: JV, hints: JV, n: usize) -> Vec<AV> {
    let c = compile_str("t.avsc", &one_field(ty, hints)).unwrap_or_else(|e| panic!("{e}"));
    check_schema(&c, 42, n)
        .into_iter()
        .map(|v| field(&v, "f").clone())
        .collect()
}

fn err(ty: JV, hints: JV) -> String {
    compile_str("t.avsc", &one_field(ty, hints))
        .expect_err("should not compile")
        .to_string()
}

fn as_i64(v: &AV) -> i64 {
    match unwrap_union(v) {
        AV::Int(i) | AV::Date(i) | AV::TimeMillis(i) => i64::from(*i),
        AV::Long(i) | AV::TimestampMillis(i) | AV::TimestampMicros(i) | AV::TimeMicros(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn as_f64(v: &AV) -> f64 {
    match unwrap_union(v) {
        AV::Float(f) => f64::from(*f),
        AV::Double(f) => *f,
        other => as_i64(other) as f64,
    }
}

fn as_str(v: &AV) -> String {
    match unwrap_union(v) {
        AV::String(s) | AV::Enum(_, s) => s.clone(),
        AV::Uuid(u) => u.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

// ---------------------------------------------------------------- end to end

fn all_schemas() -> Vec<CompiledSchema> {
    let mut streams = Vec::new();
    for e in std::fs::read_dir(schemas_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "avsc") {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            streams.push((stem, std::fs::read_to_string(&p).unwrap()));
        }
    }
    streams.sort();
    assert!(streams.len() >= 6, "schemas/ should hold the six data sets");
    let refs: Vec<(&str, &str)> = streams
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    compile_all(&refs).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_shipped_schema_decodes_and_matches_its_json() {
    for c in all_schemas() {
        let vals = check_schema(&c, 7, 2000);
        assert_eq!(vals.len(), 2000);
    }
}

#[test]
fn shipped_schemas_compile_alone_unless_they_reference_another_stream() {
    for e in std::fs::read_dir(schemas_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "avsc") {
            match load(&p) {
                Ok(_) => {}
                Err(e) => assert!(e.to_string().contains("unknown reference"), "{e}"),
            }
        }
    }
}

#[test]
fn orders_reference_the_users_key_set() {
    let all = all_schemas();
    let users = all.iter().find(|c| c.name() == "users.avsc").unwrap();
    let orders = all.iter().find(|c| c.name() == "orders.avsc").unwrap();
    let user_ids: HashSet<String> = check_schema(users, 1, 20000)
        .iter()
        .map(|v| as_str(field(v, "user_id")))
        .collect();
    let order_users: HashSet<String> = check_schema(orders, 2, 3000)
        .iter()
        .map(|v| as_str(field(v, "user_id")))
        .collect();
    let strays: Vec<_> = order_users.difference(&user_ids).collect();
    // users.user_id has a set of 1000; 20000 users see nearly all of it.
    assert!(strays.len() <= 5, "orders name unknown users: {strays:?}");
}

#[test]
fn orders_line_items_respect_their_hints() {
    let all = all_schemas();
    let orders = all.iter().find(|c| c.name() == "orders.avsc").unwrap();
    for v in check_schema(orders, 3, 1000) {
        let AV::Array(items) = field(&v, "items") else {
            panic!()
        };
        assert!((1..=8).contains(&items.len()), "{} items", items.len());
        for it in items {
            let q = as_i64(field(it, "quantity"));
            assert!((1..=20).contains(&q));
        }
    }
}

#[test]
fn random_schemas_of_every_type_decode_and_match_json() {
    for case in 0..300u64 {
        let mut g = SchemaGen {
            rng: SmallRng::seed_from_u64(case),
            names: 0,
        };
        let schema = g.record(0);
        let text = schema.to_string();
        let c = compile_str("random.avsc", &text)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        let n = 20;
        let a = check_schema(&c, case, n);
        // Determinism: the same seed gives the same bytes.
        let mut x = AvroValues::live(&c, Encoding::Avro, case).with_fixed_now(NOW);
        let mut y = AvroValues::live(&c, Encoding::Avro, case).with_fixed_now(NOW);
        for seq in 0..n as u64 {
            assert_eq!(x.value(seq).to_vec(), y.value(seq).to_vec(), "case {case}");
        }
        assert_eq!(a.len(), n);
    }
}

/// The unrolled program ([`prog`]) makes the walk's draws in the walk's
/// order: the same seed gives the same bytes, for every shipped schema and
/// random schemas of every type.
#[test]
fn unrolled_programs_write_what_the_walk_writes() {
    let mut schemas = all_schemas();
    let shipped = schemas.len();
    for case in 0..300u64 {
        let mut g = SchemaGen {
            rng: SmallRng::seed_from_u64(case),
            names: 0,
        };
        let text = g.record(0).to_string();
        schemas.push(compile_str("random.avsc", &text).unwrap_or_else(|e| panic!("{e}")));
    }
    for (k, c) in schemas.iter().enumerate() {
        let (plan, prog) = (c.plan(), c.inner.prog.as_ref());
        let prog = prog.unwrap_or_else(|| panic!("{}: not unrolled", c.name()));
        let seed = k as u64;
        let mut walk = Cx::new(seed, plan.counters, NOW).with_lag(plan.lagged);
        let mut run = Cx::new(seed, plan.counters, NOW).with_lag(plan.lagged);
        let mut buf = vec![0; c.max_avro_len() + write::SLACK];
        // With a key from each field that can be one: the same bytes, and
        // the same key.
        let names: Vec<String> = match c.avro_schema() {
            Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
            _ => Vec::new(),
        };
        for key in names.iter().filter_map(|n| c.key_field(n).ok()) {
            let mut walk = Cx::new(seed, plan.counters, NOW).with_lag(plan.lagged);
            let mut run = Cx::new(seed, plan.counters, NOW).with_lag(plan.lagged);
            let (mut want_key, mut got_key) = (KeyBuf::default(), KeyBuf::default());
            for i in 0..50 {
                let mut want = Vec::new();
                let mut sink = AvroSink::at(&mut want, 0);
                plan.write_keyed(&mut walk, &mut sink, key.index(), &mut want_key);
                let n = sink.end();
                want.truncate(n);
                let sink = AvroSink::within(&mut buf, 0);
                let end = prog.write(plan, &mut run, sink, Some((key.index(), &mut got_key)));
                let what = format!("{} (schema {k}), key {}, datum {i}", c.name(), key.name());
                assert_eq!(buf[..end], want[..], "{what}");
                assert_eq!(got_key.get(), want_key.get(), "{what}");
            }
        }
        for i in 0..200 {
            let mut want = Vec::new();
            let mut sink = AvroSink::at(&mut want, 0);
            plan.write(&mut walk, &mut sink);
            let n = sink.end();
            want.truncate(n);
            let end = prog.write(plan, &mut run, AvroSink::within(&mut buf, 0), None);
            assert_eq!(
                buf[..end],
                want[..],
                "{} (schema {k}, {shipped} shipped), datum {i}",
                c.name()
            );
        }
    }
    // Recursive schemas are walked: the walk bounds their depth per datum.
    let node = r#"{"type":"record","name":"Node","fields":[
        {"name":"next","type":["null","Node"]}]}"#;
    assert!(!compile_str("node.avsc", node).unwrap().is_unrolled());
}

/// JSON through the program ([`json::JsonProg`] reading back its Avro
/// binary) is the walk's JSON to the byte, keys included, for every shipped
/// schema, random schemas of every type, and the types only the plan can
/// tell apart (a `uuid` fixed from a `uuid` string).
#[test]
fn json_from_the_program_is_the_walks_json() {
    let mut schemas = all_schemas();
    for case in 0..300u64 {
        let mut g = SchemaGen {
            rng: SmallRng::seed_from_u64(1_000 + case),
            names: 0,
        };
        let text = g.record(0).to_string();
        schemas.push(compile_str("random.avsc", &text).unwrap_or_else(|e| panic!("{e}")));
    }
    let extra = r#"{"type":"record","name":"Extra","fields":[
        {"name":"fixed_uuid","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}},
        {"name":"string_uuid","type":{"type":"string","logicalType":"uuid"}},
        {"name":"ints","type":"int","datastorm":{"options":[1,-300,70000]}},
        {"name":"doubles","type":"double","datastorm":{"options":[0.5,1e300,-2.25]}},
        {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B_2"]},
         "datastorm":{"options":["B_2"]}},
        {"name":"tags","type":{"type":"map","values":"long"},
         "datastorm":{"keys":{"options":["x\"y","z"]},"length":{"min":0,"max":3}}},
        {"name":"empty","type":{"type":"record","name":"E","fields":[]}},
        {"name":"big","type":{"type":"fixed","name":"D","size":20,"logicalType":"decimal",
         "precision":38,"scale":3},"datastorm":{"range":{"min":-1e30,"max":1e30}}},
        {"name":"signed","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2},
         "datastorm":{"range":{"min":-500,"max":500}}},
        {"name":"pick","type":{"type":"array","items":["null","double","E"]},
         "datastorm":{"cardinality":4}}
    ]}"#;
    schemas.push(compile_str("extra.avsc", extra).unwrap_or_else(|e| panic!("{e}")));
    for (k, c) in schemas.iter().enumerate() {
        assert!(
            c.inner.json.is_some(),
            "{} (schema {k}): no JSON program",
            c.name()
        );
        let plan = c.plan();
        let names: Vec<String> = match c.avro_schema() {
            Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
            _ => Vec::new(),
        };
        let keys = names.iter().filter_map(|n| c.key_field(n).ok());
        for key in keys.map(Some).chain([None]) {
            let seed = k as u64;
            let mut walk = Cx::new(seed, plan.counters, NOW).with_lag(plan.lagged);
            let mut run = Cx::new(seed, plan.counters, NOW).with_lag(plan.lagged);
            let (mut want_key, mut got_key) = (KeyBuf::default(), KeyBuf::default());
            let mut got = b"before".to_vec();
            for i in 0..60 {
                let mut want = Vec::new();
                let mut sink = JsonSink(&mut want);
                match &key {
                    Some(f) => plan.write_keyed(&mut walk, &mut sink, f.index(), &mut want_key),
                    None => plan.write(&mut walk, &mut sink),
                }
                let end = write_datum(
                    c,
                    &mut run,
                    Encoding::Json,
                    &mut got,
                    6,
                    key.as_ref().map(|f| (f.index(), &mut got_key)),
                );
                let what = format!("{} (schema {k}), key {:?}, datum {i}", c.name(), key);
                assert_eq!(&got[..6], b"before", "{what}");
                assert_eq!(
                    String::from_utf8_lossy(&got[6..end]),
                    String::from_utf8_lossy(&want),
                    "{what}"
                );
                assert_eq!(got_key.get(), want_key.get(), "{what}");
            }
        }
    }
}

/// A seeded generator of schemas covering every Avro type, nested.
struct SchemaGen {
    rng: SmallRng,
    names: u32,
}

impl SchemaGen {
    fn name(&mut self, p: &str) -> String {
        self.names += 1;
        format!("{p}{}", self.names)
    }

    fn record(&mut self, depth: u32) -> JV {
        let n = self.rng.random_range(1..6);
        let fields: Vec<JV> = (0..n)
            .map(|i| {
                let mut f = json!({"name": format!("f{i}"), "type": self.any(depth + 1)});
                if let Some(h) = self.field_hints(&f["type"]) {
                    f["datastorm"] = h;
                }
                f
            })
            .collect();
        json!({"type": "record", "name": self.name("Rec"), "namespace": "t.ns", "fields": fields})
    }

    fn field_hints(&mut self, ty: &JV) -> Option<JV> {
        if !self.rng.random_bool(0.5) {
            return None;
        }
        Some(match ty.as_str() {
            Some("int") | Some("long") => match self.rng.random_range(0..4) {
                0 => json!({"range": {"min": -5, "max": 500}}),
                1 => {
                    // Values of one and two varint bytes, of both signs
                    // (which the program writes from a table of their
                    // bytes), a range that passes two bytes, and one wide
                    // enough for a split table.
                    let ranges = [(1, 100), (-70, 70), (8150, 8250), (0, 20_000)];
                    let (min, max) = ranges[self.rng.random_range(0..ranges.len())];
                    json!({"range": {"min": min, "max": max}, "distribution": "zipf", "exponent": 1.2})
                }
                2 => {
                    json!({"range": {"min": 0, "max": 100}, "distribution": "normal", "mean": 50, "stddev": 10})
                }
                _ => json!({"iteration": {"start": 10, "step": 3, "restart": 40}}),
            },
            Some("double") | Some("float") => json!({"range": {"min": -1.5, "max": 2.5}}),
            Some("string") => match self.rng.random_range(0..5) {
                0 => json!({"regex": "[a-z]{3}-[0-9]{2,4}"}),
                1 => json!({"length": {"min": 0, "max": 3}}),
                2 => json!({"options": ["a", "b\"\\\n", "ü€"]}),
                3 => json!({"fake": "email", "cardinality": 5}),
                _ => json!({"iteration": {"start": 1}, "prefix": "id-"}),
            },
            Some("boolean") => json!({"probability": 0.9}),
            _ if ty.is_array() && ty[0] == "null" => json!({"null_probability": 0.3}),
            _ if ty.get("type") == Some(&json!("array")) => json!({"length": {"min": 0, "max": 2}}),
            _ => json!({"cardinality": 3}),
        })
    }

    fn any(&mut self, depth: u32) -> JV {
        let leaf = depth >= 3;
        let k = self.rng.random_range(0..if leaf { 20 } else { 26 });
        match k {
            0 => json!("null"),
            1 => json!("boolean"),
            2 => json!("int"),
            3 => json!("long"),
            4 => json!("float"),
            5 => json!("double"),
            6 => json!("bytes"),
            7 | 8 => json!("string"),
            9 => json!({"type": "int", "logicalType": "date"}),
            10 => json!({"type": "int", "logicalType": "time-millis"}),
            11 => json!({"type": "long", "logicalType": "time-micros"}),
            12 => json!({"type": "long", "logicalType": "timestamp-millis"}),
            13 => json!({"type": "long", "logicalType": "timestamp-micros"}),
            14 => json!({"type": "string", "logicalType": "uuid"}),
            15 => {
                let p = self.rng.random_range(1..=38);
                let s = self.rng.random_range(0..=p);
                json!({"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s})
            }
            16 => {
                let size = self.rng.random_range(1..=20u32);
                let max_p = ((8.0 * f64::from(size) - 1.0) * 2f64.log10()).floor() as u32;
                let p = self.rng.random_range(1..=max_p.clamp(1, 38));
                json!({"type": "fixed", "name": self.name("Dec"), "size": size,
                       "logicalType": "decimal", "precision": p, "scale": p / 2})
            }
            17 => {
                json!({"type": "fixed", "name": self.name("Fx"), "size": self.rng.random_range(0..9)})
            }
            18 => {
                let n = self.rng.random_range(1..5);
                let symbols: Vec<String> = (0..n).map(|i| format!("S{i}")).collect();
                json!({"type": "enum", "name": self.name("En"), "symbols": symbols})
            }
            19 => {
                json!({"type": "fixed", "name": self.name("Dur"), "size": 12, "logicalType": "duration"})
            }
            20 | 21 => self.record(depth),
            22 => json!({"type": "array", "items": self.any(depth + 1)}),
            23 => json!({"type": "map", "values": self.any(depth + 1)}),
            24 => json!(["null", self.non_union(depth)]),
            _ => json!(["null", "string", "long", self.record(depth)]),
        }
    }

    fn non_union(&mut self, depth: u32) -> JV {
        loop {
            let t = self.any(depth + 1);
            if !t.is_array() && t != json!("null") {
                return t;
            }
        }
    }
}

#[test]
fn recursive_schemas_terminate() {
    let s = r#"{"type":"record","name":"Node","fields":[
        {"name":"v","type":"int"},
        {"name":"next","type":["null","Node"],"datastorm":{"null_probability":0.1}},
        {"name":"kids","type":{"type":"array","items":"Node"},"datastorm":{"length":{"min":0,"max":3}}}]}"#;
    let c = compile_str("node.avsc", s).unwrap();
    let start = std::time::Instant::now();
    check_schema(&c, 1, 5);
    assert!(start.elapsed().as_secs() < 20, "recursion is bounded");
}

// ---------------------------------------------------------------- encodings

#[test]
fn confluent_framing_is_magic_byte_and_big_endian_id() {
    let c = compile_str("t.avsc", &one_field(json!("long"), JV::Null)).unwrap();
    let mut plain = AvroValues::live(&c, Encoding::Avro, 5);
    let mut framed = AvroValues::live(
        &c,
        Encoding::Confluent {
            schema_id: 0x0102_0304,
        },
        5,
    );
    for seq in 0..10 {
        let p = plain.value(seq).to_vec();
        let f = framed.value(seq);
        assert_eq!(&f[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&f[5..], &p[..]);
    }
    assert_eq!(framed.max_len(), plain.max_len() + 5);
}

#[test]
fn pooled_values_cycle_and_match_live_ones() {
    let c = compile_str("t.avsc", &one_field(json!("string"), JV::Null)).unwrap();
    let mut live = AvroValues::live(&c, Encoding::Avro, 9).with_fixed_now(NOW);
    let mut pool = AvroValues::pooled(&c, Encoding::Avro, 9, 4).with_fixed_now(NOW);
    assert!(pool.is_pooled());
    let first: Vec<Vec<u8>> = (0..4).map(|s| live.value(s).to_vec()).collect();
    for seq in 0..12 {
        assert_eq!(pool.value(seq), &first[(seq % 4) as usize][..]);
    }
    assert_eq!(pool.max_len(), first.iter().map(Vec::len).max().unwrap());
}

#[test]
fn different_seeds_give_different_data() {
    let c = compile_str("t.avsc", &one_field(json!("string"), JV::Null)).unwrap();
    let mut a = AvroValues::live(&c, Encoding::Avro, 1);
    let mut b = AvroValues::live(&c, Encoding::Avro, 2);
    assert_ne!(a.value(0).to_vec(), b.value(0).to_vec());
}

#[test]
fn sample_json_gives_objects() {
    let c = compile_str("t.avsc", &one_field(json!("int"), JV::Null)).unwrap();
    let s = sample_json(&c, 1, 3);
    assert_eq!(s.len(), 3);
    assert!(s.iter().all(|v| v["f"].is_i64()));
}

// ---------------------------------------------------------------- hints

#[test]
fn ranges_hold_for_every_distribution() {
    for dist in ["uniform", "normal", "zipf"] {
        let vals = gen_field(
            json!("long"),
            json!({"range": {"min": 10, "max": 20}, "distribution": dist}),
            2000,
        );
        assert!(
            vals.iter().all(|v| (10..=20).contains(&as_i64(v))),
            "{dist}"
        );
        let distinct: HashSet<i64> = vals.iter().map(as_i64).collect();
        assert!(distinct.len() > 3, "{dist}: {distinct:?}");
    }
    let vals = gen_field(
        json!("double"),
        json!({"range": {"min": -1.0, "max": 1.0}, "distribution": "normal", "mean": 0.5, "stddev": 2.0}),
        2000,
    );
    assert!(vals.iter().all(|v| (-1.0..=1.0).contains(&as_f64(v))));
}

#[test]
fn normal_centres_on_its_mean_and_zipf_favours_the_minimum() {
    let vals = gen_field(
        json!("int"),
        json!({"range": {"min": 0, "max": 1000}, "distribution": "normal", "mean": 300, "stddev": 20}),
        4000,
    );
    let mean = vals.iter().map(as_f64).sum::<f64>() / vals.len() as f64;
    assert!((mean - 300.0).abs() < 3.0, "mean {mean}");
    let vals = gen_field(
        json!("int"),
        json!({"range": {"min": 5, "max": 1000}, "distribution": "zipf", "exponent": 1.5}),
        4000,
    );
    let fives = vals.iter().filter(|v| as_i64(v) == 5).count();
    let sixes = vals.iter().filter(|v| as_i64(v) == 6).count();
    assert!(fives > 1000 && fives > 2 * sixes, "{fives} {sixes}");
}

#[test]
fn options_and_weights() {
    let vals = gen_field(
        json!("string"),
        json!({"options": [{"value": "a", "weight": 9}, {"value": "b", "weight": 1}]}),
        4000,
    );
    let a = vals.iter().filter(|v| as_str(v) == "a").count();
    assert!(vals
        .iter()
        .all(|v| ["a", "b"].contains(&as_str(v).as_str())));
    assert!((3400..3800).contains(&a), "{a}");
    let vals = gen_field(
        json!({"type": "enum", "name": "E", "symbols": ["X", "Y", "Z"]}),
        json!({"options": [{"value": "Z", "weight": 1}, {"value": "Y", "weight": 0}]}),
        200,
    );
    assert!(vals.iter().all(|v| as_str(v) == "Z"));
    let vals = gen_field(json!(["null", "long"]), json!({"options": [null, 7]}), 200);
    assert!(vals
        .iter()
        .all(|v| matches!(unwrap_union(v), AV::Null | AV::Long(7))));
}

#[test]
fn enums_without_hints_use_every_symbol() {
    let vals = gen_field(
        json!({"type": "enum", "name": "E", "symbols": ["X", "Y", "Z"]}),
        JV::Null,
        300,
    );
    let seen: HashSet<String> = vals.iter().map(as_str).collect();
    assert_eq!(seen.len(), 3);
}

#[test]
fn regex_and_length_and_prefix() {
    let re = regex_lite_match("^[A-Z]{2}-[0-9]{3}$");
    for v in gen_field(json!("string"), json!({"regex": "[A-Z]{2}-[0-9]{3}"}), 500) {
        assert!(re(&as_str(&v)), "{}", as_str(&v));
    }
    for v in gen_field(
        json!("string"),
        json!({"length": {"min": 2, "max": 4}, "prefix": "p-"}),
        500,
    ) {
        let s = as_str(&v);
        assert!(s.starts_with("p-") && (4..=6).contains(&s.len()), "{s}");
    }
    for v in gen_field(json!("bytes"), json!({"length": 3}), 100) {
        assert!(matches!(v, AV::Bytes(b) if b.len() == 3));
    }
    for v in gen_field(
        json!({"type": "array", "items": "int"}),
        json!({"length": {"min": 1, "max": 2}}),
        100,
    ) {
        assert!(matches!(v, AV::Array(a) if (1..=2).contains(&a.len())));
    }
    for v in gen_field(
        json!({"type": "map", "values": "int"}),
        json!({"length": 2, "keys": {"regex": "k[0-9]{6}"}}),
        100,
    ) {
        let AV::Map(m) = v else { panic!() };
        assert!(m.len() <= 2 && m.keys().all(|k| k.starts_with('k') && k.len() == 7));
    }
}

/// A tiny matcher for the patterns these tests use: `^[A-Z]{2}-[0-9]{3}$`.
fn regex_lite_match(_pattern: &str) -> impl Fn(&str) -> bool {
    |s: &str| {
        let b = s.as_bytes();
        b.len() == 6
            && b[..2].iter().all(u8::is_ascii_uppercase)
            && b[2] == b'-'
            && b[3..].iter().all(u8::is_ascii_digit)
    }
}

#[test]
fn iteration_sequences_restart_and_interleave_across_shards() {
    let c = compile_str(
        "t.avsc",
        &one_field(
            json!("long"),
            json!({"iteration": {"start": 5, "step": 10, "restart": 40}}),
        ),
    )
    .unwrap();
    let got: Vec<i64> = check_schema(&c, 1, 8)
        .iter()
        .map(|v| as_i64(field(v, "f")))
        .collect();
    assert_eq!(got, [5, 15, 25, 35, 5, 15, 25, 35]);
    let c = compile_str(
        "t.avsc",
        &one_field(
            json!("string"),
            json!({"iteration": {"start": 1}, "prefix": "user-"}),
        ),
    )
    .unwrap();
    let mut v = AvroValues::live(&c, Encoding::Json, 0).with_shard(1, 3);
    let got: Vec<String> = (0..3)
        .map(|s| String::from_utf8(v.value(s).to_vec()).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            r#"{"f":"user-2"}"#,
            r#"{"f":"user-5"}"#,
            r#"{"f":"user-8"}"#
        ]
    );
    let vals = gen_field(
        json!("double"),
        json!({"iteration": {"start": 0.5, "step": 0.25}}),
        3,
    );
    assert_eq!(
        vals.iter().map(as_f64).collect::<Vec<_>>(),
        [0.5, 0.75, 1.0]
    );
}

#[test]
fn null_probability_is_roughly_kept() {
    let vals = gen_field(
        json!(["null", "string"]),
        json!({"null_probability": 0.2, "length": 3}),
        5000,
    );
    let nulls = vals
        .iter()
        .filter(|v| matches!(unwrap_union(v), AV::Null))
        .count();
    assert!((850..1150).contains(&nulls), "{nulls}");
    assert!(vals.iter().all(|v| match unwrap_union(v) {
        AV::String(s) => s.len() == 3,
        AV::Null => true,
        _ => false,
    }));
    let vals = gen_field(
        json!(["null", "int", "string"]),
        json!({"weights": [0, 1, 0]}),
        100,
    );
    assert!(vals.iter().all(|v| matches!(unwrap_union(v), AV::Int(_))));
}

#[test]
fn cardinality_bounds_distinct_values_and_is_the_same_on_every_shard() {
    let c = compile_str(
        "t.avsc",
        &one_field(json!("string"), json!({"cardinality": 7})),
    )
    .unwrap();
    let a: HashSet<String> = check_schema(&c, 1, 2000)
        .iter()
        .map(|v| as_str(field(v, "f")))
        .collect();
    let b: HashSet<String> = check_schema(&c, 2, 2000)
        .iter()
        .map(|v| as_str(field(v, "f")))
        .collect();
    assert_eq!(a.len(), 7);
    assert_eq!(a, b, "another shard seed draws from the same set");
    // The dataset seed changes the set.
    let d = compile_str_seeded(
        "t.avsc",
        &one_field(json!("string"), json!({"cardinality": 7})),
        99,
    )
    .unwrap();
    let e: HashSet<String> = check_schema(&d, 1, 500)
        .iter()
        .map(|v| as_str(field(v, "f")))
        .collect();
    assert!(a.is_disjoint(&e));
}

#[test]
fn fakes_and_logical_types_look_right() {
    for v in gen_field(json!("string"), json!({"fake": "email"}), 50) {
        assert!(as_str(&v).contains('@'));
    }
    for v in gen_field(json!("string"), json!({"fake": "ipv4"}), 50) {
        assert!(
            as_str(&v).parse::<std::net::Ipv4Addr>().is_ok(),
            "{}",
            as_str(&v)
        );
    }
    for v in gen_field(json!("string"), json!({"fake": "ipv6"}), 50) {
        assert!(
            as_str(&v).parse::<std::net::Ipv6Addr>().is_ok(),
            "{}",
            as_str(&v)
        );
    }
    for kind in FAKE_KINDS {
        let vals = gen_field(json!("string"), json!({"fake": kind}), 5);
        assert!(vals.iter().all(|v| !as_str(v).is_empty()), "{kind}");
    }
    for v in gen_field(
        json!({"type": "string", "logicalType": "uuid"}),
        JV::Null,
        50,
    ) {
        let AV::Uuid(u) = v else { panic!("{v:?}") };
        assert_eq!(u.get_version_num(), 4);
    }
    for v in gen_field(
        json!({"type": "long", "logicalType": "timestamp-millis"}),
        json!({"now": {"jitter_ms": 100}}),
        50,
    ) {
        assert!((as_i64(&v) - NOW).abs() <= 100);
    }
    for v in gen_field(
        json!({"type": "long", "logicalType": "timestamp-micros"}),
        JV::Null,
        50,
    ) {
        assert!((as_i64(&v) - NOW * 1000).abs() <= 1_000_000);
    }
    for v in gen_field(
        json!({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}),
        json!({"range": {"min": 1.5, "max": 9.5}}),
        100,
    ) {
        let AV::Decimal(d) = v else { panic!() };
        let b: Vec<u8> = (&d).try_into().unwrap();
        let mut x: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        for byte in b {
            x = (x << 8) | i64::from(byte);
        }
        assert!((150..=950).contains(&x), "{x}");
    }
}

#[test]
fn references_need_a_set_among_the_streams_compiled_together() {
    let users = r#"{"type":"record","name":"U","fields":[{"name":"id","type":"long","datastorm":{"cardinality":50,"range":{"min":1,"max":1000000}}}]}"#;
    let orders = r#"{"type":"record","name":"O","fields":[{"name":"uid","type":"long","datastorm":{"ref":"users.id"}}]}"#;
    let all = compile_all(&[("users", users), ("orders", orders)]).unwrap();
    let ids: HashSet<i64> = check_schema(&all[0], 1, 3000)
        .iter()
        .map(|v| as_i64(field(v, "id")))
        .collect();
    let refs: HashSet<i64> = check_schema(&all[1], 2, 3000)
        .iter()
        .map(|v| as_i64(field(v, "uid")))
        .collect();
    assert_eq!(ids.len(), 50);
    assert_eq!(ids, refs);
    assert_eq!(
        compile_str("orders.avsc", orders).unwrap_err().to_string(),
        "orders.avsc: uid: unknown reference \"users.id\": no field with a `cardinality` hint \
         by that name among the streams compiled together (orders)"
    );
    let strings = r#"{"type":"record","name":"O","fields":[{"name":"uid","type":"string","datastorm":{"ref":"users.id"}}]}"#;
    assert_eq!(
        compile_all(&[("users", users), ("orders", strings)])
            .unwrap_err()
            .to_string(),
        "orders.avsc: uid: reference \"users.id\" has type long but this field has type string"
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn hint_errors_name_file_path_and_reason() {
    let cases: Vec<(JV, JV, &str)> = vec![
        (json!("long"), json!({"rang": {}}), "t.avsc: f: unknown field `rang`, expected one of `range`, `distribution`, `mean`, `stddev`, `exponent`, `options`, `regex`, `length`, `iteration`, `prefix`, `null_probability`, `weights`, `cardinality`, `fake`, `now`, `ref`, `keys`, `probability`"),
        (json!("long"), json!({"range": {"min": 1, "max": 2, "mx": 3}}), "t.avsc: f: range: unknown field `mx`, expected `min` or `max`"),
        (json!("long"), json!({"keys": {"range": {"min": "a", "max": 2}}}), "t.avsc: f: keys.range.min: invalid type: string \"a\""),
        (json!("long"), json!({"range": {"min": 5, "max": 1}}), "t.avsc: f: range.min (5) is greater than range.max (1)"),
        (json!("int"), json!({"range": {"min": 0, "max": 3000000000u64}}), "t.avsc: f: range.max (3000000000) is out of range for int"),
        (json!("int"), json!({"range": {"min": 0.5, "max": 3}}), "t.avsc: f: range.min must be a whole number for int, got 0.5"),
        (json!("string"), json!({"regex": "[a-"}), "t.avsc: f: `regex` \"[a-\" does not compile: "),
        (json!("string"), json!({"options": [1, 2]}), "t.avsc: f: option 1 does not fit string: expected a string, got 1"),
        (json!("string"), json!({"length": {"min": -1, "max": 3}}), "t.avsc: f: length.min: must not be negative, got -1"),
        (json!(["null", "string"]), json!({"null_probability": 1.5}), "t.avsc: f: `null_probability` must be between 0 and 1, got 1.5"),
        (json!("long"), json!({"regex": "a"}), "t.avsc: f: hint `regex` does not apply to long (it applies to string)"),
        (json!("string"), json!({"range": {"min": 1, "max": 2}}), "t.avsc: f: hint `range` does not apply to string (it applies to int, long, float, double, decimal and date/time types)"),
        (json!("string"), json!({"fake": "nope"}), "t.avsc: f: fake: unknown variant `nope`, expected one of `name`, "),
        (json!("string"), json!({"cardinality": 0}), "t.avsc: f: `cardinality` must be at least 1"),
        (json!("long"), json!({"mean": 3}), "t.avsc: f: `mean` and `stddev` need \"distribution\": \"normal\""),
        (json!("long"), json!({"distribution": "zipf"}), "t.avsc: f: `distribution` needs a `range`"),
        (json!(["null", "int", "string"]), json!({"weights": [1, 2]}), "t.avsc: f: `weights` has 2 entries for a union of 3 types"),
        (json!(["int", "string"]), json!({"null_probability": 0.5}), "t.avsc: f: `null_probability` needs a union with \"null\""),
        (json!({"type": "enum", "name": "E", "symbols": ["A"]}), json!({"options": ["B"]}), "t.avsc: f: option \"B\" does not fit enum: \"B\" is not one of the symbols A"),
        (json!("string"), json!({"regex": "a", "length": 3}), "t.avsc: f: `regex` cannot be combined with `length`"),
        (json!("long"), json!({"iteration": {"step": 0}}), "t.avsc: f: iteration.step must not be 0"),
        (json!("long"), json!({"ref": "nodot"}), "t.avsc: f: `ref` must look like \"stream.field\", got \"nodot\""),
        (json!({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}), json!({"range": {"min": 0, "max": 100}}), "t.avsc: f: range bound 100 does not fit decimal(4, 2)"),
        (json!({"type": "fixed", "name": "F", "size": 2, "logicalType": "decimal", "precision": 9}), JV::Null, "t.avsc: f: decimal precision 9 does not fit in fixed size 2 (at most 4)"),
        (json!("long"), json!("fast"), "t.avsc: f: `datastorm` must be an object, got \"fast\""),
        (json!("long"), json!({"ref": "s.f", "range": {"min": 1, "max": 2}}), "t.avsc: f: `ref` cannot be combined with `range`"),
        (json!("long"), json!({"options": [1], "range": {"min": 1, "max": 2}}), "t.avsc: f: `options` cannot be combined with `range`"),
        (json!(["int", "string"]), json!({"length": {"min": 1, "max": 2}}), "t.avsc: f: hint `length` on a union of several types: put it on the branch type instead"),
        (json!(["null", "int"]), json!({"weights": [1, 1], "null_probability": 0.5}), "t.avsc: f: `weights` cannot be combined with `null_probability`"),
        (json!(["null"]), json!({"null_probability": 0}), "t.avsc: f: the union's weights leave no branch to pick"),
    ];
    let mut bad = Vec::new();
    for (ty, hints, want) in cases {
        let got = err(ty.clone(), hints.clone());
        if !got.starts_with(want) {
            bad.push(format!("for {ty} {hints}:\n got: {got}\nwant: {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn nested_paths_in_errors() {
    let s = r#"{"type":"record","name":"O","fields":[{"name":"items","type":{"type":"array","items":
        {"type":"record","name":"I","fields":[{"name":"price","type":"double","datastorm":{"range":{"min":5,"max":1}}}]}}}]}"#;
    assert_eq!(
        compile_str("orders.avsc", s).unwrap_err().to_string(),
        "orders.avsc: items[].price: range.min (5) is greater than range.max (1)"
    );
    let s = r#"{"type":"record","name":"O","fields":[{"name":"m","type":{"type":"map","values":{"type":"int","datastorm":{"probability":0.5}}}}]}"#;
    assert_eq!(
        compile_str("x.avsc", s).unwrap_err().to_string(),
        "x.avsc: m{}: hint `probability` does not apply to int (it applies to boolean)"
    );
}

#[test]
fn bad_json_and_bad_avro_and_missing_files() {
    let e = compile_str("a.avsc", "{").unwrap_err().to_string();
    assert!(e.starts_with("a.avsc: not valid JSON: "), "{e}");
    let e = compile_str("a.avsc", r#"{"type":"record","name":"R"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("a.avsc: not a valid Avro schema: "), "{e}");
    let e = load(Path::new("/nonexistent/x.avsc"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/x.avsc: cannot read the schema file: "),
        "{e}"
    );
}

// ---------------------------------------------------------------- keys

/// The key form of a decoded field value: what `--key field:NAME` promises.
fn key_form(v: &AV) -> Option<Vec<u8>> {
    let text = |s: String| Some(s.into_bytes());
    match v {
        AV::Union(_, inner) => key_form(inner),
        AV::Null => None,
        AV::String(s) | AV::Enum(_, s) => text(s.clone()),
        AV::Uuid(u) => text(u.to_string()),
        AV::Boolean(b) => text(b.to_string()),
        AV::Int(i) | AV::Date(i) | AV::TimeMillis(i) => text(i.to_string()),
        AV::Long(i)
        | AV::TimeMicros(i)
        | AV::TimestampMillis(i)
        | AV::TimestampMicros(i)
        | AV::TimestampNanos(i)
        | AV::LocalTimestampMillis(i)
        | AV::LocalTimestampMicros(i)
        | AV::LocalTimestampNanos(i) => text(i.to_string()),
        AV::Float(f) => text(f.to_string()),
        AV::Double(f) => text(f.to_string()),
        AV::Bytes(b) | AV::Fixed(_, b) => Some(b.clone()),
        AV::Decimal(d) => Some(d.try_into().unwrap()),
        AV::Duration(d) => Some(
            [
                u32::from(d.months()),
                u32::from(d.days()),
                u32::from(d.millis()),
            ]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        ),
        other => panic!("no key form for {other:?}"),
    }
}

/// Checks `n` keyed records of `c` in every encoding against the decoded
/// Avro field; returns how many keys were null.
fn check_keys(c: &CompiledSchema, field_name: &str, seed: u64, n: u64) -> usize {
    let key = c.key_field(field_name).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.name(), field_name);
    let keyed = |enc| {
        AvroValues::live(c, enc, seed)
            .with_fixed_now(NOW)
            .with_key(key.clone())
    };
    let mut avro = keyed(Encoding::Avro);
    let mut conf = keyed(Encoding::Confluent { schema_id: 3 });
    let mut js = keyed(Encoding::Json);
    let mut plain = AvroValues::live(c, Encoding::Avro, seed).with_fixed_now(NOW);
    let mut nulls = 0;
    for seq in 0..n {
        let r = avro.record(seq);
        let (value, key) = (r.value.to_vec(), r.key.map(<[u8]>::to_vec));
        assert_eq!(value, plain.value(seq), "a key does not change the data");
        let want = key_form(field(&decode(c.avro_schema(), &value), field_name));
        assert_eq!(key, want, "{} {field_name} record {seq}", c.name());
        let r = conf.record(seq);
        assert_eq!(&r.value[5..], &value[..]);
        assert_eq!(r.key.map(<[u8]>::to_vec), want, "confluent");
        assert_eq!(js.record(seq).key.map(<[u8]>::to_vec), want, "json");
        nulls += usize::from(key.is_none());
    }
    nulls
}

#[test]
fn keys_are_the_key_form_of_a_field_of_the_same_record() {
    let all = all_schemas();
    let users = all.iter().find(|c| c.name() == "users.avsc").unwrap();
    let orders = all.iter().find(|c| c.name() == "orders.avsc").unwrap();
    for f in [
        "user_id",
        "first_name",
        "age",
        "country_code",
        "plan",
        "marketing_opt_in",
        "registered_at",
    ] {
        assert_eq!(check_keys(users, f, 11, 300), 0, "{f}");
    }
    for f in [
        "order_id",
        "user_id",
        "created_at",
        "status",
        "total",
        "currency",
        "gift",
    ] {
        assert_eq!(check_keys(orders, f, 12, 300), 0, "{f}");
    }
    // Unions with null: a null key when the null branch is drawn.
    let nulls = check_keys(users, "phone", 13, 1000);
    assert!((300..500).contains(&nulls), "phone: {nulls} null keys");
    let nulls = check_keys(orders, "coupon", 14, 1000);
    assert!((700..900).contains(&nulls), "coupon: {nulls} null keys");
}

#[test]
fn keys_of_every_keyable_type() {
    let types = [
        json!("int"),
        json!("long"),
        json!("float"),
        json!("double"),
        json!("boolean"),
        json!("bytes"),
        json!("string"),
        json!({"type": "fixed", "name": "F", "size": 5}),
        json!({"type": "enum", "name": "E", "symbols": ["A", "B"]}),
        json!({"type": "int", "logicalType": "date"}),
        json!({"type": "long", "logicalType": "timestamp-micros"}),
        json!({"type": "string", "logicalType": "uuid"}),
        json!({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}),
        json!({"type": "fixed", "name": "D", "size": 6, "logicalType": "decimal", "precision": 12, "scale": 3}),
        json!({"type": "fixed", "name": "Du", "size": 12, "logicalType": "duration"}),
        json!(["null", "long", "string"]),
        json!("null"),
    ];
    for ty in types {
        let c = compile_str("t.avsc", &one_field(ty.clone(), JV::Null)).unwrap();
        check_keys(&c, "f", 5, 200);
    }
    // Hinted values go through the same writer calls.
    let c = compile_str(
        "t.avsc",
        &one_field(
            json!("long"),
            json!({"cardinality": 4, "range": {"min": -9, "max": 9}}),
        ),
    )
    .unwrap();
    check_keys(&c, "f", 5, 200);
}

#[test]
fn keys_from_a_root_record_with_hints() {
    // A root with `cardinality` is written through the set, not field by
    // field: the key is found by following the record.
    let s = json!({"type": "record", "name": "R", "datastorm": {"cardinality": 3}, "fields": [
        {"name": "a", "type": {"type": "record", "name": "In", "fields": [{"name": "x", "type": "int"}]}},
        {"name": "b", "type": "string"},
        {"name": "c", "type": ["null", "int"]}]});
    let c = compile_str("t.avsc", &s.to_string()).unwrap();
    check_keys(&c, "b", 1, 100);
    check_keys(&c, "c", 1, 100);
    let s = json!({"type": "record", "name": "R", "datastorm": {"options": [{"n": 1, "s": "x"}, {"n": 2, "s": "y"}]},
        "fields": [{"name": "n", "type": "int"}, {"name": "s", "type": "string"}]});
    let c = compile_str("t.avsc", &s.to_string()).unwrap();
    check_keys(&c, "s", 1, 50);
}

#[test]
fn pooled_keys_match_live_keys() {
    let all = all_schemas();
    let orders = all.iter().find(|c| c.name() == "orders.avsc").unwrap();
    for f in ["order_id", "coupon", "total"] {
        let key = orders.key_field(f).unwrap();
        let mut live = AvroValues::live(orders, Encoding::Avro, 21)
            .with_fixed_now(NOW)
            .with_key(key.clone());
        let mut pool = AvroValues::pooled(orders, Encoding::Avro, 21, 40)
            .with_key(key)
            .with_fixed_now(NOW);
        let first: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..40)
            .map(|s| {
                let r = live.record(s);
                (r.value.to_vec(), r.key.map(<[u8]>::to_vec))
            })
            .collect();
        for seq in 0..120 {
            let r = pool.record(seq);
            let (v, k) = &first[(seq % 40) as usize];
            assert_eq!(r.value, &v[..], "{f} {seq}");
            assert_eq!(r.key, k.as_deref(), "{f} {seq}");
        }
    }
    // A source without a key gives none.
    let mut plain = AvroValues::pooled(orders, Encoding::Avro, 21, 4);
    assert!(plain.record(0).key.is_none());
}

#[test]
fn key_field_errors_name_the_field_and_the_fix() {
    let all = all_schemas();
    let orders = all.iter().find(|c| c.name() == "orders.avsc").unwrap();
    let err = |c: &CompiledSchema, f: &str| c.key_field(f).unwrap_err().to_string();
    const NEEDS: &str = "a key needs a string, enum, number, boolean, bytes or fixed field";
    assert_eq!(
        err(orders, "foo"),
        "--key field:foo: orders.avsc has no top-level field \"foo\" (its fields: order_id, \
         user_id, created_at, status, items, total, currency, shipping_address, coupon, gift)"
    );
    assert_eq!(
        err(orders, "shipping_address.city"),
        "--key field:shipping_address.city: orders.avsc has no top-level field \
         \"shipping_address.city\" (its fields: order_id, user_id, created_at, status, items, \
         total, currency, shipping_address, coupon, gift)"
    );
    assert_eq!(
        err(orders, "items"),
        format!("--key field:items: field \"items\" of orders.avsc is an array; {NEEDS}")
    );
    assert_eq!(
        err(orders, "shipping_address"),
        format!(
            "--key field:shipping_address: field \"shipping_address\" of orders.avsc is a \
             record; {NEEDS}"
        )
    );
    let s = json!({"type": "record", "name": "R", "fields": [
        {"name": "m", "type": {"type": "map", "values": "int"}},
        {"name": "r", "type": {"type": "record", "name": "In", "fields": [{"name": "x", "type": "int"}]}},
        {"name": "again", "type": "In"},
        {"name": "u", "type": ["null", "string", "In"]},
        {"name": "ua", "type": ["null", {"type": "array", "items": "int"}]}]});
    let c = compile_str("t.avsc", &s.to_string()).unwrap();
    assert_eq!(
        err(&c, "m"),
        format!("--key field:m: field \"m\" of t.avsc is a map; {NEEDS}")
    );
    assert_eq!(
        err(&c, "again"),
        format!("--key field:again: field \"again\" of t.avsc is a record; {NEEDS}")
    );
    assert_eq!(
        err(&c, "u"),
        format!("--key field:u: field \"u\" of t.avsc is a union with a record branch; {NEEDS}")
    );
    assert_eq!(
        err(&c, "ua"),
        format!("--key field:ua: field \"ua\" of t.avsc is a union with an array branch; {NEEDS}")
    );
    let c = compile_str("t.avsc", r#""string""#).unwrap();
    assert_eq!(
        err(&c, "id"),
        "--key field:id: t.avsc is a string, not a record; a key field needs a record schema"
    );
}

#[test]
fn longs_are_zig_zag_varints() {
    // The reference: the Avro spec's loop.
    fn reference(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        out
    }
    let mut values = vec![0, 1, -1, 63, -64, 64, -65, i64::MAX, i64::MIN];
    for shift in 0..64 {
        let p = 1i64 << shift;
        for d in [-1, 0, 1] {
            values.extend([p.wrapping_add(d), p.wrapping_neg().wrapping_add(d)]);
        }
    }
    for v in values {
        let mut out = vec![7];
        write::put_long(&mut out, v);
        assert_eq!(out[1..], reference(v), "{v}");
        let mut out = vec![7];
        write::put_small(&mut out, v);
        assert_eq!(out[1..], reference(v), "{v}");
    }
}

#[test]
fn prefixes_that_need_escaping_in_json() {
    // Strings generated in place get their prefix escaped after the fact.
    for hints in [
        json!({"prefix": "a\"b\\c\n\u{1}é-", "iteration": {"start": -3}}),
        json!({"prefix": "\"q\"", "length": {"min": 0, "max": 4}}),
        json!({"prefix": "\t", "fake": "uuid"}),
        json!({"prefix": "\"", "fake": "ipv6"}),
        json!({"prefix": "\"", "fake": "city"}),
    ] {
        let want = hints["prefix"].as_str().unwrap().to_owned();
        for v in gen_field(json!("string"), hints, 50) {
            assert!(as_str(&v).starts_with(&want), "{v:?}");
        }
    }
}
