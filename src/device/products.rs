//! The one door for the generic path's matrix products and convolutions
//! (the ones Candle runs, on CUDA or on the CPU without rsam's kernels).
//!
//! - Layouts: every product's operands are checked against cuBLAS's rules
//!   ([`super::gemm_layout`]). In debug builds (every test) a layout that
//!   cuBLAS would reject is an error on any device, so the CPU tests see
//!   what would fail on a GPU; release builds copy such operands instead.
//! - bf16 on the CPU: Candle's CPU convolutions have no bf16 matrix
//!   product. With `RSAM_GENERIC_KERNELS=1` and `--dtype bf16` the network
//!   runs in bf16 as on CUDA, and each product (convolutions and matrix
//!   products alike) takes its bf16 operands exactly, multiplies and
//!   accumulates in f32 and rounds the result to bf16: what cuBLAS and
//!   Candle's CUDA convolutions do in bf16. Everything else (norms, softmax,
//!   activations, additions, casts) runs Candle's own bf16 operations.

use candle_core::{DType, Module, Result, Tensor};

use super::gemm_layout;

/// `a.matmul(b)` with operands cuBLAS can take.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = acceptable_operands(a, b)?;
    if bf16_on_cpu(&a) {
        return a
            .to_dtype(DType::F32)?
            .matmul(&b.to_dtype(DType::F32)?)?
            .to_dtype(DType::BF16);
    }
    a.matmul(&b)
}

/// The operands as given when cuBLAS takes them; otherwise an error (debug
/// builds) or contiguous copies (release builds).
fn acceptable_operands(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    match gemm_layout::check(a.layout(), b.layout()) {
        Ok(()) => Ok((a.clone(), b.clone())),
        Err(e) if cfg!(debug_assertions) => Err(candle_core::Error::Msg(e.to_string())),
        Err(e) => {
            tracing::debug!(error = %e, "copying matrix product operands");
            Ok((a.contiguous()?, b.contiguous()?))
        }
    }
}

/// Whether `x` is a bf16 tensor on the CPU, whose products run widened.
fn bf16_on_cpu(x: &Tensor) -> bool {
    x.dtype() == DType::BF16 && x.device().is_cpu()
}

/// `nn.Conv2d`: Candle's convolution, in f32 for bf16 on the CPU.
#[derive(Debug, Clone)]
pub struct Conv2d(candle_nn::Conv2d);

impl Conv2d {
    pub fn new(conv: candle_nn::Conv2d) -> Self {
        Self(conv)
    }

    pub fn weight(&self) -> &Tensor {
        self.0.weight()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.0.bias()
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !bf16_on_cpu(x) {
            return self.0.forward(x);
        }
        let bias = self.0.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
        let conv = candle_nn::Conv2d::new(self.0.weight().to_dtype(DType::F32)?, bias, *self.0.config());
        conv.forward(&x.to_dtype(DType::F32)?)?.to_dtype(DType::BF16)
    }
}

/// `candle_nn::conv2d` behind [`Conv2d`].
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: candle_nn::Conv2dConfig,
    vb: candle_nn::VarBuilder,
) -> Result<Conv2d> {
    Ok(Conv2d(candle_nn::conv2d(
        in_channels,
        out_channels,
        kernel,
        config,
        vb,
    )?))
}

/// `nn.ConvTranspose2d`: Candle's transposed convolution, in f32 for bf16
/// on the CPU.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d(candle_nn::ConvTranspose2d);

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !bf16_on_cpu(x) {
            return self.0.forward(x);
        }
        let bias = self.0.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
        let conv = candle_nn::ConvTranspose2d::new(self.0.weight().to_dtype(DType::F32)?, bias, *self.0.config());
        conv.forward(&x.to_dtype(DType::F32)?)?.to_dtype(DType::BF16)
    }
}

/// `candle_nn::conv_transpose2d` behind [`ConvTranspose2d`].
pub fn conv_transpose2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: candle_nn::ConvTranspose2dConfig,
    vb: candle_nn::VarBuilder,
) -> Result<ConvTranspose2d> {
    Ok(ConvTranspose2d(candle_nn::conv_transpose2d(
        in_channels,
        out_channels,
        kernel,
        config,
        vb,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
        d.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn a_layout_cublas_rejects_is_an_error_in_debug_builds() {
        let hs = Tensor::randn(0f32, 1.0, (3, 5, 8), &Device::Cpu).unwrap();
        let rows = hs.narrow(1, 1, 1).unwrap().squeeze(1).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 8), &Device::Cpu).unwrap();
        let result = matmul(&rows, &w.t().unwrap());
        if cfg!(debug_assertions) {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("cuBLAS") && err.contains("[3, 8]"), "{err}");
        } else {
            let want = rows.contiguous().unwrap().matmul(&w.t().unwrap()).unwrap();
            assert_eq!(max_diff(&result.unwrap(), &want), 0.0);
        }
        let fine = matmul(&rows.contiguous().unwrap(), &w.t().unwrap()).unwrap();
        assert_eq!(fine.dims(), &[3, 4]);
    }

    /// bf16 products on the CPU: the rounded operands multiplied in f32,
    /// the result rounded once (cuBLAS's bf16 gemm with f32 compute).
    #[test]
    fn bf16_products_on_the_cpu_are_f32_products_of_the_bf16_operands() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (2, 7, 33), &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let b = Tensor::randn(0f32, 1.0, (2, 33, 5), &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let got = matmul(&a, &b).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        let exact = a
            .to_dtype(DType::F64)
            .unwrap()
            .matmul(&b.to_dtype(DType::F64).unwrap())
            .unwrap();
        let scale = exact.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap() as f32;
        // One bf16 rounding of the result: 2^-8 relative.
        assert!(max_diff(&got, &exact) <= scale / 256.0, "{}", max_diff(&got, &exact));

        let w = Tensor::randn(0f32, 0.3, (6, 3, 2, 2), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 6, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).unwrap();
        let cfg = candle_nn::Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let half = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        let conv = Conv2d::new(candle_nn::Conv2d::new(half(&w), Some(half(&bias)), cfg));
        let got = conv.forward(&half(&x)).unwrap();
        let f32_of = |t: &Tensor| half(t).to_dtype(DType::F32).unwrap();
        let want = candle_nn::Conv2d::new(f32_of(&w), Some(f32_of(&bias)), cfg)
            .forward(&f32_of(&x))
            .unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        assert_eq!(max_diff(&got, &half(&want)), 0.0);

        let up = ConvTranspose2d(candle_nn::ConvTranspose2d::new(
            half(&w),
            None,
            candle_nn::ConvTranspose2dConfig {
                stride: 2,
                ..Default::default()
            },
        ));
        let y = up
            .forward(&half(&Tensor::randn(0f32, 1.0, (1, 6, 4, 4), &dev).unwrap()))
            .unwrap();
        assert_eq!((y.dtype(), y.dims()), (DType::BF16, &[1usize, 3, 8, 8][..]));
    }
}
