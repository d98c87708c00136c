//! Inference-only CPU kernels that Candle lacks.
//!
//! Fused scaled dot-product attention: for each (batch x head, block of
//! queries) the scores, softmax and weighted sum are computed in a small
//! buffer that stays in cache, with single-threaded `gemm` calls and the
//! blocks spread over the thread pool. Candle's composed version writes the
//! whole B x H x Lq x Lk score tensor to memory several times and
//! synchronises its threads for every small matrix product; on 2,500 image
//! tokens that is most of the decode time. The differentiable composed path
//! in `nn.rs` stays the reference (and is what training uses).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Queries per block: 64 x 2,500 scores = 640 kB, within L2.
const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T * scale + bias) v` for contiguous f32 CPU tensors
/// `q`: N x Lq x D, `k` / `v`: N x Lk x D. `key_bias`, when given, holds
/// `groups x Lk` additive values; row `n` uses `key_bias[n / (N / groups)]`
/// (one row per batch element shared by its heads).
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, key_bias: Option<Vec<f32>>) -> Result<Tensor> {
    q.apply_op3_no_bwd(k, v, &FusedAttention { scale, key_bias })
}

struct FusedAttention {
    scale: f32,
    key_bias: Option<Vec<f32>>,
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("fused attention: {what} must be f32"),
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("fused attention: {what} must be contiguous")))?;
    Ok(&data[start..end])
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, lq, d) = ql.shape().dims3()?;
        let (nk, lk, dk) = kl.shape().dims3()?;
        if nk != n || dk != d || vl.shape().dims3()? != (n, lk, d) {
            candle_core::bail!(
                "fused attention: q {:?}, k {:?}, v {:?} do not match",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let (q, k, v) = (
            f32_slice(qs, ql, "q")?,
            f32_slice(ks, kl, "k")?,
            f32_slice(vs, vl, "v")?,
        );
        let per_group = match &self.key_bias {
            Some(bias) => {
                let groups = bias.len() / lk.max(1);
                if groups == 0 || bias.len() != groups * lk || n % groups != 0 {
                    candle_core::bail!(
                        "fused attention: key bias of {} values does not fit {n} x {lk}",
                        bias.len()
                    );
                }
                n / groups
            }
            None => 1,
        };
        let mut out = vec![0f32; n * lq * d];
        // Tasks: rows (batch x head), then blocks of queries within a row;
        // each writes its own slice of `out`.
        out.par_chunks_mut(lq * d).enumerate().for_each(|(row, out_row)| {
            let q_row = &q[row * lq * d..(row + 1) * lq * d];
            let k_row = &k[row * lk * d..(row + 1) * lk * d];
            let v_row = &v[row * lk * d..(row + 1) * lk * d];
            let bias = self.key_bias.as_ref().map(|b| {
                let g = row / per_group;
                &b[g * lk..(g + 1) * lk]
            });
            out_row
                .par_chunks_mut(QUERY_BLOCK * d)
                .enumerate()
                .for_each_init(Vec::new, |scores, (blk, o)| {
                    let q0 = blk * QUERY_BLOCK;
                    let rows = o.len() / d;
                    attend_block(
                        &q_row[q0 * d..(q0 + rows) * d],
                        k_row,
                        v_row,
                        bias,
                        self.scale,
                        rows,
                        lk,
                        d,
                        scores,
                        o,
                    );
                });
        });
        Ok((CpuStorage::F32(out), Shape::from((n, lq, d))))
    }
}

/// One block: `rows` queries against all `lk` keys.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    scale: f32,
    rows: usize,
    lk: usize,
    d: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    scores.resize(rows * lk, 0.0);
    // scores = scale * q k^T (rows x lk, row-major). SAFETY: every pointer
    // and stride below describes memory inside the slices, whose lengths
    // the caller derived from the same dimensions.
    unsafe {
        gemm::gemm(
            rows,
            lk,
            d,
            scores.as_mut_ptr(),
            1,
            lk as isize,
            false,
            q.as_ptr(),
            1,
            d as isize,
            k.as_ptr(),
            d as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for r in 0..rows {
        let row = &mut scores[r * lk..(r + 1) * lk];
        if let Some(bias) = bias {
            for (s, b) in row.iter_mut().zip(bias) {
                *s += b;
            }
        }
        softmax_in_place(row);
    }
    // out = p v (rows x d).
    unsafe {
        gemm::gemm(
            rows,
            d,
            lk,
            out.as_mut_ptr(),
            1,
            d as isize,
            false,
            scores.as_ptr(),
            1,
            lk as isize,
            v.as_ptr(),
            1,
            d as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Softmax of one row in place, with the widest vector unit the CPU has
/// (the crate is compiled for baseline x86-64; the kernel is compiled
/// three times and chosen at run time, as `gemm` does).
fn softmax_in_place(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function enables.
            return unsafe { softmax_avx512(row) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { softmax_avx2(row) };
        }
    }
    softmax_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_avx512(row: &mut [f32]) {
    softmax_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_portable(row)
}

/// Lanes of the explicit accumulators: strict IEEE order forbids the
/// compiler from vectorising a plain `sum +=` loop, so we keep 16 partial
/// sums / maxima ourselves.
const LANES: usize = 16;

#[inline(always)]
fn softmax_portable(row: &mut [f32]) {
    let mut chunks = row.chunks_exact_mut(LANES);
    let mut maxes = [f32::NEG_INFINITY; LANES];
    for c in chunks.by_ref() {
        for (m, &x) in maxes.iter_mut().zip(c.iter()) {
            *m = m.max(x);
        }
    }
    let mut max = maxes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in chunks.into_remainder().iter() {
        max = max.max(x);
    }
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in chunks.by_ref() {
        for (s, x) in sums.iter_mut().zip(c.iter_mut()) {
            *x = exp(*x - max);
            *s += *x;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder().iter_mut() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// `e^x` for `x <= 0` (softmax arguments), branch-free so that loops over it
/// vectorise: Cody-Waite range reduction and a degree-6 polynomial, relative
/// error below 3e-7; arguments under -87 (masked keys) give exactly 0.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (vectorises on
    // every x86-64, unlike `f32::round`).
    const ROUND: f32 = 12_582_912.0;
    let xc = x.max(-87.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let bits = ((n as i32 + 127) as u32) << 23;
    let y = p * f32::from_bits(bits);
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_and_masks_to_zero() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }
}
