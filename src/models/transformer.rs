//! Attention blocks of the mask decoder (`sam_mask_decoder.transformer.*`,
//! SAM's TwoWayTransformer) and of the Two-Way Guidance Module
//! (`description_transformer.*`, RSAM's TwoWayGuidanceTransformer).
//!
//! Positional embeddings enter the two modules differently, exactly as in the
//! official code (not as the paper's figure suggests): in the mask decoder the
//! PE is added to queries *and* keys of every attention; in the TWGM it is
//! added to the keys only, and the first layer does not skip it.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::{linear, scaled_dot_product_attention_with, Activation, LayerNorm, Linear, Mlp};

/// PyTorch's `nn.LayerNorm` default epsilon.
const NORM_EPS: f64 = 1e-5;

/// SAM's `Attention`: projections to an optionally downsampled internal
/// width, multi-head scaled dot-product attention, output projection.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl Attention {
    pub fn new(dim: usize, num_heads: usize, downsample_rate: usize, vb: VarBuilder) -> Result<Self> {
        let internal = dim / downsample_rate;
        Ok(Self {
            q_proj: linear(dim, internal, vb.pp("q_proj"))?,
            k_proj: linear(dim, internal, vb.pp("k_proj"))?,
            v_proj: linear(dim, internal, vb.pp("v_proj"))?,
            out_proj: linear(internal, dim, vb.pp("out_proj"))?,
            num_heads,
        })
    }

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        // A transposed view: the attention reads it in place (or copies it).
        x.reshape((b, n, self.num_heads, c / self.num_heads))?.transpose(1, 2)
    }

    /// `q`: B x Lq x C, `k` / `v`: B x Lk x C; `key_mask`: additive
    /// B x 1 x 1 x Lk mask that hides padded keys.
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor, key_mask: Option<&Tensor>) -> Result<Tensor> {
        let q = self.separate_heads(&self.q_proj.forward(q)?)?;
        let k = self.separate_heads(&self.k_proj.forward(k)?)?;
        let v = self.separate_heads(&self.v_proj.forward(v)?)?;
        let out = scaled_dot_product_attention_with(&q, &k, &v, key_mask, self.q_proj.weight().dtype())?;
        let (b, h, n, d) = out.dims4()?;
        let out = out.transpose(1, 2)?.reshape((b, n, h * d))?;
        self.out_proj.forward(&out)
    }
}

/// One layer of SAM's TwoWayTransformer.
#[derive(Debug, Clone)]
struct TwoWayAttentionBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_attn_token_to_image: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_attn_image_to_token: Attention,
    skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    fn new(dim: usize, heads: usize, mlp_dim: usize, downsample: usize, skip_pe: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(dim, heads, 1, vb.pp("self_attn"))?,
            norm1: LayerNorm::new(dim, NORM_EPS, vb.pp("norm1"))?,
            cross_attn_token_to_image: Attention::new(dim, heads, downsample, vb.pp("cross_attn_token_to_image"))?,
            norm2: LayerNorm::new(dim, NORM_EPS, vb.pp("norm2"))?,
            mlp: Mlp::new(dim, mlp_dim, dim, 2, Activation::Relu, false, vb.pp("mlp"))?,
            norm3: LayerNorm::new(dim, NORM_EPS, vb.pp("norm3"))?,
            norm4: LayerNorm::new(dim, NORM_EPS, vb.pp("norm4"))?,
            cross_attn_image_to_token: Attention::new(dim, heads, downsample, vb.pp("cross_attn_image_to_token"))?,
            skip_first_layer_pe: skip_pe,
        })
    }

    fn forward(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
        token_mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let _span = tracing::trace_span!("two-way-block").entered();
        let queries = if self.skip_first_layer_pe {
            // The first layer replaces the tokens by their self-attention
            // (no residual), as SAM does.
            self.self_attn.forward(queries, queries, queries, token_mask)?
        } else {
            let q = (queries + query_pe)?;
            (queries + self.self_attn.forward(&q, &q, queries, token_mask)?)?
        };
        let queries = self.norm1.forward(&queries)?;

        let q = (&queries + query_pe)?;
        let k = keys.broadcast_add(key_pe)?;
        let attn = self.cross_attn_token_to_image.forward(&q, &k, keys, None)?;
        let queries = self.norm2.forward(&(queries + attn)?)?;

        let mlp_out = self.mlp.forward(&queries)?;
        let queries = self.norm3.forward(&(queries + mlp_out)?)?;

        let q = (&queries + query_pe)?;
        let attn = self.cross_attn_image_to_token.forward(&k, &q, &queries, token_mask)?;
        let keys = self.norm4.forward(&(keys + attn)?)?;
        Ok((queries, keys))
    }
}

/// SAM's TwoWayTransformer (the mask decoder's).
#[derive(Debug, Clone)]
pub struct TwoWayTransformer {
    layers: Vec<TwoWayAttentionBlock>,
    final_attn_token_to_image: Attention,
    norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    pub fn new(depth: usize, dim: usize, heads: usize, mlp_dim: usize, vb: VarBuilder) -> Result<Self> {
        let layers = (0..depth)
            .map(|i| TwoWayAttentionBlock::new(dim, heads, mlp_dim, 2, i == 0, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            final_attn_token_to_image: Attention::new(dim, heads, 2, vb.pp("final_attn_token_to_image"))?,
            norm_final_attn: LayerNorm::new(dim, NORM_EPS, vb.pp("norm_final_attn"))?,
        })
    }

    /// `image`: B x C x h x w, `image_pe`: 1 x C x h x w, `tokens`: B x N x C.
    /// `token_mask` hides padded prompt tokens (additive, B x 1 x 1 x N).
    /// Returns the tokens and the image keys (B x hw x C).
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        tokens: &Tensor,
        token_mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let _span = tracing::trace_span!("two-way-transformer").entered();
        let keys = image.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let key_pe = image_pe.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let mut queries = tokens.clone();
        let mut keys = keys;
        for layer in &self.layers {
            (queries, keys) = layer.forward(&queries, &keys, tokens, &key_pe, token_mask)?;
        }
        let q = (&queries + tokens)?;
        let k = keys.broadcast_add(&key_pe)?;
        let attn = self.final_attn_token_to_image.forward(&q, &k, &keys, None)?;
        let queries = self.norm_final_attn.forward(&(queries + attn)?)?;
        Ok((queries, keys))
    }
}

/// One layer of RSAM's Two-Way Guidance Transformer: text self-attention,
/// text-to-image, MLP, image-to-text, then image self-attention.
#[derive(Debug, Clone)]
struct TwoWayGuidingAttentionBlock {
    self_attn_query: Attention,
    norm1: LayerNorm,
    cross_attn_token_to_image: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_attn_image_to_token: Attention,
    self_attn_key: Attention,
    norm5: LayerNorm,
}

impl TwoWayGuidingAttentionBlock {
    fn new(dim: usize, heads: usize, mlp_dim: usize, downsample: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn_query: Attention::new(dim, heads, 1, vb.pp("self_attn_query"))?,
            norm1: LayerNorm::new(dim, NORM_EPS, vb.pp("norm1"))?,
            cross_attn_token_to_image: Attention::new(dim, heads, downsample, vb.pp("cross_attn_token_to_image"))?,
            norm2: LayerNorm::new(dim, NORM_EPS, vb.pp("norm2"))?,
            mlp: Mlp::new(dim, mlp_dim, dim, 2, Activation::Relu, false, vb.pp("mlp"))?,
            norm3: LayerNorm::new(dim, NORM_EPS, vb.pp("norm3"))?,
            norm4: LayerNorm::new(dim, NORM_EPS, vb.pp("norm4"))?,
            cross_attn_image_to_token: Attention::new(dim, heads, downsample, vb.pp("cross_attn_image_to_token"))?,
            self_attn_key: Attention::new(dim, heads, 1, vb.pp("self_attn_key"))?,
            norm5: LayerNorm::new(dim, NORM_EPS, vb.pp("norm5"))?,
        })
    }

    fn forward(
        &self,
        text: &Tensor,
        image: &Tensor,
        text_pe: &Tensor,
        image_pe: &Tensor,
        text_mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let _span = tracing::trace_span!("two-way-guidance-block").entered();
        // The PE is added to the keys only; queries and values stay bare.
        let k = (text + text_pe)?;
        let attn = self.self_attn_query.forward(text, &k, text, text_mask)?;
        let text = self.norm1.forward(&(text + attn)?)?;

        let k = image.broadcast_add(image_pe)?;
        let attn = self.cross_attn_token_to_image.forward(&text, &k, image, None)?;
        let text = self.norm2.forward(&(text + attn)?)?;

        let mlp_out = self.mlp.forward(&text)?;
        let text = self.norm3.forward(&(text + mlp_out)?)?;

        let k = (&text + text_pe)?;
        let attn = self.cross_attn_image_to_token.forward(image, &k, &text, text_mask)?;
        let image = self.norm4.forward(&(image + attn)?)?;

        let k = image.broadcast_add(image_pe)?;
        let attn = self.self_attn_key.forward(&image, &k, &image, None)?;
        let image = self.norm5.forward(&(image + attn)?)?;
        Ok((text, image))
    }
}

/// RSAM's Two-Way Guidance Module: text and image features guide each other;
/// returns the rewritten text tokens and the rewritten image embedding.
#[derive(Debug, Clone)]
pub struct TwoWayGuidanceTransformer {
    layers: Vec<TwoWayGuidingAttentionBlock>,
    final_attn_token_to_image: Attention,
    norm_final_attn: LayerNorm,
}

impl TwoWayGuidanceTransformer {
    pub fn new(depth: usize, dim: usize, heads: usize, mlp_dim: usize, vb: VarBuilder) -> Result<Self> {
        let layers = (0..depth)
            .map(|i| TwoWayGuidingAttentionBlock::new(dim, heads, mlp_dim, 1, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            final_attn_token_to_image: Attention::new(dim, heads, 1, vb.pp("final_attn_token_to_image"))?,
            norm_final_attn: LayerNorm::new(dim, NORM_EPS, vb.pp("norm_final_attn"))?,
        })
    }

    /// `image`: B x C x h x w, `image_pe`: 1 x C x h x w, `text`: B x L x C,
    /// `text_pe`: B x L x C (or 1 x L x C), `text_mask`: additive B x 1 x 1 x L
    /// mask of padded tokens. Returns (text B x L x C, image B x C x h x w).
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        text: &Tensor,
        text_pe: &Tensor,
        text_mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let _span = tracing::trace_span!("two-way-guidance").entered();
        let (b, c, h, w) = image.dims4()?;
        let mut keys = image.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let key_pe = image_pe.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let text_pe = text_pe.broadcast_as(text.shape())?.contiguous()?;
        let mut queries = text.clone();
        for layer in &self.layers {
            (queries, keys) = layer.forward(&queries, &keys, &text_pe, &key_pe, text_mask)?;
        }
        let k = keys.broadcast_add(&key_pe)?;
        let attn = self.final_attn_token_to_image.forward(&queries, &k, &keys, None)?;
        let queries = self.norm_final_attn.forward(&(queries + attn)?)?;
        let image = keys.transpose(1, 2)?.reshape((b, c, h, w))?;
        Ok((queries, image))
    }
}
