//! `datastorm report`: read JSON run reports (`datastorm.run/2`, and
//! `datastorm.run/1` where the older format has what is asked for) into
//! the report types of `crate::report`.
//!
//! Every subcommand works from the JSON alone, so reports can be read on
//! another machine, long after the run.

mod compare;
mod merge;
pub(crate) mod plot;
mod show;

use crate::exit;
use crate::report::{ReportError, RunReport};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Print a run report as the end-of-run summary.
    Show(show::ShowArgs),
    /// Put several reports side by side, with each one's ratio to the first.
    Compare(compare::CompareArgs),
    /// Draw throughput and latency over time and the latency percentile
    /// curve, as SVG or PNG (by the output's extension).
    Plot(plot::PlotArgs),
    /// Combine the reports of the instances of one run (`--instance I
    /// --instances N`) into one: totals summed, histograms added.
    Merge(merge::MergeArgs),
    /// Print the JSON Schema of the reports this build writes
    /// (docs/report.schema.json).
    #[command(hide = true)]
    Schema,
}

pub fn main(args: ReportArgs) -> u8 {
    let (name, result) = match args.command {
        ReportCommand::Show(a) => ("show", show::main(a)),
        ReportCommand::Compare(a) => ("compare", compare::main(a)),
        ReportCommand::Plot(a) => ("plot", plot::main(a).map_err(anyhow::Error::msg)),
        ReportCommand::Merge(a) => ("merge", merge::main(a)),
        ReportCommand::Schema => {
            outln!("{}", crate::report::schema::json().trim_end());
            ("schema", Ok(()))
        }
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("datastorm report {name}: {e:#}");
            exit::USAGE
        }
    }
}

/// A report read from a file.
pub(crate) struct Report {
    pub path: PathBuf,
    pub doc: RunReport,
}

impl Report {
    pub fn load(path: &Path) -> Result<Report, ReportError> {
        Ok(Report {
            path: path.to_owned(),
            doc: crate::report::read(path)?,
        })
    }

    /// The file name, for headings.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}
