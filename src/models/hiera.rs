//! HieraDet image trunk of SAM 2 (`image_encoder.trunk.*`).
//!
//! Mirrors `sam2/modeling/backbones/hieradet.py`: a 7x7 stride-4 patch
//! embedding, a background positional embedding resampled bicubically to the
//! patch grid plus a tiled window embedding, then stages of multi-scale blocks
//! with windowed (zero-padded) or global attention and query max-pooling at
//! each stage transition.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::config::SamArchitecture;
use crate::device::products;
use crate::nn::{at_least_f32, linear, scaled_dot_product_attention_with, Activation, LayerNorm, Linear, Mlp};

const NORM_EPS: f64 = 1e-6;

/// Multi-head attention whose queries may be max-pooled (stage transitions).
#[derive(Debug, Clone)]
struct MultiScaleAttention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    q_pool: Option<usize>,
}

impl MultiScaleAttention {
    /// `x`: B x H x W x C (B counts windows).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, _) = x.dims4()?;
        let qkv = self.qkv.forward(x)?.reshape((b, h * w, 3, self.num_heads, ()))?;
        let head_dim = qkv.dim(D::Minus1)?;
        let q = qkv.narrow(2, 0, 1)?.squeeze(2)?;
        let k = qkv.narrow(2, 1, 1)?.squeeze(2)?;
        let v = qkv.narrow(2, 2, 1)?.squeeze(2)?;
        let (q, h, w) = match self.q_pool {
            Some(stride) => {
                let pooled = max_pool_nhwc(&q.reshape((b, h, w, ()))?, stride)?;
                let (_, ph, pw, _) = pooled.dims4()?;
                (pooled.reshape((b, ph * pw, self.num_heads, head_dim))?, ph, pw)
            }
            None => (q, h, w),
        };
        // Heads as transposed views: the CPU kernel reads them in place.
        let (q, k, v) = (q.transpose(1, 2)?, k.transpose(1, 2)?, v.transpose(1, 2)?);
        let out = scaled_dot_product_attention_with(&q, &k, &v, None, self.qkv.weight().dtype())?;
        let out = out.transpose(1, 2)?.reshape((b, h, w, ()))?;
        self.proj.forward(&out)
    }
}

/// `nn.MaxPool2d(kernel=stride, stride=stride)` on a B x H x W x C map.
fn max_pool_nhwc(x: &Tensor, stride: usize) -> Result<Tensor> {
    if x.track_op() {
        // Candle's max_pool2d backward scales the gradient by (number of
        // maxima) / stride² instead of 1 / (number of maxima), 1/4 here; a
        // max over reshaped windows differentiates correctly. Like PyTorch's
        // max_pool2d (floor mode), trailing rows / columns that do not fill a
        // window are dropped.
        let (b, h, w, c) = x.dims4()?;
        let (ph, pw) = (h / stride, w / stride);
        let x = x.narrow(1, 0, ph * stride)?.narrow(2, 0, pw * stride)?;
        return x.reshape((b, ph, stride, pw, stride, c))?.max(4)?.max(2);
    }
    // Inference on the CPU pools in place of the channels-last layout;
    // Candle's max_pool2d wants channels first (two full copies).
    if x.device().is_cpu() && x.dtype() == DType::F32 && crate::kernels::choice::custom_kernels() {
        return crate::kernels::max_pool_nhwc(&x.contiguous()?, stride);
    }
    x.permute((0, 3, 1, 2))?.max_pool2d(stride)?.permute((0, 2, 3, 1))
}

#[derive(Debug, Clone)]
struct MultiScaleBlock {
    norm1: LayerNorm,
    norm2: LayerNorm,
    attn: MultiScaleAttention,
    mlp: Mlp,
    /// Present when the block widens the channels (first block of a stage).
    proj: Option<Linear>,
    q_stride: Option<usize>,
    window_size: usize,
}

impl MultiScaleBlock {
    #[allow(clippy::too_many_arguments)]
    fn new(
        dim: usize,
        dim_out: usize,
        num_heads: usize,
        mlp_ratio: f64,
        q_stride: Option<usize>,
        window_size: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let attn = MultiScaleAttention {
            qkv: linear(dim, dim_out * 3, vb.pp("attn.qkv"))?,
            proj: linear(dim_out, dim_out, vb.pp("attn.proj"))?,
            num_heads,
            q_pool: q_stride,
        };
        let hidden = (dim_out as f64 * mlp_ratio) as usize;
        Ok(Self {
            norm1: LayerNorm::new(dim, NORM_EPS, vb.pp("norm1"))?,
            norm2: LayerNorm::new(dim_out, NORM_EPS, vb.pp("norm2"))?,
            attn,
            mlp: Mlp::new(dim_out, hidden, dim_out, 2, Activation::Gelu, false, vb.pp("mlp"))?,
            proj: if dim != dim_out {
                Some(linear(dim, dim_out, vb.pp("proj"))?)
            } else {
                None
            },
            q_stride,
            window_size,
        })
    }

    /// `x`: B x H x W x C.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("hiera-block").entered();
        let normed = self.norm1.forward(x)?;
        let shortcut = match (&self.proj, self.q_stride) {
            (Some(proj), Some(stride)) => max_pool_nhwc(&proj.forward(&normed)?, stride)?,
            (Some(proj), None) => proj.forward(&normed)?,
            (None, _) => x.clone(),
        };
        let (_, h, w, _) = shortcut.dims4()?;
        let attended = if self.window_size > 0 {
            let (windows, padded) = window_partition(&normed, self.window_size)?;
            let out = self.attn.forward(&windows)?;
            let (out_window, out_padded) = match self.q_stride {
                // Pooled queries shrink each window; the padding is recomputed
                // from the pooled map, as the official code does.
                Some(stride) => {
                    let ws = self.window_size / stride;
                    (ws, (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws))
                }
                None => (self.window_size, padded),
            };
            window_unpartition(&out, out_window, out_padded, (h, w))?
        } else {
            self.attn.forward(&normed)?
        };
        let x = (shortcut + attended)?;
        let mlp_out = self.mlp.forward(&self.norm2.forward(&x)?)?;
        x + mlp_out
    }
}

/// Splits B x H x W x C into (B * nW) x ws x ws x C windows, zero-padding the
/// bottom and right edges. Returns the padded size.
fn window_partition(x: &Tensor, ws: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, h, w, c) = x.dims4()?;
    let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
    let mut x = x.clone();
    if hp > h {
        x = x.pad_with_zeros(1, 0, hp - h)?;
    }
    if wp > w {
        x = x.pad_with_zeros(2, 0, wp - w)?;
    }
    let windows = x
        .reshape((b, hp / ws, ws, wp / ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape(((), ws, ws, c))?;
    Ok((windows, (hp, wp)))
}

/// Inverse of [`window_partition`], cropping the padding.
fn window_unpartition(windows: &Tensor, ws: usize, (hp, wp): (usize, usize), (h, w): (usize, usize)) -> Result<Tensor> {
    let c = windows.dim(D::Minus1)?;
    let b = windows.dim(0)? / ((hp / ws) * (wp / ws));
    let x = windows
        .reshape((b, hp / ws, wp / ws, ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    if hp > h || wp > w {
        x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
    } else {
        Ok(x)
    }
}

/// The HieraDet trunk. Returns one B x C x H x W map per stage, highest
/// resolution first.
#[derive(Debug, Clone)]
pub struct Hiera {
    patch_embed: products::Conv2d,
    pos_embed: PosEmbed,
    blocks: Vec<MultiScaleBlock>,
    stage_ends: Vec<usize>,
}

/// The trunk's positional embedding for the patch grid: the background
/// embedding resampled bicubically plus the tiled window embedding.
/// Precomputed once for inference; recomputed every forward pass when the
/// weights are trainable, so that gradients reach both parameters.
#[derive(Debug, Clone)]
enum PosEmbed {
    Fixed(Tensor),
    Trainable {
        bkg: Tensor,
        window: Tensor,
        grid: (usize, usize),
    },
}

impl PosEmbed {
    fn get(&self) -> Result<Tensor> {
        match self {
            PosEmbed::Fixed(t) => Ok(t.clone()),
            PosEmbed::Trainable { bkg, window, grid } => build_pos_embed(bkg, window, grid.0, grid.1),
        }
    }
}

impl Hiera {
    pub fn new(cfg: &impl SamArchitecture, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hiera();
        let conv_cfg = Conv2dConfig {
            padding: 3,
            stride: 4,
            ..Default::default()
        };
        let patch_embed = products::conv2d(3, h.embed_dim, 7, conv_cfg, vb.pp("patch_embed.proj"))?;
        let [bh, bw] = h.window_pos_embed_bkg_spatial_size;
        let ws0 = h.window_spec[0];
        // Loaded and resampled in f32 whatever the network's dtype, then cast
        // once: the official model keeps these parameters f32 (autocast), and
        // a bf16 bicubic resampling would round every step of it.
        let exact = |shape: (usize, usize, usize, usize), name: &str| {
            vb.get_with_hints_dtype(shape, name, Default::default(), at_least_f32(vb.dtype()))
        };
        let pos_bkg = exact((1, h.embed_dim, bh, bw), "pos_embed")?;
        let pos_window = exact((1, h.embed_dim, ws0, ws0), "pos_embed_window")?;
        let grid = cfg.image_size() / 4;
        let pos_embed = if pos_bkg.track_op() || pos_window.track_op() {
            PosEmbed::Trainable {
                bkg: pos_bkg,
                window: pos_window,
                grid: (grid, grid),
            }
        } else {
            PosEmbed::Fixed(build_pos_embed(&pos_bkg, &pos_window, grid, grid)?.to_dtype(vb.dtype())?)
        };

        let depth: usize = h.stages.iter().sum();
        let stage_ends: Vec<usize> = (1..=h.stages.len())
            .map(|i| h.stages[..i].iter().sum::<usize>() - 1)
            .collect();
        let q_pool_blocks: Vec<usize> = stage_ends[..stage_ends.len() - 1]
            .iter()
            .map(|e| e + 1)
            .take(h.q_pool)
            .collect();
        let mut blocks = Vec::with_capacity(depth);
        let (mut dim, mut heads, mut stage) = (h.embed_dim, h.num_heads, 0usize);
        let vb_blocks = vb.pp("blocks");
        for i in 0..depth {
            let mut dim_out = dim;
            // The window size is the current stage's, read *before* moving to
            // the next stage: a pooling block attends in its input's windows.
            let mut window_size = h.window_spec[stage];
            if h.global_att_blocks.contains(&i) {
                window_size = 0;
            }
            if i > 0 && stage_ends.contains(&(i - 1)) {
                dim_out = (dim as f64 * h.dim_mul) as usize;
                heads = (heads as f64 * h.head_mul) as usize;
                stage += 1;
            }
            let q_stride = q_pool_blocks.contains(&i).then_some(h.q_stride);
            blocks.push(MultiScaleBlock::new(
                dim,
                dim_out,
                heads,
                h.mlp_ratio,
                q_stride,
                window_size,
                vb_blocks.pp(i),
            )?);
            dim = dim_out;
        }
        Ok(Self {
            patch_embed,
            pos_embed,
            blocks,
            stage_ends,
        })
    }

    /// The positional embedding added to the patch grid, 1 x h x w x C.
    pub fn pos_embed(&self) -> Result<Tensor> {
        self.pos_embed.get()
    }

    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let _span = tracing::trace_span!("hiera").entered();
        let x = self.patch_embed.forward(x)?.permute((0, 2, 3, 1))?;
        let mut x = x.broadcast_add(&self.pos_embed.get()?.to_dtype(x.dtype())?)?;
        let mut outputs = Vec::with_capacity(self.stage_ends.len());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            if self.stage_ends.contains(&i) {
                outputs.push(x.permute((0, 3, 1, 2))?.contiguous()?);
            }
        }
        Ok(outputs)
    }
}

/// `F.interpolate(pos_embed, (h, w), mode="bicubic")` plus the window
/// embedding tiled over the grid, as 1 x h x w x C. The resampling is linear
/// in the embedding, so it is written as `Wy · P · Wxᵀ` with interpolation
/// matrices: exact, and differentiable with plain tensor ops.
fn build_pos_embed(bkg: &Tensor, window: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, c, bh, bw) = bkg.dims4()?;
    let (_, _, wh, ww) = window.dims4()?;
    if !h.is_multiple_of(wh) || !w.is_multiple_of(ww) {
        candle_core::bail!("patch grid {h}x{w} is not a multiple of the {wh}x{ww} window embedding");
    }
    let device = bkg.device();
    let wy = Tensor::from_vec(bicubic_matrix(bh, h), (h, bh), device)?.to_dtype(bkg.dtype())?;
    let wx = Tensor::from_vec(bicubic_matrix(bw, w), (w, bw), device)?.to_dtype(bkg.dtype())?;
    // (C, bh, bw) -> (C, h, bw) -> (C, h, w)
    let planes = bkg.reshape((c, bh, bw))?;
    let rows = products::matmul(&wy.unsqueeze(0)?.broadcast_as((c, h, bh))?.contiguous()?, &planes)?;
    let resized = products::matmul(&rows, &wx.t()?.unsqueeze(0)?.broadcast_as((c, bw, w))?.contiguous()?)?;
    let tiled = window.reshape((c, wh, ww))?.repeat((1, h / wh, w / ww))?;
    (resized + tiled)?.permute((1, 2, 0))?.unsqueeze(0)?.contiguous()
}

/// The `out x in` matrix of PyTorch's bicubic resampling along one axis
/// (`align_corners=False`, A = -0.75, source indices clamped at the edges,
/// so weights of clamped taps add up on the edge pixel).
pub(crate) fn bicubic_matrix(in_size: usize, out_size: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let cc1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cc2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = in_size as f32 / out_size as f32;
    let mut m = vec![0f64; out_size * in_size];
    for i in 0..out_size {
        let real = (scale * (i as f32 + 0.5) - 0.5) as f64;
        let base = real.floor();
        let t = real - base;
        let weights = [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t)];
        for (k, wk) in weights.iter().enumerate() {
            let src = (base as i64 + k as i64 - 1).clamp(0, in_size as i64 - 1) as usize;
            m[i * in_size + src] += wk;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn resize(src: &[f32], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
        let bkg = Tensor::from_slice(src, (1, 1, in_h, in_w), &Device::Cpu).unwrap();
        let window = Tensor::zeros((1, 1, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        build_pos_embed(&bkg, &window, out_h, out_w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn bicubic_identity_when_size_unchanged() {
        let src: Vec<f32> = (0..16).map(|v| v as f32 * 0.5 - 3.0).collect();
        let out = resize(&src, 4, 4, 4, 4);
        for (a, b) in src.iter().zip(out.iter()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn bicubic_constant_stays_constant() {
        let out = resize(&[2.5f32; 9], 3, 3, 7, 5);
        assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-5));
    }

    #[test]
    fn window_partition_round_trips_with_padding() -> Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 5.0 * 7.0 * 3.0, &Device::Cpu)?.reshape((2, 5, 7, 3))?;
        let (windows, padded) = window_partition(&x, 4)?;
        assert_eq!(padded, (8, 8));
        assert_eq!(windows.dims(), &[2 * 4, 4, 4, 3]);
        let back = window_unpartition(&windows, 4, padded, (5, 7))?;
        let diff = (back - &x)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
