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

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
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
            if let Some(kernel) = TiledKernel::for_head_dim(d) {
                let keys = TransposedKeys::new(k_row, lk, d, bias);
                out_row
                    .par_chunks_mut(QUERY_BLOCK * d)
                    .enumerate()
                    .for_each_init(Vec::new, |scores, (blk, o)| {
                        let q0 = blk * QUERY_BLOCK;
                        let rows = o.len() / d;
                        let q = &q_row[q0 * d..(q0 + rows) * d];
                        // SAFETY: `for_head_dim` returned a kernel only on a
                        // CPU with AVX-512F, and the slices match `rows`,
                        // `lk` and `d` as the kernel requires.
                        unsafe { kernel.attend(q, &keys, v_row, self.scale, rows, scores, o) };
                    });
                return;
            }
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
        let (x, w) = (f32_slice(xs, xl, "x")?, f32_slice(ws, wl, "weight")?);
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

/// Key tile of the AVX-512 score kernel: four 16-lane vectors.
const KEY_TILE: usize = 64;
/// Query rows per register tile (4 x 64 scores = 16 accumulators).
const ROW_TILE: usize = 4;

/// One head's keys as a `d x lk_padded` row-major matrix (zero columns up
/// to a multiple of [`KEY_TILE`]): each step of the score kernel then loads
/// whole vectors of consecutive keys. `bias` holds the additive key bias
/// over the padded length: the caller's bias (or 0) for real keys, minus
/// infinity for the padding, so padded keys get exactly zero weight.
struct TransposedKeys {
    data: Vec<f32>,
    bias: Vec<f32>,
    lk: usize,
    padded: usize,
}

impl TransposedKeys {
    fn new(k: &[f32], lk: usize, d: usize, bias: Option<&[f32]>) -> Self {
        let padded = lk.div_ceil(KEY_TILE) * KEY_TILE;
        let mut data = vec![0f32; d * padded];
        for (j, key) in k.chunks_exact(d).enumerate().take(lk) {
            for (i, &x) in key.iter().enumerate() {
                data[i * padded + j] = x;
            }
        }
        let bias = (0..padded)
            .map(|j| match (j < lk, bias) {
                (false, _) => f32::NEG_INFINITY,
                (true, Some(b)) => b[j],
                (true, None) => 0.0,
            })
            .collect();
        Self { data, bias, lk, padded }
    }
}

/// Register-tiled attention for the head sizes of RSAM's decoders (16 and
/// 32) and 64, on CPUs with AVX-512. `gemm` is slow at an inner dimension
/// of 32: it repacks all keys for every block of queries and its kernels
/// are built for long inner products. Here the scores of 4 queries x 64
/// keys stay in 16 vector registers while the `d` products accumulate, and
/// the weighted sum keeps 4 queries x `d` outputs in registers while it
/// walks the keys. Other head sizes and CPUs use the `gemm` path.
#[derive(Clone, Copy)]
enum TiledKernel {
    D16,
    D32,
    D64,
}

impl TiledKernel {
    fn for_head_dim(d: usize) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if !is_x86_feature_detected!("avx512f") || !is_x86_feature_detected!("fma") {
                return None;
            }
            match d {
                16 => Some(Self::D16),
                32 => Some(Self::D32),
                64 => Some(Self::D64),
                _ => None,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = d;
            None
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F and FMA (checked by [`Self::for_head_dim`]);
    /// `q` holds `rows x d` values, `v` `lk x d`, `out` `rows x d`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn attend(
        self,
        q: &[f32],
        keys: &TransposedKeys,
        v: &[f32],
        scale: f32,
        rows: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        match self {
            Self::D16 => attend_tiled_avx512::<1>(q, keys, v, scale, rows, scores, out),
            Self::D32 => attend_tiled_avx512::<2>(q, keys, v, scale, rows, scores, out),
            Self::D64 => attend_tiled_avx512::<4>(q, keys, v, scale, rows, scores, out),
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (q, keys, v, scale, rows, scores, out);
            unreachable!("for_head_dim gives no tiled kernel off x86-64")
        }
    }
}

/// The tiled kernel with explicit AVX-512 registers (`VECS` 16-lane vectors
/// per head, `d = 16 * VECS`). Written with intrinsics because the compiler
/// keeps plain accumulator arrays on the stack. Three passes over a block's
/// scores: the products store them with the key bias added and track each
/// row's maximum; one pass takes the exponentials and their sum; the
/// weighted sum of the values divides by that sum at the end.
///
/// # Safety
/// The CPU must support AVX-512F and FMA; `q` holds `rows x d` values, `v`
/// at least `lk x d`, `out` `rows x d`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend_tiled_avx512<const VECS: usize>(
    q: &[f32],
    keys: &TransposedKeys,
    v: &[f32],
    scale: f32,
    rows: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let d = 16 * VECS;
    let (lk, padded) = (keys.lk, keys.padded);
    assert!(q.len() >= rows * d && out.len() >= rows * d && v.len() >= lk * d);
    assert!(keys.data.len() >= d * padded && keys.bias.len() == padded && padded.is_multiple_of(KEY_TILE));
    scores.resize(rows * padded, 0.0);
    let kt = keys.data.as_ptr();
    let bp = keys.bias.as_ptr();
    let sp = scores.as_mut_ptr();
    let scale_v = _mm512_set1_ps(scale);
    let mut inverse_sums = vec![0f32; rows];
    // Scores plus bias, ROW_TILE queries x KEY_TILE keys at a time, and the
    // row maxima. A last tile with fewer queries repeats its last query
    // and drops the extra rows.
    for r0 in (0..rows).step_by(ROW_TILE) {
        let live = (rows - r0).min(ROW_TILE);
        let qp: [*const f32; ROW_TILE] = std::array::from_fn(|t| q.as_ptr().add((r0 + t.min(live - 1)) * d));
        let mut maxima = [_mm512_set1_ps(f32::NEG_INFINITY); ROW_TILE];
        for j0 in (0..padded).step_by(KEY_TILE) {
            let mut acc = [[_mm512_setzero_ps(); 4]; ROW_TILE];
            for i in 0..d {
                let kp = kt.add(i * padded + j0);
                let k = [
                    _mm512_loadu_ps(kp),
                    _mm512_loadu_ps(kp.add(16)),
                    _mm512_loadu_ps(kp.add(32)),
                    _mm512_loadu_ps(kp.add(48)),
                ];
                for t in 0..ROW_TILE {
                    let x = _mm512_set1_ps(*qp[t].add(i));
                    for c in 0..4 {
                        acc[t][c] = _mm512_fmadd_ps(x, k[c], acc[t][c]);
                    }
                }
            }
            let bias: [__m512; 4] = std::array::from_fn(|c| _mm512_loadu_ps(bp.add(j0 + 16 * c)));
            for t in 0..live {
                let dst = sp.add((r0 + t) * padded + j0);
                for c in 0..4 {
                    let s = _mm512_fmadd_ps(acc[t][c], scale_v, bias[c]);
                    maxima[t] = _mm512_max_ps(maxima[t], s);
                    _mm512_storeu_ps(dst.add(16 * c), s);
                }
            }
        }
        // Exponentials (padded keys give exactly 0) and their sums.
        for t in 0..live {
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(maxima[t]));
            let row = sp.add((r0 + t) * padded);
            let mut sum = _mm512_setzero_ps();
            for j in (0..padded).step_by(16) {
                let y = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(row.add(j)), max));
                sum = _mm512_add_ps(sum, y);
                _mm512_storeu_ps(row.add(j), y);
            }
            inverse_sums[r0 + t] = 1.0 / _mm512_reduce_add_ps(sum);
        }
    }
    // Weighted sum of the values, ROW_TILE queries at a time.
    let sp = scores.as_ptr();
    let vp = v.as_ptr();
    for r0 in (0..rows).step_by(ROW_TILE) {
        let live = (rows - r0).min(ROW_TILE);
        let pp: [*const f32; ROW_TILE] = std::array::from_fn(|t| sp.add((r0 + t.min(live - 1)) * padded));
        let mut acc = [[_mm512_setzero_ps(); VECS]; ROW_TILE];
        for j in 0..lk {
            let value = vp.add(j * d);
            let x: [__m512; VECS] = std::array::from_fn(|c| _mm512_loadu_ps(value.add(16 * c)));
            for t in 0..ROW_TILE {
                let w = _mm512_set1_ps(*pp[t].add(j));
                for c in 0..VECS {
                    acc[t][c] = _mm512_fmadd_ps(w, x[c], acc[t][c]);
                }
            }
        }
        for (t, a) in acc.iter().enumerate().take(live) {
            let dst = out.as_mut_ptr().add((r0 + t) * d);
            let inv = _mm512_set1_ps(inverse_sums[r0 + t]);
            for (c, &x) in a.iter().enumerate() {
                _mm512_storeu_ps(dst.add(16 * c), _mm512_mul_ps(x, inv));
            }
        }
    }
}

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
unsafe fn softmax_avx512_explicit(row: &mut [f32]) {
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
unsafe fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
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
fn softmax_in_place(row: &mut [f32]) {
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

    /// The tiled kernel, where this CPU has it, against the `gemm` block.
    #[test]
    fn tiled_kernel_equals_the_gemm_block() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            let mut seed = 7u32;
            let mut rand = move || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
            };
            for (rows, lk, d) in [(64, 2500, 32), (7, 65, 16), (5, 3, 64)] {
                let kernel = TiledKernel::for_head_dim(d).expect("AVX-512 and a tiled head size");
                let q: Vec<f32> = (0..rows * d).map(|_| rand()).collect();
                let k: Vec<f32> = (0..lk * d).map(|_| rand()).collect();
                let v: Vec<f32> = (0..lk * d).map(|_| rand()).collect();
                let bias: Vec<f32> = (0..lk).map(|j| if j % 5 == 4 { -1e9 } else { 0.0 }).collect();
                let scale = 1.0 / (d as f32).sqrt();
                let (mut want, mut got) = (vec![0f32; rows * d], vec![0f32; rows * d]);
                attend_block(&q, &k, &v, Some(&bias), scale, rows, lk, d, &mut Vec::new(), &mut want);
                let keys = TransposedKeys::new(&k, lk, d, Some(&bias));
                // SAFETY: the features were checked above; sizes as built.
                unsafe { kernel.attend(&q, &keys, &v, scale, rows, &mut Vec::new(), &mut got) };
                let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-5, "{rows} x {lk} x {d}: differs by {worst}");
            }
        }
    }

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
