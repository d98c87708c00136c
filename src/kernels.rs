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

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Queries per block: 64 x 2,500 scores = 640 kB, within L2.
const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T * scale + bias) v` for f32 CPU tensors `q`: B x H x Lq x
/// D, `k` / `v`: B x H x Lk x D, read in place: any strides, as long as
/// each head's D values are consecutive (so the heads of a packed `qkv`
/// projection need no copies). `key_bias`, when given, holds `groups x Lk`
/// additive values; head `n` of the B x H flattened heads uses
/// `key_bias[n / (B * H / groups)]` (one row per batch element shared by
/// its heads). The output is contiguous B x H x Lq x D.
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, key_bias: Option<Vec<f32>>) -> Result<Tensor> {
    q.apply_op3_no_bwd(k, v, &FusedAttention { scale, key_bias })
}

struct FusedAttention {
    scale: f32,
    key_bias: Option<Vec<f32>>,
}

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

/// Rows of `d` consecutive values, `stride` values apart: one head's
/// queries, keys or values inside a larger tensor.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    stride: usize,
}

impl<'a> Rows<'a> {
    /// The rows from `first` on.
    fn skip(self, first: usize) -> Rows<'a> {
        Rows {
            data: &self.data[(first * self.stride).min(self.data.len())..],
            stride: self.stride,
        }
    }

    /// Row `i` (`d` values).
    fn row(&self, i: usize, d: usize) -> &'a [f32] {
        &self.data[i * self.stride..i * self.stride + d]
    }

    /// Whether `rows` rows of `d` values lie inside `data`.
    fn holds(&self, rows: usize, d: usize) -> bool {
        rows == 0 || (rows - 1) * self.stride + d <= self.data.len()
    }
}

/// A B x H x L x D f32 operand read in place.
struct Heads<'a> {
    data: &'a [f32],
    dims: (usize, usize, usize, usize),
    strides: [usize; 3],
}

impl<'a> Heads<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<Self> {
        let data = f32_storage(storage, "fused attention", what)?;
        let dims = layout.shape().dims4()?;
        let stride = layout.stride();
        if dims.3 > 1 && stride[3] != 1 {
            candle_core::bail!("fused attention: the head values of {what} must be consecutive");
        }
        Ok(Self {
            data: &data[layout.start_offset()..],
            dims,
            strides: [stride[0], stride[1], stride[2]],
        })
    }

    /// The rows of head `n` of the B x H flattened heads.
    fn head(&self, n: usize) -> Rows<'a> {
        let (b, h) = (n / self.dims.1, n % self.dims.1);
        Rows {
            data: &self.data[(b * self.strides[0] + h * self.strides[1]).min(self.data.len())..],
            stride: self.strides[2],
        }
    }
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
        let (q, k, v) = (
            Heads::new(qs, ql, "q")?,
            Heads::new(ks, kl, "k")?,
            Heads::new(vs, vl, "v")?,
        );
        let (b, h, lq, d) = q.dims;
        let lk = k.dims.2;
        if k.dims != (b, h, lk, d) || v.dims != k.dims {
            candle_core::bail!(
                "fused attention: q {:?}, k {:?}, v {:?} do not match",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let n = b * h;
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
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), Shape::from((b, h, lq, d))));
        }
        let kernel = TiledKernel::for_head_dim(d);
        // Tasks: heads (batch x head), then blocks of queries within a head;
        // each writes its own slice of `out`.
        out.par_chunks_mut(lq * d).enumerate().for_each(|(head, out_head)| {
            let (q_head, k_head, v_head) = (q.head(head), k.head(head), v.head(head));
            assert!(q_head.holds(lq, d) && k_head.holds(lk, d) && v_head.holds(lk, d));
            let bias = self.key_bias.as_ref().map(|b| {
                let g = head / per_group;
                &b[g * lk..(g + 1) * lk]
            });
            let keys = kernel.map(|_| TransposedKeys::new(k_head, lk, d, bias));
            out_head
                .par_chunks_mut(QUERY_BLOCK * d)
                .enumerate()
                .for_each_init(Vec::new, |scores, (blk, o)| {
                    let rows = o.len() / d;
                    let q = q_head.skip(blk * QUERY_BLOCK);
                    match (kernel, &keys) {
                        // SAFETY: `for_head_dim` returned a kernel only on a
                        // CPU with AVX-512F, and the operands hold `rows`,
                        // `lk` and `d` as checked above.
                        (Some(kernel), Some(keys)) => unsafe {
                            kernel.attend(q, keys, v_head, self.scale, rows, scores, o)
                        },
                        _ => attend_block(q, k_head, v_head, bias, self.scale, rows, lk, d, scores, o),
                    }
                });
        });
        Ok((CpuStorage::F32(out), Shape::from((b, h, lq, d))))
    }
}

/// One block: `rows` queries against all `lk` keys.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    q: Rows,
    k: Rows,
    v: Rows,
    bias: Option<&[f32]>,
    scale: f32,
    rows: usize,
    lk: usize,
    d: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    assert!(q.holds(rows, d) && k.holds(lk, d) && v.holds(lk, d) && out.len() >= rows * d);
    scores.resize(rows * lk, 0.0);
    // scores = scale * q k^T (rows x lk, row-major). SAFETY: every pointer
    // and stride below describes memory inside the operands (checked
    // above).
    unsafe {
        gemm::gemm(
            rows,
            lk,
            d,
            scores.as_mut_ptr(),
            1,
            lk as isize,
            false,
            q.data.as_ptr(),
            1,
            q.stride as isize,
            k.data.as_ptr(),
            k.stride as isize,
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
            v.data.as_ptr(),
            1,
            v.stride as isize,
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
    fn new(k: Rows, lk: usize, d: usize, bias: Option<&[f32]>) -> Self {
        let padded = lk.div_ceil(KEY_TILE) * KEY_TILE;
        let mut data = vec![0f32; d * padded];
        for j in 0..lk {
            for (i, &x) in k.row(j, d).iter().enumerate() {
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

/// Register-tiled attention for head sizes up to 64 on CPUs with AVX-512:
/// RSAM's decoders use 16 and 32, Hiera 56 at every stage of base+. `gemm`
/// is slow at such inner dimensions: it repacks all keys for every block
/// of queries and its kernels are built for long inner products. Here the
/// scores of 4 queries x 64 keys stay in 16 vector registers while the `d`
/// products accumulate, and the weighted sum keeps 4 queries x `d` outputs
/// in registers while it walks the keys; a head size that is not a multiple
/// of 16 loads and stores its last vector under a lane mask. Larger heads
/// and other CPUs use the `gemm` path.
#[derive(Clone, Copy)]
struct TiledKernel {
    /// 16-lane vectors per head (`d.div_ceil(16)`).
    vecs: usize,
    /// Lanes of the last vector that belong to the head.
    tail: u16,
}

impl TiledKernel {
    fn for_head_dim(d: usize) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if !is_x86_feature_detected!("avx512f") || !is_x86_feature_detected!("fma") || d == 0 || d > 64 {
                return None;
            }
            let vecs = d.div_ceil(16);
            let lanes = d - 16 * (vecs - 1);
            Some(Self {
                vecs,
                tail: (((1u32 << lanes) - 1) & 0xffff) as u16,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = d;
            None
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F and FMA (checked by [`Self::for_head_dim`]);
    /// `q` holds `rows` rows of `d` values, `v` `lk`, `out` `rows x d` values.
    #[allow(clippy::too_many_arguments)]
    unsafe fn attend(
        self,
        q: Rows,
        keys: &TransposedKeys,
        v: Rows,
        scale: f32,
        rows: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        match self.vecs {
            1 => attend_tiled_avx512::<1>(q, keys, v, scale, rows, self.tail, scores, out),
            2 => attend_tiled_avx512::<2>(q, keys, v, scale, rows, self.tail, scores, out),
            3 => attend_tiled_avx512::<3>(q, keys, v, scale, rows, self.tail, scores, out),
            _ => attend_tiled_avx512::<4>(q, keys, v, scale, rows, self.tail, scores, out),
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (q, keys, v, scale, rows, scores, out);
            unreachable!("for_head_dim gives no tiled kernel off x86-64")
        }
    }
}

/// The tiled kernel with explicit AVX-512 registers (`VECS` 16-lane vectors
/// per head, the last one holding the `tail` lanes). Written with intrinsics because the compiler
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
#[allow(clippy::too_many_arguments)]
unsafe fn attend_tiled_avx512<const VECS: usize>(
    q: Rows,
    keys: &TransposedKeys,
    v: Rows,
    scale: f32,
    rows: usize,
    tail: u16,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let d = 16 * (VECS - 1) + tail.count_ones() as usize;
    // Lane masks of the head's vectors: all lanes but in the last one.
    let masks: [__mmask16; VECS] = std::array::from_fn(|c| if c + 1 == VECS { tail } else { 0xffff });
    let (lk, padded) = (keys.lk, keys.padded);
    assert!(q.holds(rows, d) && out.len() >= rows * d && v.holds(lk, d));
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
        let qp: [*const f32; ROW_TILE] =
            std::array::from_fn(|t| q.data.as_ptr().add((r0 + t.min(live - 1)) * q.stride));
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
    let vp = v.data.as_ptr();
    for r0 in (0..rows).step_by(ROW_TILE) {
        let live = (rows - r0).min(ROW_TILE);
        let pp: [*const f32; ROW_TILE] = std::array::from_fn(|t| sp.add((r0 + t.min(live - 1)) * padded));
        let mut acc = [[_mm512_setzero_ps(); VECS]; ROW_TILE];
        for j in 0..lk {
            let value = vp.add(j * v.stride);
            let x: [__m512; VECS] = std::array::from_fn(|c| _mm512_maskz_loadu_ps(masks[c], value.add(16 * c)));
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
                _mm512_mask_storeu_ps(dst.add(16 * c), masks[c], _mm512_mul_ps(x, inv));
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

/// `x W^T + b` for a contiguous f32 `x` (M x K), `W` (N x K) and `b` (N)
/// as one `gemm` call that starts from the bias: the output is filled with
/// `b` row by row and the product accumulated onto it. Candle's `Linear`
/// zero-fills the output, multiplies, then adds the bias in a second full
/// pass over the output (~5 % of the linear layers' time in an encode).
pub fn linear_with_bias(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.apply_op3_no_bwd(w, b, &BiasedLinear)
}

struct BiasedLinear;

impl CustomOp3 for BiasedLinear {
    fn name(&self) -> &'static str {
        "biased-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const OP: &str = "biased linear";
        let (m, k) = xl.shape().dims2()?;
        let (n, kw) = wl.shape().dims2()?;
        if kw != k || bl.shape().dims1()? != n {
            candle_core::bail!(
                "{OP}: x {:?}, weight {:?} and bias {:?} do not match",
                xl.shape(),
                wl.shape(),
                bl.shape()
            );
        }
        let (x, w, b) = (
            f32_slice(xs, xl, OP, "x")?,
            f32_slice(ws, wl, OP, "weight")?,
            f32_slice(bs, bl, OP, "bias")?,
        );
        let mut dst = Vec::with_capacity(m * n);
        for _ in 0..m {
            dst.extend_from_slice(b);
        }
        if m > 0 && n > 0 && k > 0 {
            let threads = candle_core::utils::get_num_threads();
            let parallelism = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: dst is m x n (row stride n), x is m x k (row stride
            // k), and W^T is read from the n x k weight with row stride 1
            // and column stride k; the slices hold exactly those elements.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            };
        }
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

/// `nn.MaxPool2d(stride, stride)` (floor mode: trailing rows and columns
/// that do not fill a window are dropped) on a contiguous f32 B x H x W x C
/// map, without Candle's detour through B x C x H x W and back (two full
/// copies around every Hiera stage transition). NaN propagates, as in
/// PyTorch.
pub fn max_pool_nhwc(x: &Tensor, stride: usize) -> Result<Tensor> {
    x.apply_op1_no_bwd(&MaxPoolNhwc { stride })
}

struct MaxPoolNhwc {
    stride: usize,
}

impl CustomOp1 for MaxPoolNhwc {
    fn name(&self) -> &'static str {
        "max-pool-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = layout.shape().dims4()?;
        let src = f32_slice(storage, layout, "max pool", "input")?;
        let s = self.stride;
        if s == 0 {
            candle_core::bail!("max pool: stride must be at least 1");
        }
        let (oh, ow) = (h / s, w / s);
        let mut out = vec![0f32; b * oh * ow * c];
        if !out.is_empty() {
            out.par_chunks_mut(ow * c).enumerate().for_each(|(row, out_row)| {
                let (image, y) = (row / oh, row % oh);
                for (x, dst) in out_row.chunks_exact_mut(c).enumerate() {
                    let at = |dy: usize, dx: usize| ((image * h + y * s + dy) * w + x * s + dx) * c;
                    dst.copy_from_slice(&src[at(0, 0)..at(0, 0) + c]);
                    for (dy, dx) in (0..s).flat_map(|dy| (0..s).map(move |dx| (dy, dx))).skip(1) {
                        // A select, not a conditional store, so that it vectorises.
                        for (d, &v) in dst.iter_mut().zip(&src[at(dy, dx)..at(dy, dx) + c]) {
                            *d = if v > *d || v.is_nan() { v } else { *d };
                        }
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, oh, ow, c))))
    }
}

/// Exact (erf) GELU, `(erf(x / sqrt 2) + 1) * 0.5 * x`, over a slice. On
/// CPUs with AVX-512 the erf is the piecewise polynomial of
/// [`erf_avx512`]; elsewhere libm's `erff` (through Candle) one value at a
/// time, which took ~11 % of an encode on its own.
pub fn gelu_erf_slice(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "gelu_erf_slice: lengths differ");
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function enables.
            return unsafe { gelu_erf_avx512(src, dst) };
        }
    }
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v;
    }
}

/// [`gelu_erf_slice`] 16 lanes at a time, the tail under a mask.
///
/// # Safety
/// The CPU must support AVX-512F and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn gelu_erf_avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let tables = ErfTables::load();
    let (one, half, scale) = (
        _mm512_set1_ps(1.0),
        _mm512_set1_ps(0.5),
        _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
    );
    for i in (0..src.len()).step_by(16) {
        let left = src.len() - i;
        let mask: __mmask16 = if left >= 16 { 0xffff } else { (1u16 << left) - 1 };
        let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
        let e = erf_avx512(_mm512_mul_ps(v, scale), &tables);
        let y = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(e, one), half), v);
        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, y);
    }
}

/// Centres of the 16 intervals of width 1/4 that cover [0, 4) (the first
/// is centred on 0 so that its polynomial is exact at the origin).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const ERF_CENTERS: [f32; 16] = [0.0, 0.375, 0.625, 0.875, 1.125, 1.375, 1.625, 1.875, 2.125, 2.375, 2.625, 2.875, 3.125, 3.375, 3.625, 3.875];

/// `ERF_COEFFS[k][i]`: coefficient of `t^k`, `t = |x| - ERF_CENTERS[i]`, in
/// interval `i`: least-squares fits of erf on Chebyshev nodes (in f64,
/// rounded to f32; relative weighting and no constant term in the first
/// interval). Evaluated with FMAs the result is within 5.9e-8 of the true
/// erf everywhere and within 2.3 ulp of it; libm's `erff` is within 1 ulp.
/// PyTorch's own CPU GELU uses Abramowitz-Stegun 7.1.26, up to 1.5e-7 off.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const ERF_COEFFS: [[f32; 16]; 8] = [
    [0.0, 0.4041169, 0.6232409, 0.7840751, 0.8883882, 0.94817007, 0.97844374, 0.99199003, 0.997346, 0.99921703, 0.9997946, 0.99995214, 0.9999901, 0.9999982, 0.9999997, 0.99999994],
    [std::f32::consts::FRAC_2_SQRT_PI, 0.9803528, 0.76349956, 0.52474505, 0.31827396, 0.17035978, 0.08047226, 0.03354583, 0.01234082, 0.004006478, 0.0011478751, 0.0002902283, 6.4758686e-05, 1.27517405e-05, 2.2159202e-06, 3.3982238e-07],
    [-1.3459722e-08, -0.3676323, -0.47718722, -0.45915192, -0.3580582, -0.23424469, -0.13076742, -0.06289843, -0.026224243, -0.009515384, -0.0030131722, -0.00083440647, -0.000202371, -4.3037177e-05, -8.03273e-06, -1.3168174e-06],
    [-0.37612554, -0.2348762, -0.05567185, 0.0929236, 0.16245233, 0.1579377, 0.11484062, 0.06744109, 0.033037405, 0.0137305325, 0.004890426, 0.001502536, 0.00040001984, 9.258299e-05, 1.8673763e-05, 3.2884957e-06],
    [-1.9359793e-05, 0.16657998, 0.17645782, 0.11239712, 0.027975127, -0.030499313, -0.049718685, -0.042260315, -0.02636125, -0.013133395, -0.0054143053, -0.001881719, -0.00055754004, -0.00014187125, -3.1162428e-05, -5.9307117e-06],
    [0.11304586, 0.045475297, -0.027411923, -0.06721454, -0.061323535, -0.030606622, -0.0021355045, 0.011462433, 0.012495601, 0.008357531, 0.0042179436, 0.0017132701, 0.0005769511, 0.0001637652, 3.958818e-05, 8.207403e-06],
    [-0.0010881441, -0.0497565, -0.041136395, -0.010424864, 0.015349149, 0.0220283, 0.014396521, 0.0041496227, -0.0017782676, -0.0030954757, -0.0022457005, -0.0011442894, -0.0004557894, -0.00014812598, -4.015944e-05, -9.204997e-06],
    [-0.024479672, -0.005454435, 0.013782842, 0.018481554, 0.009594084, -0.0013638715, -0.0061347717, -0.004915597, -0.0018793648, 0.00011143114, 0.00067549513, 0.0005279907, 0.00026737116, 0.000102933125, 3.1868352e-05, 8.155949e-06],
];

/// The erf tables held in vector registers for [`erf_avx512`].
#[cfg(target_arch = "x86_64")]
struct ErfTables {
    centers: std::arch::x86_64::__m512,
    coeffs: [std::arch::x86_64::__m512; 8],
}

#[cfg(target_arch = "x86_64")]
impl ErfTables {
    #[target_feature(enable = "avx512f")]
    unsafe fn load() -> Self {
        use std::arch::x86_64::*;
        Self {
            centers: _mm512_loadu_ps(ERF_CENTERS.as_ptr()),
            coeffs: std::array::from_fn(|k| _mm512_loadu_ps(ERF_COEFFS[k].as_ptr())),
        }
    }
}

/// erf on 16 lanes: each lane picks its interval's centre and coefficients
/// with a register permute (16 intervals = 16 lanes) and runs Horner's
/// scheme; `|x| >= 4` gives +-1 (erf(4) = 1 - 1.5e-8 rounds to 1), NaN stays
/// NaN, and the sign of `x` is copied onto the result (erf is odd).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[inline]
unsafe fn erf_avx512(x: std::arch::x86_64::__m512, tables: &ErfTables) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let ax = _mm512_abs_ps(x);
    // Out-of-range and NaN lanes convert to i32::MIN; the permute reads only
    // the low four bits, and those lanes are overwritten below anyway.
    let index = _mm512_min_epi32(
        _mm512_cvttps_epi32(_mm512_mul_ps(ax, _mm512_set1_ps(4.0))),
        _mm512_set1_epi32(15),
    );
    let t = _mm512_sub_ps(ax, _mm512_permutexvar_ps(index, tables.centers));
    let mut p = _mm512_permutexvar_ps(index, tables.coeffs[7]);
    for k in (0..7).rev() {
        p = _mm512_fmadd_ps(p, t, _mm512_permutexvar_ps(index, tables.coeffs[k]));
    }
    let saturated = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(ax, _mm512_set1_ps(4.0));
    let magnitude = _mm512_mask_mov_ps(p, saturated, _mm512_set1_ps(1.0));
    let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(magnitude), sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-call biased linear equals Candle's matmul + bias, also with
    /// inner dimensions that `gemm` splits into several blocks.
    #[test]
    fn biased_linear_equals_candle_linear() -> Result<()> {
        use candle_core::{Device, Module};
        for (m, k, n) in [(40, 112, 336), (33, 3584, 70), (1, 5, 3), (100, 7, 1)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
            let w = Tensor::randn(0f32, 0.1, (n, k), &Device::Cpu)?;
            let b = Tensor::randn(0f32, 1.0, n, &Device::Cpu)?;
            let fast = linear_with_bias(&x, &w, &b)?;
            let reference = candle_nn::Linear::new(w, Some(b)).forward(&x)?;
            let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?;
            let diff = (fast - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= 1e-6 * scale.max(1.0), "{m} x {k} x {n}: differs by {diff}");
        }
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((4, 5), candle_core::DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu)?;
        let err = linear_with_bias(&x, &w, &b).unwrap_err().to_string();
        assert!(err.contains("biased linear") && err.contains("do not match"), "{err}");
        Ok(())
    }

    /// The NHWC max pool equals Candle's NCHW one (odd sizes drop the last
    /// row / column) and keeps NaN like PyTorch.
    #[test]
    fn max_pool_nhwc_equals_candle_max_pool() -> Result<()> {
        use candle_core::Device;
        for (shape, stride) in [((2, 7, 9, 5), 2), ((1, 8, 8, 3), 2), ((1, 9, 6, 4), 3)] {
            let x = Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?;
            let fast = max_pool_nhwc(&x, stride)?;
            let reference = x.permute((0, 3, 1, 2))?.max_pool2d(stride)?.permute((0, 2, 3, 1))?;
            assert_eq!(fast.dims(), reference.dims());
            let diff = (fast - reference)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "{shape:?} / {stride}");
        }
        let thin = Tensor::zeros((1, 1, 3, 2), candle_core::DType::F32, &Device::Cpu)?;
        assert_eq!(max_pool_nhwc(&thin, 2)?.dims(), &[1, 0, 1, 2]);
        let x = Tensor::new(&[1f32, f32::NAN, 3.0, 2.0], &Device::Cpu)?.reshape((1, 2, 2, 1))?;
        assert!(max_pool_nhwc(&x, 2)?.flatten_all()?.to_vec1::<f32>()?[0].is_nan());
        let err = max_pool_nhwc(&x, 0).unwrap_err().to_string();
        assert!(err.contains("stride"), "{err}");
        Ok(())
    }

    /// erf as the GELU computes it, on this CPU's path, against libm's f64
    /// erf: every value within 5.9e-8 and 2.5 ulp, symmetric, saturating at
    /// 4, NaN kept; and the GELU is the formula around it.
    #[test]
    fn gelu_erf_matches_the_exact_erf() {
        use candle_core::cpu::erf::erf_f64;
        let mut xs: Vec<f32> = (-3_000_000..=3_000_000).map(|i| i as f32 * 2e-6).collect();
        xs.extend((-300..=6).map(|e| 10f32.powf(e as f32 * 0.1)));
        xs.extend([
            0.0,
            -0.0,
            3.999_999_8,
            4.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        // gelu(v) = (erf(v / sqrt 2) + 1) * 0.5 * v: recover erf from v = x * sqrt 2
        // exactly by feeding v and checking the GELU against the f64 formula.
        let vs: Vec<f32> = xs
            .iter()
            .map(|&x| x * std::f32::consts::SQRT_2)
            .filter(|v| v.is_finite())
            .collect();
        let mut out = vec![0f32; vs.len()];
        gelu_erf_slice(&vs, &mut out);
        let mut worst = 0f64;
        for (&v, &y) in vs.iter().zip(&out) {
            let x = (v * std::f32::consts::FRAC_1_SQRT_2) as f64;
            let exact = (erf_f64(x) + 1.0) * 0.5 * v as f64;
            // Error budget: erf within 6e-8 absolute, then three roundings.
            let allowed = 0.5 * (v as f64).abs() * 6e-8 + 4.0 * f32::EPSILON as f64 * exact.abs() + 1e-38;
            let err = (y as f64 - exact).abs();
            worst = worst.max(err / allowed);
            assert!(err <= allowed, "gelu({v}) = {y}, exact {exact}");
        }
        assert!(worst > 0.0);
        let mut nan = [0f32];
        gelu_erf_slice(&[f32::NAN], &mut nan);
        assert!(nan[0].is_nan());
    }

    /// The erf itself, where this CPU has the AVX-512 path: within 5.9e-8
    /// and 2.5 ulp of the exact value, odd, +-1 from |x| = 4 on.
    #[test]
    fn vector_erf_is_within_a_few_ulp() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            use candle_core::cpu::erf::erf_f64;
            let mut xs: Vec<f32> = (-2_500_000..=2_500_000).map(|i| i as f32 * 2e-6).collect();
            xs.extend((-300..=6).flat_map(|e| [10f32.powf(e as f32 * 0.1), -(10f32.powf(e as f32 * 0.1))]));
            xs.extend([0.0, -0.0, 3.999_999_8, 4.0, 7.5, -4.0, f32::INFINITY, f32::NEG_INFINITY]);
            let got = vector_erf(&xs);
            let mut worst_ulp = 0f64;
            for (&x, &y) in xs.iter().zip(&got) {
                let exact = erf_f64(x as f64);
                let err = (y as f64 - exact).abs();
                assert!(err <= 5.9e-8, "erf({x}) = {y}, exact {exact}");
                let ulp = f64::from(f32::EPSILON) * f64::from(2f32.powi((exact.abs() as f32).log2().floor() as i32));
                worst_ulp = worst_ulp.max(err / ulp);
                assert_eq!(y.is_sign_negative(), x.is_sign_negative(), "sign of erf({x})");
            }
            assert!(worst_ulp <= 2.5, "worst {worst_ulp} ulp");
            assert_eq!(
                vector_erf(&[4.0, -4.0, 100.0, f32::INFINITY]),
                vec![1.0, -1.0, 1.0, 1.0]
            );
            assert!(vector_erf(&[f32::NAN])[0].is_nan());
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn vector_erf(xs: &[f32]) -> Vec<f32> {
        use std::arch::x86_64::*;
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(16) {
            let mut lanes = [0f32; 16];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let mut y = [0f32; 16];
            // SAFETY: the caller checked AVX-512F and FMA.
            unsafe {
                let tables = ErfTables::load();
                _mm512_storeu_ps(y.as_mut_ptr(), erf_avx512(_mm512_loadu_ps(lanes.as_ptr()), &tables));
            }
            out.extend_from_slice(&y[..chunk.len()]);
        }
        out
    }

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
            for (rows, lk, d) in [
                (64, 2500, 32),
                (7, 65, 16),
                (5, 3, 64),
                (64, 196, 56),
                (9, 49, 56),
                (3, 16, 8),
                (6, 70, 40),
            ] {
                let kernel = TiledKernel::for_head_dim(d).expect("AVX-512 and a tiled head size");
                let q: Vec<f32> = (0..rows * d).map(|_| rand()).collect();
                let k: Vec<f32> = (0..lk * d).map(|_| rand()).collect();
                let v: Vec<f32> = (0..lk * d).map(|_| rand()).collect();
                let bias: Vec<f32> = (0..lk).map(|j| if j % 5 == 4 { -1e9 } else { 0.0 }).collect();
                let scale = 1.0 / (d as f32).sqrt();
                let (mut want, mut got) = (vec![0f32; rows * d], vec![0f32; rows * d]);
                let (qr, kr, vr) = (
                    Rows { data: &q, stride: d },
                    Rows { data: &k, stride: d },
                    Rows { data: &v, stride: d },
                );
                attend_block(qr, kr, vr, Some(&bias), scale, rows, lk, d, &mut Vec::new(), &mut want);
                let keys = TransposedKeys::new(kr, lk, d, Some(&bias));
                // SAFETY: the features were checked above; sizes as built.
                unsafe { kernel.attend(qr, &keys, vr, scale, rows, &mut Vec::new(), &mut got) };
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
