//! Errors of the evaluator. Each names the file or sample at fault, so that a
//! user looking at a failed run over thousands of images knows where to look.

use std::path::PathBuf;

/// Everything `rsam eval` can fail on before or while scoring.
///
/// A corrupt image or annotation does not end a run: it becomes a
/// [`crate::risors::Skipped`] entry. These errors are for what makes
/// the whole run meaningless (no split list, bad flags, an unreadable
/// predictions file, a model that cannot load).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The flags do not describe a run (both or neither of --model and
    /// --predictions, a model-only flag in predictions mode, ...).
    #[error("{0}")]
    Usage(String),

    #[error(transparent)]
    Dataset(#[from] crate::risors::RisorsError),

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("predictions file {path}: {reason}")]
    Predictions { path: PathBuf, reason: String },

    #[error(transparent)]
    Model(#[from] crate::RsamError),
}

pub type Result<T> = std::result::Result<T, EvalError>;
