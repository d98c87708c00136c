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
mod error;
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
use serde::Serialize;

use crate::cli::args::TrainArgs;
use crate::config::RsamConfig;
use crate::models::rsam::RsamModel;
use crate::tokenizer::TextTokenizer;
use checkpoint::{EpochRecord, TrainState};
use data::TrainSet;
pub use error::TrainError;
use loss::LossWeights;
use optim::{AdamW, AdamWConfig, ParamRules};
use step::StepOptions;

/// Steps between progress lines when stderr is not a terminal.
const LOG_EVERY: usize = 25;

/// What a finished run prints.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub out: PathBuf,
    pub epochs: usize,
    pub steps: usize,
    pub seconds: f64,
    pub last: Option<EpochRecord>,
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
    args.check().map_err(TrainError::Usage)?;
    let device = crate::predictor::parse_device(&args.device)?;
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
    let mut dataset = crate::risors::Dataset::open(&args.dataset, &args.val_split)?;
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
