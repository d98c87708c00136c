//! Library errors. Every failure a caller can cause (bad model directory, bad
//! image, bad prompt) has its own variant with a message that names the problem.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RsamError {
    #[error("model directory {path}: {reason}")]
    ModelDir { path: PathBuf, reason: String },

    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("weights file {path}: {reason}")]
    WeightsFile { path: PathBuf, reason: String },

    #[error("checkpoint does not match the config:\n{0}")]
    WeightsMismatch(String),

    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("image: {0}")]
    Image(String),

    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    ImageTooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },

    #[error("prompt: {0}")]
    Prompt(String),

    /// The sentence of a prompt cannot be used (empty, no tokens, too long).
    #[error("text: {0}")]
    Text(String),

    #[error("mask input: {0}")]
    MaskInput(String),

    /// A sentence sent to a model that takes none (a SAM 2 model).
    #[error("text prompts are not supported: {0}")]
    TextNotSupported(String),

    #[error("device: {0}")]
    Device(String),

    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A GeoTIFF that cannot be read, or a georeferenced output that cannot
    /// be made (the variant names which).
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, RsamError>;
