//! Differentiable bilinear resizing for the training loss.
//!
//! The official loss compares the ground truth with
//! `F.interpolate(low_res_logits, size=(S, S), mode="bilinear", align_corners=False)`.
//! Candle has no bilinear resize that autograd can differentiate, but a
//! separable bilinear resize is linear in its input: with an `out x in`
//! interpolation matrix per axis,
//!
//! ```text
//! out = A_h · X · A_wᵀ        (A_h: H_out x H_in, A_w: W_out x W_in)
//! ```
//!
//! so two matrix products (which Candle differentiates, on every device) give
//! the resize and its gradient. The matrices follow PyTorch's
//! `align_corners=False` rule exactly (see [`bilinear_matrix`]); the result
//! agrees with [`crate::mask::upsample_bilinear`] (bit-identical to
//! PyTorch) to float rounding.

use candle_core::{DType, Device, Result, Tensor};

/// The `out_len x in_len` matrix that resizes one axis of length `in_len` to
/// `out_len` like PyTorch's `F.interpolate(mode="bilinear",
/// align_corners=False, antialias=False)` with an explicit output size.
///
/// Row `d` holds the two taps of output sample `d`: with
/// `scale = in_len / out_len` (computed in `f32`, as PyTorch does for `f32`
/// input), `src = max((d + 0.5) * scale - 0.5, 0)`, `i0 = floor(src)`,
/// `i1 = min(i0 + 1, in_len - 1)`, weights `1 - frac` on `i0` and `frac` on
/// `i1` (added together when `i0 == i1` at the last sample). Equal lengths give
/// the identity, as PyTorch copies such an axis. The matrix is built on the
/// CPU in `f32` and then moved to `device` and cast to `dtype`.
///
/// Errors if `in_len` or `out_len` is zero.
pub fn bilinear_matrix(in_len: usize, out_len: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    if in_len == 0 || out_len == 0 {
        candle_core::bail!("bilinear_matrix: lengths must be positive (in {in_len}, out {out_len})");
    }
    let mut data = vec![0f32; out_len * in_len];
    if in_len == out_len {
        for i in 0..out_len {
            data[i * in_len + i] = 1.0;
        }
    } else {
        let last = in_len - 1;
        let scale = in_len as f32 / out_len as f32;
        for d in 0..out_len {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(last);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < last { i0 + 1 } else { i0 };
            let row = &mut data[d * in_len..(d + 1) * in_len];
            row[i0] += 1.0 - l1;
            row[i1] += l1;
        }
    }
    Tensor::from_vec(data, (out_len, in_len), &Device::Cpu)?
        .to_device(device)?
        .to_dtype(dtype)
}

/// Resizes `x` (`N x C x H x W`) to `N x C x out_h x out_w` with bilinear
/// interpolation, `align_corners=False` (PyTorch's `F.interpolate` default
/// for `mode="bilinear"`), differentiably.
///
/// Builds the two interpolation matrices with [`bilinear_matrix`] on each
/// call (cheap next to the products); callers resizing many batches of one
/// size can build them once and call [`resize_bilinear_with`]. An axis whose
/// size does not change is left untouched.
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let a_h = if h != out_h {
        Some(bilinear_matrix(h, out_h, x.device(), x.dtype())?)
    } else {
        None
    };
    let a_w = if w != out_w {
        Some(bilinear_matrix(w, out_w, x.device(), x.dtype())?)
    } else {
        None
    };
    resize_with_matrices(x, a_h.as_ref(), a_w.as_ref())
}

/// [`resize_bilinear`] with prebuilt interpolation matrices: `a_h` is
/// `out_h x H` and `a_w` is `out_w x W` (from [`bilinear_matrix`], on `x`'s
/// device and in its dtype).
pub fn resize_bilinear_with(x: &Tensor, a_h: &Tensor, a_w: &Tensor) -> Result<Tensor> {
    resize_with_matrices(x, Some(a_h), Some(a_w))
}

fn resize_with_matrices(x: &Tensor, a_h: Option<&Tensor>, a_w: Option<&Tensor>) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let mut y = x.clone();
    let mut cur_w = w;
    if let Some(a_w) = a_w {
        let (out_w, in_w) = a_w.dims2()?;
        if in_w != w {
            candle_core::bail!("resize_bilinear: width matrix is {out_w}x{in_w}, input width is {w}");
        }
        // (N*C*H, W) · A_wᵀ (W, W_out): one 2-D product, the transposed
        // right operand is read in place by the GEMM.
        y = y.contiguous()?.reshape((n * c * h, w))?.matmul(&a_w.t()?)?;
        cur_w = out_w;
    }
    let mut cur_h = h;
    if let Some(a_h) = a_h {
        let (out_h, in_h) = a_h.dims2()?;
        if in_h != h {
            candle_core::bail!("resize_bilinear: height matrix is {out_h}x{in_h}, input height is {h}");
        }
        // A_h (H_out, H) · Y (N*C, H, W_out), the matrix broadcast over the
        // batch with a zero stride (no copy).
        let y3 = y.reshape((n * c, h, cur_w))?;
        y = a_h.unsqueeze(0)?.broadcast_as((n * c, out_h, in_h))?.matmul(&y3)?;
        cur_h = out_h;
    }
    y.reshape((n, c, cur_h, cur_w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::upsample_bilinear;
    use candle_core::Var;

    fn check_against_postprocess(n: usize, c: usize, in_h: usize, in_w: usize, out_h: usize, out_w: usize) {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (n, c, in_h, in_w), &dev).unwrap();
        let y = resize_bilinear(&x, out_h, out_w).unwrap();
        assert_eq!(y.dims(), &[n, c, out_h, out_w]);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ys = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (plane_in, plane_out) = (in_h * in_w, out_h * out_w);
        let mut worst = 0f32;
        for p in 0..n * c {
            let reference = upsample_bilinear(&xs[p * plane_in..(p + 1) * plane_in], in_h, in_w, out_h, out_w);
            for (a, b) in reference.iter().zip(&ys[p * plane_out..(p + 1) * plane_out]) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(
            worst <= 1e-5,
            "{in_h}x{in_w} -> {out_h}x{out_w}: max abs difference {worst} from postprocess::upsample_bilinear"
        );
    }

    #[test]
    fn matches_postprocess_32_to_128() {
        check_against_postprocess(2, 1, 32, 32, 128, 128);
    }

    #[test]
    fn matches_postprocess_64_to_256() {
        check_against_postprocess(1, 2, 64, 64, 256, 256);
    }

    #[test]
    fn matches_postprocess_non_integer_ratio_48_to_100() {
        check_against_postprocess(2, 1, 48, 48, 100, 100);
    }

    #[test]
    fn matches_postprocess_rectangular_and_downscale() {
        // Different ratios per axis, one axis shrinking, one axis unchanged.
        check_against_postprocess(1, 1, 20, 30, 45, 30);
        check_against_postprocess(1, 1, 40, 17, 13, 64);
    }

    #[test]
    fn matrix_rows_sum_to_one_and_equal_sizes_are_identity() {
        let dev = Device::Cpu;
        for (i, o) in [(4, 16), (48, 100), (100, 48), (1, 5), (5, 1)] {
            let m = bilinear_matrix(i, o, &dev, DType::F32).unwrap();
            assert_eq!(m.dims(), &[o, i]);
            for s in m.sum(1).unwrap().to_vec1::<f32>().unwrap() {
                assert!((s - 1.0).abs() < 1e-6, "{i}->{o}: row sum {s}");
            }
        }
        let id = bilinear_matrix(3, 3, &dev, DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(id, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]);
        // 2 -> 4: scale 0.5, src = [-0.25 -> 0, 0.25, 0.75, 1.25 -> i0 = 1 (last)].
        let m = bilinear_matrix(2, 4, &dev, DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            m,
            vec![vec![1.0, 0.0], vec![0.75, 0.25], vec![0.25, 0.75], vec![0.0, 1.0]]
        );
        assert!(bilinear_matrix(0, 4, &dev, DType::F32).is_err());
    }

    #[test]
    fn gradients_flow_through_the_resize() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 1, 8, 8), &dev).unwrap()).unwrap();
        let y = resize_bilinear(x.as_tensor(), 20, 20).unwrap();
        // d(sum y)/dx = column sums of A_h times column sums of A_w: every
        // input pixel receives the total weight it contributes, and these
        // total (20*20) over an 8x8 input.
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).expect("gradient for x");
        assert_eq!(g.dims(), &[2, 1, 8, 8]);
        let total = g.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((total - 2.0 * 400.0).abs() < 1e-3, "gradient total {total}");
        let a_h = bilinear_matrix(8, 20, &dev, DType::F32).unwrap();
        let col = a_h.sum(0).unwrap();
        let expected = col
            .unsqueeze(1)
            .unwrap()
            .broadcast_mul(&col.unsqueeze(0).unwrap())
            .unwrap();
        let diff = (g.get(0).unwrap().get(0).unwrap() - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "gradient differs from A_hᵀ1 · 1ᵀA_w by {diff}");
    }
}
