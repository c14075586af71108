//! `datastorm sweep` against a `datastorm sink` process: every point runs,
//! the table, CSV and chart come out, a second run skips finished points,
//! Ctrl-C stops cleanly, and mistakes are caught before anything runs.

mod common;

use common::*;
use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn reports(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("points"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn sweep_runs_every_point_writes_csv_and_chart_and_resumes() {
    let sink = SinkProcess::start(&[]);
    let dir = scratch("sweep-matrix");
    let sweep_with = |dir: &Path, in_flight: &str| {
        let mut cmd = datastorm();
        cmd.args(["sweep", "--out"]).arg(dir).args([
            "--duration",
            "1s",
            "--batch-size",
            "16KiB,64KiB",
            "--vary",
            in_flight,
            "--",
            "--bootstrap",
            &sink.addr,
            "--cores",
            "1",
            "--acks",
            "1",
        ]);
        run_bounded(cmd, Duration::from_secs(180)).0
    };
    let sweep = |dir: &Path| sweep_with(dir, "max-in-flight=1,5");
    let out = sweep(&dir);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.starts_with("datastorm sweep: 4 point(s) x 1 run(s) of 1s"),
        "{stdout}"
    );
    assert_eq!(
        reports(&dir),
        [
            "batch-size=16KiB_max-in-flight=1.r1.json",
            "batch-size=16KiB_max-in-flight=5.r1.json",
            "batch-size=64KiB_max-in-flight=1.r1.json",
            "batch-size=64KiB_max-in-flight=5.r1.json",
        ]
    );
    // Each point's report is a full run report with the point's settings.
    let doc = read_json(&dir.join("points/batch-size=64KiB_max-in-flight=1.r1.json"));
    assert_eq!(doc["config"]["batch_size"], 65536);
    assert_eq!(doc["config"]["max_in_flight"], 1);
    assert!(doc["results"]["records_acked"].as_u64().unwrap() > 0);

    let csv = std::fs::read_to_string(dir.join("sweep.csv")).expect("CSV");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(
        rows[0].starts_with("batch-size,max-in-flight,runs,records_per_s,"),
        "{csv}"
    );
    for row in &rows[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        let rate: f64 = cells[3].parse().unwrap();
        let p99: u64 = cells[6].parse().unwrap();
        assert!(rate > 0.0 && p99 > 0, "{row}");
    }
    let svg = std::fs::read_to_string(dir.join("sweep.svg")).expect("chart");
    assert!(svg.contains("<svg") && svg.contains("Throughput"), "chart");
    let png = std::fs::read(dir.join("sweep.png")).expect("PNG chart");
    assert!(png.starts_with(b"\x89PNG"), "PNG signature");
    assert!(stdout.contains("best throughput: batch-size="), "{stdout}");
    assert!(stdout.contains("best p99 latency: batch-size="), "{stdout}");

    // Resume: the finished points are skipped; a point whose report is gone
    // (as if it had been interrupted) runs again.
    let kept = dir.join("points/batch-size=16KiB_max-in-flight=1.r1.json");
    let kept_before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    std::fs::remove_file(dir.join("points/batch-size=64KiB_max-in-flight=5.r1.json")).unwrap();
    let out = sweep(&dir);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("(3 of 4 finished earlier, skipped)"),
        "{stdout}"
    );
    let started: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        started,
        ["[4/4] batch-size=64KiB max-in-flight=5 (run 1)"],
        "{stdout}"
    );
    assert_eq!(reports(&dir).len(), 4);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        kept_before
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sweep.csv"))
            .unwrap()
            .lines()
            .count(),
        5
    );

    // A value added to an axis runs only the new points.
    let out = sweep_with(&dir, "max-in-flight=1,5,2");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("(4 of 6 finished earlier, skipped)"),
        "{stdout}"
    );
    let started: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        started,
        [
            "[3/6] batch-size=16KiB max-in-flight=2 (run 1)",
            "[6/6] batch-size=64KiB max-in-flight=2 (run 1)"
        ],
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sweep.csv"))
            .unwrap()
            .lines()
            .count(),
        7
    );

    // The same folder with other produce flags is another experiment.
    let mut cmd = datastorm();
    cmd.args(["sweep", "--out"]).arg(&dir).args([
        "--duration",
        "1s",
        "--batch-size",
        "16KiB",
        "--",
        "--bootstrap",
        &sink.addr,
    ]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("holds a different sweep"));
}

#[test]
fn ctrl_c_stops_the_sweep_and_keeps_no_half_point() {
    let sink = SinkProcess::start(&[]);
    let dir = scratch("sweep-interrupt");
    let mut child = datastorm()
        .args(["sweep", "--out"])
        .arg(&dir)
        .args([
            "--duration",
            "20s",
            "--linger",
            "1ms,5ms",
            "--",
            "--bootstrap",
            &sink.addr,
            "--cores",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sweep");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the sweep announces itself");
    assert!(first.starts_with("datastorm sweep: 2 point(s)"), "{first}");
    let started = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a point starts");
    assert!(started.starts_with("[1/2] linger=1ms"), "{started}");
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the sweep did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    // The sweep has exited, so its stdout is closed and the reader ends.
    let rest: Vec<String> = rx.iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("interrupted: run the same command again")),
        "{rest:?}"
    );
    assert!(!rest.iter().any(|l| l.starts_with("[2/2]")), "{rest:?}");
    // Neither a report nor a partial one is left for the interrupted point.
    let left: Vec<String> = std::fs::read_dir(dir.join("points"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".json"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn sweep_mistakes_are_caught_before_anything_runs() {
    let dir = scratch("sweep-mistakes");
    let matrix = dir.join("matrix.toml");
    std::fs::write(
        &matrix,
        "duration = \"1s\"\nargs = [\"--cores\", \"1\"]\n[vary]\nlinger = [\"1ms\", \"5parsecs\"]\n",
    )
    .unwrap();
    for (args, needle) in [
        (&["--linger", "5parsecs"][..], "point linger=5parsecs"),
        (&["--vary", "no-such-flag=1,2"], "no-such-flag"),
        (&["--linger", "1ms,1ms"], "listed twice"),
        (&["--duration", "1s"], "nothing to sweep"),
        (
            &["--linger", "1ms,2ms", "--", "--linger", "3ms"],
            "both swept",
        ),
        (
            &["--linger", "1ms,2ms", "--", "--report", "x.json"],
            "--report is set by the sweep",
        ),
        (&["--linger", "1ms", "--repeat", "0"], "--repeat"),
        (&["--matrix", "MATRIX"], "point linger=5parsecs"),
        (&["--matrix", "NO-SUCH-FILE"], "could not read"),
    ] {
        let args: Vec<std::ffi::OsString> = args
            .iter()
            .map(|a| match *a {
                "MATRIX" => matrix.clone().into_os_string(),
                "NO-SUCH-FILE" => dir.join("nope.toml").into_os_string(),
                other => other.into(),
            })
            .collect();
        let mut cmd = datastorm();
        cmd.args(["sweep", "--out"])
            .arg(dir.join("out"))
            .args(&args);
        let (out, took) = run_bounded(cmd, Duration::from_secs(30));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(took < Duration::from_secs(10));
    }
    assert!(!dir.join("out").exists(), "nothing was created");
}
