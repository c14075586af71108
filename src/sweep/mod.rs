//! `datastorm sweep`: every combination of some `produce` settings, each
//! run as a child `datastorm produce` for a fixed time, its report written
//! into the sweep's folder.
//!
//! A point (one combination, one repeat) is finished if and only if its
//! report exists: the child writes `ID.rN.json.partial` and the sweep
//! renames it once the child has ended on its own (not interrupted). A
//! resumed sweep therefore skips exactly the finished points, and a point
//! cut short by Ctrl-C runs again from the start.
//!
//! Child processes, not in-process runs: each point gets a fresh process
//! (executors, sockets, allocator state, embedded sink), which is what a
//! person comparing two settings by hand would do, and a point that fails
//! or hangs cannot take the sweep down with it.

pub mod chart;
pub mod matrix;
pub mod results;

use matrix::{Axis, Point};
use results::Run;
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The version of `sweep.json` this build writes.
pub const SCHEMA: &str = "datastorm.sweep/1";

/// What a sweep runs: stored as `sweep.json` in its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub schema: String,
    /// Each point's `--duration` (`produce` syntax: 10s, 1m).
    pub duration: String,
    /// Runs per point; the table shows medians.
    pub repeat: usize,
    pub axes: Vec<Axis>,
    /// `produce` flags every point gets (the target, the workload).
    pub args: Vec<String>,
}

/// Where a sweep keeps its files.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("sweep.json")
    }
    pub fn report(&self, p: &Point, rep: usize) -> PathBuf {
        self.dir
            .join("points")
            .join(format!("{}.r{}.json", p.id(), rep + 1))
    }
    pub fn partial(&self, p: &Point, rep: usize) -> PathBuf {
        self.dir
            .join("points")
            .join(format!("{}.r{}.json.partial", p.id(), rep + 1))
    }
    pub fn log(&self, p: &Point, rep: usize) -> PathBuf {
        self.dir
            .join("points")
            .join(format!("{}.r{}.log", p.id(), rep + 1))
    }
    pub fn csv(&self) -> PathBuf {
        self.dir.join("sweep.csv")
    }
    /// The chart, as SVG and as PNG.
    pub fn charts(&self) -> [PathBuf; 2] {
        [self.dir.join("sweep.svg"), self.dir.join("sweep.png")]
    }
}

impl Sweep {
    pub fn points(&self) -> Vec<Point> {
        matrix::points(&self.axes)
    }

    /// Refuses a matrix whose points would share report files, or that
    /// sets a flag both as an axis and for every point.
    pub fn validate(&self) -> Result<(), SweepError> {
        if self.repeat == 0 {
            return Err(SweepError::Repeat);
        }
        for (i, a) in self.axes.iter().enumerate() {
            if self.axes[..i].iter().any(|b| b.flag == a.flag) {
                return Err(SweepError::SweptTwice(a.flag.clone()));
            }
            let flag = format!("--{}", a.flag);
            if self
                .args
                .iter()
                .any(|x| *x == flag || x.starts_with(&format!("{flag}=")))
            {
                return Err(SweepError::SweptAndFixed(a.flag.clone()));
            }
        }
        for reserved in ["--report", "--duration", "-d"] {
            if self
                .args
                .iter()
                .any(|x| x == reserved || x.starts_with(&format!("{reserved}=")))
            {
                return Err(SweepError::Reserved(reserved));
            }
        }
        let pts = self.points();
        for (i, p) in pts.iter().enumerate() {
            if pts[..i].iter().any(|q| q.id() == p.id()) {
                return Err(SweepError::SameFileName(p.id()));
            }
        }
        Ok(())
    }

    /// Creates the folder and `sweep.json`, or checks that an existing one
    /// is the same experiment: the same duration, repeat count and flags.
    /// Axes may differ, so values can be added to a finished sweep and only
    /// the new points run.
    pub fn prepare(&self, layout: &Layout) -> Result<(), SweepError> {
        let points = layout.dir.join("points");
        std::fs::create_dir_all(&points).map_err(|source| SweepError::Create {
            path: points.clone(),
            source,
        })?;
        let path = layout.manifest();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let old: Sweep =
                serde_json::from_str(&text).map_err(|source| SweepError::Manifest {
                    path: path.clone(),
                    source,
                })?;
            if (&old.duration, &old.args) != (&self.duration, &self.args) {
                return Err(SweepError::Different {
                    dir: layout.dir.clone(),
                    duration: old.duration,
                    args: old.args,
                });
            }
        }
        let text = serde_json::to_string_pretty(self).expect("manifest serializes");
        std::fs::write(&path, text + "\n").map_err(|source| SweepError::Write { path, source })
    }
}

/// A sweep that cannot start: its matrix, or its folder.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Axis(#[from] matrix::AxisError),
    #[error("--repeat must be at least 1")]
    Repeat,
    #[error("--{0} is swept twice")]
    SweptTwice(String),
    #[error("--{0} is both swept and given for every point (after --); give it once")]
    SweptAndFixed(String),
    #[error("{0} is set by the sweep for each point; leave it out of the produce flags")]
    Reserved(&'static str),
    #[error(
        "two points would share the file name {0}: make the values differ in letters or digits"
    )]
    SameFileName(String),
    #[error("could not create {}: {source}", path.display())]
    Create {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a sweep manifest: {source}", path.display())]
    Manifest {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{} holds a different sweep (--duration {duration}, produce flags {args:?}); \
         give another --out, or delete the folder to start over",
        dir.display()
    )]
    Different {
        dir: std::path::PathBuf,
        duration: String,
        args: Vec<String>,
    },
    #[error("could not write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("could not read {}: {source}", path.display())]
    ReadMatrix {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Matrix {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{}: [vary] {flag}: values are strings, numbers or booleans", path.display())]
    VaryValue {
        path: std::path::PathBuf,
        flag: String,
    },
    #[error("--duration: {0}")]
    Duration(#[from] crate::units::UnitError),
    #[error("--duration must be above 0")]
    ZeroDuration,
    #[error("nothing to sweep: give lists like --batch-size 16KiB,64KiB or --vary linger=0ms,5ms")]
    NothingToSweep,
    /// A point whose flags `produce` would refuse (clap's first line).
    #[error("point {label}: {reason}")]
    Point { label: String, reason: String },
}

/// What happened to one point, for the caller to show.
pub enum Event<'a> {
    Started {
        point: &'a Point,
        rep: usize,
        index: usize,
        total: usize,
    },
    /// The point ran and its report is kept.
    Finished { run: Run, took: Duration },
    /// The child failed without a report; the point runs again on resume.
    Failed {
        point: &'a Point,
        rep: usize,
        why: String,
    },
}

/// How a sweep ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every point has a report (or failed without one).
    Complete,
    /// Stopped by a signal; unfinished points run on resume.
    Interrupted,
}

/// Runs the unfinished points, repeat by repeat (all points once, then all
/// again, so that slow drift on a noisy host spreads over every point).
pub fn run(
    sweep: &Sweep,
    layout: &Layout,
    exe: &Path,
    stop: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Ended {
    let points = sweep.points();
    let total = points.len() * sweep.repeat;
    let mut index = 0;
    for rep in 0..sweep.repeat {
        for point in &points {
            index += 1;
            if layout.report(point, rep).exists() {
                continue;
            }
            if stop.load(Ordering::Relaxed) {
                return Ended::Interrupted;
            }
            on(Event::Started {
                point,
                rep,
                index,
                total,
            });
            let started = Instant::now();
            match run_point(sweep, layout, exe, point, rep, stop) {
                PointOutcome::Done(run) => on(Event::Finished {
                    run,
                    took: started.elapsed(),
                }),
                PointOutcome::Failed(why) => on(Event::Failed { point, rep, why }),
                PointOutcome::Interrupted => return Ended::Interrupted,
            }
        }
    }
    if stop.load(Ordering::Relaxed) {
        Ended::Interrupted
    } else {
        Ended::Complete
    }
}

enum PointOutcome {
    Done(Run),
    Failed(String),
    Interrupted,
}

/// The most a point may take beyond its duration (connect, drain, report)
/// before it is killed as hung.
const GRACE: Duration = Duration::from_secs(120);

fn run_point(
    sweep: &Sweep,
    layout: &Layout,
    exe: &Path,
    point: &Point,
    rep: usize,
    stop: &AtomicBool,
) -> PointOutcome {
    let partial = layout.partial(point, rep);
    let _ = std::fs::remove_file(&partial);
    let log_path = layout.log(point, rep);
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            return PointOutcome::Failed(format!("could not create {}: {e}", log_path.display()))
        }
    };
    let log_err = match log.try_clone() {
        Ok(f) => f,
        Err(e) => return PointOutcome::Failed(format!("could not share the log file: {e}")),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("produce")
        .args(["--duration", &sweep.duration])
        .arg("--report")
        .arg(&partial)
        .args(point.args())
        .args(&sweep.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C reaches the sweep alone, which
        // passes on exactly one SIGINT (a second would make produce exit
        // at once, without draining).
        .process_group(0);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return PointOutcome::Failed(format!("could not start {}: {e}", exe.display())),
    };
    let limit = crate::units::parse_duration(&sweep.duration).unwrap_or(Duration::ZERO) + GRACE;
    let (status, interrupted) = match wait(child, stop, limit) {
        Ok(s) => s,
        Err(why) => return PointOutcome::Failed(why),
    };
    if interrupted {
        let _ = std::fs::remove_file(&partial);
        return PointOutcome::Interrupted;
    }
    let doc = match crate::report::read(&partial) {
        Ok(doc) => doc,
        Err(_) => {
            return PointOutcome::Failed(format!(
                "produce exited with {status} and wrote no report: {}",
                last_line(&log_path)
            ))
        }
    };
    if doc.results.interrupted {
        // Stopped from outside (a signal to the child alone): not a result.
        let _ = std::fs::remove_file(&partial);
        return PointOutcome::Failed(
            "produce was interrupted; the point runs again on resume".into(),
        );
    }
    if let Err(e) = std::fs::rename(&partial, layout.report(point, rep)) {
        return PointOutcome::Failed(format!("could not keep the report: {e}"));
    }
    PointOutcome::Done(Run::from_report(&doc))
}

/// Waits for the child; on a stop request, passes SIGINT on (the child
/// drains and exits) and reports the point as interrupted.
fn wait(
    mut child: Child,
    stop: &AtomicBool,
    limit: Duration,
) -> Result<(std::process::ExitStatus, bool), String> {
    let started = Instant::now();
    let mut signalled = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((status, signalled)),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for produce failed: {e}")),
        }
        if stop.load(Ordering::Relaxed) && !signalled {
            // SAFETY: kill(2) on our own child, which has not been reaped
            // (try_wait above saw it running).
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            signalled = true;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "produce did not finish within {}s and was killed",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last non-empty line of a point's log: usually the error.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("see {}", path.display()))
}

/// Every point's finished runs, read back from the folder, summarised, in
/// matrix order; points without a report are left out.
pub fn collect(sweep: &Sweep, layout: &Layout) -> Vec<results::Summary> {
    sweep
        .points()
        .iter()
        .filter_map(|p| {
            let runs: Vec<Run> = (0..sweep.repeat)
                .filter_map(|rep| crate::report::read(&layout.report(p, rep)).ok())
                .map(|doc| Run::from_report(&doc))
                .collect();
            results::summarise(p, &runs)
        })
        .collect()
}
