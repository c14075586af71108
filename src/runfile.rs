//! Run files: one or more streams in one run, written in TOML.
//!
//! ```toml
//! [run]                      # optional: any `produce` flag by its long name
//! duration = "30s"
//! rate = "200k"
//!
//! [[stream]]
//! name = "users"             # default: the topic; `ref` hints name streams
//! topic = "users"
//! schema = "../schemas/users.avsc"   # relative to this file
//! key = "field:user_id"
//! share = 1                  # weight in the run's rate and count
//!
//! [[stream]]
//! topic = "clicks"
//! record_size = 200
//! share = 4
//! headers = { source = "datastorm" }
//! ```
//!
//! Flags on the command line override `[run]`. Flags that describe a single
//! stream (`--topic`, `--schema`, `--key`, ...) cannot be combined with a
//! run file; `--create-topic`, `--partitions` and `--replication-factor` are
//! defaults for its streams.

use datastorm_shards::plan::SchemaEncoding;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A parsed run file.
#[derive(Debug)]
pub struct RunFile {
    /// `[run]` as `--flag value` arguments, sorted by flag name.
    pub run_args: Vec<OsString>,
    pub streams: Vec<StreamEntry>,
    /// The file's folder: schema paths are relative to it.
    pub dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    run: toml::Table,
    #[serde(default)]
    stream: Vec<StreamEntry>,
}

/// One `[[stream]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEntry {
    pub name: Option<String>,
    pub topic: String,
    /// Avro schema with generation hints (relative to the run file).
    pub schema: Option<PathBuf>,
    #[serde(default, deserialize_with = "choice")]
    pub encoding: Option<SchemaEncoding>,
    pub schema_id: Option<u32>,
    pub pool: Option<usize>,
    /// Fixed-size values of this many bytes (when there is no schema).
    pub record_size: Option<usize>,
    pub payload_pool: Option<usize>,
    /// As `--key`.
    pub key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub sequence_header: bool,
    /// Weight in the run's rate and count (default 1).
    pub share: Option<f64>,
    pub create_topic: Option<bool>,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
}

/// A closed choice by one of its names; an unknown name is an error that
/// lists them.
fn choice<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: clap::ValueEnum,
{
    let name = String::deserialize(d)?;
    T::from_str(&name, false).map(Some).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        serde::de::Error::custom(format!(
            "invalid value '{name}': possible values: {}",
            names.join(", ")
        ))
    })
}

/// Flags that describe one stream; a run file describes its streams itself.
pub const STREAM_FLAGS: &[&str] = &[
    "topic",
    "schema",
    "encoding",
    "schema-id",
    "pool",
    "record-size",
    "payload-pool",
    "key",
    "header",
    "sequence-header",
];

impl StreamEntry {
    /// The stream's name: `name`, or else the topic.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.topic)
    }
}

/// Reads and checks a run file. Errors name the file and what is wrong.
pub fn read(path: &Path) -> Result<RunFile, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the run file {shown}: {e}"))?;
    let doc: Document = toml::from_str(&text).map_err(|e| {
        format!(
            "{shown} is not a valid run file: {}",
            e.to_string().trim_end()
        )
    })?;
    if doc.stream.is_empty() {
        return Err(format!(
            "{shown} has no [[stream]] table; a run file describes one or more streams"
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, s) in doc.stream.iter().enumerate() {
        let at = format!("{shown}: stream {} ({})", i + 1, s.name());
        if names.contains(&s.name()) {
            return Err(format!(
                "{at}: another stream has the same name; give each stream its own `name`"
            ));
        }
        names.push(s.name());
        if let Some(share) = s.share {
            if !(share.is_finite() && share > 0.0) {
                return Err(format!("{at}: share must be a number above 0, not {share}"));
            }
        }
        if s.schema.is_some() && (s.record_size.is_some() || s.payload_pool.is_some()) {
            return Err(format!(
                "{at}: a stream has either `schema` or `record_size`/`payload_pool`, not both"
            ));
        }
        if s.schema.is_none() && (s.encoding.is_some() || s.schema_id.is_some() || s.pool.is_some())
        {
            return Err(format!(
                "{at}: `encoding`, `schema_id` and `pool` need a `schema`"
            ));
        }
    }
    for (i, a) in doc.stream.iter().enumerate() {
        for b in &doc.stream[i + 1..] {
            if a.topic == b.topic && (a.sequence_header || b.sequence_header) {
                return Err(format!(
                    "{shown}: streams {} and {} both produce to topic {:?} with sequence \
                     headers; their sequence numbers would collide. Give each its own topic",
                    a.name(),
                    b.name(),
                    a.topic
                ));
            }
        }
    }
    Ok(RunFile {
        run_args: run_args(&doc.run, &shown.to_string())?,
        streams: doc.stream,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    })
}

/// `[run]` entries as command-line arguments.
fn run_args(run: &toml::Table, shown: &str) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for (key, value) in run {
        let flag = key.replace('_', "-");
        if STREAM_FLAGS.contains(&flag.as_str()) {
            return Err(format!(
                "{shown}: [run] {key} describes a stream; put it in the [[stream]] tables"
            ));
        }
        if flag == "run-file" {
            return Err(format!("{shown}: [run] cannot name another run file"));
        }
        let text = match value {
            toml::Value::Boolean(true) => {
                out.push(format!("--{flag}").into());
                continue;
            }
            toml::Value::Boolean(false) => continue,
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s.clone()),
                        toml::Value::Integer(n) => parts.push(n.to_string()),
                        other => {
                            return Err(format!(
                                "{shown}: [run] {key}: list items are strings or numbers, not {}",
                                other.type_str()
                            ))
                        }
                    }
                }
                parts.join(",")
            }
            other => {
                return Err(format!(
                    "{shown}: [run] {key} is a {}; give a string, number, boolean or list",
                    other.type_str()
                ))
            }
        };
        out.push(format!("--{flag}").into());
        out.push(text.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunFile, String> {
        let dir = std::env::temp_dir().join(format!("ds-runfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("t{}.toml", text.len()));
        std::fs::write(&path, text).unwrap();
        let r = read(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"));
        let _ = std::fs::remove_file(&path);
        r
    }

    #[test]
    fn streams_and_run_settings() {
        let f = parse(
            r#"
            [run]
            duration = "5s"
            rate = 1000
            create_topic = true
            bootstrap = ["a:9092", "b:9092"]

            [[stream]]
            topic = "users"
            schema = "users.avsc"
            key = "field:user_id"

            [[stream]]
            name = "clicks"
            topic = "clicks"
            record_size = 50
            share = 3
            headers = { env = "lab" }
            "#,
        )
        .unwrap();
        let args: Vec<String> = f
            .run_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--bootstrap",
                "a:9092,b:9092",
                "--create-topic",
                "--duration",
                "5s",
                "--rate",
                "1000"
            ]
        );
        assert_eq!(f.streams.len(), 2);
        assert_eq!(f.streams[0].name(), "users");
        assert_eq!(f.streams[1].share, Some(3.0));
        assert_eq!(f.streams[1].headers["env"], "lab");
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            parse("[run]\nduration = \"1s\"\n").unwrap_err(),
            "FILE has no [[stream]] table; a run file describes one or more streams"
        );
        assert_eq!(
            parse("[[stream]]\ntopic = \"a\"\n[[stream]]\ntopic = \"a\"\n").unwrap_err(),
            "FILE: stream 2 (a): another stream has the same name; give each stream its own `name`"
        );
        assert_eq!(
            parse("[run]\ntopic = \"x\"\n[[stream]]\ntopic = \"a\"\n").unwrap_err(),
            "FILE: [run] topic describes a stream; put it in the [[stream]] tables"
        );
        assert_eq!(
            parse("[[stream]]\ntopic = \"a\"\nshare = 0\n").unwrap_err(),
            "FILE: stream 1 (a): share must be a number above 0, not 0"
        );
        assert_eq!(
            parse("[[stream]]\ntopic = \"a\"\nschema = \"x.avsc\"\nrecord_size = 5\n").unwrap_err(),
            "FILE: stream 1 (a): a stream has either `schema` or `record_size`/`payload_pool`, not both"
        );
        assert_eq!(
            parse(
                "[[stream]]\ntopic = \"a\"\nsequence_header = true\n\
                 [[stream]]\nname = \"b\"\ntopic = \"a\"\n"
            )
            .unwrap_err(),
            "FILE: streams a and b both produce to topic \"a\" with sequence headers; \
             their sequence numbers would collide. Give each its own topic"
        );
        let unknown = parse("[[stream]]\ntopic = \"a\"\nrecordsize = 5\n").unwrap_err();
        assert!(
            unknown.starts_with("FILE is not a valid run file:") && unknown.contains("recordsize"),
            "{unknown}"
        );
    }
}
