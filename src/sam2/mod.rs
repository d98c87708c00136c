//! SAM 2 and SAM 2.1 image models (model directories of kind `sam2`):
//! clicks, boxes and mask prompts on real images, exactly as the official
//! `build_sam2()` + `SAM2ImagePredictor` compute them.
//!
//! - [`config`]: the `config.json` schema and the official sizes.
//! - [`transforms`]: `SAM2Transforms` (torchvision's antialiased resize).
//! - [`network`]: image encoder + `no_mem_embed`, prompt encoder, mask decoder.
//! - [`multimask`]: which mask tokens a prediction returns.
//! - [`prompt`] / [`predictor`]: prompts in image pixels, `encode_image`, `decode`.

//! - [`convert`]: official checkpoints into model directories.

pub mod config;
pub mod convert;
pub mod multimask;
pub mod network;
pub mod predictor;
pub mod prompt;
pub mod transforms;

pub use config::{Sam2Config, Sam2Version};
pub use predictor::{Sam2Mask, Sam2Prediction, Sam2Predictor};
pub use prompt::Sam2Prompt;
