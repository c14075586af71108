//! Workload control against the sink: exact rates per second, ramps and
//! steps, the `--rate max` search, latency against a known ack delay, an
//! injected generator stall, and the metrics endpoint.
//!
//! These tests measure time, so they run one at a time (a lock below), each
//! on one producer core against a sink on its own.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

/// Runs `produce` with `args` plus a timeline file; returns the rows and stdout.
fn produce_timeline(name: &str, args: &[&str]) -> (Vec<HashMap<String, String>>, String) {
    let dir = scratch(name);
    let csv = dir.join("timeline.csv");
    let mut cmd = datastorm();
    cmd.args(["produce", "--cores", "1", "--quiet"])
        .args(args)
        .arg("--timeline")
        .arg(&csv);
    let (out, _) = run_bounded(cmd, Duration::from_secs(180));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    (read_timeline(&csv), stdout)
}

/// Every window holds the rate within 1% (with one host pause allowed, see
/// [`hold`]), and the run as a whole within 0.5%.
#[test]
fn a_paced_run_holds_200k_per_second_in_every_window() {
    let _g = serial();
    let (rows, _) = produce_timeline(
        "pace-200k",
        &["--rate", "200k", "--duration", "10s", "--warmup", "1s"],
    );
    let measured = rows
        .iter()
        .position(|r| r["phase"] == "measure")
        .expect("a measured window");
    let windows = windows(&rows, |b| b > num(&rows[measured], "elapsed_s") - 0.5);
    assert!(windows.len() >= 8, "{} windows: {rows:?}", windows.len());
    hold(&windows, |_| 200_000.0, 0.01);
    let (first, last) = (windows[0], windows[windows.len() - 1]);
    let acked: f64 = windows.iter().map(|w| w.acked).sum();
    let rate = acked / (last.end - first.start);
    assert!(
        (rate - 200_000.0).abs() <= 1_000.0,
        "{rate} records/s over ({}, {}] s (target 200,000/s within 0.5%): {windows:?}",
        first.start,
        last.end
    );
    for w in &windows {
        assert_eq!(w.target, 200_000.0, "{w:?}");
    }
}

/// One timeline row: it covers (the previous row's end, its end].
#[derive(Clone, Copy, Debug)]
struct Window {
    start: f64,
    end: f64,
    acked: f64,
    target: f64,
}

/// The full rows whose end `keep` accepts; the last row (partial, it ends
/// with the run) is left out.
fn windows(rows: &[HashMap<String, String>], keep: impl Fn(f64) -> bool) -> Vec<Window> {
    (1..rows.len() - 1)
        .map(|i| Window {
            start: num(&rows[i - 1], "elapsed_s"),
            end: num(&rows[i], "elapsed_s"),
            acked: num(&rows[i], "records_acked"),
            target: num(&rows[i], "target_per_s"),
        })
        .filter(|w| keep(w.end))
        .collect()
}

/// Checks that each window's rate is `profile` averaged over it within
/// `tolerance`. One exception is allowed, because it shows the pacer doing
/// its job: a pause of the whole machine (CI has seen a 200k/s window read
/// 189,914/s) holds a window's acks back into the next one, which the
/// pacer then catches up: the window off and its neighbour must together
/// match the profile over both within `tolerance`.
fn hold(windows: &[Window], profile: impl Fn(f64) -> f64, tolerance: f64) {
    let mean = |a, b| mean(&profile, a, b);
    let fits = |a: f64, b: f64, acked: f64| {
        let want = mean(a, b);
        (acked / (b - a) - want).abs() <= want * tolerance
    };
    let off: Vec<usize> = (0..windows.len())
        .filter(|&i| !fits(windows[i].start, windows[i].end, windows[i].acked))
        .collect();
    match off[..] {
        [] => {}
        [i] | [i, _] if windows.len() > 1 && (off.len() == 1 || off[1] == i + 1) => {
            // With the window after it; the last window, with the one before.
            let j = if i + 1 < windows.len() { i + 1 } else { i - 1 };
            let (x, y) = (windows[i.min(j)], windows[i.max(j)]);
            assert!(
                fits(x.start, y.end, x.acked + y.acked),
                "windows ({}, {}] and ({}, {}] together: {} records, the profile \
                 averages {:.0}/s (within {tolerance}): {windows:?}",
                x.start,
                x.end,
                y.start,
                y.end,
                x.acked + y.acked,
                mean(x.start, y.end)
            );
        }
        _ => panic!("windows {off:?} are off the profile by more than {tolerance}: {windows:?}"),
    }
}

#[test]
fn steps_and_ramps_follow_their_profile() {
    let _g = serial();
    let (rows, _) = produce_timeline(
        "pace-steps",
        &["--steps", "20k,60k", "--step-duration", "3s"],
    );
    let step = |t: f64| if t < 3.0 { 20_000.0 } else { 60_000.0 };
    // The windows ending at 2 and 3 s lie in the first step, at 4 and 5 s in
    // the second.
    let checked = follows(&rows, step, 1.5..5.5, 0.03);
    assert!(
        checked >= 4,
        "{checked} windows between 1.5 and 5.5 s: {rows:?}"
    );

    let (rows, _) = produce_timeline("pace-ramp", &["--ramp", "10k:50k:4s"]);
    let ramp = |t: f64| 10_000.0 + 10_000.0 * t.min(4.0);
    let last = num(&rows[rows.len() - 1], "elapsed_s");
    // The last row is partial (it ends with the run).
    let checked = follows(&rows, ramp, 1.5..last - 0.01, 0.05);
    assert!(checked >= 2, "{checked} windows in the ramp: {rows:?}");
}

/// `profile` (records/s at t seconds) averaged over (a, b].
fn mean(profile: &impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    const STEPS: usize = 1_000;
    let dt = (b - a) / STEPS as f64;
    (0..STEPS)
        .map(|i| profile(a + (i as f64 + 0.5) * dt))
        .sum::<f64>()
        / STEPS as f64
}

/// Checks the rows ending in `ends` against `profile` averaged over each
/// row's own window: rates as [`hold`] does, targets within 0.2% (the
/// window's ends are rounded to the millisecond in the file). Returns how
/// many rows it checked. A row can end a few milliseconds late on a loaded
/// machine: the one ending near a step's change then takes in the start of
/// the next step, which an ideal whole second would not.
fn follows(
    rows: &[HashMap<String, String>],
    profile: impl Fn(f64) -> f64,
    ends: std::ops::Range<f64>,
    tolerance: f64,
) -> usize {
    let windows = windows(rows, |b| ends.contains(&b));
    hold(&windows, &profile, tolerance);
    for w in &windows {
        let want = mean(&profile, w.start, w.end);
        assert!(
            (w.target - want).abs() <= want * 0.002,
            "{w:?}: the profile averages {want:.0}"
        );
    }
    windows.len()
}

#[test]
fn rate_max_finds_a_throttled_sinks_rate() {
    let _g = serial();
    let sink = SinkProcess::start(&["--max-rate", "100k"]);
    let (_, stdout) = produce_timeline(
        "rate-max",
        &[
            "--bootstrap",
            &sink.addr,
            "--rate",
            "max",
            "--search-start",
            "20k",
            "--step-duration",
            "4s",
            "--linger",
            "1ms",
        ],
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("rate max"))
        .unwrap_or_else(|| panic!("no rate max line:\n{stdout}"));
    let found: f64 = line
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // The search bisects to within 5%; a step or two that miss their rate
    // by noise (a shared 2-core machine, Kafka brokers idling beside it)
    // cost about 5% each. Far from 20k (the start) and not past the limit.
    assert!(
        (80_000.0..=110_000.0).contains(&found),
        "found {found} records/s against a 100,000/s sink: {line}"
    );
}

/// Latency percentiles of the summary line, in microseconds.
fn summary_latency(stdout: &str, row: &str) -> HashMap<String, f64> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(row))
        .unwrap_or_else(|| panic!("no {row} line:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = HashMap::new();
    for pair in words.windows(2) {
        let v = pair[1];
        let us = if let Some(ms) = v.strip_suffix("ms") {
            ms.parse::<f64>().map(|x| x * 1e3)
        } else if let Some(us) = v.strip_suffix("us") {
            us.parse::<f64>()
        } else if let Some(s) = v.strip_suffix('s') {
            s.parse::<f64>().map(|x| x * 1e6)
        } else {
            continue;
        };
        if let Ok(us) = us {
            out.insert(pair[0].to_owned(), us);
        }
    }
    out
}

#[test]
fn latency_matches_a_known_ack_delay() {
    let _g = serial();
    let sink = SinkProcess::start(&["--delay", "20ms"]);
    let (_, stdout) = produce_timeline(
        "latency-delay",
        &[
            "--bootstrap",
            &sink.addr,
            "--rate",
            "1k",
            "--linger",
            "0ms",
            // Every ack takes 20 ms: enough requests in flight that none
            // waits for a slot (more than 5 needs a non-idempotent producer).
            "--acks",
            "1",
            "--max-in-flight",
            "64",
            "--duration",
            "4s",
            "--warmup",
            "1s",
        ],
    );
    let lat = summary_latency(&stdout, "latency");
    // The sink holds every ack 20 ms; loopback and batching add little.
    assert!(
        (20_000.0..23_000.0).contains(&lat["p50"]),
        "p50 {:?}\n{stdout}",
        lat
    );
    assert!(
        (20_000.0..35_000.0).contains(&lat["p99"]),
        "p99 {lat:?}\n{stdout}"
    );
    assert!(lat["p50"] >= 20_000.0 && lat["max"] >= lat["p99"]);
}

#[test]
fn an_injected_generator_stall_shows_in_latency_and_send_delay() {
    let _g = serial();
    let (rows, stdout) = produce_timeline(
        "stall",
        &[
            "--rate",
            "50k",
            "--duration",
            "4s",
            "--inject-stall",
            "2s:500ms",
        ],
    );
    let worst_delay = rows
        .iter()
        .map(|r| num(r, "send_delay_max_us"))
        .fold(0.0, f64::max);
    let worst_latency = rows.iter().map(|r| num(r, "max_us")).fold(0.0, f64::max);
    assert!(worst_delay >= 450_000.0, "send delay {worst_delay}us");
    assert!(worst_latency >= 450_000.0, "latency {worst_latency}us");
    let delay = summary_latency(&stdout, "send delay");
    assert!(delay["max"] >= 450_000.0, "{delay:?}\n{stdout}");
    // The stall cost no records: the pacer caught up.
    let acked: u64 = rows.iter().map(|r| num(r, "records_acked") as u64).sum();
    assert!(acked >= 195_000, "{acked} records acked");
}

/// A shard whose executor stops before its first request (held here by an
/// injected stall at the start, longer than the limits) is not waited on
/// forever: the run ends after the connect timeout plus the stall limit,
/// with a failure that names the shard and says where each thread was.
#[test]
fn a_shard_stuck_before_its_first_request_ends_the_run_clearly() {
    let _g = serial();
    let dir = scratch("stuck-start");
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--cores", "1", "--quiet", "--duration", "40s"])
        .args(["--inject-stall", "0s:30s", "--connect-timeout", "1s"])
        .args(["--request-timeout", "1s", "--report"])
        .arg(&report);
    let started = std::time::Instant::now();
    let (out, _) = run_bounded(cmd, Duration::from_secs(60));
    let took = started.elapsed();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("shard 0 sent no request in"), "{stderr}");
    assert!(stderr.contains("threads at the stall:"), "{stderr}");
    assert!(stderr.contains("datastorm-shard"), "{stderr}");
    // Connect timeout 1 s, stall limit 1 s + 15 s: ended at about 17 s,
    // well before the injected stall would have let the shard go on.
    assert!(took < Duration::from_secs(28), "{took:?}\n{stderr}");
    let doc = read_json(&report);
    assert!(
        doc["results"]["failure"]
            .as_str()
            .is_some_and(|f| f.contains("sent no request")),
        "{}",
        doc["results"]
    );
}

#[test]
fn metrics_are_served_in_prometheus_text_format_while_running() {
    let _g = serial();
    // A free port: bind, read it, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--cores",
        "1",
        "--rate",
        "20k",
        "--duration",
        "4s",
        "--quiet",
        "--metrics-addr",
        &addr,
    ]);
    let runner = std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(60)));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut body = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2500));
        if let Ok(b) = http_get(&addr, "/metrics") {
            if sample(&b, "datastorm_records_acked_total").is_some_and(|n| n > 0.0) {
                body = b;
                break;
            }
        }
    }
    let (out, _) = runner.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        body.contains("# TYPE datastorm_records_acked_total counter"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE datastorm_latency_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("datastorm_target_records_per_second{instance=\"0\"} 20000"),
        "{body}"
    );
    let acked = sample(&body, "datastorm_records_acked_total").expect("acked sample");
    assert!(acked > 10_000.0, "{acked}");
}

/// The value of the first sample of `metric` in a Prometheus text body.
fn sample(body: &str, metric: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
