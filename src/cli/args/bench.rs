//! `rsam bench` flags.

use super::DeviceArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A preset (SIZE-800 or SIZE-1024: tiny, small, base-plus, large) or a config.json path.
    #[arg(long, default_value = "base-plus-800")]
    pub config: String,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Image batch sizes for encode, comma-separated.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    pub encode_batches: Vec<usize>,
    /// Prompt batch sizes for decode on one cached image, comma-separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    pub decode_batches: Vec<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
}
