//! bf16 rounding and the operand layouts of the `vdpbf16ps` kernels.
//!
//! `vdpbf16ps` adds `a[2i] b[2i] + a[2i+1] b[2i+1]` to f32 lane `i`: its
//! operands hold *pairs* of consecutive inner-dimension values. Both
//! operands of a product are therefore stored as `u32` pairs (the even
//! inner index in the low half, the odd one in the high half; an odd inner
//! dimension is padded with a zero):
//!
//! - the right operand in [`Panels`] of [`NR`] columns: for each pair, the
//!   pairs of 64 consecutive columns, four vectors the kernel loads whole;
//! - the left operand as rows of pairs, which the kernel broadcasts one
//!   pair at a time, in blocks of whole [`MR`]-row tiles.
//!
//! The packing routines use AVX-512 (`vcvtne2ps2bf16` rounds 32 values to
//! nearest-even bf16 in one instruction; 16 x 16 transposes in registers)
//! and run only where the kernels do. `vcvtne2ps2bf16` and `vdpbf16ps`
//! treat subnormal inputs (|x| < 1.2e-38) as zero, so the products agree
//! with [`bf16_bits`] rounding everywhere else.

/// Columns of a panel: four 16-lane vectors.
pub const NR: usize = 64;
/// Rows of a register tile (6 x 4 vectors = 24 accumulators).
pub const MR: usize = 6;

/// The bf16 nearest to `x` (ties to even) as its bits; NaN stays a quiet
/// NaN. The same value as `half::bf16::from_f32`, written with integer
/// operations and a select so that loops over it vectorise.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) | 0x40) as u16;
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        quiet_nan
    } else {
        rounded
    }
}

/// The f32 value of bf16 bits (exact).
#[inline(always)]
pub fn widen(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `x` rounded to the nearest bf16, kept as f32.
#[inline(always)]
pub fn round_to_bf16(x: f32) -> f32 {
    widen(bf16_bits(x))
}

#[cfg(target_arch = "x86_64")]
pub use simd::*;

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::{MR, NR};

    /// The lanes below `n` (at most 16).
    #[inline(always)]
    fn mask16(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    /// `dst[q] = pair(src[2q], src[2q + 1])`, values past `src` zero.
    ///
    /// # Safety
    /// The CPU supports AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn pairs_of_f32(src: &[f32], dst: &mut [u32]) {
        let p = src.as_ptr();
        for q0 in (0..dst.len()).step_by(16) {
            let left = src.len().saturating_sub(2 * q0);
            // Masked lanes are never read, wherever the address points.
            let lo = _mm512_maskz_loadu_ps(mask16(left), p.wrapping_add(2 * q0));
            let hi = _mm512_maskz_loadu_ps(mask16(left.saturating_sub(16)), p.wrapping_add(2 * q0 + 16));
            let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(q0).cast(), mask16(dst.len() - q0), pairs);
        }
    }

    /// `dst[c] = pair(even[c], odd[c])` (`odd` zero when absent).
    ///
    /// # Safety
    /// The CPU supports AVX512-BF16; `even` (and `odd`) hold `dst.len()` values.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn interleave_f32(even: &[f32], odd: Option<&[f32]>, dst: &mut [u32]) {
        let n = dst.len();
        assert!(even.len() >= n && odd.is_none_or(|o| o.len() >= n));
        for c in (0..n).step_by(16) {
            let m = mask16(n - c);
            let half = |x: &[f32]| -> __m512i {
                let bf: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x.as_ptr().add(c))));
                _mm512_cvtepu16_epi32(bf)
            };
            let mut pairs = half(even);
            if let Some(odd) = odd {
                pairs = _mm512_or_si512(pairs, _mm512_slli_epi32::<16>(half(odd)));
            }
            _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(c).cast(), m, pairs);
        }
    }

    /// Transposes a 16 x 16 block of 32-bit values held in 16 registers.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
        // Pairs of rows interleaved, then quads: u[g][c] holds, in 128-bit
        // block L, column 4L + c of rows 4g..4g + 4.
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(a, b)
            } else {
                _mm512_unpackhi_epi32(a, b)
            }
        });
        let u: [[__m512i; 4]; 4] = std::array::from_fn(|g| {
            let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            [
                _mm512_unpacklo_epi64(t0, t2),
                _mm512_unpackhi_epi64(t0, t2),
                _mm512_unpacklo_epi64(t1, t3),
                _mm512_unpackhi_epi64(t1, t3),
            ]
        });
        // Gather block L of the four row groups: column 4L + c.
        let mut out = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            let v_even = _mm512_shuffle_i32x4::<0x88>(u[0][c], u[1][c]);
            let v_odd = _mm512_shuffle_i32x4::<0xdd>(u[0][c], u[1][c]);
            let w_even = _mm512_shuffle_i32x4::<0x88>(u[2][c], u[3][c]);
            let w_odd = _mm512_shuffle_i32x4::<0xdd>(u[2][c], u[3][c]);
            out[c] = _mm512_shuffle_i32x4::<0x88>(v_even, w_even);
            out[8 + c] = _mm512_shuffle_i32x4::<0xdd>(v_even, w_even);
            out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v_odd, w_odd);
            out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v_odd, w_odd);
        }
        out
    }

    /// Writes `dst[q * stride + j] = rows[j][q]` for the `rows.len()` (at
    /// most 16) rows of `pairs` pairs each, 16 pairs at a time.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; every row holds `pairs` values and `dst`
    /// holds `(pairs - 1) * stride + 16` values.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose_rows(rows: &[&[u32]], pairs: usize, dst: &mut [u32], stride: usize) {
        debug_assert!(rows.len() <= 16 && (pairs == 0 || dst.len() >= (pairs - 1) * stride + 16));
        for q0 in (0..pairs).step_by(16) {
            let m = mask16(pairs - q0);
            let r: [__m512i; 16] = std::array::from_fn(|j| match rows.get(j) {
                Some(row) => _mm512_maskz_loadu_epi32(m, row.as_ptr().add(q0).cast()),
                None => _mm512_setzero_si512(),
            });
            for (i, v) in transpose16(r).iter().enumerate().take(pairs - q0) {
                _mm512_storeu_si512(dst.as_mut_ptr().add((q0 + i) * stride).cast(), *v);
            }
        }
    }

    /// The right operand `B` (k x n) of a product in panels of [`NR`]
    /// columns, columns past `n` zero: panel `p` holds `pairs` rows of `NR`
    /// pairs.
    pub struct Panels {
        pub data: Vec<u32>,
        /// Pairs of inner-dimension values: `k.div_ceil(2)`.
        pub pairs: usize,
        pub n: usize,
    }

    impl Panels {
        /// `B = W^T` for a linear layer's n x k row-major bf16 weight: each
        /// 16 x 16 block of pairs transposed in registers.
        ///
        /// # Safety
        /// The CPU supports AVX512-BF16.
        pub unsafe fn of_weight(w: &[u16], n: usize, k: usize) -> Self {
            assert_eq!(w.len(), n * k, "weight of {n} x {k}");
            let pairs = k.div_ceil(2);
            let mut data = vec![0u32; n.div_ceil(NR) * pairs * NR];
            data.par_chunks_mut((pairs * NR).max(1))
                .enumerate()
                .for_each(|(panel, dst)| {
                    let mut row_pairs = vec![0u32; 16 * pairs];
                    for c0 in (0..NR).step_by(16) {
                        let first = panel * NR + c0;
                        let live = n.saturating_sub(first).min(16);
                        for (j, out) in row_pairs.chunks_exact_mut(pairs.max(1)).take(live).enumerate() {
                            let row = &w[(first + j) * k..(first + j + 1) * k];
                            copy_bf16_pairs(row, out);
                        }
                        let rows: Vec<&[u32]> = row_pairs.chunks_exact(pairs.max(1)).take(live).collect();
                        if live > 0 {
                            // SAFETY: the caller checked the CPU; sizes as built.
                            unsafe { transpose_rows(&rows, pairs, &mut dst[c0..], NR) };
                        }
                    }
                });
            Self { data, pairs, n }
        }

        /// `B = X` for a k x n f32 operand whose rows are `row_stride`
        /// values apart (a 1x1 convolution's C x (H W) input), rounded to
        /// bf16.
        ///
        /// # Safety
        /// The CPU supports AVX512-BF16.
        pub unsafe fn of_f32_rows(x: &[f32], k: usize, n: usize, row_stride: usize) -> Self {
            assert!(k == 0 || (k - 1) * row_stride + n <= x.len(), "input of {k} x {n}");
            let pairs = k.div_ceil(2);
            let mut data = vec![0u32; n.div_ceil(NR) * pairs * NR];
            data.par_chunks_mut((pairs * NR).max(1))
                .enumerate()
                .for_each(|(panel, dst)| {
                    let (j0, cols) = (panel * NR, NR.min(n - panel * NR));
                    for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
                        let even = &x[2 * p * row_stride + j0..][..cols];
                        let odd = (2 * p + 1 < k).then(|| &x[(2 * p + 1) * row_stride + j0..][..cols]);
                        // SAFETY: the caller checked the CPU.
                        unsafe { interleave_f32(even, odd, &mut row[..cols]) };
                    }
                });
            Self { data, pairs, n }
        }

        pub fn count(&self) -> usize {
            self.n.div_ceil(NR)
        }

        /// Panel `p` from pair `first` on.
        pub fn panel(&self, p: usize, first: usize) -> &[u32] {
            &self.data[(p * self.pairs + first) * NR..(p + 1) * self.pairs * NR]
        }
    }

    /// `dst[q] = pair(row[2q], row[2q + 1])` for bf16 bits (a plain copy on
    /// a little-endian CPU), zero past the row.
    fn copy_bf16_pairs(row: &[u16], dst: &mut [u32]) {
        let whole = row.len() / 2;
        for (d, two) in dst.iter_mut().zip(row.chunks_exact(2)) {
            *d = u32::from(two[0]) | (u32::from(two[1]) << 16);
        }
        for (q, d) in dst.iter_mut().enumerate().skip(whole) {
            *d = row.get(2 * q).map_or(0, |&v| u32::from(v));
        }
    }

    /// Left-operand rows as pairs: row `t` of a packed block holds pairs
    /// `first..first + count` at `t * count`; the block is padded with zero
    /// rows to a whole number of [`MR`]-row tiles.
    pub trait RowSource: Sync {
        fn rows(&self) -> usize;
        /// # Safety
        /// The CPU supports AVX512-BF16.
        unsafe fn pack(&self, rows: std::ops::Range<usize>, first: usize, count: usize, out: &mut Vec<u32>);
    }

    /// Sizes `out` for `rows` rows of `count` pairs (whole tiles, zero).
    fn block(rows: usize, count: usize, out: &mut Vec<u32>) {
        out.clear();
        out.resize(rows.div_ceil(MR) * MR * count, 0);
    }

    /// A linear layer's f32 input: m x k, rows `stride` values apart.
    pub struct F32Rows<'a> {
        pub data: &'a [f32],
        pub m: usize,
        pub k: usize,
        pub stride: usize,
    }

    impl RowSource for F32Rows<'_> {
        fn rows(&self) -> usize {
            self.m
        }

        unsafe fn pack(&self, rows: std::ops::Range<usize>, first: usize, count: usize, out: &mut Vec<u32>) {
            block(rows.len(), count, out);
            let end = (2 * (first + count)).min(self.k);
            for (i, dst) in rows.zip(out.chunks_exact_mut(count.max(1))) {
                let row = &self.data[i * self.stride + 2 * first..i * self.stride + end];
                pairs_of_f32(row, dst);
            }
        }
    }

    /// A 1x1 convolution's bf16 weight: m (outputs) x k (inputs), row-major.
    pub struct Bf16Rows<'a> {
        pub data: &'a [u16],
        pub m: usize,
        pub k: usize,
    }

    impl RowSource for Bf16Rows<'_> {
        fn rows(&self) -> usize {
            self.m
        }

        unsafe fn pack(&self, rows: std::ops::Range<usize>, first: usize, count: usize, out: &mut Vec<u32>) {
            block(rows.len(), count, out);
            let end = (2 * (first + count)).min(self.k);
            for (i, dst) in rows.zip(out.chunks_exact_mut(count.max(1))) {
                copy_bf16_pairs(&self.data[i * self.k + 2 * first..i * self.k + end], dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer rounding equals `half`'s on a spread of bit patterns:
    /// ties both ways, subnormals, overflow to infinity, NaN payloads.
    #[test]
    fn rounding_equals_half() {
        let mut patterns: Vec<u32> = (0..=u32::MAX).step_by(65_537).collect();
        for base in [0x3f80_0000u32, 0x0000_0001, 0x7f7f_0000, 0xff7f_8000, 0x0080_0000] {
            patterns.extend((0..=0x1_8000u32).step_by(0x4000).map(|d| base.wrapping_add(d)));
            patterns.extend([base | 0x8000, base | 0x7fff, base | 0x8001, base | 0x1_8000]);
        }
        patterns.extend([
            0x7f7f_ffff,
            0x7f80_0000,
            0x7f80_0001,
            0xffc0_0000,
            0x7fff_ffff,
            0x8000_0000,
        ]);
        for bits in patterns {
            let x = f32::from_bits(bits);
            let want = half::bf16::from_f32(x).to_bits();
            assert_eq!(bf16_bits(x), want, "{bits:#010x}");
            if !x.is_nan() {
                assert_eq!(round_to_bf16(x).to_bits(), half::bf16::from_f32(x).to_f32().to_bits());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod simd {
        use super::super::*;

        fn pair(even: u16, odd: u16) -> u32 {
            u32::from(even) | (u32::from(odd) << 16)
        }

        fn avx512_bf16() -> bool {
            crate::kernels::choice::cpu_has_avx512_bf16()
        }

        fn values(n: usize) -> Vec<f32> {
            (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0371).collect()
        }

        /// The vector conversion rounds like [`bf16_bits`] (ties to even
        /// included) away from subnormals, and pads with zeros.
        #[test]
        fn vector_pairs_round_like_the_scalar_rounding() {
            if !avx512_bf16() {
                return;
            }
            let mut src = values(45);
            src[3] = f32::from_bits(0x3f80_8000); // a tie, rounds down to even
            src[4] = f32::from_bits(0x3f81_8000); // a tie, rounds up to even
            src[5] = -1e30;
            for len in [45, 32, 31, 1, 0] {
                let mut dst = vec![u32::MAX; 25];
                unsafe { pairs_of_f32(&src[..len], &mut dst) };
                for (q, &d) in dst.iter().enumerate() {
                    let at = |i: usize| if i < len { bf16_bits(src[i]) } else { 0 };
                    assert_eq!(d, pair(at(2 * q), at(2 * q + 1)), "length {len}, pair {q}");
                }
            }
            let (even, odd) = (values(37), values(40)[3..].to_vec());
            let mut dst = vec![u32::MAX; 37];
            unsafe { interleave_f32(&even, Some(&odd), &mut dst) };
            for c in 0..37 {
                assert_eq!(dst[c], pair(bf16_bits(even[c]), bf16_bits(odd[c])));
            }
            unsafe { interleave_f32(&even[..20], None, &mut dst[..20]) };
            assert!((0..20).all(|c| dst[c] == pair(bf16_bits(even[c]), 0)));
        }

        #[test]
        fn transposes_blocks_of_16() {
            if !avx512_bf16() {
                return;
            }
            for (rows, pairs) in [(16, 16), (5, 37), (16, 1), (1, 17)] {
                let data: Vec<Vec<u32>> = (0..rows)
                    .map(|j| (0..pairs).map(|q| (j * 1000 + q) as u32).collect())
                    .collect();
                let refs: Vec<&[u32]> = data.iter().map(|r| r.as_slice()).collect();
                let stride = 64;
                let mut dst = vec![u32::MAX; (pairs - 1) * stride + 16];
                unsafe { transpose_rows(&refs, pairs, &mut dst, stride) };
                for q in 0..pairs {
                    for j in 0..16 {
                        let want = if j < rows { data[j][q] } else { 0 };
                        assert_eq!(dst[q * stride + j], want, "{rows} x {pairs}: row {j}, pair {q}");
                    }
                }
            }
        }

        #[test]
        fn weight_panels_hold_transposed_pairs() {
            if !avx512_bf16() {
                return;
            }
            for (n, k) in [(70, 5), (64, 64), (17, 40), (130, 1)] {
                let w: Vec<u16> = (0..n * k).map(|i| (i % 65_000) as u16 + 1).collect();
                let panels = unsafe { Panels::of_weight(&w, n, k) };
                let pairs = k.div_ceil(2);
                assert_eq!((panels.pairs, panels.count()), (pairs, n.div_ceil(NR)));
                for j in 0..panels.count() * NR {
                    for p in 0..pairs {
                        let got = panels.data[((j / NR) * pairs + p) * NR + j % NR];
                        let value = |kk: usize| if j < n && kk < k { w[j * k + kk] } else { 0 };
                        assert_eq!(
                            got,
                            pair(value(2 * p), value(2 * p + 1)),
                            "{n} x {k}: column {j}, pair {p}"
                        );
                    }
                }
            }
        }

        #[test]
        fn f32_panels_equal_weight_panels_of_the_transpose() {
            if !avx512_bf16() {
                return;
            }
            let (k, n, stride) = (7, 67, 70);
            let x = values(k * stride);
            let transposed: Vec<u16> = (0..n)
                .flat_map(|j| (0..k).map(move |kk| (j, kk)))
                .map(|(j, kk)| bf16_bits(x[kk * stride + j]))
                .collect();
            let direct = unsafe { Panels::of_f32_rows(&x, k, n, stride) };
            assert_eq!(direct.data, unsafe { Panels::of_weight(&transposed, n, k) }.data);
        }

        #[test]
        fn row_blocks_hold_pairs_by_row() {
            if !avx512_bf16() {
                return;
            }
            let (m, k) = (8, 5);
            let x = values(m * k);
            let source = F32Rows {
                data: &x,
                m,
                k,
                stride: k,
            };
            let mut out = Vec::new();
            unsafe { source.pack(1..8, 1, 2, &mut out) };
            assert_eq!(out.len(), 2 * MR * 2);
            for (t, i) in (1..8).enumerate() {
                for q in 0..2 {
                    let e = 2 * (1 + q);
                    let odd = if e + 1 < k { bf16_bits(x[i * k + e + 1]) } else { 0 };
                    assert_eq!(out[t * 2 + q], pair(bf16_bits(x[i * k + e]), odd), "row {i}, pair {q}");
                }
            }
            assert!(out[7 * 2..].iter().all(|&v| v == 0), "padding rows");
            let w: Vec<u16> = x.iter().map(|&v| bf16_bits(v)).collect();
            let mut from_bf16 = Vec::new();
            unsafe { Bf16Rows { data: &w, m, k }.pack(1..8, 1, 2, &mut from_bf16) };
            assert_eq!(from_bf16, out);
        }
    }
}
