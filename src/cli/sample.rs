//! `datastorm sample`: print generated records as JSON.

use crate::exit;
use clap::Args;
use datastorm_shards::payload::avro;
use std::path::PathBuf;

#[derive(Args)]
pub struct SampleArgs {
    /// The Avro schema (.avsc) to generate from.
    pub schema: PathBuf,
    /// How many records.
    #[arg(short = 'n', long, default_value_t = 5)]
    pub count: usize,
    /// Seed for generated data; the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn main(args: SampleArgs) -> u8 {
    let schema = match avro::load_with_references(&args.schema) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("datastorm sample: {e}");
            return exit::USAGE;
        }
    };
    for record in avro::sample_json(&schema, args.seed, args.count) {
        outln!("{record}");
    }
    exit::OK
}
