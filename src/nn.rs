//! Small building blocks shared by the model components.
//!
//! Each block has a fast inference path (Candle's fused kernels) and a plain
//! tensor-op path that Candle's autograd can differentiate. The plain path is
//! chosen automatically whenever the input takes part in a gradient graph
//! (`Tensor::track_op`), so training code needs no switch.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::device::{attention_budget, products};

/// `nn.Linear` with bias (every linear layer in RSAM has one).
///
/// Inputs of any rank are flattened to one matrix product: Candle's own
/// `Linear` turns a B x H x W x C input into B x H separate small products,
/// each synchronising the thread pool, which is several times slower.
#[derive(Debug, Clone)]
pub struct Linear(candle_nn::Linear);

impl Linear {
    pub fn weight(&self) -> &Tensor {
        self.0.weight()
    }
}

impl Linear {
    /// Inference on a few rows (a sentence's tokens) on the CPU in f32: the
    /// weight-streaming kernel of [`crate::kernels::linear_few_rows`].
    fn few_rows(&self, x: &Tensor, rows: usize) -> Option<Result<Tensor>> {
        let w = self.0.weight();
        let eligible = rows <= crate::kernels::FEW_ROWS
            && crate::kernels::choice::custom_kernels()
            && !x.track_op()
            && !w.track_op()
            && x.device().is_cpu()
            && x.dtype() == DType::F32
            && w.dtype() == DType::F32
            && w.is_contiguous();
        if !eligible {
            return None;
        }
        Some(self.few_rows_unchecked(x, rows))
    }

    /// `x W^T + b` through the few-rows kernel.
    fn few_rows_unchecked(&self, x: &Tensor, rows: usize) -> Result<Tensor> {
        on_rows(x, rows, |flat| {
            let y = crate::kernels::linear_few_rows(flat, self.0.weight())?;
            match self.0.bias() {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            }
        })
    }

    /// Inference on many rows on the CPU in f32: one `gemm` call that starts
    /// from the bias ([`crate::kernels::linear_with_bias`]).
    fn biased_gemm(&self, x: &Tensor, rows: usize) -> Option<Result<Tensor>> {
        let (w, b) = (self.0.weight(), self.0.bias()?);
        let eligible = crate::kernels::choice::custom_kernels()
            && !x.track_op()
            && !w.track_op()
            && !b.track_op()
            && x.device().is_cpu()
            && [x.dtype(), w.dtype(), b.dtype()] == [DType::F32; 3]
            && w.is_contiguous()
            && b.is_contiguous();
        if !eligible {
            return None;
        }
        Some(on_rows(x, rows, |flat| crate::kernels::linear_with_bias(flat, w, b)))
    }

    /// Inference with a bf16 weight on an f32 input on the CPU
    /// ([`crate::autocast`]): the bf16 product kernels.
    fn bf16_products(&self, x: &Tensor, rows: usize) -> Option<Result<Tensor>> {
        let w = self.0.weight();
        let eligible = w.dtype() == DType::BF16
            && x.dtype() == DType::F32
            && x.device().is_cpu()
            && !x.track_op()
            && crate::kernels::choice::custom_kernels();
        if !eligible {
            return None;
        }
        Some(on_rows(x, rows, |flat| {
            crate::kernels::bf16::linear(flat, w, self.0.bias())
        }))
    }
}

/// Applies `f` to `x` flattened to one contiguous `rows x in` matrix and
/// shapes the `rows x out` result like `x`, its last dimension replaced.
fn on_rows(x: &Tensor, rows: usize, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let mut out_dims = x.dims().to_vec();
    let last = out_dims.last_mut().expect("a linear layer's input has rank >= 1");
    let y = f(&x.reshape((rows, *last))?.contiguous()?)?;
    *last = y.dim(1)?;
    y.reshape(out_dims)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        if let Some(out) = self.bf16_products(x, rows) {
            return out;
        }
        if let Some(out) = self.few_rows(x, rows) {
            return out;
        }
        if let Some(out) = self.biased_gemm(x, rows) {
            return out;
        }
        // Rank-2 inputs too: a row view of a batch (the decoder's per-token
        // outputs) has a layout cuBLAS rejects from two rows on.
        on_rows(x, rows, |flat| self.generic(flat))
    }
}

impl Linear {
    /// `x W^T + b` from Candle's operations (CUDA, gradients, f16 / bf16
    /// networks), through [`crate::device::products`].
    fn generic(&self, flat: &Tensor) -> Result<Tensor> {
        let y = products::matmul(flat, &self.0.weight().t()?)?;
        match self.0.bias() {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    if let Some(bf16) = crate::autocast::bf16_linear(in_dim, out_dim, &vb) {
        return Ok(Linear(bf16?));
    }
    Ok(Linear(candle_nn::linear(in_dim, out_dim, vb)?))
}

/// Layer normalisation over the last dimension, with the mean / variance
/// arithmetic of PyTorch (biased variance, epsilon inside the square root).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }
}

impl LayerNorm {
    /// Candle's fused LayerNorm (one kernel, accumulating in f32 for f16 /
    /// bf16 too) for inference when the weights share the input's dtype.
    fn fused_applies(&self, x: &Tensor) -> bool {
        !x.track_op()
            && x.is_contiguous()
            && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
            && self.weight.dtype() == x.dtype()
            && self.bias.dtype() == x.dtype()
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused_applies(x) {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        let dtype = x.dtype();
        // Low precision inputs are normalised in f32, like PyTorch's autocast.
        let x = x.to_dtype(at_least_f32(dtype))?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// `LayerNorm2d` of SAM: normalises a B x C x H x W map over C.
#[derive(Debug, Clone)]
pub struct LayerNorm2d(LayerNorm);

impl LayerNorm2d {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self(LayerNorm::new(dim, eps, vb)?))
    }
}

impl Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.permute((0, 2, 3, 1))?.contiguous()?;
        self.0.forward(&x)?.permute((0, 3, 1, 2))
    }
}

/// The dtype to compute precision-sensitive parts in: f32 for half types and
/// f32, f64 kept (gradient checks run the model in f64).
pub fn at_least_f32(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        let max = x.max_keepdim(D::Minus1)?;
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Activation of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// Exact (erf) GELU, PyTorch's `nn.GELU()` default.
    Gelu,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => gelu_erf(x),
        }
    }
}

/// SAM's `MLP`: `num_layers` linear layers with an activation between them,
/// optionally a sigmoid on the output. Weights live under `layers.{i}`.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
    sigmoid_output: bool,
}

impl Mlp {
    pub fn new(
        input_dim: usize,
        hidden_dim: usize,
        output_dim: usize,
        num_layers: usize,
        activation: Activation,
        sigmoid_output: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("layers");
        let mut layers = Vec::with_capacity(num_layers);
        for i in 0..num_layers {
            let in_dim = if i == 0 { input_dim } else { hidden_dim };
            let out_dim = if i + 1 == num_layers { output_dim } else { hidden_dim };
            layers.push(linear(in_dim, out_dim, vb.pp(i))?);
        }
        Ok(Self {
            layers,
            activation,
            sigmoid_output,
        })
    }

    /// A bare `nn.Linear` stored at `vb` itself (no `layers.0` level).
    pub fn single_linear(input_dim: usize, output_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            layers: vec![linear(input_dim, output_dim, vb)?],
            activation: Activation::Relu,
            sigmoid_output: false,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = self.activation.apply(&x)?;
            }
        }
        if self.sigmoid_output {
            x = candle_nn::ops::sigmoid(&x)?;
        }
        Ok(x)
    }
}

/// Scaled dot-product attention, `softmax(q k^T / sqrt(d) + mask) v`.
///
/// `q`: B x H x Lq x D, `k` / `v`: B x H x Lk x D. `key_mask`, when given, is
/// an additive B x 1 x 1 x Lk tensor (0 for real keys, a large negative value
/// for padding) so that padded tokens get exactly zero weight.
///
/// On the CPU in f32 without gradients this runs the fused kernel of
/// [`crate::kernels`]; otherwise the composed (differentiable) version.
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, key_mask: Option<&Tensor>) -> Result<Tensor> {
    scaled_dot_product_attention_with(q, k, v, key_mask, q.dtype())
}

/// [`scaled_dot_product_attention`] in the precision of the layer's
/// matrix products: `products` is the dtype of its projection weights, and
/// bf16 weights on f32 activations ([`crate::autocast`]) give QK^T and PV
/// bf16 operands too ([`crate::kernels::bf16::fused_attention`]).
pub fn scaled_dot_product_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: Option<&Tensor>,
    products: DType,
) -> Result<Tensor> {
    let d = q.dim(3)?;
    let scale = 1.0 / (d as f64).sqrt();
    let tracked = q.track_op() || k.track_op() || v.track_op();
    if !tracked && q.device().is_cpu() && q.dtype() == DType::F32 && crate::kernels::choice::custom_kernels() {
        let bias = match key_mask {
            Some(m) => Some(m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        // The kernel reads any layout whose head values are consecutive
        // (transposed views of a projection included) without a copy.
        let in_place = |t: &Tensor| -> Result<Tensor> {
            if d > 1 && t.stride()[3] != 1 {
                t.contiguous()
            } else {
                Ok(t.clone())
            }
        };
        let (q, k, v) = (in_place(q)?, in_place(k)?, in_place(v)?);
        if products == DType::BF16 {
            return crate::kernels::bf16::fused_attention(&q, &k, &v, scale as f32, bias);
        }
        return crate::kernels::fused_attention(&q, &k, &v, scale as f32, bias);
    }
    composed_attention(q, k, v, key_mask, scale)
}

/// Attention from plain tensor ops (differentiable; any device and dtype),
/// in blocks whose scores stay within
/// [`crate::device::attention_budget::SCORE_BUDGET_BYTES`].
pub fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, key_mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    composed_attention_within(q, k, v, key_mask, scale, attention_budget::SCORE_BUDGET_BYTES)
}

/// [`composed_attention`] with each block's scores within `budget` bytes.
pub fn composed_attention_within(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: Option<&Tensor>,
    scale: f64,
    budget: usize,
) -> Result<Tensor> {
    let (b, h, lq, _) = q.dims4()?;
    let lk = k.dim(2)?;
    let blocks = attention_budget::blocks((b, h, lq, lk), q.dtype().size_in_bytes(), budget);
    attention_budget::in_blocks(q, k, v, key_mask, blocks, |q, k, v, mask| {
        attention_block(q, k, v, mask, scale)
    })
}

/// One block of [`composed_attention`]. `q` is scaled before the product:
/// unscaled f16 scores pass 65504 long before scaled ones do.
fn attention_block(q: &Tensor, k: &Tensor, v: &Tensor, key_mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    let q = (q.contiguous()? * scale)?;
    let mut scores = products::matmul(&q, &k.contiguous()?.transpose(2, 3)?)?;
    if let Some(mask) = key_mask {
        scores = scores.broadcast_add(mask)?;
    }
    products::matmul(&softmax_last_dim(&scores)?, &v.contiguous()?)
}

/// Exact (erf) GELU. Candle's CPU unary kernels run on one thread and call
/// libm's `erff` per value; inference on the CPU in f32 runs
/// [`crate::kernels::gelu_erf_slice`] (a vectorised erf) over the thread
/// pool instead. Gradients and other devices use Candle's op.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.track_op() || !x.device().is_cpu() || x.dtype() != DType::F32 || !crate::kernels::choice::custom_kernels() {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1_no_bwd(&ParallelGeluErf)
}

struct ParallelGeluErf;

impl candle_core::CustomOp1 for ParallelGeluErf {
    fn name(&self) -> &'static str {
        "parallel-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let src = match storage {
            candle_core::CpuStorage::F32(v) => v,
            _ => candle_core::bail!("parallel-gelu-erf: f32 only"),
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("parallel-gelu-erf: input not contiguous".into()))?;
        let src = &src[start..end];
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(1 << 14)
            .zip(src.par_chunks(1 << 14))
            .for_each(|(d, s)| crate::kernels::gelu_erf_slice(s, d));
        Ok((candle_core::CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// Additive key mask from a B x L 0/1 attention mask: 0 where attended,
/// `-inf`-like where padded. Uses the most negative finite value of the
/// dtype so that an all-padded row still gives a finite softmax.
pub fn additive_key_mask(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, l) = attention_mask.dims2()?;
    let neg = match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.0e38,
        _ => f32::MIN as f64,
    };
    let keep = attention_mask.to_dtype(DType::F32)?;
    // (1 - keep) * neg
    let mask = ((keep.ones_like()? - &keep)? * neg)?;
    mask.to_dtype(dtype)?.reshape((b, 1, 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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

    /// The fused inference kernel equals the composed (differentiable) path,
    /// with and without a key mask, for long and for many short sequences
    /// (query counts that are not a multiple of the block).
    #[test]
    fn fused_attention_equals_composed_attention() -> Result<()> {
        let dev = Device::Cpu;
        // d = 16 / 32 / 64 take the tiled AVX-512 kernel where the CPU has
        // it: key counts off its 64-key tile, query counts off its 4-row tile.
        let shapes = [
            (1, 2, 1100, 1000, 8),
            (300, 2, 40, 50, 4),
            (1, 2, 201, 150, 32),
            (2, 3, 67, 129, 16),
            (3, 1, 6, 64, 64),
            (2, 2, 130, 9, 32),
        ];
        for (b, h, lq, lk, d) in shapes {
            let q = Tensor::randn(0f32, 1.0, (b, h, lq, d), &dev)?;
            let k = Tensor::randn(0f32, 1.0, (b, h, lk, d), &dev)?;
            let v = Tensor::randn(0f32, 1.0, (b, h, lk, d), &dev)?;
            let valid: Vec<u32> = (0..b * lk).map(|i| u32::from(i % lk < lk - 7)).collect();
            let mask = additive_key_mask(&Tensor::from_vec(valid, (b, lk), &dev)?, DType::F32)?;
            for m in [None, Some(&mask)] {
                let blocked = scaled_dot_product_attention(&q, &k, &v, m)?;
                let plain = composed_attention(&q, &k, &v, m, 1.0 / (d as f64).sqrt())?;
                assert_eq!(blocked.dims(), &[b, h, lq, d]);
                let diff = max_diff(&blocked, &plain);
                assert!(diff < 1e-5, "blocked attention differs by {diff}");
            }
        }
        Ok(())
    }

    /// Heads read in place from a packed qkv projection (strided views, as
    /// Hiera passes them) give exactly what contiguous copies give, for
    /// tiled (32, 56) and `gemm` (80) head sizes.
    #[test]
    fn strided_heads_equal_contiguous_heads() -> Result<()> {
        for d in [32usize, 56, 80] {
            let qkv = Tensor::randn(0f32, 1.0, (2, 70, 3, 3, d), &Device::Cpu)?;
            let part = |i: usize| -> Result<Tensor> { qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2) };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            assert!(!q.is_contiguous());
            let strided = scaled_dot_product_attention(&q, &k, &v, None)?;
            let copied = scaled_dot_product_attention(&q.contiguous()?, &k.contiguous()?, &v.contiguous()?, None)?;
            assert_eq!(max_diff(&strided, &copied), 0.0, "head size {d}");
        }
        Ok(())
    }

    #[test]
    fn masked_keys_get_zero_weight() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 3, 4), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, 1, 5, 4), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, 1, 5, 4), &dev)?;
        let mask = additive_key_mask(&Tensor::new(&[[1u32, 1, 1, 0, 0]], &dev)?, DType::F32)?;
        let masked = scaled_dot_product_attention(&q, &k, &v, Some(&mask))?;
        let truncated = scaled_dot_product_attention(&q, &k.narrow(2, 0, 3)?, &v.narrow(2, 0, 3)?, None)?;
        assert!(max_diff(&masked, &truncated) < 1e-6);
        Ok(())
    }

    /// The few-rows kernel equals Candle's matrix product, for row counts up
    /// to the limit, inputs of rank 2 and 3, widths off the 16-lane vector,
    /// with and without a bias; more rows, and tracked inputs, take Candle's path.
    #[test]
    fn few_rows_linear_equals_candle_linear() -> Result<()> {
        let dev = Device::Cpu;
        for (rows, k, n, bias) in [
            (1, 768, 3072, true),
            (10, 37, 5, false),
            (32, 64, 130, true),
            (33, 16, 8, true),
        ] {
            let w = Tensor::randn(0f32, 0.1, (n, k), &dev)?;
            let b = bias.then(|| Tensor::randn(0f32, 1.0, n, &dev)).transpose()?;
            let ours = Linear(candle_nn::Linear::new(w.clone(), b.clone()));
            let theirs = candle_nn::Linear::new(w, b);
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
            let diff = max_diff(&ours.forward(&x)?, &theirs.forward(&x)?);
            assert!(diff < 1e-4, "{rows} x {k} -> {n}: differs by {diff}");
            let x3 = x.reshape((1, rows, k))?;
            let y3 = ours.forward(&x3)?;
            assert_eq!(y3.dims(), &[1, rows, n]);
            assert!(max_diff(&y3.squeeze(0)?, &theirs.forward(&x)?) < 1e-4);
        }
        // Gradients flow through the differentiable path.
        let w = candle_core::Var::randn(0f32, 0.1, (4, 8), &dev)?;
        let layer = Linear(candle_nn::Linear::new(w.as_tensor().clone(), None));
        let x = Tensor::randn(0f32, 1.0, (3, 8), &dev)?;
        let grads = layer.forward(&x)?.sum_all()?.backward()?;
        assert!(grads.get(w.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn parallel_gelu_equals_candle_gelu() -> Result<()> {
        // Candle's op calls libm's erff; the fast path's erf is within 6e-8
        // of the exact value, so the two GELUs differ by at most ~1e-7 x |x|
        // plus the rounding of the result.
        for shape in [(7usize, 50_000usize), (3, 5)] {
            let x = Tensor::randn(0f32, 3.0, shape, &Device::Cpu)?;
            let fast = gelu_erf(&x)?.flatten_all()?.to_vec1::<f32>()?;
            let reference = x.gelu_erf()?.flatten_all()?.to_vec1::<f32>()?;
            for ((a, b), v) in fast.iter().zip(&reference).zip(x.flatten_all()?.to_vec1::<f32>()?) {
                assert!(
                    (a - b).abs() <= 1e-7 * v.abs() + 2.0 * f32::EPSILON * b.abs(),
                    "gelu({v}): {a} vs {b}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn layer_norm_paths_agree() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, 16, &dev)?;
        let b = Tensor::randn(0f32, 1.0, 16, &dev)?;
        let ln = LayerNorm {
            weight: w,
            bias: b,
            eps: 1e-6,
        };
        let x = Tensor::randn(2f32, 3.0, (4, 16), &dev)?;
        let fused = ln.forward(&x)?;
        let plain = ln.forward(Var::from_tensor(&x)?.as_tensor())?;
        assert!(max_diff(&fused, &plain) < 1e-5);
        Ok(())
    }

    /// The decoder's per-token rows (`hs.narrow(1, i, 1).squeeze(1)`, rows
    /// N*d apart) reach the generic path's product as one contiguous
    /// matrix: the product's layout check (an error in debug builds for any
    /// layout cuBLAS rejects) passes, from one row to many.
    #[test]
    fn row_views_reach_the_generic_linear_as_a_contiguous_matrix() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F16, DType::BF16, DType::F32] {
            let w = Tensor::randn(0f32, 0.3, (6, 8), &dev)?.to_dtype(dtype)?;
            let b = Tensor::randn(0f32, 1.0, 6, &dev)?.to_dtype(dtype)?;
            let layer = Linear(candle_nn::Linear::new(w, Some(b)));
            for batch in [1usize, 2, 5] {
                let hs = Tensor::randn(0f32, 1.0, (batch, 7, 8), &dev)?.to_dtype(dtype)?;
                let rows = hs.narrow(1, 3, 1)?.squeeze(1)?;
                let copied = rows.contiguous()?;
                let direct = on_rows(&rows, batch, |flat| layer.generic(flat))?;
                let want = on_rows(&copied, batch, |flat| layer.generic(flat))?;
                assert_eq!(direct.dims(), &[batch, 6]);
                let as_f32 = |t: &Tensor| t.to_dtype(DType::F32);
                assert_eq!(
                    max_diff(&as_f32(&direct)?, &as_f32(&want)?),
                    0.0,
                    "{dtype:?}, {batch} rows"
                );
                // The layer itself (custom kernels for f32, generic otherwise).
                assert_eq!(layer.forward(&rows)?.dims(), &[batch, 6]);
            }
        }
        Ok(())
    }

    /// Attention cut into blocks of batch items, heads and query rows under
    /// a byte budget gives what one block gives, with and without a mask.
    #[test]
    fn attention_under_a_byte_budget_equals_one_block() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, lq, lk, d) = (3, 4, 37, 29, 8);
        let q = Tensor::randn(0f32, 1.0, (b, h, lq, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, h, lk, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, h, lk, d), &dev)?;
        let valid: Vec<u32> = (0..b * lk).map(|i| u32::from(i % lk < lk - 2 * (i / lk))).collect();
        let mask = additive_key_mask(&Tensor::from_vec(valid, (b, lk), &dev)?, DType::F32)?;
        let scale = 1.0 / (d as f64).sqrt();
        let row = lk * 4;
        for m in [None, Some(&mask)] {
            let whole = composed_attention_within(&q, &k, &v, m, scale, usize::MAX)?;
            // Two items, two heads, five query rows, one row per block.
            for budget in [2 * h * lq * row, 2 * lq * row, 5 * row, 1] {
                let blocked = composed_attention_within(&q, &k, &v, m, scale, budget)?;
                assert_eq!(blocked.dims(), whole.dims());
                let diff = max_diff(&blocked, &whole);
                assert!(diff < 1e-6, "budget {budget}: differs by {diff}");
            }
        }
        Ok(())
    }

    /// f16 scores of large activations: unscaled, QK^T passes f16's 65504
    /// (64 x 40 x ~41 = ~105,000) and the softmax of infinities is NaN;
    /// scaled first (by 1/8) every score is finite, and the attention picks
    /// the key with the largest score (80 above the next) as f32 does.
    #[test]
    fn f16_attention_scales_before_the_product() -> Result<()> {
        let dev = Device::Cpu;
        let q = (Tensor::ones((1, 1, 3, 64), DType::F32, &dev)? * 40.0)?;
        let offsets = Tensor::arange(0f32, 5.0, &dev)?.reshape((1, 1, 5, 1))?;
        let k = ((offsets * 0.25)? + 40.0)?.broadcast_as((1, 1, 5, 64))?.contiguous()?;
        let v = Tensor::randn(0f32, 1.0, (1, 1, 5, 64), &dev)?;
        let half = |t: &Tensor| t.to_dtype(DType::F16);
        let unscaled = half(&q)?.matmul(&half(&k)?.transpose(2, 3)?)?.to_dtype(DType::F32)?;
        assert!(unscaled
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .any(|s| s.is_infinite()));
        let want = composed_attention(&q, &k, &v, None, 0.125)?;
        let got = composed_attention(&half(&q)?, &half(&k)?, &half(&v)?, None, 0.125)?.to_dtype(DType::F32)?;
        let diff = max_diff(&got, &want);
        assert!(diff < 0.01, "f16 attention differs by {diff}");
        Ok(())
    }

    /// f16 / bf16 LayerNorm runs Candle's fused kernel (f32 accumulation)
    /// and follows f32 within the rounding of the output.
    #[test]
    fn low_precision_layer_norm_is_fused_and_follows_f32() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(2f32, 3.0, (4, 64), &dev)?;
        let (w, b) = (Tensor::randn(0f32, 1.0, 64, &dev)?, Tensor::randn(0f32, 1.0, 64, &dev)?);
        let f32_ln = LayerNorm {
            weight: w.clone(),
            bias: b.clone(),
            eps: 1e-6,
        };
        let want = f32_ln.forward(&x)?;
        for (dtype, tolerance) in [(DType::F16, 0.01), (DType::BF16, 0.05)] {
            let ln = LayerNorm {
                weight: w.to_dtype(dtype)?,
                bias: b.to_dtype(dtype)?,
                eps: 1e-6,
            };
            let x = x.to_dtype(dtype)?;
            assert!(ln.fused_applies(&x), "{dtype:?}");
            let got = ln.forward(&x)?;
            assert_eq!(got.dtype(), dtype);
            let diff = max_diff(&got.to_dtype(DType::F32)?, &want);
            assert!(diff < tolerance, "{dtype:?}: differs by {diff}");
        }
        Ok(())
    }
}
