//! What the kernels share: f32 views of Candle's CPU storage, and the lane
//! count of their explicit accumulators.

use candle_core::{CpuStorage, Layout, Result};

/// Lanes of the explicit accumulators: strict IEEE order forbids the
/// compiler from vectorising a plain `sum +=` loop, so we keep 16 partial
/// sums / maxima ourselves.
pub(super) const LANES: usize = 16;

/// The f32 values of a contiguous CPU tensor; `op` and `what` name the
/// operation and the operand in the error otherwise.
pub(super) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str, what: &str) -> Result<&'a [f32]> {
    let data = f32_storage(storage, op, what)?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: {what} must be contiguous")))?;
    Ok(&data[start..end])
}

/// All f32 values of a CPU storage, whatever its layout.
pub(super) fn f32_storage<'a>(storage: &'a CpuStorage, op: &str, what: &str) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(v) => Ok(v.as_slice()),
        _ => candle_core::bail!("{op}: {what} must be f32"),
    }
}
