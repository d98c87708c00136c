//! The RSAM network, one file per component, `VarBuilder` prefixes
//! mirroring the official checkpoint's key names.

pub mod bert;
pub mod hiera;
pub mod image_encoder;
pub mod mask_decoder;
pub mod prompt_encoder;
pub mod rsam;
pub mod transformer;
