//! `datastorm`: a thread-per-core load generator for Apache Kafka.
//!
//! This binary is a thin layer: it turns flags into a run plan, calls the
//! engine, and renders what comes back.

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod metrics;
mod render;
mod report;
mod runfile;
mod sweep;
mod timeline;
mod tune;
mod units;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use std::process::ExitCode;

/// Exit codes, also listed in `--help`.
pub mod exit {
    /// The run finished and every record was acknowledged.
    pub const OK: u8 = 0;
    /// The run started but failed midway (broker errors, lost connection);
    /// what was measured is still printed and written.
    pub const RUN_FAILED: u8 = 1;
    /// Bad flags, or the cluster cannot be used (unreachable, topic missing).
    pub const USAGE: u8 = 2;
}

#[derive(clap::Parser)]
#[command(
    name = "datastorm",
    version,
    about = "A thread-per-core load generator for Apache Kafka",
    long_about = "DataStorm produces records to Apache Kafka from one pinned io_uring executor \
                  per core and measures what the cluster acknowledges.\n\n\
                  Run `datastorm produce` with no flags to produce to an embedded sink broker \
                  for 10 seconds and print a report.",
    after_help = "Exit codes: 0 success; 1 the run failed after it started (the report is still \
                  written); 2 bad flags or an unusable cluster (unreachable, topic missing)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce records to a topic and report throughput and latency.
    Produce(Box<cli::produce::ProduceArgs>),
    /// Read a topic from one pinned executor per core: records/s, lag,
    /// fetch and end-to-end latency (records stamped with --e2e-header).
    Consume(Box<cli::consume::ConsumeArgs>),
    /// Run a Kafka-speaking blackhole broker that counts what it receives.
    Sink(cli::sink::SinkArgs),
    /// Print records generated from an Avro schema, as JSON lines.
    Sample(cli::sample::SampleArgs),
    /// Read, compare, plot and merge JSON run reports (`produce --report`).
    Report(cli::report::ReportArgs),
    /// Read a topic back and check the sequence headers: nothing lost,
    /// doubled or out of order (and every acknowledged record there).
    Verify(cli::verify::VerifyArgs),
    /// Check the host's kernel and network settings against a tuning
    /// profile (tuning/profiles).
    Tune(cli::tune::TuneArgs),
    /// Run `produce` for every combination of lists of settings, then
    /// tabulate, chart and name the best (resumable).
    Sweep(Box<cli::sweep::SweepArgs>),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DATASTORM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let code = match cli.command {
        Command::Produce(args) => {
            let flags = matches
                .subcommand_matches("produce")
                .expect("produce was parsed");
            cli::produce::main(*args, &cli::settings::given_on_command_line(flags))
        }
        Command::Sink(args) => cli::sink::main(args),
        Command::Sample(args) => cli::sample::main(args),
        Command::Report(args) => cli::report::main(args),
        Command::Consume(args) => cli::consume::main(*args),
        Command::Verify(args) => cli::verify::main(args),
        Command::Tune(args) => cli::tune::main(args),
        Command::Sweep(args) => cli::sweep::main(*args),
    };
    ExitCode::from(code)
}
