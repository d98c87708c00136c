//! rsam: RSAM (SAM 2 + BERT + Two-Way Guidance Module) referring segmentation
//! for remote-sensing images, in Candle.
//!
//! - [`model::Rsam`]: load a model directory, `encode_image`, `decode`.
//! - [`models`]: the network, one file per component.
//! - [`preprocess`]: the official input pipeline; [`mask`]: from logits to
//!   masks and their outputs (COCO RLE, PNG, polygons); [`npy`]: logits files.

pub mod bench;
pub mod config;
pub mod convert;
pub mod error;
pub mod eval;
pub mod kernels;
pub mod mask;
pub mod model;
pub mod models;
pub mod nn;
pub mod npy;
pub mod preprocess;
pub mod risors;
pub mod server;
pub mod synth;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use config::RsamConfig;
pub use error::{Result, RsamError};
pub use model::{ImageFeatures, LoadOptions, Point, Prediction, Prompt, Rsam};
