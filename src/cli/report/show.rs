//! `datastorm report show`: a report as the end-of-run summary.

use super::Report;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ShowArgs {
    /// The report (`produce --report FILE`, `report merge`, or `consume --report FILE`).
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
}

pub fn main(args: ShowArgs) -> anyhow::Result<()> {
    if let Some(c) = crate::report::read_consume(&args.report)? {
        let name = args.report.display().to_string();
        outln!("{}", crate::report::summary::consume_saved(&c, &name));
        return Ok(());
    }
    let r = Report::load(&args.report)?;
    outln!("{}", crate::report::summary::saved(&r.doc, &r.name()));
    Ok(())
}
