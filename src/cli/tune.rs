//! `datastorm tune check`: the host's live settings against a tuning
//! profile (tuning/profiles), as a table or JSON.

use crate::exit;
use crate::tune::{self, profile::Profile, Status};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct TuneArgs {
    #[command(subcommand)]
    pub command: TuneCommand,
}

#[derive(Subcommand)]
pub enum TuneCommand {
    /// Read the live sysctls, CPU governor, SMT, NIC interrupt affinity,
    /// io_uring, memlock limit and transparent huge pages, and compare them
    /// with a profile: setting, current, recommended, why. Changes nothing;
    /// `tuning/apply PROFILE` applies a profile (dry run by default).
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// A built-in profile (throughput, latency) or a .profile file.
    #[arg(
        long,
        short = 'p',
        default_value = "throughput",
        value_name = "NAME|FILE"
    )]
    pub profile: String,
    /// Print the checks as JSON (an array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print each setting's source under its row.
    #[arg(long)]
    pub sources: bool,
    /// Exit 1 when a setting differs from the profile (for scripts and CI).
    #[arg(long)]
    pub strict: bool,
}

pub fn main(args: TuneArgs) -> u8 {
    match args.command {
        TuneCommand::Check(a) => check(a),
    }
}

fn check(a: CheckArgs) -> u8 {
    let profile = match Profile::load(&a.profile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("datastorm tune check: {e}");
            return exit::USAGE;
        }
    };
    let checks = tune::check(&profile);
    if a.json {
        let rows: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "setting": c.setting.name,
                    "current": c.current,
                    "recommended": c.setting.recommended(),
                    "status": c.status.word().to_ascii_lowercase(),
                    "why": c.setting.why,
                    "source": c.setting.source,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON of strings")
        );
    } else {
        outln!("{}", table(&profile.name, &checks, a.sources));
    }
    let differs = checks
        .iter()
        .filter(|c| c.status == Status::Differs)
        .count();
    if a.strict && differs > 0 {
        exit::RUN_FAILED
    } else {
        exit::OK
    }
}

fn table(profile: &str, checks: &[tune::Check], sources: bool) -> String {
    let rows: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            [
                c.setting.name.clone(),
                c.current.clone().unwrap_or_else(|| "n/a".into()),
                c.setting.recommended(),
                c.status.word().into(),
            ]
        })
        .collect();
    let head = ["setting", "current", "recommended", "status"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2), width(3)];
    let line = |r: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
        .trim_end()
        .to_owned()
    };
    let mut out = vec![
        format!("tuning profile: {profile}"),
        line([head[0], head[1], head[2], head[3], "why"]),
    ];
    for (r, c) in rows.iter().zip(checks) {
        out.push(line([&r[0], &r[1], &r[2], &r[3], &c.setting.why]));
        if sources {
            out.push(format!("{:w$}  source: {}", "", c.setting.source, w = w[0]));
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push(format!(
        "{} ok, {} differ, {} not on this host, {} reported only{}",
        count(Status::Ok),
        count(Status::Differs),
        count(Status::Unknown),
        count(Status::Info),
        if count(Status::Differs) > 0 {
            format!("; `tuning/apply {profile}` shows the changes (dry run)")
        } else {
            String::new()
        }
    ));
    out.join("\n")
}
