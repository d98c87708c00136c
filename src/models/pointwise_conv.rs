//! A 1x1 `nn.Conv2d` with a bias (the FPN neck's lateral convolutions and
//! the mask decoder's `conv_s0` / `conv_s1`): Candle's convolution, or,
//! when its weight is bf16 on the CPU ([`crate::autocast`]), the bf16
//! product kernel on the f32 feature map.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::device::products::{self, Conv2d};

#[derive(Debug, Clone)]
pub struct PointwiseConv(Conv2d);

/// A 1x1 convolution from `in_dim` to `out_dim` channels, weights at `vb`
/// (`weight`: out x in x 1 x 1, `bias`: out).
pub fn pointwise_conv(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<PointwiseConv> {
    let dtype = crate::autocast::product_weight_dtype(&vb);
    if dtype == vb.dtype() {
        return Ok(PointwiseConv(products::conv2d(
            in_dim,
            out_dim,
            1,
            Default::default(),
            vb,
        )?));
    }
    let weight = vb.get_with_hints_dtype((out_dim, in_dim, 1, 1), "weight", candle_nn::Init::Const(0.0), dtype)?;
    let bias = vb.get(out_dim, "bias")?;
    Ok(PointwiseConv(Conv2d::new(candle_nn::Conv2d::new(
        weight,
        Some(bias),
        Default::default(),
    ))))
}

impl Module for PointwiseConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.0.weight(), self.0.bias());
        let bf16_products = w.dtype() == DType::BF16
            && x.dtype() == DType::F32
            && x.device().is_cpu()
            && !x.track_op()
            && crate::kernels::choice::custom_kernels();
        match (bf16_products, b) {
            (true, Some(b)) => crate::kernels::bf16::pointwise_conv(x, w, b),
            _ => self.0.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// With a bf16 weight the kernel equals Candle's convolution of the
    /// bf16-rounded input and weight (f32 arithmetic), on a batch of two.
    #[test]
    fn bf16_weights_equal_the_rounded_f32_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 37, 9, 11), &dev)?;
        let w = Tensor::randn(0f32, 0.2, (70, 37, 1, 1), &dev)?.to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 1.0, 70, &dev)?;
        let conv = candle_nn::Conv2d::new(w.clone(), Some(b.clone()), Default::default());
        let ours = PointwiseConv(Conv2d::new(conv)).forward(&x)?;
        let rounded = crate::kernels::bf16::round_to_bf16(&x)?;
        let reference =
            candle_nn::Conv2d::new(w.to_dtype(DType::F32)?, Some(b), Default::default()).forward(&rounded)?;
        assert_eq!(ours.dims(), &[2, 70, 9, 11]);
        let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?;
        let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff <= 1e-5 * scale, "differs by {diff} (scale {scale})");
        Ok(())
    }
}
