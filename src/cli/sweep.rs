//! `datastorm sweep`: flags (or a matrix file) with lists of values to a
//! sweep, progress lines, and the table, CSV and chart at the end.

use crate::exit;
use crate::sweep::{self, chart, matrix::Axis, results, Ended, Event, Layout, Sweep, SweepError};
use clap::{Args, Parser};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(
    after_help = "Every flag after `--` is given to each point's `datastorm produce` \
    (the target and the workload), e.g. `-- --bootstrap 127.0.0.1:9092 --record-size 200`. \
    Without --bootstrap each point starts its own embedded sink.\n\n\
    A point is finished when its report exists in OUT/points; running the same command again \
    skips finished points (Ctrl-C stops cleanly and the interrupted point runs again). \
    Exit codes: 0 every point ran; 1 a point failed or the sweep was interrupted; 2 bad flags."
)]
pub struct SweepArgs {
    /// The folder for the sweep: sweep.json, points/ (one report and log per
    /// run), sweep.csv and the chart, sweep.svg and sweep.png. Resuming uses the
    /// same folder.
    #[arg(long, short = 'o', default_value = "sweep", value_name = "DIR")]
    pub out: PathBuf,
    /// How long each point runs (produce --duration).
    #[arg(long, short = 'd', value_name = "DURATION")]
    pub duration: Option<String>,
    /// Runs of each point; the table shows medians and the throughput
    /// spread. All points run once, then all again, so drift spreads evenly.
    #[arg(long)]
    pub repeat: Option<usize>,
    /// A TOML matrix: `duration`, `repeat`, `args` (produce flags for every
    /// point) and a `[vary]` table of flag = list of values. Flags given here add
    /// axes and win over the file's settings.
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
    /// Sweep any produce flag: FLAG=V1,V2,... (or V1;V2 for values with
    /// commas, e.g. cpus=0-1;2-3). Repeatable.
    #[arg(long, value_name = "FLAG=LIST")]
    pub vary: Vec<String>,
    /// Values of --batch-size to sweep, e.g. 16KiB,64KiB,1MiB.
    #[arg(long, value_name = "LIST")]
    pub batch_size: Option<String>,
    /// Values of --linger, e.g. 0ms,1ms,5ms.
    #[arg(long, value_name = "LIST")]
    pub linger: Option<String>,
    /// Values of --cores, e.g. 1,2,4.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,
    /// Values of --max-in-flight, e.g. 1,5.
    #[arg(long, value_name = "LIST")]
    pub max_in_flight: Option<String>,
    /// Values of --compression, e.g. none,lz4,zstd.
    #[arg(long, value_name = "LIST")]
    pub compression: Option<String>,
    /// Values of --record-size, e.g. 100,1000.
    #[arg(long, value_name = "LIST")]
    pub record_size: Option<String>,
    /// Values of --acks, e.g. 1,all.
    #[arg(long, value_name = "LIST")]
    pub acks: Option<String>,
    /// Values of --rate, e.g. 100k,500k (p99 compares fairly at a fixed rate).
    #[arg(long, value_name = "LIST")]
    pub rate: Option<String>,
    /// Values of --partitions (with --create-topic or the embedded sink).
    #[arg(long, value_name = "LIST")]
    pub partitions: Option<String>,
    /// Values of --ring-depth (io_uring entries per executor), e.g. 64,256.
    #[arg(long, value_name = "LIST")]
    pub ring_depth: Option<String>,
    /// Values of --spin-before-park, e.g. 0ms,10ms.
    #[arg(long, value_name = "LIST")]
    pub spin_before_park: Option<String>,
    /// Values of --preempt-timer, e.g. 100us,500us,2ms.
    #[arg(long, value_name = "LIST")]
    pub preempt_timer: Option<String>,
    /// Values of --socket-send-buffer, e.g. 256KiB,4MiB.
    #[arg(long, value_name = "LIST")]
    pub socket_send_buffer: Option<String>,
    /// Values of --nodelay, e.g. true,false.
    #[arg(long, value_name = "LIST")]
    pub nodelay: Option<String>,
    /// Flags for every point's produce (after `--`).
    #[arg(last = true, value_name = "PRODUCE FLAGS")]
    pub produce: Vec<String>,
}

/// A matrix file (`--matrix`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    duration: Option<String>,
    repeat: Option<usize>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    vary: BTreeMap<String, Vec<toml::Value>>,
}

/// `produce`'s own parser, to catch a bad value before the sweep starts.
#[derive(Parser)]
#[command(name = "datastorm produce")]
struct ProduceCheck {
    #[command(flatten)]
    _args: super::produce::ProduceArgs,
}

pub fn main(args: SweepArgs) -> u8 {
    let sweep = match to_sweep(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("datastorm sweep: {e}");
            return exit::USAGE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("datastorm sweep: cannot find the datastorm binary to run points: {e}");
            return exit::USAGE;
        }
    };
    let layout = Layout {
        dir: args.out.clone(),
    };
    if let Err(e) = sweep.prepare(&layout) {
        eprintln!("datastorm sweep: {e}");
        return exit::USAGE;
    }
    let points = sweep.points();
    let total = points.len() * sweep.repeat;
    let done = (0..sweep.repeat)
        .flat_map(|r| points.iter().map(move |p| (p, r)))
        .filter(|(p, r)| layout.report(p, *r).exists())
        .count();
    outln!(
        "datastorm sweep: {} point(s) x {} run(s) of {} into {}{}",
        points.len(),
        sweep.repeat,
        sweep.duration,
        layout.dir.display(),
        if done > 0 {
            format!(" ({done} of {total} finished earlier, skipped)")
        } else {
            String::new()
        }
    );
    let stop = super::stop_on_signals();
    let mut failed = 0;
    let ended = sweep::run(&sweep, &layout, &exe, &stop, |ev| match ev {
        Event::Started {
            point,
            rep,
            index,
            total,
        } => outln!("[{index}/{total}] {} (run {})", point.label(), rep + 1),
        Event::Finished { run, took } => outln!(
            "        {} records/s, {:.1} MB/s, p99 {}{} ({:.1}s)",
            crate::render::group(run.records_per_s.round() as u64),
            run.mb_per_s,
            crate::render::latency(run.p99_us),
            run.failure
                .as_deref()
                .map_or(String::new(), |f| format!(", FAILED: {f}")),
            took.as_secs_f64()
        ),
        Event::Failed { point, rep, why } => {
            failed += 1;
            eprintln!(
                "datastorm sweep: {} (run {}) failed: {why} (log: {})",
                point.label(),
                rep + 1,
                layout.log(point, rep).display()
            );
        }
    });
    finish(&sweep, &layout, ended, failed)
}

fn finish(sweep: &Sweep, layout: &Layout, ended: Ended, failed: usize) -> u8 {
    let rows = sweep::collect(sweep, layout);
    let mut code = exit::OK;
    if ended == Ended::Interrupted {
        outln!("interrupted: run the same command again to resume (finished points are kept)");
        code = exit::RUN_FAILED;
    }
    if failed > 0 {
        code = exit::RUN_FAILED;
    }
    if rows.is_empty() {
        outln!("no finished points yet");
        return code;
    }
    if rows
        .iter()
        .any(|r| r.failure.is_some() || r.records_failed > 0)
    {
        code = exit::RUN_FAILED;
    }
    outln!("\n{}", results::table(&rows));
    let flags: Vec<String> = sweep.axes.iter().map(|a| a.flag.clone()).collect();
    match std::fs::write(layout.csv(), results::csv(&flags, &rows)) {
        Ok(()) => outln!("\ntable written to {}", layout.csv().display()),
        Err(e) => {
            eprintln!(
                "datastorm sweep: could not write {}: {e}",
                layout.csv().display()
            );
            code = exit::RUN_FAILED;
        }
    }
    let title = format!("datastorm sweep: {}", dir_name(&layout.dir));
    let charts = layout.charts();
    match charts
        .iter()
        .try_for_each(|path| chart::write(path, &title, &flags, &rows))
    {
        Ok(()) => outln!(
            "chart written to {} and {}",
            charts[0].display(),
            charts[1].display()
        ),
        Err(e) => {
            eprintln!("datastorm sweep: {e}");
            code = exit::RUN_FAILED;
        }
    }
    let (bt, bl) = results::best(&rows);
    let describe = |i: usize| {
        let s = &rows[i];
        format!(
            "{} ({} records/s, p99 {})",
            s.point.label(),
            crate::render::group(s.records_per_s.round() as u64),
            crate::render::latency(s.p99_us)
        )
    };
    match bt {
        Some(i) => outln!("best throughput: {}", describe(i)),
        None => outln!("best throughput: none (no point acknowledged every record)"),
    }
    if let Some(i) = bl {
        outln!("best p99 latency: {}", describe(i));
    }
    code
}

fn dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

fn to_sweep(a: &SweepArgs) -> Result<Sweep, SweepError> {
    let mut axes = Vec::new();
    let mut duration = None;
    let mut repeat = None;
    let mut produce = Vec::new();
    if let Some(path) = &a.matrix {
        let file = read_matrix(path)?;
        axes = matrix_axes(path, &file.vary)?;
        duration = file.duration;
        repeat = file.repeat;
        produce = file.args;
    }
    add_flag_axes(a, &mut axes)?;
    produce.extend(a.produce.iter().cloned());
    let duration = a
        .duration
        .clone()
        .or(duration)
        .unwrap_or_else(|| "10s".into());
    if crate::units::parse_duration(&duration)?.is_zero() {
        return Err(SweepError::ZeroDuration);
    }
    if axes.is_empty() {
        return Err(SweepError::NothingToSweep);
    }
    let sweep = Sweep {
        schema: sweep::SCHEMA.into(),
        duration,
        repeat: a.repeat.or(repeat).unwrap_or(1),
        axes,
        args: produce,
    };
    sweep.validate()?;
    check_points(&sweep)?;
    Ok(sweep)
}

fn read_matrix(path: &Path) -> Result<MatrixFile, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::ReadMatrix {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| SweepError::Matrix {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The axes of a matrix file's `[vary]` table, whose values may be TOML
/// strings, numbers or booleans.
fn matrix_axes(
    path: &Path,
    vary: &BTreeMap<String, Vec<toml::Value>>,
) -> Result<Vec<Axis>, SweepError> {
    let mut axes = Vec::new();
    for (flag, values) in vary {
        let values = values
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                _ => Err(SweepError::VaryValue {
                    path: path.to_path_buf(),
                    flag: flag.clone(),
                }),
            })
            .collect::<Result<Vec<String>, SweepError>>()?;
        axes.push(Axis::from_values(flag, values)?);
    }
    Ok(axes)
}

/// The axes the flags give (the named ones, then each --vary); each
/// replaces an axis of the same flag.
fn add_flag_axes(a: &SweepArgs, axes: &mut Vec<Axis>) -> Result<(), SweepError> {
    let named = [
        ("batch-size", &a.batch_size),
        ("linger", &a.linger),
        ("cores", &a.cores),
        ("max-in-flight", &a.max_in_flight),
        ("compression", &a.compression),
        ("record-size", &a.record_size),
        ("acks", &a.acks),
        ("rate", &a.rate),
        ("partitions", &a.partitions),
        ("ring-depth", &a.ring_depth),
        ("spin-before-park", &a.spin_before_park),
        ("preempt-timer", &a.preempt_timer),
        ("socket-send-buffer", &a.socket_send_buffer),
        ("nodelay", &a.nodelay),
    ];
    for (flag, values) in named {
        if let Some(v) = values {
            axes.retain(|x: &Axis| x.flag != flag);
            axes.push(Axis::new(flag, v)?);
        }
    }
    for spec in &a.vary {
        let axis = Axis::parse(spec)?;
        axes.retain(|x| x.flag != axis.flag);
        axes.push(axis);
    }
    Ok(())
}

/// Every point's flags must parse as produce's: a typo fails now, not an
/// hour into the sweep.
fn check_points(sweep: &Sweep) -> Result<(), SweepError> {
    for p in sweep.points() {
        let mut argv = vec![
            "produce".to_owned(),
            "--duration".into(),
            sweep.duration.clone(),
        ];
        argv.extend(p.args());
        argv.extend(sweep.args.iter().cloned());
        if let Err(e) = ProduceCheck::try_parse_from(&argv) {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            return Err(SweepError::Point {
                label: p.label(),
                reason: first.trim_start_matches("error: ").to_owned(),
            });
        }
    }
    Ok(())
}
