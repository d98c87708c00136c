//! `rsam bench`: encode / decode latency and memory on random weights.

use std::path::Path;

use super::args::BenchArgs;
use super::output::print_line;
use crate::RsamConfig;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = match RsamConfig::preset(&args.config) {
        Some(c) => c,
        None => RsamConfig::from_file(Path::new(&args.config))?,
    };
    let options = args.device.load_options()?;
    let report = crate::bench::run(&crate::bench::BenchOptions {
        config,
        device: options.device,
        dtype: options.dtype,
        iters: args.iters,
        warmup: args.warmup,
        encode_batches: args.encode_batches,
        decode_batches: args.decode_batches,
    })?;
    for t in &report.timings {
        eprintln!(
            "{:<24} batch {:>3}: median {:>9.2} ms (min {:.2}, max {:.2}), {:.1}/s",
            t.name, t.batch, t.median_ms, t.min_ms, t.max_ms, t.per_second
        );
    }
    print_line(&serde_json::to_string_pretty(&report)?)
}
