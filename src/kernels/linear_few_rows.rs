//! `x W^T` for a handful of rows (a sentence's tokens), streaming the weight once.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::f32_slice;
use super::cpu::LANES;

/// Most rows (tokens) [`linear_few_rows`] is used for.
pub const FEW_ROWS: usize = 32;

/// Outputs per parallel task of [`linear_few_rows`].
const OUTPUT_CHUNK: usize = 64;

/// `x w^T` for a contiguous f32 `x` (m x k, m at most [`FEW_ROWS`]) and a
/// linear layer's weight `w` (n x k). A sentence through BERT is ~10 rows
/// against weights of millions of values: `gemm` copies (packs) all of a
/// weight for every call, so the matrix products read and write the whole
/// BERT three times per sentence. Here every weight row is read once and
/// multiplied with all m rows of `x` while it is in cache.
pub fn linear_few_rows(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(w, &FewRowsLinear)
}

struct FewRowsLinear;

impl CustomOp2 for FewRowsLinear {
    fn name(&self) -> &'static str {
        "few-rows-linear"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, wk) = wl.shape().dims2()?;
        if wk != k {
            candle_core::bail!(
                "few-rows linear: x {:?} and weight {:?} do not match",
                xl.shape(),
                wl.shape()
            );
        }
        let (x, w) = (
            f32_slice(xs, xl, "few-rows linear", "x")?,
            f32_slice(ws, wl, "few-rows linear", "weight")?,
        );
        // Outputs transposed (n x m): each task fills whole rows of it.
        let dot = dot_kernel();
        let mut out_t = vec![0f32; n * m];
        out_t
            .par_chunks_mut(OUTPUT_CHUNK * m.max(1))
            .enumerate()
            .for_each(|(chunk, dst)| {
                let o0 = chunk * OUTPUT_CHUNK;
                for (j, col) in dst.chunks_mut(m.max(1)).enumerate() {
                    let row = &w[(o0 + j) * k..(o0 + j + 1) * k];
                    for (t, y) in col.iter_mut().enumerate() {
                        *y = dot(&x[t * k..(t + 1) * k], row);
                    }
                }
            });
        let mut out = vec![0f32; m * n];
        for (o, col) in out_t.chunks(m.max(1)).enumerate() {
            for (t, &y) in col.iter().enumerate() {
                out[t * n + o] = y;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// The dot product for this CPU: [`LANES`] partial sums, vectorised on any
/// x86-64 and with AVX-512 where the CPU has it. Chosen once per matrix
/// product, not once per dot product.
fn dot_kernel() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY (of the call inside): the CPU supports the feature
        // `dot_avx512` enables.
        return |a, b| unsafe { dot_avx512(a, b) };
    }
    dot_portable
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            sums[l] += x[l] * y[l];
        }
    }
    sums.iter().sum::<f32>() + tail
}
