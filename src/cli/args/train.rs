//! `rsam train` flags. Defaults are the official configuration
//! (`rsam_b+_b.yaml`) where it has one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `rsam train` flags. Defaults are the official configuration
/// (`rsam_b+_b.yaml`) where it has one.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct TrainArgs {
    /// demo, SIZE-800 or SIZE-1024 (SIZE: tiny, small, base-plus, large), or a config.json path [default:
    /// demo]. Not with --init or --resume, which keep their model's config.
    #[arg(long)]
    pub config: Option<String>,
    /// Train at this input size instead of the config's (checked like a config).
    /// No weight depends on it (positional embeddings are interpolated), so
    /// `--init` with a larger size fine-tunes a model at a finer resolution.
    #[arg(long, value_name = "PIXELS")]
    #[serde(default)]
    pub image_size: Option<usize>,
    /// RISORS-format dataset (JPEGImages/, Annotations/, RISORS_<split>.txt).
    #[arg(long, value_name = "DIR")]
    pub dataset: PathBuf,
    /// Output model directory (config.json, model.safetensors, tokenizer,
    /// train/ with optimizer state and history), rewritten after each epoch.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Start from this model directory's weights and tokenizer (fine-tuning)
    /// instead of fresh ones.
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
    /// Tokenizer (tokenizer.json, vocab.txt, or a folder with one) when not
    /// fine-tuning; default: the dataset's vocab.txt (`rsam synth` writes one).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Continue the run in --out from its last completed epoch.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Images per step (official: 8).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Sentences per image per step (official max_num_objects_per_sample: 4).
    #[arg(long, default_value_t = 4)]
    pub sentences_per_image: usize,
    /// Sentences of other images added as negatives, Poisson mean per image
    /// (official: 1.0; use 0 for data with explicit negatives like rsam synth's).
    #[arg(long, default_value_t = 1.0)]
    pub negative_ratio: f64,
    /// Peak learning rate (official base_lr 5e-5, for fine-tuning SAM 2 / BERT weights).
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// The learning rate decays along a cosine to lr x this (official: 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub lr_end_ratio: f64,
    /// Learning-rate factor of the image encoder (official vision_lr / base_lr = 0.6).
    #[arg(long, default_value_t = 0.6)]
    pub vision_lr_scale: f64,
    /// Linear warm-up steps before the cosine.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Global gradient-norm clipping (official: 0.1; 0 disables).
    #[arg(long, default_value_t = 0.1)]
    pub grad_clip: f64,
    /// Keep BERT frozen (the official run freezes its pretrained BERT).
    #[arg(long)]
    pub freeze_text: bool,
    /// Correction clicks per sentence after the text-only prediction (SAM 2's
    /// interactive protocol; 0 = text only, the released RSAM setting).
    #[arg(long, default_value_t = 7)]
    pub correction_clicks: usize,
    /// Probability of a click drawn from the ground truth instead of the error.
    #[arg(long, default_value_t = 0.1)]
    pub click_from_gt: f64,
    /// Probability that a correction click is the evaluation's "center"
    /// click (the error pixel farthest from the error's edge, what
    /// `rsam eval --clicks` and most users do) instead of SAM 2's uniform
    /// draw from the error (official: 0).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub center_clicks: f64,
    /// Probability that a sentence is trained from clicks alone: its text
    /// is left out and a first click inside the object starts it. Teaches
    /// the model what a click means, which text-only starts barely do
    /// (official: 0, every prediction starts from the text).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub text_dropout: f64,
    /// Validation split scored with `rsam eval` after each epoch ("" skips it).
    #[arg(long, default_value = "val")]
    pub val_split: String,
    /// Correction clicks in the validation (reported per click).
    #[arg(long, default_value_t = 2)]
    pub val_clicks: usize,
    /// Only the first N validation images.
    #[arg(long, value_name = "N")]
    pub val_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many steps in total (quick runs and tests).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// cpu, cuda or cuda:N (training runs in f32).
    #[arg(long, default_value = "cpu", env = "RSAM_DEVICE")]
    pub device: String,
    #[arg(long, default_value_t = crate::preprocess::DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

impl TrainArgs {
    /// Checks the flags and their combinations; the message names them.
    pub fn check(&self) -> Result<(), String> {
        let usage = |m: String| Err(m);
        if self.epochs == 0 {
            return usage("--epochs must be at least 1".into());
        }
        if self.batch == 0 {
            return usage("--batch must be at least 1".into());
        }
        if self.sentences_per_image == 0 {
            return usage("--sentences-per-image must be at least 1".into());
        }
        for (name, v) in [
            ("--lr", self.lr),
            ("--weight-decay", self.weight_decay),
            ("--grad-clip", self.grad_clip),
        ] {
            if !v.is_finite() || v < 0.0 {
                return usage(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        for (name, v) in [
            ("--lr-end-ratio", self.lr_end_ratio),
            ("--click-from-gt", self.click_from_gt),
            ("--center-clicks", self.center_clicks),
            ("--text-dropout", self.text_dropout),
            ("--vision-lr-scale", self.vision_lr_scale),
        ] {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return usage(format!("{name} must be in [0, 1], got {v}"));
            }
        }
        if !self.negative_ratio.is_finite() || self.negative_ratio < 0.0 {
            return usage(format!("--negative-ratio must be >= 0, got {}", self.negative_ratio));
        }
        if self.init.is_some() && self.resume {
            return usage("--init and --resume are mutually exclusive: --resume continues from --out".into());
        }
        if self.config.is_some() && (self.init.is_some() || self.resume) {
            let from = if self.resume { "--resume" } else { "--init" };
            return usage(format!(
                "--config conflicts with {from}: the run keeps its model's config (--image-size changes the input size)"
            ));
        }
        if self.image_size.is_some() && self.resume {
            return usage("--image-size conflicts with --resume: a resumed run keeps its input size".into());
        }
        if self.init.is_some() && self.tokenizer.is_some() {
            return usage("--tokenizer conflicts with --init: fine-tuning keeps the model's tokenizer".into());
        }
        Ok(())
    }
}
