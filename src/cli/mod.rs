//! The `rsam` command line: every command's flags ([`args`]) and what each
//! command does with them, one file per command. `main.rs` only parses and
//! dispatches; everything a command prints goes through [`output`].

pub mod args;
mod bench;
mod convert;
mod eval;
mod geo;
mod inspect;
pub mod output;
mod segment;
mod segment_windowed;
mod serve;

use clap::{Parser, Subcommand};

use output::print_json;

#[derive(Parser, Debug)]
#[command(name = "rsam", version, about = "RSAM referring remote-sensing image segmentation")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Segment what a sentence (and/or clicks, a box, a mask prompt) describes.
    Segment(args::SegmentArgs),
    /// Print a model directory's config, parameter counts and ignored keys.
    Inspect(args::InspectArgs),
    /// Turn an official RSAM or SAM 2 checkpoint (or SAM 2 + BERT) into a model directory.
    Convert(args::ConvertArgs),
    /// Measure encode / decode latency and memory with random weights.
    Bench(args::BenchArgs),
    /// Run the HTTP service.
    Serve(args::ServeArgs),
    /// Score a model (or saved predictions) on a RISORS-format dataset.
    Eval(args::EvalArgs),
    /// Train RSAM (from scratch or from a model directory) on a RISORS-format dataset.
    Train(args::TrainArgs),
    /// Generate a synthetic RISORS-format referring dataset.
    Synth(args::SynthArgs),
    /// GeoTIFF helpers: info, stretch, vectorize, mask-tiff, coords (used by the GDAL tests).
    #[command(hide = true)]
    Geo(args::GeoArgs),
}

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Segment(args) => segment::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Train(args) => print_json(&crate::train::run(&args)?),
        Command::Synth(args) => print_json(&crate::synth::run(&args)?),
        Command::Geo(args) => geo::run(args),
    }
}

/// The error and its causes on one line (a multi-key weights report keeps
/// its lines: each names one key).
pub fn format_error(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}
