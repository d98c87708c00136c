//! `C = A B + bias` with bf16 operands and f32 accumulation (`vdpbf16ps`).
//!
//! The usual blocked product, written out because no maintained Rust crate
//! has an AVX512-BF16 kernel (`gemm` multiplies bf16 by widening it to
//! f32): the right operand is packed once into [`Panels`], each parallel
//! task packs its block of left-operand rows ([`RowSource`]), and a register
//! tile of 6 rows x 64 columns (24 accumulators) walks the inner dimension
//! two values at a time. One `vdpbf16ps` does 32 multiply-adds where an
//! f32 FMA does 16, so the kernel runs at twice the f32 peak.

use rayon::prelude::*;

use super::pack::{Panels, RowSource, MR, NR};

/// Inner-dimension pairs per pass (k = 1024): a pass's left block
/// ([`ROW_BLOCK`] x 1024 bf16) and right panel (1024 x 64) fit in L2.
const PAIRS_PER_PASS: usize = 512;
/// Most rows per task; fewer when that leaves too few tasks.
const ROW_BLOCK: usize = 16 * MR;

/// What the accumulators start from.
#[derive(Clone, Copy)]
pub enum Bias<'a> {
    None,
    /// One value per output column (a linear layer).
    PerColumn(&'a [f32]),
    /// One value per output row (a 1x1 convolution computed as `W X`).
    PerRow(&'a [f32]),
}

/// `out` (m x n, row-major) `= A B + bias` for `A` from `a` (m x k) and
/// `B` packed in `b` (k x n). Every output is written, so `out` may be
/// uninitialised.
///
/// # Safety
/// The CPU supports AVX512-BF16.
pub unsafe fn product(a: &dyn RowSource, b: &Panels, bias: Bias, out: &mut [std::mem::MaybeUninit<f32>]) {
    let (m, n) = (a.rows(), b.n);
    assert_eq!(out.len(), m * n, "product output of {m} x {n}");
    match bias {
        Bias::PerColumn(v) => assert_eq!(v.len(), n, "bias per column"),
        Bias::PerRow(v) => assert_eq!(v.len(), m, "bias per row"),
        Bias::None => {}
    }
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    // Row blocks of at most ROW_BLOCK rows, at least ~4 per thread where
    // m allows; then split the panels too when the rows alone give too few
    // tasks (few rows, many columns).
    let per_block = (m.div_ceil(4 * threads).div_ceil(MR) * MR).clamp(MR, ROW_BLOCK);
    let row_blocks = m.div_ceil(per_block);
    let panel_groups = (4 * threads).div_ceil(row_blocks).min(b.count());
    let panels_per_group = b.count().div_ceil(panel_groups);
    let dst = SharedOut(out.as_mut_ptr().cast());
    (0..row_blocks * panel_groups)
        .into_par_iter()
        .for_each_init(Vec::new, |packed, task| {
            let (rb, group) = (task / panel_groups, task % panel_groups);
            let rows = rb * per_block..((rb + 1) * per_block).min(m);
            let panels = group * panels_per_group..((group + 1) * panels_per_group).min(b.count());
            // SAFETY: tasks write disjoint tiles (their rows x their panels'
            // columns) of `out`, which outlives the parallel loop.
            unsafe { block(a, b, bias, rows, panels, packed, dst, n) };
        });
}

/// The output pointer shared by the tasks (each writes its own tiles).
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: see `product`: writes through it never overlap.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// One task: `rows` x the columns of `panels`, pass by pass over the inner
/// dimension.
///
/// # Safety
/// `out` points at an m x `ldc` output that no other task writes in these
/// rows and columns; the CPU supports AVX512-BF16.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    a: &dyn RowSource,
    b: &Panels,
    bias: Bias,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    packed: &mut Vec<u32>,
    out: SharedOut,
    ldc: usize,
) {
    let pairs = b.pairs;
    for first in (0..pairs.max(1)).step_by(PAIRS_PER_PASS) {
        let count = PAIRS_PER_PASS.min(pairs - first);
        a.pack(rows.clone(), first, count, packed);
        for p in panels.clone() {
            let panel = b.panel(p, first);
            let cols = NR.min(b.n - p * NR);
            for (tile_index, r0) in rows.clone().step_by(MR).enumerate() {
                let live = MR.min(rows.end - r0);
                let start = match (first, bias) {
                    (0, Bias::None) => Start::Zero,
                    (0, Bias::PerColumn(v)) => Start::Columns(v[p * NR..].as_ptr()),
                    (0, Bias::PerRow(v)) => Start::Rows(v[r0..].as_ptr()),
                    _ => Start::Accumulate,
                };
                let tile = Tile {
                    pairs: count,
                    a: packed[tile_index * MR * count..].as_ptr(),
                    b: panel.as_ptr(),
                    c: out.0.add(r0 * ldc + p * NR),
                    ldc,
                    cols,
                    start,
                };
                tile.run(live);
            }
        }
    }
}

/// What a tile's accumulators start from.
#[derive(Clone, Copy)]
enum Start {
    Zero,
    /// The bias of the tile's columns.
    Columns(*const f32),
    /// The bias of the tile's rows.
    Rows(*const f32),
    /// The output's current values (passes after the first).
    Accumulate,
}

/// One register tile: up to [`MR`] rows x up to [`NR`] columns of `C`.
struct Tile {
    pairs: usize,
    /// `MR` packed rows of `pairs` pairs.
    a: *const u32,
    /// `pairs x NR` packed columns.
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    start: Start,
}

impl Tile {
    /// Runs the kernel for `rows` rows and just enough column vectors.
    ///
    /// # Safety
    /// The pointers describe memory as documented on the fields; the CPU
    /// supports AVX512-BF16.
    unsafe fn run(&self, rows: usize) {
        macro_rules! by_vectors {
            ($r:literal) => {
                match self.cols.div_ceil(16) {
                    1 => self.kernel::<$r, 1>(),
                    2 => self.kernel::<$r, 2>(),
                    3 => self.kernel::<$r, 3>(),
                    _ => self.kernel::<$r, 4>(),
                }
            };
        }
        match rows {
            1 => by_vectors!(1),
            2 => by_vectors!(2),
            3 => by_vectors!(3),
            4 => by_vectors!(4),
            5 => by_vectors!(5),
            _ => by_vectors!(6),
        }
    }

    /// `R` rows x `V` vectors of 16 columns; the last vector's store is
    /// masked to `cols`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn kernel<const R: usize, const V: usize>(&self) {
        use std::arch::x86_64::*;
        let masks: [__mmask16; V] = std::array::from_fn(|v| {
            let lanes = self.cols.saturating_sub(16 * v).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        });
        let row = |r: usize| self.c.add(r * self.ldc);
        let mut acc: [[__m512; V]; R] = match self.start {
            Start::Zero => [[_mm512_setzero_ps(); V]; R],
            Start::Columns(bias) => {
                let b: [__m512; V] = std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], bias.add(16 * v)));
                [b; R]
            }
            Start::Rows(bias) => std::array::from_fn(|r| [_mm512_set1_ps(*bias.add(r)); V]),
            Start::Accumulate => {
                std::array::from_fn(|r| std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], row(r).add(16 * v))))
            }
        };
        let a: [*const u32; R] = std::array::from_fn(|r| self.a.add(r * self.pairs));
        let mut b = self.b;
        for q in 0..self.pairs {
            let bv: [__m512bh; V] =
                std::array::from_fn(|v| std::mem::transmute(_mm512_loadu_si512(b.add(16 * v).cast())));
            for (acc_r, a_r) in acc.iter_mut().zip(&a) {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a_r.add(q) as i32));
                for (acc_rv, &bv) in acc_r.iter_mut().zip(&bv) {
                    *acc_rv = _mm512_dpbf16_ps(*acc_rv, av, bv);
                }
            }
            b = b.add(NR);
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &x) in acc_r.iter().enumerate() {
                _mm512_mask_storeu_ps(row(r).add(16 * v), masks[v], x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pack::{bf16_bits, widen, Bf16Rows, F32Rows};
    use super::*;

    fn uninit(x: &mut [f32]) -> &mut [std::mem::MaybeUninit<f32>] {
        // SAFETY: f32 and MaybeUninit<f32> share a layout.
        unsafe { &mut *(x as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// Every output against an f64 product of the same bf16-rounded
    /// operands: the only difference is the f32 accumulation, so the bound
    /// is a few ulp of the sum of |terms|.
    fn check(m: usize, n: usize, k: usize, bias: bool) {
        let x = values(m * k, 1 + m as u32);
        let w: Vec<u16> = values(n * k, 2 + n as u32).iter().map(|&v| bf16_bits(v)).collect();
        let b = values(n, 3);
        let bias_arg = if bias { Bias::PerColumn(&b) } else { Bias::None };
        let mut out = vec![f32::NAN; m * n];
        unsafe {
            product(
                &F32Rows {
                    data: &x,
                    m,
                    k,
                    stride: k,
                },
                &Panels::of_weight(&w, n, k),
                bias_arg,
                uninit(&mut out),
            )
        };
        for i in 0..m {
            for j in 0..n {
                let terms = (0..k).map(|t| widen(bf16_bits(x[i * k + t])) as f64 * widen(w[j * k + t]) as f64);
                let (sum, magnitude) = terms.fold((0f64, 0f64), |(s, a), v| (s + v, a + v.abs()));
                let start = if bias { b[j] as f64 } else { 0.0 };
                let err = (out[i * n + j] as f64 - (sum + start)).abs();
                let allowed = (k as f64).sqrt() * 4.0 * f64::from(f32::EPSILON) * (magnitude + start.abs()) + 1e-30;
                assert!(
                    err <= allowed,
                    "{m} x {k} x {n} at ({i}, {j}): off by {err}, allowed {allowed}"
                );
            }
        }
    }

    #[test]
    fn products_match_an_f64_reference() {
        if !crate::kernels::choice::cpu_has_avx512_bf16() {
            return;
        }
        // Edges: one row, rows off the 6-row tile, columns off the 16-lane
        // vector and the 64-column panel, an odd inner dimension, several
        // inner passes (k > 1024), few rows against many panels.
        for (m, n, k, bias) in [
            (1, 1, 1, true),
            (7, 17, 3, false),
            (13, 130, 33, true),
            (40, 64, 112, true),
            (6, 48, 2100, true),
            (3, 700, 64, false),
            (97, 80, 1025, true),
        ] {
            check(m, n, k, bias);
        }
    }

    /// `W X` with a bias per row (the 1x1 convolution layout) equals the
    /// transposed product of the linear layout.
    #[test]
    fn weight_times_input_equals_the_transposed_linear() {
        if !crate::kernels::choice::cpu_has_avx512_bf16() {
            return;
        }
        let (o, c, hw) = (37, 21, 150);
        let x = values(c * hw, 9);
        let w: Vec<u16> = values(o * c, 10).iter().map(|&v| bf16_bits(v)).collect();
        let bias = values(o, 11);
        let mut conv = vec![0f32; o * hw];
        unsafe {
            product(
                &Bf16Rows { data: &w, m: o, k: c },
                &Panels::of_f32_rows(&x, c, hw, hw),
                Bias::PerRow(&bias),
                uninit(&mut conv),
            )
        };
        let xt: Vec<f32> = (0..hw * c).map(|i| x[(i % c) * hw + i / c]).collect();
        let mut linear = vec![0f32; hw * o];
        unsafe {
            product(
                &F32Rows {
                    data: &xt,
                    m: hw,
                    k: c,
                    stride: c,
                },
                &Panels::of_weight(&w, o, c),
                Bias::PerColumn(&bias),
                uninit(&mut linear),
            )
        };
        for ch in 0..o {
            for pos in 0..hw {
                assert_eq!(
                    conv[ch * hw + pos],
                    linear[pos * o + ch],
                    "channel {ch}, position {pos}"
                );
            }
        }
    }
}
