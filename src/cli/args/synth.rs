//! `rsam synth` flags.

use std::path::PathBuf;

/// The default of `--splits`.
pub const DEFAULT_SPLITS: &str = "train=0.8,val=0.1,test=0.1";

/// `rsam synth` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output dataset directory (created if missing; files in it are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of images to generate.
    #[arg(long, value_name = "N")]
    pub images: usize,
    /// Image side in pixels (64 to 4096); everything in a scene scales with it.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Random seed: the same seed and flags give byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Split fractions NAME=FRACTION,... over train, val, test, summing to 1.
    #[arg(long, default_value = DEFAULT_SPLITS)]
    pub splits: String,
}
