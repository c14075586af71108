//! `datastorm verify`: read a topic back and prove what landed.

use crate::exit;
use crate::render::group;
use clap::Args;
use datastorm_shards::verify::{verify, Producer, VerifyPlan, VerifyReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct VerifyArgs {
    /// Brokers to bootstrap from (host:port, comma-separated).
    #[arg(long, short = 'b', value_delimiter = ',', required = true)]
    pub bootstrap: Vec<String>,
    /// The topic to read (records produced with --sequence-header).
    #[arg(long, short = 't')]
    pub topic: String,
    /// The producer's JSON report(s): every record they acknowledged must be
    /// in the topic (repeat for several instances).
    #[arg(long = "report", value_name = "FILE")]
    pub reports: Vec<PathBuf>,
    /// Write the findings as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Give up reading after this long.
    #[arg(long, default_value = "300s", value_parser = crate::units::parse_duration)]
    pub timeout: Duration,
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
}

pub fn main(args: VerifyArgs) -> u8 {
    let mut acked = BTreeMap::new();
    for path in &args.reports {
        if let Err(e) = acked_from_report(path, &args.topic, &mut acked) {
            eprintln!("datastorm verify: {e}");
            return exit::USAGE;
        }
    }
    let security = match args.security.to_config() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("datastorm verify: {e}");
            return exit::USAGE;
        }
    };
    let plan = VerifyPlan {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        client_id: datastorm_engine::DEFAULT_CLIENT_ID.to_owned(),
        connect_timeout: args.connect_timeout,
        timeout: args.timeout,
        security,
    };
    let mut report = match verify(&plan) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("datastorm verify: {e}");
            return exit::USAGE;
        }
    };
    if !args.reports.is_empty() {
        report.check_acked(&acked);
    }
    outln!("{}", summary(&report, !args.reports.is_empty()));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("datastorm verify: could not write {}: {e}", path.display());
            return exit::RUN_FAILED;
        }
    }
    if report.exact() && report.records_read > 0 {
        exit::OK
    } else {
        exit::RUN_FAILED
    }
}

/// The acknowledged ranges a produce report lists for `topic`.
fn acked_from_report(
    path: &Path,
    topic: &str,
    out: &mut BTreeMap<Producer, Vec<(u64, u64)>>,
) -> Result<(), String> {
    let doc = crate::report::read(path).map_err(|e| e.to_string())?;
    let Some(stream) = doc.config.streams.iter().position(|s| s.topic == topic) else {
        return Err(format!(
            "{} produced no stream to topic {topic:?}",
            path.display()
        ));
    };
    for s in doc.shards.iter().filter(|s| s.stream == stream) {
        let Some(acked) = &s.acked_sequences else {
            return Err(format!(
                "{} has no acked_sequences: produce it again with this datastorm",
                path.display()
            ));
        };
        for (p, ranges) in acked {
            let partition: i32 = p.parse().map_err(|_| format!("bad partition {p:?}"))?;
            out.entry((s.instance, s.index as u32, partition))
                .or_default()
                .extend(ranges.iter().copied());
        }
    }
    Ok(())
}

pub fn summary(r: &VerifyReport, with_acks: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "verify {}: {} records read from {} partitions; {} without a ds-seq header",
        r.topic,
        group(r.records_read),
        r.offsets.len(),
        group(r.without_header)
    );
    let _ = writeln!(
        s,
        "  {:>8} {:>5} {:>9} {:>12} {:>12} {:>8} {:>10} {:>12} {:>12}",
        "instance",
        "shard",
        "partition",
        "records",
        "max seq",
        "gaps",
        "duplicates",
        "out of order",
        "acked lost"
    );
    for ((instance, shard, partition), c) in &r.producers {
        let _ = writeln!(
            s,
            "  {:>8} {:>5} {:>9} {:>12} {:>12} {:>8} {:>10} {:>12} {:>12}",
            instance,
            shard,
            partition,
            group(c.records),
            c.max_seq.map(group).unwrap_or_else(|| "-".into()),
            group(c.gaps),
            group(c.duplicates),
            group(c.out_of_order),
            if with_acks {
                group(c.acked_missing)
            } else {
                "-".into()
            },
        );
    }
    let gaps: u64 = r.producers.values().map(|c| c.gaps).sum();
    let dups: u64 = r.producers.values().map(|c| c.duplicates).sum();
    let _ = write!(
        s,
        "  result: {}",
        if r.exact() && r.records_read > 0 {
            if with_acks {
                format!(
                    "every one of {} acknowledged records is there exactly once, no gaps, in order",
                    group(r.acked_checked)
                )
            } else {
                "every sequence is complete: no gaps, no duplicates, in order".into()
            }
        } else if r.records_read == 0 {
            "the topic is empty".into()
        } else {
            format!(
                "NOT exact: {} gaps, {} duplicates{}",
                group(gaps),
                group(dups),
                if with_acks {
                    format!(
                        ", {} of {} acknowledged records missing (lost)",
                        group(r.acked_missing),
                        group(r.acked_checked)
                    )
                } else {
                    String::new()
                }
            )
        }
    );
    s
}
