//! `rsam train`: RSAM training in Rust with Candle's autograd.
//!
//! - [`data`]: the RISORS reader for training (negatives kept, batches
//!   decoded on the fly).
//! - [`init`]: PyTorch-default initial weights for training from scratch.
//! - [`step`]: one batch: encode, text-only prediction, correction clicks,
//!   the official loss summed over the steps.
//! - [`loss`] / [`clicks`] / [`resize`]: the objective, the click sampler and
//!   the differentiable bilinear resize it needs.
//! - [`optim`]: AdamW with parameter groups, clipping, cosine schedule and
//!   checkpointable state.
//! - [`checkpoint`]: model directories written after every epoch, resumable.

pub mod checkpoint;
pub mod clicks;
pub mod data;
pub mod init;
pub mod loss;
pub mod optim;
pub mod resize;
pub mod step;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::RsamConfig;
use crate::eval::EvalError;
use crate::models::rsam::RsamModel;
use crate::tokenizer::TextTokenizer;
use checkpoint::{EpochRecord, TrainState};
use data::TrainSet;
use loss::LossWeights;
use optim::{AdamW, AdamWConfig, ParamRules};
use step::StepOptions;

/// Steps between progress lines when stderr is not a terminal.
const LOG_EVERY: usize = 25;

/// What can go wrong in `rsam train`, each naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Usage(String),
    #[error("dataset: {0}")]
    Dataset(#[from] EvalError),
    #[error("split {split:?} of {root} has no usable sample ({detail})")]
    EmptySplit {
        root: PathBuf,
        split: String,
        detail: String,
    },
    #[error("sample {name}: {reason}")]
    Sample { name: String, reason: String },
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] crate::RsamError),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("training diverged at step {step}: the loss is {loss}")]
    Diverged { step: usize, loss: f32 },
}

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

/// What a finished run prints.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub out: PathBuf,
    pub epochs: usize,
    pub steps: usize,
    pub seconds: f64,
    pub last: Option<EpochRecord>,
}

impl TrainArgs {
    fn check(&self) -> Result<(), TrainError> {
        let usage = |m: String| Err(TrainError::Usage(m));
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

/// The model being trained: its config, tokenizer and variables.
struct Trainee {
    config: RsamConfig,
    tokenizer: TextTokenizer,
    tokenizer_source: PathBuf,
    varmap: VarMap,
    model: RsamModel,
}

/// Runs `rsam train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<TrainSummary> {
    args.check()?;
    let device = crate::model::parse_device(&args.device)?;
    let started = Instant::now();

    let (trainee, mut state) = if args.resume {
        resume(args, &device)?
    } else {
        checkpoint::refuse_to_overwrite(&args.out)?;
        (fresh(args, &device)?, TrainState::new(args))
    };
    let train = TrainSet::open(&args.dataset, "train", &trainee.tokenizer)?;
    let (positives, negatives) = train.counts();
    eprintln!(
        "training {} ({} parameters) on {} images, {positives} sentences + {negatives} negatives{}",
        trainee.config.name,
        count_parameters(&trainee.varmap),
        train.images.len(),
        if train.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} skipped: first: {})", train.skipped.len(), train.skipped[0])
        }
    );

    let steps_per_epoch = (train.images.len() / args.batch).max(1);
    let total_steps = steps_per_epoch * args.epochs;
    let rules = ParamRules {
        weight_decay: args.weight_decay,
        frozen_prefixes: frozen_prefixes(args),
        lr_multipliers: vec![("image_encoder.".to_string(), args.vision_lr_scale)],
        ..ParamRules::default()
    };
    let adam = AdamWConfig {
        max_grad_norm: (args.grad_clip > 0.0).then_some(args.grad_clip),
        ..AdamWConfig::default()
    };
    let mut optimizer = AdamW::new(&trainee.varmap, &rules, adam)?;
    if args.resume {
        let path = args.out.join(checkpoint::OPTIMIZER_FILE);
        optimizer.load(&path).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            reason: format!("cannot resume: {e}"),
        })?;
    }
    let options = StepOptions {
        correction_clicks: args.correction_clicks,
        click_from_gt: args.click_from_gt,
        center_clicks: args.center_clicks,
        text_dropout: args.text_dropout,
        weights: LossWeights::default(),
    };

    let limit = args.max_steps.unwrap_or(usize::MAX);
    for epoch in state.epochs_done..args.epochs {
        if state.step >= limit {
            break;
        }
        let epoch_started = Instant::now();
        // Each epoch's order and clicks come from (seed, epoch), so a resumed
        // run continues exactly as an uninterrupted one would.
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let mut order: Vec<usize> = (0..train.images.len()).collect();
        order.shuffle(&mut rng);
        let bar = progress_bar(steps_per_epoch as u64, epoch + 1, args.epochs);
        let mut sums = [0f64; 5];
        let mut sentences = 0usize;
        let mut steps = 0usize;
        for chunk in order.chunks(args.batch).take(steps_per_epoch) {
            if state.step >= limit {
                break;
            }
            let picks: Vec<_> = chunk
                .iter()
                .map(|&i| data::pick(&train, i, args.sentences_per_image, args.negative_ratio, &mut rng))
                .collect();
            let batch = data::load_batch(&train, &picks, trainee.config.image_size, args.max_pixels)?;
            let loss = step::forward(&trainee.model, &batch, &options, &mut rng)?;
            let values = loss.parts.values()?;
            if !values[4].is_finite() {
                return Err(TrainError::Diverged {
                    step: state.step,
                    loss: values[4],
                }
                .into());
            }
            let grads = loss.parts.total.backward()?;
            let lr = optim::lr_at(
                state.step,
                total_steps,
                args.warmup_steps,
                args.lr,
                args.lr * args.lr_end_ratio,
            );
            let stats = optimizer.step(&grads, lr)?;
            state.step += 1;
            steps += 1;
            sentences += loss.sentences;
            for (s, v) in sums.iter_mut().zip(values) {
                *s += v as f64;
            }
            let message = format!(
                "loss {:.3} (avg {:.3}) | grad {:.2} | lr {:.1e} | {:.1} sentences/s",
                values[4],
                sums[4] / steps as f64,
                stats.grad_norm,
                lr,
                sentences as f64 / epoch_started.elapsed().as_secs_f64()
            );
            bar.inc(1);
            if bar.is_hidden() && steps.is_multiple_of(LOG_EVERY) {
                // No terminal (a log file, CI): a plain line now and then.
                eprintln!("epoch {} step {steps}/{steps_per_epoch}: {message}", epoch + 1);
            }
            bar.set_message(message);
        }
        bar.finish_and_clear();
        let mean = |k: usize| if steps == 0 { 0.0 } else { sums[k] / steps as f64 };
        let mut record = EpochRecord {
            epoch: epoch + 1,
            steps: state.step,
            loss: mean(4),
            focal: mean(0),
            dice: mean(1),
            iou: mean(2),
            class: mean(3),
            seconds: epoch_started.elapsed().as_secs_f64(),
            val_miou: Vec::new(),
            val_oiou: Vec::new(),
        };
        if !args.val_split.is_empty() {
            let report = validate(args, &trainee)?;
            record.val_miou = report.clicks.iter().map(|c| c.metrics.miou).collect();
            record.val_oiou = report.clicks.iter().map(|c| c.metrics.oiou).collect();
        }
        eprintln!("{}", record.line(args.epochs));
        state.epochs_done = epoch + 1;
        state.history.push(record);
        checkpoint::save(
            &args.out,
            &trainee.config,
            &trainee.tokenizer_source,
            &trainee.varmap,
            &optimizer,
            &state,
        )?;
    }
    Ok(TrainSummary {
        out: args.out.clone(),
        epochs: state.epochs_done,
        steps: state.step,
        seconds: started.elapsed().as_secs_f64(),
        last: state.history.last().cloned(),
    })
}

/// The model as `rsam eval` sees it: the current weights, detached, on the
/// fast inference path.
fn validate(args: &TrainArgs, trainee: &Trainee) -> anyhow::Result<crate::eval::Report> {
    let tensors = checkpoint::current_weights(&trainee.varmap);
    let device = trainee.model.device().clone();
    let model = crate::Rsam::from_tensors(
        trainee.config.clone(),
        trainee.tokenizer.clone(),
        tensors,
        args.out.clone(),
        &crate::LoadOptions {
            device,
            dtype: DType::F32,
            max_pixels: args.max_pixels,
        },
    )?;
    let mut dataset = crate::eval::dataset::Dataset::open(&args.dataset, &args.val_split)?;
    if let Some(n) = args.val_limit {
        dataset.truncate(n);
    }
    let source = crate::eval::runner::Source::Model {
        model: &model,
        clicks: args.val_clicks,
        batch: 16,
        keep_masks: false,
    };
    let progress = crate::eval::progress::Progress::hidden();
    Ok(crate::eval::runner::evaluate(&dataset, &source, args.max_pixels, &progress).report)
}

fn frozen_prefixes(args: &TrainArgs) -> Vec<String> {
    // The random Fourier matrix is a buffer in the official model, not a
    // parameter.
    let mut frozen = vec!["sam_prompt_encoder.pe_layer.".to_string()];
    if args.freeze_text {
        frozen.push("text_encoder.".to_string());
    }
    frozen
}

fn count_parameters(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// The config with `--image-size` applied. Loaded configs are valid; an
/// overridden size is checked here, before initial weights are made for it
/// (Hiera would otherwise fail on it with a tensor error).
fn with_image_size(mut config: RsamConfig, args: &TrainArgs) -> Result<RsamConfig, TrainError> {
    if let Some(size) = args.image_size {
        config.image_size = size;
        config.validate().map_err(TrainError::Usage)?;
    }
    Ok(config)
}

/// A new run: config, tokenizer and weights from the flags.
fn fresh(args: &TrainArgs, device: &Device) -> Result<Trainee, TrainError> {
    if let Some(dir) = &args.init {
        let config = with_image_size(RsamConfig::from_file(&dir.join("config.json"))?, args)?;
        let tokenizer_source = tokenizer_file(dir)?;
        let (weights_path, format) = crate::weights::find_weights(dir)?;
        let tensors = crate::weights::read_tensors(&weights_path, format)?;
        return build(config, tokenizer_source, tensors, &weights_path, device);
    }
    let tokenizer_source = match &args.tokenizer {
        Some(p) if p.is_dir() => tokenizer_file(p)?,
        Some(p) => p.clone(),
        None => tokenizer_file(&args.dataset).map_err(|_| {
            TrainError::Usage(format!(
                "no tokenizer: {} has no vocab.txt or tokenizer.json; give --tokenizer PATH",
                args.dataset.display()
            ))
        })?,
    };
    let tokenizer = open_tokenizer(&tokenizer_source, usize::MAX)?;
    let config = match args.config.as_deref().unwrap_or("demo") {
        "demo" => RsamConfig::demo(tokenizer.vocab_size()),
        name => match RsamConfig::preset(name) {
            Some(c) => c,
            None => RsamConfig::from_file(Path::new(name))?,
        },
    };
    let config = with_image_size(config, args)?;
    if tokenizer.vocab_size() > config.bert.vocab_size {
        return Err(TrainError::Usage(format!(
            "the tokenizer has {} tokens but the config's bert.vocab_size is {}",
            tokenizer.vocab_size(),
            config.bert.vocab_size
        )));
    }
    let tensors = init::initial_weights(&config, args.seed, device)?;
    build(
        config,
        tokenizer_source,
        tensors,
        Path::new("(initial weights)"),
        device,
    )
}

/// Continues the run saved in `--out`.
fn resume(args: &TrainArgs, device: &Device) -> Result<(Trainee, TrainState), TrainError> {
    let state = checkpoint::read_state(&args.out)?;
    let config = RsamConfig::from_file(&args.out.join("config.json"))?;
    let tokenizer_source = tokenizer_file(&args.out)?;
    let path = args.out.join("model.safetensors");
    let tensors = crate::weights::read_tensors(&path, crate::weights::WeightsFormat::Safetensors)?;
    Ok((build(config, tokenizer_source, tensors, &path, device)?, state))
}

fn build(
    config: RsamConfig,
    tokenizer_source: PathBuf,
    tensors: std::collections::HashMap<String, candle_core::Tensor>,
    weights_source: &Path,
    device: &Device,
) -> Result<Trainee, TrainError> {
    config.validate().map_err(TrainError::Usage)?;
    let max_tokens = config.bert.max_position_embeddings.min(config.max_text_positions);
    let tokenizer = open_tokenizer(&tokenizer_source, max_tokens)?.with_truncation(config.text_truncation);
    // Check names and shapes like loading a model directory does, then
    // turn every tensor the model uses into a variable.
    let wanted = crate::bench::parameter_shapes(&config)?;
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("a fresh lock");
        for (name, shape) in &wanted {
            let t = tensors.get(name).ok_or_else(|| TrainError::Checkpoint {
                path: weights_source.to_path_buf(),
                reason: format!("the weights have no tensor {name}"),
            })?;
            if t.dims() != shape.as_slice() {
                return Err(TrainError::Checkpoint {
                    path: weights_source.to_path_buf(),
                    reason: format!("{name} has shape {:?}, the config needs {shape:?}", t.dims()),
                });
            }
            let t = t.to_device(device)?.to_dtype(DType::F32)?;
            data.insert(name.clone(), Var::from_tensor(&t)?);
        }
    }
    let model = RsamModel::new(&config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    Ok(Trainee {
        config,
        tokenizer,
        tokenizer_source,
        varmap,
        model,
    })
}

/// `tokenizer.json` or `vocab.txt` inside a folder.
fn tokenizer_file(dir: &Path) -> Result<PathBuf, TrainError> {
    ["tokenizer.json", "vocab.txt"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| TrainError::Usage(format!("{} has no tokenizer.json or vocab.txt", dir.display())))
}

fn open_tokenizer(path: &Path, max_tokens: usize) -> Result<TextTokenizer, TrainError> {
    let max_tokens = max_tokens.min(512);
    Ok(if path.extension().is_some_and(|e| e == "json") {
        TextTokenizer::from_tokenizer_json(path, max_tokens)?
    } else {
        TextTokenizer::from_vocab(path, max_tokens)?
    })
}

fn progress_bar(len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
