//! What can go wrong in `rsam train`.

use std::path::PathBuf;

/// What can go wrong in `rsam train`, each naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Usage(String),
    #[error("dataset: {0}")]
    Dataset(#[from] crate::risors::RisorsError),
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
