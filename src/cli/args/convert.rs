//! `rsam convert` flags.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// An official RSAM training checkpoint (*.pt / *.pth, or a safetensors file).
    #[arg(long, required_unless_present = "sam2", conflicts_with = "sam2")]
    pub checkpoint: Option<PathBuf>,
    /// An official SAM 2 / 2.1 checkpoint (sam2_hiera_*.pt, sam2.1_hiera_*.pt): alone, a SAM 2
    /// model directory; with --bert, the official pretrained start of RSAM training.
    #[arg(long)]
    pub sam2: Option<PathBuf>,
    /// With --sam2: BERT weights (pytorch_model.bin, model.safetensors, or their folder).
    #[arg(long, requires = "sam2")]
    pub bert: Option<PathBuf>,
    /// config.json: the rsam schema (--checkpoint; with --sam2 --bert also a preset name), or
    /// the sam2 schema (--sam2 alone: overrides the size recognised from the checkpoint).
    #[arg(long, conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// A built-in RSAM config instead of --config: SIZE-800 or SIZE-1024, SIZE one of tiny,
    /// small, base-plus, large.
    #[arg(long)]
    pub preset: Option<String>,
    /// tokenizer.json, vocab.txt, or a folder holding either (the official tokenizer_bert/);
    /// with --bert, default: the BERT folder's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// With --sam2 --bert: seed of the freshly initialised tensors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output model directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype of the weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}
