//! rsam: RSAM (SAM 2 + BERT + Two-Way Guidance Module) referring segmentation
//! for remote-sensing images, in Candle.
//!
//! - [`model::Rsam`]: load a model directory, `encode_image`, `decode`.
//! - [`models`]: the network, one file per component.
//! - [`preprocess`] / [`postprocess`] / [`rle`]: the official input pipeline
//!   and the outputs (upsampled logits, masks, COCO RLE, PNG, `.npy`).

pub mod bench;
pub mod config;
pub mod convert;
pub mod error;
pub mod eval;
pub mod geo;
pub mod kernels;
pub mod model;
pub mod models;
pub mod nn;
pub mod postprocess;
pub mod preprocess;
pub mod rle;
pub mod server;
pub mod synth;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use config::RsamConfig;
pub use error::{Result, RsamError};
pub use model::{ImageFeatures, LoadOptions, Point, Prediction, Prompt, Rsam};
