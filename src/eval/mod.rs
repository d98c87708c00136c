//! `rsam eval`: reproduce the paper's tables (5-9 and 14) on a RISORS-format
//! dataset, from a model directory or from saved predictions.
//!
//! - [`crate::risors`] (outside eval): the RISORS reader (split lists, annotations).
//! - [`metrics`]: oIoU, mIoU, P@0.5..0.9, per category, as the official
//!   meters define them.
//! - [`clicks`]: the official "center" correction-click sampler and the
//!   exact Euclidean distance transform it needs.
//! - [`runner`]: the loop (one encoding per image, batched sentences).
//! - [`report`] / [`predictions`]: JSON and Markdown output, saved masks.

pub mod clicks;
pub mod error;
pub mod metrics;
pub mod predictions;
pub mod progress;
pub mod report;
pub mod runner;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use error::EvalError;
pub use report::Report;

use crate::risors::Dataset;
use predictions::PredictionSet;
use progress::Progress;
use runner::Source;

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

/// Where the masks come from, once the flags are checked.
#[derive(Debug)]
enum Mode<'a> {
    Model { dir: &'a Path, clicks: usize },
    Predictions(&'a Path),
}

impl EvalArgs {
    /// Checks flag combinations, with one-line messages.
    fn mode(&self) -> Result<(Mode<'_>, &Path), EvalError> {
        let usage = |m: &str| Err(EvalError::Usage(m.to_string()));
        let Some(dataset) = self.dataset.as_deref() else {
            return usage("give --dataset DIR (a RISORS-format folder)");
        };
        if self.batch == 0 {
            return usage("--batch must be at least 1");
        }
        let mode = match (&self.model, &self.predictions) {
            (Some(_), Some(_)) => return usage("--model and --predictions are mutually exclusive: give one"),
            (None, None) => return usage("give --model DIR (score a model) or --predictions FILE (score saved masks)"),
            (Some(dir), None) => Mode::Model {
                dir,
                clicks: self.clicks.unwrap_or(0),
            },
            (None, Some(file)) => {
                if self.clicks.is_some() {
                    return usage("--clicks needs --model: saved predictions cannot be corrected");
                }
                if self.save_predictions.is_some() {
                    return usage("--save-predictions needs --model");
                }
                Mode::Predictions(file)
            }
        };
        Ok((mode, dataset))
    }
}

/// Runs an evaluation and returns its report and (model mode, when
/// `--save-predictions` is given) the text-only masks, without printing.
pub fn evaluate(args: &EvalArgs, progress: &Progress) -> anyhow::Result<runner::Outcome> {
    let (mode, root) = args.mode()?;
    let mut dataset = Dataset::open(root, &args.split)?;
    if let Some(n) = args.limit {
        dataset.truncate(n);
    }
    match mode {
        Mode::Predictions(file) => {
            let set = PredictionSet::read(file)?;
            Ok(runner::evaluate(
                &dataset,
                &Source::Saved(&set),
                args.max_pixels,
                progress,
            ))
        }
        Mode::Model { dir, clicks } => {
            let options = crate::LoadOptions {
                device: crate::predictor::parse_device(&args.device)?,
                dtype: crate::predictor::parse_dtype(&args.dtype)?,
                max_pixels: args.max_pixels,
            };
            let model = crate::Rsam::load(dir, &options)?;
            let source = Source::Model {
                model: &model,
                clicks,
                batch: args.batch,
                keep_masks: args.save_predictions.is_some(),
            };
            Ok(runner::evaluate(&dataset, &source, args.max_pixels, progress))
        }
    }
}

/// `rsam eval`: evaluates, writes the requested files and prints the report
/// as one JSON line (the last line on stdout).
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Check the flags and the split list before loading a model.
    let (_, root) = args.mode()?;
    let images = Dataset::open(root, &args.split)?.names().len();
    let images = args.limit.map_or(images, |n| n.min(images));
    let started = std::time::Instant::now();
    let outcome = evaluate(&args, &Progress::new(images as u64))?;
    let report = &outcome.report;
    if let Some(path) = &args.save_predictions {
        predictions::write(path, &outcome.predictions)?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)?;
        write_file(path, &(text + "\n"))?;
    }
    if let Some(path) = &args.markdown {
        write_file(path, &report::markdown(report, &title(&args)))?;
    }
    eprintln!(
        "scored {} samples from {} images in {:.1} s ({} skipped)",
        report.count,
        report.images,
        started.elapsed().as_secs_f64(),
        report.skipped.len()
    );
    print_line(&serde_json::to_string(report)?)
}

/// What was evaluated, for the Markdown title.
fn title(args: &EvalArgs) -> String {
    let what = args
        .model
        .as_ref()
        .or(args.predictions.as_ref())
        .map(|p| p.display().to_string());
    format!("{} on split `{}`", what.unwrap_or_default(), args.split)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Prints a line to stdout; a closed pipe is not an error.
fn print_line(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
