//! `datastorm report plot`: a run report drawn as SVG or PNG.
//!
//! Three panels: acknowledged records per second against the target, the
//! per-second latency (p50, p99, max; log scale), and the latency
//! percentile curve read from the stored histogram, on HdrHistogram's
//! "nines" axis (90%, 99%, 99.9%, ... evenly spaced), where tail latency
//! and coordinated omission show.
//!
//! Text is drawn with a font compiled into the binary (Ubuntu Light from
//! the `epaint_default_fonts` crate, through plotters' `ab_glyph`), so a
//! machine without fonts draws the same picture.

use super::Report;
use crate::render::latency;
use crate::render::short_rate;
use crate::report::{Distribution, Phase, TimelinePoint};
use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlotArgs {
    /// The report to draw.
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// The picture to write: `.svg` or `.png`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Width and height in pixels.
    #[arg(long, default_value = "1200x1300", value_parser = parse_size)]
    pub size: (u32, u32),
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parsed = s
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if (300..=10_000).contains(&w) && (300..=10_000).contains(&h) => Ok((w, h)),
        _ => Err(format!(
            "--size takes WIDTHxHEIGHT in pixels, 300 to 10000 each (e.g. 1200x1300), not '{s}'"
        )),
    }
}

pub(crate) const FONT: &str = "sans-serif";

/// Text as the backend should be given it. plotters' `ab_glyph` text
/// drawing (bitmaps) drops each glyph's left side bearing, which eats most
/// of a space at label sizes ("send delaymax"); two spaces read as one
/// there. SVG text is laid out by the viewer and keeps single spaces.
#[derive(Clone, Copy)]
struct Labels {
    bitmap: bool,
}

impl Labels {
    fn t(self, s: &str) -> String {
        if self.bitmap {
            s.replace(' ', "  ")
        } else {
            s.to_owned()
        }
    }
}

pub(crate) fn register_font() -> Result<(), String> {
    plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
        .map_err(|_| "the built-in font does not load".to_owned())
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing failed: {e}")
}

pub fn main(args: PlotArgs) -> Result<(), String> {
    let r = Report::load(&args.report).map_err(|e| e.to_string())?;
    let ext = args
        .output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    register_font()?;
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(&args.output, args.size).into_drawing_area();
            draw(&root, &r, Labels { bitmap: false })?;
            root.present().map_err(err)?;
        }
        Some("png") => {
            let root = BitMapBackend::new(&args.output, args.size).into_drawing_area();
            draw(&root, &r, Labels { bitmap: true })?;
            root.present().map_err(err)?;
        }
        _ => {
            return Err(format!(
                "{}: the output's extension picks the format, .svg or .png",
                args.output.display()
            ))
        }
    }
    outln!("plot written to {}", args.output.display());
    Ok(())
}

/// A timeline point's field as (elapsed seconds, value) pairs.
fn series(
    r: &Report,
    field: impl Fn(&TimelinePoint) -> Option<f64>,
    scale: f64,
) -> Vec<(f64, f64)> {
    r.doc
        .timeline
        .iter()
        .filter_map(|p| Some((p.elapsed_s, field(p)? * scale)))
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    l: Labels,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "{}: {} records/s, {:.1} MB/s, p99 {}",
        r.name(),
        short_rate(r.doc.results.totals.records_per_s),
        r.doc.results.totals.payload_mb_per_s,
        latency(r.doc.results.latency.percentiles.p99),
    );
    let body = root.titled(&l.t(&title), (FONT, 24)).map_err(err)?;
    let panels = body.split_evenly((3, 1));
    throughput(&panels[0], r, l)?;
    latency_over_time(&panels[1], r, l)?;
    percentile_curve(&panels[2], r, l)?;
    Ok(())
}

/// Dots on the points of a short timeline, where a line alone says little
/// (a run of a few seconds has a few points).
fn markers(pts: &[(f64, f64)], style: ShapeStyle) -> Vec<Circle<(f64, f64), u32>> {
    if pts.len() > 120 {
        return Vec::new();
    }
    pts.iter().map(|p| Circle::new(*p, 3, style)).collect()
}

/// Writes `text` in the middle of an empty panel with a caption.
fn empty_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    text: &str,
    l: Labels,
) -> Result<(), String> {
    let inner = area.titled(&l.t(caption), (FONT, 18)).map_err(err)?;
    let (w, h) = inner.dim_in_pixel();
    inner
        .draw_text(
            &l.t(text),
            &TextStyle::from((FONT, 16)).color(&BLACK.mix(0.6)),
            (w as i32 / 10, h as i32 / 2),
        )
        .map_err(err)
}

fn end_of_warmup(r: &Report) -> Option<f64> {
    r.doc
        .timeline
        .iter()
        .filter(|p| p.phase == Phase::Warmup)
        .map(|p| p.elapsed_s)
        .reduce(f64::max)
}

fn throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
    l: Labels,
) -> Result<(), String> {
    let caption = "Throughput: acknowledged records per second";
    let acked = series(r, |p| Some(p.records_per_s), 1.0);
    if acked.is_empty() {
        return empty_panel(area, caption, "no per-second timeline in this report", l);
    }
    let target = series(r, |p| p.target_per_s, 1.0);
    let x_max = acked.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_max = acked.iter().chain(&target).map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(l.t(caption), (FONT, 18))
        .margin(10)
        .margin_right(50)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(l.t("elapsed (s)"))
        .y_desc(l.t("records/s"))
        .y_label_formatter(&|y| short_rate(*y))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    if let Some(w) = end_of_warmup(r) {
        chart
            .draw_series([Rectangle::new(
                [(0.0, 0.0), (w, y_max)],
                BLACK.mix(0.08).filled(),
            )])
            .map_err(err)?
            .label(l.t("warm-up (left out of the results)"))
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLACK.mix(0.15).filled())
            });
    }
    chart
        .draw_series(markers(&acked, BLUE.filled()))
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(acked, BLUE.stroke_width(2)))
        .map_err(err)?
        .label(l.t("acked records/s"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if !target.is_empty() {
        chart
            .draw_series(DashedLineSeries::new(target, 8, 5, RED.stroke_width(2)))
            .map_err(err)?
            .label(l.t("target records/s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)
}

fn latency_over_time<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
    l: Labels,
) -> Result<(), String> {
    let caption = "Latency per second (intended send time to ack)";
    let ms = |f: fn(&TimelinePoint) -> u64| series(r, |p| Some(f(p) as f64), 1e-3);
    let lines = [
        ("p50", ms(|p| p.p50_us), GREEN.mix(0.9)),
        ("p99", ms(|p| p.p99_us), BLUE.mix(0.9)),
        ("max", ms(|p| p.max_us), RED.mix(0.9)),
        (
            "send delay max",
            ms(|p| p.send_delay_max_us),
            MAGENTA.mix(0.6),
        ),
    ];
    let positive = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter().copied().filter(|p| p.1 > 0.0).collect()
    };
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| positive(&l.1)).collect();
    if all.is_empty() {
        return empty_panel(
            area,
            caption,
            "no latency measured (acks=0, or nothing acknowledged)",
            l,
        );
    }
    let x_max = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 2.0;
    let hi = all.iter().map(|p| p.1).fold(0.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(l.t(caption), (FONT, 18))
        .margin(10)
        .margin_right(50)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, (lo.max(1e-3)..hi.max(lo * 10.0)).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(12)
        .x_desc(l.t("elapsed (s)"))
        .y_desc(l.t("latency (ms, log scale)"))
        .y_label_formatter(&log_label)
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (label, pts, color) in lines {
        let pts = positive(&pts);
        if pts.is_empty() {
            continue;
        }
        let style = color.stroke_width(2);
        chart
            .draw_series(markers(&pts, color.filled()))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(pts, style))
            .map_err(err)?
            .label(l.t(label))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

/// Labels on a log latency axis (ms) at 1, 2 and 5 of each decade only:
/// all nine are too close together to read.
fn log_label(ms: &f64) -> String {
    let mantissa = ms / 10f64.powf(ms.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 0.05)
    {
        latency((ms * 1e3).round() as u64)
    } else {
        String::new()
    }
}

/// "90%", "99%", "99.9%" for 1, 2, 3 nines; nothing between whole nines.
fn nines_label(x: f64) -> String {
    let n = x.round();
    if (x - n).abs() > 1e-6 || n < 0.0 {
        return String::new();
    }
    match n as usize {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        k => format!("99.{}%", "9".repeat(k - 2)),
    }
}

/// (nines, latency ms) points of a histogram's percentile curve, the nines
/// capped at `max_nines` (the last value sits at the cap).
fn curve(h: &hdrhistogram::Histogram<u64>, max_nines: f64) -> Vec<(f64, f64)> {
    h.iter_quantiles(5)
        .map(|v| {
            let left = 1.0 - v.quantile_iterated_to();
            let nines = if left <= 0.0 {
                max_nines
            } else {
                (-left.log10()).min(max_nines)
            };
            (nines, v.value_iterated_to() as f64 / 1e3)
        })
        .collect()
}

/// A distribution's stored histogram, when it has one that decodes.
fn stored(d: &Distribution) -> Option<hdrhistogram::Histogram<u64>> {
    d.decoded().and_then(Result::ok)
}

fn percentile_curve<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
    l: Labels,
) -> Result<(), String> {
    let caption = "Latency by percentile (whole run after the warm-up)";
    let Some(lat) = stored(&r.doc.results.latency).filter(|h| !h.is_empty()) else {
        let why = if r.doc.is_v1() {
            "a datastorm.run/1 report keeps no histogram"
        } else {
            "no latency measured (acks=0, or nothing acknowledged)"
        };
        return empty_panel(area, caption, why, l);
    };
    // As many nines as the records can show, 2 to 7.
    let max_nines = (lat.len() as f64).log10().ceil().clamp(2.0, 7.0);
    let mut lines = vec![("latency", curve(&lat, max_nines), BLUE)];
    if let Some(d) = r
        .doc
        .results
        .send_delay
        .as_ref()
        .and_then(stored)
        .filter(|h| !h.is_empty())
    {
        lines.push(("send delay", curve(&d, max_nines), MAGENTA));
    }
    let y_max = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(1e-3, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(l.t(caption), (FONT, 18))
        .margin(10)
        .margin_right(50)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..max_nines, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_nines as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .x_desc(l.t("percentile"))
        .y_desc(l.t("latency (ms)"))
        .y_label_formatter(&|y| latency((*y * 1e3) as u64))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (label, pts, color) in lines {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts, style))
            .map_err(err)?
            .label(l.t(label))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_labels() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(4.0), "99.99%");
        assert_eq!(nines_label(2.5), "");
        assert_eq!(log_label(&2.0), "2.0ms");
        assert_eq!(log_label(&0.5), "500us");
        assert_eq!(log_label(&7.0), "");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("800x600").unwrap(), (800, 600));
        assert!(parse_size("800").is_err());
        assert!(parse_size("10x10").is_err());
    }
}
