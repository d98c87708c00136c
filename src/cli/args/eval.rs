//! `rsam eval` flags.

use std::path::PathBuf;

/// `rsam eval` flags.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model directory to evaluate (config.json, weights, tokenizer).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Score saved masks instead of a model: a JSON list of {"image", "id", "segmentation"}.
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// RISORS-format dataset: JPEGImages/, Annotations/, RISORS_<split>.txt.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Which split list to read (RISORS_<split>.txt).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Correction clicks after the text-only prediction (paper Table 14); model mode only.
    #[arg(long, value_name = "K")]
    pub clicks: Option<usize>,
    /// Only the first N images of the split (quick runs).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", env = "RSAM_DEVICE")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32", env = "RSAM_DTYPE")]
    pub dtype: String,
    /// Largest image (and mask) accepted, in pixels.
    #[arg(long, default_value_t = crate::preprocess::DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
    /// Sentences decoded together in one decoder call (bounds memory, not results).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub batch: usize,
    /// Write the report as JSON (fractions in [0, 1]).
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Write the report as Markdown tables (percent, paper layout).
    #[arg(long, value_name = "OUT")]
    pub markdown: Option<PathBuf>,
    /// Model mode: write the text-only masks in the --predictions format.
    #[arg(long, value_name = "FILE")]
    pub save_predictions: Option<PathBuf>,
}
