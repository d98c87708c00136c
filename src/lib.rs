//! rsam: RSAM (SAM 2 + BERT + Two-Way Guidance Module) referring segmentation
//! for remote-sensing images, in Candle.
//!
//! - [`model::Rsam`]: load a model directory, `encode_image`, `decode`.
//! - [`models`]: the network, one file per component.
//! - [`sam2::Sam2Predictor`]: SAM 2 / 2.1 models (clicks, boxes, mask prompts).
//! - [`preprocess`] / [`postprocess`] / [`rle`]: the official input pipeline
//!   and the outputs (upsampled logits, masks, COCO RLE, PNG, `.npy`).

pub mod bench;
pub mod config;
pub mod convert;
pub mod error;
pub mod eval;
pub mod kernels;
pub mod model;
pub mod model_kind;
pub mod models;
pub mod nn;
pub mod postprocess;
pub mod preprocess;
pub mod pretrained;
pub mod rle;
pub mod sam2;
pub mod server;
pub mod synth;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use config::RsamConfig;
pub use error::{Result, RsamError};
pub use model::{ImageFeatures, LoadOptions, Point, Prediction, Prompt, Rsam};
