//! Matrix products with bf16 operands and f32 accumulation on the CPU, for
//! `--dtype bf16` there (see [`crate::autocast`]): linear layers and 1x1
//! convolutions with bf16 weights, and attention. Activations stay f32;
//! each product rounds its f32 operands to bf16 (nearest, ties to even)
//! and accumulates in f32, as `torch.autocast("cpu", dtype=torch.bfloat16)`
//! does.
//!
//! On CPUs with AVX512-BF16 the products run on `vdpbf16ps` (twice the
//! multiply-adds of an f32 FMA per instruction); elsewhere, or with
//! `RSAM_AVX512_BF16=0`, the same rounded operands go through the f32
//! kernels ([`Bf16Products::Widened`]: correct, not faster).

#[cfg(target_arch = "x86_64")]
mod attention;
#[cfg(target_arch = "x86_64")]
mod few_rows;
#[cfg(target_arch = "x86_64")]
mod gemm;
pub mod pack;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use crate::kernels::choice::{bf16_products, Bf16Products};

/// `x W^T + b` for an f32 `x` (m x k, contiguous), a bf16 weight `W`
/// (n x k, contiguous) and an optional f32 bias (n): an m x n f32 result.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if bf16_products() == Bf16Products::Widened {
        return widened_linear(x, w, b);
    }
    match b {
        Some(b) => x.apply_op3_no_bwd(w, b, &Bf16Linear),
        None => x.apply_op2_no_bwd(w, &Bf16Linear),
    }
}

/// A 1x1 convolution: `W x + b` at every pixel of an f32 B x C x H x W
/// map, for a bf16 weight of O x C (x 1 x 1) and an f32 bias of O; the
/// result is B x O x H x W.
pub fn pointwise_conv(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (o, c) = (w.dim(0)?, w.dim(1)?);
    let w = w.reshape((o, c))?;
    if bf16_products() == Bf16Products::Widened {
        let w = w.to_dtype(DType::F32)?.reshape((o, c, 1, 1))?;
        let y = round_to_bf16(x)?.conv2d(&w, 0, 1, 1, 1)?;
        return y.broadcast_add(&b.reshape((1, o, 1, 1))?);
    }
    x.contiguous()?
        .apply_op3_no_bwd(&w.contiguous()?, b, &Bf16PointwiseConv)
}

/// Fused `softmax(q k^T * scale + bias) v` with bf16 operands, for f32
/// `q`: B x H x Lq x D and `k` / `v`: B x H x Lk x D read in place (any
/// strides with consecutive head values), and the key bias of
/// [`crate::kernels::fused_attention`]. The result is contiguous f32.
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, key_bias: Option<Vec<f32>>) -> Result<Tensor> {
    let tiled = cfg!(target_arch = "x86_64") && q.dim(3)? <= 64;
    if bf16_products() == Bf16Products::Widened || !tiled {
        let (q, k, v) = (round_to_bf16(q)?, round_to_bf16(k)?, round_to_bf16(v)?);
        return crate::kernels::fused_attention(&q, &k, &v, scale, key_bias);
    }
    #[cfg(target_arch = "x86_64")]
    {
        q.apply_op3_no_bwd(k, v, &ops::Bf16Attention { scale, key_bias })
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("only x86-64 has the tiled kernel")
}

/// `x` with every value rounded to the nearest bf16, as f32.
pub fn round_to_bf16(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(DType::BF16)?.to_dtype(DType::F32)
}

/// [`linear`] without AVX512-BF16: the rounded input and the widened
/// weight through the f32 kernels.
fn widened_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (x, w) = (round_to_bf16(x)?, w.to_dtype(DType::F32)?);
    if x.dim(0)? <= crate::kernels::FEW_ROWS {
        let y = crate::kernels::linear_few_rows(&x, &w)?;
        return match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        };
    }
    match b {
        Some(b) => crate::kernels::linear_with_bias(&x, &w, b),
        None => x.matmul(&w.t()?),
    }
}

/// The f32 values of a contiguous CPU tensor; `what` names the operand.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str, what: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        (CpuStorage::F32(_), None) => candle_core::bail!("{op}: {what} must be contiguous"),
        _ => candle_core::bail!("{op}: {what} must be f32"),
    }
}

/// The bf16 bits of a contiguous CPU tensor.
fn bf16_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str, what: &str) -> Result<&'a [u16]> {
    use half::slice::HalfFloatSliceExt;
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::BF16(v), Some((start, end))) => Ok(v[start..end].reinterpret_cast()),
        (CpuStorage::BF16(_), None) => candle_core::bail!("{op}: {what} must be contiguous"),
        _ => candle_core::bail!("{op}: {what} must be bf16"),
    }
}

struct Bf16Linear;

impl Bf16Linear {
    const NAME: &'static str = "bf16 linear";

    fn forward(
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, wk) = wl.shape().dims2()?;
        let bias_len = bias.map(|(_, l)| l.shape().dims1()).transpose()?;
        if wk != k || bias_len.is_some_and(|len| len != n) {
            candle_core::bail!(
                "{}: x {:?}, weight {:?} and bias of {bias_len:?} do not match",
                Self::NAME,
                xl.shape(),
                wl.shape()
            );
        }
        let x = f32_slice(xs, xl, Self::NAME, "x")?;
        let w = bf16_slice(ws, wl, Self::NAME, "weight")?;
        let b = bias.map(|(s, l)| f32_slice(s, l, Self::NAME, "bias")).transpose()?;
        let mut out = Vec::with_capacity(m * n);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: this op runs only where the CPU has AVX512-BF16, and both
        // kernels write every one of the m x n outputs.
        unsafe {
            if m <= crate::kernels::FEW_ROWS {
                few_rows::product(x, m, k, w, n, b, out.spare_capacity_mut());
            } else {
                let bias = b.map_or(gemm::Bias::None, gemm::Bias::PerColumn);
                let rows = pack::F32Rows {
                    data: x,
                    m,
                    k,
                    stride: k,
                };
                gemm::product(&rows, &pack::Panels::of_weight(w, n, k), bias, out.spare_capacity_mut());
            }
            out.set_len(m * n);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, w, b, &mut out);
            candle_core::bail!("{}: AVX512-BF16 kernels exist only on x86-64", Self::NAME);
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

impl CustomOp2 for Bf16Linear {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        Self::forward(xs, xl, ws, wl, None)
    }
}

impl CustomOp3 for Bf16Linear {
    fn name(&self) -> &'static str {
        Self::NAME
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
        Self::forward(xs, xl, ws, wl, Some((bs, bl)))
    }
}

struct Bf16PointwiseConv;

impl CustomOp3 for Bf16PointwiseConv {
    fn name(&self) -> &'static str {
        "bf16 1x1 convolution"
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
        let op = self.name();
        let (batch, c, h, w_) = xl.shape().dims4()?;
        let (o, wc) = wl.shape().dims2()?;
        if wc != c || bl.shape().dims1()? != o {
            candle_core::bail!(
                "{op}: input {:?}, weight {:?} and bias {:?} do not match",
                xl.shape(),
                wl.shape(),
                bl.shape()
            );
        }
        let x = f32_slice(xs, xl, op, "input")?;
        let w = bf16_slice(ws, wl, op, "weight")?;
        let b = f32_slice(bs, bl, op, "bias")?;
        let hw = h * w_;
        let mut out = Vec::with_capacity(batch * o * hw);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: this op runs only where the CPU has AVX512-BF16, and the
        // product writes every output of every image.
        unsafe {
            let images = x.chunks_exact((c * hw).max(1));
            for (image, dst) in images.zip(out.spare_capacity_mut().chunks_exact_mut((o * hw).max(1))) {
                let input = pack::Panels::of_f32_rows(image, c, hw, hw);
                gemm::product(
                    &pack::Bf16Rows { data: w, m: o, k: c },
                    &input,
                    gemm::Bias::PerRow(b),
                    dst,
                );
            }
            out.set_len(batch * o * hw);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, w, b, &mut out);
            candle_core::bail!("{op}: AVX512-BF16 kernels exist only on x86-64");
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, o, h, w_))))
    }
}

#[cfg(target_arch = "x86_64")]
mod ops {
    use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
    use rayon::prelude::*;

    use super::attention::{attend_head, PackedHead, Rows};

    pub struct Bf16Attention {
        pub scale: f32,
        pub key_bias: Option<Vec<f32>>,
    }

    /// A B x H x L x D f32 operand read in place.
    struct Heads<'a> {
        data: &'a [f32],
        dims: (usize, usize, usize, usize),
        strides: [usize; 3],
    }

    impl<'a> Heads<'a> {
        fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<Self> {
            let CpuStorage::F32(data) = storage else {
                candle_core::bail!("bf16 attention: {what} must be f32")
            };
            let dims = layout.shape().dims4()?;
            let stride = layout.stride();
            if dims.3 > 1 && stride[3] != 1 {
                candle_core::bail!("bf16 attention: the head values of {what} must be consecutive");
            }
            Ok(Self {
                data: &data[layout.start_offset()..],
                dims,
                strides: [stride[0], stride[1], stride[2]],
            })
        }

        /// Head `n` of the B x H flattened heads.
        fn head(&self, n: usize) -> Rows<'a> {
            let (b, h) = (n / self.dims.1, n % self.dims.1);
            Rows {
                data: &self.data[(b * self.strides[0] + h * self.strides[1]).min(self.data.len())..],
                stride: self.strides[2],
            }
        }
    }

    impl CustomOp3 for Bf16Attention {
        fn name(&self) -> &'static str {
            "bf16 attention"
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
            if k.dims != (b, h, lk, d) || v.dims != k.dims || d > super::attention::MAX_HEAD {
                candle_core::bail!(
                    "bf16 attention: q {:?}, k {:?}, v {:?} do not match (or heads wider than 64)",
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
                            "bf16 attention: key bias of {} values does not fit {n} x {lk}",
                            bias.len()
                        );
                    }
                    n / groups
                }
                None => 1,
            };
            let mut out = vec![0f32; n * lq * d];
            if !out.is_empty() {
                out.par_chunks_mut(lq * d).enumerate().for_each(|(n, out_head)| {
                    let (qh, kh, vh) = (q.head(n), k.head(n), v.head(n));
                    assert!(qh.holds(lq, d) && kh.holds(lk, d) && vh.holds(lk, d));
                    let bias = self.key_bias.as_ref().map(|b| &b[n / per_group * lk..][..lk]);
                    // SAFETY: this op runs only where the CPU has AVX512-BF16.
                    let packed = unsafe { PackedHead::new(kh, vh, lk, d, bias) };
                    attend_head(qh, &packed, self.scale, lq, out_head);
                });
            }
            Ok((CpuStorage::F32(out), Shape::from((b, h, lq, d))))
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use candle_core::Device;

    fn avx512_bf16() -> bool {
        crate::kernels::choice::cpu_has_avx512_bf16()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The widened path (CPUs without AVX512-BF16) rounds the same operands:
    /// it differs from the native kernels only in the order of the f32
    /// additions, for few rows and many, with and without a bias.
    #[test]
    fn widened_linear_equals_the_native_kernels() -> Result<()> {
        if !avx512_bf16() {
            return Ok(());
        }
        let dev = Device::Cpu;
        for (m, k, n, bias) in [(10, 768, 300, true), (100, 112, 336, true), (33, 40, 17, false)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 0.1, (n, k), &dev)?.to_dtype(DType::BF16)?;
            let b = Tensor::randn(0f32, 1.0, n, &dev)?;
            let b = bias.then_some(&b);
            let native = match b {
                Some(b) => x.apply_op3_no_bwd(&w, b, &Bf16Linear)?,
                None => x.apply_op2_no_bwd(&w, &Bf16Linear)?,
            };
            let widened = widened_linear(&x, &w, b)?;
            let scale = widened.abs()?.max_all()?.to_scalar::<f32>()?;
            let diff = max_diff(&native, &widened);
            assert!(
                diff <= 2e-6 * scale * (k as f32).sqrt(),
                "{m} x {k} x {n}: differs by {diff}"
            );
        }
        Ok(())
    }

    /// The widened attention (rounded q, k, v through the f32 kernel) and
    /// the native one differ by the native kernel's rounding of the softmax
    /// weights to bf16: at most 2^-8 of the largest value.
    #[test]
    fn widened_attention_equals_the_native_kernel() -> Result<()> {
        if !avx512_bf16() {
            return Ok(());
        }
        let dev = Device::Cpu;
        for (b, h, lq, lk, d) in [(1, 2, 70, 300, 56), (3, 1, 9, 49, 32), (2, 2, 5, 7, 64)] {
            let q = Tensor::randn(0f32, 1.0, (b, h, lq, d), &dev)?;
            let k = Tensor::randn(0f32, 1.0, (b, h, lk, d), &dev)?;
            let v = Tensor::randn(0f32, 1.0, (b, h, lk, d), &dev)?;
            let bias: Vec<f32> = (0..b * lk).map(|j| if j % 7 == 3 { -1e9 } else { 0.0 }).collect();
            let scale = 1.0 / (d as f32).sqrt();
            let native = q.apply_op3_no_bwd(
                &k,
                &v,
                &ops::Bf16Attention {
                    scale,
                    key_bias: Some(bias.clone()),
                },
            )?;
            let (qr, kr, vr) = (round_to_bf16(&q)?, round_to_bf16(&k)?, round_to_bf16(&v)?);
            let widened = crate::kernels::fused_attention(&qr, &kr, &vr, scale, Some(bias))?;
            let vmax = v.abs()?.max_all()?.to_scalar::<f32>()?;
            let diff = max_diff(&native, &widened);
            assert!(diff <= vmax / 256.0, "{b} x {h} x {lq} x {lk} x {d}: differs by {diff}");
        }
        Ok(())
    }

    /// The 1x1 convolution on both paths, and its shape errors.
    #[test]
    fn pointwise_conv_paths_agree_and_reject_bad_shapes() -> Result<()> {
        if !avx512_bf16() {
            return Ok(());
        }
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 40, 7, 9), &dev)?;
        let w = Tensor::randn(0f32, 0.2, (33, 40), &dev)?.to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 1.0, 33, &dev)?;
        let native = x.apply_op3_no_bwd(&w, &b, &Bf16PointwiseConv)?;
        let widened = round_to_bf16(&x)?
            .conv2d(&w.to_dtype(DType::F32)?.reshape((33, 40, 1, 1))?, 0, 1, 1, 1)?
            .broadcast_add(&b.reshape((1, 33, 1, 1))?)?;
        assert!(max_diff(&native, &widened) < 1e-4);
        let wrong = Tensor::zeros((33, 41), DType::BF16, &dev)?;
        let err = x
            .apply_op3_no_bwd(&wrong, &b, &Bf16PointwiseConv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not match"), "{err}");
        let f32_weight = w.to_dtype(DType::F32)?;
        let err = x
            .apply_op3_no_bwd(&f32_weight, &b, &Bf16PointwiseConv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("weight must be bf16"), "{err}");
        Ok(())
    }

    #[test]
    fn linear_rejects_bad_operands_by_name() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((40, 8), DType::F32, &dev)?;
        let w = Tensor::zeros((5, 9), DType::BF16, &dev)?;
        let err = x.apply_op2_no_bwd(&w, &Bf16Linear).unwrap_err().to_string();
        assert!(err.contains("bf16 linear") && err.contains("do not match"), "{err}");
        let w = Tensor::zeros((5, 8), DType::F32, &dev)?;
        let err = x.apply_op2_no_bwd(&w, &Bf16Linear).unwrap_err().to_string();
        assert!(err.contains("weight must be bf16"), "{err}");
        let w = Tensor::zeros((5, 8), DType::BF16, &dev)?;
        let b = Tensor::zeros(6, DType::F32, &dev)?;
        let err = x.apply_op3_no_bwd(&w, &b, &Bf16Linear).unwrap_err().to_string();
        assert!(err.contains("do not match"), "{err}");
        let q = Tensor::zeros((1, 1, 3, 65), DType::F32, &dev)?;
        let op = ops::Bf16Attention {
            scale: 1.0,
            key_bias: None,
        };
        let err = q.apply_op3_no_bwd(&q, &q, &op).unwrap_err().to_string();
        assert!(err.contains("bf16 attention"), "{err}");
        Ok(())
    }
}
