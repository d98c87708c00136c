//! SAM's prompt encoder with RSAM's text positional embedding
//! (`sam_prompt_encoder.*`): random-Fourier positional encoding of points,
//! learned embeddings per point label, the mask-prompt downscaler, and (RSAM
//! only; SAM 2 has no text) the learned `description_pe` for text tokens.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Conv2dConfig, Embedding, VarBuilder};

use crate::config::SamArchitecture;
use crate::device::products::{conv2d, Conv2d};
use crate::nn::{at_least_f32, gelu_erf, LayerNorm2d};

/// Label of the padding point (`not_a_point_embed`).
pub const LABEL_PAD: i64 = -1;
pub const LABEL_NEGATIVE: i64 = 0;
pub const LABEL_POSITIVE: i64 = 1;
pub const LABEL_BOX_TOP_LEFT: i64 = 2;
pub const LABEL_BOX_BOTTOM_RIGHT: i64 = 3;

#[derive(Debug, Clone)]
pub struct PromptEncoder {
    /// 2 x d/2 Gaussian frequency matrix, f32 whatever the network's
    /// dtype (the official model keeps it f32: rounded to bf16 it moves the
    /// encoding by up to 0.04).
    gaussian: Tensor,
    point_embeddings: Vec<Tensor>,
    not_a_point_embed: Tensor,
    no_mask_embed: Tensor,
    mask_downscaling: MaskDownscaling,
    description_pe: Option<Embedding>,
    input_size: usize,
    embedding_size: usize,
    embed_dim: usize,
}

#[derive(Debug, Clone)]
struct MaskDownscaling {
    conv0: Conv2d,
    norm1: LayerNorm2d,
    conv3: Conv2d,
    norm4: LayerNorm2d,
    conv6: Conv2d,
}

impl Module for MaskDownscaling {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = gelu_erf(&self.norm1.forward(&self.conv0.forward(x)?)?)?;
        let x = gelu_erf(&self.norm4.forward(&self.conv3.forward(&x)?)?)?;
        self.conv6.forward(&x)
    }
}

impl PromptEncoder {
    pub fn new(cfg: &impl SamArchitecture, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model();
        let c = cfg.mask_in_chans();
        let stride2 = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let md = vb.pp("mask_downscaling");
        let mask_downscaling = MaskDownscaling {
            conv0: conv2d(1, c / 4, 2, stride2, md.pp("0"))?,
            norm1: LayerNorm2d::new(c / 4, 1e-6, md.pp("1"))?,
            conv3: conv2d(c / 4, c, 2, stride2, md.pp("3"))?,
            norm4: LayerNorm2d::new(c, 1e-6, md.pp("4"))?,
            conv6: conv2d(c, d, 1, Default::default(), md.pp("6"))?,
        };
        let point_embeddings = (0..4)
            .map(|i| vb.get((1, d), &format!("point_embeddings.{i}.weight")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            gaussian: vb.get_with_hints_dtype(
                (2, d / 2),
                "pe_layer.positional_encoding_gaussian_matrix",
                Default::default(),
                at_least_f32(vb.dtype()),
            )?,
            point_embeddings,
            not_a_point_embed: vb.get((1, d), "not_a_point_embed.weight")?,
            no_mask_embed: vb.get((1, d), "no_mask_embed.weight")?,
            mask_downscaling,
            description_pe: cfg
                .text_positions()
                .map(|n| candle_nn::embedding(n, d, vb.pp("description_pe")))
                .transpose()?,
            input_size: cfg.image_size(),
            embedding_size: cfg.embedding_size(),
            embed_dim: d,
        })
    }

    /// Fourier features of coordinates normalised to [0, 1]: `... x 2` in,
    /// `... x d` out.
    fn pe_encoding(&self, coords: &Tensor) -> Result<Tensor> {
        // Always in f32: the Fourier features of pixel coordinates need the
        // precision even when the network runs in bf16 / f16.
        let dtype = at_least_f32(self.gaussian.dtype());
        let coords = ((coords.to_dtype(dtype)? * 2.0)? - 1.0)?;
        let coords = coords.broadcast_matmul(&self.gaussian.to_dtype(dtype)?)?;
        let coords = (coords * (2.0 * std::f64::consts::PI))?;
        Tensor::cat(&[coords.sin()?, coords.cos()?], D::Minus1)
    }

    /// Dense positional encoding of the image embedding grid, 1 x d x h x w.
    pub fn dense_pe(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        let n = self.embedding_size;
        let mut grid = Vec::with_capacity(n * n * 2);
        for y in 0..n {
            for x in 0..n {
                grid.push((x as f32 + 0.5) / n as f32);
                grid.push((y as f32 + 0.5) / n as f32);
            }
        }
        let grid = Tensor::from_vec(grid, (n, n, 2), device)?;
        self.pe_encoding(&grid)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .to_dtype(dtype)?
            .contiguous()
    }

    /// Sparse embeddings of points already in model-input pixels.
    /// `coords`: B x N x 2 (f32), `labels`: B x N (i64: -1 pad, 0 neg, 1 pos,
    /// 2 / 3 box corners). The caller appends the padding point.
    pub fn embed_points(&self, coords: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("prompt-encoder-points").entered();
        // Shift to the pixel centre, normalise by the input size.
        let coords = ((coords + 0.5)? / self.input_size as f64)?;
        let pe = self.pe_encoding(&coords)?;
        let (b, n, d) = pe.dims3()?;
        let dtype = pe.dtype();
        let labels = labels.to_dtype(DType::I64)?;
        let is = |label: i64| -> Result<Tensor> {
            labels
                .eq(label)?
                .to_dtype(dtype)?
                .unsqueeze(D::Minus1)?
                .broadcast_as((b, n, d))
        };
        // label -1: not_a_point_embed replaces the PE entirely.
        let pad = is(LABEL_PAD)?;
        let keep = (pad.ones_like()? - &pad)?;
        let f32_embed = |t: &Tensor| t.to_dtype(dtype);
        let mut out = ((pe * &keep)? + pad.broadcast_mul(&f32_embed(&self.not_a_point_embed)?)?)?;
        for (label, embed) in self.point_embeddings.iter().enumerate() {
            out = (out + is(label as i64)?.broadcast_mul(&f32_embed(embed)?)?)?;
        }
        // f32 out; the caller casts to the network's dtype.
        Ok(out)
    }

    /// Dense embedding of a mask prompt (B x 1 x 4h x 4w low-res logits).
    pub fn embed_masks(&self, masks: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("prompt-encoder-masks").entered();
        self.mask_downscaling.forward(masks)
    }

    /// The learned "no mask" embedding broadcast to B x d x h x w.
    pub fn no_mask_dense(&self, batch: usize) -> Result<Tensor> {
        let n = self.embedding_size;
        self.no_mask_embed
            .reshape((1, self.embed_dim, 1, 1))?
            .broadcast_as((batch, self.embed_dim, n, n))?
            .contiguous()
    }

    /// Text positional embedding for `len` tokens, 1 x len x d.
    pub fn text_pe(&self, len: usize, device: &Device) -> Result<Tensor> {
        let Some(description_pe) = &self.description_pe else {
            candle_core::bail!("this prompt encoder has no text positional embedding (a model without text)")
        };
        let ids = Tensor::arange(0u32, len as u32, device)?;
        description_pe.forward(&ids)?.unsqueeze(0)
    }

    pub fn input_size(&self) -> usize {
        self.input_size
    }
}
