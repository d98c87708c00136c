//! `x W^T + b` for many rows as one `gemm` call that starts from the bias.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::cpu::f32_slice;

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
}
