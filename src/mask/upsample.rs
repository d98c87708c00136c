//! Bilinear upsampling of low-resolution logits that matches PyTorch's
//! `F.interpolate(..., mode="bilinear", align_corners=False)` on the CPU.

use std::borrow::Cow;

/// The two source taps and their weights for one output coordinate.
#[derive(Debug, Clone, Copy)]
struct Taps {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

/// Source taps along one axis, computed the way PyTorch's CPU kernel does
/// (`compute_source_index_and_lambda` with `align_corners=False`), in `f32`
/// so that the results agree with PyTorch to the last few ulps.
///
/// `in_len` must be nonzero.
fn axis_taps(in_len: usize, out_len: usize) -> Vec<Taps> {
    if in_len == out_len {
        // PyTorch special-cases equal sizes as a plain copy; doing the same
        // makes that axis an exact identity.
        return (0..out_len)
            .map(|i| Taps {
                i0: i,
                i1: i,
                l0: 1.0,
                l1: 0.0,
            })
            .collect();
    }
    let last = in_len - 1;
    // PyTorch computes the ratio in the op's math type (f32 for f32 input).
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            // Half-pixel centres; negative positions clamp to the first pixel.
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            // `src` is finite and >= 0, so the float-to-int cast is exact
            // for the floor; `min` guards against rounding past the end.
            let i0 = (src.floor() as usize).min(last);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < last { i0 + 1 } else { i0 };
            Taps {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}

/// Resizes a single-channel row-major `in_h x in_w` image to
/// `out_h x out_w`, exactly like PyTorch's
/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False,
/// antialias=False)` on the CPU.
///
/// Each output is `h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)` in `f32`,
/// with the first product of each sum fused into the addition the way
/// PyTorch's vectorised CPU builds compute it; on the reference fixtures the
/// result is bit-identical to PyTorch. An axis whose size does not change is
/// copied exactly.
///
/// This never panics: if `src` is shorter than `in_h * in_w` the missing
/// samples read as `0.0`, an empty input axis gives all zeros, and an output
/// size that cannot be allocated (`out_h * out_w` overflowing) gives an empty
/// vector. Callers are expected to pass consistent shapes.
pub fn upsample_bilinear(src: &[f32], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let Some(out_len) = out_h.checked_mul(out_w) else {
        return Vec::new();
    };
    let Some(in_len) = in_h.checked_mul(in_w).filter(|&n| n > 0) else {
        return vec![0.0; out_len];
    };
    // Pad a short input once so the hot loop can index without checks
    // failing; the common, well-formed case borrows.
    let src: Cow<[f32]> = if src.len() >= in_len {
        Cow::Borrowed(&src[..in_len])
    } else {
        let mut padded = src.to_vec();
        padded.resize(in_len, 0.0);
        Cow::Owned(padded)
    };
    if in_h == out_h && in_w == out_w {
        return src.into_owned();
    }

    let ys = axis_taps(in_h, out_h);
    let xs = axis_taps(in_w, out_w);
    let mut out = Vec::with_capacity(out_len);
    for ty in &ys {
        let row0 = &src[ty.i0 * in_w..(ty.i0 + 1) * in_w];
        let row1 = &src[ty.i1 * in_w..(ty.i1 + 1) * in_w];
        for tx in &xs {
            // PyTorch's kernel evaluates `t0 * w0 + t1 * w1` per axis, and
            // its AVX2/AVX-512 builds contract that into `fma(t0, w0, t1 *
            // w1)`. Doing the same (Rust's `mul_add` is always fused) makes
            // the result bit-identical to PyTorch on such CPUs, which keeps
            // pixels whose logit is within an ulp of 0 on the same side of
            // the threshold.
            let top = row0[tx.i0].mul_add(tx.l0, row0[tx.i1] * tx.l1);
            let bottom = row1[tx.i0].mul_add(tx.l0, row1[tx.i1] * tx.l1);
            out.push(top.mul_add(ty.l0, bottom * ty.l1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_identity_and_edges() {
        let t = axis_taps(3, 3);
        assert!(t.iter().enumerate().all(|(i, t)| t.i0 == i && t.l1 == 0.0));
        // Upsampling 2 -> 4: first output clamps to the first pixel, the
        // last one to the last pixel.
        let t = axis_taps(2, 4);
        assert_eq!((t[0].i0, t[0].l1), (0, 0.0));
        assert_eq!((t[3].i0, t[3].i1), (1, 1));
    }
}
