//! `datastorm report show`: a report as the end-of-run summary.

use super::Report;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ShowArgs {
    /// The report (`produce --report FILE`, or `report merge`).
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
}

pub fn main(args: ShowArgs) -> anyhow::Result<()> {
    let r = Report::load(&args.report)?;
    outln!("{}", crate::report::summary::saved(&r.doc, &r.name()));
    Ok(())
}
