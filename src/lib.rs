//! rsam: RSAM (SAM 2 + BERT + Two-Way Guidance Module) referring segmentation
//! for remote-sensing images, in Candle.
//!
//! - [`predictor::Rsam`]: the image predictor: load a model directory,
//!   `encode_image`, `check_prompt`, `decode`.
//! - [`sam2::Sam2Predictor`]: SAM 2 / 2.1 models (clicks, boxes, mask prompts);
//!   [`pretrained`]: RSAM initialised from SAM 2 + BERT as the official training does.
//! - [`models`]: the network, one file per component; [`kernels`]: the CPU
//!   kernels Candle lacks; [`nn`]: the building blocks choosing between them;
//!   [`device`]: what the GPU path needs, checked on the CPU.
//! - [`server`]: the HTTP service; [`cli`]: the command line;
//!   [`eval`] / [`train`] / [`synth`]: evaluation, training, synthetic data.
//! - [`preprocess`]: the official input pipeline; [`mask`]: from logits to
//!   masks and their outputs (COCO RLE, PNG, polygons); [`npy`]: logits files.

pub mod autocast;
pub mod bench;
pub mod cli;
pub mod config;
pub mod convert;
pub mod device;
pub mod error;
pub mod eval;
pub mod geo;
pub mod image_input;
pub mod kernels;
pub mod loaded_model;
pub mod mask;
pub mod model_kind;
pub mod models;
pub mod nn;
pub mod npy;
pub mod predictor;
pub mod preprocess;
pub mod pretrained;
pub mod process;
pub mod risors;
pub mod sam2;
pub mod server;
pub mod synth;
pub mod tokenizer;
pub mod train;
pub mod weights;
pub mod window;

pub use config::RsamConfig;
pub use error::{Result, RsamError};
pub use predictor::{EncodedImage, LoadOptions, Point, Prediction, Prompt, Rsam};
