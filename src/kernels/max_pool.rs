//! Max pooling in place of the channels-last layout Hiera works in.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::f32_slice;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
