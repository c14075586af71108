//! Run files: one or more streams in one run, written in TOML.
//!
//! ```toml
//! [run]                      # optional: `produce` flags by their long names
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
//! `[run]` is read into the same settings as the flags, with the flags'
//! own value parsers; flags on the command line override it. Flags that describe a single
//! stream (`--topic`, `--schema`, `--key`, ...) cannot be combined with a
//! run file; `--create-topic`, `--partitions` and `--replication-factor` are
//! defaults for its streams.

use crate::cli::knobs::KnobArgs;
use crate::cli::produce::ProduceArgs;
use crate::cli::security::SecurityArgs;
use crate::cli::settings::{arg_ids, from_table};
use crate::cli::workload::WorkloadArgs;
use clap::Args as _;
use datastorm_shards::plan::SchemaEncoding;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed run file.
#[derive(Debug)]
pub struct RunFile {
    /// `[run]`, keyed by flag name (`batch_size` and `batch-size` alike
    /// become `batch_size`).
    pub run: toml::Table,
    /// The file as shown in messages.
    shown: String,
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

/// Why a run file cannot be used. Each names the file (and the stream or
/// `[run]` key) and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    #[error("cannot read the run file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file} is not a valid run file: {reason}")]
    Toml { file: String, reason: String },
    #[error("{0} has no [[stream]] table; a run file describes one or more streams")]
    NoStreams(String),
    #[error("{file}: stream {number} ({name}): {mistake}")]
    Stream {
        file: String,
        number: usize,
        name: String,
        mistake: StreamMistake,
    },
    #[error(
        "{file}: streams {a} and {b} both produce to topic {topic:?} with sequence headers; \
         their sequence numbers would collide. Give each its own topic"
    )]
    SequenceCollision {
        file: String,
        a: String,
        b: String,
        topic: String,
    },
    #[error("{file}: [run] {key} describes a stream; put it in the [[stream]] tables")]
    StreamFlag { file: String, key: String },
    #[error("{0}: [run] cannot name another run file")]
    NestedRunFile(String),
    #[error("{file}: [run] {a} and {b} cannot be used together")]
    Conflict { file: String, a: String, b: String },
    #[error("{file}: [run] {key} is not a `datastorm produce` flag")]
    UnknownKey { file: String, key: String },
    /// A `[run]` value its flag would refuse: `key: reason`.
    #[error("{file} [run]: {reason}")]
    Setting { file: String, reason: String },
}

/// What is wrong with one `[[stream]]` table on its own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamMistake {
    #[error("another stream has the same name; give each stream its own `name`")]
    SameName,
    #[error("share must be a number above 0, not {0}")]
    Share(f64),
    #[error("a stream has either `schema` or `record_size`/`payload_pool`, not both")]
    SchemaAndFixed,
    #[error("`encoding`, `schema_id` and `pool` need a `schema`")]
    NeedsSchema,
}

/// Reads and checks a run file. Errors name the file and what is wrong.
pub fn read(path: &Path) -> Result<RunFile, RunFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RunFileError::Read {
        file: shown.clone(),
        source,
    })?;
    let doc: Document = toml::from_str(&text).map_err(|e| RunFileError::Toml {
        file: shown.clone(),
        reason: e.to_string().trim_end().to_owned(),
    })?;
    if doc.stream.is_empty() {
        return Err(RunFileError::NoStreams(shown));
    }
    check_streams(&doc.stream, &shown)?;
    Ok(RunFile {
        run: run_table(doc.run, &shown)?,
        shown,
        streams: doc.stream,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    })
}

/// Each stream on its own, then streams that would collide.
fn check_streams(streams: &[StreamEntry], shown: &str) -> Result<(), RunFileError> {
    let mut names: Vec<&str> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let mistake = if names.contains(&s.name()) {
            Some(StreamMistake::SameName)
        } else if let Some(share) = s.share.filter(|x| !(x.is_finite() && *x > 0.0)) {
            Some(StreamMistake::Share(share))
        } else if s.schema.is_some() && (s.record_size.is_some() || s.payload_pool.is_some()) {
            Some(StreamMistake::SchemaAndFixed)
        } else if s.schema.is_none()
            && (s.encoding.is_some() || s.schema_id.is_some() || s.pool.is_some())
        {
            Some(StreamMistake::NeedsSchema)
        } else {
            None
        };
        if let Some(mistake) = mistake {
            return Err(RunFileError::Stream {
                file: shown.to_owned(),
                number: i + 1,
                name: s.name().to_owned(),
                mistake,
            });
        }
        names.push(s.name());
    }
    for (i, a) in streams.iter().enumerate() {
        for b in &streams[i + 1..] {
            if a.topic == b.topic && (a.sequence_header || b.sequence_header) {
                return Err(RunFileError::SequenceCollision {
                    file: shown.to_owned(),
                    a: a.name().to_owned(),
                    b: b.name().to_owned(),
                    topic: a.topic.clone(),
                });
            }
        }
    }
    Ok(())
}

/// `[run]` with keys as flag ids; refuses keys that are not `[run]`'s.
fn run_table(run: toml::Table, shown: &str) -> Result<toml::Table, RunFileError> {
    let known = [
        arg_ids::<ProduceArgs>(),
        arg_ids::<WorkloadArgs>(),
        arg_ids::<KnobArgs>(),
        arg_ids::<SecurityArgs>(),
    ]
    .concat();
    let mut out = toml::Table::new();
    for (key, value) in run {
        let flag = key.replace('_', "-");
        if STREAM_FLAGS.contains(&flag.as_str()) {
            return Err(RunFileError::StreamFlag {
                file: shown.to_owned(),
                key,
            });
        }
        if flag == "run-file" {
            return Err(RunFileError::NestedRunFile(shown.to_owned()));
        }
        let id = key.replace('-', "_");
        if !known.contains(&id) {
            return Err(RunFileError::UnknownKey {
                file: shown.to_owned(),
                key,
            });
        }
        out.insert(id, value);
    }
    Ok(out)
}

impl RunFile {
    /// The settings of a run: `[run]` read as the flags are, then every
    /// flag the command line gave (`given`) over it.
    pub fn settings(
        &self,
        cli: ProduceArgs,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<ProduceArgs, RunFileError> {
        let mut parts: [toml::Table; 4] = Default::default();
        let groups = [
            arg_ids::<WorkloadArgs>(),
            arg_ids::<KnobArgs>(),
            arg_ids::<SecurityArgs>(),
        ];
        for (key, value) in &self.run {
            let group = groups
                .iter()
                .position(|g| g.contains(key))
                .map_or(0, |i| i + 1);
            parts[group].insert(key.clone(), value.clone());
        }
        let at = |reason: String| RunFileError::Setting {
            file: self.shown.clone(),
            reason,
        };
        let [own, workload, knobs, security] = parts;
        let mut file: ProduceArgs = from_table(own).map_err(at)?;
        file.workload = from_table(workload).map_err(at)?;
        file.knobs = from_table(knobs).map_err(at)?;
        file.security = from_table(security).map_err(at)?;
        let pushed_out = self.conflicts(given)?;
        let mut merged = cli;
        merged.overlay(file, given);
        // A flag pushes out the file's settings it cannot be used with.
        merged.overlay(ProduceArgs::default(), &|id| {
            !pushed_out.iter().any(|p| p == id)
        });
        Ok(merged)
    }

    /// The `[run]` keys that a flag on the command line conflicts with (the
    /// flag wins); an error when two of the file's own settings conflict,
    /// as the two flags would.
    fn conflicts(&self, given: &dyn Fn(&str) -> bool) -> Result<Vec<String>, RunFileError> {
        let cmd = ProduceArgs::augment_args(clap::Command::new("produce"));
        let conflict = |a: &str, b: &str| {
            let one_way = |x: &str, y: &str| {
                cmd.get_arguments()
                    .find(|arg| arg.get_id() == x)
                    .is_some_and(|arg| {
                        cmd.get_arg_conflicts_with(arg)
                            .iter()
                            .any(|c| c.get_id() == y)
                    })
            };
            one_way(a, b) || one_way(b, a)
        };
        let flags: Vec<String> = arg_ids::<ProduceArgs>()
            .into_iter()
            .filter(|id| given(id))
            .collect();
        let (pushed_out, kept): (Vec<&String>, Vec<&String>) = self
            .run
            .keys()
            .filter(|k| !given(k))
            .partition(|k| flags.iter().any(|f| conflict(k, f)));
        for (i, a) in kept.iter().enumerate() {
            if let Some(b) = kept[i + 1..].iter().find(|b| conflict(a, b)) {
                return Err(RunFileError::Conflict {
                    file: self.shown.clone(),
                    a: (*a).clone(),
                    b: (*b).clone(),
                });
            }
        }
        Ok(pushed_out.into_iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunFile, String> {
        let dir = std::env::temp_dir().join(format!("ds-runfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // One file per call: tests run in parallel, and two texts of the
        // same length must not share (and remove) one file.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("t{n}.toml"));
        std::fs::write(&path, text).unwrap();
        let r = read(&path).map_err(|e| e.to_string().replace(&path.display().to_string(), "FILE"));
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
        let args = f.settings(ProduceArgs::default(), &|_| false).unwrap();
        assert_eq!(args.duration, Some(std::time::Duration::from_secs(5)));
        assert_eq!(
            args.workload.rate,
            Some(crate::cli::workload::RateFlag::PerS(1000.0))
        );
        assert!(args.create_topic);
        assert_eq!(args.bootstrap, ["a:9092", "b:9092"]);
        let flags_win = f
            .settings(
                ProduceArgs {
                    duration: Some(std::time::Duration::from_secs(9)),
                    ..ProduceArgs::default()
                },
                &|id| id == "duration",
            )
            .unwrap();
        assert_eq!(flags_win.duration, Some(std::time::Duration::from_secs(9)));
        assert_eq!(flags_win.bootstrap, ["a:9092", "b:9092"]);
        let ramp_wins = f
            .settings(
                ProduceArgs {
                    workload: WorkloadArgs {
                        ramp: Some(crate::cli::workload::Ramp {
                            from: 1.0,
                            to: 2.0,
                            over: std::time::Duration::from_secs(1),
                        }),
                        ..WorkloadArgs::default()
                    },
                    ..ProduceArgs::default()
                },
                &|id| id == "ramp",
            )
            .unwrap();
        assert_eq!(
            ramp_wins.workload.rate, None,
            "--ramp pushes out the file's rate"
        );
        assert_eq!(f.streams.len(), 2);
        assert_eq!(f.streams[0].name(), "users");
        assert_eq!(f.streams[1].share, Some(3.0));
        assert_eq!(f.streams[1].headers["env"], "lab");
    }

    /// Every `produce` flag but the single-stream ones can be set in `[run]`
    /// and is overlaid by the command line.
    #[test]
    fn every_run_flag_is_read_and_overlaid() {
        let overlaid = [
            ProduceArgs::OVERLAID,
            WorkloadArgs::OVERLAID,
            KnobArgs::OVERLAID,
            SecurityArgs::OVERLAID,
        ]
        .concat();
        let groups = [
            arg_ids::<ProduceArgs>(),
            arg_ids::<WorkloadArgs>(),
            arg_ids::<KnobArgs>(),
            arg_ids::<SecurityArgs>(),
        ];
        for id in groups.concat() {
            let flag = id.replace('_', "-");
            if id == "run_file" || id == "headers" || STREAM_FLAGS.contains(&flag.as_str()) {
                continue;
            }
            assert!(overlaid.contains(&id.as_str()), "{id} is not overlaid");
            let err = parse(&format!("[run]\n{id} = [[1]]\n[[stream]]\ntopic = \"a\"\n"))
                .unwrap()
                .settings(ProduceArgs::default(), &|_| false)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(!err.contains("unknown field"), "{id}: {err}");
        }
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
        assert_eq!(
            parse("[run]\nbatchsize = 5\n[[stream]]\ntopic = \"a\"\n").unwrap_err(),
            "FILE: [run] batchsize is not a `datastorm produce` flag"
        );
        let settings = |run: &str| {
            parse(&format!("[run]\n{run}\n[[stream]]\ntopic = \"a\"\n"))
                .unwrap()
                .settings(ProduceArgs::default(), &|_| false)
                .map(|_| ())
                .map_err(|e| e.to_string().replace(|c: char| c.is_ascii_digit(), "N"))
        };
        assert!(settings("batch-size = \"1MiB\"\nacks = 1\nring_depth = 64").is_ok());
        let both = settings("rate = \"1k\"\nramp = \"1:2:1s\"").unwrap_err();
        assert!(
            both.ends_with(": [run] ramp and rate cannot be used together"),
            "{both}"
        );
        let bad_bytes = settings("batch_size = \"lots\"").unwrap_err();
        assert!(bad_bytes.contains("[run]: batch_size: "), "{bad_bytes}");
        let bad_knob = settings("ring-depth = 0").unwrap_err();
        assert!(
            bad_knob.contains("[run]: ring_depth: N is not in"),
            "{bad_knob}"
        );
        let unknown = parse("[[stream]]\ntopic = \"a\"\nrecordsize = 5\n").unwrap_err();
        assert!(
            unknown.starts_with("FILE is not a valid run file:") && unknown.contains("recordsize"),
            "{unknown}"
        );
    }
}
