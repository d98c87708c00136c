//! `softmax(q k^T * scale + bias) v` with bf16 operands: q, k and v are
//! rounded to bf16, the scores accumulate in f32, the softmax is f32, and
//! its unnormalised weights are rounded to bf16 for the weighted sum of the
//! values (f32 accumulation), then divided by the sum of those rounded
//! weights. As `torch.autocast` runs attention on the CPU.
//!
//! Per head the keys are packed once as pairs of head values for 16 keys a
//! vector, and the values as pairs of keys for 16 head values a vector; a
//! tile of 6 queries then keeps 6 x 64 scores, or 6 x 64 outputs, in 24
//! registers while `vdpbf16ps` walks the head (or the keys) two at a time.

use rayon::prelude::*;

use super::pack::{interleave_f32, pairs_of_f32, transpose_rows};

/// Queries per parallel task.
const QUERY_BLOCK: usize = 48;
/// Queries per register tile.
const ROW_TILE: usize = 6;
/// Keys per register tile of scores (four vectors).
const KEY_TILE: usize = 64;
/// Largest head the kernel takes (four vectors of outputs).
pub const MAX_HEAD: usize = 64;

/// Rows of `d` consecutive f32 values, `stride` apart: one head's queries,
/// keys or values inside a larger tensor.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub stride: usize,
}

impl<'a> Rows<'a> {
    fn row(&self, i: usize, d: usize) -> &'a [f32] {
        &self.data[i * self.stride..i * self.stride + d]
    }

    /// Whether `rows` rows of `d` values lie inside `data`.
    pub fn holds(&self, rows: usize, d: usize) -> bool {
        rows == 0 || (rows - 1) * self.stride + d <= self.data.len()
    }
}

/// One head's operands packed for the kernel. Keys and values are padded
/// with zeros to a multiple of 16 keys; padded keys get a bias of minus
/// infinity, hence exactly zero weight.
pub struct PackedHead {
    /// `pairs x keys` (key-major within a pair): `pair(k[j][2p], k[j][2p+1])`.
    keys: Vec<u32>,
    /// `keys / 2 x 16 vecs`: `pair(v[2i][c], v[2i+1][c])`.
    values: Vec<u32>,
    /// Additive bias of each (padded) key.
    bias: Vec<f32>,
    /// Keys after padding (a multiple of 16).
    keys_padded: usize,
    d: usize,
}

impl PackedHead {
    /// # Safety
    /// The CPU supports AVX512-BF16.
    pub unsafe fn new(k: Rows, v: Rows, lk: usize, d: usize, bias: Option<&[f32]>) -> Self {
        assert!(d <= MAX_HEAD && k.holds(lk, d) && v.holds(lk, d) && bias.is_none_or(|b| b.len() == lk));
        let keys_padded = lk.div_ceil(16) * 16;
        let (pairs, width) = (d.div_ceil(2), 16 * d.div_ceil(16));
        let mut keys = vec![0u32; pairs * keys_padded];
        let mut key_pairs = vec![0u32; 16 * pairs];
        for j0 in (0..lk).step_by(16) {
            let live = (lk - j0).min(16);
            for (j, dst) in key_pairs.chunks_exact_mut(pairs.max(1)).take(live).enumerate() {
                pairs_of_f32(k.row(j0 + j, d), dst);
            }
            let rows: Vec<&[u32]> = key_pairs.chunks_exact(pairs.max(1)).take(live).collect();
            transpose_rows(&rows, pairs, &mut keys[j0..], keys_padded);
        }
        let mut values = vec![0u32; keys_padded / 2 * width];
        for (i, dst) in values.chunks_exact_mut(width.max(1)).take(lk.div_ceil(2)).enumerate() {
            let odd = (2 * i + 1 < lk).then(|| v.row(2 * i + 1, d));
            interleave_f32(v.row(2 * i, d), odd, &mut dst[..d]);
        }
        let bias = (0..keys_padded)
            .map(|j| match (j < lk, bias) {
                (false, _) => f32::NEG_INFINITY,
                (true, Some(b)) => b[j],
                (true, None) => 0.0,
            })
            .collect();
        Self {
            keys,
            values,
            bias,
            keys_padded,
            d,
        }
    }
}

/// Per-task buffers: one row tile's scores (f32) and weights (bf16).
#[derive(Default)]
pub struct Scratch {
    queries: Vec<u32>,
    scores: Vec<f32>,
    weights: Vec<u16>,
}

/// All queries of one head: `q` holds `lq` rows, `out` is `lq x d`. The
/// query blocks run in parallel.
pub fn attend_head(q: Rows, head: &PackedHead, scale: f32, lq: usize, out: &mut [f32]) {
    let d = head.d;
    assert!(q.holds(lq, d) && out.len() == lq * d);
    out.par_chunks_mut(QUERY_BLOCK * d.max(1))
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (blk, o)| {
            let first = blk * QUERY_BLOCK;
            let rows = Rows {
                data: &q.data[(first * q.stride).min(q.data.len())..],
                stride: q.stride,
            };
            for t0 in (0..o.len() / d.max(1)).step_by(ROW_TILE) {
                let live = ROW_TILE.min(o.len() / d - t0);
                // SAFETY: the caller picked this kernel only on a CPU with
                // AVX512-BF16; the rows and outputs exist as asserted.
                unsafe { attend_tile(rows, t0, live, head, scale, scratch, &mut o[t0 * d..(t0 + live) * d]) };
            }
        });
}

/// Scores, softmax and weighted sum of `live` (at most [`ROW_TILE`])
/// queries from row `t0` of `q`. A tile with fewer live queries repeats
/// its last one and drops the extra rows.
///
/// # Safety
/// The CPU supports AVX512-BF16 and AVX512BW; `q` holds `t0 + live` rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma")]
unsafe fn attend_tile(
    q: Rows,
    t0: usize,
    live: usize,
    head: &PackedHead,
    scale: f32,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (d, keys) = (head.d, head.keys_padded);
    let pairs = d.div_ceil(2);
    // The tile's queries as pairs, row by row.
    scratch.queries.resize(ROW_TILE * pairs, 0);
    for (t, dst) in scratch.queries.chunks_exact_mut(pairs.max(1)).enumerate() {
        pairs_of_f32(q.row(t0 + t.min(live - 1), d), dst);
    }
    scratch.scores.resize(ROW_TILE * keys, 0.0);
    scratch.weights.resize(ROW_TILE * keys, 0);
    let mut maxima = [_mm512_set1_ps(f32::NEG_INFINITY); ROW_TILE];
    for j0 in (0..keys).step_by(KEY_TILE) {
        let tile = ScoreTile {
            queries: scratch.queries.as_ptr(),
            keys: head.keys.as_ptr().add(j0),
            stride: keys,
            pairs,
            bias: head.bias.as_ptr().add(j0),
            scale,
            out: scratch.scores.as_mut_ptr().add(j0),
            out_stride: keys,
        };
        match (keys - j0).min(KEY_TILE) / 16 {
            1 => tile.run::<1>(&mut maxima),
            2 => tile.run::<2>(&mut maxima),
            3 => tile.run::<3>(&mut maxima),
            _ => tile.run::<4>(&mut maxima),
        }
    }
    // Exponentials rounded to bf16, and the sum of the rounded weights.
    let mut inverse_sums = [0f32; ROW_TILE];
    for t in 0..ROW_TILE {
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(maxima[t]));
        let (s, w) = (
            scratch.scores.as_ptr().add(t * keys),
            scratch.weights.as_mut_ptr().add(t * keys),
        );
        let mut sum = _mm512_setzero_ps();
        for j in (0..keys).step_by(16) {
            let e = crate::kernels::softmax::exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s.add(j)), max));
            let rounded: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(e));
            _mm256_storeu_si256(w.add(j).cast(), rounded);
            let widened = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(rounded)));
            sum = _mm512_add_ps(sum, widened);
        }
        inverse_sums[t] = 1.0 / _mm512_reduce_add_ps(sum);
    }
    let tile = ValueTile {
        weights: scratch.weights.as_ptr(),
        keys,
        values: head.values.as_ptr(),
        d,
    };
    match d.div_ceil(16) {
        1 => tile.run::<1>(&inverse_sums, live, out),
        2 => tile.run::<2>(&inverse_sums, live, out),
        3 => tile.run::<3>(&inverse_sums, live, out),
        _ => tile.run::<4>(&inverse_sums, live, out),
    }
}

/// [`ROW_TILE`] queries x `V` vectors of 16 keys.
struct ScoreTile {
    /// `ROW_TILE` rows of `pairs` query pairs.
    queries: *const u32,
    /// The first key of the tile in pair 0; pair `p` is `stride` further.
    keys: *const u32,
    stride: usize,
    pairs: usize,
    bias: *const f32,
    scale: f32,
    out: *mut f32,
    out_stride: usize,
}

impl ScoreTile {
    /// Stores `scores * scale + bias` and folds them into each row's maxima.
    #[target_feature(enable = "avx512f,avx512bf16,fma")]
    unsafe fn run<const V: usize>(&self, maxima: &mut [std::arch::x86_64::__m512; ROW_TILE]) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); V]; ROW_TILE];
        let queries: [*const u32; ROW_TILE] = std::array::from_fn(|t| self.queries.add(t * self.pairs));
        for p in 0..self.pairs {
            let kp = self.keys.add(p * self.stride);
            let k: [__m512bh; V] =
                std::array::from_fn(|v| std::mem::transmute(_mm512_loadu_si512(kp.add(16 * v).cast())));
            for (acc_t, query) in acc.iter_mut().zip(&queries) {
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*query.add(p) as i32));
                for (a, &kv) in acc_t.iter_mut().zip(&k) {
                    *a = _mm512_dpbf16_ps(*a, x, kv);
                }
            }
        }
        let scale = _mm512_set1_ps(self.scale);
        let bias: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(self.bias.add(16 * v)));
        for (t, acc_t) in acc.iter().enumerate() {
            for (v, &a) in acc_t.iter().enumerate() {
                let s = _mm512_fmadd_ps(a, scale, bias[v]);
                maxima[t] = _mm512_max_ps(maxima[t], s);
                _mm512_storeu_ps(self.out.add(t * self.out_stride + 16 * v), s);
            }
        }
    }
}

/// [`ROW_TILE`] queries x `V` vectors of head outputs.
struct ValueTile {
    /// `ROW_TILE x keys` bf16 weights.
    weights: *const u16,
    keys: usize,
    /// `keys / 2 x 16 V` value pairs.
    values: *const u32,
    d: usize,
}

impl ValueTile {
    /// Writes the first `live` rows of `weights v / sum` to `out` (`live x d`).
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn run<const V: usize>(&self, inverse_sums: &[f32; ROW_TILE], live: usize, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let width = 16 * V;
        let mut acc = [[_mm512_setzero_ps(); V]; ROW_TILE];
        let weights = self.weights.cast::<u32>();
        for i in 0..self.keys / 2 {
            let vp = self.values.add(i * width);
            let x: [__m512bh; V] =
                std::array::from_fn(|v| std::mem::transmute(_mm512_loadu_si512(vp.add(16 * v).cast())));
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let w: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                    weights.add(t * self.keys / 2 + i).read_unaligned() as i32,
                ));
                for (a, &xv) in acc_t.iter_mut().zip(&x) {
                    *a = _mm512_dpbf16_ps(*a, w, xv);
                }
            }
        }
        for (t, acc_t) in acc.iter().enumerate().take(live) {
            let inv = _mm512_set1_ps(inverse_sums[t]);
            let dst = out.as_mut_ptr().add(t * self.d);
            for (v, &a) in acc_t.iter().enumerate() {
                let lanes = self.d.saturating_sub(16 * v).min(16);
                _mm512_mask_storeu_ps(
                    dst.add(16 * v),
                    ((1u32 << lanes) - 1) as __mmask16,
                    _mm512_mul_ps(a, inv),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pack::{bf16_bits, widen};
    use super::*;

    /// The kernel against f64 attention on the same bf16-rounded operands.
    /// Beyond f32 accumulation, the one rounding the reference does not make
    /// is that of the softmax weights to bf16 (relative 2^-9 each), so the
    /// bound is 2^-8 of the largest value plus a few f32 ulp.
    #[test]
    fn attention_matches_an_f64_reference() {
        if !crate::kernels::choice::cpu_has_avx512_bf16() {
            return;
        }
        let mut s = 11u32;
        let mut rand = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
        };
        // Head sizes off the vector and odd; key counts off the 16-key
        // vector and the 64-key tile; query counts off the 6-row tile and
        // the 48-query block; a masked key.
        for (lq, lk, d) in [
            (64, 196, 56),
            (7, 65, 16),
            (5, 3, 64),
            (50, 49, 33),
            (1, 1, 1),
            (100, 130, 32),
        ] {
            let q: Vec<f32> = (0..lq * d).map(|_| rand()).collect();
            let k: Vec<f32> = (0..lk * d).map(|_| rand()).collect();
            let v: Vec<f32> = (0..lk * d).map(|_| rand()).collect();
            let bias: Vec<f32> = (0..lk)
                .map(|j| if j % 5 == 4 { -1e9 } else { 0.1 * (j % 3) as f32 })
                .collect();
            let scale = 1.0 / (d as f32).sqrt();
            fn rows(data: &[f32], stride: usize) -> Rows<'_> {
                Rows { data, stride }
            }
            let head = unsafe { PackedHead::new(rows(&k, d), rows(&v, d), lk, d, Some(&bias)) };
            let mut out = vec![f32::NAN; lq * d];
            attend_head(rows(&q, d), &head, scale, lq, &mut out);
            let r = |x: f32| widen(bf16_bits(x)) as f64;
            let vmax = v.iter().fold(0f64, |m, &x| m.max(r(x).abs()));
            for i in 0..lq {
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        (0..d).map(|c| r(q[i * d + c]) * r(k[j * d + c])).sum::<f64>() * scale as f64 + bias[j] as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for c in 0..d {
                    let want = (0..lk).map(|j| e[j] * r(v[j * d + c])).sum::<f64>() / total;
                    let err = (out[i * d + c] as f64 - want).abs();
                    assert!(
                        err <= vmax / 256.0 + 1e-5,
                        "{lq} x {lk} x {d} at ({i}, {c}): off by {err}"
                    );
                }
            }
        }
    }
}
