//! Inference-only CPU kernels that Candle lacks, each in its own file:
//!
//! - [`attention`]: fused scaled dot-product attention (tiled AVX-512 for
//!   head sizes up to 64, `gemm` blocks otherwise);
//! - [`linear_few_rows`]: linear layers on a few rows (BERT on a sentence);
//! - [`linear_gemm`]: linear layers on many rows, one `gemm` from the bias;
//! - [`max_pool`]: Hiera's query pooling in the channels-last layout;
//! - [`gelu`]: exact GELU with a vectorised erf;
//! - [`softmax`]: the row softmax the attention uses.
//!
//! Each runs on the CPU in f32 without gradients; `nn.rs` decides when.

pub mod attention;
pub mod gelu;
pub mod linear_few_rows;
pub mod linear_gemm;
pub mod max_pool;
pub mod softmax;

pub use attention::fused_attention;
pub use gelu::gelu_erf_slice;
pub use linear_few_rows::{linear_few_rows, FEW_ROWS};
pub use linear_gemm::linear_with_bias;
pub use max_pool::max_pool_nhwc;

use candle_core::{CpuStorage, Layout, Result};

/// Lanes of the explicit accumulators: strict IEEE order forbids the
/// compiler from vectorising a plain `sum +=` loop, so we keep 16 partial
/// sums / maxima ourselves.
pub(crate) const LANES: usize = 16;

/// The f32 values of a contiguous CPU tensor; `op` and `what` name the
/// operation and the operand in the error otherwise.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str, what: &str) -> Result<&'a [f32]> {
    let data = f32_storage(storage, op, what)?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: {what} must be contiguous")))?;
    Ok(&data[start..end])
}

/// All f32 values of a CPU storage, whatever its layout.
fn f32_storage<'a>(storage: &'a CpuStorage, op: &str, what: &str) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(v) => Ok(v.as_slice()),
        _ => candle_core::bail!("{op}: {what} must be f32"),
    }
}
