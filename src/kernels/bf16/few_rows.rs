//! `x W^T + b` for a few rows (a sentence's tokens) straight from a
//! row-major bf16 weight. Packing the weight into panels would read and
//! write all of it for every sentence; here each weight row is read once
//! and multiplied with every row of `x` while it is in cache, as the f32
//! few-rows kernel does, at half the bytes.

use rayon::prelude::*;

use super::pack::bf16_bits;

/// Weight rows per parallel task.
const OUTPUT_CHUNK: usize = 32;
/// Rows of `x` and of the weight per register tile (16 accumulators).
const TILE: usize = 4;
/// bf16 values per vector.
const LANES: usize = 32;

/// `out` (m x n, row-major) `= x W^T + bias` for `x` (m x k f32, rounded
/// to bf16 here) and `w` (n x k bf16 bits). Every output is written, so
/// `out` may be uninitialised.
///
/// # Safety
/// The CPU supports AVX512-BF16.
pub unsafe fn product(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[u16],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    assert!(
        x.len() == m * k && w.len() == n * k && out.len() == m * n,
        "few-rows product of {m} x {k} x {n}"
    );
    assert!(bias.is_none_or(|b| b.len() == n), "bias of {n}");
    if m == 0 || n == 0 {
        return;
    }
    // x in bf16, rows padded to whole vectors and to a whole tile of rows
    // with zeros (their products are computed and dropped).
    let stride = k.div_ceil(LANES) * LANES;
    let padded_rows = m.div_ceil(TILE) * TILE;
    let mut xb = vec![0u16; padded_rows * stride];
    for (dst, src) in xb.chunks_exact_mut(stride).zip(x.chunks_exact(k.max(1))) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = bf16_bits(v);
        }
    }
    let dst = SharedOut(out.as_mut_ptr().cast());
    (0..n.div_ceil(OUTPUT_CHUNK)).into_par_iter().for_each(|chunk| {
        let outputs = chunk * OUTPUT_CHUNK..((chunk + 1) * OUTPUT_CHUNK).min(n);
        for j0 in outputs.clone().step_by(TILE) {
            let live = TILE.min(outputs.end - j0);
            for t0 in (0..m).step_by(TILE) {
                // SAFETY: the weight rows j0..j0 + live and the x rows
                // t0..t0 + TILE exist (x is padded); this task alone
                // writes columns `outputs` of `out`.
                unsafe { tile(&xb[t0 * stride..], stride, w, k, j0, live, t0, m, n, bias, dst) };
            }
        }
    });
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes only its own output columns.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// [`TILE`] rows of `x` against the weight rows `j0..j0 + live`.
///
/// # Safety
/// As in [`product`]; the CPU supports AVX512-BF16 and AVX512BW.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    xb: &[u16],
    stride: usize,
    w: &[u16],
    k: usize,
    j0: usize,
    live: usize,
    t0: usize,
    m: usize,
    n: usize,
    bias: Option<&[f32]>,
    out: SharedOut,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); TILE]; TILE];
    let wp: [*const u16; TILE] = std::array::from_fn(|j| w.as_ptr().add((j0 + j.min(live - 1)) * k));
    for k0 in (0..k).step_by(LANES) {
        let left = (k - k0).min(LANES);
        let mask: __mmask32 = if left == LANES { u32::MAX } else { (1u32 << left) - 1 };
        let wv: [__m512bh; TILE] =
            std::array::from_fn(|j| std::mem::transmute(_mm512_maskz_loadu_epi16(mask, wp[j].add(k0).cast())));
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let xv: __m512bh = std::mem::transmute(_mm512_loadu_si512(xb.as_ptr().add(t * stride + k0).cast()));
            for (a, &w) in acc_t.iter_mut().zip(&wv) {
                *a = _mm512_dpbf16_ps(*a, xv, w);
            }
        }
    }
    for (t, row) in acc.iter().enumerate().take(m.saturating_sub(t0).min(TILE)) {
        for (j, &sum) in row.iter().enumerate().take(live) {
            let b = bias.map_or(0.0, |b| b[j0 + j]);
            *out.0.add((t0 + t) * n + j0 + j) = _mm512_reduce_add_ps(sum) + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pack::widen;
    use super::*;

    #[test]
    fn few_rows_match_an_f64_reference() {
        if !crate::kernels::choice::cpu_has_avx512_bf16() {
            return;
        }
        let mut s = 5u32;
        let mut rand = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
        };
        // Rows off the 4-row tile, outputs off the tile and the task chunk,
        // inner sizes off the 32-value vector.
        for (m, k, n) in [(1, 768, 70), (10, 37, 5), (32, 64, 130), (3, 1, 33), (5, 100, 4)] {
            let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
            let w: Vec<u16> = (0..n * k).map(|_| bf16_bits(rand())).collect();
            let b: Vec<f32> = (0..n).map(|_| rand()).collect();
            let mut out = Vec::with_capacity(m * n);
            unsafe {
                product(&x, m, k, &w, n, Some(&b), out.spare_capacity_mut());
                out.set_len(m * n);
            }
            for i in 0..m {
                for j in 0..n {
                    let terms: Vec<f64> = (0..k)
                        .map(|t| widen(bf16_bits(x[i * k + t])) as f64 * widen(w[j * k + t]) as f64)
                        .collect();
                    let want = terms.iter().sum::<f64>() + b[j] as f64;
                    let magnitude = terms.iter().map(|v| v.abs()).sum::<f64>() + (b[j] as f64).abs();
                    let err = (out[i * n + j] as f64 - want).abs();
                    let allowed = (k as f64).sqrt() * 4.0 * f64::from(f32::EPSILON) * magnitude;
                    assert!(err <= allowed, "{m} x {k} x {n} at ({i}, {j}): off by {err}");
                }
            }
        }
    }
}
