//! TLS and SASL against a real Apache Kafka cluster with secured listeners,
//! started here with `scripts/kafka-lab start --security ...` (name
//! `ds-test-secure`, ports 21092 and up: PLAINTEXT 21092, SSL 21102 with
//! client certificates required, SASL_PLAINTEXT 21112, SASL_SSL 21122,
//! controller 22092). Each scenario produces with `datastorm produce` and
//! checks with Kafka's own tools (over the PLAINTEXT listener) what landed.
//!
//! The last scenario to finish stops the cluster; a run that filters the
//! tests leaves it up for the next run (`scripts/kafka-lab stop --name
//! ds-test-secure` removes it).
#![cfg(feature = "lab-tests")]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const CLUSTER: &str = "ds-test-secure";
const PORT: u16 = 21092;
const USER: &str = "datastorm";
const PASSWORD: &str = "datastorm-secret";
/// Scenarios in this file: the cluster stops when all have finished.
const SCENARIOS: usize = 9;

struct Lab {
    plaintext: String,
    ssl: String,
    sasl_plaintext: String,
    sasl_ssl: String,
    security: PathBuf,
}

fn kafka_lab(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-lab");
    let mut cmd = Command::new(script);
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(180)).0
}

fn lab_ok(args: &[&str]) -> String {
    let out = kafka_lab(args);
    assert!(
        out.status.success(),
        "kafka-lab {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The secured cluster, started once for all scenarios.
fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let port = PORT.to_string();
        lab_ok(&[
            "start",
            "--name",
            CLUSTER,
            "--port",
            &port,
            "--security",
            "ssl,sasl_plaintext,sasl_ssl",
            "--tls-client-auth",
            "required",
            "--sasl-user",
            &format!("{USER}:{PASSWORD}"),
        ]);
        let boot = |l: &str| {
            lab_ok(&["bootstrap", "--name", CLUSTER, "--listener", l])
                .trim()
                .to_owned()
        };
        let lab_dir = std::env::var("DATASTORM_LAB_DIR").unwrap_or("/tmp/datastorm-lab".into());
        Lab {
            plaintext: boot("plaintext"),
            ssl: boot("ssl"),
            sasl_plaintext: boot("sasl_plaintext"),
            sasl_ssl: boot("sasl_ssl"),
            security: Path::new(&lab_dir).join(CLUSTER).join("security"),
        }
    })
}

/// Counts finished scenarios (panicking ones too); the last one stops the
/// cluster.
struct Scenario;

impl Drop for Scenario {
    fn drop(&mut self) {
        static DONE: AtomicUsize = AtomicUsize::new(0);
        if DONE.fetch_add(1, Ordering::SeqCst) + 1 == SCENARIOS {
            let _ = kafka_lab(&["stop", "--name", CLUSTER]);
        }
    }
}

fn file(lab: &Lab, name: &str) -> String {
    lab.security.join(name).to_string_lossy().into_owned()
}

/// `datastorm produce` of `count` records into a new 4-partition topic.
fn produce(bootstrap: &str, topic: &str, count: u64, security: &[&str]) -> Command {
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", bootstrap, "--topic", topic])
        .args(["--create-topic", "--partitions", "4", "--cores", "2"])
        .args(["--count", &count.to_string(), "--quiet"])
        .args(["--connect-timeout", "20s"])
        .args(security);
    cmd
}

fn run(cmd: Command) -> Output {
    run_bounded(cmd, Duration::from_secs(180)).0
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "produce failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Records in `topic` by its end offsets, read over the PLAINTEXT listener.
fn landed(topic: &str) -> i64 {
    lab_ok(&["offsets", topic, "--name", CLUSTER])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        .sum()
}

/// Produces 10,000 records and checks Kafka has exactly those: by its end
/// offsets (Kafka's own tool, over PLAINTEXT), and by `--verify` reading
/// them back over the same secured listener (every acknowledged record once).
fn produces_and_lands(bootstrap: &str, topic: &str, security: &[&str]) -> Output {
    let mut cmd = produce(bootstrap, topic, 10_000, security);
    cmd.arg("--verify");
    let out = run(cmd);
    assert_success(&out);
    assert_eq!(landed(topic), 10_000, "records in {topic}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("acknowledged records is there exactly once"),
        "{stdout}"
    );
    for stream in [&out.stdout, &out.stderr] {
        assert!(!text(stream).contains(PASSWORD), "{}", text(stream));
    }
    out
}

fn sasl(protocol: &str, mechanism: &str) -> Vec<String> {
    [
        "--security-protocol",
        protocol,
        "--sasl-mechanism",
        mechanism,
        "--sasl-username",
        USER,
    ]
    .map(String::from)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tls_with_a_client_certificate_produces_and_lands() {
    let _s = Scenario;
    let lab = lab();
    let (ca, cert, key) = (
        file(lab, "ca.crt"),
        file(lab, "client.crt"),
        file(lab, "client.key"),
    );
    produces_and_lands(
        &lab.ssl,
        "sec-tls",
        &[
            "--security-protocol",
            "ssl",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
}

#[test]
fn sasl_plain_produces_and_lands() {
    let _s = Scenario;
    let lab = lab();
    let mut args = sasl("sasl_plaintext", "plain");
    args.extend(["--sasl-password".into(), PASSWORD.into()]);
    produces_and_lands(&lab.sasl_plaintext, "sec-plain", &strs(&args));
}

#[test]
fn scram_sha_256_produces_and_lands_with_a_password_file() {
    let _s = Scenario;
    let lab = lab();
    let dir = scratch("sec-scram-256");
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let mut args = sasl("sasl_plaintext", "scram-sha-256");
    args.extend([
        "--sasl-password-file".into(),
        pw.to_string_lossy().into_owned(),
    ]);
    produces_and_lands(&lab.sasl_plaintext, "sec-scram-256", &strs(&args));
}

#[test]
fn scram_sha_512_produces_and_lands_with_the_password_from_the_environment() {
    let _s = Scenario;
    let lab = lab();
    let args = sasl("sasl_plaintext", "scram-sha-512");
    let mut cmd = produce(&lab.sasl_plaintext, "sec-scram-512", 10_000, &strs(&args));
    cmd.env("DATASTORM_SASL_PASSWORD", PASSWORD);
    assert_success(&run(cmd));
    assert_eq!(landed("sec-scram-512"), 10_000);
}

#[test]
fn sasl_ssl_produces_and_lands_and_the_report_has_no_password() {
    let _s = Scenario;
    let lab = lab();
    let dir = scratch("sec-sasl-ssl");
    let report = dir.join("run.json");
    let mut args = sasl("sasl_ssl", "scram-sha-512");
    args.extend([
        "--tls-ca".into(),
        file(lab, "ca.crt"),
        "--sasl-password".into(),
        PASSWORD.into(),
        "--report".into(),
        report.to_string_lossy().into_owned(),
    ]);
    produces_and_lands(&lab.sasl_ssl, "sec-sasl-ssl", &strs(&args));
    let raw = std::fs::read_to_string(&report).unwrap();
    assert!(!raw.contains(PASSWORD), "the report holds the password");
    let doc = read_json(&report);
    assert_eq!(doc["results"]["records_acked"], 10_000);
    let security = &doc["config"]["security"];
    assert_eq!(security["protocol"], "sasl_ssl", "{security}");
    assert_eq!(security["sasl"]["mechanism"], "SCRAM-SHA-512", "{security}");
    assert_eq!(security["sasl"]["username"], USER, "{security}");
    assert!(security["sasl"].get("password").is_none(), "{security}");
}

#[test]
fn a_wrong_password_names_the_user_and_the_mechanism_and_exits_2() {
    let _s = Scenario;
    let lab = lab();
    let wrong = "not-the-password-42";
    for (mechanism, name) in [("scram-sha-256", "SCRAM-SHA-256"), ("plain", "PLAIN")] {
        let mut args = sasl("sasl_plaintext", mechanism);
        args.extend(["--sasl-password".into(), wrong.into()]);
        let out = run(produce(
            &lab.sasl_plaintext,
            "sec-wrong-pw",
            100,
            &strs(&args),
        ));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mechanism}: {err}");
        assert!(
            err.contains(&format!(
                "SASL authentication failed for user '{USER}' with mechanism {name}"
            )),
            "{mechanism}: {err}"
        );
        assert!(
            !err.contains(wrong) && !text(&out.stdout).contains(wrong),
            "{err}"
        );
    }
}

#[test]
fn a_wrong_ca_says_the_broker_certificate_is_not_trusted_and_exits_2() {
    let _s = Scenario;
    let lab = lab();
    let dir = scratch("sec-wrong-ca");
    let other_ca = dir.join("other-ca.crt");
    let key = dir.join("other-ca.key");
    let gen = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=Some other CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("openssl runs");
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let ca = other_ca.to_string_lossy().into_owned();
    let args = [
        "--security-protocol",
        "sasl_ssl",
        "--tls-ca",
        &ca,
        "--sasl-mechanism",
        "plain",
        "--sasl-username",
        USER,
        "--sasl-password",
        PASSWORD,
    ];
    let out = run(produce(&lab.sasl_ssl, "sec-wrong-ca", 100, &args));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is not trusted by the CA file") && err.contains(&ca),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
}

#[test]
fn tls_without_the_required_client_certificate_is_refused_with_a_hint() {
    let _s = Scenario;
    let lab = lab();
    let ca = file(lab, "ca.crt");
    let args = ["--security-protocol", "ssl", "--tls-ca", &ca];
    let out = run(produce(&lab.ssl, "sec-no-client-cert", 100, &args));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}

#[test]
fn a_plaintext_client_on_a_tls_listener_is_told_to_use_tls() {
    let _s = Scenario;
    let lab = lab();
    let out = run(produce(&lab.sasl_ssl, "sec-plain-on-tls", 100, &[]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--security-protocol"), "{err}");
    // The PLAINTEXT listener of the same cluster still works without flags.
    let out = run(produce(&lab.plaintext, "sec-plaintext", 1_000, &[]));
    assert_success(&out);
    assert_eq!(landed("sec-plaintext"), 1_000);
}
