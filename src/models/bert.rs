//! The official RSAM BERT text encoder (`text_encoder.*`).
//!
//! A plain BERT without pooler: word + position + token-type embeddings,
//! TF-style LayerNorm (epsilon 1e-12), erf GELU, and an additive -10000 mask
//! on padded keys. Returns the last hidden state.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::config::BertConfig;
use crate::nn::{gelu_erf, linear, scaled_dot_product_attention_with, LayerNorm, Linear};

#[derive(Debug, Clone)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    num_heads: usize,
}

impl BertLayer {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            query: linear(h, h, vb.pp("attention.self.query"))?,
            key: linear(h, h, vb.pp("attention.self.key"))?,
            value: linear(h, h, vb.pp("attention.self.value"))?,
            attention_output: linear(h, h, vb.pp("attention.output.dense"))?,
            attention_norm: LayerNorm::new(h, eps, vb.pp("attention.output.LayerNorm"))?,
            intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate.dense"))?,
            output: linear(cfg.intermediate_size, h, vb.pp("output.dense"))?,
            output_norm: LayerNorm::new(h, eps, vb.pp("output.LayerNorm"))?,
            num_heads: cfg.num_attention_heads,
        })
    }

    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        x.reshape((b, l, self.num_heads, h / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("bert-layer").entered();
        let q = self.heads(&self.query.forward(x)?)?;
        let k = self.heads(&self.key.forward(x)?)?;
        let v = self.heads(&self.value.forward(x)?)?;
        let ctx = scaled_dot_product_attention_with(&q, &k, &v, Some(mask), self.query.weight().dtype())?;
        let (b, nh, l, d) = ctx.dims4()?;
        let ctx = ctx.transpose(1, 2)?.reshape((b, l, nh * d))?;
        let attn = self
            .attention_norm
            .forward(&(self.attention_output.forward(&ctx)? + x)?)?;
        let inter = gelu_erf(&self.intermediate.forward(&attn)?)?;
        self.output_norm.forward(&(self.output.forward(&inter)? + attn)?)
    }
}

#[derive(Debug, Clone)]
pub struct BertModel {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    pub max_positions: usize,
}

impl BertModel {
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(cfg, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position_embeddings: candle_nn::embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            token_type_embeddings: candle_nn::embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?,
            embeddings_norm: LayerNorm::new(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// `input_ids`, `attention_mask`: B x L (u32; mask 1 for tokens, 0 for
    /// padding). Returns the last hidden state, B x L x hidden.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("bert").entered();
        let (b, l) = input_ids.dims2()?;
        let device = input_ids.device();
        let positions = Tensor::arange(0u32, l as u32, device)?
            .unsqueeze(0)?
            .broadcast_as((b, l))?;
        let token_types = Tensor::zeros((b, l), DType::U32, device)?;
        let x =
            (self.word_embeddings.forward(input_ids)? + self.position_embeddings.forward(&positions.contiguous()?)?)?;
        let x = (x + self.token_type_embeddings.forward(&token_types)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        // The official model adds -10000 to padded keys; exp(-10000) is
        // exactly 0 in every float type, so padding cannot leak.
        let keep = attention_mask.to_dtype(x.dtype())?;
        let mask = ((keep.ones_like()? - keep)? * -10000.0)?.reshape((b, 1, 1, l))?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        Ok(x)
    }
}
