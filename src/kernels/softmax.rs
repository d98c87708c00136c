//! Softmax of one row in place, and the vectorisable `exp` it uses.

use super::cpu::LANES;

/// [`softmax_portable`] with explicit AVX-512 vectors: the same exp
/// polynomial and range reduction, evaluated 16 lanes at a time (the
/// compiler scalarises parts of the portable version when it is inlined
/// into a larger kernel). Lanes past the row's end are computed on a masked
/// load and never stored.
///
/// # Safety
/// The CPU must support AVX-512F and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn softmax_avx512_explicit(row: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = row.len();
    let p = row.as_mut_ptr();
    let tail = |i: usize| -> __mmask16 {
        let left = n - i;
        if left >= 16 {
            0xffff
        } else {
            ((1u32 << left) - 1) as __mmask16
        }
    };
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..n).step_by(16) {
        let x = _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), tail(i), p.add(i));
        max = _mm512_max_ps(max, x);
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    let mut sum = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = tail(i);
        let x = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), max);
        let y = _mm512_maskz_mov_ps(m, exp_avx512(x));
        sum = _mm512_add_ps(sum, y);
        _mm512_mask_storeu_ps(p.add(i), m, y);
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    for i in (0..n).step_by(16) {
        let m = tail(i);
        let x = _mm512_maskz_loadu_ps(m, p.add(i));
        _mm512_mask_storeu_ps(p.add(i), m, _mm512_mul_ps(x, inv));
    }
}

/// [`exp`] on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[inline]
pub(crate) unsafe fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let xc = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        xc,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut poly = _mm512_set1_ps(0.001_388_889);
    for c in [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
        poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(c));
    }
    let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
    let y = _mm512_mul_ps(poly, _mm512_castsi512_ps(bits));
    // Arguments below -87 (masked keys) give exactly 0, as in `exp`.
    let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
    _mm512_maskz_mov_ps(keep, y)
}

/// Softmax of one row in place, with the widest vector unit the CPU has
/// (the crate is compiled for baseline x86-64; the kernel is compiled
/// three times and chosen at run time, as `gemm` does).
pub(super) fn softmax_in_place(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function enables.
            return unsafe { softmax_avx512_explicit(row) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { softmax_avx2(row) };
        }
    }
    softmax_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_portable(row)
}

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

    /// The dispatched softmax (AVX-512 where the CPU has it) against the
    /// portable one, on lengths around the 16-lane vector and with masked
    /// (very negative) entries.
    #[test]
    fn softmax_paths_agree() {
        for n in [1usize, 3, 15, 16, 17, 33, 2500] {
            let row: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 7 == 6 {
                        -1e9
                    } else {
                        ((i * 37) % 23) as f32 * 0.4 - 4.0
                    }
                })
                .collect();
            let (mut fast, mut plain) = (row.clone(), row);
            softmax_in_place(&mut fast);
            softmax_portable(&mut plain);
            let worst = fast.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "length {n}: differs by {worst}");
            let sum: f32 = fast.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "length {n}: sums to {sum}");
            assert!(fast.iter().enumerate().all(|(i, &p)| i % 7 != 6 || p == 0.0));
        }
    }

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
