//! Fused scaled dot-product attention for the CPU in f32.
//!
//! For each (batch x head, block of queries) the scores, softmax and
//! weighted sum are computed in a small buffer that stays in cache, with
//! single-threaded `gemm` calls (or the register-tiled AVX-512 kernel for
//! head sizes up to 64) and the blocks spread over the thread pool.
//! Candle's composed version writes the whole B x H x Lq x Lk score tensor
//! to memory several times and synchronises its threads for every small
//! matrix product; on 2,500 image tokens that is most of the decode time.
//! The differentiable composed path in `nn.rs` stays the reference (and is
//! what training uses).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::f32_storage;
#[cfg(target_arch = "x86_64")]
use super::softmax::exp_avx512;
use super::softmax::softmax_in_place;

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
}
