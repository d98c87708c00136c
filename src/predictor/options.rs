//! How a model directory is loaded: device, dtype and the pixel limit, and
//! where the bundled demo model is.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::preprocess;
use crate::{Result, RsamError};

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| RsamError::Device(format!("invalid device {s:?}: expected cuda:N")))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(RsamError::Device(format!(
                    "{s} requested but this binary was built without the `cuda` feature"
                )));
            }
            Device::new_cuda(ordinal).map_err(|e| RsamError::Device(format!("cannot open {s}: {e}")))
        }
        other => Err(RsamError::Device(format!(
            "unknown device {other:?}: expected cpu, cuda or cuda:N"
        ))),
    }
}

/// Parses `f32`, `bf16` or `f16`.
pub fn parse_dtype(spec: &str) -> Result<DType> {
    match spec {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(RsamError::Device(format!(
            "unknown dtype {other:?}: expected f32, bf16 or f16"
        ))),
    }
}

/// Refuses a dtype the device has no kernels for, before loading rather
/// than inside the first forward pass: bf16 / f16 on a GPU too old for
/// Candle's kernels ([`crate::device::capability`]). (bf16 on the CPU runs
/// on rsam's kernels, or, with `RSAM_GENERIC_KERNELS=1`, through
/// [`crate::device::products`].)
pub fn check_dtype_on_device(dtype: DType, device: &Device) -> Result<()> {
    crate::device::capability::check_dtype_on_gpu(dtype, device)
}

/// Where the bundled demo model lives, relative to the repository root.
pub const DEMO_MODEL_DIR: &str = "weights/rsam-demo";

/// The model used when no `--model` is given: the bundled `rsam-demo`,
/// looked for in `./weights/rsam-demo`, then in this source tree's
/// `weights/` (for `cargo run` or the built binary used from elsewhere).
/// When neither exists the first is returned, so that loading fails with an
/// error naming the path. (The Docker images mount their model instead.)
pub fn default_model_dir() -> PathBuf {
    let local = PathBuf::from(DEMO_MODEL_DIR);
    let in_source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEMO_MODEL_DIR);
    if !local.join("config.json").is_file() && in_source_tree.join("config.json").is_file() {
        return in_source_tree;
    }
    local
}

/// Options for loading a model directory.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
    /// Decompression-bomb guard for `encode_bytes`.
    pub max_pixels: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            max_pixels: preprocess::DEFAULT_MAX_PIXELS,
        }
    }
}
