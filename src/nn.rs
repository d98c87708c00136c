//! Small building blocks shared by the model components.
//!
//! Each block has a fast inference path (Candle's fused kernels) and a plain
//! tensor-op path that Candle's autograd can differentiate. The plain path is
//! chosen automatically whenever the input takes part in a gradient graph
//! (`Tensor::track_op`), so training code needs no switch.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// `nn.Linear` with bias (every linear layer in RSAM has one).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb)
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

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.track_op() && x.is_contiguous() && x.dtype() == DType::F32 {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        let dtype = x.dtype();
        // Low precision inputs are normalised in f32, like PyTorch's autocast.
        let x = x.to_dtype(DType::F32)?;
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
            Activation::Gelu => x.gelu_erf(),
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

/// Upper bound on the elements of one attention score block; larger problems
/// are split along the query axis so that memory stays bounded (a batch of
/// 64 prompts over 2,500 image tokens would otherwise need gigabytes).
const MAX_SCORE_ELEMENTS: usize = 64 * 1024 * 1024;

/// Scaled dot-product attention, `softmax(q k^T / sqrt(d) + mask) v`.
///
/// `q`: B x H x Lq x D, `k` / `v`: B x H x Lk x D. `key_mask`, when given, is
/// an additive B x 1 x 1 x Lk tensor (0 for real keys, a large negative value
/// for padding) so that padded tokens get exactly zero weight.
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, key_mask: Option<&Tensor>) -> Result<Tensor> {
    let (b, h, lq, d) = q.dims4()?;
    let lk = k.dim(2)?;
    let scale = 1.0 / (d as f64).sqrt();
    let kt = k.transpose(2, 3)?.contiguous()?;
    let attend = |q: &Tensor| -> Result<Tensor> {
        let mut scores = (q.contiguous()?.matmul(&kt)? * scale)?;
        if let Some(mask) = key_mask {
            scores = scores.broadcast_add(mask)?;
        }
        softmax_last_dim(&scores)?.matmul(v)
    };
    let per_query = b * h * lk;
    if q.track_op() || per_query * lq <= MAX_SCORE_ELEMENTS {
        return attend(q);
    }
    let chunk = (MAX_SCORE_ELEMENTS / per_query).max(1);
    let mut outputs = Vec::with_capacity(lq.div_ceil(chunk));
    let mut start = 0;
    while start < lq {
        let len = chunk.min(lq - start);
        outputs.push(attend(&q.narrow(2, start, len)?)?);
        start += len;
    }
    Tensor::cat(&outputs, 2)
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
