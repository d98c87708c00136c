//! Which dtypes a CUDA device can run. Candle builds its bf16 kernels for
//! compute capability 8.0 (Ampere) and later and its f16 kernels for 5.3
//! and later; below that the first bf16 operation fails deep inside a
//! forward pass with a missing-kernel error, so loading refuses it first.

use candle_core::{DType, Device};

use crate::{Result, RsamError};

/// The oldest compute capability with Candle's kernels for `dtype`.
fn minimum_capability(dtype: DType) -> Option<(i32, i32)> {
    match dtype {
        DType::BF16 => Some((8, 0)),
        DType::F16 => Some((5, 3)),
        _ => None,
    }
}

/// Refuses `dtype` on a GPU `name` of compute capability `capability`
/// that has no Candle kernels for it.
pub fn check_dtype_on_capability(dtype: DType, capability: (i32, i32), name: &str) -> Result<()> {
    let Some(min) = minimum_capability(dtype).filter(|min| capability < *min) else {
        return Ok(());
    };
    let dtype = dtype.as_str();
    let instead = if dtype == "bf16" && capability >= (5, 3) {
        " or f16"
    } else {
        ""
    };
    Err(RsamError::Device(format!(
        "{dtype} needs a GPU of compute capability {}.{} or later (Candle has no {dtype} kernels below), \
         and {name} is {}.{}: use --dtype f32{instead}",
        min.0, min.1, capability.0, capability.1
    )))
}

/// [`check_dtype_on_capability`] for the GPU behind `device` (nothing to
/// check on the CPU).
pub fn check_dtype_on_gpu(dtype: DType, device: &Device) -> Result<()> {
    match gpu_capability(device)? {
        Some((capability, name)) => check_dtype_on_capability(dtype, capability, &name),
        None => Ok(()),
    }
}

#[cfg(feature = "cuda")]
fn gpu_capability(device: &Device) -> Result<Option<((i32, i32), String)>> {
    let Device::Cuda(gpu) = device else {
        return Ok(None);
    };
    let stream = gpu.cuda_stream();
    let context = stream.context();
    let query = |e: candle_core::cuda::cudarc::driver::DriverError| {
        RsamError::Device(format!("cannot read the GPU's compute capability: {e}"))
    };
    let capability = context.compute_capability().map_err(query)?;
    let name = context.name().map_err(query)?;
    Ok(Some((capability, name)))
}

#[cfg(not(feature = "cuda"))]
fn gpu_capability(_: &Device) -> Result<Option<((i32, i32), String)>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_below_ampere_is_refused_with_what_to_use_instead() {
        let err = check_dtype_on_capability(DType::BF16, (7, 5), "Tesla T4")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("compute capability 8.0") && err.contains("Tesla T4 is 7.5") && err.contains("f16"),
            "{err}"
        );
        let err = check_dtype_on_capability(DType::BF16, (5, 2), "Tesla M40")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--dtype f32") && !err.contains("or f16"), "{err}");
        assert!(check_dtype_on_capability(DType::F16, (5, 2), "Tesla M40").is_err());
        for (dtype, capability) in [
            (DType::BF16, (8, 0)),
            (DType::BF16, (9, 0)),
            (DType::F16, (7, 5)),
            (DType::F32, (3, 5)),
        ] {
            assert!(
                check_dtype_on_capability(dtype, capability, "gpu").is_ok(),
                "{dtype:?} on {capability:?}"
            );
        }
        assert!(check_dtype_on_gpu(DType::BF16, &Device::Cpu).is_ok());
    }
}
