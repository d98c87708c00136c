//! What can go wrong reading a RISORS-format dataset. Each error names the
//! file at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RisorsError {
    #[error("split list {path} not found: the dataset needs RISORS_{split}.txt (one image name per line)")]
    SplitMissing { path: PathBuf, split: String },

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An annotation file that cannot be read as a RISORS annotation.
    #[error("annotation {path}: {reason}")]
    Annotation { path: PathBuf, reason: String },

    /// An image that cannot be found or decoded.
    #[error("image {name}: {reason}")]
    Image { name: String, reason: String },
}

pub type Result<T> = std::result::Result<T, RisorsError>;
