//! Graceful stop: SIGINT or SIGTERM stops generation, waits for the acks in
//! flight and writes the report; a second signal exits at once with 130.

mod common;

use common::*;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn datastorm")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

/// Waits for the child with a limit, killing it (and failing) past it.
fn wait_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().expect("try_wait").is_some() {
            return (child.wait_with_output().expect("output"), start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "datastorm did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A 60-second paced run into a sink that holds every ack for `ack_delay`.
fn long_run(sink: &SinkProcess, report: &std::path::Path, drain: &str) -> Command {
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", &sink.addr, "--topic", "signals"])
        .args(["--rate", "50k", "--duration", "60s", "--cores", "1"])
        .args(["--drain-timeout", drain, "--quiet", "--report"])
        .arg(report);
    cmd
}

#[test]
fn sigint_drains_in_flight_acks_writes_the_report_and_exits_0() {
    let dir = scratch("signals-drain");
    let report = dir.join("run.json");
    // Acks held 300 ms: at 50k/s about 15,000 records are always in flight.
    let sink = SinkProcess::start(&["--delay", "300ms"]);
    let child = spawn(long_run(&sink, &report, "20s"));
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGINT);
    let (out, took) = wait_within(child, Duration::from_secs(25));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let doc = read_json(&report);
    let r = &doc["results"];
    assert_eq!(r["interrupted"], true, "{r}");
    let acked = r["records_acked"].as_u64().unwrap();
    assert!(acked > 0, "{r}");
    // Everything sent before the signal was waited for and acknowledged.
    assert_eq!(r["records_sent"].as_u64(), Some(acked), "{r}");
    assert_eq!(r["records_failed"], 0, "{r}");
    // The run was cut short: far fewer than 60 s at 50k/s.
    assert!(acked < 1_000_000, "{r}");
}

#[test]
fn sigterm_then_a_second_signal_exits_at_once_with_130() {
    let dir = scratch("signals-abort");
    let report = dir.join("run.json");
    // Acks held 30 s: the first signal's drain would wait that long.
    let sink = SinkProcess::start(&["--delay", "30s"]);
    let mut child = spawn(long_run(&sink, &report, "60s"));
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_secs(1));
    // The first signal only stops generation: the run waits for its acks.
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "one signal ended the run while acks were outstanding"
    );
    signal(&child, libc::SIGINT);
    let (out, took) = wait_within(child, Duration::from_secs(10));
    assert_eq!(
        out.status.code(),
        Some(130),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(3),
        "the second signal took {took:?}"
    );
}
