//! A sweep's chart (SVG): one bar per point for throughput, and p50/p99
//! per point for latency, the best points marked.

use super::results::{best, Summary};
use crate::cli::report::plot::{register_font, FONT};
use crate::render::short_rate;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordu32;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Why a sweep chart was not written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("{}: a chart is .svg or .png", .0.display())]
    Extension(std::path::PathBuf),
    /// plotters' message: its error type is generic over the backend.
    #[error("drawing the sweep chart failed: {0}")]
    Draw(String),
    /// The plot font could not be registered.
    #[error("{0}")]
    Font(String),
}

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// Draws `rows` into `path`: SVG or PNG by the extension.
pub fn write(
    path: &Path,
    title: &str,
    flags: &[String],
    rows: &[Summary],
) -> Result<(), ChartError> {
    register_font().map_err(ChartError::Font)?;
    let size = ((240 + 70 * rows.len() as u32).clamp(900, 4000), 900);
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(&root, title, flags, rows, Text { bitmap: false })?;
            root.present().map_err(err)
        }
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(&root, title, flags, rows, Text { bitmap: true })?;
            root.present().map_err(err)
        }
        _ => Err(ChartError::Extension(path.to_path_buf())),
    }
}

/// plotters' bitmap text drops most of a space (see `report plot`); two
/// spaces read as one there.
#[derive(Clone, Copy)]
struct Text {
    bitmap: bool,
}

impl Text {
    fn t(self, s: &str) -> String {
        if self.bitmap {
            s.replace(' ', "  ")
        } else {
            s.to_owned()
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    flags: &[String],
    rows: &[Summary],
    l: Text,
) -> Result<(), ChartError> {
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(&l.t(title), (FONT, 22)).map_err(err)?;
    let panels = body.split_evenly((2, 1));
    let (bt, bl) = best(rows);
    let x_desc = l.t(&flags.join(" / "));
    throughput(&panels[0], rows, bt, &x_desc, l)?;
    latency(&panels[1], rows, bl, &x_desc, l)
}

/// One segment per point. plotters' segmented `0..n` has n + 1 segments
/// (the range's end is a segment too), so the range ends at the last point.
fn segments(n: u32) -> SegmentedCoord<RangedCoordu32> {
    // A one-point chart keeps an empty second segment: an empty range
    // would have no width to map onto.
    (0..n.saturating_sub(1).max(1)).into_segmented()
}

fn x_labels(rows: &[Summary]) -> impl Fn(&SegmentValue<u32>) -> String + '_ {
    move |v| match v {
        SegmentValue::CenterOf(i) => rows
            .get(*i as usize)
            .map(|s| s.point.short_label())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[Summary],
    best: Option<usize>,
    x_desc: &str,
    l: Text,
) -> Result<(), ChartError> {
    let n = rows.len() as u32;
    let y_max = rows.iter().map(|s| s.records_per_s).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            l.t("Throughput: acknowledged records per second (median of runs)"),
            (FONT, 18),
        )
        .margin(10)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(segments(n), 0.0..y_max)
        .map_err(err)?;
    let labels = x_labels(rows);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&labels)
        .x_desc(x_desc)
        .y_desc(l.t("records/s"))
        .y_label_formatter(&|y| short_rate(*y))
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, s)| {
            let i = i as u32;
            let color = match (Some(i as usize) == best, s.clean()) {
                (true, _) => GREEN.mix(0.8).filled(),
                (false, true) => BLUE.mix(0.6).filled(),
                (false, false) => RED.mix(0.5).filled(),
            };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), s.records_per_s),
                ],
                color,
            );
            bar.set_margin(0, 0, 6, 6);
            bar
        }))
        .map_err(err)?;
    Ok(())
}

fn latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[Summary],
    best: Option<usize>,
    x_desc: &str,
    l: Text,
) -> Result<(), ChartError> {
    let n = rows.len() as u32;
    let ms = |us: u64| us as f64 / 1e3;
    let y_max = rows.iter().map(|s| ms(s.p99_us)).fold(0.01, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            l.t("Latency: p99 (wide bars) and p50 (narrow, dark), ms (median of runs)"),
            (FONT, 18),
        )
        .margin(10)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(segments(n), 0.0..y_max)
        .map_err(err)?;
    let labels = x_labels(rows);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&labels)
        .x_desc(x_desc)
        .y_desc("ms")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    // p99 in magenta (green for the best point), p50 as a narrow dark bar
    // in front of it.
    let bar = |i: usize, v: u64, style: ShapeStyle, inset: u32| {
        let i = i as u32;
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), ms(v)),
            ],
            style,
        );
        bar.set_margin(0, 0, inset, inset);
        bar
    };
    chart
        .draw_series(rows.iter().enumerate().map(|(i, s)| {
            let color = if Some(i) == best { GREEN } else { MAGENTA };
            bar(i, s.p99_us, color.mix(0.7).filled(), 6)
        }))
        .map_err(err)?;
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, s)| bar(i, s.p50_us, BLACK.mix(0.55).filled(), 22)),
        )
        .map_err(err)?;
    Ok(())
}
