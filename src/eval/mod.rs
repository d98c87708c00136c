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

use std::path::Path;

pub use error::EvalError;
pub use report::Report;

use crate::cli::args::EvalArgs;
use crate::risors::Dataset;
use predictions::PredictionSet;
use progress::Progress;
use runner::Source;

/// Where the masks come from, once the flags are checked.
#[derive(Debug)]
pub enum Mode<'a> {
    Model { dir: &'a Path, clicks: usize },
    Predictions(&'a Path),
}

impl EvalArgs {
    /// Checks flag combinations, with one-line messages.
    pub fn mode(&self) -> Result<(Mode<'_>, &Path), EvalError> {
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
