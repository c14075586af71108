//! `datastorm sink`: a blackhole broker.

use crate::exit;
use clap::Args;
use datastorm_engine::runtime::{allowed_cpus, resolve_cpus, CpuSpec};
use datastorm_engine::sink::{SinkConfig, SinkHandle};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// CPUs to serve on, one pinned executor each (e.g. `1` or `2-3`).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Partitions of a topic nobody created explicitly.
    #[arg(long, default_value_t = 8)]
    pub default_partitions: i32,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub duration: Option<Duration>,
}

pub fn main(args: SinkArgs) -> u8 {
    let cpus = match args.cpus.as_deref().map(str::parse::<CpuSpec>) {
        None => Vec::new(),
        Some(Ok(spec)) => match resolve_cpus(&spec, &allowed_cpus(), &[]) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("datastorm sink: {e}");
                return exit::USAGE;
            }
        },
        Some(Err(e)) => {
            eprintln!("datastorm sink: {e}");
            return exit::USAGE;
        }
    };
    let handle = match SinkHandle::start(SinkConfig {
        listen: args.listen,
        cpus: cpus.clone(),
        default_partitions: args.default_partitions,
        node_id: 0,
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("datastorm sink: {e}");
            return exit::USAGE;
        }
    };
    outln!(
        "datastorm sink listening on {} ({}); Ctrl-C prints what it received",
        handle.local_addr(),
        if cpus.is_empty() {
            "unpinned".to_string()
        } else {
            format!("CPUs {cpus:?}")
        }
    );
    let stop = super::stop_on_signals();
    let start = Instant::now();
    while !stop.load(Relaxed) && args.duration.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = handle.stop();
    outln!("{}", crate::render::sink_summary(&stats, start.elapsed()));
    exit::OK
}
