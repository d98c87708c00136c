//! Where a model runs: `--device`, `--dtype`, `--max-pixels`.

use crate::predictor::{parse_device, parse_dtype, LoadOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", env = "RSAM_DEVICE")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32", env = "RSAM_DTYPE")]
    pub dtype: String,
    /// Largest image accepted, in pixels (decompression-bomb guard).
    #[arg(long, default_value_t = crate::preprocess::DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

impl DeviceArgs {
    pub fn load_options(&self) -> crate::Result<LoadOptions> {
        Ok(LoadOptions {
            device: parse_device(&self.device)?,
            dtype: parse_dtype(&self.dtype)?,
            max_pixels: self.max_pixels,
        })
    }
}
