//! Run files: several streams in one run, against the embedded sink, and
//! the mistakes a run file can hold.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn write_run_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(&path, text).expect("write run file");
    path
}

#[test]
fn streams_share_the_count_and_each_reaches_its_topic() {
    let dir = scratch("run-file-streams");
    let run = write_run_file(
        &dir,
        &format!(
            r#"
[run]
count = 90000
acks = "1"

[[stream]]
name = "users"
topic = "rf-users"
schema = "{users}"
pool = 500

[[stream]]
name = "orders"
topic = "rf-orders"
schema = "{orders}"
encoding = "confluent"
schema_id = 7
share = 2
"#,
            users = schemas().join("users.avsc").display(),
            orders = schemas().join("orders.avsc").display(),
        ),
    );
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--cores", "1", "--run-file"])
        .arg(&run)
        .arg("--report")
        .arg(&report);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("summary: 2 streams"), "{stdout}");
    assert!(
        stdout.contains("topic rf-users: 8 partitions, 30,000 records"),
        "{stdout}"
    );
    assert!(
        stdout.contains("topic rf-orders: 8 partitions, 60,000 records"),
        "{stdout}"
    );
    let doc = read_json(&report);
    let streams = doc["results"]["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0]["name"], "users");
    assert_eq!(streams[0]["records_acked"], 30_000);
    assert_eq!(streams[1]["name"], "orders");
    assert_eq!(streams[1]["records_acked"], 60_000);
    assert_eq!(doc["config"]["acks"], "Leader");
    assert_eq!(doc["config"]["streams"][1]["share"], 2.0);
}

#[test]
fn command_line_flags_override_the_run_table() {
    let dir = scratch("run-file-override");
    let run = write_run_file(
        &dir,
        "[run]\ncount = 5000000\n\n[[stream]]\ntopic = \"rf-override\"\nrecord_size = 20\n",
    );
    let mut cmd = datastorm();
    cmd.args(["produce", "--cores", "1", "--count", "1000", "--run-file"])
        .arg(&run);
    let (out, _) = run_bounded(cmd, Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("sink received: 1,000 records"), "{stdout}");
}

/// Runs `produce --run-file` on `text` and returns the one-line error.
fn run_file_error(name: &str, text: &str) -> String {
    let dir = scratch(name);
    let run = write_run_file(&dir, text);
    let mut cmd = datastorm();
    cmd.args(["produce", "--run-file"]).arg(&run);
    let (out, took) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", self::text(&out.stdout));
    assert!(took < Duration::from_secs(20));
    assert!(
        self::text(&out.stdout).is_empty(),
        "nothing starts: {}",
        self::text(&out.stdout)
    );
    self::text(&out.stderr)
        .trim_end()
        .replace(&run.display().to_string(), "RUN")
}

#[test]
fn run_file_mistakes_stop_before_anything_starts() {
    assert_eq!(
        run_file_error(
            "rf-bad-acks",
            "[run]\nacks = \"2\"\n[[stream]]\ntopic = \"a\"\n"
        ),
        "datastorm produce: RUN [run]: acks: invalid value '2' [possible values: 0, 1, all]"
    );
    assert_eq!(
        run_file_error(
            "rf-field-fixed",
            "[[stream]]\ntopic = \"a\"\nkey = \"field:id\"\n"
        ),
        "datastorm produce: RUN: stream 1 (a): --key field:id takes the key from a field of \
         schema records; it needs a schema payload (--schema, or `schema` in a run file)"
    );
    assert_eq!(
        run_file_error("rf-no-streams", "[run]\nduration = \"1s\"\n"),
        "datastorm produce: RUN has no [[stream]] table; a run file describes one or more streams"
    );
    assert_eq!(
        run_file_error(
            "rf-stream-flag",
            "[run]\nschema = \"x.avsc\"\n[[stream]]\ntopic = \"a\"\n"
        ),
        "datastorm produce: RUN: [run] schema describes a stream; put it in the [[stream]] tables"
    );
    let hint = run_file_error(
        "rf-bad-ref",
        &format!(
            "[[stream]]\ntopic = \"a\"\nschema = \"{}\"\n",
            write_schema(
                "rf-bad-ref-schema",
                r#"{"type": "record", "name": "R", "fields": [
                     {"name": "u", "type": "string", "datastorm": {"ref": "nobody.id"}}]}"#
            )
            .display()
        ),
    );
    assert!(
        hint.contains(": u: unknown reference \"nobody.id\""),
        "{hint}"
    );
}

fn write_schema(name: &str, json: &str) -> PathBuf {
    let path = scratch(name).join("s.avsc");
    std::fs::write(&path, json).expect("write schema");
    path
}

#[test]
fn single_stream_flags_cannot_join_a_run_file() {
    let dir = scratch("rf-conflict");
    let run = write_run_file(&dir, "[[stream]]\ntopic = \"a\"\n");
    let mut cmd = datastorm();
    cmd.args(["produce", "--topic", "b", "--run-file"])
        .arg(&run);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot be used with")
            && err.contains("--topic")
            && err.contains("--run-file"),
        "{err}"
    );
}
