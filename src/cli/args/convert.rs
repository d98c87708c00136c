//! `rsam convert` flags.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The official checkpoint (*.pt / *.pth, or a safetensors file).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// config.json in the rsam schema.
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    pub config: Option<PathBuf>,
    /// A built-in config instead of --config: base-plus-800 or base-plus-1024.
    #[arg(long)]
    pub preset: Option<String>,
    /// tokenizer.json, vocab.txt, or a folder holding either (the official tokenizer_bert/).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output model directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype of the weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}
